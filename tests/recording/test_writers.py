"""The fast writers store exactly what the reference writer stores, on SQLite and PostgreSQL.

The same recording is made twice, once through `Recorder(..., writer="reference")` (plain
SQLAlchemy Core) and once through the default fast writer (SQLite executemany of tuples,
PostgreSQL COPY), into two empty databases, with the recorder's wall clock replaced by the same
deterministic one. Then every row of every table is compared: every column, floats bit for bit
(by `float.hex`, so -0.0, subnormals and NaN count), NULL as NULL, types included (1 is not 1.0).

Two recordings: a hand-made one that reaches the edge values and every write path (parent
steps, buffer-size flushes, pressure as None/float/NaN/array, spectra by dict and by
`SpectrumPoint`, events without step or data, results, stale-run reconciliation), and a real
engine event stream (a short CCD ramp run by `launch(..., sim=True)`, with its pressure step,
spectra, detector trip, safe-state and operator events and results) replayed into a
`RecordingSink`, as the engine's bus would hand it over.
"""

from __future__ import annotations

import datetime as dt
import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, inspect, text, update
from sqlalchemy.engine import make_url

from labctl.engine import events as ev
from labctl.launch import launch
from labctl.recording import models as m
from labctl.recording import recorder as recorder_module
from labctl.recording.database import open_database
from labctl.recording.recorder import Recorder, RecordingSink
from labctl.recording.writers import (
    PostgresCopyWriter,
    ReferenceWriter,
    SQLiteWriter,
    make_writer,
)

REPO = Path(__file__).resolve().parents[2]
CELL = REPO / "examples" / "cells" / "na_symmetric.yaml"
PROTOCOL = textwrap.dedent("""\
    schema_version: 1
    name: writers equivalence
    limits: {E_min: -5 V, E_max: 5 V, P_min: 8 MPa, P_max: 12 MPa}
    analyses: [ccd]
    steps:
      - {kind: pressure, setpoint: 10 MPa, tolerance: 0.5 MPa, hold: 20 s, timeout: 5 min}
      - {kind: rest, duration: 2 min}
      - {kind: eis, f_high: 7 MHz, f_low: 1 Hz, points_per_decade: 5, amplitude: 10 mV}
      - kind: ccd_ramp
        start: 0.5 mA/cm^2
        increment: 0.5 mA/cm^2
        max: 5 mA/cm^2
        half_cycle: 0.05 mAh/cm^2
        cycles_per_step: 1
        rest: 10 s
        E_limit: 1 V
        eis_after_step: {f_high: 7 MHz, f_low: 1 Hz, points_per_decade: 3, amplitude: 10 mV}
""")
RUN = dict(
    protocol_name="writers", protocol_text="schema_version: 1\n", protocol_sha256="ab" * 32,
    schema_version=1, station="test", simulated=True, operator="pytest", labctl_version="0",
)
CELL_ROW = {"id": "cell-ω", "anode": {"material": "NaK", "k_wt_pct": 65.0},
            "area_cm2_resolved": 0.2827433388230814}
POTENTIOSTAT = {"name": "sim-1", "kind": "potentiostat", "model": "SP-300", "address": "sim",
                "simulated": True}

Recording = Callable[[Recorder], None]
Rows = dict[str, list[dict[str, Any]]]


class _Clock:
    """Stands in for the recorder's wall clock: the k-th reading is a fixed instant + k·1.5 ms,
    so both recordings stamp the same rows with the same times, microseconds included."""

    def __init__(self) -> None:
        self.k = 0

    def __call__(self) -> dt.datetime:
        self.k += 1
        return dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC) + dt.timedelta(microseconds=1500
                                                                             * self.k)


def _canonical(value: Any) -> Any:
    """A value as compared: its type with it, floats by their exact bits, containers inside."""
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _canonical(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("list", tuple(_canonical(v) for v in value))
    return (type(value).__name__, value)


def _dump(engine: Engine) -> Rows:
    """Every row of every table as the driver returns it (SQLite: the stored JSON and datetime
    text itself), in primary-key order. Lease times (`*_db_s`) are stamped by the database's own
    clock, so two recordings never share them; they are left out (not the writers' business)."""
    with engine.connect() as conn:
        insp = inspect(conn)
        rows: Rows = {}
        for table in sorted(insp.get_table_names()):
            order = insp.get_pk_constraint(table)["constrained_columns"] or [
                c["name"] for c in insp.get_columns(table)]
            quote = engine.dialect.identifier_preparer.quote
            found = conn.exec_driver_sql(
                f"SELECT * FROM {quote(table)} ORDER BY {', '.join(map(quote, order))}")
            names = list(found.keys())
            rows[table] = [{k: _canonical(v) for k, v in zip(names, r) if not k.endswith("_db_s")}
                           for r in found]
    return rows


def _empty(url: str, tag: str) -> str:
    """An empty database for one recording: its own file on SQLite, a fresh schema on
    PostgreSQL (one test database there, recordings made one after the other)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(database=str(Path(parsed.database or "").with_name(f"{tag}.db"))
                          ).render_as_string(hide_password=False)
    engine = open_database(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url


def _record(url: str, writer: str, recording: Recording, monkeypatch: pytest.MonkeyPatch,
            **recorder_options: float) -> tuple[str, Rows]:
    """Make `recording` through `writer` into an empty database; the writer used and the rows."""
    monkeypatch.setattr(recorder_module, "_now", _Clock())
    engine = open_database(_empty(url, writer))
    try:
        rec = Recorder(engine, writer=writer, **recorder_options)  # type: ignore[arg-type]
        recording(rec)
        return rec.writer.name, _dump(engine)
    finally:
        engine.dispose()


def _assert_same_rows(url: str, recording: Recording, monkeypatch: pytest.MonkeyPatch,
                      **recorder_options: float) -> Rows:
    ref_name, reference = _record(url, "reference", recording, monkeypatch, **recorder_options)
    fast_name, fast = _record(url, "fast", recording, monkeypatch, **recorder_options)
    assert ref_name == "reference" and fast_name != "reference"
    assert fast.keys() == reference.keys()
    for table in reference:
        assert len(fast[table]) == len(reference[table]), table
        for k, (got, want) in enumerate(zip(fast[table], reference[table])):
            assert got == want, f"{table} row {k}: {fast_name} writer differs from the reference"
    return reference


def _edge_cases(rec: Recorder) -> None:
    """Every write path the recorder has, with the values most likely to be stored differently
    by two code paths."""
    run = rec.start_run(cell=CELL_ROW, potentiostat=POTENTIOSTAT, channel=0, seed=7, pid=1,
                        **RUN)  # type: ignore[arg-type]
    stale = rec.start_run(cell=CELL_ROW, **RUN)  # type: ignore[arg-type]
    with rec.engine.begin() as conn:  # its holder is gone: this pid, but another start time
        conn.execute(update(m.RunLease).where(m.RunLease.run_id == stale)
                     .values(pid_started_s=0.0))
    params = {"current_mA": 0.1, "nested": {"list": [1, 2.5, None, "µA"]}, "flag": True,
              "tiny": 5e-324, "big": 1.7976931348623157e308}
    ramp = rec.start_step(run, 1, "ccd_ramp", "ramp ✓", params, 0.0)
    step = rec.start_step(run, 2, "galvanostatic", "strip", {}, 0, parent_id=ramp)
    odd = np.array([0.0, -0.0, 5e-324, 2.2250738585072014e-308, math.pi, 0.1 + 0.2, -1e308,
                    123456789.123456789, 1 / 3, np.nextafter(1.0, 2.0), math.inf, -math.inf])
    n = len(odd)
    rec.add_points(step, np.arange(n, dtype=float), odd, odd[::-1].copy(), odd / 3, None)
    rec.add_points(step, np.arange(n, 2 * n, dtype=float), odd, odd, odd, 10.0)
    rec.add_points(step, odd, odd, odd, odd, float("nan"))
    rec.add_points(step, odd, odd, odd, odd, np.where(odd > 0.2, odd, np.nan))
    rec.add_points(step, np.array([]), np.array([]), np.array([]), np.array([]), None)
    rec.add_rows([(step, 1.5, -0.0, 0.25, 2, None), (step, 2, 1e-300, 0.0, 3.0, 9.75)])
    rec.add_eis(step, [
        {"t_s": 1.0, "frequency_Hz": 7e6, "Z_re_ohm": 10.0, "Z_im_ohm": -2.0, "Z_mod_ohm": 10.2,
         "phase_deg": -11.3, "E_V": 0.0, "I_mA": float("nan")},
        {"t_s": 2, "frequency_Hz": 1.0, "Z_re_ohm": 5e-324, "Z_im_ohm": -0.0, "Z_mod_ohm": 1.0,
         "phase_deg": 0.0},
    ])
    rec.add_spectrum(step, [ev.SpectrumPoint(3.0, f, 10.0 + f, -1 / f, 1e-3, -0.0)
                            for f in (1e5, 1e3, 10.0, 1.0)])
    rec.event(run, "note", "hello «ω»", step_id=step, t_s=1.25,
              data={"x": [0.1, -0.0], "s": "é"})
    rec.event(run, "fault", "no step, no time, no data", severity="error")
    rec.end_step(step, "completed", None, 2 * n)
    rec.heartbeat(run)
    rec.request_control(run, "pause")
    rec.set_run_status(run, "paused")
    rec.set_run_status(run, "running", clear_control=False)
    big = rec.start_step(run, 3, "rest", "buffer flushes", {"record": None}, 2.0 * n)
    t = np.linspace(0.0, 1.0, 50)
    for k in range(4):  # the small buffer (recorder option below) flushes inside these
        rec.add_points(big, t + k, np.sin(t * 7.1), np.cos(t), t / 3600, t[::-1].copy())
    rec.end_step(big, "aborted", "operator abort", 2.0 * n + 4.0)
    rec.end_step(ramp, "completed", "outcome", 2.0 * n + 4.0)
    rec.store_results(run, "engine", "1", [("ccd_mA_cm2", 1.2000000000000002, "mA/cm^2", None),
                                           ("mode", "hard_short", "", step),
                                           ("count", 7, "", None), ("none", None, "", big)])
    rec.store_results(run, "engine", "1", [("redo", -0.0, "", step)], only_step=step)
    rec.end_run(run, "completed", "done")
    assert rec.reconcile_stale_runs() == [stale]


def test_fast_writers_store_what_the_reference_stores(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _assert_same_rows(db_url, _edge_cases, monkeypatch, max_buffer_rows=37,
                             flush_interval_s=3600.0)
    assert len(rows["point"]) == 4 * 12 + 2 + 4 * 50 and len(rows["eis_point"]) == 6
    # results: 4 of the run's, one of them replaced by the step's redo
    assert len(rows["step"]) == 3 and len(rows["event"]) == 3 and len(rows["result"]) == 4


@pytest.fixture(scope="module")
def engine_events(tmp_path_factory: pytest.TempPathFactory) -> list[ev.Event]:
    """What the engine published while running a short CCD ramp on the simulated bench."""
    tmp = tmp_path_factory.mktemp("engine_events")
    protocol = tmp / "ccd.yaml"
    protocol.write_text(PROTOCOL)
    events: list[ev.Event] = []
    result = launch(protocol, [CELL], sim=True, db_url=f"sqlite:///{tmp / 'run.db'}",
                    subscribers=[events.append])
    assert [o.run_id for o in result.outcomes] == [1]  # the replays' run rows get id 1 too
    return events


def test_a_simulated_run_is_stored_alike_by_every_writer(
        db_url: str, engine_events: list[ev.Event], monkeypatch: pytest.MonkeyPatch) -> None:
    def replay(rec: Recorder) -> None:
        assert rec.start_run(cell=CELL_ROW, **RUN) == 1  # type: ignore[arg-type]
        sink = RecordingSink(rec)
        for event in engine_events:
            sink(event)

    rows = _assert_same_rows(db_url, replay, monkeypatch)
    assert {"operator", "safe_state", "detector"} <= {r["kind"][1] for r in rows["event"]}
    assert any(r["parent_id"][1] is not None for r in rows["step"])  # the ramp's children
    assert len(rows["point"]) > 1000 and len(rows["eis_point"]) > 50 and rows["result"]


def test_fast_means_the_backends_bulk_path(db_url: str) -> None:
    engine = open_database(db_url)
    expected = SQLiteWriter if engine.dialect.name == "sqlite" else PostgresCopyWriter
    assert isinstance(make_writer(engine), expected)
    assert isinstance(make_writer(engine, "reference"), ReferenceWriter)
    mine = ReferenceWriter()
    assert Recorder(engine, writer=mine).writer is mine
    with pytest.raises(ValueError, match="unknown writer 'turbo'"):
        make_writer(engine, "turbo")  # type: ignore[arg-type]
    engine.dispose()
