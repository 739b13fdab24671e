"""Acceptance test: the paper's 10-cycle CV (examples/paper/fig6_cv.yaml) against Fig. 6/S8.

Runs through the real engine (`labctl.launch.launch`, simulated bench, sqlite) on NaK50/65/80
half cells and a Na|Na cell, then checks the paper's CV features on the recorded points:
the sweep completes without a short; stripping current falls NaK50 > NaK65 > NaK80; plating
current at the negative vertex is similar for every composition and for Na metal; the anodic
current near 0.2 V (dissolution of solid Na accumulated in voids) grows from cycle 1 to 10.

The twin does not reproduce this yet, so the module is a strict xfail: it documents the target
and will flip to XPASS (and fail, forcing removal of the marker) once the physics is fixed.
Why it fails today: in the twin a filament grows whenever a plating electrode sees
|j|/A − j_c > 0, at (|j|/A − j_c)/Q_f with Q_f = 18 mA s/cm². At ±0.5 V the NaK working
electrode accumulates ~240–270 mA s/cm² of that over-current per cathodic sweep and the Na
counter 45–75 mA s/cm² per anodic sweep (a Na|Na cell ~150), i.e. 3–15 × the charge that the
CCD calibration (Na 3.2 / NaK 1.2, 0.8, 0.6 mA/cm² at 10 MPa) needs to short a cell. Any law
monotone in over-current × time that keeps those CCDs therefore shorts the CV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labctl.analysis.cv import cycle_numbers
from labctl.launch import launch
from labctl.recording.database import open_database
from labctl.recording.queries import run_steps, step_points

REPO = Path(__file__).resolve().parents[2]
CV = REPO / "examples" / "paper" / "fig6_cv.yaml"
CELLS = REPO / "examples" / "cells"
ALLOYS = ("nak50", "nak65", "nak80")
#: fig6_cv.yaml's waveform (E_start 0 V, vertices ±0.5 V, 10 mV/s); re-read here so a changed
#: protocol window shows up as a test edit, not a silent reinterpretation.
E_START, VERTICES, RATE = 0.0, [0.5, -0.5], 0.01

pytestmark = pytest.mark.xfail(strict=True, reason=(
    "twin shorts on the CV: filament over-current budget Q_f = 18 mA s/cm2 is exceeded "
    "3-15x per sweep at +-0.5 V while it must stay to keep the CCD calibration (see docstring)"))


@pytest.fixture(scope="module")
def cv_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, np.ndarray | str]]:
    """Recorded CV points and run status per cell kind, from one launch of all four cells."""
    tmp = tmp_path_factory.mktemp("cv")
    na = tmp / "na_cv.yaml"
    na.write_text((CELLS / "na_symmetric.yaml").read_text()
                  .replace("id: na-sym-001", "id: na-cv-001"))
    cells = [CELLS / f"{a}_half.yaml" for a in ALLOYS] + [na]
    db_url = f"sqlite:///{tmp / 'cv.db'}"
    res = launch(CV, cells, sim=True, db_url=db_url)
    engine = open_database(db_url)
    out: dict[str, dict[str, np.ndarray | str]] = {}
    for kind, oc in zip((*ALLOYS, "na"), res.outcomes, strict=True):
        steps = [s for s in run_steps(engine, oc.run_id) if s.kind == "cv"]
        pts = step_points(engine, [s.id for s in steps])
        pts = {k: np.asarray(v) for k, v in pts.items()}
        pts["cycle"] = cycle_numbers(pts["t_s"], pts["E_V"], E_START, VERTICES, RATE)
        out[kind] = {**pts, "status": oc.status}
    return out


def _anodic_max(r: dict, cycle: int, lo: float = -1.0, hi: float = 1.0) -> float:
    sel = (r["cycle"] == cycle) & (r["E_V"] >= lo) & (r["E_V"] <= hi)
    return float(np.max(r["I_mA"][sel]))


def test_cv_completes_without_short(cv_runs: dict) -> None:
    for kind, r in cv_runs.items():
        assert r["status"] == "completed", kind
        assert np.max(np.abs(r["I_mA"])) < 20.0 * 0.2827, kind  # below the protocol's I_max


def test_stripping_current_falls_with_k_content(cv_runs: dict) -> None:
    for c in range(1, 11):
        peaks = [_anodic_max(cv_runs[a], c) for a in ALLOYS]
        assert peaks[0] > peaks[1] > peaks[2], (c, peaks)


def test_plating_current_similar_for_all(cv_runs: dict) -> None:
    vertex = {k: float(np.min(r["I_mA"][r["cycle"] == 1])) for k, r in cv_runs.items()}
    mean = np.mean(list(vertex.values()))
    for v in vertex.values():
        assert abs(v / mean - 1.0) <= 0.3, vertex


def test_oxidation_peak_near_0p2_V_grows(cv_runs: dict) -> None:
    for a in ALLOYS:
        first = _anodic_max(cv_runs[a], 1, 0.1, 0.3)
        last = _anodic_max(cv_runs[a], 10, 0.1, 0.3)
        assert last > first, (a, first, last)
