"""Resolved protocol: what the engine runs.

The protocol layer turns a validated YAML protocol plus a cell description into these plain,
immutable values with absolute lab units (mA, mAh, s, V, Hz, MPa): areal currents are already
multiplied by the cell's area, specific capacities by its alloy mass. Static structure (`repeat`,
parameter sweeps) is expanded here; adaptive structure (`ccd_ramp`, `interleave`) stays as one
step whose stages the engine walks, because how far it goes depends on what the cell does.

The engine imports only this module from the protocol layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class RecordEvery:
    dt_s: float = 1.0
    dE_V: float | None = 0.001


@dataclass(frozen=True)
class DetectorSettings:
    """Failure detectors on constant-current segments; None disables one."""

    enabled: bool = True
    ignore_first_samples: int = 3
    hard_short_fraction: float | None = 0.3  # |V| < max(2 mV, f*|j|*ASR_ref)
    hard_short_floor_V: float = 0.002
    hard_short_samples: int = 5
    sudden_drop_fraction: float | None = 0.5
    noise_sigma: float | None = 8.0  # spikes > k * sigma_ref
    noise_spikes: int = 3
    divergence_V: float | None = 1.0  # |V| > min(V_cut, k*|j|*ASR_ref)
    divergence_asr_factor: float = 3.0


@dataclass(frozen=True)
class Limits:
    """Safety limits. Global ones apply to every step; a step may add tighter ones."""

    E_min_V: float | None = None
    E_max_V: float | None = None
    I_max_mA: float | None = None
    Q_max_mAh: float | None = None  # |charge| passed within one step
    P_min_MPa: float | None = None
    P_max_MPa: float | None = None

    def merged(self, tighter: Limits | None) -> Limits:
        """The stricter of each bound."""
        if tighter is None:
            return self

        def lo(a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else max(a, b)

        def hi(a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else min(a, b)

        return Limits(
            E_min_V=lo(self.E_min_V, tighter.E_min_V),
            E_max_V=hi(self.E_max_V, tighter.E_max_V),
            I_max_mA=hi(self.I_max_mA, tighter.I_max_mA),
            Q_max_mAh=hi(self.Q_max_mAh, tighter.Q_max_mAh),
            P_min_MPa=lo(self.P_min_MPa, tighter.P_min_MPa),
            P_max_MPa=hi(self.P_max_MPa, tighter.P_max_MPa),
        )


@dataclass(frozen=True)
class StepBase:
    name: str  # human label, e.g. "rest 1 h" or the YAML `name:`
    source_line: int | None = field(default=None, kw_only=True)  # where it came from in the YAML
    limits: Limits | None = field(default=None, kw_only=True)  # per-step limits


@dataclass(frozen=True)
class Rest(StepBase):
    duration_s: float
    settle_dEdt_V_per_s: float | None = None  # end early once |dE/dt| stays below this
    record: RecordEvery = RecordEvery()
    kind: Literal["rest"] = "rest"


@dataclass(frozen=True)
class Galvanostatic(StepBase):
    current_mA: float  # positive strips the working electrode
    duration_s: float | None = None
    capacity_mAh: float | None = None  # |Q| at which the step ends
    E_min_V: float | None = None  # end (normally) when E falls below
    E_max_V: float | None = None  # end (normally) when E rises above
    record: RecordEvery = RecordEvery()
    detectors: DetectorSettings | None = None
    kind: Literal["galvanostatic"] = "galvanostatic"


@dataclass(frozen=True)
class Potentiostatic(StepBase):
    voltage_V: float
    duration_s: float
    I_limit_mA: float | None = None
    record: RecordEvery = RecordEvery()
    kind: Literal["potentiostatic"] = "potentiostatic"


@dataclass(frozen=True)
class CV(StepBase):
    E_start_V: float
    vertices_V: tuple[float, ...]
    scan_rate_V_s: float
    cycles: int = 1
    record_dE_V: float = 0.001
    kind: Literal["cv"] = "cv"


@dataclass(frozen=True)
class EIS(StepBase):
    mode: Literal["PEIS", "GEIS"]
    f_high_Hz: float
    f_low_Hz: float
    points_per_decade: int = 10
    amplitude: float = 0.010  # V for PEIS, mA for GEIS
    averages: int = 1
    kind: Literal["eis"] = "eis"


@dataclass(frozen=True)
class Pressure(StepBase):
    setpoint_MPa: float
    tolerance_MPa: float
    hold_s: float = 0.0  # verify it stays in band this long
    timeout_s: float = 600.0
    kind: Literal["pressure"] = "pressure"


@dataclass(frozen=True)
class CCDRamp(StepBase):
    """Symmetric plating/stripping half-cycles at j0, j0+dj, ... until failure or j_max.

    Each half-cycle ends on `half_cycle_s` or `half_cycle_mAh`. Results: `ccd_mA_cm2` (the
    failing step's current density) and `ccd_last_passed_mA_cm2`.
    """

    start_mA: float
    increment_mA: float
    max_mA: float
    area_cm2: float  # to report current densities
    half_cycle_s: float | None = None
    half_cycle_mAh: float | None = None
    cycles_per_step: int = 1
    rest_s: float = 0.0  # rest between half-cycles
    eis_after_step: EIS | None = None
    E_limit_V: float = 1.0  # |V| beyond which a half-cycle ends as failed (on the instrument)
    record: RecordEvery = RecordEvery()
    detectors: DetectorSettings = DetectorSettings()
    kind: Literal["ccd_ramp"] = "ccd_ramp"


@dataclass(frozen=True)
class Interleave(StepBase):
    """The paper's in-situ EIS: every `every_mAh` of `galvanostatic`, rest then EIS, continue.

    Also measures an EIS before the first segment. The galvanostatic step's own end conditions
    (capacity, voltage, time) end the whole interleave.
    """

    galvanostatic: Galvanostatic
    every_mAh: float
    rest_s: float
    eis: EIS
    kind: Literal["interleave"] = "interleave"


ResolvedStep = Rest | Galvanostatic | Potentiostatic | CV | EIS | Pressure | CCDRamp | Interleave


@dataclass(frozen=True)
class ResolvedProtocol:
    name: str
    schema_version: int
    steps: tuple[ResolvedStep, ...]
    limits: Limits = Limits()
    analyses: tuple[str, ...] = ()  # analysis names to run when the run ends
    # located "FILE:LINE:COL: warning: ..." lines: shown, recorded with the run, never blocking
    warnings: tuple[str, ...] = ()
