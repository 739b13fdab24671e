"""Detector thresholds scale with the cell: the same CCD on 6 mm and 10 mm cells, and a cell
shorted before its ramp is reported as shorted, not completed.

The runs go through the whole stack in simulation (real drivers over the simulated SP-300, the
twin cell, the recorder on a real SQLite file). The twin's Na|NASICON|Na cell at 10 MPa fails at
3.2 mA/cm² whatever its area (its model is areal), so every ramp must report that CCD within
0.1 mA/cm²: in current density (the protocol scales the currents by the area) and in absolute
current (the same mA on both cells: 0.036 mA/cm² on the 10 mm cell at the first step, whose
healthy polarisation, ~1.8 mV, is below the old absolute 2 mV hard-short floor).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labctl.engine.detectors import SHORT_ASR_OHM_CM2, FailureDetector, ReferenceDetector
from labctl.engine.detectors.reference import HARD_SHORT_NOISE_FLOOR_V
from labctl.engine.events import RunStatus
from labctl.launch import launch, launch_runs, prepare_runs
from labctl.protocol.resolved import DetectorSettings
from labctl_drivers.sim.faults import Fault, FaultPlan

ROOT = Path(__file__).resolve().parents[2]
CELL_6MM = ROOT / "examples" / "cells" / "na_symmetric.yaml"
AREA_6MM = np.pi * 0.3**2  # cm²
RAMP = """\
schema_version: 1
name: CCD ramp ({kind})
limits:
  E_min: -5 V
  E_max: 5 V
steps:
  - kind: rest
    duration: 10 min
  - kind: ccd_ramp
    start: {start}
    increment: {start}
    max: {max}
    half_cycle: {half}
    E_limit: 1 V
"""
#: the paper's ramp, 0.1 mA/cm² steps of 0.1 mAh/cm², and the same in absolute current for
#: the 6 mm cell (0.1 mA/cm² x 0.283 cm² = 0.0283 mA)
RAMPS = {
    "density": {"start": "0.1 mA/cm^2", "max": "5 mA/cm^2", "half": "0.1 mAh/cm^2"},
    "absolute": {"start": f"{0.1 * AREA_6MM:.5f} mA", "max": "3 mA",
                 "half": f"{0.1 * AREA_6MM:.5f} mAh"},
}
TWIN_CCD_MA_CM2 = 3.2


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cells")
    ten = tmp / "na_10mm.yaml"
    ten.write_text(CELL_6MM.read_text().replace("diameter_mm: 6.0", "diameter_mm: 10.0")
                   .replace("id: na-sym-001", "id: na-sym-10mm"))
    return {"6 mm": CELL_6MM, "10 mm": ten}


def _protocol(tmp: Path, kind: str) -> Path:
    path = tmp / f"ramp_{kind}.yaml"
    path.write_text(RAMP.format(kind=kind, **RAMPS[kind]))
    return path


def test_same_ccd_on_6_and_10_mm_cells_in_density_and_absolute_current(
        cells: dict[str, Path], tmp_path: Path) -> None:
    pairs = [(_protocol(tmp_path, kind), cell) for kind in RAMPS for cell in cells.values()]
    res = launch_runs(prepare_runs(pairs), sim=True, db_url=f"sqlite:///{tmp_path / 'ccd.db'}")
    labels = [f"{kind}, {size}" for kind in RAMPS for size in cells]
    assert len(res.outcomes) == 4
    for label, out in zip(labels, res.outcomes):
        r = out.results
        assert r["ccd_failure_mode"] == "hard_short", (label, r)
        assert r["ccd_mA_cm2"] == pytest.approx(TWIN_CCD_MA_CM2, abs=0.1), (label, r)
        assert r["ccd_current_steps"] > 20, (label, r)  # not tripped at the first steps


def test_a_cell_shorted_before_the_ramp_is_reported_shorted(tmp_path: Path) -> None:
    """Shorted during the rest before the ramp: the first half-cycle trips a hard short (its
    polarisation is the short's 0.3 Ω·cm² x j, below the area-scaled floor) and the ramp ends
    failed at its first current, instead of learning the short as the cell's resistance."""
    out = launch(_protocol(tmp_path, "density"), [CELL_6MM], sim=True,
                 db_url=f"sqlite:///{tmp_path / 'short.db'}",
                 faults=FaultPlan([Fault("short", at_s=120.0)])).outcomes[0]
    r = out.results
    assert r["ccd_failure_mode"] == "hard_short" and r["ccd_shorted_at_start"] == 1.0
    assert r["ccd_mA_cm2"] is None  # a shorted cell has no critical current density
    assert r["ccd_last_passed_mA_cm2"] is None and r["ccd_current_steps"] == 1
    assert out.status is not RunStatus.COMPLETED
    assert "shorted" in out.end_reason


# ---- the rule itself, on synthetic traces ------------------------------------------------------

def _feed(det: ReferenceDetector, current_A: float, trace: np.ndarray) -> str | None:
    det.start_segment(current_A)
    trip = det.feed(trace)
    return trip.mode if trip else None


@pytest.mark.parametrize("cls", [FailureDetector, ReferenceDetector])
def test_hard_short_floor_scales_with_current_density(cls: type[ReferenceDetector]) -> None:
    area = np.pi * 0.5**2  # 10 mm
    healthy_asr, short_asr = 50.0, 0.3  # Ω·cm²: the twin's healthy cell and its filament
    rng = np.random.default_rng(0)
    for j in (0.036, 0.1, 1.0, 10.0):  # mA/cm²
        # healthy: |V| = j·ASR, ~1.8 mV at 0.036 mA/cm² (below the absolute 2 mV floor)
        trace = j * 1e-3 * healthy_asr + rng.normal(0.0, 2e-4, 60)
        assert _feed(cls(DetectorSettings(), area), j * area * 1e-3, trace) is None, j
    for j in (0.036, 0.1, 1.0, 50.0):
        # shorted from its first sample: |V| = j·0.3 Ω·cm², 15 mV at 50 mA/cm²
        trace = j * 1e-3 * short_asr + rng.normal(0.0, 2e-4, 60)
        assert _feed(cls(DetectorSettings(), area), j * area * 1e-3, trace) == "hard_short", j
        assert cls(DetectorSettings(), area).hard_short_floor(j * area * 1e-3) == pytest.approx(
            max(j * 1e-3 * SHORT_ASR_OHM_CM2, HARD_SHORT_NOISE_FLOOR_V))
    # without an area the settings' absolute floor stays (as before)
    assert cls(DetectorSettings()).hard_short_floor(1e-3) == DetectorSettings().hard_short_floor_V


@pytest.mark.parametrize("cls", [FailureDetector, ReferenceDetector])
def test_pre_stress_reference_catches_a_cell_that_shorts_at_its_first_sample(
        cls: type[ReferenceDetector]) -> None:
    """A 100 Ω cell (pre-step EIS) driven at 1 mA reads 20 mV from its first sample (a soft
    path, 20 Ω): above the area floor, but far below 0.3 x the 100 mV it should read. Compared
    with itself it looks healthy; compared with the pre-stress reference it is a short."""
    trace = np.full(40, 0.020)
    assert _feed(cls(DetectorSettings(), 0.283), 1e-3, trace) is None
    det = cls(DetectorSettings(), 0.283)
    det.set_pre_stress_reference(100.0)
    assert _feed(det, 1e-3, trace) == "hard_short"


HIGH_CURRENT = """\
schema_version: 1
name: long strip at 50 mA/cm2
limits:
  E_min: -5 V
  E_max: 5 V
steps:
  - kind: rest
    duration: 5 min
  - kind: galvanostatic
    current: 50 mA/cm^2
    duration: 100 h
    detectors:
      hard_short_fraction: 0.3
"""


def test_a_cell_shorted_before_a_high_current_step_fails_not_completes(tmp_path: Path) -> None:
    """The issue's case: a Na|Na cell shorted before 50 mA/cm² for 100 h reads ~15 mV (0.3 Ω·cm²
    x 50 mA/cm²), above an absolute 2 mV floor and 0.3 x its own (shorted) resistance. The
    area-scaled floor (50 mV at 50 mA/cm²) catches it at once instead of completing 100 h."""
    protocol = tmp_path / "high.yaml"
    protocol.write_text(HIGH_CURRENT)
    out = launch(protocol, [CELL_6MM], sim=True, db_url=f"sqlite:///{tmp_path / 'high.db'}",
                 faults=FaultPlan([Fault("short", at_s=60.0)])).outcomes[0]
    assert out.status is not RunStatus.COMPLETED
    assert "hard_short" in out.end_reason
