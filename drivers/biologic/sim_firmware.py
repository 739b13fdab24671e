"""The firmware of a simulated SP-300 channel: DLL techniques interpreted as the instrument does.

`SimulatedEClib` (`sim_eclib.py`) is the DLL's call surface; this module is what sits behind it
on each channel: the technique files it knows, how it reads their parameters, and how it runs
them against a cell of the digital twin (`labctl_drivers.sim.cell_model.CellModel`).

Everything here is written from the EC-Lab Development Package user's guide v6.04 (technique
tables of §7, data layouts of §5.1/§6, error codes of §5.4), independently of the SP-300 adapter
(`adapter.py`, `translate.py`, `decode.py`): each side keeps its own technique ids, timebases,
labels and column layouts, so that a translation mistake on one side (a CV scan rate in V/s, a
wrong current sign, a step longer than the timebase can count, a wrong test-config bit) makes a
simulated run behave wrongly instead of being mirrored by the same mistake here.

Modelling decisions (the guide does not say, or the twin has to approximate):

* Time runs lazily: a channel integrates its cell only when it is called, from where it was up
  to the call's time, executing steps, limit tests, exit conditions, cycles, loops and linked
  techniques exactly as they would have happened meanwhile.
* The instrument evaluates its limit tests continuously; the twin evaluates them on an
  integration sample of at most 1 s (`TEST_SAMPLE_S`, the largest divisor of Record_every_dT
  that is <= 1 s, so that record times are sample times). A crossing between two records ends
  the step at the sample where it happened, and that sample is *not* recorded unless it is a
  record time. Record_every_dE / Record_every_dI records are taken on the same samples.
* A step that runs its full Duration_step records one last point at its end if that moment is
  not already a record time; a step ended by a limit test records nothing extra.
* Records of a step are taken at k * Record_every_dT after the step's start (k >= 1).
* CV (cv4.ecc): Voltage_step = [Ei, E1, E2, Ei, Ef]; Ei is applied as a potential step at t = 0,
  then each cycle sweeps Ei -> E1 -> E2 -> Ei (Voltage_step[3]) and, after the N_Cycles extra
  cycles, a final sweep goes to Ef. Scan_Rate[k] (mV/s) is the rate of the sweep that arrives at
  Voltage_step[k] (Scan_Rate[0] is not used). A point is recorded every Record_every_dE of
  potential, plus one at each vertex that is not on the dE grid.
* EIS: each frequency takes `eis_point_duration_s(f, Average_N_times)` plus Wait_for_steady
  periods; its row is written when its measurement ends, with the impedance of the cell at that
  moment (plus 0.2 % complex noise from the channel's random generator). PEIS relative to the
  start potential with a zero offset on a cell at rest is integrated at zero current (holding
  the open-circuit potential makes no current flow); other DC levels are held for real.
* Compliance: a channel cannot drive more current than its range's full scale (Auto: the 1 A
  range, bounded by the board's 0.5 A). A potentiostatic sample that would need more is clipped
  to the full scale and the channel then drives that current (the cell's voltage is what is
  measured) until the cell can follow the set potential again; the sample that first overloads
  advances the cell at the current it asked for (the twin cannot peek without advancing).
  Measured Ewe is clipped to the E range (+-2.5/5/10 V, Auto = +-10 V).
* Between technique runs (stopped channel) the cell sits at open circuit and is integrated at
  zero current whenever the clock moved, in pieces of at most `REST_SUBSTEP_S`.
* The instrument memory holds `memory_words` 32-bit words per channel; when full, the oldest
  rows are dropped and counted, and the next `BL_GetData` reports them in IRQskipped (the count
  is reset once reported). Data already buffered survive stop, load and start.
* Singles are received as IEEE-754 float32, as the DLL passes them: every SINGLE parameter is
  rounded to float32 before it is interpreted. Step lengths are counted in timebase ticks: a
  remainder shorter than one tick is no sample (0.01 s in float32 is 0.0099999998 s).
* Limit tests are combined left to right: test k (k >= 2) joins the result of the tests before
  it with OR (logic bit 0) or AND (bit 1). AUX1/AUX2 read 0 V (nothing is wired to them).
* LOOP: `loop_N_times` jumps back to `protocol_number` that many times (-1: for ever), then the
  sequence goes on after the LOOP and its count is reset (an outer LOOP re-arms it). A LOOP
  takes no time and has no data; DataInfo.loop counts the executions of each technique.

Speed (a 16 h, 4-cell simulated campaign must stay near the cost of writing its rows to
SQLite): constant-current samples go through `cell.run_constant_current` in chunks of up to
`MAX_BATCH_SAMPLES`, with the limits as its E bounds whenever the tests reduce to "Ewe outside
[lo, hi]"; batches of rows are encoded with numpy (float32 arrays viewed as uint32, ticks in
integer arithmetic), and batches of at most `SMALL_BATCH` rows (a 1 s poll brings one) with
one `struct` pack, where numpy's per-call overhead would cost ten times more.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Literal, TypeVar

import numpy as np

from labctl_drivers.biologic.eclib import (
    CurrentValues,
    DataInfo,
    DllChannelState,
    EccParam,
    EClibError,
    ParamType,
)
from labctl_drivers.sim.cell_model import CellModel
from labctl_drivers.techniques import eis_point_duration_s

S, B, I32 = ParamType.SINGLE, ParamType.BOOLEAN, ParamType.INT32
_T = TypeVar("_T")

#: `I_Range` codes: 100 pA * 10**n for n = 0..10 (10 = 1 A); 12 = Auto.
I_RANGE_AUTO = 12
I_RANGE_FULL_SCALE_A: tuple[float, ...] = tuple(100e-12 * 10**n for n in range(11))
#: `E_Range` codes: +-2.5 V, +-5 V, +-10 V, Auto (the twin measures Auto on +-10 V).
E_RANGE_V: dict[int, float] = {0: 2.5, 1: 5.0, 2: 10.0, 3: 10.0}
E_RANGE_DEFAULT = 2
#: The SP-300 standard board's compliance.
MAX_CURRENT_A = 0.5
MAX_VOLTAGE_V = 10.0
#: The SP-300's impedance frequency range (10 uHz .. 7 MHz).
EIS_F_RANGE_HZ = (1e-5, 7e6)
#: Relative complex noise on each measured impedance.
EIS_NOISE = 0.002
#: The longest integration sample between two limit-test evaluations.
TEST_SAMPLE_S = 1.0
#: The longest piece of open-circuit integration of an idle channel's cell.
REST_SUBSTEP_S = 60.0
#: A step counts at most 2**31 timebase ticks: Duration_step <= tb * 2**31.
MAX_STEP_TICKS = 2**31
#: `BL_GetData` returns at most this many 32-bit words.
WORDS_PER_GET_DATA = 1000
#: Per-channel instrument memory in 32-bit words (the twin's bound).
DEFAULT_MEMORY_WORDS = 1_000_000
#: |Ice| written on EIS rows: the SP-300's counter-electrode columns carry no measurement, and
#: a zero would divide by zero in any reader that forms |Ece|/|Ice|.
ICE_PLACEHOLDER_A = 1e-12
#: Up to this many rows, rows are encoded with `struct` rather than numpy (cheaper when small).
SMALL_BATCH = 16
#: The most samples integrated (and encoded) in one piece.
MAX_BATCH_SAMPLES = 65_536
#: Fraction of Record_every_dE within which a CV vertex counts as on the dE grid.
CV_GRID_TOLERANCE = 1e-3
#: The smallest |I| an EIS row reports (the instrument's noise floor, never a zero).
MIN_ABS_I_A = 1e-12
#: A run that keeps ending techniques without time passing (a forever LOOP over zero-length
#: techniques) is stopped after this many transitions.
MAX_ZERO_TIME_TRANSITIONS = 10_000

Kind = Literal["ocv", "ca", "cp", "calimit", "cplimit", "cv", "peis", "geis", "loop"]


# ---------------------------------------------------------------------------------------------
# technique tables (user's guide v6.04, §7: one table per technique, SP-300 family files "*4.ecc")


@dataclass(frozen=True)
class TechniqueSpec:
    """What the firmware knows about one technique file."""

    ecc: str
    kind: Kind
    technique_id: int
    timebase_s: float
    labels: dict[str, tuple[ParamType, int]]  # label -> (type, array length; 0 = scalar)
    optional: frozenset[str]  # labels with a firmware default
    auto_i_range: bool  # whether I_Range = Auto (12) is accepted


#: Hardware labels every technique accepts.
_HARDWARE: dict[str, tuple[ParamType, int]] = {
    "I_Range": (I32, 0), "E_Range": (I32, 0), "Bandwidth": (I32, 0), "tb": (S, 0),
}
_HARDWARE_OPTIONAL = frozenset({"I_Range", "E_Range", "Bandwidth", "tb"})


def _limit_labels(n: int) -> dict[str, tuple[ParamType, int]]:
    out: dict[str, tuple[ParamType, int]] = {}
    for k in (1, 2, 3):
        out[f"Test{k}_Config"] = (I32, n)
        out[f"Test{k}_Value"] = (S, n)
    out["Exit_Cond"] = (I32, n)
    return out


def _eis_labels(galvano: bool) -> dict[str, tuple[ParamType, int]]:
    q = "Current" if galvano else "Voltage"
    return {
        "vs_initial": (B, 0), "vs_final": (B, 0),
        f"Initial_{q}_step": (S, 0), f"Final_{q}_step": (S, 0),
        "Duration_step": (S, 0), "Step_number": (I32, 0), "Record_every_dT": (S, 0),
        "Record_every_dE" if galvano else "Record_every_dI": (S, 0),
        "Final_frequency": (S, 0), "Initial_frequency": (S, 0), "sweep": (B, 0),
        f"Amplitude_{q}": (S, 0), "Frequency_number": (I32, 0), "Average_N_times": (I32, 0),
        "Correction": (B, 0), "Wait_for_steady": (S, 0),
    }


def _make_specs() -> dict[str, TechniqueSpec]:
    ca = {"Voltage_step": (S, 100), "vs_initial": (B, 100), "Duration_step": (S, 100),
          "Step_number": (I32, 0), "Record_every_dT": (S, 0), "Record_every_dI": (S, 0),
          "N_Cycles": (I32, 0)}
    cp = {"Current_step": (S, 100), "vs_initial": (B, 100), "Duration_step": (S, 100),
          "Step_number": (I32, 0), "Record_every_dT": (S, 0), "Record_every_dE": (S, 0),
          "N_Cycles": (I32, 0)}
    calimit = {"Voltage_step": (S, 20), "vs_initial": (B, 20), "Duration_step": (S, 20),
               "Step_number": (I32, 0), "Record_every_dT": (S, 0), "Record_every_dI": (S, 0),
               "N_Cycles": (I32, 0), **_limit_labels(20)}
    cplimit = {"Current_step": (S, 20), "vs_initial": (B, 20), "Duration_step": (S, 20),
               "Step_number": (I32, 0), "Record_every_dT": (S, 0), "Record_every_dE": (S, 0),
               "N_Cycles": (I32, 0), **_limit_labels(20)}
    table: list[tuple[str, Kind, int, float, dict[str, tuple[ParamType, int]], set[str], bool]] = [
        ("ocv4.ecc", "ocv", 100, 20e-6,
         {"Rest_time_T": (S, 0), "Record_every_dE": (S, 0), "Record_every_dT": (S, 0)},
         set(), True),
        ("ca4.ecc", "ca", 101, 21e-6, ca, set(), True),
        ("cp4.ecc", "cp", 102, 21e-6, cp, set(), False),
        ("cv4.ecc", "cv", 103, 45e-6,
         {"vs_initial": (B, 5), "Voltage_step": (S, 5), "Scan_Rate": (S, 5),
          "Scan_number": (I32, 0), "Record_every_dE": (S, 0), "Average_over_dE": (B, 0),
          "N_Cycles": (I32, 0), "Begin_measuring_I": (S, 0), "End_measuring_I": (S, 0)},
         set(), True),
        ("peis4.ecc", "peis", 104, 24e-6, _eis_labels(False), {"sweep"}, True),
        ("geis4.ecc", "geis", 107, 24e-6, _eis_labels(True), {"sweep"}, False),
        ("loop4.ecc", "loop", 150, 20e-6,
         {"loop_N_times": (I32, 0), "protocol_number": (I32, 0)}, set(), True),
        ("cplimit4.ecc", "cplimit", 155, 34e-6, cplimit, set(), False),
        ("calimit4.ecc", "calimit", 157, 34e-6, calimit, set(), False),
    ]
    specs = {}
    for ecc, kind, tid, tb, labels, optional, auto in table:
        specs[ecc] = TechniqueSpec(
            ecc, kind, tid, tb, {**_HARDWARE, **labels},
            frozenset(optional | (_HARDWARE_OPTIONAL - ({"I_Range"} if not auto else set()))),
            auto,
        )
    return specs


#: The technique files the simulated SP-300 kernel runs, by (lower-case) file name.
TECHNIQUES: dict[str, TechniqueSpec] = _make_specs()
#: Column names of each data layout (SP-300 family), for readers and tests.
COLUMNS: dict[tuple[str, int], tuple[str, ...]] = {
    **{(k, 0): ("t_high", "t_low", "Ewe", "I", "cycle") for k in ("ca", "cp", "calimit",
                                                                  "cplimit")},
    ("ocv", 0): ("t_high", "t_low", "Ewe"),
    ("cv", 0): ("t_high", "t_low", "I", "Ewe", "cycle"),
    **{(k, 0): ("t_high", "t_low", "Ewe", "I") for k in ("peis", "geis")},
    **{(k, 1): ("freq", "abs_Ewe", "abs_I", "Phase_Zwe", "Ewe", "I", "blank0", "abs_Ece",
                "abs_Ice", "Phase_Zce", "Ece", "blank1", "blank2", "t") for k in ("peis", "geis")},
}


# ---------------------------------------------------------------------------------------------
# parsed techniques


@dataclass(frozen=True)
class LimitTest:
    """One active limit test: `variable` 0 = Ewe, 1 = AUX1, 2 = AUX2, 3 = I."""

    variable: int
    greater: bool
    value: float
    logic_and: bool  # how it combines with the tests before it (0 = OR)


@dataclass(frozen=True)
class StepSpec:
    value: float  # control value (V or A) as sent
    relative: bool  # vs_initial
    duration_s: float
    tests: tuple[LimitTest, ...] = ()
    exit_cond: int = 0  # 0 next step, 1 next technique, 2 stop the sequence


@dataclass(frozen=True)
class StepProgram:
    """OCV, CA, CP, CALIMIT, CPLIMIT: a list of held steps, cycled N_Cycles more times."""

    control: Literal["I", "E"]  # OCV is I = 0
    steps: tuple[StepSpec, ...]
    n_cycles: int
    record_dt_s: float
    record_dx: float  # Record_every_dE (I control) or Record_every_dI (E control); 0 = off


@dataclass(frozen=True)
class CVProgram:
    potentials_V: tuple[float, ...]  # Ei, E1, E2, Ei, Ef as sent
    relative: tuple[bool, ...]
    rates_V_s: tuple[float, ...]  # Scan_Rate converted from mV/s
    n_cycles: int
    record_dE_V: float


@dataclass(frozen=True)
class EISProgram:
    galvano: bool
    dc_value: float  # V (PEIS) or A (GEIS)
    dc_relative: bool
    dc_duration_s: float
    record_dt_s: float
    frequencies_Hz: tuple[float, ...]
    amplitude: float  # V (PEIS) or A (GEIS)
    averages: int
    wait_periods: float


@dataclass(frozen=True)
class LoopProgram:
    n_times: int  # -1: for ever
    target: int  # technique index to jump back to


Body = StepProgram | CVProgram | EISProgram | LoopProgram


@dataclass(frozen=True)
class Program:
    """One loaded technique: its file, its position in the sequence and what it will do."""

    spec: TechniqueSpec
    position: int
    body: Body
    i_range: int
    e_range: int

    @property
    def i_compliance_A(self) -> float:
        """The most current the channel can drive with this technique's range."""
        if self.i_range == I_RANGE_AUTO:
            return MAX_CURRENT_A
        return min(I_RANGE_FULL_SCALE_A[self.i_range], MAX_CURRENT_A)

    @property
    def e_span_V(self) -> float:
        return E_RANGE_V[self.e_range]


_MISSING = object()


class _Params:
    """The labelled parameters of one `BL_LoadTechnique` call, validated against the table."""

    def __init__(self, spec: TechniqueSpec, params: Sequence[EccParam]) -> None:
        self.spec = spec
        self.scalars: dict[str, float | int | bool] = {}
        self.arrays: dict[str, dict[int, float | int | bool]] = {}
        for p in params:
            decl = spec.labels.get(p.label)
            if decl is None:
                raise self.fail(f"unknown label {p.label!r}")
            ptype, length = decl
            try:
                sent = ParamType(int(p.type))
            except ValueError:
                raise self.fail(f"{p.label}: unknown ParamType {p.type!r}") from None
            if sent is not ptype:
                raise self.fail(f"{p.label} is {ptype.name}, sent as {sent.name}")
            value = self._coerce(p, ptype)
            index = int(p.index)
            if length == 0:
                if index != 0:
                    raise self.fail(f"{p.label} is a scalar, sent with index {index}")
                self.scalars[p.label] = value
            else:
                if not 0 <= index < length:
                    raise self.fail(f"{p.label}[{index}] outside 0..{length - 1}")
                self.arrays.setdefault(p.label, {})[index] = value
        for label, (_, length) in spec.labels.items():
            if length == 0 and label not in spec.optional and label not in self.scalars:
                raise self.fail(f"missing {label}")

    def fail(self, reason: str) -> EClibError:
        return EClibError(-4, f"BL_LoadTechnique ({self.spec.ecc}: {reason})")

    def _coerce(self, p: EccParam, ptype: ParamType) -> float | int | bool:
        v = p.value
        if ptype is ParamType.SINGLE:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, Real):
                raise self.fail(f"{p.label}: {v!r} is not a single")
            x = float(np.float32(float(v)))
            if not math.isfinite(x):
                raise self.fail(f"{p.label}: {v!r} is not a finite single")
            return x
        if ptype is ParamType.INT32:
            if not isinstance(v, Integral):
                raise self.fail(f"{p.label}: {v!r} is not an int32")
            if not -(2**31) <= int(v) < 2**31:
                raise self.fail(f"{p.label}: {v!r} overflows an int32")
            return int(v)
        if isinstance(v, (bool, np.bool_)) or (isinstance(v, Integral) and int(v) in (0, 1)):
            return bool(v)
        raise self.fail(f"{p.label}: {v!r} is not a boolean")

    def get(self, label: str, default: object = _MISSING) -> float | int | bool:
        if label in self.scalars:
            return self.scalars[label]
        if default is _MISSING:
            raise self.fail(f"missing {label}")
        return default  # type: ignore[return-value]

    def at(self, label: str, index: int) -> float | int | bool:
        try:
            return self.arrays[label][index]
        except KeyError:
            raise self.fail(f"missing {label}[{index}]") from None

    def duration(self, value: float, name: str) -> float:
        """A step duration the timebase can count (0 <= d <= tb * 2**31)."""
        limit = self.spec.timebase_s * MAX_STEP_TICKS
        if value < 0:
            raise self.fail(f"{name} = {value} s is negative")
        if value > limit:
            raise self.fail(
                f"{name} = {value:.6g} s exceeds the {self.spec.timebase_s * 1e6:g} us "
                f"timebase's longest step, tb * 2**31 = {limit:.6g} s"
            )
        return float(value)


def parse_technique(ecc_file: str, params: Sequence[EccParam], position: int) -> Program:
    """Validate one `BL_LoadTechnique` call as the kernel does; raise `EClibError` like the DLL.

    -400 for a file the SP-300 family does not have, -4 (ERR_GEN_INVALIDPARAMETERS) for an
    unknown label, a wrong ParamType, a missing required label or a value the instrument refuses
    (a step longer than tb * 2**31, Auto current range where the technique needs a fixed one, a
    current beyond the selected range, ...).
    """
    spec = TECHNIQUES.get(str(ecc_file).lower())
    if spec is None:
        raise EClibError(-400, f"BL_LoadTechnique ({ecc_file!r} is not an SP-300 technique file)")
    pp = _Params(spec, params)
    default_i = I_RANGE_AUTO if spec.auto_i_range else _MISSING
    i_range = int(pp.get("I_Range", default_i))
    if not (0 <= i_range < len(I_RANGE_FULL_SCALE_A) or i_range == I_RANGE_AUTO):
        raise pp.fail(f"I_Range = {i_range} is not an SP-300 current range")
    if i_range == I_RANGE_AUTO and not spec.auto_i_range:
        raise pp.fail(f"I_Range = Auto is not allowed for {spec.kind.upper()}")
    e_range = int(pp.get("E_Range", E_RANGE_DEFAULT))
    if e_range not in E_RANGE_V:
        raise pp.fail(f"E_Range = {e_range} is not an SP-300 potential range")
    bandwidth = int(pp.get("Bandwidth", 5))
    if not 1 <= bandwidth <= 9:
        raise pp.fail(f"Bandwidth = {bandwidth} outside 1..9")
    tb = float(pp.get("tb", spec.timebase_s))
    if tb < 0:
        raise pp.fail(f"tb = {tb} is negative")
    fs = I_RANGE_FULL_SCALE_A[i_range] if i_range != I_RANGE_AUTO else MAX_CURRENT_A
    e_span = E_RANGE_V[e_range]
    body: Body
    if spec.kind in ("ocv", "ca", "cp", "calimit", "cplimit"):
        body = _parse_steps(pp, fs, e_span)
    elif spec.kind == "cv":
        body = _parse_cv(pp, e_span)
    elif spec.kind in ("peis", "geis"):
        body = _parse_eis(pp, fs, e_span)
    else:
        n_times = int(pp.get("loop_N_times"))
        target = int(pp.get("protocol_number"))
        if n_times < -1:
            raise pp.fail(f"loop_N_times = {n_times} (>= 0, or -1 for ever)")
        if not 0 <= target < position:
            raise pp.fail(f"protocol_number = {target} is not a technique before this LOOP "
                          f"(at index {position})")
        body = LoopProgram(n_times, target)
    return Program(spec, position, body, i_range, e_range)


def _record_interval(pp: _Params, label: str) -> float:
    v = float(pp.get(label))
    if v < 0:
        raise pp.fail(f"{label} = {v} is negative")
    return v


def _parse_steps(pp: _Params, fs: float, e_span: float) -> StepProgram:
    kind = pp.spec.kind
    if kind == "ocv":
        duration = pp.duration(float(pp.get("Rest_time_T")), "Rest_time_T")
        return StepProgram("I", (StepSpec(0.0, False, duration),), 0,
                           _record_interval(pp, "Record_every_dT"),
                           _record_interval(pp, "Record_every_dE"))
    potentio = kind in ("ca", "calimit")
    control_label = "Voltage_step" if potentio else "Current_step"
    n_max = pp.spec.labels[control_label][1]
    last = int(pp.get("Step_number"))
    if not 0 <= last < n_max:
        raise pp.fail(f"Step_number = {last} outside 0..{n_max - 1}")
    n_cycles = int(pp.get("N_Cycles"))
    if n_cycles < 0:
        raise pp.fail(f"N_Cycles = {n_cycles} is negative")
    limited = kind in ("calimit", "cplimit")
    steps = []
    for i in range(last + 1):
        value = float(pp.at(control_label, i))
        relative = bool(pp.at("vs_initial", i))
        duration = pp.duration(float(pp.at("Duration_step", i)), f"Duration_step[{i}]")
        if not relative:
            if potentio and abs(value) > e_span:
                raise pp.fail(f"Voltage_step[{i}] = {value} V outside the +-{e_span} V range")
            if not potentio and abs(value) > fs * (1 + 1e-6):
                raise pp.fail(f"Current_step[{i}] = {value} A beyond the selected I_Range's "
                              f"full scale {fs:g} A")
            if not potentio and abs(value) > MAX_CURRENT_A:
                raise pp.fail(f"Current_step[{i}] = {value} A beyond the board's "
                              f"+-{MAX_CURRENT_A} A")
        tests: list[LimitTest] = []
        exit_cond = 0
        if limited:
            for k in (1, 2, 3):
                cfg = int(pp.at(f"Test{k}_Config", i))
                val = float(pp.at(f"Test{k}_Value", i))
                if cfg & 1:
                    variable = cfg >> 5
                    if variable not in (0, 1, 2, 3):
                        raise pp.fail(f"Test{k}_Config[{i}] = {cfg}: variable {variable} is not "
                                      "Ewe, AUX1, AUX2 or I")
                    tests.append(LimitTest(variable, bool(cfg & 4), val, bool(cfg & 2)))
            exit_cond = int(pp.at("Exit_Cond", i))
            if exit_cond not in (0, 1, 2):
                raise pp.fail(f"Exit_Cond[{i}] = {exit_cond} (0, 1 or 2)")
        steps.append(StepSpec(value, relative, duration, tuple(tests), exit_cond))
    dx_label = "Record_every_dI" if potentio else "Record_every_dE"
    return StepProgram("E" if potentio else "I", tuple(steps), n_cycles,
                       _record_interval(pp, "Record_every_dT"), _record_interval(pp, dx_label))


def _parse_cv(pp: _Params, e_span: float) -> CVProgram:
    potentials = tuple(float(pp.at("Voltage_step", k)) for k in range(5))
    relative = tuple(bool(pp.at("vs_initial", k)) for k in range(5))
    rates_mV_s = tuple(float(pp.at("Scan_Rate", k)) for k in range(5))
    for k in range(5):
        if not relative[k] and abs(potentials[k]) > e_span:
            raise pp.fail(f"Voltage_step[{k}] = {potentials[k]} V outside +-{e_span} V")
        if k > 0 and rates_mV_s[k] <= 0:
            raise pp.fail(f"Scan_Rate[{k}] = {rates_mV_s[k]} mV/s must be positive")
    if int(pp.get("Scan_number")) != 2:
        raise pp.fail("Scan_number must be 2")
    n_cycles = int(pp.get("N_Cycles"))
    if n_cycles < 0:
        raise pp.fail(f"N_Cycles = {n_cycles} is negative")
    dE = float(pp.get("Record_every_dE"))
    if dE <= 0:
        raise pp.fail(f"Record_every_dE = {dE} V must be positive")
    begin, end = float(pp.get("Begin_measuring_I")), float(pp.get("End_measuring_I"))
    if not 0.0 <= begin < end <= 1.0:
        raise pp.fail(f"Begin_measuring_I/End_measuring_I = {begin}/{end}: need 0 <= b < e <= 1")
    pp.get("Average_over_dE")
    return CVProgram(potentials, relative, tuple(r / 1000.0 for r in rates_mV_s), n_cycles, dE)


def eis_sweep_frequencies(f_initial: float, f_final: float, n: int, linear: bool) -> list[float]:
    """The instrument's frequency list: `n` points from Initial_frequency to Final_frequency,
    both included, logarithmically spaced (`sweep` false, the default) or linearly."""
    if n == 1:
        return [f_initial]
    if linear:
        return [f_initial + (f_final - f_initial) * k / (n - 1) for k in range(n)]
    ratio = f_final / f_initial
    return [f_initial * ratio ** (k / (n - 1)) for k in range(n)]


def _parse_eis(pp: _Params, fs: float, e_span: float) -> EISProgram:
    galvano = pp.spec.kind == "geis"
    q = "Current" if galvano else "Voltage"
    if int(pp.get("Step_number")) != 0:
        raise pp.fail("Step_number > 0 (staircase EIS) is not simulated")
    dc = float(pp.get(f"Initial_{q}_step"))
    relative = bool(pp.get("vs_initial"))
    pp.get("vs_final")
    pp.get(f"Final_{q}_step")
    duration = pp.duration(float(pp.get("Duration_step")), "Duration_step")
    record_dt = _record_interval(pp, "Record_every_dT")
    _record_interval(pp, "Record_every_dE" if galvano else "Record_every_dI")
    fi, ff = float(pp.get("Initial_frequency")), float(pp.get("Final_frequency"))
    lo, hi = EIS_F_RANGE_HZ
    for name, f in (("Initial_frequency", fi), ("Final_frequency", ff)):
        if not lo * (1 - 1e-6) <= f <= hi * (1 + 1e-6):
            raise pp.fail(f"{name} = {f} Hz outside {lo:g}..{hi:g} Hz")
    n = int(pp.get("Frequency_number"))
    if n < 1:
        raise pp.fail(f"Frequency_number = {n} must be >= 1")
    averages = int(pp.get("Average_N_times"))
    if averages < 1:
        raise pp.fail(f"Average_N_times = {averages} must be >= 1")
    wait = float(pp.get("Wait_for_steady"))
    if wait < 0:
        raise pp.fail(f"Wait_for_steady = {wait} periods is negative")
    pp.get("Correction")
    amplitude = float(pp.get(f"Amplitude_{q}"))
    if amplitude <= 0:
        raise pp.fail(f"Amplitude_{q} = {amplitude} must be positive")
    if galvano:
        if amplitude > 0.5 * fs * (1 + 1e-6):
            raise pp.fail(f"Amplitude_Current = {amplitude} A above 50 % of the I range "
                          f"({fs:g} A)")
        if not relative and abs(dc) > fs * (1 + 1e-6):
            raise pp.fail(f"Initial_Current_step = {dc} A beyond the I range ({fs:g} A)")
    elif not relative and abs(dc) > e_span:
        raise pp.fail(f"Initial_Voltage_step = {dc} V outside +-{e_span} V")
    linear = bool(pp.get("sweep", False))
    freqs = tuple(eis_sweep_frequencies(fi, ff, n, linear))
    return EISProgram(galvano, dc, relative, duration, record_dt, freqs, amplitude, averages,
                      wait)


# ---------------------------------------------------------------------------------------------
# data encoding: what the DLL hands over (uint32 words, singles as float32 bit patterns, times
# as timebase ticks since the technique execution started)


def _singles(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def _time_words(t_s: np.ndarray, tb: float) -> tuple[np.ndarray, np.ndarray]:
    ticks = np.rint(np.asarray(t_s, dtype=np.float64) / tb).astype(np.uint64)
    return (ticks >> np.uint64(32)).astype(np.uint32), (ticks & np.uint64(0xFFFFFFFF)).astype(
        np.uint32)


_Seq = Sequence[float] | np.ndarray
_ROW_FORMATS = {3: "IIf", 4: "IIff", 5: "IIffI"}
_STRUCTS: dict[tuple[int, int], struct.Struct] = {}
#: One row of each width, packed by one struct call and wrapped as a (1, cols) array.
_ONE_ROW = {cols: (struct.Struct("<" + fmt), np.dtype((np.uint32, cols)))
            for cols, fmt in _ROW_FORMATS.items()}
_TICK_MASK = 0xFFFFFFFF


def _is_seq(x: object) -> bool:
    return isinstance(x, (list, tuple, np.ndarray))


def _encode_small(kind: str, cols: int, tb: float, t_s: _Seq, E: _Seq | float,
                  I: _Seq | float, cycle: int | Sequence[int]) -> np.ndarray:
    """`encode_rows` for a handful of rows: one `struct` pack of Python floats costs a few
    microseconds where a dozen numpy calls cost tens (a 1 s poll brings one row)."""
    n = len(t_s)
    e_seq, i_seq, c_seq = _is_seq(E), _is_seq(I), _is_seq(cycle)
    vals: list[float | int] = []
    for k in range(n):
        ticks = round(t_s[k] / tb)
        e = E[k] if e_seq else E  # type: ignore[index]
        i = I[k] if i_seq else I  # type: ignore[index]
        if cols == 3:
            vals += (ticks >> 32, ticks & 0xFFFFFFFF, e)
            continue
        c = cycle[k] if c_seq else cycle  # type: ignore[index]
        if kind == "cv":
            vals += (ticks >> 32, ticks & 0xFFFFFFFF, i, e, c)
        elif cols == 5:
            vals += (ticks >> 32, ticks & 0xFFFFFFFF, e, i, c)
        else:
            vals += (ticks >> 32, ticks & 0xFFFFFFFF, e, i)
    st = _STRUCTS.get((cols, n))
    if st is None:
        st = _STRUCTS[(cols, n)] = struct.Struct("<" + _ROW_FORMATS[cols] * n)
    buf = bytearray(st.size)
    st.pack_into(buf, 0, *vals)
    return np.frombuffer(buf, dtype=np.uint32).reshape(n, cols)


def encode_rows(kind: str, process: int, tb: float, t_s: _Seq, E: _Seq | float,
                I: _Seq | float, cycle: int | Sequence[int] = 0) -> np.ndarray:
    """Time-series rows of `kind` as an (n, NbCols) uint32 array: vectorised numpy (float32
    arrays viewed as uint32, ticks by integer arithmetic), or `_encode_small` for a few rows."""
    n = len(t_s)
    cols = len(COLUMNS[(kind, process)])
    if n <= SMALL_BATCH:
        return _encode_small(kind, cols, tb, t_s, E, I, cycle)
    out = np.empty((n, cols), dtype=np.uint32)
    out[:, 0], out[:, 1] = _time_words(t_s, tb)
    if kind == "ocv":
        out[:, 2] = _singles(E)
    elif kind == "cv":
        out[:, 2] = _singles(I)
        out[:, 3] = _singles(E)
        out[:, 4] = np.asarray(cycle, dtype=np.uint32)
    else:
        out[:, 2] = _singles(E)
        out[:, 3] = _singles(I)
        if cols == 5:
            out[:, 4] = np.asarray(cycle, dtype=np.uint32)
    return out


def encode_eis_rows(freq: np.ndarray, abs_E: np.ndarray, abs_I: np.ndarray, phase: np.ndarray,
                    E: np.ndarray, I: np.ndarray, t_s: np.ndarray) -> np.ndarray:
    """Process-1 rows (one per frequency, 14 words)."""
    out = np.zeros((len(freq), 14), dtype=np.uint32)
    out[:, 0] = _singles(freq)
    out[:, 1] = _singles(abs_E)
    out[:, 2] = _singles(abs_I)
    out[:, 3] = _singles(phase)
    out[:, 4] = _singles(E)
    out[:, 5] = _singles(I)
    # 6 blank, 7 |Ece| = 0.0, 9 Phase_Zce = 0.0, 10 Ece = 0.0, 11-12 blank: all zero words
    out[:, 8] = _singles(np.full(len(freq), ICE_PLACEHOLDER_A))
    out[:, 13] = _singles(t_s)
    return out


# ---------------------------------------------------------------------------------------------
# the DLL's structures, built at poll rate

_F32X4 = struct.Struct("<4f")


def _frozen(cls: type[_T], fields: dict[str, object]) -> _T:
    """An instance of one of eclib.py's frozen dataclasses from its complete field dict.

    What the generated `__init__` does (one `object.__setattr__` per field, 19 for
    `CurrentValues`) costs more than everything else an empty `BL_GetData` does; the structures
    have no `__post_init__`, so filling `__dict__` directly builds the same object (equality,
    repr and pickling read the same attributes)."""
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


_CV_DEFAULTS: dict[str, object] = dict(CurrentValues(State=0).__dict__)


# ---------------------------------------------------------------------------------------------
# instrument memory


@dataclass(frozen=True)
class SegmentKey:
    """Which technique execution and process rows belong to (DataInfo's fields)."""

    technique_index: int
    technique_id: int
    process: int
    loop: int
    start_time_s: float


class _Chunk:
    __slots__ = ("key", "ncols", "nrows", "pos", "words")

    def __init__(self, key: SegmentKey, ncols: int, words: np.ndarray) -> None:
        self.key = key
        self.ncols = ncols
        self.nrows = words.size // ncols
        self.words = words  # flat, row-major: what BL_GetData hands out
        self.pos = 0  # rows already handed out or dropped


class DataMemory:
    """A channel's bounded data memory: rows in arrival order, oldest dropped when full."""

    def __init__(self, capacity_words: int) -> None:
        self.capacity_words = int(capacity_words)
        self._chunks: deque[_Chunk] = deque()
        self.words = 0
        self.skipped_rows = 0  # dropped since the last BL_GetData that reported them

    def __len__(self) -> int:
        return len(self._chunks)

    def add(self, key: SegmentKey, rows: np.ndarray) -> None:
        """Append (n, NbCols) rows of one segment."""
        if rows.shape[0] == 0:
            return
        self.add_flat(key, rows.shape[1], rows.reshape(-1))

    def add_flat(self, key: SegmentKey, ncols: int, words: np.ndarray) -> None:
        """Append rows of one segment given as flat row-major words."""
        self._chunks.append(_Chunk(key, ncols, words))
        self.words += words.size
        if self.words > self.capacity_words:
            self._drop(self.words - self.capacity_words)

    def _drop(self, excess: int) -> None:
        while excess > 0 and self._chunks:
            ch = self._chunks[0]
            drop = min(ch.nrows - ch.pos, -(-excess // ch.ncols))
            ch.pos += drop
            self.words -= drop * ch.ncols
            self.skipped_rows += drop
            excess -= drop * ch.ncols
            if ch.pos >= ch.nrows:
                self._chunks.popleft()

    def clear(self) -> None:
        self._chunks.clear()
        self.words = 0
        self.skipped_rows = 0

    def take(
        self, max_words: int = WORDS_PER_GET_DATA
    ) -> tuple[SegmentKey, int, np.ndarray] | None:
        """The oldest rows of one technique execution and process, at most `max_words` words:
        (key, NbCols, flat words)."""
        chunks = self._chunks
        if not chunks:
            return None
        first = chunks[0]
        key, ncols = first.key, first.ncols
        room = max(1, max_words // ncols)
        if (first.nrows - first.pos <= room
                and (len(chunks) == 1 or chunks[1].key != key)):
            chunks.popleft()  # the usual poll: one chunk, handed out as it is
            words = first.words if first.pos == 0 else first.words[first.pos * ncols:]
            self.words -= words.size
            return key, ncols, words
        parts = []
        while chunks and room > 0:
            ch = chunks[0]
            if ch.key != key:
                break
            n = min(room, ch.nrows - ch.pos)
            parts.append(ch.words[ch.pos * ncols:(ch.pos + n) * ncols])
            ch.pos += n
            room -= n
            if ch.pos >= ch.nrows:
                chunks.popleft()
        words = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self.words -= words.size
        return key, ncols, words


# ---------------------------------------------------------------------------------------------
# technique executions


def _eval_tests(tests: tuple[LimitTest, ...], E: float, I: float) -> bool:
    """The combined outcome of a step's active tests, folded left to right: each test after
    the first joins the result so far with OR (logic bit 0) or AND (logic bit 1). AUX1/AUX2
    read 0 V: the twin has no auxiliary inputs wired."""
    result: bool | None = None
    for t in tests:
        x = E if t.variable == 0 else I if t.variable == 3 else 0.0
        v = x > t.value if t.greater else x < t.value
        if result is None:
            result = v
        else:
            result = (result and v) if t.logic_and else (result or v)
    return bool(result)


_ALWAYS = "always"


def _as_bounds(tests: tuple[LimitTest, ...], I: float, span: float
               ) -> tuple[float, float] | str | None:
    """At constant current the tests are a function of Ewe alone; when it is "Ewe < lo or
    Ewe > hi" return (lo, hi) so the cell can integrate whole chunks with those bounds (the
    fast path), `_ALWAYS` when they hold whatever Ewe is, None when they need a per-sample
    evaluation (a band, from AND logic). Ewe is measured clipped to +-span."""
    if not tests:
        return (-math.inf, math.inf)
    vals = sorted({t.value for t in tests if t.variable == 0})
    probes = [-2 * MAX_VOLTAGE_V - 1.0] if not vals else [vals[0] - 1.0]
    for a, b in itertools.pairwise(vals):
        probes += [a, 0.5 * (a + b)]
    if vals:
        probes += [vals[-1], vals[-1] + 1.0]
    truth = [_eval_tests(tests, p, I) for p in probes]
    if all(truth):
        return _ALWAYS
    candidates_lo = [-math.inf, *vals]
    candidates_hi = [*vals, math.inf]
    for lo in candidates_lo:
        for hi in candidates_hi:
            if lo <= hi and all((p < lo or p > hi) == t for p, t in zip(probes, truth)):
                if lo > span or hi < -span:
                    return _ALWAYS
                return (lo if lo > -span else -math.inf, hi if hi < span else math.inf)
    return None


class Run:
    """One technique execution. Times are seconds since the execution started."""

    def __init__(self, ch: ChannelFirmware, prog: Program, key: SegmentKey) -> None:
        self.ch = ch
        self.prog = prog
        self.key = key
        self.tb = prog.spec.timebase_s
        self.ended = False
        self.end_s = 0.0
        self.stop_sequence = False
        self.t_cell = 0.0  # how far the cell has been integrated
        self.step = 0
        self.cycle = 0
        self.frequency_Hz = 0.0

    def advance(self, until: float) -> None:
        raise NotImplementedError

    def settle(self, t: float) -> None:
        """Integrate the cell up to `t` without recording (the channel is being stopped)."""
        raise NotImplementedError

    def _end(self, t: float, stop: bool) -> None:
        self.ended = True
        self.end_s = t
        self.stop_sequence = stop
        self.t_cell = t


class StepRun(Run):
    """OCV, CA, CP, CALIMIT, CPLIMIT (and the DC hold before an EIS sweep)."""

    def __init__(self, ch: ChannelFirmware, prog: Program, key: SegmentKey, body: StepProgram,
                 E0: float, I0: float, kind: str | None = None) -> None:
        super().__init__(ch, prog, key)
        self.body = body
        self.kind = kind or prog.spec.kind
        self.E0, self.I0 = E0, I0
        dT = body.record_dt_s
        if dT > 0:
            per = max(1, math.ceil(dT / TEST_SAMPLE_S - 1e-9))
            self.sample, self.m = dT / per, per
        else:
            self.sample, self.m = TEST_SAMPLE_S, 0
        self.ref = E0 if body.control == "I" else I0  # Record_every_dX reference
        self._cols = len(COLUMNS[(self.kind, 0)])
        self._row_struct = _ONE_ROW[self._cols][0]
        self.step_start = 0.0
        self._enter_step(0.0)

    # -- step bookkeeping ----------------------------------------------------------------------
    def _enter_step(self, t: float) -> None:
        st = self.body.steps[self.step]
        self.step_start = t
        self.D = st.duration_s
        # The firmware counts timebase ticks: what is left of a step after its last whole
        # sample is a real (shorter) sample only if it lasts at least one tick. Singles sent
        # as float32 (a 0.01 s record interval is 0.0099999998 s) leave sub-tick remainders.
        half_tick = 0.5 * self.tb
        self.n_full = math.floor((self.D + half_tick) / self.sample)
        tail = self.D - self.n_full * self.sample
        self.tail = tail if tail >= half_tick else 0.0
        self.tail_done = self.tail == 0.0
        self.k = 0
        self.last_rec = -1
        ch = self.ch
        if self.body.control == "I":
            i_set = st.value + (self.I0 if st.relative else 0.0)
            fs = ch.i_compliance
            self.setpoint = max(-fs, min(fs, i_set))
            self.bounds = _as_bounds(st.tests, self.setpoint, ch.e_span)
        else:
            e_set = st.value + (self.E0 if st.relative else 0.0)
            self.setpoint = max(-MAX_VOLTAGE_V, min(MAX_VOLTAGE_V, e_set))
            self.bounds = None
        self.tests = st.tests
        # the fast path's arguments, worked out once per step (a 1 s poll runs it every time)
        b = self.bounds
        self._fast = isinstance(b, tuple)
        lo, hi = b if isinstance(b, tuple) else (-math.inf, math.inf)
        self._lo, self._hi = lo, hi
        self._lo_arg = None if lo == -math.inf else lo
        self._hi_arg = None if hi == math.inf else hi
        self._one_fast = self._fast and self.m == 1

    def _next_step(self, t: float) -> None:
        self.step += 1
        if self.step >= len(self.body.steps):
            if self.cycle >= self.body.n_cycles:
                self.step -= 1
                self._end(t, False)
                return
            self.step = 0
            self.cycle += 1
        self._enter_step(t)

    def _on_limit(self, t: float) -> None:
        cond = self.body.steps[self.step].exit_cond
        if cond == 0:
            self._next_step(t)
        else:
            self._end(t, cond == 2)

    # -- integration -----------------------------------------------------------------------------
    def advance(self, until: float) -> None:
        half_tick = 0.5 * self.tb
        while not self.ended:
            avail = until - self.step_start
            if self.k < self.n_full:
                k_to = min(self.n_full, math.floor((avail + half_tick) / self.sample))
                if k_to <= self.k:
                    return
                fired = False
                while self.k < k_to:
                    # bounded batches: hours of unattended fast records never make one huge array
                    if self._samples(min(k_to - self.k, MAX_BATCH_SAMPLES)):
                        fired = True
                        break
                if fired:
                    continue  # the step changed (Exit_Cond 0) or the technique ended
                if self.k < self.n_full:
                    return
            if not self.tail_done:
                if avail < self.D - 0.5 * self.tb:
                    return
                self.tail_done = True
                if self._tail():
                    continue
            self._final_record()
            self._next_step(self.step_start + self.D)

    def _measure(self, n: int) -> tuple[np.ndarray | list[float], list[float] | float, bool]:
        """Integrate `n` samples (fewer if a test fires) where the fast path does not apply:
        (Ewe, I, fired). Ewe is the cell's array (not yet clipped to the E range) when the tests
        hold whatever Ewe is, else clipped floats from a per-sample loop; I is the set current
        or the measured list."""
        ch, cell, dt = self.ch, self.ch.cell, self.sample
        assert cell is not None
        span = ch.e_span
        if self.body.control == "I":
            i_set = self.setpoint
            if self.bounds == _ALWAYS:
                return cell.run_constant_current(i_set, dt, 1), i_set, True
            out: list[float] = []
            fired = False
            for _ in range(n):
                e = min(span, max(-span, cell.step(i_set, dt)))
                out.append(e)
                if _eval_tests(self.tests, e, i_set):
                    fired = True
                    break
            return out, i_set, fired
        Es: list[float] = []
        Is: list[float] = []
        fired = False
        tests = self.tests
        for _ in range(n):
            e, i = ch.hold_E(self.setpoint, dt)
            e = min(span, max(-span, e))
            Es.append(e)
            Is.append(i)
            if tests and _eval_tests(tests, e, i):
                fired = True
                break
        return Es, Is, fired

    def _one_record(self) -> bool:
        """`_samples(1)` for the case a 1 s poll meets over and over: constant current, limits
        on Ewe only, every sample a record. Same result, a fraction of the cost."""
        ch = self.ch
        cell = ch.cell
        assert cell is not None
        i = self.setpoint
        # one sample: `cell.step` is `run_constant_current(i, sample, 1, lo, hi)[0]` (a single
        # step stops on the limits only after itself) without the array around one value
        e = float(cell.step(i, self.sample))
        fired = e > self._hi or e < self._lo
        span = ch.e_span
        if e > span:
            e = span
        elif e < -span:
            e = -span
        k = self.k = self.k + 1
        t = self.t_cell = self.step_start + k * self.sample
        ch.E, ch.I = e, i
        self.ref, self.last_rec = e, k
        ticks = round(t / self.tb)
        st = self._row_struct
        words = np.frombuffer(bytearray(st.pack(
            *(ticks >> 32, ticks & _TICK_MASK, e, i, self.cycle)[:self._cols])), dtype=np.uint32)
        ch.memory.add_flat(self.key, self._cols, words)
        if fired:
            self._on_limit(t)
        return fired

    def _samples(self, n: int) -> bool:
        """Integrate up to `n` samples of the step, record what the instrument records; True
        when a limit test fired (the step or technique has then moved on)."""
        if n == 1 and self._one_fast:
            return self._one_record()
        k0 = self.k
        if self._fast:  # constant current, tests on Ewe only: whole chunks in the cell
            cell = self.ch.cell
            assert cell is not None
            E = cell.run_constant_current(self.setpoint, self.sample, n, self._lo_arg,
                                          self._hi_arg)
            last = float(E[-1])
            fired = last > self._hi or last < self._lo
            I: np.ndarray | list[float] | float = self.setpoint
        else:
            E, I, fired = self._measure(n)
        c = len(E)
        k = self.k = k0 + c
        dt = self.sample
        base = self.step_start
        self.t_cell = base + k * dt
        span = self.ch.e_span
        if c <= SMALL_BATCH:
            Es = [min(span, max(-span, e)) for e in E.tolist()] if isinstance(E, np.ndarray) else E
            Is = I if isinstance(I, list) else None
            self.ch.E = Es[-1]
            self.ch.I = Is[-1] if Is is not None else float(I)  # type: ignore[arg-type]
            g0 = k0 + 1
            if self.m == 1:  # every sample is a record (1 s records: the usual case)
                self.ref = Es[-1] if Is is None else Is[-1]
                self.last_rec = k
                if c == 1 and self.kind != "cv":  # one sample per 1 s poll: one struct call
                    ticks = round((base + k * dt) / self.tb)
                    st, dtype = _ONE_ROW[self._cols]
                    i = Is[0] if Is is not None else I
                    vals = (ticks >> 32, ticks & _TICK_MASK, Es[0], i, self.cycle)
                    rows = np.frombuffer(bytearray(st.pack(*vals[:self._cols])), dtype=dtype)
                else:
                    rows = _encode_small(self.kind, self._cols, self.tb,
                                         [base + (g0 + j) * dt for j in range(c)], Es,
                                         Is if Is is not None else I,  # type: ignore[arg-type]
                                         self.cycle)
                self.ch.memory.add(self.key, rows)
            else:
                sel = self._select(Es if Is is None else Is, k0, c)
                if sel:
                    self.last_rec = g0 + sel[-1]  # type: ignore[index]
                    self._emit([base + (g0 + j) * dt for j in sel], [Es[j] for j in sel],
                               [Is[j] for j in sel] if Is is not None else I)  # type: ignore
        else:
            Ea = np.clip(np.asarray(E, dtype=np.float64), -span, span)
            Ia = np.asarray(I, dtype=np.float64) if isinstance(I, list) else I
            self.ch.E = float(Ea[-1])
            self.ch.I = float(Ia[-1]) if isinstance(Ia, np.ndarray) else float(Ia)
            sel_a = self._select(Ea if not isinstance(Ia, np.ndarray) else Ia, k0, c)
            if len(sel_a):
                g = k0 + 1 + np.asarray(sel_a)
                self.last_rec = int(g[-1])
                self._emit(base + g * dt, Ea[sel_a],
                           Ia[sel_a] if isinstance(Ia, np.ndarray) else Ia)
        if fired:
            self._on_limit(self.t_cell)
        return fired

    def _select(self, x: list[float] | np.ndarray, k0: int, c: int) -> list[int] | np.ndarray:
        """Indices (within this batch) of the samples the instrument records: every m-th sample
        of the step (Record_every_dT), and any sample where the recorded variable (Ewe under
        current control, I under potential control) moved by Record_every_dX since the last
        record. A list for a list, an index array for an array."""
        m, dx = self.m, self.body.record_dx
        small = isinstance(x, list)
        if dx <= 0 or m == 1:
            if m == 0:
                return []
            first = 0 if m == 1 else (m - (k0 + 1) % m) % m
            idx = range(first, c, m)
            if len(idx):
                self.ref = float(x[idx[-1]])
            return list(idx) if small else np.arange(first, c, m)
        xs = x if small else x.tolist()
        ref = self.ref
        picked = []
        for j, v in enumerate(xs):
            g = k0 + 1 + j
            if (m and g % m == 0) or abs(v - ref) >= dx:
                picked.append(j)
                ref = v
        self.ref = ref
        return picked if small else np.asarray(picked, dtype=np.int64)

    def _tail(self) -> bool:
        """The last, shorter sample of a step whose duration is not a whole number of samples."""
        ch, cell, dt = self.ch, self.ch.cell, self.tail
        assert cell is not None
        span = ch.e_span
        if self.body.control == "I":
            i = self.setpoint
            e = min(span, max(-span, float(cell.step(i, dt))))
        else:
            e, i = ch.hold_E(self.setpoint, dt)
            e = min(span, max(-span, e))
        ch.E, ch.I = e, float(i)
        self.t_cell = self.step_start + self.D
        if self.tests and _eval_tests(self.tests, e, i):
            self._on_limit(self.t_cell)
            return True
        return False

    def _final_record(self) -> None:
        """A step that ran its whole duration records its end if that is not a record time."""
        if self.D <= 0 or (self.tail == 0.0 and self.last_rec == self.n_full):
            return
        self._emit([self.step_start + self.D], [self.ch.E], [self.ch.I])
        self.ref = self.ch.E if self.body.control == "I" else self.ch.I

    def _emit(self, t: _Seq, E: _Seq, I: _Seq | float) -> None:
        self.ch.memory.add(self.key, encode_rows(self.kind, 0, self.tb, t, E, I, self.cycle))

    def settle(self, t: float) -> None:
        dt = t - self.t_cell
        if dt <= 1e-9 or self.ended:
            return
        cell = self.ch.cell
        assert cell is not None
        if self.body.control == "I":
            self.ch.E = float(cell.step(self.setpoint, dt))
        else:
            self.ch.E, self.ch.I = self.ch.hold_E(self.setpoint, dt)
        self.t_cell = t


class CVRun(Run):
    """cv4.ecc: potential sweeps recorded every Record_every_dE."""

    def __init__(self, ch: ChannelFirmware, prog: Program, key: SegmentKey, body: CVProgram,
                 E0: float) -> None:
        super().__init__(ch, prog, key)
        pts = [v + (E0 if rel else 0.0) for v, rel in zip(body.potentials_V, body.relative)]
        ei, e1, e2, ei2, ef = (max(-MAX_VOLTAGE_V, min(MAX_VOLTAGE_V, p)) for p in pts)
        r = body.rates_V_s
        legs: list[tuple[float, float, float, int]] = []
        start = ei
        for c in range(body.n_cycles + 1):
            legs += [(start, e1, r[1], c), (e1, e2, r[2], c), (e2, ei2, r[3], c)]
            start = ei2
        legs.append((start, ef, r[4], body.n_cycles))
        self.legs = [leg for leg in legs if abs(leg[1] - leg[0]) > 1e-12]
        self.dE = body.record_dE_V
        self.leg = 0
        self.j = 0  # records done in the current leg
        self.leg_t0 = 0.0
        self.E_set = ei
        self._leg_setup()

    def _leg_setup(self) -> None:
        if self.leg >= len(self.legs):
            return
        a, b, rate, c = self.legs[self.leg]
        L = abs(b - a)
        # A vertex within 0.1 % of dE of the dE grid is on it: potentials and dE arrive as
        # float32 singles (0.55 V - 0.5 V is 0.050000012 V), and the instrument's own
        # potential resolution is far coarser than that remainder.
        n = math.floor(L / self.dE + CV_GRID_TOLERANCE)
        self.n_rec = n + (1 if L - n * self.dE > CV_GRID_TOLERANCE * self.dE else 0)
        self.L, self.rate = L, rate
        self.cycle = c

    def advance(self, until: float) -> None:
        ts: list[float] = []
        Is: list[float] = []
        Es: list[float] = []
        cycles: list[int] = []
        span = self.ch.e_span
        while self.leg < len(self.legs):
            a, b, rate, c = self.legs[self.leg]
            if self.j >= self.n_rec:
                self.leg_t0 += self.L / rate
                self.leg += 1
                self.j = 0
                self._leg_setup()
                continue
            p = min(self.L, (self.j + 1) * self.dE)
            t = self.leg_t0 + p / rate
            if t > until + 1e-9:
                break
            E_set = a + math.copysign(p, b - a)
            e, i = self.ch.hold_E(E_set, t - self.t_cell)
            e = min(span, max(-span, e))
            self.t_cell, self.E_set = t, E_set
            self.ch.E, self.ch.I = e, i
            ts.append(t)
            Is.append(i)
            Es.append(e)
            cycles.append(c)
            self.j += 1
        if ts:
            self._emit(ts, Es, Is, cycles)
        if self.leg >= len(self.legs):
            self._end(self.leg_t0, False)

    def _emit(self, ts: list[float], Es: list[float], Is: list[float], cycles: list[int]) -> None:
        self.ch.memory.add(self.key, encode_rows("cv", 0, self.tb, ts, Es, Is, cycles))

    def settle(self, t: float) -> None:
        dt = t - self.t_cell
        if dt > 1e-9 and not self.ended:
            self.ch.E, self.ch.I = self.ch.hold_E(self.E_set, dt)
            self.t_cell = t


class EISRun(Run):
    """peis4.ecc / geis4.ecc: a DC hold (process 0), then one row per frequency (process 1)."""

    def __init__(self, ch: ChannelFirmware, prog: Program, key: SegmentKey, body: EISProgram,
                 E0: float, I0: float) -> None:
        super().__init__(ch, prog, key)
        self.body = body
        base = (I0 if body.galvano else E0) if body.dc_relative else 0.0
        self.dc = body.dc_value + base
        if body.galvano:
            fs = ch.i_compliance
            self.dc = max(-fs, min(fs, self.dc))
            self.at_rest = self.dc == 0.0
        else:
            self.at_rest = body.dc_relative and body.dc_value == 0.0 and I0 == 0.0
        galvanostatic = body.galvano or self.at_rest
        hold = StepProgram("I" if galvanostatic else "E",
                           (StepSpec(0.0 if self.at_rest else self.dc, False,
                                     body.dc_duration_s),),
                           0, body.record_dt_s, 0.0)
        self.hold = StepRun(ch, prog, key, hold, E0, I0, kind=prog.spec.kind)
        self.freqs = body.frequencies_Hz
        durations = [eis_point_duration_s(f, body.averages) + body.wait_periods / f
                     for f in self.freqs]
        self.ends = list(itertools.accumulate(durations, initial=body.dc_duration_s))[1:]
        self.n_done = 0
        self.key1 = SegmentKey(key.technique_index, key.technique_id, 1, key.loop,
                               key.start_time_s)
        self.frequency_Hz = self.freqs[0]

    def advance(self, until: float) -> None:
        if not self.hold.ended:
            self.hold.advance(until)
            self.t_cell = self.hold.t_cell
            if not self.hold.ended:
                return
            self.t_cell = self.body.dc_duration_s
        rows: list[tuple[float, ...]] = []
        while self.n_done < len(self.freqs):
            t_end = self.ends[self.n_done]
            if t_end > until + 1e-9:
                break
            f = self.freqs[self.n_done]
            self._hold(t_end - self.t_cell)
            self.t_cell = t_end
            rows.append(self._measure(f, t_end))
            self.n_done += 1
            if self.n_done < len(self.freqs):
                self.frequency_Hz = self.freqs[self.n_done]
        if rows:
            a = np.asarray(rows, dtype=np.float64)
            self.ch.memory.add(self.key1, encode_eis_rows(*(a[:, k] for k in range(7))))
        if self.n_done >= len(self.freqs):
            self._end(self.ends[-1], False)

    def _hold(self, dt: float) -> None:
        """The DC level held while one frequency is measured (sub-stepped at <= 1 s)."""
        if dt <= 0:
            return
        ch = self.ch
        cell = ch.cell
        assert cell is not None
        if self.at_rest:
            ch.E, ch.I = float(cell.step(0.0, dt)), 0.0
            return
        n = max(1, math.ceil(dt / TEST_SAMPLE_S - 1e-9))
        if self.body.galvano:
            ch.E = float(cell.run_constant_current(self.dc, dt / n, n)[-1])
            ch.I = self.dc
            return
        for _ in range(n):
            ch.E, ch.I = ch.hold_E(self.dc, dt / n)

    def _measure(self, f: float, t: float) -> tuple[float, ...]:
        ch = self.ch
        cell = ch.cell
        assert cell is not None
        at = getattr(cell, "impedance_at", None)
        z = complex(at(f)) if at is not None else complex(cell.impedance(np.array([f]))[0])
        z *= 1.0 + EIS_NOISE * complex(ch.rng.standard_normal(), ch.rng.standard_normal())
        mod = abs(z)
        if self.body.galvano:
            abs_I = self.body.amplitude
            abs_E = min(abs_I * mod, ch.e_span)
        else:
            abs_E = self.body.amplitude
            abs_I = abs_E / mod if mod > 0 else ch.i_compliance
            if self.prog.i_range != I_RANGE_AUTO:
                abs_I = min(abs_I, ch.i_compliance)  # a fixed range saturates
            abs_I = max(abs_I, MIN_ABS_I_A)  # never 0 (an open cell reads the noise floor)
        e = min(ch.e_span, max(-ch.e_span, ch.E))
        return (f, abs_E, abs_I, math.atan2(z.imag, z.real), e, ch.I, t)

    def settle(self, t: float) -> None:
        if not self.hold.ended:
            self.hold.settle(t)
            self.t_cell = self.hold.t_cell
            return
        if t > self.t_cell and not self.ended:
            self._hold(t - self.t_cell)
            self.t_cell = t


# ---------------------------------------------------------------------------------------------
# a channel


@dataclass(frozen=True)
class SimChannelStatus:
    """What the bench (or a test) may read of a channel without going through the DLL."""

    channel: int
    running: bool
    firmware_loaded: bool
    has_cell: bool
    n_techniques: int
    technique_index: int  # running (or last) technique; -1 before any start
    technique_id: int
    step: int
    cycle: int
    Ewe_V: float
    I_A: float
    elapsed_s: float  # of the running (or last) technique execution
    buffered_words: int
    skipped_rows: int


class ChannelFirmware:
    """One channel: its loaded sequence, its run, its cell and its memory."""

    def __init__(self, index: int, rng: np.random.Generator, memory_words: int) -> None:
        self.index = index
        self.rng = rng
        self.memory = DataMemory(memory_words)
        self.cell: CellModel | None = None
        self.firmware_loaded = False
        self.sequence: list[Program] = []
        self.closed = False
        self.running = False
        self.t0 = 0.0  # clock time of start_channel
        self.cell_t = 0.0  # clock time the cell has been integrated to while idle
        self.E = 0.0
        self.I = 0.0
        self.overload = 0  # sign of a current-compliance overload, 0 = none
        self.i_compliance = MAX_CURRENT_A
        self.e_span = MAX_VOLTAGE_V
        self.run: Run | None = None
        self.prog_running: Program | None = None  # running (or last) technique
        self.index_running = -1
        self.tech_start = 0.0  # of the running (or last) execution, s since start_channel
        self.last_elapsed = 0.0
        self.loop_counts: list[int] = []
        self.loop_left: dict[int, int] = {}
        self._values_key: tuple[object, ...] | None = None
        self._values: CurrentValues | None = None
        self._cv_base_key: tuple[object, ...] | None = None
        self._cv_base: dict[str, object] = {}
        self._cv_auto = False
        self._info_key: tuple[object, ...] | None = None
        self._info: DataInfo | None = None
        self._empty_info: DataInfo | None = None
        self._empty_info_of: Run | None = None

    # -- cell --------------------------------------------------------------------------------
    def attach(self, cell: CellModel, now: float) -> None:
        self.advance(now)
        self.cell = cell
        self.cell_t = now
        self.E = float(cell.step(0.0, 0.0))
        if not self.running:
            self.I = 0.0

    def hold_E(self, E_set: float, dt: float) -> tuple[float, float]:
        """One potentiostatic sample with the range's current compliance: (Ewe, I)."""
        cell = self.cell
        assert cell is not None
        fs = self.i_compliance
        s = self.overload
        if s == 0:
            i = float(cell.solve_current(E_set, dt))
            if -fs <= i <= fs:
                return E_set, i
            self.overload = 1 if i > 0 else -1
            return E_set, math.copysign(fs, i)
        E = float(cell.step(s * fs, dt))
        if (E - E_set) * s >= 0:
            self.overload = 0
        return E, s * fs

    def _rest(self, dt: float) -> None:
        """Open circuit for dt: the cell relaxes at zero current."""
        cell = self.cell
        if cell is None or dt <= 0:
            return
        if dt <= REST_SUBSTEP_S:
            E = float(cell.step(0.0, dt))
        else:
            n = int(dt // REST_SUBSTEP_S)
            E = float(cell.run_constant_current(0.0, REST_SUBSTEP_S, n)[-1])
            rem = dt - n * REST_SUBSTEP_S
            if rem > 1e-9:
                E = float(cell.step(0.0, rem))
        self.E = max(-MAX_VOLTAGE_V, min(MAX_VOLTAGE_V, E))
        self.I = 0.0

    # -- sequence ----------------------------------------------------------------------------
    def start(self, now: float) -> None:
        self.advance(now)
        self.running = True
        self.t0 = now
        self.loop_counts = [0] * len(self.sequence)
        self.loop_left = {}
        self._begin(0, 0.0)

    def stop(self, now: float) -> None:
        self.advance(now)
        if not self.running:
            return
        run = self.run
        assert run is not None
        rel = now - self.t0 - self.tech_start
        run.settle(rel)
        self.last_elapsed = rel
        self._finish_at(now)

    def reset(self, now: float) -> None:
        """What loading the firmware does: stop, forget the sequence and the data."""
        self.stop(now)
        self.sequence = []
        self.closed = False
        self.run = None
        self.prog_running = None
        self.index_running = -1
        self.tech_start = 0.0
        self.last_elapsed = 0.0
        self.memory.clear()
        self.firmware_loaded = True

    def _begin(self, index: int, start_rel: float) -> None:
        prog = self.sequence[index]
        loop = self.loop_counts[index]
        self.loop_counts[index] += 1
        key = SegmentKey(index, prog.spec.technique_id, 0, loop, start_rel)
        self.index_running = index
        self.prog_running = prog
        self.tech_start = start_rel
        self.i_compliance = prog.i_compliance_A
        self.e_span = prog.e_span_V
        self.overload = 0
        body = prog.body
        E0, I0 = self.E, self.I
        if isinstance(body, StepProgram):
            run = StepRun(self, prog, key, body, E0, I0)
            self.run = run
            if body.control == "I":
                self.I = run.setpoint
        elif isinstance(body, CVProgram):
            self.run = CVRun(self, prog, key, body, E0)
        elif isinstance(body, EISProgram):
            self.run = EISRun(self, prog, key, body, E0, I0)
        else:  # pragma: no cover - LOOPs are resolved by _next
            raise AssertionError("a LOOP is not executed as a run")

    def _next(self, end_rel: float) -> bool:
        """Go on after the technique that ended at `end_rel`: the next one, or where a LOOP
        jumps back to. False when the sequence is over."""
        nxt = self.index_running + 1
        seq = self.sequence
        while nxt < len(seq) and isinstance(seq[nxt].body, LoopProgram):
            body = seq[nxt].body
            assert isinstance(body, LoopProgram)
            self.loop_counts[nxt] += 1
            left = self.loop_left.get(nxt, body.n_times)
            if left != 0:
                self.loop_left[nxt] = left - 1 if left > 0 else left
                nxt = body.target
            else:
                self.loop_left.pop(nxt, None)
                nxt += 1
        if nxt >= len(seq):
            return False
        self._begin(nxt, end_rel)
        return True

    def _finish_at(self, t_abs: float) -> None:
        self.running = False
        self.I = 0.0
        self.overload = 0
        self.cell_t = t_abs

    def advance(self, now: float) -> None:
        """Integrate this channel up to clock time `now` (lazy firmware)."""
        if now <= self.cell_t:
            return
        if self.cell is None:
            self.cell_t = now
            return
        if self.running:
            rel = now - self.t0
            zero_time = 0
            while True:
                run = self.run
                assert run is not None
                run.advance(rel - self.tech_start)
                if not run.ended:
                    self.cell_t = now
                    return
                end_rel = self.tech_start + run.end_s
                self.last_elapsed = run.end_s
                zero_time = zero_time + 1 if run.end_s <= 0 else 0
                if (run.stop_sequence or zero_time > MAX_ZERO_TIME_TRANSITIONS
                        or not self._next(end_rel)):
                    self._finish_at(self.t0 + end_rel)
                    break
        self._rest(now - self.cell_t)
        self.cell_t = now

    # -- what the DLL reports ----------------------------------------------------------------
    @property
    def timebase_s(self) -> float:
        return self.prog_running.spec.timebase_s if self.prog_running else 0.0

    def elapsed(self, now: float) -> float:
        return now - self.t0 - self.tech_start if self.running else self.last_elapsed

    def i_range_code(self) -> int:
        if self.prog_running is None:
            return I_RANGE_AUTO
        code = self.prog_running.i_range
        if code != I_RANGE_AUTO:
            return code
        a = abs(self.I)
        for n, fs in enumerate(I_RANGE_FULL_SCALE_A):
            if a <= fs:
                return n
        return len(I_RANGE_FULL_SCALE_A) - 1

    def current_values(self, now: float) -> CurrentValues:
        """The channel's values now (cached while nothing changed: a poll's second, empty
        `BL_GetData` reuses its first's)."""
        key = (now, self.running, self.E, self.I, self.memory.words, self.run)
        if key == self._values_key:
            return self._values  # type: ignore[return-value]
        base_key = (self.running, self.run)
        if base_key != self._cv_base_key:  # what stays fixed while one execution runs
            span = self.e_span
            tb = _F32X4.unpack(_F32X4.pack(self.timebase_s, 0.0, 0.0, 0.0))[0]
            self._cv_base = dict(
                _CV_DEFAULTS, State=int(DllChannelState.RUN if self.running
                                        else DllChannelState.STOP),
                TimeBase=tb, EweRangeMin=-span, EweRangeMax=span, IRange=self.i_range_code())
            self._cv_auto = (self.prog_running is not None
                             and self.prog_running.i_range == I_RANGE_AUTO)
            self._cv_base_key = base_key
        run = self.run
        freq = run.frequency_Hz if self.running and run is not None else 0.0
        ewe, i, elapsed, f = _F32X4.unpack(  # the DLL's singles
            _F32X4.pack(self.E, self.I, self.elapsed(now), freq))
        fields = self._cv_base.copy()
        fields["MemFilled"] = 4 * self.memory.words
        fields["Ewe"] = ewe
        fields["I"] = i
        fields["ElapsedTime"] = elapsed
        if f:
            fields["Freq"] = f
        if self._cv_auto:
            fields["IRange"] = self.i_range_code()
        self._values_key = key
        self._values = _frozen(CurrentValues, fields)
        return self._values

    def data_info(self, key: SegmentKey | None, nrows: int, ncols: int) -> DataInfo:
        skipped = self.memory.skipped_rows
        self.memory.skipped_rows = 0
        if key is None:
            prog = self.prog_running
            if skipped == 0 and self._empty_info_of is self.run and self._empty_info:
                return self._empty_info
            tid = prog.spec.technique_id if prog else 0
            info = DataInfo(skipped, 0, 0, max(self.index_running, 0), tid, 0, 0,
                            self.tech_start)
            if skipped == 0:
                self._empty_info, self._empty_info_of = info, self.run
            return info
        ikey = (key, nrows, ncols, skipped)
        if ikey == self._info_key:  # steady polling: the same segment, the same row count
            return self._info  # type: ignore[return-value]
        info = _frozen(DataInfo, {
            "IRQskipped": skipped, "NbRows": nrows, "NbCols": ncols,
            "TechniqueIndex": key.technique_index, "TechniqueID": key.technique_id,
            "ProcessIndex": key.process, "loop": key.loop, "StartTime": key.start_time_s,
            "MuxPad": 0})
        self._info_key, self._info = ikey, info
        return info

    def status(self, now: float) -> SimChannelStatus:
        run = self.run
        idx = self.index_running
        return SimChannelStatus(
            channel=self.index, running=self.running, firmware_loaded=self.firmware_loaded,
            has_cell=self.cell is not None, n_techniques=len(self.sequence),
            technique_index=idx,
            technique_id=self.prog_running.spec.technique_id if self.prog_running else 0,
            step=run.step if run else 0, cycle=run.cycle if run else 0,
            Ewe_V=self.E, I_A=self.I, elapsed_s=self.elapsed(now),
            buffered_words=self.memory.words, skipped_rows=self.memory.skipped_rows,
        )
