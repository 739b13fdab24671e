"""labctl techniques -> SP-300 DLL techniques (ecc file + `EccParam`s), with on-instrument limits.

Everything here is pure (no DLL, no I/O), so the station check and the protocol planner can ask
`check_technique` / `check_sequence` what cannot run on an SP-300 before anything runs, and the
tests can inspect exactly what the adapter would send.

Sources: EC-Lab Development Package user's guide v6.04 (BioLogic, May 2021) — §7 for each
technique's parameter labels, types and data layout, the SP-300-family timebases and current
ranges, and the limit tests of CALIMIT/CPLIMIT; §6 for linked techniques (`BL_LoadTechnique`
with first/last flags). The label tables below are this module's own: the simulated firmware
(`sim_eclib.py`) keeps its own, so a wrong label on either side fails a simulated run.

How the instrument's own limits are used (it evaluates them in firmware, so they survive a PC
crash; the engine's software limits stay the second layer):

* OpenCircuit -> OCV. A rest is one timed step of at most tb·2^31 (11.9 h at 20 µs); a longer
  one is split into n equal executions: ``OCV`` then, for n ≥ 3, a ``LOOP`` back to it
  (``loop_N_times`` = n − 2 jumps), then a last ``OCV``. The trailing OCV keeps the last DLL
  technique of every labctl technique a timed one, so when the sequence ends there the
  channel's ElapsedTime belongs to a technique that took time (a LOOP takes none).
* ConstantCurrent -> CPLIMIT with tests E > E_max, E < E_min. A charge limit at constant current
  is a duration (|Q|/|I|; CPLIMIT's test variables are E, AUX1, AUX2 and I, not charge), so the
  step timer is the charge limit and the end is reported as CHARGE. Durations longer than one
  step are split over up to 20 equal steps, beyond that the 20 steps are repeated with
  ``N_Cycles``. An open-ended step (duration None) is one step of the longest duration repeated
  ``OPEN_ENDED_CYCLES`` times: it ends on its limits, at the latest after
  `OPEN_ENDED_MAX_S` (≈ 20,260 h, 2.3 years), which is then reported as TIME.
* ConstantVoltage -> CALIMIT with tests I > +|I_limit|, I < −|I_limit| when a limit is given,
  on the smallest current range whose full scale is 5 % above the limit (so that a current
  passing the limit can be measured: at a limit equal to the full scale the range would clamp
  the current there and the test might never fire), else CA (which alone of the two may
  auto-range the current).
* CyclicVoltammetry -> CV. cv4.ecc has no limit tests, so the protocol's |I| bound becomes the
  hardware bound: the smallest current range that holds it (the instrument cannot drive far
  beyond a range's full scale) instead of Auto. Scan_Rate is in mV/s.
* PotentioEIS / GalvanoEIS -> PEIS / GEIS. Frequency_number is the total count of
  `eis_frequencies`; ``sweep`` is never sent (easy-biologic 0.4.0 crashes on it; the DLL default
  is logarithmic spacing).

Exit condition of a limit (CPLIMIT/CALIMIT ``Exit_Cond``, one per step for all its tests): 1 =
go on with the next technique of the loaded sequence, 2 = stop the sequence. A limit that is the
technique's normal cut-off (e.g. "discharge until 2.0 V") must let a linked sequence go on
without an open-circuit gap; any other limit is a safety bound, and when it fires the engine
stops the protocol as on any limit, so the instrument must not start the next technique. Since
Exit_Cond is per step, not per test, a technique gets 1 only if *every* limit it carries is a
normal end (`cutoffs`), else 2. By default only an open-ended CP's potential limits are
cut-offs (nothing else can end it); the engine passes the ends it treats as normal.

Current range is never Auto for CP/CPLIMIT/CALIMIT/GEIS (the SP-300 refuses it).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from labctl_drivers.biologic.eclib import EccParam, ParamType
from labctl_drivers.errors import Unsupported
from labctl_drivers.interfaces import EndReason
from labctl_drivers.techniques import (
    ConstantCurrent,
    ConstantVoltage,
    CyclicVoltammetry,
    GalvanoEIS,
    OpenCircuit,
    PotentioEIS,
    Technique,
    eis_frequencies,
)

__all__ = [
    "MAX_LIMIT_STEPS", "OPEN_ENDED_CYCLES", "OPEN_ENDED_MAX_S", "DllTechnique", "Program",
    "TechniquePlan", "check_sequence", "check_technique", "max_step_s", "translate",
    "translate_sequence",
]

I, B, S = ParamType.INT32, ParamType.BOOLEAN, ParamType.SINGLE


@dataclass(frozen=True)
class _Spec:
    """One DLL technique of the SP-300 family: its file, id, timebase and parameter labels.

    `labels` maps each label to (type, array length); length 1 = a scalar, sent at index 0."""

    name: str
    ecc_file: str
    technique_id: int
    timebase_s: float
    labels: dict[str, tuple[ParamType, int]]


_HW = {"I_Range": (I, 1), "E_Range": (I, 1)}  # hardware parameters every technique accepts

#: The techniques labctl loads (user's guide v6.04 §7; SP-300-family ``*4.ecc`` files, their
#: timebases: OCV 20 µs, CA/CP 21 µs, CALIMIT/CPLIMIT 34 µs, PEIS/GEIS 24 µs, CV 45 µs, LOOP 20 µs).
SPECS: dict[str, _Spec] = {
    s.name: s for s in (
        _Spec("OCV", "ocv4.ecc", 100, 20e-6, {
            "Rest_time_T": (S, 1), "Record_every_dE": (S, 1), "Record_every_dT": (S, 1),
            "E_Range": (I, 1)}),
        _Spec("CA", "ca4.ecc", 101, 21e-6, {
            "Voltage_step": (S, 100), "vs_initial": (B, 100), "Duration_step": (S, 100),
            "Step_number": (I, 1), "Record_every_dT": (S, 1), "Record_every_dI": (S, 1),
            "N_Cycles": (I, 1), **_HW}),
        _Spec("CV", "cv4.ecc", 103, 45e-6, {
            "vs_initial": (B, 5), "Voltage_step": (S, 5), "Scan_Rate": (S, 5),
            "Scan_number": (I, 1), "Record_every_dE": (S, 1), "Average_over_dE": (B, 1),
            "N_Cycles": (I, 1), "Begin_measuring_I": (S, 1), "End_measuring_I": (S, 1), **_HW}),
        _Spec("PEIS", "peis4.ecc", 104, 24e-6, {
            "vs_initial": (B, 1), "vs_final": (B, 1), "Initial_Voltage_step": (S, 1),
            "Final_Voltage_step": (S, 1), "Duration_step": (S, 1), "Step_number": (I, 1),
            "Record_every_dT": (S, 1), "Record_every_dI": (S, 1), "Final_frequency": (S, 1),
            "Initial_frequency": (S, 1), "Amplitude_Voltage": (S, 1),
            "Frequency_number": (I, 1), "Average_N_times": (I, 1), "Correction": (B, 1),
            "Wait_for_steady": (S, 1), **_HW}),
        _Spec("GEIS", "geis4.ecc", 107, 24e-6, {
            "vs_initial": (B, 1), "vs_final": (B, 1), "Initial_Current_step": (S, 1),
            "Final_Current_step": (S, 1), "Duration_step": (S, 1), "Step_number": (I, 1),
            "Record_every_dT": (S, 1), "Record_every_dE": (S, 1), "Final_frequency": (S, 1),
            "Initial_frequency": (S, 1), "Amplitude_Current": (S, 1),
            "Frequency_number": (I, 1), "Average_N_times": (I, 1), "Correction": (B, 1),
            "Wait_for_steady": (S, 1), **_HW}),
        _Spec("LOOP", "loop4.ecc", 150, 20e-6, {
            "loop_N_times": (I, 1), "protocol_number": (I, 1)}),
        _Spec("CPLIMIT", "cplimit4.ecc", 155, 34e-6, {
            "Current_step": (S, 20), "vs_initial": (B, 20), "Duration_step": (S, 20),
            "Step_number": (I, 1), "Record_every_dT": (S, 1), "Record_every_dE": (S, 1),
            **{f"Test{k}_{f}": (I if f == "Config" else S, 20)
               for k in (1, 2, 3) for f in ("Config", "Value")},
            "Exit_Cond": (I, 20), "N_Cycles": (I, 1), **_HW}),
        _Spec("CALIMIT", "calimit4.ecc", 157, 34e-6, {
            "Voltage_step": (S, 20), "vs_initial": (B, 20), "Duration_step": (S, 20),
            "Step_number": (I, 1), "Record_every_dT": (S, 1), "Record_every_dI": (S, 1),
            **{f"Test{k}_{f}": (I if f == "Config" else S, 20)
               for k in (1, 2, 3) for f in ("Config", "Value")},
            "Exit_Cond": (I, 20), "N_Cycles": (I, 1), **_HW}),
    )
}
SPEC_BY_ID: dict[int, _Spec] = {s.technique_id: s for s in SPECS.values()}

#: CPLIMIT/CALIMIT hold 20 steps (user's guide §7).
MAX_LIMIT_STEPS = 20
#: An open-ended CP is one step of the longest duration, run this many times (N_Cycles + 1).
OPEN_ENDED_CYCLES = 1000
#: Step durations stay this fraction below tb·2^31, so that the single-precision duration the
#: DLL receives, rounded to timebase counts, cannot exceed the 31-bit step counter.
_STEP_MARGIN = 0.999

# Current ranges (user's guide §7, SP-300 family): index n is 100 pA·10^n, n = 0..10 (1 A).
_I_RANGE_FULL_SCALE_A = tuple(100e-12 * 10**n for n in range(11))
I_RANGE_AUTO = 12
# Potential ranges: ±2.5 V (0), ±5 V (1), ±10 V (2).
_E_RANGES_V = (2.5, 5.0, 10.0)
#: Exit_Cond values (user's guide §7, CALIMIT/CPLIMIT).
EXIT_NEXT_TECHNIQUE = 1
EXIT_STOP = 2
# Limit-test variables (bits 5+ of TestN_Config).
_VAR_E, _VAR_I = 0, 3

#: SP-300 standard board: ±500 mA, ±10 V control; EIS 10 µHz – 7 MHz (BioLogic SP-300 spec).
MAX_CURRENT_A = 0.5
MAX_POTENTIAL_V = 10.0
EIS_F_MIN_HZ, EIS_F_MAX_HZ = 1e-5, 7e6


def max_step_s(name: str) -> float:
    """Longest single timed step of a DLL technique on the SP-300: tb·2^31, less a margin."""
    return SPECS[name].timebase_s * 2**31 * _STEP_MARGIN


#: The longest an open-ended CP can run before the instrument ends it on time.
OPEN_ENDED_MAX_S = float(np.float32(max_step_s("CPLIMIT"))) * OPEN_ENDED_CYCLES


def _f32(x: float) -> float:
    """A value as the DLL stores a single (what `BL_DefineSglParameter` receives)."""
    return float(np.float32(x))


# ---------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class DllTechnique:
    """One technique as `BL_LoadTechnique` takes it, and which labctl technique it belongs to."""

    name: str  # "CPLIMIT", ...
    ecc_file: str  # bare SP-300-family file name, "cplimit4.ecc"
    technique_id: int  # what DataInfo.TechniqueID reports for its data
    timebase_s: float
    params: tuple[EccParam, ...]
    source: int  # index of the labctl technique in the loaded sequence

    def value(self, label: str, index: int = 0) -> int | float | bool:
        """The value sent for `label` (at step `index`); KeyError if it is not sent."""
        for p in self.params:
            if p.label == label and p.index == index:
                return p.value
        raise KeyError(f"{self.name} has no parameter {label}[{index}]")

    def values(self, label: str) -> list[int | float | bool]:
        """All values sent for `label`, in index order."""
        return [p.value for p in sorted(self.params, key=lambda p: p.index) if p.label == label]


@dataclass(frozen=True)
class TechniquePlan:
    """How one labctl technique runs on the instrument, and what its end can mean.

    `planned_duration_s` is the time the instrument is programmed for, from the values as sent
    (singles); None for a sweep (CV, EIS), which ends when it is complete. Ending `tolerance_s`
    earlier than planned still counts as the planned end (timebase rounding of each step)."""

    index: int
    technique: Technique
    dll: tuple[DllTechnique, ...]
    planned_duration_s: float | None
    tolerance_s: float
    charge_bound: bool = False  # the planned duration is a charge limit (|Q|/|I|)
    limits: tuple[EndReason, ...] = ()  # instrument limits that can end it early
    limits_continue: bool = False  # Exit_Cond 1: a limit goes on with the next technique
    limit_values: dict[EndReason, float] = field(default_factory=dict)

    @property
    def sweep(self) -> bool:
        return self.planned_duration_s is None


@dataclass(frozen=True)
class Program:
    """A loaded sequence: the labctl techniques and the DLL techniques they became, in order."""

    techniques: tuple[TechniquePlan, ...]
    #: all DLL techniques in loading order (what DataInfo.TechniqueIndex counts)
    dll: tuple[DllTechnique, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dll", tuple(d for t in self.techniques for d in t.dll))

    def source_of(self, dll_index: int) -> int:
        """The labctl technique that DLL technique `dll_index` belongs to."""
        return self.dll[dll_index].source

    def describe(self) -> str:
        """What is loaded, in the instrument's own terms ("OCV, LOOP, OCV, CPLIMIT")."""
        return ", ".join(d.name for d in self.dll)


# ---------------------------------------------------------------------------------------------
# checks


def _positive(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0


def check_technique(tech: object) -> list[str]:
    """What keeps `tech` from running on an SP-300 (empty when it can run).

    Pure: the protocol planner and station checks call it before anything runs; `translate`
    raises `Unsupported` with the same messages."""
    problems: list[str] = []
    name = type(tech).__name__
    if isinstance(tech, (OpenCircuit, ConstantCurrent, ConstantVoltage)):
        rec = tech.recording
        if not _positive(rec.every_dt_s):
            problems.append(f"{name}: record interval must be positive, got {rec.every_dt_s}")
        if rec.every_dE_V is not None and not (math.isfinite(rec.every_dE_V)
                                               and rec.every_dE_V >= 0):
            problems.append(f"{name}: record dE must be >= 0, got {rec.every_dE_V}")
    if isinstance(tech, OpenCircuit):
        if not _positive(tech.duration_s):
            problems.append(f"OpenCircuit: duration must be positive, got {tech.duration_s}")
    elif isinstance(tech, ConstantCurrent):
        if not math.isfinite(tech.current_A):
            problems.append(f"ConstantCurrent: current must be finite, got {tech.current_A}")
        elif abs(tech.current_A) > MAX_CURRENT_A:
            problems.append(f"ConstantCurrent: |I| = {abs(tech.current_A)} A exceeds the "
                            f"SP-300's ±{MAX_CURRENT_A} A (boosters are not supported)")
        if tech.duration_s is not None and not _positive(tech.duration_s):
            problems.append(f"ConstantCurrent: duration must be positive or None (open-ended), "
                            f"got {tech.duration_s}")
        if tech.charge_limit_C is not None:
            if not _positive(tech.charge_limit_C):
                problems.append(f"ConstantCurrent: charge limit must be positive, got "
                                f"{tech.charge_limit_C}")
            elif tech.current_A == 0:
                problems.append("ConstantCurrent: a charge limit at 0 A can never be reached")
        if (tech.duration_s is None and tech.E_min_V is None and tech.E_max_V is None
                and tech.charge_limit_C is None):
            problems.append("ConstantCurrent: an open-ended step (no duration) needs a potential "
                            "or charge limit to end it")
        for label, v in (("E_min", tech.E_min_V), ("E_max", tech.E_max_V)):
            if v is not None and not (math.isfinite(v) and abs(v) <= MAX_POTENTIAL_V):
                problems.append(f"ConstantCurrent: {label} = {v} V is outside the SP-300's "
                                f"±{MAX_POTENTIAL_V} V")
        if (tech.E_min_V is not None and tech.E_max_V is not None
                and tech.E_min_V >= tech.E_max_V):
            problems.append(f"ConstantCurrent: E_min ({tech.E_min_V}) must be below E_max "
                            f"({tech.E_max_V})")
    elif isinstance(tech, ConstantVoltage):
        if not (math.isfinite(tech.voltage_V) and abs(tech.voltage_V) <= MAX_POTENTIAL_V):
            problems.append(f"ConstantVoltage: {tech.voltage_V} V is outside the SP-300's "
                            f"±{MAX_POTENTIAL_V} V")
        if not _positive(tech.duration_s):
            problems.append(f"ConstantVoltage: duration must be positive, got {tech.duration_s}")
        if tech.I_limit_A is not None and not (_positive(abs(tech.I_limit_A))
                                               and abs(tech.I_limit_A) <= MAX_CURRENT_A):
            problems.append(f"ConstantVoltage: |I| limit must be in (0, {MAX_CURRENT_A}] A, got "
                            f"{tech.I_limit_A}")
    elif isinstance(tech, CyclicVoltammetry):
        if not 1 <= len(tech.vertices_V) <= 2:
            problems.append(f"CyclicVoltammetry: cv4.ecc sweeps E_start -> E1 -> E2; give one "
                            f"or two vertices, got {len(tech.vertices_V)}")
        for v in (tech.E_start_V, *tech.vertices_V):
            if not (math.isfinite(v) and abs(v) <= MAX_POTENTIAL_V):
                problems.append(f"CyclicVoltammetry: {v} V is outside the SP-300's "
                                f"±{MAX_POTENTIAL_V} V")
        if not _positive(tech.scan_rate_V_s):
            problems.append(f"CyclicVoltammetry: scan rate must be positive, got "
                            f"{tech.scan_rate_V_s}")
        if tech.cycles < 1:
            problems.append(f"CyclicVoltammetry: at least one cycle, got {tech.cycles}")
        if not _positive(tech.record_every_dE_V):
            problems.append(f"CyclicVoltammetry: record dE must be positive, got "
                            f"{tech.record_every_dE_V}")
        if tech.I_limit_A is not None and not (_positive(abs(tech.I_limit_A))
                                               and abs(tech.I_limit_A) <= MAX_CURRENT_A):
            problems.append(f"CyclicVoltammetry: |I| limit must be in (0, {MAX_CURRENT_A}] A, "
                            f"got {tech.I_limit_A}")
    elif isinstance(tech, (PotentioEIS, GalvanoEIS)):
        if not (_positive(tech.f_low_Hz) and _positive(tech.f_high_Hz)
                and tech.f_low_Hz < tech.f_high_Hz):
            problems.append(f"{name}: need 0 < f_low < f_high, got {tech.f_low_Hz} Hz and "
                            f"{tech.f_high_Hz} Hz")
        elif tech.f_low_Hz < EIS_F_MIN_HZ or tech.f_high_Hz > EIS_F_MAX_HZ:
            problems.append(f"{name}: the SP-300 measures impedance from {EIS_F_MIN_HZ} Hz to "
                            f"{EIS_F_MAX_HZ:g} Hz")
        if tech.points_per_decade < 1:
            problems.append(f"{name}: at least one point per decade")
        if tech.averages < 1:
            problems.append(f"{name}: at least one average per frequency")
        if isinstance(tech, PotentioEIS):
            if not _positive(tech.amplitude_V):
                problems.append(f"PotentioEIS: amplitude must be positive, got "
                                f"{tech.amplitude_V}")
            if tech.E_dc_V is not None and abs(tech.E_dc_V) > MAX_POTENTIAL_V:
                problems.append(f"PotentioEIS: E_dc = {tech.E_dc_V} V is outside ±10 V")
        else:
            if not _positive(abs(tech.amplitude_A)):
                problems.append(f"GalvanoEIS: amplitude must be non-zero, got {tech.amplitude_A}")
            elif abs(tech.I_dc_A) + abs(tech.amplitude_A) > MAX_CURRENT_A:
                problems.append("GalvanoEIS: |I_dc| + amplitude exceeds the SP-300's ±0.5 A")
    else:
        problems.append(f"the SP-300 adapter cannot run {name}")
    return problems


def check_sequence(techniques: Sequence[object]) -> list[str]:
    """What keeps a linked sequence from running on an SP-300 (each technique's problems,
    prefixed with its position)."""
    if not techniques:
        return ["an empty sequence"]
    out: list[str] = []
    for k, tech in enumerate(techniques):
        out += [f"technique {k}: {p}" for p in check_technique(tech)]
    return out


# ---------------------------------------------------------------------------------------------
# helpers


class _Params:
    """Collects one technique's parameters, checking every label, type and index against the
    technique's table, so that a typo or a wrong type fails here and not in the DLL."""

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.params: list[EccParam] = []

    def set(self, label: str, value: int | float | bool | Sequence[int | float | bool]) -> None:
        kind, length = self.spec.labels[label]  # KeyError: not a label of this technique
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(values) > length:
            raise ValueError(f"{self.spec.name}.{label}: {len(values)} values, at most {length}")
        for idx, v in enumerate(values):
            if kind is S:
                out: int | float | bool = _f32(float(v))
            elif kind is B:
                out = bool(v)
            else:
                if isinstance(v, float) and not v.is_integer():
                    raise ValueError(f"{self.spec.name}.{label}: {v} is not an integer")
                out = int(v)
            self.params.append(EccParam(label, kind, out, idx))

    def build(self, source: int) -> DllTechnique:
        s = self.spec
        return DllTechnique(s.name, s.ecc_file, s.technique_id, s.timebase_s,
                            tuple(self.params), source)


#: A CALIMIT |I| test needs a range that can measure past its limit: the instrument cannot
#: drive (or measure) much beyond a range's full scale, so a limit at full scale might never
#: be exceeded. Its range's full scale is at least this factor above the limit.
_TEST_HEADROOM = 1.05


def _i_range(i_max_A: float, bounds: tuple[int, int] | None) -> int:
    """Smallest current range whose full scale holds `i_max_A`, within the channel's ranges."""
    need = next((n for n, fs in enumerate(_I_RANGE_FULL_SCALE_A) if abs(i_max_A) <= fs), None)
    if need is None:
        raise Unsupported(f"|I| = {abs(i_max_A)} A exceeds the SP-300's 1 A range")
    if bounds is not None:
        lo, hi = bounds
        if need > hi:
            raise Unsupported(f"|I| = {abs(i_max_A)} A needs current range {need}; this channel "
                              f"goes up to range {hi}")
        need = max(need, lo)  # a larger range holds it too (a channel without low-current board)
    return need


def _e_range(*values: float | None) -> int:
    """Tightest potential range holding every value; ±10 V if any is unknown (clipping a
    reading is worse than a coarser resolution)."""
    if not values or any(v is None for v in values):
        return 2
    top = max(abs(float(v)) for v in values if v is not None)
    return next((n for n, r in enumerate(_E_RANGES_V) if top <= r), 2)


def _test_config(variable: int, greater: bool) -> int:
    """TestN_Config bits (user's guide §7, CALIMIT/CPLIMIT): bit0 active, bit1 logic with the
    other tests (0 = OR), bit2 comparison (1 = '>', 0 = '<'), bits 5+ the variable (E 0, I 3)."""
    return 1 | (0 << 1) | (int(greater) << 2) | (variable << 5)


@dataclass(frozen=True)
class _Split:
    """A duration as `steps` equal steps of `step_s`, run `cycles` times (N_Cycles + 1)."""

    steps: int
    step_s: float  # as sent: a single
    cycles: int

    @property
    def total_s(self) -> float:
        return self.steps * self.step_s * self.cycles


def _split(duration_s: float | None, name: str) -> _Split:
    """Fit a duration into a limit technique's 20 steps of at most tb·2^31 each, repeating the
    steps with N_Cycles if that is not enough; None (open-ended) = the longest single step,
    `OPEN_ENDED_CYCLES` times."""
    longest = max_step_s(name)
    if duration_s is None:
        return _Split(1, _f32(longest), OPEN_ENDED_CYCLES)
    steps = max(1, math.ceil(duration_s / longest))
    if steps <= MAX_LIMIT_STEPS:
        return _Split(steps, _f32(duration_s / steps), 1)
    cycles = math.ceil(duration_s / (MAX_LIMIT_STEPS * longest))
    if cycles > 2**31 - 1:
        raise Unsupported(f"{duration_s} s is beyond what {name} can time")
    return _Split(MAX_LIMIT_STEPS, _f32(duration_s / (MAX_LIMIT_STEPS * cycles)), cycles)


def _tolerance(planned_s: float, timebase_s: float, executions: int) -> float:
    """How much earlier than planned an end still counts as the planned one: each timed step
    may round to a timebase count, and ElapsedTime is a single (≈1e-7 relative)."""
    return (executions + 3) * timebase_s + 1e-6 * planned_s


# ---------------------------------------------------------------------------------------------
# per technique


def _ocv(tech: OpenCircuit, k: int, offset: int) -> TechniquePlan:
    longest = max_step_s("OCV")
    n = max(1, math.ceil(tech.duration_s / longest))
    rest = _f32(tech.duration_s / n)
    rec = tech.recording

    def one() -> DllTechnique:
        p = _Params(SPECS["OCV"])
        p.set("Rest_time_T", rest)
        p.set("Record_every_dE", rec.every_dE_V or 0.0)
        p.set("Record_every_dT", rec.every_dt_s)
        p.set("E_Range", _e_range(None))
        return p.build(k)

    dll = [one()]
    if n >= 3:
        loop = _Params(SPECS["LOOP"])
        loop.set("loop_N_times", n - 2)  # jumps back to the first OCV: it runs n - 1 times
        loop.set("protocol_number", offset)  # the first OCV's index in the whole sequence
        dll.append(loop.build(k))
    if n >= 2:
        dll.append(one())
    planned = n * rest
    return TechniquePlan(k, tech, tuple(dll), planned, _tolerance(planned, 20e-6, n))


def _limit_technique(
    name: str, level_label: str, level: float, record: dict[str, float], split: _Split,
    tests: list[tuple[int, float]], exit_cond: int, i_range: int, e_range: int, k: int,
) -> DllTechnique:
    p = _Params(SPECS[name])
    n = split.steps
    p.set(level_label, [level] * n)
    p.set("vs_initial", [False] * n)
    p.set("Duration_step", [split.step_s] * n)
    p.set("Step_number", n - 1)  # the DLL counts steps from 0
    for label, v in record.items():
        p.set(label, v)
    for t in range(3):
        cfg, val = tests[t] if t < len(tests) else (0, 0.0)
        p.set(f"Test{t + 1}_Config", [cfg] * n)
        p.set(f"Test{t + 1}_Value", [val] * n)
    p.set("Exit_Cond", [exit_cond] * n)
    p.set("N_Cycles", split.cycles - 1)  # N_Cycles counts the repeats
    p.set("I_Range", i_range)
    p.set("E_Range", e_range)
    return p.build(k)


def _cp(tech: ConstantCurrent, k: int, cutoffs: Collection[EndReason] | None,
        bounds: tuple[int, int] | None) -> TechniquePlan:
    duration = tech.duration_s
    charge_bound = False
    if tech.charge_limit_C is not None:
        # at constant current |Q| = |I|·t: the instrument's step timer is the charge limit
        t_q = float(tech.charge_limit_C) / abs(tech.current_A)
        if duration is None or t_q <= duration:
            duration, charge_bound = t_q, True
    split = _split(duration, "CPLIMIT")
    tests: list[tuple[int, float]] = []
    limits: list[EndReason] = []
    values: dict[EndReason, float] = {}
    if tech.E_max_V is not None:
        tests.append((_test_config(_VAR_E, greater=True), tech.E_max_V))
        limits.append(EndReason.E_MAX)
        values[EndReason.E_MAX] = _f32(tech.E_max_V)
    if tech.E_min_V is not None:
        tests.append((_test_config(_VAR_E, greater=False), tech.E_min_V))
        limits.append(EndReason.E_MIN)
        values[EndReason.E_MIN] = _f32(tech.E_min_V)
    if cutoffs is None:  # default: an open-ended step ends on its limits by design
        cutoffs = set(limits) if tech.duration_s is None and not charge_bound else set()
    go_on = bool(limits) and set(limits) <= set(cutoffs)
    rec = tech.recording
    dll = _limit_technique(
        "CPLIMIT", "Current_step", tech.current_A,
        {"Record_every_dT": rec.every_dt_s, "Record_every_dE": rec.every_dE_V or 0.0},
        split, tests, EXIT_NEXT_TECHNIQUE if go_on else EXIT_STOP,
        _i_range(tech.current_A, bounds), _e_range(tech.E_min_V, tech.E_max_V), k)
    planned = split.total_s
    return TechniquePlan(
        k, tech, (dll,), planned, _tolerance(planned, 34e-6, split.steps * split.cycles),
        charge_bound, tuple(limits), go_on, values)


def _ca(tech: ConstantVoltage, k: int, cutoffs: Collection[EndReason] | None,
        bounds: tuple[int, int] | None) -> TechniquePlan:
    rec = {"Record_every_dT": tech.recording.every_dt_s, "Record_every_dI": 0.0}
    if tech.I_limit_A is not None:
        lim = abs(float(tech.I_limit_A))
        split = _split(tech.duration_s, "CALIMIT")
        go_on = cutoffs is not None and EndReason.I_LIMIT in set(cutoffs)
        tests = [(_test_config(_VAR_I, greater=True), lim),
                 (_test_config(_VAR_I, greater=False), -lim)]
        dll = _limit_technique(
            "CALIMIT", "Voltage_step", tech.voltage_V, rec, split, tests,
            EXIT_NEXT_TECHNIQUE if go_on else EXIT_STOP, _i_range(lim * _TEST_HEADROOM, bounds),
            _e_range(tech.voltage_V), k)
        planned = split.total_s
        return TechniquePlan(
            k, tech, (dll,), planned, _tolerance(planned, 34e-6, split.steps * split.cycles),
            False, (EndReason.I_LIMIT,), go_on, {EndReason.I_LIMIT: _f32(lim)})
    # no |I| limit: plain CA, which (unlike CALIMIT) may auto-range the current; CA has 100
    # steps, but 20 of them (250 h) with N_Cycles beyond is plenty and keeps one splitter
    longest = max_step_s("CA")
    steps = max(1, math.ceil(tech.duration_s / longest))
    cycles = 1
    if steps > MAX_LIMIT_STEPS:
        cycles = math.ceil(tech.duration_s / (MAX_LIMIT_STEPS * longest))
        steps = MAX_LIMIT_STEPS
    step_s = _f32(tech.duration_s / (steps * cycles))
    p = _Params(SPECS["CA"])
    p.set("Voltage_step", [tech.voltage_V] * steps)
    p.set("vs_initial", [False] * steps)
    p.set("Duration_step", [step_s] * steps)
    p.set("Step_number", steps - 1)
    for label, v in rec.items():
        p.set(label, v)
    p.set("N_Cycles", cycles - 1)
    p.set("I_Range", I_RANGE_AUTO)
    p.set("E_Range", _e_range(tech.voltage_V))
    planned = steps * step_s * cycles
    return TechniquePlan(k, tech, (p.build(k),), planned,
                         _tolerance(planned, 21e-6, steps * cycles))


def _cv(tech: CyclicVoltammetry, k: int, bounds: tuple[int, int] | None) -> TechniquePlan:
    es = float(tech.E_start_V)
    v = [float(x) for x in tech.vertices_V]
    e1, e2 = (v[0], es) if len(v) == 1 else (v[0], v[1])
    p = _Params(SPECS["CV"])
    p.set("vs_initial", [False] * 5)
    p.set("Voltage_step", [es, e1, e2, es, es])  # Ei, E1, E2, Ei, Ef
    p.set("Scan_Rate", [tech.scan_rate_V_s * 1000.0] * 5)  # the DLL takes mV/s
    p.set("Scan_number", 2)
    p.set("Record_every_dE", tech.record_every_dE_V)
    p.set("Average_over_dE", False)
    p.set("N_Cycles", tech.cycles - 1)  # N_Cycles counts the cycles after the first
    p.set("Begin_measuring_I", 0.5)
    p.set("End_measuring_I", 1.0)
    # cv4.ecc has no limit tests: the protocol's |I| bound is the current range's full scale
    p.set("I_Range", I_RANGE_AUTO if tech.I_limit_A is None
          else _i_range(tech.I_limit_A, bounds))
    p.set("E_Range", _e_range(es, e1, e2))
    return TechniquePlan(k, tech, (p.build(k),), None, 0.0)


def _eis(tech: PotentioEIS | GalvanoEIS, k: int,
         bounds: tuple[int, int] | None) -> TechniquePlan:
    n_f = len(eis_frequencies(tech.f_high_Hz, tech.f_low_Hz, tech.points_per_decade))
    if isinstance(tech, PotentioEIS):
        p = _Params(SPECS["PEIS"])
        relative = tech.E_dc_V is None  # around the present potential
        e_dc = 0.0 if tech.E_dc_V is None else float(tech.E_dc_V)
        p.set("vs_initial", relative)
        p.set("vs_final", relative)
        p.set("Initial_Voltage_step", e_dc)
        p.set("Final_Voltage_step", e_dc)
        p.set("Record_every_dI", 0.0)
        p.set("Amplitude_Voltage", tech.amplitude_V)
        p.set("I_Range", I_RANGE_AUTO)
        p.set("E_Range", _e_range(None if relative else abs(e_dc) + tech.amplitude_V))
    else:
        p = _Params(SPECS["GEIS"])
        amp = abs(float(tech.amplitude_A))
        p.set("vs_initial", False)
        p.set("vs_final", False)
        p.set("Initial_Current_step", tech.I_dc_A)
        p.set("Final_Current_step", tech.I_dc_A)
        p.set("Record_every_dE", 0.0)
        p.set("Amplitude_Current", amp)
        # the amplitude at most half the range, and the DC part must fit too; never Auto
        p.set("I_Range", _i_range(max(2 * amp, abs(tech.I_dc_A) + amp), bounds))
        p.set("E_Range", _e_range(None))
    p.set("Duration_step", 0.0)  # no DC hold before the sweep
    p.set("Step_number", 0)
    p.set("Record_every_dT", 1.0)
    p.set("Initial_frequency", tech.f_high_Hz)
    p.set("Final_frequency", tech.f_low_Hz)
    p.set("Frequency_number", n_f)  # the TOTAL count, as eis_frequencies() builds it
    p.set("Average_N_times", tech.averages)
    p.set("Correction", False)
    p.set("Wait_for_steady", 0.0)  # a number of periods
    # no "sweep": easy-biologic 0.4.0 crashes on it; the DLL default is logarithmic
    return TechniquePlan(k, tech, (p.build(k),), None, 0.0)


# ---------------------------------------------------------------------------------------------
# entry points


def _reasons(names: Collection[EndReason | str] | None) -> set[EndReason] | None:
    """EndReasons among `names`; other names (an engine's own, like "settled") are not
    instrument ends and are ignored."""
    if names is None:
        return None
    values = {r.value: r for r in EndReason}
    return {n if isinstance(n, EndReason) else values[n] for n in names
            if isinstance(n, EndReason) or n in values}


def translate_sequence(
    techniques: Technique | Sequence[Technique],
    *,
    cutoffs: Sequence[Collection[EndReason | str] | None] | None = None,
    i_range_bounds: tuple[int, int] | None = None,
) -> Program:
    """The DLL techniques of a linked sequence, in loading order.

    `cutoffs[k]` names the limits that are technique k's normal end (EndReason or its value,
    e.g. ``{"E_min"}``): when every limit of a CPLIMIT/CALIMIT is one, a limit goes on with the
    next technique (Exit_Cond 1), else it stops the sequence (Exit_Cond 2). None = the default
    (see the module docstring). `i_range_bounds` = the channel's (MinIRange, MaxIRange).

    Raises `Unsupported` (an InstrumentError) with every problem `check_sequence` finds."""
    techs = [techniques] if not isinstance(techniques, (list, tuple)) else list(techniques)
    problems = check_sequence(techs)
    if problems:
        raise Unsupported("cannot run on an SP-300: " + "; ".join(problems))
    if cutoffs is not None and len(cutoffs) != len(techs):
        raise ValueError(f"{len(cutoffs)} cutoff sets for {len(techs)} techniques")
    plans: list[TechniquePlan] = []
    offset = 0
    for k, tech in enumerate(techs):
        cut = None if cutoffs is None else _reasons(cutoffs[k])
        if isinstance(tech, OpenCircuit):
            plan = _ocv(tech, k, offset)
        elif isinstance(tech, ConstantCurrent):
            plan = _cp(tech, k, cut, i_range_bounds)
        elif isinstance(tech, ConstantVoltage):
            plan = _ca(tech, k, cut, i_range_bounds)
        elif isinstance(tech, CyclicVoltammetry):
            plan = _cv(tech, k, i_range_bounds)
        else:
            assert isinstance(tech, (PotentioEIS, GalvanoEIS))
            plan = _eis(tech, k, i_range_bounds)
        plans.append(plan)
        offset += len(plan.dll)
    return Program(tuple(plans))


def translate(tech: Technique, **kwargs: object) -> TechniquePlan:
    """One labctl technique on its own (index 0 of a one-technique sequence)."""
    return translate_sequence([tech], **kwargs).techniques[0]  # type: ignore[arg-type]
