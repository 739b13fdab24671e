"""A LAND step program (工步 / "work mode") as labctl writes it for the operator to enter.

LAND testers run programs written in LAND's own software; there is no public way to load one
from outside (see `labctl_drivers.landt.follower`). LAND's program file (the recipe block of its
``.cex`` data file) has only been reverse-engineered, incompletely and per software version, by
third parties, and no import format for the program editor is published. So labctl does **not**
write a file for LAND's software: it writes a printable sheet (`render_sheet`) that the operator
types in, and keeps the program (`LandProgram`) to check the rows LAND exports against it
(`labctl_drivers.landt.check`).

The vocabulary is LAND's: steps are numbered from 1; a step is a rest or a constant-current
charge/discharge (LAND's charge is positive current, which is labctl's sign too: positive
current strips the working electrode) with end conditions on step time, step capacity and
voltage; a *cycle* step sends the program back to an earlier step a given number of times; every
step records a row every `record_dt_s` and on every `record_dV_V` change.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field


class LandMode(enum.Enum):
    """LAND step modes labctl writes (LAND names them in its editor as shown)."""

    REST = "Rest"
    CC_CHARGE = "CC_Chg"
    CC_DISCHARGE = "CC_DChg"
    CYCLE = "Cycle"


@dataclass(frozen=True)
class StepOrigin:
    """Where a LAND step came from in the protocol (for the record and the operator)."""

    kind: str  # the protocol step kind it runs ("rest", "galvanostatic")
    name: str
    source: str  # "FILE:LINE" of the protocol step
    group: int | None = None  # index of the composite protocol step it belongs to (ccd_ramp)


@dataclass(frozen=True)
class LandStep:
    """One LAND program step. Currents are signed (positive: charge)."""

    number: int
    mode: LandMode
    current_mA: float = 0.0
    time_s: float | None = None
    capacity_mAh: float | None = None
    V_high: float | None = None  # ends when the voltage rises to this
    V_low: float | None = None  # ends when the voltage falls to this
    safety_cutoffs: tuple[str, ...] = ()  # which of V_high/V_low/capacity_mAh are safety limits
    record_dt_s: float = 1.0
    record_dV_V: float | None = None
    goto: int | None = None  # CYCLE: the step to go back to
    repeats: int | None = None  # CYCLE: how many times the block runs in all
    origin: StepOrigin | None = None

    def end_conditions(self) -> list[str]:
        """The step's end conditions as the sheet prints them."""
        out = []
        if self.time_s is not None:
            out.append(f"step time >= {_duration(self.time_s)}")
        if self.capacity_mAh is not None:
            out.append(f"capacity >= {self.capacity_mAh:.6g} mAh")
        if self.V_high is not None:
            out.append(f"voltage >= {self.V_high:.4g} V")
        if self.V_low is not None:
            out.append(f"voltage <= {self.V_low:.4g} V")
        return out


@dataclass(frozen=True)
class LandProgram:
    """A program: the steps in LAND's numbering, plus what the sheet says around them."""

    name: str
    steps: tuple[LandStep, ...]
    protection: tuple[str, ...] = ()  # global limits to set in LAND's protection fields
    before_start: tuple[str, ...] = ()  # what the operator does before pressing start
    omitted: tuple[str, ...] = ()  # protocol steps LAND does not run, and why
    notes: tuple[str, ...] = field(default=())

    def step(self, number: int) -> LandStep:
        return self.steps[number - 1]

    def executed(self) -> Iterator[tuple[LandStep, int]]:
        """The working steps in the order LAND runs them, with LAND's cycle number of each.

        A cycle step re-runs its block `repeats` times in all; LAND counts cycles from 1 and
        adds one each time a cycle step sends the program back.
        """
        pos, cycle = 0, 1
        done: dict[int, int] = {}
        while pos < len(self.steps):
            s = self.steps[pos]
            if s.mode is LandMode.CYCLE:
                assert s.goto is not None and s.repeats is not None
                done[pos] = done.get(pos, 1) + 1
                if done[pos] <= s.repeats:
                    cycle += 1
                    pos = s.goto - 1
                    continue
                done[pos] = 1
                pos += 1
                continue
            yield s, cycle
            pos += 1


def _duration(s: float) -> str:
    h, rem = divmod(round(s * 1000) / 1000, 3600)
    m, sec = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{sec:06.3f}"


def _step_line(s: LandStep) -> str:
    if s.mode is LandMode.CYCLE:
        return f"{s.number:>4}  {s.mode.value:<8} go to step {s.goto}, {s.repeats} times in all"
    cur = "" if s.mode is LandMode.REST else f"{abs(s.current_mA):.6g} mA"
    ends = "; ".join(s.end_conditions()) or "-"
    rec = f"every {_duration(s.record_dt_s)}"
    if s.record_dV_V is not None:
        rec += f" or {s.record_dV_V * 1000:.4g} mV"
    line = f"{s.number:>4}  {s.mode.value:<8} {cur:<14} end: {ends}   record: {rec}"
    if s.safety_cutoffs:
        line += f"   (safety: {', '.join(s.safety_cutoffs)})"
    if s.origin is not None:
        line += f"   [{s.origin.name} @ {s.origin.source}]"
    return line


def render_sheet(program: LandProgram, tester: str, channel: str,
                 export_folder: str, export_pattern: str) -> str:
    """The printable program sheet: what to enter in LAND's software, and what to do."""
    lines = [
        f"LAND program sheet: {program.name}",
        f"Tester {tester}, channel {channel}",
        "",
        "labctl cannot load, start or stop a LAND channel (LAND publishes no control protocol",
        "and no program import format). Enter this program by hand in LAND's software.",
        "",
        "Steps (LAND numbering; currents are magnitudes, the mode gives the sign):",
        *(_step_line(s) for s in program.steps),
        "",
    ]
    if program.protection:
        lines += ["Protection (set in LAND's protection fields, and check on the program):",
                  *(f"  - {p}" for p in program.protection), ""]
    if program.omitted:
        lines += ["Protocol steps LAND does not run (left out as the station file says):",
                  *(f"  - {o}" for o in program.omitted), ""]
    lines += [
        "What to do:",
        *(f"  {k}. {t}" for k, t in enumerate((
            *program.before_start,
            f"Enter the {len(program.steps)} steps above on channel {channel} exactly as "
            "printed.",
            f"Set LANDdt to export this channel's record table into {export_folder} as "
            f"{export_pattern} (CSV/TXT or .xlsx), including the record, cycle, step, current, "
            "capacity and voltage columns.",
            "Press start in LAND's software; labctl follows the export from its first row.",
            "If labctl reports a trip or a program mismatch, stop the channel in LAND's "
            "software at once: labctl cannot stop it.",
        ), start=1)),
    ]
    lines += [*program.notes]
    return "\n".join(lines).rstrip() + "\n"

