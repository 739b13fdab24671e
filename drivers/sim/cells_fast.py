"""The digital-twin cell's fast path: closed-form chunks and the rest shortcut.

Campaigns simulate ~10^5 one-second steps per cell, so `SimulatedCell.run_constant_current`
integrates whole chunks in closed form whenever the nonlinear mechanisms are dormant (|j|/A ≤ j_c
on both electrodes, no filament in the micro-short range). In that regime φ only decays
exponentially, ℓ is frozen and q is linear in time, so every per-step quantity is an explicit
function of the step index and numpy evaluates a whole chunk at once. Outside it (voids or
filaments growing, micro-shorts) it falls back to the reference's per-step update
(`cells_reference.PerStepCell._slow_step`), which uses the *same* state update (exact
exponential for φ with the growth rate frozen over dt), so the two paths agree to round-off when
noise is off; the noise stream is indexed by sample, so noisy traces agree too.
tests/sim/test_cell_physics.py compares `SimulatedCell` with `PerStepCell`.

A rest step (I = 0, as an EIS sweep calls once per frequency) takes `_rest_step`, the per-step
update with the terms that are exactly zero at rest left out: the reference's numbers to the bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labctl_chemistry import phase_diagram as pdg
from labctl_drivers.sim.cells_reference import (
    _SECONDS_PER_HOUR,
    _W_CAP,
    CellParameters,
    PerStepCell,
)

#: Below this many steps numpy's per-call overhead (~50 µs) beats the ~5 µs per-step path.
_MIN_CHUNK: int = 12
#: Step indices 0..65536 (the largest chunk + 1), shared by every closed-form chunk: an arange
#: per chunk was a visible part of a poll's cost. Read-only so that no caller can mutate it.
_STEP_INDEX: np.ndarray = np.arange(65537, dtype=float)
_STEP_INDEX.flags.writeable = False


class SimulatedCell(PerStepCell):
    """Generic two-electrode twin (any Na/NaK pairing); the named subclasses fix the pairing.

    `PerStepCell`'s physics and numbers, integrated in closed-form chunks where they allow it.
    Implements the `CellModel` protocol. Deterministic for a given seed and call sequence: noise
    and micro-short events come from two independent streams spawned from `seed`.
    """

    def __init__(self, params: CellParameters | None = None, **overrides: Any) -> None:
        self._force_slow: bool = False  # tests: take the reference's per-step path throughout
        self._rest_ocv_key: tuple[float, float, float] | None = None  # see _rest_step
        self._rest_ocv = 0.0
        super().__init__(params, **overrides)

    def _refresh(self) -> None:
        """The reference's refresh, and forget what the fast path cached about the old state."""
        self._rest_ocv_key = None  # the cached rest voltage may depend on what changes here
        self._eligible_key: tuple[float, ...] | None = None  # j_c changes here
        self._eligible_ok = False
        super()._refresh()

    # ------------------------------------------------------------------ physics (vectorised)
    def _composition(self, i: int, q: np.ndarray) -> np.ndarray:
        """Bulk K fraction of the accessible alloy after stripping q mAh/cm² (negative = plated)."""
        e = self._el[i]
        removed = q / pdg.Q_NA_MAH_G  # g/cm² of Na
        denom = e.m_acc - removed
        with np.errstate(divide="ignore", invalid="ignore"):
            w = e.w0 * e.m_acc / denom
        return np.where(denom > e.w0 * e.m_acc, w, 1.0)

    def _terms(
        self, i: int, q: np.ndarray, phi: np.ndarray | float, j_local: float
    ) -> tuple[np.ndarray | float, np.ndarray | float]:
        """`_terms_scalar` (the physics is described there) for a whole chunk: q and φ are arrays
        over the chunk's steps.

        Called on every closed-form chunk (tens of samples per poll), so numpy's per-call
        overhead dominates: q is linear in the step index and w monotonic in q, so each
        clip/where/max is decided from the chunk's two end values and skipped when it cannot
        change anything (the arithmetic that remains is the same, value for value). A Na-metal
        electrode with no voids returns scalars (A = 1, E = 0), and a NaK electrode on the
        plating side with no voids a scalar A; the caller broadcasts them.
        """
        e = self._el[i]
        p = self.params
        if not e.is_nak:
            if isinstance(phi, float):
                return max(1.0 - phi, p.area_floor), 0.0
            return np.maximum(1.0 - phi, p.area_floor), 0.0
        wmax, wmin = self._w_max, self._w_min
        q_ends = (float(q[0]), float(q[-1]))
        w_ends = [self._composition_scalar(e, qe) for qe in q_ends]
        if min(e.m_acc - qe / pdg.Q_NA_MAH_G for qe in q_ends) > e.w0 * e.m_acc:
            w = e.w0 * e.m_acc / (e.m_acc - q / pdg.Q_NA_MAH_G)
        else:
            w = self._composition(i, q)
        w_lo, w_hi = min(w_ends), max(w_ends)
        kj = p.kappa * j_local
        A: np.ndarray | float = 1.0 - phi
        if w_hi + kj > wmax or w_lo + kj < wmin:  # a solid precipitates somewhere in the chunk
            w_i = w + kj
            fs_k = np.maximum(0.0, (w_i - wmax) / max(1.0 - wmax, 1e-9))
            fs_na = np.maximum(0.0, (wmin - w_i) / max(wmin, 1e-9))
            theta = np.minimum(0.999, (fs_k + fs_na) / p.solid_fraction_full_block)
        else:
            theta = None  # fs_k = fs_na = 0 everywhere: θ = 0
        span = wmax - e.w0
        if span > 1e-9 and w_hi <= e.w0:
            # the plating side (w never above w0 in the chunk): x clips to 0 everywhere, so
            # d = 0 and A·(1 − d) is A itself; A then stays a scalar unless φ or θ vary
            pass
        else:
            if span > 1e-9:
                x = (w - e.w0) / span
                if w_lo < e.w0 or w_hi > wmax:
                    x = np.clip(x, 0.0, 1.0)
            else:
                x = (w > e.w0).astype(float)
            d = p.dewet_max * x * x
            A = A * (1.0 - d)
        if theta is not None:
            A = A * (1.0 - theta)
        top = min(wmax, _W_CAP)
        wc = np.clip(w, wmin, top) if (w_lo < wmin or w_hi > top) else w
        # ln a_Na inline (pdg.ln_activity_na, same operations in the same order)
        n_k = wc / pdg.M_K
        n_na = (1.0 - wc) / pdg.M_NA
        x_k = n_k / (n_k + n_na)
        x_na = 1.0 - x_k
        ln_gamma = x_k**2 * (pdg.RK_L0 + pdg.RK_L1 * (3.0 * x_na - x_k)) / self._RT_L
        # no errstate needed (it costs more than the log): wc <= _W_CAP < 1 keeps x_na > 0
        E = -self._RT_F * (np.log(x_na) + ln_gamma)
        return np.maximum(A, p.area_floor), E

    def _v_ion(
        self, j: float, A1: np.ndarray, A2: np.ndarray, E1: np.ndarray, E2: np.ndarray
    ) -> np.ndarray:
        """`_v_ion_scalar` over a chunk's arrays of areas and potentials."""
        return self._stack_voltage(np.arcsinh, j, A1, A2, E1, E2)

    # ------------------------------------------------------------------ potentiostatic samples
    def _invert_voltage(self, V: float) -> float:
        """The reference's `_invert_voltage` (same bracket, same brentq, same residual values),
        with what cannot change during one solve taken out of the residual.

        A simulated SP-300 under potential control (CA, CV, PEIS at a DC level) solves the cell
        current once per sample, and brentq evaluates the residual ~9 times per solve. The
        reference recomputes both open-circuit potentials and the composition terms of both
        areas at every evaluation although they depend on q, φ and T only, which a solve does
        not move; here they are computed once, and the evaluation keeps only what depends on
        the trial current (the NaK blocking term and the stack voltage), with the reference's
        operations in the reference's order, so every residual, and so the root, is the
        reference's to the bit. tests/sim/test_cells_fast_solve.py holds the two together.
        """
        if self._force_slow:
            return super()._invert_voltage(V)
        p = self.params
        q, phi = self.q, self.phi
        area_of = (self._area_of_current(0, q[0], phi[0]), self._area_of_current(1, q[1], phi[1]))
        dE = self._ocv_scalar(0, q[0]) - self._ocv_scalar(1, q[1])
        b = 2.0 * self._RT_F
        Rc = p.R_c * 1e-3
        c1 = 2.0 * self._j0[0]
        c2 = 2.0 * self._j0[1]
        R_ohm = self.R_ohm
        asinh = math.asinh
        area1, area2 = area_of

        def residual(j: float) -> float:
            A1 = area1(j)
            A2 = area2(-j)
            eta1 = b * asinh(j / (c1 * A1)) + j * Rc * (1.0 / A1 - 1.0)
            eta2 = b * asinh(j / (c2 * A2)) + j * Rc * (1.0 / A2 - 1.0)
            return dE + j * R_ohm * 1e-3 + eta1 + eta2 - V

        return self._bracket_root(residual, 1.0)

    def _area_of_current(self, i: int, q: float, phi: float) -> Any:
        """`_area_scalar(i, q, phi, j_local)` as a function of j_local alone, for a state that
        does not change: the composition, de-wetting and void factors computed once."""
        e = self._el[i]
        p = self.params
        floor = p.area_floor
        if not e.is_nak:
            A0 = max(1.0 - phi, floor)
            return lambda _j: A0
        w = self._composition_scalar(e, q)
        kappa = p.kappa
        wmax, wmin = self._w_max, self._w_min
        k_span = max(1.0 - wmax, 1e-9)
        na_span = max(wmin, 1e-9)
        full = p.solid_fraction_full_block
        span = wmax - e.w0
        x = min(1.0, max(0.0, (w - e.w0) / span)) if span > 1e-9 else float(w > e.w0)
        d = p.dewet_max * x * x
        base = (1.0 - phi) * (1.0 - d)

        def area(j_local: float) -> float:
            w_i = w + kappa * j_local
            fs_k = max(0.0, (w_i - wmax) / k_span)
            fs_na = max(0.0, (wmin - w_i) / na_span)
            theta = min(0.999, (fs_k + fs_na) / full)
            return max(base * (1.0 - theta), floor)

        return area

    # ------------------------------------------------------------------ closed-form chunks
    def _fast_eligible(self, j: float) -> bool:
        if self._force_slow:
            return False
        if self.shorted:  # the chunk itself checks the (tiny) ionic current against j_c
            return True
        if max(self.ell) > self.params.microshort_onset:
            return False
        if j == 0.0:
            return True
        key = (j, self.q[0], self.q[1], self.phi[0], self.phi[1])
        if key == self._eligible_key:  # the last chunk already evaluated this very state
            return self._eligible_ok
        A1, A2 = self._state_areas(j)
        return abs(j) / A1 <= self._jc[0] and abs(j) / A2 <= self._jc[1]

    def _fast_chunk(self, j: float, dt: float, n: int) -> np.ndarray:
        """Closed-form integration of up to n steps while no void/filament grows.

        Returns the noise-free voltages of the accepted steps (possibly empty) and commits the
        state at the last accepted step. The state after k steps is q0 ± j k dt, φ0 e^{−k dt/τ}.
        """
        if n + 1 > _STEP_INDEX.size:
            k = np.arange(n + 1, dtype=float)
        else:
            k = _STEP_INDEX[: n + 1]  # read-only shared buffer: no arange per chunk
        dq = j * dt / _SECONDS_PER_HOUR * k
        q1 = self.q[0] + dq
        q2 = self.q[1] - dq
        phi1: np.ndarray | float = (
            self.phi[0] * np.exp(-k * dt / self._el[0].tau_close) if self.phi[0] else 0.0
        )
        phi2: np.ndarray | float = (
            self.phi[1] * np.exp(-k * dt / self._el[1].tau_close) if self.phi[1] else 0.0
        )
        A1, E1 = self._terms(0, q1, phi1, j)
        A2, E2 = self._terms(1, q2, phi2, -j)
        m = n
        if j != 0.0:
            aj = abs(j)
            a1 = A1[:n] if isinstance(A1, np.ndarray) else A1
            a2 = A2[:n] if isinstance(A2, np.ndarray) else A2
            ok = (aj / a1 <= self._jc[0]) & (aj / a2 <= self._jc[1])
            if isinstance(ok, np.ndarray):
                m = n if bool(ok.all()) else int(np.argmin(ok))
            elif not ok:
                m = 0
        if m == 0:
            return np.empty(0)

        def tail(a: np.ndarray | float) -> np.ndarray | float:
            return a[1 : m + 1] if isinstance(a, np.ndarray) else a

        V = self._v_ion(j, tail(A1), tail(A2), tail(E1), tail(E2))  # type: ignore[arg-type]
        if not isinstance(V, np.ndarray) or V.shape != (m,):
            V = np.full(m, float(V))
        self._commit(m, q1, q2, phi1, phi2, dt)
        if j != 0.0 and m == n:
            # The next poll of the same step asks `_fast_eligible` about exactly the state just
            # committed, whose areas are A[m] here: the same IEEE operations on the same q and
            # φ as `_area_scalar`, so the answer is the scalar test's, at no extra cost.
            a1 = float(A1[m]) if isinstance(A1, np.ndarray) else A1
            a2 = float(A2[m]) if isinstance(A2, np.ndarray) else A2
            self._eligible_key = (j, self.q[0], self.q[1], self.phi[0], self.phi[1])
            self._eligible_ok = abs(j) / a1 <= self._jc[0] and abs(j) / a2 <= self._jc[1]
        return V

    def _commit(
        self, m: int, q1: np.ndarray, q2: np.ndarray, phi1: np.ndarray | float,
        phi2: np.ndarray | float, dt: float,
    ) -> None:
        self.q[0], self.q[1] = float(q1[m]), float(q2[m])
        self.phi[0] = float(phi1[m]) if isinstance(phi1, np.ndarray) else phi1
        self.phi[1] = float(phi2[m]) if isinstance(phi2, np.ndarray) else phi2
        self.time_s += m * dt

    def _truncate_chunk(self, V: np.ndarray, cut: int, j: float, dt: float) -> np.ndarray:
        """Undo a closed-form chunk past its first out-of-limit step.

        Only closed-form chunks are longer than one step, and their state is an explicit function
        of the step count, so stepping back is exact: q is linear and φ exponential.
        """
        back = V.size - cut
        dq = j * dt / _SECONDS_PER_HOUR * back
        self.q[0] -= dq
        self.q[1] += dq
        for i in range(2):
            if self.phi[i]:
                self.phi[i] *= math.exp(back * dt / self._el[i].tau_close)
        self.time_s -= back * dt
        return V[:cut]

    # ------------------------------------------------------------------ CellModel API
    def step(self, current_A: float, dt_s: float) -> float:
        """Advance by dt at a constant applied current; return the voltage at the end (V).

        One step is what `run_constant_current(current_A, dt_s, 1)` does (a single step never
        makes a closed-form chunk): `_slow_step`, called here without the list and the array
        around it (a 1 s poll integrates one step); a rest takes `_rest_step`."""
        j = current_A * 1e3 / self.area_cm2
        if current_A == 0.0 and self._rest_eligible():
            return self._rest_step(j, dt_s)
        return self._slow_step(j, dt_s)

    def _rest_eligible(self) -> bool:
        """Whether `_rest_step` is `_slow_step` at I = 0: no electronic path can act (a
        micro-short draws from the event stream, so past the onset the slow path keeps it)."""
        if self._force_slow or self.shorted:
            return False
        ell = max(self.ell)
        return ell <= self.params.microshort_onset and ell < 1.0

    def _rest_step(self, j: float, dt: float) -> float:
        """`_slow_step(j, dt)` at j = ±0 (an EIS frequency point, one call per point), without
        the machinery that cannot act at rest.

        At I = 0 nothing grows (|j|/A − j_c < 0, so g = 0 and ℓ stays), q is unchanged, and φ
        relaxes as φ·exp(−dt/τ): `_advance` computes it as φ_eq + (φ − φ_eq)·exp(−k·dt) with
        φ_eq = 0 and k = 0 + 1/τ, which is the product below bit for bit. The voltage is
        `_v_ion_scalar(0, …)` = E1 − E2 + 0 + η1 + η2 with both η exactly 0, and E depends on
        q and T only, so it is cached until q or T change (an EIS sweep rests at one q).
        tests/sim/test_cell_physics.py checks it against the per-step path to the bit.
        """
        for i in (0, 1):
            phi = self.phi[i]
            if phi:
                self.phi[i] = phi * math.exp(-(1.0 / self._el[i].tau_close) * dt)
        self.time_s += dt
        self._last_j = j
        key = (self.q[0], self.q[1], self.temperature_C)
        if self._rest_ocv_key != key:
            E1 = self._ocv_scalar(0, self.q[0])
            E2 = self._ocv_scalar(1, self.q[1])
            self._rest_ocv = (E1 - E2) + 0.0  # the + 0·R_ohm + η1 + η2 of _v_ion_scalar
            self._rest_ocv_key = key
        return self._rest_ocv + self._noise_scalar()

    def run_constant_current(
        self,
        current_A: float,
        dt_s: float,
        n_steps: int,
        E_min_V: float | None = None,
        E_max_V: float | None = None,
    ) -> np.ndarray:
        """Advance up to n_steps at constant current; voltage after each step, early stop on limits.

        Alternates closed-form chunks (dormant regime) with per-step Euler (voids or filaments
        growing, micro-shorts, hard short). Chunks are capped so that a regime change deep inside
        a long segment wastes little work.
        """
        j = current_A * 1e3 / self.area_cm2
        lo = -math.inf if E_min_V is None else E_min_V
        hi = math.inf if E_max_V is None else E_max_V
        out: list[np.ndarray] = []
        slow: list[float] = []  # per-step voltages, kept as floats: numpy per step costs µs
        done = 0
        chunk = 4096
        while done < n_steps:
            if n_steps - done > _MIN_CHUNK and self._fast_eligible(j):
                if self.shorted:
                    # Hard short: the electronic path carries almost all of j, so the ionic share
                    # is solved once per (short) chunk and the voltage held at (j − j_ion)·R_e.
                    j_ion = self._split_current(j, self.R_short)
                    self._last_j = j_ion
                    V = self._fast_chunk(j_ion, dt_s, min(600, n_steps - done))
                    V = np.full(V.size, (j - j_ion) * self.R_short * 1e-3)
                else:
                    j_ion = j
                    self._last_j = j
                    V = self._fast_chunk(j, dt_s, min(chunk, n_steps - done))
                if V.size:
                    if slow:
                        out.append(np.asarray(slow))
                        slow = []
                    V = V + self._noise(V.size)
                    chunk = min(chunk * 2, 65536)
                    bad = (V < lo) | (V > hi)
                    if bad.any():
                        cut = int(np.argmax(bad)) + 1
                        if cut < V.size:
                            V = self._truncate_chunk(V, cut, j_ion, dt_s)
                        self._note_history()
                        out.append(V)
                        break
                    self._note_history()
                    out.append(V)
                    done += V.size
                    continue
            v = self._slow_step(j, dt_s)
            slow.append(v)
            done += 1
            if v < lo or v > hi:
                break
        if slow:
            out.append(np.asarray(slow))
        if len(out) == 1:
            return out[0]
        return np.concatenate(out) if out else np.empty(0)
