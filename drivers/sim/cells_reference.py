"""The digital-twin cell, one time step at a time: the readable definition of its physics.

Na|NASICON|Na, NaK@CC|SnO2-NASICON|Na and NaK|NaK cells. The simulated potentiostat drives them
through the `labctl_drivers.sim.cell_model.CellModel` protocol and nothing else in the app knows
their equations. The model is labctl's own lumped cell model (areal units inside: mA/cm²,
Ω cm², mAh/cm², V), calibrated to the CCDs and critical stripping capacities of Wu et al.,
J. Mater. Chem. A 13 (2025) 22074:

* V = ΔE_ocv + j R_Ω + η_1(j) + η_2(j) (+ noise); η = (2RT/F) asinh(j / 2 j0 A) + j R_c (1/A − 1).
* Active area A = (1 − φ)(1 − d)(1 − θ): voids φ, NaK de-wetting d, blocking θ by precipitate.
* Voids grow when a stripping electrode is driven above j_c (metal/liquid supply limit) and close
  with τ_close; filaments grow when a plating electrode is driven above j_c and short the cell.
* NaK composition follows the Na removed from the accessible alloy; beyond the liquidus K(s)
  precipitates (lever rule) and blocks the interface.

`PerStepCell` integrates one explicit step at a time in plain Python scalars (`_slow_step`:
exact exponential for φ with the growth rate frozen over dt). It is the reference, shipped and
kept readable: `labctl_drivers.sim.cells_fast.SimulatedCell`, the cell every station and test
uses, integrates whole chunks in closed form while the nonlinear mechanisms are dormant and must
give this module's numbers (tests/sim/test_cell_physics.py compares the two).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import brentq

from labctl_chemistry import phase_diagram as pdg

K_BOLTZMANN_EV: float = 8.617333262e-5  # eV/K
_SECONDS_PER_HOUR: float = 3600.0
#: Above ~63 °C K is liquid too (w_max = 1); cap w so a fully stripped alloy gives a large
#: finite OCV instead of log(0) = inf in the data stream.
_W_CAP: float = 1.0 - 1e-6
_NOISE_BLOCK: int = 8192

#: Calibrated NaK interface parameters per K wt % (fitted to the paper's Fig. 1 numbers):
#: (R_int0 Ω cm², j_c mA/cm² at 25 °C, τ_close s, utilisation u).
NAK_CALIBRATION: dict[float, tuple[float, float, float, float]] = {
    50.0: (20.0, 1.15, 60.0, 0.757),
    65.0: (36.0, 0.75, 60.0, 0.882),
    80.0: (48.0, 0.55, 60.0, 0.96),
}

#: NaK loading used when a cell gives no alloy mass. The paper's only loading statement is "5 mL"
#: of NaK per 6 mm carbon-cloth disk, physically 5 µL (the µ lost in typesetting; 5 mL would not
#: fit in a 6 mm cloth, and its Fig. 4 discussion says the cloth was not even saturated):
#: 5 µL × ~0.87 g/cm³ ≈ 4.35 mg on 0.283 cm² ≈ 15.4 mg/cm². An earlier calibration used
#: 8 mg/cm², a placeholder value; the per-gram calibration (utilisation u) carries over
#: because composition, de-wetting and blocking depend on q/m only (critical capacities at
#: 15.4 mg/cm² are within 1 % of those at 8 mg/cm²), while areal capacities scale with loading.
DEFAULT_NAK_LOADING_MG_CM2: float = 15.4


def na_metal_defaults(pressure_MPa: float) -> tuple[float, float, float]:
    """(R_int0, j_c, τ_close) of a Na-metal/NASICON interface at a stack pressure.

    R_int0 = 4 + 12/P (creep closes asperities), j_c = 1.039 + 0.2111 P (linear in P, as the
    Na/β″-alumina void data of Spencer Jolly 2020 suggest), τ_close = 600 s / P. Calibrated so the
    failed CCD step is 1.3 / 3.2 mA/cm² at 1 / 10 MPa (the paper's values); in between the
    line gives 1.5 at 2 MPa and 2.2 at 5 MPa through the engine (j_c = 2.09 sits right at the
    2.1 step, whose overshoot is too small to fail within a 0.1 mAh/cm² half-cycle). Pressure is
    floored at 0.05 MPa because the 1/P laws are fits over 1–10 MPa, not statements about a
    free-standing cell.
    """
    p = max(pressure_MPa, 0.05)
    return 4.0 + 12.0 / p, 1.039 + 0.2111 * p, 600.0 / p


def nak_defaults(k_wt_pct: float) -> tuple[float, float, float, float]:
    """(R_int0, j_c, τ_close, u) for a NaK alloy, interpolated linearly in K wt % between the
    calibrated NaK50/65/80 points (clamped outside), so intermediate alloys get plausible values
    instead of an error. Pressure-independent: the liquid transmits pressure hydrostatically."""
    keys = sorted(NAK_CALIBRATION)
    cols = list(zip(*(NAK_CALIBRATION[k] for k in keys), strict=True))
    return tuple(float(np.interp(k_wt_pct, keys, col)) for col in cols)  # type: ignore[return-value]


@dataclass
class CellParameters:
    """Everything that defines a simulated cell. Areal quantities are per cm² of electrode.

    `None` for an electrode parameter means "calibrated default for that material/composition"
    (resolved at construction and, for Na metal, again on every pressure change). The `*_ce`
    fields describe the counter electrode (electrode 2).
    """

    area_cm2: float = 0.5
    anode_material: str = "NaK"  # working electrode (1): "Na" or "NaK"
    k_wt_pct: float | None = 65.0
    alloy_mass_mg: float | None = None  # per NaK electrode; default 15.4 mg/cm² × area
    counter: str = "Na"  # counter electrode (2): "Na" or "NaK"
    counter_k_wt_pct: float | None = None
    counter_alloy_mass_mg: float | None = None
    temperature_C: float = 25.0
    pressure_MPa: float = 10.0
    seed: int = 0
    coated: bool | None = (
        None  # SnO2 interlayer on both pellet faces; default: True iff NaK present
    )
    # electrolyte (values at T_ref_C)
    R_bulk: float = 25.0
    R_GB: float = 15.0
    R_SnO2: float = 8.0
    tau_GB_s: float = 1e-7
    n_GB: float = 0.9
    tau_SnO2_s: float = 1e-3
    n_SnO2: float = 0.85
    Ea_electrolyte_eV: float = 0.35
    Ea_jc_eV: float = 0.14
    T_ref_C: float = 25.0
    # interfaces
    R_c: float = 2.0  # constriction resistance scale, Ω cm²
    Q_v: float = 72.0  # mA s/cm² to open voids
    Q_f: float = 18.0  # mA s/cm² to grow a filament through
    n_int: float = 0.8
    kappa: float = 0.01  # interface composition shift per mA/cm² (concentration polarisation)
    solid_fraction_full_block: float = 0.05
    dewet_max: float = 0.9
    area_floor: float = 1e-4
    # NaK slow stripping process (voids enlarging and forming, Wu 2025 Fig. 3): an arc
    # R = (R_strip0 + R_strip_per_q·q)·k at τ_strip. The paper's DRT places it at ~100 s from
    # spectra that end at 1 Hz, where no process can be resolved (a 100 s arc leaves a few Ω in a
    # 1 Hz DRT), and an arc left unfinished at 1 Hz fails labctl's lin-KK check (τ ≳ 0.2 s gives
    # residuals > 1 %); the twin puts it at 0.15 s, the slowest place a 7 MHz–1 Hz spectrum
    # both resolves and passes lin-KK.
    R_strip0: float = 5.0
    R_strip_per_q: float = 60.0
    tau_strip_s: float = 0.15
    n_strip: float = 0.9
    q_strip_onset: float = 0.01  # mAh/cm²
    # Na plated back onto a stripped NaK interface deposits as solid Na (Wu 2025, Fig. 3 and 6
    # discussion): an arc R_plated·(1 − e^(−s/Q_plated))·k at τ_plated·k, s = the deepest
    # re-plating so far (max over time of q_peak − q), which later stripping does not remove.
    # k = R_int0 / 20 Ω cm² (1 for NaK50) carries the paper's "larger with more K".
    R_plated: float = 60.0
    Q_plated: float = 0.5  # mAh/cm²
    tau_plated_s: float = 0.005
    # shorts and noise
    R_short: float = 0.3
    microshort_onset: float = 0.6
    microshort_rate_per_s: float = 0.05
    microshort_R_range: tuple[float, float] = (20.0, 300.0)
    noise_V: float = 2e-4
    inductance_H: float = 1e-7
    # stack mechanics, felt by the spring frame: Na metal creeps out of the stack under load
    # (Spencer Jolly 2020), thinning each Na-metal electrode towards creep_um_per_MPa·P with
    # time constant tau_creep_s (irreversibly); moving Na changes Na-metal thickness by
    # NA_UM_PER_MAH_CM2 per mAh/cm². NaK sits in carbon cloth, whose thickness does not change.
    creep_um_per_MPa: float = 0.5
    tau_creep_s: float = 6 * 3600.0
    # per-electrode overrides (None = calibrated default)
    R_int0_we: float | None = None
    j_c_we: float | None = None
    tau_close_we: float | None = None
    utilisation_we: float | None = None
    R_int0_ce: float | None = None
    j_c_ce: float | None = None
    tau_close_ce: float | None = None
    utilisation_ce: float | None = None


@dataclass(frozen=True)
class CellState:
    """Snapshot of the hidden state, for tests and diagnostics (never shown as measured data).

    Tuples are (working electrode, counter electrode). `w` is the bulk K mass fraction of the
    accessible alloy (0 for Na metal); `q_mAh_cm2` is the net Na stripped from that electrode.
    """

    time_s: float
    phi: tuple[float, float]
    ell: tuple[float, float]
    q_mAh_cm2: tuple[float, float]
    w: tuple[float, float]
    active_area: tuple[float, float]
    shorted: bool
    short_R_ohm_cm2: float | None
    E_we_V: float  # WE potential vs a Na quasi-reference at the last current (R_u = R_Ω/2)


@dataclass
class _Electrode:
    """Resolved per-electrode parameters (internal)."""

    material: str
    w0: float  # K mass fraction (0 for Na)
    m_acc: float  # accessible alloy, g/cm² (0 for Na)
    R_int0: float
    j_c_ref: float
    tau_close: float
    utilisation: float
    overrides: dict[str, float | None] = field(default_factory=dict)
    #: an attribute, not a property: the per-step physics asks it a few times a step
    is_nak: bool = field(init=False)

    def __post_init__(self) -> None:
        self.is_nak = self.material == "NaK"


def _zarc(omega: np.ndarray, R: float, tau: float, n: float) -> np.ndarray:
    """ZARC element R / (1 + (iωτ)^n), equivalent to R ∥ CPE with Q = τ^n / R."""
    return R / (1.0 + (1j * omega * tau) ** n)


#: 1 mAh/cm² of Na = 3.731e-5 mol/cm² × 23.78 cm³/mol (Na molar volume) = 8.87 µm of Na metal
NA_UM_PER_MAH_CM2 = 8.87


class PerStepCell:
    """Generic two-electrode twin (any Na/NaK pairing), integrated one step at a time.

    Implements the `CellModel` protocol. Deterministic for a given seed and call sequence: noise
    and micro-short events come from two independent streams spawned from `seed`.
    """

    def __init__(self, params: CellParameters | None = None, **overrides: Any) -> None:
        p = replace(params or CellParameters(), **overrides)
        for name, mat in (("anode_material", p.anode_material), ("counter", p.counter)):
            if mat not in ("Na", "NaK"):
                raise ValueError(f"{name} must be 'Na' or 'NaK', got {mat!r}")
        if p.area_cm2 <= 0:
            raise ValueError("area_cm2 must be positive")
        self.params: CellParameters = p
        self.area_cm2: float = p.area_cm2
        self.coated: bool = (
            p.coated if p.coated is not None else "NaK" in (p.anode_material, p.counter)
        )
        self.pressure_MPa: float = p.pressure_MPa
        self.temperature_C: float = p.temperature_C
        self._el: list[_Electrode] = [
            self._make_electrode(p.anode_material, p.k_wt_pct, p.alloy_mass_mg, "we"),
            self._make_electrode(p.counter, p.counter_k_wt_pct, p.counter_alloy_mass_mg, "ce"),
        ]
        self.phi: list[float] = [0.0, 0.0]
        self.ell: list[float] = [0.0, 0.0]
        self.q: list[float] = [0.0, 0.0]
        #: most Na stripped so far and deepest re-plating below it, per electrode (mAh/cm²):
        #: the interface history the in-situ EIS arcs depend on (see `_zarc_elements`)
        self.q_peak: list[float] = [0.0, 0.0]
        self.replated: list[float] = [0.0, 0.0]
        self.shorted: bool = False
        self.R_short: float = p.R_short
        self.time_s: float = 0.0
        self._creep_um = 0.0  # creep thinning of each Na-metal electrode so far
        self._creep_t = 0.0  # cell time up to which creep is integrated
        self._last_j: float = 0.0
        seeds = np.random.SeedSequence(p.seed).spawn(2)
        self._rng_noise = np.random.default_rng(seeds[0])
        self._rng_events = np.random.default_rng(seeds[1])
        self._noise_buf: np.ndarray = np.empty(0)
        self._noise_pos: int = 0
        #: the Na-metal electrodes (their creep and the Na moved set the stack's thickness)
        self._metal: tuple[int, ...] = tuple(i for i in (0, 1) if not self._el[i].is_nak)
        self._refresh()

    # ------------------------------------------------------------------ parameters
    def _make_electrode(
        self, material: str, k_wt_pct: float | None, mass_mg: float | None, tag: str
    ) -> _Electrode:
        p = self.params
        ov: dict[str, float | None] = {
            "R_int0": getattr(p, f"R_int0_{tag}"),
            "j_c": getattr(p, f"j_c_{tag}"),
            "tau_close": getattr(p, f"tau_close_{tag}"),
            "utilisation": getattr(p, f"utilisation_{tag}"),
        }
        if material == "Na":
            return _Electrode("Na", 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, ov)
        if k_wt_pct is None or not 0.0 < k_wt_pct < 100.0:
            raise ValueError(f"NaK electrode needs 0 < k_wt_pct < 100, got {k_wt_pct!r}")
        R0, jc, tau, u = nak_defaults(k_wt_pct)
        R0 = ov["R_int0"] if ov["R_int0"] is not None else R0
        jc = ov["j_c"] if ov["j_c"] is not None else jc
        tau = ov["tau_close"] if ov["tau_close"] is not None else tau
        u = ov["utilisation"] if ov["utilisation"] is not None else u
        mass = mass_mg if mass_mg is not None else DEFAULT_NAK_LOADING_MG_CM2 * p.area_cm2
        if mass <= 0:
            raise ValueError("alloy mass must be positive")
        return _Electrode("NaK", k_wt_pct / 100.0, u * mass * 1e-3 / p.area_cm2, R0, jc, tau, u, ov)

    def _refresh(self) -> None:
        """Recompute everything that depends on pressure or temperature.

        A simulated frame tells the cell its pressure at every gauge reading (once a second,
        and it drifts as the cell thins), so what depends on the temperature alone (the
        Arrhenius factors and resistances, RT/F, the liquid window) is recomputed only when
        the temperature changed: the same expressions on the same inputs, the same values."""
        p = self.params
        na_defaults = None  # the same for both electrodes of a Na | Na cell
        for e in self._el:
            if e.material == "Na":
                if na_defaults is None:
                    na_defaults = na_metal_defaults(self.pressure_MPa)
                R0, jc, tau = na_defaults
                e.R_int0 = e.overrides["R_int0"] if e.overrides["R_int0"] is not None else R0
                e.j_c_ref = e.overrides["j_c"] if e.overrides["j_c"] is not None else jc
                e.tau_close = (
                    e.overrides["tau_close"] if e.overrides["tau_close"] is not None else tau
                )
        if getattr(self, "_refreshed_T", None) != self.temperature_C:
            T = self.temperature_C + 273.15
            T_ref = p.T_ref_C + 273.15
            # Arrhenius: ionic transport in the pellet (Ea ≈ 0.35 eV) and the critical current
            # (Ea ≈ 0.14 eV, Lowack 2026). The interface R_int0 is kept T-independent: it was
            # calibrated at 25 °C only and the paper gives no temperature series to fit it to.
            self._f_electrolyte = math.exp(
                p.Ea_electrolyte_eV / K_BOLTZMANN_EV * (1.0 / T - 1.0 / T_ref)
            )
            self._f_jc = math.exp(-p.Ea_jc_eV / K_BOLTZMANN_EV * (1.0 / T - 1.0 / T_ref))
            self.R_bulk = p.R_bulk * self._f_electrolyte
            self.R_GB = p.R_GB * self._f_electrolyte
            self.R_SnO2 = p.R_SnO2 * self._f_electrolyte
            self.R_ohm = self.R_bulk + self.R_GB + (2.0 * self.R_SnO2 if self.coated else 0.0)
            self._RT_F = pdg.GAS_CONSTANT * T / pdg.FARADAY
            self._RT_L = pdg.GAS_CONSTANT * (self.temperature_C + 273.15)  # as ln_activity_na
            self._w_max = pdg.w_max(self.temperature_C)
            self._w_min = pdg.w_min(self.temperature_C)
            self._refreshed_T = self.temperature_C
        self._jc = [e.j_c_ref * self._f_jc for e in self._el]
        self._j0 = [1e3 * self._RT_F / e.R_int0 for e in self._el]  # mA/cm²

    def thinning_um(self) -> float:
        """How much thinner the stack is than at assembly (µm; negative = thicker).

        The simulated spring frame reads this to let its force drift as the cell thins. Creep is
        integrated lazily up to the cell's time at the pressure it feels now.
        """
        p = self.params
        dt = self.time_s - self._creep_t
        self._creep_t = self.time_s
        target = p.creep_um_per_MPa * self.pressure_MPa
        if dt > 0 and self._creep_um < target:
            self._creep_um = target + (self._creep_um - target) * math.exp(-dt / p.tau_creep_s)
        metal = self._metal
        # q[i] > 0: Na stripped from electrode i (thinner); < 0: plated onto it (thicker);
        # summed from 0.0 in order, as the builtin sum() of the floats did
        transfer = 0.0
        for i in metal:
            transfer += NA_UM_PER_MAH_CM2 * self.q[i]
        return len(metal) * self._creep_um + transfer

    def set_pressure(self, pressure_MPa: float) -> None:
        """Stack pressure now: changes R_int0, j_c and τ_close of Na-metal electrodes only."""
        if pressure_MPa != self.pressure_MPa:
            self.pressure_MPa = float(pressure_MPa)
            self._refresh()

    def set_temperature(self, temperature_C: float) -> None:
        """Cell temperature now (not part of CellModel; for a simulated oven/thermocouple)."""
        if temperature_C != self.temperature_C:
            self.temperature_C = float(temperature_C)
            self._refresh()

    def inject_short(self, r_ohm_cm2: float = 0.3) -> None:
        """Fault hook: a sudden, permanent hard short of areal resistance r."""
        self.shorted = True
        self.R_short = float(r_ohm_cm2)

    # ------------------------------------------------------------------ physics
    @staticmethod
    def _composition_scalar(e: _Electrode, q: float) -> float:
        """Bulk K fraction of the accessible alloy after stripping q mAh/cm² (negative = plated);
        1 once the accessible alloy holds no Na."""
        denom = e.m_acc - q / pdg.Q_NA_MAH_G
        return e.w0 * e.m_acc / denom if denom > e.w0 * e.m_acc else 1.0

    def _terms_scalar(self, i: int, q: float, phi: float, j_local: float) -> tuple[float, float]:
        """Active area fraction and open-circuit potential vs Na of electrode i.

        For NaK the interface composition is shifted by κ·|j| towards K when stripping and towards
        Na when plating; the lever rule is applied on *both* liquidus branches (not only the K
        side), so that heavy plating into a NaK symmetric cell eventually precipitates
        Na(s) and blocks the interface too, as the phase diagram demands.

        Plain `math` (numpy's call overhead would cost ~5× the arithmetic per step); the
        closed-form chunks' `SimulatedCell._terms` is the vectorised version of the same numbers.
        """
        return self._area_scalar(i, q, phi, j_local), self._ocv_scalar(i, q)

    def _area_scalar(self, i: int, q: float, phi: float, j_local: float) -> float:
        """Active area fraction alone: the j_c checks and the EIS arcs need no potential, and
        ln a_Na is the dearer half of `_terms_scalar`."""
        e = self._el[i]
        p = self.params
        if not e.is_nak:
            return max(1.0 - phi, p.area_floor)
        w = self._composition_scalar(e, q)
        w_i = w + p.kappa * j_local
        wmax, wmin = self._w_max, self._w_min
        fs_k = max(0.0, (w_i - wmax) / max(1.0 - wmax, 1e-9))
        fs_na = max(0.0, (wmin - w_i) / max(wmin, 1e-9))
        theta = min(0.999, (fs_k + fs_na) / p.solid_fraction_full_block)
        span = wmax - e.w0
        x = min(1.0, max(0.0, (w - e.w0) / span)) if span > 1e-9 else float(w > e.w0)
        d = p.dewet_max * x * x
        A = (1.0 - phi) * (1.0 - d) * (1.0 - theta)
        return max(A, p.area_floor)

    def _ocv_scalar(self, i: int, q: float) -> float:
        """Open-circuit potential vs Na of electrode i (depends on q and T only)."""
        e = self._el[i]
        if not e.is_nak:
            return 0.0
        w = self._composition_scalar(e, q)
        return -self._RT_F * pdg.ln_activity_na_scalar(
            min(max(w, self._w_min), self._w_max, _W_CAP), self.temperature_C
        )

    def _state_areas(self, j: float) -> tuple[float, float]:
        """(A1, A2) of the present state at ionic current j."""
        return (self._area_scalar(0, self.q[0], self.phi[0], j),
                self._area_scalar(1, self.q[1], self.phi[1], -j))

    def _state_terms(self, j: float) -> tuple[float, float, float, float]:
        """(A1, A2, E1, E2) of the present state at ionic current j."""
        A1, E1 = self._terms_scalar(0, self.q[0], self.phi[0], j)
        A2, E2 = self._terms_scalar(1, self.q[1], self.phi[1], -j)
        return A1, A2, E1, E2

    def _v_ion_scalar(self, j: float, A1: float, A2: float, E1: float, E2: float) -> float:
        """Voltage (V) driving an ionic current j (mA/cm², + strips WE) through the stack."""
        return self._stack_voltage(math.asinh, j, A1, A2, E1, E2)

    def _stack_voltage(self, asinh: Callable[[Any], Any], j: float, A1: Any, A2: Any, E1: Any,
                       E2: Any) -> Any:
        """V = E1 − E2 + j·R_Ω + η1 + η2, with η = (2RT/F)·asinh(j / 2 j0 A) + j·R_c·(1/A − 1).

        Written once for scalars (`math.asinh`) and for the closed-form chunks' arrays
        (`np.arcsinh`): the same operations in the same order either way.
        """
        b = 2.0 * self._RT_F
        Rc = self.params.R_c * 1e-3
        eta1 = b * asinh(j / (2.0 * self._j0[0] * A1)) + j * Rc * (1.0 / A1 - 1.0)
        eta2 = b * asinh(j / (2.0 * self._j0[1] * A2)) + j * Rc * (1.0 / A2 - 1.0)
        return E1 - E2 + j * self.R_ohm * 1e-3 + eta1 + eta2

    def _v_ion_state(self, j: float) -> float:
        return self._v_ion_scalar(j, *self._state_terms(j))

    @staticmethod
    def _bracket_root(f: Any, scale: float) -> float:
        """Root of an increasing function by bracket expansion + brentq."""
        lo, hi = -scale, scale
        for _ in range(60):
            if f(lo) <= 0.0:
                break
            lo *= 4.0
        for _ in range(60):
            if f(hi) >= 0.0:
                break
            hi *= 4.0
        return float(brentq(f, lo, hi, xtol=1e-12, rtol=1e-10, maxiter=200))

    def _split_current(self, j: float, R_e: float) -> float:
        """Ionic part of j when an electronic path R_e (Ω cm²) is in parallel: solve
        V_ion(j_ion) = (j − j_ion)·R_e; the residual is increasing in j_ion, so brentq is safe."""
        return self._bracket_root(
            lambda ji: self._v_ion_state(ji) - (j - ji) * R_e * 1e-3, max(abs(j), 1.0)
        )

    def _invert_voltage(self, V: float) -> float:
        """Ionic current (mA/cm²) that the present state passes at an ionic voltage V."""
        return self._bracket_root(lambda ji: self._v_ion_state(ji) - V, 1.0)

    # ------------------------------------------------------------------ state update
    def _advance(self, j_ion: float, dt: float) -> None:
        """One explicit step of the state at ionic current j_ion (φ: exact for frozen growth)."""
        p = self.params
        A1, A2 = self._state_areas(j_ion)
        for i, (j_loc, A) in enumerate(((j_ion, A1), (-j_ion, A2))):
            over = abs(j_loc) / A - self._jc[i]
            g = over / p.Q_v if (over > 0.0 and j_loc > 0.0) else 0.0
            if over > 0.0 and j_loc < 0.0:
                self.ell[i] += over / p.Q_f * dt
            tau = self._el[i].tau_close
            k = g + 1.0 / tau
            phi_eq = g / k
            self.phi[i] = phi_eq + (self.phi[i] - phi_eq) * math.exp(-k * dt)
        dq = j_ion * dt / _SECONDS_PER_HOUR
        self.q[0] += dq
        self.q[1] -= dq
        self._note_history()
        if max(self.ell) >= 1.0 and not self.shorted:
            self.shorted = True
            self.R_short = p.R_short
        self.time_s += dt

    def _note_history(self) -> None:
        """Fold the present q into q_peak and replated (monotone in q within any constant-current
        stretch, so noting the end of a stretch is noting all of it)."""
        for i in (0, 1):
            q = self.q[i]
            if q > self.q_peak[i]:
                self.q_peak[i] = q
            elif self.q_peak[i] - q > self.replated[i]:
                self.replated[i] = self.q_peak[i] - q

    def _electronic_path(self, dt: float) -> float | None:
        """R_e of the electronic path this step: hard short, a random micro-short, or None."""
        if self.shorted:
            return self.R_short
        p = self.params
        ell = max(self.ell)
        if ell > p.microshort_onset:
            rate = p.microshort_rate_per_s * (ell - p.microshort_onset) / (1.0 - p.microshort_onset)
            if self._rng_events.random() < -math.expm1(-rate * dt):
                lo, hi = p.microshort_R_range
                return float(self._rng_events.uniform(lo, hi))
        return None

    def _noise(self, n: int) -> np.ndarray:
        """The next n samples of the measurement-noise stream.

        Drawn from a pre-filled buffer so that the k-th recorded sample gets the k-th noise value
        whichever integration path produced it: seeded runs are then reproducible even if a
        parameter change moves the fast/slow switch points, and a scalar draw costs ~0.1 µs
        instead of ~1 µs.
        """
        s = self.params.noise_V
        if s <= 0.0:
            return np.zeros(n)
        if self._noise_pos + n > self._noise_buf.size:
            rest = self._noise_buf[self._noise_pos :]
            fresh = self._rng_noise.normal(0.0, s, size=max(_NOISE_BLOCK, n))
            self._noise_buf = np.concatenate([rest, fresh])
            self._noise_pos = 0
        out = self._noise_buf[self._noise_pos : self._noise_pos + n]
        self._noise_pos += n
        return out

    def _noise_scalar(self) -> float:
        """`float(self._noise(1)[0])` (the same stream position) without slicing an array."""
        pos = self._noise_pos
        if self.params.noise_V > 0.0 and pos < self._noise_buf.size:
            self._noise_pos = pos + 1
            return float(self._noise_buf[pos])
        return float(self._noise(1)[0])

    def _slow_step(self, j: float, dt: float) -> float:
        """One per-step Euler update at applied areal current j; returns the noisy voltage."""
        R_e = self._electronic_path(dt)
        j_ion = j if R_e is None else self._split_current(j, R_e)
        self._advance(j_ion, dt)
        if R_e is None and self.shorted:  # the filament just went through
            R_e = self.R_short
        if R_e is None:
            self._last_j = j
            V = self._v_ion_state(j)
        else:
            j_ion = self._split_current(j, R_e)
            self._last_j = j_ion
            V = (j - j_ion) * R_e * 1e-3
        return V + self._noise_scalar()

    # ------------------------------------------------------------------ CellModel API
    def step(self, current_A: float, dt_s: float) -> float:
        """Advance by dt at a constant applied current; return the voltage at the end (V)."""
        return float(self.run_constant_current(current_A, dt_s, 1)[0])

    def run_constant_current(
        self,
        current_A: float,
        dt_s: float,
        n_steps: int,
        E_min_V: float | None = None,
        E_max_V: float | None = None,
    ) -> np.ndarray:
        """Advance up to n_steps at constant current; voltage after each step, early stop on limits.

        One `_slow_step` per step, the step that crosses a limit included.
        """
        j = current_A * 1e3 / self.area_cm2
        lo = -math.inf if E_min_V is None else E_min_V
        hi = math.inf if E_max_V is None else E_max_V
        out: list[float] = []  # kept as floats: numpy per step costs µs
        for _ in range(n_steps):
            v = self._slow_step(j, dt_s)
            out.append(v)
            if v < lo or v > hi:
                break
        return np.asarray(out, dtype=float)

    def solve_current(self, voltage_V: float, dt_s: float) -> float:
        """Advance by dt at an applied voltage; return the current (A) that flowed.

        The current is found on the state at the start of the step (explicit in time); with an
        electronic path in parallel the total is j_ion + V/R_e. No measurement noise is added to the
        current: the simulated potentiostat is the place to model current-range noise.
        """
        R_e = self._electronic_path(dt_s)
        j_ion = self._invert_voltage(voltage_V)
        j = j_ion + (voltage_V / (R_e * 1e-3) if R_e is not None else 0.0)
        self._advance(j_ion, dt_s)
        self._last_j = j_ion
        return j * self.area_cm2 * 1e-3

    def impedance(self, frequency_Hz: np.ndarray) -> np.ndarray:
        """Small-signal impedance (Ω) of the present state around open circuit.

        Z = iωL + [R_bulk + ZARC(R_GB, 1e-7 s) + Σ_e (ZARC(R_SnO2, 1e-3 s) if coated
        + ZARC(R_int,e, τ_int(A_e)) + NaK with q>0: ZARC((5 + 60 q)·k, 0.15 s, 0.9) + NaK after
        re-plating: ZARC(60 (1 − e^(−s/0.5))·k, 0.005 s·k))] / area, k = R_int0 / 20 Ω cm²
        (the Fig. 3 arcs, CellParameters says why).
        R_int,e = R_int0/A + R_c(1/A − 1) is the exact small-signal slope of η_e, so the DC limit
        of Z equals the slope of the galvanostatic model (R_int0/A alone would
        disagree with the DC equation once voids form). Known gap: the NaK stripping and
        re-plated solid-Na arcs exist only here, not in the galvanostatic voltage (the DC model
        lacks them; at 0.25 mA/cm² they would add some 10-60 mV), so after stripping or re-plating a
        NaK cell the EIS DC limit is above the galvanostatic slope.
        A hard short gives iωL + R_short/area.
        """
        p = self.params
        f = np.asarray(frequency_Hz, dtype=float)
        if f.size == 1:
            # The simulated SP-300 asks for one frequency at a time (each point at the state of
            # its own moment): plain complex arithmetic is ~10× cheaper than numpy there.
            z = self._impedance_scalar(float(f.reshape(-1)[0]))
            return np.full(f.shape, z, dtype=complex)
        omega = 2.0 * np.pi * f
        Z_L = 1j * omega * p.inductance_H
        if self.shorted:
            return Z_L + self.R_short / self.area_cm2 + 0.0j
        Z = self.R_bulk + 0.0j
        for R, tau, n in self._zarc_elements():
            Z = Z + _zarc(omega, R, tau, n)
        return Z_L + Z / self.area_cm2

    def impedance_at(self, frequency_Hz: float) -> complex:
        """`impedance` at one frequency as a Python complex: what the simulated SP-300 asks for
        once per EIS point, without wrapping it in (and unwrapping it from) numpy arrays."""
        return self._impedance_scalar(float(frequency_Hz))

    def _impedance_scalar(self, f: float) -> complex:
        """`impedance` at one frequency, in Python complex arithmetic."""
        p = self.params
        omega = 2.0 * math.pi * f
        Z_L = 1j * omega * p.inductance_H
        if self.shorted:
            return Z_L + self.R_short / self.area_cm2
        Z: complex = self.R_bulk + 0.0j
        for R, tau, n in self._zarc_elements():
            Z += R / (1.0 + (1j * omega * tau) ** n)
        return Z_L + Z / self.area_cm2

    def _zarc_elements(self) -> list[tuple[float, float, float]]:
        """(R Ω cm², τ s, n) of every ZARC of the present state, in the order they are summed."""
        p = self.params
        out = [(self.R_GB, p.tau_GB_s, p.n_GB)]
        A1, A2 = self._state_areas(0.0)
        for i, A in enumerate((A1, A2)):
            e = self._el[i]
            if self.coated:
                out.append((self.R_SnO2, p.tau_SnO2_s, p.n_SnO2))
            R_int = e.R_int0 / A + p.R_c * (1.0 / A - 1.0)
            tau_int = 2e-3 * math.exp(9.46 * (1.0 - A))
            out.append((R_int, tau_int, p.n_int))
            if not e.is_nak:
                continue
            k = e.R_int0 / 20.0
            if self.q[i] > 0.0:
                # Smooth onset over ~0.01 mAh/cm²: switching the 5 Ω cm² term on at q > 0 would
                # be a step making one stripped nanocoulomb visible in the spectrum.
                onset = -math.expm1(-self.q[i] / p.q_strip_onset)
                R_strip = (p.R_strip0 + p.R_strip_per_q * self.q[i]) * onset * k
                out.append((R_strip, p.tau_strip_s, p.n_strip))
            if self.replated[i] > 0.0:
                R_pl = p.R_plated * -math.expm1(-self.replated[i] / p.Q_plated) * k
                out.append((R_pl, p.tau_plated_s * k, p.n_int))
        return out

    # ------------------------------------------------------------------ diagnostics
    @property
    def state(self) -> CellState:
        """Snapshot of φ, ℓ, q, w, A and the short state."""
        j = self._last_j
        A1, A2, E1, _ = self._state_terms(j)
        b = 2.0 * self._RT_F
        eta1 = b * math.asinh(j / (2.0 * self._j0[0] * A1)) + j * self.params.R_c * 1e-3 * (
            1.0 / A1 - 1.0
        )
        E_we = E1 + eta1 + j * 0.5 * self.R_ohm * 1e-3
        w = tuple(
            self._composition_scalar(self._el[i], self.q[i]) if self._el[i].is_nak else 0.0
            for i in range(2)
        )
        return CellState(
            time_s=self.time_s,
            phi=(self.phi[0], self.phi[1]),
            ell=(self.ell[0], self.ell[1]),
            q_mAh_cm2=(self.q[0], self.q[1]),
            w=(w[0], w[1]),
            active_area=(A1, A2),
            shorted=self.shorted,
            short_R_ohm_cm2=self.R_short if self.shorted else None,
            E_we_V=E_we,
        )

    @property
    def accessible_alloy_g_cm2(self) -> tuple[float, float]:
        """Accessible (utilised) alloy per electrode, g/cm² (0 for Na metal)."""
        return (self._el[0].m_acc, self._el[1].m_acc)

    def small_signal_resistance_ohm(self) -> float:
        """DC slope dV/dI at open circuit of the present state, Ω (for tests and EIS checks)."""
        return float(np.real(self.impedance(np.array([1e-9]))[0]))
