"""Recorder throughput against raw sqlite3, measured in the same process on the same machine.

Durability is labctl's own: SQLite with `synchronous=FULL` (every commit fsynced before it is
acknowledged, so a power cut cannot roll it back: what the README promises), for the recorder
and for the baseline alike.

Writes N points (default 1,000,000) into a fresh WAL-mode SQLite file three times:
  * through labctl's Recorder with its default (fast) writer, fed as the engine feeds it (numpy
    columns per poll), committing every BATCH rows;
  * the same through the Recorder's shipped reference writer (`writer="reference"`: plain
    SQLAlchemy Core inserts of dicts), to show what the fast path buys;
  * through the standard library's sqlite3 `executemany` with pre-built tuples (the most
    favourable case for the baseline), committing every BATCH rows into an identical table.
Each is run --repeat times (default 3), interleaved; the medians of the per-repeat ratios are
reported. Then the price of the durability itself where it is highest, many small commits (one
per second per run in the engine): --commits commits of --rows rows through the recorder with
`synchronous=FULL` against the same with `NORMAL` (which a power cut can roll back).
Prints the rates, `fast/reference = N.NN`, `small commits FULL/NORMAL = N.NN` and, as its last
line, `recorder/raw = 0.xx (synchronous=FULL)` (the fast writer's).

    python benchmarks/recorder.py [--points N] [--batch B]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import raw_sqlite  # benchmarks/raw_sqlite.py: the shared baseline
from sqlalchemy import Engine, event

from labctl.recording.database import open_database
from labctl.recording.recorder import Recorder
from labctl.recording.writers import WriterName

POLL = 1000  # points handed to the recorder per call, like one engine poll of a busy channel


def columns(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(n, dtype=float)
    return {"t_s": t, "E_V": rng.normal(0.1, 0.01, n), "I_mA": np.full(n, 0.25),
            "Q_mAh": t * 0.25 / 3600, "P_MPa": np.full(n, 10.0)}


def _weakened(engine: Engine) -> None:
    """`synchronous=NORMAL` on every new connection (after labctl's own FULL): the setting a
    power cut can roll back, measured only to show what FULL costs."""
    event.listen(engine, "connect",
                 lambda dbapi_conn, _rec: dbapi_conn.execute("PRAGMA synchronous=NORMAL"))


def _step(path: Path, batch: int, writer: WriterName = "fast",
          synchronous: str = "FULL") -> tuple[Engine, Recorder, int]:
    engine = open_database(f"sqlite:///{path}")
    if synchronous != "FULL":
        engine.dispose()
        _weakened(engine)
    rec = Recorder(engine, flush_interval_s=3600.0, max_buffer_rows=batch, writer=writer)
    cell = {"id": "bench", "anode": {"material": "Na"}, "area_cm2_resolved": 0.283}
    run = rec.start_run(cell=cell, protocol_name="bench", protocol_text="bench",
                        protocol_sha256="bench", schema_version=1, station="bench",
                        simulated=True, operator=None, labctl_version="bench")
    return engine, rec, rec.start_step(run, 1, "galvanostatic", "bench", {}, 0.0)


def bench_small_commits(path: Path, commits: int, rows: int, synchronous: str) -> float:
    """`commits` flushes of `rows` points each: the engine's once-a-second commit."""
    engine, rec, step = _step(path, rows, synchronous=synchronous)
    cols = columns(rows)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == \
            {"FULL": 2, "NORMAL": 1}[synchronous]
    t0 = time.perf_counter()
    for _ in range(commits):
        rec.add_points(step, cols["t_s"], cols["E_V"], cols["I_mA"], cols["Q_mAh"],
                       cols["P_MPa"])
        rec.flush()
    elapsed = time.perf_counter() - t0
    engine.dispose()
    return elapsed


def bench_recorder(path: Path, cols: dict[str, np.ndarray], batch: int,
                   writer: WriterName = "fast") -> float:
    engine, rec, step = _step(path, batch, writer)
    n = len(cols["t_s"])
    t0 = time.perf_counter()
    for i in range(0, n, POLL):
        s = slice(i, i + POLL)
        rec.add_points(step, cols["t_s"][s], cols["E_V"][s], cols["I_mA"][s], cols["Q_mAh"][s],
                       cols["P_MPa"][s])
    rec.flush()
    elapsed = time.perf_counter() - t0
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM point").scalar() == n
    engine.dispose()
    return elapsed


def bench_raw(path: Path, cols: dict[str, np.ndarray], batch: int) -> float:
    con = raw_sqlite.connect(path)
    n = len(cols["t_s"])
    rows = list(zip([1] * n, *(cols[k].tolist() for k in ("t_s", "E_V", "I_mA", "Q_mAh",
                                                           "P_MPa"))))
    elapsed = raw_sqlite.timed_inserts(con, raw_sqlite.POINT_INSERT, rows, batch)
    con.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3,
                    help="raw/fast/reference triples, interleaved; the median ratios are "
                         "reported (this VM's speed drifts by tens of percent between seconds)")
    ap.add_argument("--commits", type=int, default=500,
                    help="small commits timed with synchronous=FULL and NORMAL")
    ap.add_argument("--rows", type=int, default=10, help="points per small commit")
    args = ap.parse_args()
    cols = columns(args.points)
    raws, recs, refs, fulls, normals = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeat):
            raws.append(bench_raw(Path(tmp) / f"raw{k}.db", cols, args.batch))
            recs.append(bench_recorder(Path(tmp) / f"labctl{k}.db", cols, args.batch))
            refs.append(bench_recorder(Path(tmp) / f"reference{k}.db", cols, args.batch,
                                       writer="reference"))
            fulls.append(bench_small_commits(Path(tmp) / f"full{k}.db", args.commits,
                                             args.rows, "FULL"))
            normals.append(bench_small_commits(Path(tmp) / f"normal{k}.db", args.commits,
                                               args.rows, "NORMAL"))
    n = args.points

    def rate(label: str, times: list[float]) -> None:
        mid = statistics.median(times)
        print(f"{label:<36}{n / mid:>12,.0f} rows/s (median {mid:.2f} s; "
              f"{', '.join(f'{x:.2f}' for x in times)})")

    print(f"points: {n:,}  batch: {args.batch:,}  repeats: {args.repeat}")
    rate("raw sqlite3 executemany:", raws)
    rate("labctl Recorder, fast writer:", recs)
    rate("labctl Recorder, reference writer:", refs)
    # each ratio is of runs made next to each other in one repeat (the machine's speed drifts)
    print(f"fast/reference = {statistics.median(f / c for f, c in zip(refs, recs)):.2f}")
    for label, times in (("small commits, synchronous=FULL:", fulls),
                         ("small commits, synchronous=NORMAL:", normals)):
        mid = statistics.median(times)
        print(f"{label:<36}{args.commits / mid:>12,.0f} commits/s of {args.rows} rows "
              f"(median {mid:.2f} s)")
    print(f"small commits FULL/NORMAL = "
          f"{statistics.median(f / c for f, c in zip(fulls, normals)):.2f} (time; the price "
          "of commits a power cut cannot roll back)")
    print(f"recorder/raw = {statistics.median(r / c for r, c in zip(raws, recs)):.2f} "
          "(synchronous=FULL, as the README promises)")


if __name__ == "__main__":
    main()
