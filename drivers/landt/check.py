"""Did LAND run the program it was asked to? A row-by-row comparison of an export with it.

labctl cannot load a program into a LAND tester; the operator types it in. The most common way
an overnight LANDT test goes wrong is a mistyped step, so every row the follower delivers is
placed in the program (`LandProgram.executed`: the working steps in the order LAND runs them,
loops unrolled) and compared with it as it arrives:

* **step order** -- the export's step index (and cycle index) must be the next step of the
  program; a jump that leaves out repeats of a loop is a *missing loop*, any other a *wrong step*;
* **mode and current** -- a rest must carry no current, a charge positive and a discharge
  negative current of the programmed magnitude (within `current_rtol`); this is judged on the
  step's first row;
* **cut-offs** -- a step must end when one of its end conditions is met: a row past a cut-off
  (capacity, step time, voltage) followed by another row of the same step means the cut-off is
  missing or wrong (the row that crosses it is LAND's last row of the step, so it alone is not);
  a step that ends with none of its conditions met ended early (a cut-off typed too small).

Each problem is reported once (per kind and program position) as a `Mismatch`, at the row where
it became visible: a wrong current on the first row of the wrong step, a missing cut-off on the
first row past it. The rows themselves are kept whatever they are; placing them is all this does.
Without a step-index column, steps are told apart by a change of mode (rest, charge, discharge)
or a reset of the step capacity counter.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from labctl_drivers.landt.formats import LandtRecords, step_mode
from labctl_drivers.landt.program import LandMode, LandProgram, LandStep


class MismatchKind(enum.Enum):
    WRONG_STEP = "wrong step"
    MISSING_LOOP = "missing loop"
    WRONG_MODE = "wrong mode"
    WRONG_CURRENT = "wrong current"
    CUTOFF_MISSED = "cut-off missed"
    ENDED_EARLY = "ended early"
    AFTER_END = "rows after the program's end"


@dataclass(frozen=True)
class Mismatch:
    kind: MismatchKind
    position: int | None  # index in the executed program (None: no place in it)
    land_step: int | None  # LAND's step number as exported
    row: int  # index of the row (counted over every row fed) where it became visible
    t_s: float
    message: str


UNPLACED = -1


@dataclass(frozen=True)
class Placement:
    """What `ProgramCheck.feed` found for a batch of rows."""

    places: np.ndarray  # each row's position in the executed program, UNPLACED if none
    ordinals: np.ndarray  # each row's executed-step count (a new value: a new LAND step began)
    mismatches: list[Mismatch]


@dataclass
class _Open:
    position: int
    key: tuple[float, float]
    first_row: int
    last_V: float = float("nan")
    last_cap: float = float("nan")
    last_step_t: float = float("nan")
    last_t: float = float("nan")
    start_t: float = float("nan")
    past: str | None = None  # a cut-off the last row was past


@dataclass
class ProgramCheck:
    """Places each exported row in `program` and reports how the run departs from it."""

    program: LandProgram
    current_rtol: float = 0.02
    current_atol_mA: float = 1e-4
    voltage_tol_V: float = 0.002
    rows: int = 0
    steps_seen: int = 0  # LAND steps begun so far
    expected: list[tuple[LandStep, int]] = field(init=False)
    _open: _Open | None = field(default=None, init=False)
    _reported: set[tuple[MismatchKind, int | None]] = field(default_factory=set, init=False)
    _last_pos: int = field(default=-1, init=False)

    def __post_init__(self) -> None:
        self.expected = list(self.program.executed())

    # ---- feeding --------------------------------------------------------------------------
    def feed(self, rec: LandtRecords) -> Placement:
        """Each row's position in the executed program (UNPLACED if none) and what is wrong."""
        found: list[Mismatch] = []
        places = np.full(len(rec), UNPLACED, dtype=int)
        ordinals = np.zeros(len(rec), dtype=int)
        for i in range(len(rec)):
            places[i] = self._row(rec, i, found)
            ordinals[i] = self.steps_seen
            self.rows += 1
        return Placement(places, ordinals, found)

    def at_end(self) -> bool:
        """The last step of the program is running and has met one of its end conditions."""
        cur = self._open
        return (cur is not None and cur.position == len(self.expected) - 1
                and self._reached(self.expected[cur.position][0], cur))

    def reached(self) -> str | None:
        """Which end condition the running step's last row met ("capacity", "time", "V_high",
        "V_low"), None if none."""
        cur = self._open
        if cur is None or cur.position == UNPLACED:
            return None
        step = self.expected[cur.position][0]
        return self._which(step, cur)

    def _row(self, rec: LandtRecords, i: int, found: list[Mismatch]) -> int:
        I_mA = float(rec.I_mA[i])
        key = self._key(rec, i, I_mA)
        cur = self._open
        if cur is None or key != cur.key:
            if cur is not None:
                self._closed(cur, rec.t_s[i], found)
            cur = self._begin(rec, i, key, I_mA, found)
        elif cur.past is not None and cur.position != UNPLACED:
            step = self.expected[cur.position][0]
            self._report(found, MismatchKind.CUTOFF_MISSED, cur.position, step, float(rec.t_s[i]),
                         f"step {step.number} went on past its {cur.past} cut-off: the cut-off "
                         "is missing or wrong in LAND's program")
        cur.last_V, cur.last_cap = float(rec.E_V[i]), float(rec.capacity_mAh[i])
        cur.last_step_t, cur.last_t = float(rec.step_time_s[i]), float(rec.t_s[i])
        if cur.position != UNPLACED:
            cur.past = self._past_cutoff(cur)
        return cur.position

    def _key(self, rec: LandtRecords, i: int, I_mA: float) -> tuple[float, float]:
        step, cycle = float(rec.step[i]), float(rec.cycle[i])
        if np.isfinite(step):
            return step, cycle if np.isfinite(cycle) else 0.0
        # no step column: a new step where the mode changes or the capacity counter resets
        mode = step_mode(str(rec.state[i])) if rec.state[i] else None
        sign = 0.0 if mode == "rest" or abs(I_mA) <= self.current_atol_mA else np.sign(I_mA)
        cur = self._open
        n = cur.key[1] if cur is not None else 0.0
        if cur is None or sign != cur.key[0] or (
                np.isfinite(cur.last_cap) and rec.capacity_mAh[i] < cur.last_cap - 1e-12):
            n += 1
        return sign, n

    # ---- step boundaries ----------------------------------------------------------------------
    def _begin(self, rec: LandtRecords, i: int, key: tuple[float, float], I_mA: float,
               found: list[Mismatch]) -> _Open:
        t = float(rec.t_s[i])
        pos = self._place(key, rec, i, t, found)
        self.steps_seen += 1
        cur = _Open(pos, key, self.rows, start_t=t)
        self._open = cur
        if pos == UNPLACED:
            return cur
        self._last_pos = pos
        step = self.expected[pos][0]
        exp = step.current_mA
        if step.mode is LandMode.REST:
            if abs(I_mA) > self.current_atol_mA:
                self._report(found, MismatchKind.WRONG_MODE, pos, step, t,
                             f"step {step.number} should rest but LAND passes {I_mA:.6g} mA")
        elif I_mA * exp <= 0:
            self._report(found, MismatchKind.WRONG_MODE, pos, step, t,
                         f"step {step.number} should be {step.mode.value} at {exp:.6g} mA but "
                         f"LAND passes {I_mA:.6g} mA")
        elif abs(I_mA - exp) > self.current_rtol * abs(exp) + self.current_atol_mA:
            self._report(found, MismatchKind.WRONG_CURRENT, pos, step, t,
                         f"step {step.number} runs at {I_mA:.6g} mA but the program says "
                         f"{exp:.6g} mA ({I_mA / exp:.3g}x)")
        return cur

    def _place(self, key: tuple[float, float], rec: LandtRecords, i: int, t: float,
               found: list[Mismatch]) -> int:
        """The program position of a new step, reporting a jump or a step it does not have."""
        nxt = self._last_pos + 1
        has_step = np.isfinite(rec.step[i])
        if not has_step:
            if nxt >= len(self.expected):
                self._report(found, MismatchKind.AFTER_END, None, None, t,
                             "LAND goes on after the program's last step")
                return UNPLACED
            return nxt
        number, cycle = int(key[0]), key[1]
        same = [p for p in range(nxt, len(self.expected)) if self.expected[p][0].number == number]
        if same:
            # LAND's own cycle count, where it matches, tells repeats of a loop apart
            p = next((q for q in same if q == nxt or self.expected[q][1] == cycle), same[0])
            if p > nxt:
                self._jump(nxt, p, number, t, found)
            return p
        if nxt >= len(self.expected):
            self._report(found, MismatchKind.AFTER_END, None, None, t,
                         f"LAND runs step {number} after the program's last step")
        else:
            want = self.expected[nxt][0]
            self._report(found, MismatchKind.WRONG_STEP, nxt, want, t,
                         f"LAND runs step {number} (cycle {cycle:g}) where the program runs "
                         f"step {want.number} next")
        return UNPLACED

    def _jump(self, nxt: int, p: int, number: int, t: float, found: list[Mismatch]) -> None:
        skipped = [s.number for s, _ in self.expected[nxt:p]]
        want = self.expected[nxt][0]
        if len(set(skipped)) < len(skipped) or self._is_loop_body(nxt):
            self._report(found, MismatchKind.MISSING_LOOP, nxt, want, t,
                         f"LAND went on to step {number} without the program's repeats of "
                         f"steps {sorted(set(skipped))}: the cycle step is missing or its "
                         "count is wrong")
        else:
            self._report(found, MismatchKind.WRONG_STEP, nxt, want, t,
                         f"LAND went to step {number}, leaving out steps {skipped}")

    def _is_loop_body(self, pos: int) -> bool:
        """The step at `pos` runs again later in the program (it is inside a loop)."""
        number = self.expected[pos][0].number
        return any(s.number == number for s, _ in self.expected[:pos])

    def _closed(self, cur: _Open, t_next: float, found: list[Mismatch]) -> None:
        """The open step ended: it should have met one of its end conditions."""
        if cur.position == UNPLACED:
            return
        step = self.expected[cur.position][0]
        if cur.past is None and not self._reached(step, cur):
            self._report(found, MismatchKind.ENDED_EARLY, cur.position, step, float(t_next),
                         f"step {step.number} ended before any of its end conditions "
                         f"({'; '.join(step.end_conditions())}): a cut-off is wrong in LAND's "
                         "program")

    # ---- cut-offs -----------------------------------------------------------------------------
    def _elapsed(self, cur: _Open) -> float:
        return cur.last_step_t if np.isfinite(cur.last_step_t) else cur.last_t - cur.start_t

    def _past_cutoff(self, cur: _Open) -> str | None:
        step = self.expected[cur.position][0]
        tol = self.voltage_tol_V
        if step.capacity_mAh is not None and np.isfinite(cur.last_cap) and (
                abs(cur.last_cap) >= step.capacity_mAh * (1 - 1e-6)):
            return "capacity"
        if step.time_s is not None and self._elapsed(cur) >= step.time_s - 1e-6:
            return "time"
        if step.V_high is not None and cur.last_V >= step.V_high + tol:
            return "voltage"
        if step.V_low is not None and cur.last_V <= step.V_low - tol:
            return "voltage"
        return None

    def _reached(self, step: LandStep, cur: _Open) -> bool:
        """Whether the step's last row is at one of its end conditions (one record's slack)."""
        return self._which(step, cur) is not None

    def _which(self, step: LandStep, cur: _Open) -> str | None:
        tol = self.voltage_tol_V
        if step.V_high is not None and cur.last_V >= step.V_high - tol:
            return "V_high"
        if step.V_low is not None and cur.last_V <= step.V_low + tol:
            return "V_low"
        slack_s = step.record_dt_s
        if step.capacity_mAh is not None and np.isfinite(cur.last_cap):
            per_record = abs(step.current_mA) * slack_s / 3600.0
            if abs(cur.last_cap) >= step.capacity_mAh - per_record * 1.01 - 1e-9:
                return "capacity"
        if step.time_s is not None and self._elapsed(cur) >= step.time_s - slack_s - 1e-6:
            return "time"
        return None

    def _report(self, found: list[Mismatch], kind: MismatchKind, pos: int | None,
                step: LandStep | None, t: float, message: str) -> None:
        # once per kind and program step: a mistyped step inside a loop is one mistake
        where = pos if step is None else step.number
        if (kind, where) in self._reported:
            return
        self._reported.add((kind, where))
        found.append(Mismatch(kind, pos, None if step is None else step.number, self.rows,
                              t, message))

    def finish(self) -> list[Mismatch]:
        """The export ended (the follower saw no more rows): judge the last step, and whether
        LAND stopped before the program's end (a loop at the program's end typed with too few
        repeats shows only here, when the export stops growing)."""
        found: list[Mismatch] = []
        if self._open is None:
            return found
        self._closed(self._open, self._open.last_t, found)
        nxt = self._last_pos + 1
        if 0 < nxt < len(self.expected):
            want, cycle = self.expected[nxt]
            kind = MismatchKind.MISSING_LOOP if self._is_loop_body(nxt) else \
                MismatchKind.WRONG_STEP
            self._report(found, kind, nxt, want, self._open.last_t,
                         f"LAND stopped after step {self.expected[nxt - 1][0].number}, but the "
                         f"program goes on with step {want.number} (cycle {cycle}): "
                         + ("the cycle step's count is wrong" if kind is MismatchKind.MISSING_LOOP
                            else "steps are missing") + " in LAND's program")
        return found
