"""The dashboard's trace: buckets reduced in SQL, then extended point by point in memory, are
exactly the min/max of the points in each bucket (SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.recording.database import open_database
from labctl.recording.live_reads import run_trace
from labctl.recording.recorder import Recorder
from labctl.web.trace_cache import TraceCache

CELL = {"id": "trace-cell", "anode": {"material": "Na"}, "area_cm2_resolved": 0.283}


def _run(rec: Recorder) -> tuple[int, int]:
    run = rec.start_run(cell=CELL, protocol_name="t", protocol_text="t", protocol_sha256="t",
                        schema_version=1, station="test", simulated=True, operator=None,
                        labctl_version="test")
    return run, rec.start_step(run, 1, "galvanostatic", "g", {}, 0.0)


def _write(rec: Recorder, step: int, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    E = rng.normal(0.05, 0.01, len(t))
    E[len(t) // 3] = -1.5  # a one-sample spike: min/max must keep it
    P = np.where(rng.random(len(t)) < 0.1, np.nan, 10 + rng.normal(0, 0.02, len(t)))
    rec.add_points(step, t, E, np.full(len(t), 0.1), t * 1e-5, P)
    rec.flush()
    return np.column_stack([t, E, np.full(len(t), 0.1), P])


def _reference(points: np.ndarray, t0: float, width: float) -> dict[str, list[float]]:
    b = np.floor((points[:, 0] - t0) / width).astype(int)
    out: dict[str, list[float]] = {k: [] for k in ("t_lo", "t_hi", "E_lo", "E_hi", "P_lo", "P_hi")}
    for k in np.unique(b):
        sel = points[b == k]
        out["t_lo"].append(sel[:, 0].min())
        out["t_hi"].append(sel[:, 0].max())
        out["E_lo"].append(sel[:, 1].min())
        out["E_hi"].append(sel[:, 1].max())
        p = sel[:, 3][~np.isnan(sel[:, 3])]
        out["P_lo"].append(p.min() if p.size else None)
        out["P_hi"].append(p.max() if p.size else None)
    return out


def test_incremental_buckets_equal_the_points_min_and_max(db_url: str) -> None:
    engine = open_database(db_url)
    rec = Recorder(engine)
    run, step = _run(rec)
    rng = np.random.default_rng(7)
    first = _write(rec, step, np.arange(0.0, 500.0, 1.0), rng)
    cache = TraceCache(engine, target=40)
    early = cache.trace(run)
    assert early["n_points"] == 500 and len(early["t_lo"]) <= 41
    # the run goes on to 20 times its length: buckets merge pairwise, several times
    more = _write(rec, step, np.arange(500.0, 10_000.0, 1.0), rng)
    later = cache.trace(run)
    points = np.vstack([first, more])
    assert later["n_points"] == len(points)
    assert later["bucket_s"] > early["bucket_s"] * 8
    assert len(later["t_lo"]) <= 80
    ref = _reference(points, later["t0"], later["bucket_s"])
    for key, values in ref.items():
        assert later[key] == pytest.approx(values, nan_ok=True), (key, later[key][:3], values[:3])
    assert min(later["E_lo"]) == -1.5  # the spike survived
    # a fresh read of the database at the same resolution says the same
    fresh = run_trace(engine, run, buckets=40)
    assert fresh.n_points == len(points) and fresh.E_lo.count(-1.5) == 2  # one spike per write
    engine.dispose()


def test_a_run_without_points_has_an_empty_trace_until_it_has_some(sqlite_url: str) -> None:
    engine = open_database(sqlite_url)
    rec = Recorder(engine)
    run, step = _run(rec)
    cache = TraceCache(engine, target=10)
    assert cache.trace(run)["n_points"] == 0
    _write(rec, step, np.arange(0.0, 100.0, 1.0), np.random.default_rng(1))
    assert cache.trace(run)["n_points"] == 100
