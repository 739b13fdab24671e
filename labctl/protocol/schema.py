"""Protocol schema, version 1: what an operator may write in protocols/*.yaml.

Style: a list of steps, each a mapping with a ``kind:`` key (a pydantic discriminated union).
It was chosen over single-key forms (``- rest: {duration: 1 h}``) because every step then looks the
same, the kind is visible on the step's first line, and errors can say "in the galvanostatic step".

    schema_version: 1
    name: strip NaK
    steps:
      - kind: rest
        duration: 1 h
      - kind: galvanostatic
        current: 0.25 mA/cm^2      # areal values are multiplied by the cell's area
        E_max: 0.5 V               # ends normally when E rises above 0.5 V

Every physical value carries a unit (see units.py); only counts are bare integers. Checks that
do not need the cell (units, signs, instrument ranges for absolute values, missing end
conditions) happen here; checks that need the cell area or alloy mass happen in resolve.py.

Inside ``repeat`` with ``vary: {j: [0.1 mA/cm^2, 0.2 mA/cm^2]}``, any quantity in its steps may be
written ``${j}`` or ``-${j}``; the body is expanded once per listed value.

Frozen per version, as tomato (dgbowl/tomato) freezes its payload schemas: a future schema 2
gets its own module and an upgrader.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from labctl.protocol.units import Kind, Qty, QuantityError, describe_kinds, to_qty

SCHEMA_VERSION = 1

# SP-300 ranges (BioLogic SP-300 datasheet): control ±10 V, ±500 mA standard, EIS 10 µHz – 7 MHz.
E_ABS_MAX_V = 10.0
I_ABS_MAX_MA = 500.0
F_MIN_HZ = 10e-6
F_MAX_HZ = 7e6
# Physical bounds on what one step can ask for: no step of a battery test lasts a month
# (a longer test is a repeat of steps, each recorded), and a spring-loaded frame holds tens of
# MPa, never hundreds. A value beyond is a typo ('1e308 s') that would otherwise record for ever.
TIME_MAX_S = 31 * 86400.0
PRESSURE_MAX_MPA = 100.0
#: what the database stores for a protocol's or a step's name (String(200) columns)
NAME_MAX_CHARS = 200

# Marks that let a model validator point an error at one field (see errors_from_pydantic).
_FIELD_MARK = "\x00"
_SEP = "\x01"


@dataclass(frozen=True)
class Ref:
    """A ``${name}`` placeholder inside a repeat body, filled from the repeat's ``vary``."""

    name: str
    negate: bool = False

    def __str__(self) -> str:
        return ("-" if self.negate else "") + "${" + self.name + "}"


_REF = re.compile(r"^\s*(-?)\$\{([A-Za-z_][A-Za-z0-9_]*)\}\s*$")


def _coerce(
    kinds: tuple[Kind, ...], positive: bool, nonneg: bool, nonzero: bool, value: object
) -> Qty | Ref:
    """Parse one quantity field; instrument-range checks live here so they apply everywhere."""
    if isinstance(value, Ref):
        return value
    if isinstance(value, str):
        m = _REF.match(value)
        if m:
            return Ref(m.group(2), negate=bool(m.group(1)))
    try:
        q = value if isinstance(value, Qty) else to_qty(value, *kinds)
    except QuantityError as exc:
        raise ValueError(str(exc)) from None
    if q.kind not in kinds:
        raise ValueError(f"expected {describe_kinds(kinds)}, got {q.kind.label} '{q.text}'")
    if positive and q.value <= 0:
        raise ValueError(f"must be greater than zero, got '{q.text}'")
    if nonneg and q.value < 0:
        raise ValueError(f"must not be negative, got '{q.text}'")
    if nonzero and q.value == 0:
        raise ValueError(f"must not be zero, got '{q.text}'")
    if q.kind is Kind.VOLTAGE and abs(q.value) > E_ABS_MAX_V:
        raise ValueError(f"'{q.text}' is outside the SP-300 range of ±{E_ABS_MAX_V:g} V")
    if q.kind is Kind.CURRENT and abs(q.value) > I_ABS_MAX_MA:
        raise ValueError(f"'{q.text}' exceeds the SP-300 standard range of ±{I_ABS_MAX_MA:g} mA")
    if q.kind is Kind.FREQUENCY and not F_MIN_HZ <= q.value <= F_MAX_HZ:
        raise ValueError(f"'{q.text}' is outside the SP-300 EIS range 10 µHz – 7 MHz")
    if q.kind is Kind.TIME and abs(q.value) > TIME_MAX_S:
        raise ValueError(f"'{q.text}' is longer than one step may last (31 days); "
                         "repeat a shorter step instead")
    if q.kind is Kind.PRESSURE and abs(q.value) > PRESSURE_MAX_MPA:
        raise ValueError(f"'{q.text}' is beyond what a cell stack takes "
                         f"({PRESSURE_MAX_MPA:g} MPa)")
    return q


def Q(*kinds: Kind, positive: bool = False, nonneg: bool = False, nonzero: bool = False) -> Any:
    """A quantity field accepting `kinds`, serialised back to the operator's text in JSON."""
    return Annotated[
        Qty | Ref,
        PlainValidator(partial(_coerce, kinds, positive, nonneg, nonzero)),
        PlainSerializer(lambda q: str(q), when_used="json"),
        WithJsonSchema(
            {
                "type": "string",
                "description": f"{describe_kinds(kinds)}, e.g. '1 {kinds[0].canonical}'",
            }
        ),
    ]


CURRENTISH = (Kind.CURRENT, Kind.CURRENT_DENSITY)
CAPACITYISH = (Kind.CAPACITY, Kind.AREAL_CAPACITY, Kind.SPECIFIC_CAPACITY)

Duration = Q(Kind.TIME, positive=True)
NonNegTime = Q(Kind.TIME, nonneg=True)
Voltage = Q(Kind.VOLTAGE)
PositiveVoltage = Q(Kind.VOLTAGE, positive=True)
Current = Q(*CURRENTISH, nonzero=True)
PositiveCurrent = Q(*CURRENTISH, positive=True)
Capacity = Q(*CAPACITYISH, positive=True)
Frequency = Q(Kind.FREQUENCY, positive=True)
Pressure = Q(Kind.PRESSURE, nonneg=True)
PositivePressure = Q(Kind.PRESSURE, positive=True)
ScanRate = Q(Kind.SCAN_RATE, positive=True)
AnyQuantity = Q(*Kind)


def num(x: Qty | Ref | None) -> float | None:
    """The canonical value, or None for an unset field or a not-yet-substituted placeholder."""
    return x.value if isinstance(x, Qty) else None


def _at(field: str, message: str) -> str:
    return f"{_FIELD_MARK}{field}{_FIELD_MARK}{message}"


def _raise_all(problems: list[str]) -> None:
    if problems:
        raise ValueError(_SEP.join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecordSpec(_Model):
    """How often to record: every `every`, and whenever E moved by `dE` (null disables that)."""

    every: Duration | None = None  # type: ignore[valid-type]
    dE: PositiveVoltage | None = None  # type: ignore[valid-type]


class DetectorSpec(_Model):
    """Failure-detector thresholds. Unset keys keep defaults; `null` disables."""

    enabled: bool = True
    ignore_first_samples: int | None = Field(default=None, ge=0)
    hard_short_fraction: float | None = Field(default=None, gt=0, le=1)
    hard_short_floor: PositiveVoltage | None = None  # type: ignore[valid-type]
    hard_short_samples: int | None = Field(default=None, ge=1)
    sudden_drop_fraction: float | None = Field(default=None, gt=0, lt=1)
    noise_sigma: float | None = Field(default=None, gt=0)
    noise_spikes: int | None = Field(default=None, ge=1)
    divergence: PositiveVoltage | None = None  # type: ignore[valid-type]
    divergence_asr_factor: float | None = Field(default=None, gt=0)


class LimitsSpec(_Model):
    """Safety bounds: tripping one aborts the step as failed (unlike an end condition)."""

    E_min: Voltage | None = None  # type: ignore[valid-type]
    E_max: Voltage | None = None  # type: ignore[valid-type]
    I_max: PositiveCurrent | None = None  # type: ignore[valid-type]
    Q_max: Capacity | None = None  # type: ignore[valid-type]
    P_min: Pressure | None = None  # type: ignore[valid-type]
    P_max: PositivePressure | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _ordered(self) -> LimitsSpec:
        problems = []
        lo, hi = num(self.E_min), num(self.E_max)
        if lo is not None and hi is not None and lo >= hi:
            problems.append(
                _at("E_max", f"E_max ({self.E_max}) must be above E_min ({self.E_min})")
            )
        plo, phi = num(self.P_min), num(self.P_max)
        if plo is not None and phi is not None and plo >= phi:
            problems.append(
                _at("P_max", f"P_max ({self.P_max}) must be above P_min ({self.P_min})")
            )
        _raise_all(problems)
        return self


class _StepSpec(_Model):
    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX_CHARS - 40)
    limits: LimitsSpec | None = None


class RestSpec(_StepSpec):
    """Open circuit for `duration`; with `settle`, ends early once |dE/dt| stays below it."""

    kind: Literal["rest"]
    duration: Duration  # type: ignore[valid-type]
    settle: ScanRate | None = None  # type: ignore[valid-type]
    record: RecordSpec | None = None


class GalvanostaticSpec(_StepSpec):
    """Constant current (positive strips the working electrode) until an end condition.

    At least one end condition is required: a galvanostatic step with none would run until a
    safety limit trips, i.e. it would be "ended" by a failure.
    """

    kind: Literal["galvanostatic"] = "galvanostatic"
    current: Current  # type: ignore[valid-type]
    duration: Duration | None = None  # type: ignore[valid-type]
    capacity: Capacity | None = None  # type: ignore[valid-type]
    E_min: Voltage | None = None  # type: ignore[valid-type]
    E_max: Voltage | None = None  # type: ignore[valid-type]
    record: RecordSpec | None = None
    detectors: DetectorSpec | None = None

    @model_validator(mode="after")
    def _must_end(self) -> GalvanostaticSpec:
        problems = []
        ends = [self.duration, self.capacity, self.E_min, self.E_max]
        if all(e is None for e in ends):
            problems.append(
                _at(
                    "current",
                    "galvanostatic step has no end condition (give duration, capacity, "
                    "E_min or E_max); it could run forever",
                )
            )
        lo, hi = num(self.E_min), num(self.E_max)
        if lo is not None and hi is not None and lo >= hi:
            problems.append(
                _at("E_max", f"E_max ({self.E_max}) must be above E_min ({self.E_min})")
            )
        i = num(self.current)
        if self.duration is None and self.capacity is None and i is not None:
            # Stripping (I > 0) drives E up; plating drives it down. A voltage end on the wrong
            # side is never reached.
            if i > 0 and self.E_max is None and self.E_min is not None:
                problems.append(
                    _at(
                        "E_min",
                        f"current {self.current} is positive (stripping, E rises), so "
                        "E_min alone never ends this step; use E_max or add duration/capacity",
                    )
                )
            if i < 0 and self.E_min is None and self.E_max is not None:
                problems.append(
                    _at(
                        "E_max",
                        f"current {self.current} is negative (plating, E falls), so "
                        "E_max alone never ends this step; use E_min or add duration/capacity",
                    )
                )
        _raise_all(problems)
        return self


class PotentiostaticSpec(_StepSpec):
    """Hold `voltage` for `duration`, optionally with a current limit."""

    kind: Literal["potentiostatic"]
    voltage: Voltage  # type: ignore[valid-type]
    duration: Duration  # type: ignore[valid-type]
    I_limit: PositiveCurrent | None = None  # type: ignore[valid-type]
    record: RecordSpec | None = None


class CVSpec(_StepSpec):
    """Cyclic voltammetry: E_start → each vertex in turn → back to E_start, `cycles` times."""

    kind: Literal["cv"]
    E_start: Voltage  # type: ignore[valid-type]
    vertices: list[Voltage] = Field(min_length=1)  # type: ignore[valid-type]
    scan_rate: ScanRate  # type: ignore[valid-type]
    cycles: int = Field(default=1, ge=1, le=10_000)
    record_dE: PositiveVoltage | None = None  # type: ignore[valid-type]


class EISSpec(_StepSpec):
    """Impedance sweep from f_high down to f_low. PEIS amplitude is a voltage, GEIS a current."""

    kind: Literal["eis"] = "eis"
    mode: Literal["PEIS", "GEIS"] = "PEIS"
    f_high: Frequency  # type: ignore[valid-type]
    f_low: Frequency  # type: ignore[valid-type]
    points_per_decade: int = Field(default=10, ge=1, le=200)
    amplitude: Q(Kind.VOLTAGE, *CURRENTISH, positive=True) | None = None  # type: ignore[valid-type]
    averages: int = Field(default=1, ge=1, le=100)

    @model_validator(mode="after")
    def _consistent(self) -> EISSpec:
        problems = []
        hi, lo = num(self.f_high), num(self.f_low)
        if hi is not None and lo is not None and lo >= hi:
            problems.append(
                _at("f_low", f"f_low ({self.f_low}) must be below f_high ({self.f_high})")
            )
        a = self.amplitude
        if isinstance(a, Qty):
            if self.mode == "PEIS" and a.kind is not Kind.VOLTAGE:
                problems.append(
                    _at("amplitude", f"PEIS amplitude must be a voltage (mV), got '{a}'")
                )
            if self.mode == "GEIS" and a.kind is Kind.VOLTAGE:
                problems.append(
                    _at("amplitude", f"GEIS amplitude must be a current (mA or mA/cm^2), got '{a}'")
                )
            if a.kind is Kind.VOLTAGE and a.value > 1.0:
                problems.append(_at("amplitude", f"PEIS amplitude '{a}' is above 1 V; use mV"))
        if self.mode == "GEIS" and a is None:
            problems.append(_at("mode", "GEIS needs an explicit amplitude (a current)"))
        _raise_all(problems)
        return self


class PressureSpec(_StepSpec):
    """Bring the frame to `setpoint` ± `tolerance`, verify it holds for `hold`, within `timeout`."""

    kind: Literal["pressure"]
    setpoint: PositivePressure  # type: ignore[valid-type]
    tolerance: PositivePressure  # type: ignore[valid-type]
    hold: NonNegTime | None = None  # type: ignore[valid-type]
    timeout: Duration | None = None  # type: ignore[valid-type]


class CCDRampSpec(_StepSpec):
    """Critical-current ramp on a symmetric cell (the paper, Fig. 1b/c).

    `half_cycle` is a time (fixed-time mode) or a capacity (fixed areal capacity, "ACL" mode).
    """

    kind: Literal["ccd_ramp"]
    start: PositiveCurrent  # type: ignore[valid-type]
    increment: PositiveCurrent  # type: ignore[valid-type]
    max: PositiveCurrent  # type: ignore[valid-type]
    half_cycle: Q(Kind.TIME, Kind.CAPACITY, Kind.AREAL_CAPACITY, positive=True)  # type: ignore[valid-type]
    cycles_per_step: int = Field(default=1, ge=1, le=1000)
    rest: NonNegTime | None = None  # type: ignore[valid-type]
    eis_after_step: EISSpec | None = None
    E_limit: PositiveVoltage | None = None  # type: ignore[valid-type]
    record: RecordSpec | None = None
    detectors: DetectorSpec | None = None

    @model_validator(mode="after")
    def _ramp(self) -> CCDRampSpec:
        problems = []
        kinds = {q.kind for q in (self.start, self.increment, self.max) if isinstance(q, Qty)}
        if len(kinds) > 1:
            problems.append(
                _at(
                    "increment",
                    "start, increment and max must all be currents or all current densities",
                )
            )
        s, m = num(self.start), num(self.max)
        if s is not None and m is not None and len(kinds) == 1 and m < s:
            problems.append(_at("max", f"max ({self.max}) is below start ({self.start})"))
        _raise_all(problems)
        return self


class InterleaveSpec(_StepSpec):
    """The paper's in-situ EIS: every `every` of charge, rest then EIS, then continue."""

    kind: Literal["interleave"]
    galvanostatic: GalvanostaticSpec
    every: Capacity  # type: ignore[valid-type]
    rest: NonNegTime  # type: ignore[valid-type]
    eis: EISSpec


VaryValue = AnyQuantity


class RepeatSpec(_StepSpec):
    """Repeat `steps` `count` times, or once per value of `vary` (then `count` may be omitted)."""

    kind: Literal["repeat"]
    count: int | None = Field(default=None, ge=1, le=100000)
    vary: dict[str, list[VaryValue]] | None = None  # type: ignore[valid-type]
    steps: list[Step] = Field(min_length=1)

    @field_validator("vary")
    @classmethod
    def _vary_names(cls, v: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("vary is empty; remove it or list values")
        lengths = {name: len(vals) for name, vals in v.items()}
        for name, n in lengths.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"vary name '{name}' must be an identifier (letters, digits, _)")
            if n == 0:
                raise ValueError(f"vary '{name}' has no values")
        if len(set(lengths.values())) > 1:
            raise ValueError(f"all vary lists must have the same length, got {lengths}")
        return v

    @model_validator(mode="after")
    def _count(self) -> RepeatSpec:
        if self.vary is None and self.count is None:
            raise ValueError(_at("kind", "repeat needs count (or vary)"))
        if self.vary is not None and self.count is not None:
            n = len(next(iter(self.vary.values())))
            if n != self.count:
                raise ValueError(
                    _at(
                        "count",
                        f"count {self.count} does not match the {n} vary values "
                        "(omit count; with vary the body runs once per value)",
                    )
                )
        return self

    @property
    def iterations(self) -> int:
        if self.vary:
            return len(next(iter(self.vary.values())))
        return self.count or 1


Step = Annotated[
    Union[  # noqa: UP007 - the discriminated union reads clearer spelled out
        RestSpec,
        GalvanostaticSpec,
        PotentiostaticSpec,
        CVSpec,
        EISSpec,
        PressureSpec,
        CCDRampSpec,
        InterleaveSpec,
        RepeatSpec,
    ],
    Field(discriminator="kind"),
]
StepSpec = (
    RestSpec
    | GalvanostaticSpec
    | PotentiostaticSpec
    | CVSpec
    | EISSpec
    | PressureSpec
    | CCDRampSpec
    | InterleaveSpec
    | RepeatSpec
)
STEP_MODELS: dict[str, type[BaseModel]] = {
    "rest": RestSpec,
    "galvanostatic": GalvanostaticSpec,
    "potentiostatic": PotentiostaticSpec,
    "cv": CVSpec,
    "eis": EISSpec,
    "pressure": PressureSpec,
    "ccd_ramp": CCDRampSpec,
    "interleave": InterleaveSpec,
    "repeat": RepeatSpec,
}

#: Analyses a protocol may ask for at run end (labctl.analysis.runner.ANALYSES; a test keeps the
#: two in step). Listed here so a misspelt name is refused with its line, before the run.
AnalysisName = Literal["ccd", "critical_stripping", "drt", "circuit", "cv", "cycling"]


class ProtocolSpec(_Model):
    """A whole protocol file (schema_version 1)."""

    schema_version: Literal[1]
    name: str = Field(min_length=1, max_length=NAME_MAX_CHARS)
    description: str | None = Field(default=None, max_length=20_000)
    limits: LimitsSpec | None = None
    analyses: list[AnalysisName] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)


RepeatSpec.model_rebuild()
ProtocolSpec.model_rebuild()


def iter_refs(obj: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Ref]]:
    """Every placeholder in a step (model or dumped dict), with its path, not entering repeats'
    own vary names (those are checked by that repeat)."""
    if isinstance(obj, Ref):
        yield path, obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from iter_refs(getattr(obj, name), (*path, name))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from iter_refs(v, (*path, k))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from iter_refs(v, (*path, i))


def dump_set(obj: Any) -> Any:
    """Model → dict of explicitly set fields, keeping Qty/Ref objects (model_dump would turn
    the dataclasses into dicts, and dropping unset-ness would change detector defaults)."""
    if isinstance(obj, BaseModel):
        return {k: dump_set(getattr(obj, k)) for k in obj.model_fields_set}
    if isinstance(obj, list | tuple):
        return [dump_set(v) for v in obj]
    if isinstance(obj, dict):
        return {k: dump_set(v) for k, v in obj.items()}
    return obj


def substitute(obj: Any, env: dict[str, Qty]) -> Any:
    """Replace placeholders found in `env` inside a dumped step dict."""
    if isinstance(obj, Ref) and obj.name in env:
        q = env[obj.name]
        return -q if obj.negate else q
    if isinstance(obj, dict):
        return {k: substitute(v, env) for k, v in obj.items()}
    if isinstance(obj, list):
        return [substitute(v, env) for v in obj]
    return obj


def model_for(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the last mapping in an error path (for did-you-mean)."""
    cls: Any = ProtocolSpec
    for elem in loc[:-1]:
        if isinstance(elem, int):
            continue
        if (
            isinstance(elem, str)
            and elem in STEP_MODELS
            and elem not in getattr(cls, "model_fields", {})
        ):
            cls = STEP_MODELS[elem]
            continue
        fields = getattr(cls, "model_fields", None)
        if fields is None or elem not in fields:
            return None
        cls = _unwrap_model(fields[elem].annotation)
        if cls is None:
            return None
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _unwrap_model(ann: Any) -> Any:
    """First BaseModel subclass inside Optional/list/Annotated, or the step union marker."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _unwrap_model(arg)
        if found is not None:
            return found
    meta = getattr(ann, "__metadata__", None)
    if meta is not None:
        return _unwrap_model(ann.__origin__)
    return None


FieldMessageSplitter = Callable[[str], list[tuple[str | None, str]]]


def split_model_message(msg: str) -> list[tuple[str | None, str]]:
    """Undo `_at`/`_raise_all`: [(field or None, message), ...]."""
    out: list[tuple[str | None, str]] = []
    for part in msg.split(_SEP):
        part = part.removeprefix("Value error, ")
        if part.startswith(_FIELD_MARK):
            _, field, text = part.split(_FIELD_MARK, 2)
            out.append((field, text))
        else:
            out.append((None, part))
    return out
