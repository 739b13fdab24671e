"""The fast cell's potentiostatic solve is the reference's, bit for bit.

`SimulatedCell._invert_voltage` takes the state-only terms out of brentq's residual; the
reference `PerStepCell._invert_voltage` (what `_force_slow` selects) recomputes them at every
evaluation. Every current, every state and
every later voltage must agree exactly, in the regimes a potentiostatic sample can meet: Na and
NaK electrodes, voids open and relaxing, a NaK alloy stripped into its K-precipitation band,
plated into the Na band, and a shorted cell.
"""

from __future__ import annotations

import numpy as np
import pytest

from labctl_drivers.sim.cells import PerStepCell, SimulatedCell, make_cell

AREA = 0.5
CELLS = [("Na", None, "Na", 1.0), ("Na", None, "Na", 10.0), ("NaK", 50.0, "Na", 10.0),
         ("NaK", 80.0, "Na", 10.0), ("NaK", 65.0, "NaK", 10.0)]


def _amps(j_mA_cm2: float) -> float:
    return j_mA_cm2 * AREA * 1e-3


def _history(cell: SimulatedCell, reference_solve: bool) -> list[np.ndarray]:
    """A potentiostatic life: holds around open circuit and far from it, between galvanostatic
    phases that open voids and move the alloy's composition to both liquidus edges. With
    `reference_solve` only the solves take the reference's path (the galvanostatic phases are
    the same closed-form chunks in both runs)."""
    out: list[np.ndarray] = []

    def solve(v: float, dt: float) -> float:
        cell._force_slow = reference_solve
        try:
            return cell.solve_current(v, dt)
        finally:
            cell._force_slow = False

    def holds(levels: list[float], dt: float) -> None:
        out.append(np.array([solve(v, dt) for v in levels]))

    holds([0.0, 0.001, -0.001, 0.01, -0.05, 0.3, -0.3, 1.5, -1.5], 1.0)
    out.append(cell.run_constant_current(_amps(2.5), 1.0, 120, -3.0, 3.0))  # voids (Na sides)
    holds([0.02, 0.02, 0.05, -0.02, 0.0], 0.5)
    out.append(cell.run_constant_current(_amps(0.4), 30.0, 2000, -3.0, 3.0))  # strip the alloy
    holds([0.1, 0.2, 0.5, 0.01], 1.0)
    out.append(cell.run_constant_current(_amps(-0.4), 30.0, 4000, -3.0, 3.0))  # plate it back
    holds([-0.1, -0.2, -0.5, -0.01], 1.0)
    cell.inject_short()
    holds([0.01, 0.1], 1.0)
    out.append(np.array([cell.state.phi[0], cell.state.phi[1], cell.state.q_mAh_cm2[0],
                         cell.state.active_area[0], cell.state.active_area[1]]))
    return out


@pytest.mark.parametrize(("anode", "k", "counter", "pressure"), CELLS,
                         ids=[f"{a}{k or ''}-{c}-{p:g}MPa" for a, k, c, p in CELLS])
def test_fast_solve_current_is_the_reference(anode: str, k: float | None, counter: str,
                                             pressure: float) -> None:
    fast = make_cell(anode, k, None, counter, None, AREA, 25.0, pressure, 3)
    ref = make_cell(anode, k, None, counter, None, AREA, 25.0, pressure, 3)
    assert type(fast)._invert_voltage is not PerStepCell._invert_voltage  # the fast path runs
    got, want = _history(fast, False), _history(ref, True)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.tobytes() == w.tobytes()
    assert fast.state == ref.state


def test_residual_is_the_references_at_every_trial_current() -> None:
    """Not only the roots: the residual brentq sees, for trial currents across the bracket,
    in a state with voids and a precipitating alloy (where every area term is active)."""
    cell = make_cell("NaK", 80.0, None, "Na", None, AREA, 25.0, 10.0, 1)
    assert isinstance(cell, SimulatedCell)
    cell.run_constant_current(_amps(0.5), 30.0, 3000, -3.0, 3.0)
    seen: list[tuple[float, float, float]] = []
    bracket = PerStepCell._bracket_root

    def spy(f, scale):  # type: ignore[no-untyped-def]
        for j in (-40.0, -1.0, -1e-3, 0.0, 1e-3, 0.37, 1.0, 40.0):
            seen.append((j, f(j), cell._v_ion_state(j) - 0.25))
        return bracket(f, scale)

    cell._bracket_root = spy  # type: ignore[method-assign]
    cell.solve_current(0.25, 1.0)
    assert seen and all(a == b for _, a, b in seen)
