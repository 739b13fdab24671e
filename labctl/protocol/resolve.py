"""Resolve a validated protocol against a cell into the engine's ResolvedProtocol.

Areal values become absolute with the cell's electrode area and specific (per gram) capacities
with its NaK alloy mass, so one protocol file runs unchanged on 6 mm or 10 mm cells. Checks that
need those numbers — chiefly the SP-300's ±500 mA — can only happen here, and are located at the
offending line just like schema errors.
"""

from __future__ import annotations

from typing import Any

from labctl.protocol import semantics
from labctl.protocol.cell import CellSpec
from labctl.protocol.errors import LocatedError, PathElem, ProtocolError
from labctl.protocol.instrument import SP300, InstrumentRanges, check_ranges
from labctl.protocol.loader import ExpandedStep, ProtocolDocument, expand
from labctl.protocol.resolved import (
    CV,
    EIS,
    CCDRamp,
    DetectorSettings,
    Galvanostatic,
    Interleave,
    Limits,
    Potentiostatic,
    Pressure,
    RecordEvery,
    ResolvedProtocol,
    ResolvedStep,
    Rest,
)
from labctl.protocol.schema import (
    NAME_MAX_CHARS,
    CCDRampSpec,
    CVSpec,
    DetectorSpec,
    EISSpec,
    GalvanostaticSpec,
    InterleaveSpec,
    LimitsSpec,
    PotentiostaticSpec,
    PressureSpec,
    RecordSpec,
    RestSpec,
    num,
)
from labctl.protocol.units import Kind, Qty, format_duration

DEFAULT_PEIS_AMPLITUDE_V = 0.010  # 10 mV
DEFAULT_CCD_E_LIMIT_V = 1.0  # V_cut 1 V
DEFAULT_PRESSURE_TIMEOUT_S = 600.0


class _Resolver:
    def __init__(self, doc: ProtocolDocument, cell: CellSpec,
                 ranges: InstrumentRanges = SP300) -> None:
        self.doc = doc
        self.cell = cell
        self.ranges = ranges
        self.area = cell.area
        self.errors: list[LocatedError] = []

    def err(self, path: tuple[PathElem, ...], message: str) -> None:
        e = self.doc.source.error(path, message)
        if e not in self.errors:
            self.errors.append(e)

    def line(self, path: tuple[PathElem, ...]) -> int:
        return self.doc.source.locate(path)[0]

    # -- quantities -------------------------------------------------------------------------

    def current(self, q: Any, path: tuple[PathElem, ...]) -> float:
        """mA, after checking the SP-300 range with the cell's area applied."""
        assert isinstance(q, Qty)
        if q.kind is Kind.CURRENT_DENSITY:
            ma = q.value * self.area
            limit = self.ranges.I_abs_max_mA
            if abs(ma) > limit:
                self.err(
                    path,
                    f"{q} on this cell's {self.area:.4g} cm^2 is {ma:.4g} mA, beyond the "
                    f"{self.ranges.name} range of ±{limit:g} mA",
                )
            return ma
        return q.value

    def capacity(self, q: Any, path: tuple[PathElem, ...]) -> float:
        """mAh: areal × area, specific × alloy mass (which the cell must then give)."""
        assert isinstance(q, Qty)
        if q.kind is Kind.AREAL_CAPACITY:
            return q.value * self.area
        if q.kind is Kind.SPECIFIC_CAPACITY:
            grams = self.cell.alloy_mass_g
            if grams is None:
                self.err(
                    path,
                    f"{q} is per gram of alloy, but cell '{self.cell.id}' has no "
                    "anode.alloy_mass_mg",
                )
                return 0.0
            return q.value * grams
        return q.value

    def opt(self, q: Any) -> float | None:
        return num(q)

    # -- structures -------------------------------------------------------------------------

    def limits(self, spec: LimitsSpec | None, path: tuple[PathElem, ...]) -> Limits | None:
        if spec is None:
            return None
        return Limits(
            E_min_V=num(spec.E_min),
            E_max_V=num(spec.E_max),
            I_max_mA=None
            if spec.I_max is None
            else abs(self.current(spec.I_max, (*path, "I_max"))),
            Q_max_mAh=None if spec.Q_max is None else self.capacity(spec.Q_max, (*path, "Q_max")),
            P_min_MPa=num(spec.P_min),
            P_max_MPa=num(spec.P_max),
        )

    @staticmethod
    def record(spec: RecordSpec | None) -> RecordEvery:
        if spec is None:
            return RecordEvery()
        base = RecordEvery()
        dt = num(spec.every)
        return RecordEvery(
            dt_s=base.dt_s if dt is None else dt,
            dE_V=(num(spec.dE) if "dE" in spec.model_fields_set else base.dE_V),
        )

    @staticmethod
    def detectors(spec: DetectorSpec | None) -> DetectorSettings:
        """Unset keys keep DetectorSettings' defaults; keys set to null disable that detector."""
        base = DetectorSettings()
        if spec is None:
            return base
        given = spec.model_fields_set
        mapping = {
            "ignore_first_samples": "ignore_first_samples",
            "hard_short_fraction": "hard_short_fraction",
            "hard_short_samples": "hard_short_samples",
            "sudden_drop_fraction": "sudden_drop_fraction",
            "noise_sigma": "noise_sigma",
            "noise_spikes": "noise_spikes",
            "divergence_asr_factor": "divergence_asr_factor",
        }
        kw: dict[str, Any] = {"enabled": spec.enabled}
        for src_name, dst in mapping.items():
            if src_name in given:
                kw[dst] = getattr(spec, src_name)
        if "hard_short_floor" in given and spec.hard_short_floor is not None:
            kw["hard_short_floor_V"] = num(spec.hard_short_floor)
        if "divergence" in given:
            kw["divergence_V"] = num(spec.divergence)
        # required-int settings cannot be disabled; null there means "default"
        for k in (
            "ignore_first_samples",
            "hard_short_samples",
            "noise_spikes",
            "divergence_asr_factor",
        ):
            if kw.get(k, 0) is None:
                del kw[k]
        return DetectorSettings(**{**base.__dict__, **kw})

    def eis(self, spec: EISSpec, path: tuple[PathElem, ...], name: str) -> EIS:
        amp = spec.amplitude
        if amp is None:
            amplitude = DEFAULT_PEIS_AMPLITUDE_V
        elif isinstance(amp, Qty) and amp.kind is Kind.VOLTAGE:
            amplitude = amp.value
        else:
            amplitude = self.current(amp, (*path, "amplitude"))
        return EIS(
            name=name,
            mode=spec.mode,
            f_high_Hz=num(spec.f_high) or 0.0,
            f_low_Hz=num(spec.f_low) or 0.0,
            points_per_decade=spec.points_per_decade,
            amplitude=amplitude,
            averages=spec.averages,
            source_line=self.line(path),
            limits=self.limits(spec.limits, (*path, "limits")),
        )

    def galvanostatic(
        self, spec: GalvanostaticSpec, path: tuple[PathElem, ...], name: str
    ) -> Galvanostatic:
        return Galvanostatic(
            name=name,
            current_mA=self.current(spec.current, (*path, "current")),
            duration_s=num(spec.duration),
            capacity_mAh=None
            if spec.capacity is None
            else self.capacity(spec.capacity, (*path, "capacity")),
            E_min_V=num(spec.E_min),
            E_max_V=num(spec.E_max),
            record=self.record(spec.record),
            detectors=None if spec.detectors is None else self.detectors(spec.detectors),
            source_line=self.line(path),
            limits=self.limits(spec.limits, (*path, "limits")),
        )

    def step(self, ex: ExpandedStep) -> ResolvedStep | None:
        spec, path = ex.spec, ex.path
        name = spec.name or auto_name(spec)
        if ex.iteration:
            if ex.env:
                name += " (" + ", ".join(f"{k}={v}" for k, v in ex.env.items()) + ")"
            else:
                name += " [" + ", ".join(f"{i + 1}/{n}" for i, n in ex.iteration) + "]"
        if len(name) > NAME_MAX_CHARS:  # a label: shortened to what the database stores
            name = name[: NAME_MAX_CHARS - 1] + "…"
        line = self.line(path)
        lim = self.limits(spec.limits, (*path, "limits"))
        if isinstance(spec, RestSpec):
            return Rest(
                name=name,
                duration_s=num(spec.duration) or 0.0,
                settle_dEdt_V_per_s=num(spec.settle),
                record=self.record(spec.record),
                source_line=line,
                limits=lim,
            )
        if isinstance(spec, GalvanostaticSpec):
            return self.galvanostatic(spec, path, name)
        if isinstance(spec, PotentiostaticSpec):
            return Potentiostatic(
                name=name,
                voltage_V=num(spec.voltage) or 0.0,
                duration_s=num(spec.duration) or 0.0,
                I_limit_mA=None
                if spec.I_limit is None
                else abs(self.current(spec.I_limit, (*path, "I_limit"))),
                record=self.record(spec.record),
                source_line=line,
                limits=lim,
            )
        if isinstance(spec, CVSpec):
            return CV(
                name=name,
                E_start_V=num(spec.E_start) or 0.0,
                vertices_V=tuple(num(v) or 0.0 for v in spec.vertices),
                scan_rate_V_s=num(spec.scan_rate) or 0.0,
                cycles=spec.cycles,
                record_dE_V=num(spec.record_dE) or 0.001,
                source_line=line,
                limits=lim,
            )
        if isinstance(spec, EISSpec):
            return self.eis(spec, path, name)
        if isinstance(spec, PressureSpec):
            return Pressure(
                name=name,
                setpoint_MPa=num(spec.setpoint) or 0.0,
                tolerance_MPa=num(spec.tolerance) or 0.0,
                hold_s=num(spec.hold) or 0.0,
                timeout_s=num(spec.timeout) or DEFAULT_PRESSURE_TIMEOUT_S,
                source_line=line,
                limits=lim,
            )
        if isinstance(spec, CCDRampSpec):
            hc = spec.half_cycle
            assert isinstance(hc, Qty)
            return CCDRamp(
                name=name,
                start_mA=self.current(spec.start, (*path, "start")),
                increment_mA=self.current(spec.increment, (*path, "increment")),
                max_mA=self.current(spec.max, (*path, "max")),
                area_cm2=self.area,
                half_cycle_s=hc.value if hc.kind is Kind.TIME else None,
                half_cycle_mAh=None
                if hc.kind is Kind.TIME
                else self.capacity(hc, (*path, "half_cycle")),
                cycles_per_step=spec.cycles_per_step,
                rest_s=num(spec.rest) or 0.0,
                eis_after_step=None
                if spec.eis_after_step is None
                else self.eis(spec.eis_after_step, (*path, "eis_after_step"), f"{name}: EIS"),
                E_limit_V=num(spec.E_limit) or DEFAULT_CCD_E_LIMIT_V,
                record=self.record(spec.record),
                detectors=self.detectors(spec.detectors),
                source_line=line,
                limits=lim,
            )
        if isinstance(spec, InterleaveSpec):
            g = self.galvanostatic(
                spec.galvanostatic, (*path, "galvanostatic"), f"{name}: galvanostatic"
            )
            every = self.capacity(spec.every, (*path, "every"))
            if g.capacity_mAh is not None and every > g.capacity_mAh:
                self.err(
                    (*path, "every"),
                    f"every ({spec.every}) is more than the galvanostatic "
                    "capacity, so no EIS would be interleaved",
                )
            return Interleave(
                name=name,
                galvanostatic=g,
                every_mAh=every,
                rest_s=num(spec.rest) or 0.0,
                eis=self.eis(spec.eis, (*path, "eis"), f"{name}: EIS"),
                source_line=line,
                limits=lim,
            )
        raise AssertionError(f"unhandled step {type(spec).__name__}")  # pragma: no cover


def auto_name(spec: Any) -> str:
    """A short label operators recognise in logs: 'rest 1 h', 'galvanostatic 0.25 mA/cm^2'."""
    if isinstance(spec, RestSpec):
        return f"rest {spec.duration}"
    if isinstance(spec, GalvanostaticSpec):
        return f"galvanostatic {spec.current}"
    if isinstance(spec, PotentiostaticSpec):
        return f"potentiostatic {spec.voltage}"
    if isinstance(spec, CVSpec):
        return f"CV {spec.scan_rate} x{spec.cycles}"
    if isinstance(spec, EISSpec):
        return f"{spec.mode} {spec.f_high}–{spec.f_low}"
    if isinstance(spec, PressureSpec):
        return f"pressure {spec.setpoint}"
    if isinstance(spec, CCDRampSpec):
        return f"CCD ramp {spec.start}→{spec.max}"
    if isinstance(spec, InterleaveSpec):
        return f"interleave {spec.galvanostatic.current}, EIS every {spec.every}"
    return getattr(spec, "kind", "step")


def _check_against_global(
    r: _Resolver, expanded: list[ExpandedStep], steps: list[ResolvedStep], limits: Limits
) -> None:
    """A step whose set current exceeds the global |I| limit would trip it at once: refuse it."""
    if limits.I_max_mA is None:
        return
    for ex, s in zip(expanded, steps, strict=True):
        checks: list[tuple[str, float]] = []
        if isinstance(s, Galvanostatic):
            checks.append(("current", s.current_mA))
        elif isinstance(s, Interleave):
            checks.append(("galvanostatic", s.galvanostatic.current_mA))
        elif isinstance(s, CCDRamp):
            checks.append(("max", s.max_mA))
        for field, ma in checks:
            if abs(ma) > limits.I_max_mA + 1e-12:
                r.err(
                    (*ex.path, field),
                    f"{field} is {abs(ma):.4g} mA on this cell, above the global limit "
                    f"I_max {limits.I_max_mA:.4g} mA",
                )


def resolve(doc: ProtocolDocument, cell: CellSpec,
            ranges: InstrumentRanges = SP300) -> ResolvedProtocol:
    """The engine's view of `doc` on `cell`; raises ProtocolError listing every located problem.

    `ranges` are the instrument's (a station's narrowest; the SP-300's by default)."""
    r = _Resolver(doc, cell, ranges)
    errors: list[LocatedError] = []
    expanded = expand(doc, errors)
    errors.extend(check_ranges(doc, expanded, ranges))
    steps: list[ResolvedStep] = []
    for ex in expanded:
        s = r.step(ex)
        if s is not None:
            steps.append(s)
    limits = r.limits(doc.spec.limits, ("limits",)) or Limits()
    _check_against_global(r, expanded, steps, limits)
    errors.extend(r.errors)
    cell_errors, warnings = semantics.cell_findings(doc, cell)
    errors.extend(cell_errors)
    if errors:
        raise ProtocolError(errors)
    return ResolvedProtocol(
        name=doc.spec.name,
        schema_version=doc.schema_version,
        steps=tuple(steps),
        limits=limits,
        analyses=tuple(doc.spec.analyses),
        warnings=tuple(str(w) for w in warnings),
    )


__all__ = ["auto_name", "format_duration", "resolve"]
