"""Acceptance test: the in-situ EIS trends of Wu et al. 2025 Fig. 3 through labctl's launch path.

`examples/paper/fig3_insitu_eis.yaml` (strip 1 → plate 1 → strip 1 mAh/cm² at 0.25 mA/cm², a
10 min rest and a 7 MHz–1 Hz EIS every 0.25 mAh/cm²) runs through `labctl.launch.launch` on the
simulated bench for the paper's NaK50/65/80 half cells (examples/paper/cells); every spectrum is
read back from the database and analysed with labctl's DRT at the paper's λ = 1e-3. Checked,
from the paper's Fig. 3 discussion:

* on stripping the slow interfacial peak grows after every 0.25 mAh/cm² increment, by more than
  the measurement noise (the noise is measured: the spectra at the end of one interleave and the
  start of the next see the same state, 10 min of rest apart);
* on plating the dominant peak moves at least a decade below stripping's, and further out with
  more K;
* the second stripping's interfacial resistance is above the first's at every increment;
* interfacial resistance and peaks rise with K content (NaK50 < NaK65 < NaK80).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from labctl.analysis.drt import DrtResult, fit_drt
from labctl.launch import launch
from labctl.recording.database import open_database
from labctl.recording.queries import run_steps, step_spectrum

REPO = Path(__file__).resolve().parents[2]
FIG3 = REPO / "examples" / "paper" / "fig3_insitu_eis.yaml"
CELLS = REPO / "examples" / "paper" / "cells"
ALLOYS = ("nak50", "nak65", "nak80")
AREA_CM2 = np.pi * 0.3**2  # 6 mm electrodes
#: spectra per run: 3 interleaves × (one at the start + one after each 0.25 mAh/cm² slice)
STRIP1, PLATE, STRIP2 = range(0, 5), range(5, 10), range(10, 15)
#: the bulk and grain-boundary arcs sit at ~1e-7 s; the electrode processes above this
INTERFACE_TAU_S = 1e-5
#: the slow stripping process (the twin places it at 0.15 s); the plating peaks sit below 0.02 s
SLOW_TAU_S = 0.1

pytestmark = pytest.mark.slow  # three interleaved 12 h sequences on the virtual clock: ~2-3 min


def _dominant(r: DrtResult, tau_min: float) -> tuple[float, float]:
    """(τ, γ_max) of the highest DRT peak above tau_min; (nan, 0) if there is none."""
    peaks = [p for p in r.peaks if p.tau >= tau_min]
    if not peaks:
        return float("nan"), 0.0
    best = max(peaks, key=lambda p: p.gamma_max)
    return best.tau, best.gamma_max


@pytest.fixture(scope="module")
def spectra(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, float]]]:
    """Per alloy, per recorded spectrum in time order: interfacial R and DRT peak figures."""
    db_url = f"sqlite:///{tmp_path_factory.mktemp('fig3') / 'fig3.db'}"
    res = launch(FIG3, [CELLS / f"{a}_half.yaml" for a in ALLOYS], sim=True, db_url=db_url,
                 seed=0)
    engine = open_database(db_url)
    out: dict[str, list[dict[str, float]]] = {}
    for alloy, oc in zip(ALLOYS, res.outcomes, strict=True):
        assert oc.status == "completed", (alloy, oc.status)
        rows = []
        for step in run_steps(engine, oc.run_id):
            if not step.n_eis:
                continue
            s = step_spectrum(engine, step.id)
            z = s["Z_re_ohm"] + 1j * s["Z_im_ohm"]
            r = fit_drt(s["frequency_Hz"], z, lambda_=1e-3)
            tau, gamma = _dominant(r, INTERFACE_TAU_S)
            _, slow = _dominant(r, SLOW_TAU_S)
            low = z.real[np.argmin(s["frequency_Hz"])]
            rows.append({"R_int": (low - float(np.min(z.real))) * AREA_CM2,
                         "tau_dom": tau, "gamma_dom": gamma, "gamma_slow": slow})
        assert len(rows) == 15, (alloy, len(rows))
        out[alloy] = rows
    return out


def _noise(rows: list[dict[str, float]], key: str) -> float:
    """Spread of one figure between two spectra of the same state (end of an interleave and
    start of the next, 10 min of rest apart): the measurement noise on it."""
    return max(abs(rows[4][key] - rows[5][key]), abs(rows[9][key] - rows[10][key]))


def test_stripping_peak_grows_with_every_increment(spectra: dict) -> None:
    for alloy, rows in spectra.items():
        noise = _noise(rows, "gamma_slow")
        heights = [rows[i]["gamma_slow"] for i in STRIP1]
        for before, after in itertools.pairwise(heights):
            assert after - before > noise, (alloy, heights, noise)


def test_plating_peak_a_decade_below_stripping(spectra: dict) -> None:
    for alloy, rows in spectra.items():
        stripped, plated = rows[STRIP1[-1]]["tau_dom"], rows[PLATE[-1]]["tau_dom"]
        assert plated <= stripped / 10.0, (alloy, stripped, plated)
        assert 1e-3 <= plated <= 1.0, (alloy, plated)  # the paper: ~1e-2 to 1 s


def test_plating_peak_moves_out_with_k(spectra: dict) -> None:
    taus = [spectra[a][PLATE[-1]]["tau_dom"] for a in ALLOYS]
    assert taus[0] < taus[1] < taus[2], taus


def test_second_stripping_above_first(spectra: dict) -> None:
    for alloy, rows in spectra.items():
        noise = _noise(rows, "R_int")
        for first, second in zip(STRIP1[1:], STRIP2[1:], strict=True):
            assert rows[second]["R_int"] - rows[first]["R_int"] > noise, (alloy, first, second)


def test_interface_ordered_by_k_content(spectra: dict) -> None:
    for i in range(15):
        r = [spectra[a][i]["R_int"] for a in ALLOYS]
        assert r[0] < r[1] < r[2], (i, r)
    grown = [spectra[a][STRIP1[-1]]["gamma_slow"] for a in ALLOYS]
    assert grown[0] < grown[1] < grown[2], grown
