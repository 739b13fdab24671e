"""Benchmark: a 16-hour, 4-cell simulated campaign through `labctl.launch`, against raw SQLite.

The campaign (benchmarks/campaign.yaml: pressure, rest, EIS, CCD-style ramp with EIS after each
step, then 10 h of cycling with EIS) runs the Na and NaK50/65/80 symmetric cells of
examples/paper/cells concurrently on a station, recording everything into a fresh SQLite file.
The station is an ordinary station file (`--station`, default benchmarks/campaign_station.yaml:
the built-in simulated station polling each channel once a minute, as an overnight campaign
station does), so the campaign goes through the real drivers: the SP-300 adapter over the
simulated SP-300 firmware, the Mark-10 driver over pyserial to the simulated gauges.

The yardstick is the cost of just *storing* the same data: a raw `sqlite3` `executemany` of as
many rows of the same shape, in WAL mode and in batches the size of the recorder's buffer. The
ratio says how much the simulation, the drivers and the engine cost on top of the unavoidable
write; labctl's goal is <= 3, so that simulated campaigns (tests, protocol rehearsals) stay a
few seconds long. One more pair runs on the built-in simulated station (`--sim`, 1 s polling)
and is printed as information: every poll then costs the drivers' and the engine's per-poll
work for one record.

Run:  python benchmarks/campaign.py [--station FILE] [--profile] [--repeat N]
(median ratio of interleaved pairs). The last line is `campaign/raw-sqlite = X.XX (goal <= 3)`.
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import raw_sqlite  # benchmarks/raw_sqlite.py: the shared baseline
from sqlalchemy import create_engine, text

from labctl.launch import launch
from labctl.recording.database import upgrade
from labctl.recording.recorder import Recorder
from labctl.stations import builtin_sim_station, load_station

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "benchmarks" / "campaign.yaml"
STATION = ROOT / "benchmarks" / "campaign_station.yaml"
CELLS = [ROOT / "examples" / "paper" / "cells" / f"{c}_10MPa.yaml"
         for c in ("na_sym", "nak50_sym", "nak65_sym", "nak80_sym")]
#: the recorder's buffer size (by name: its position among the defaults changes)
BATCH = int(inspect.signature(Recorder).parameters["max_buffer_rows"].default)


def setup(db_path: Path) -> float:
    """One-off costs a lab pays once, not per campaign: importing the simulator's modules
    (numpy/scipy) and creating the database schema (`labctl db upgrade`). Timed and printed
    separately; the ratio is about running the campaign."""
    t0 = time.perf_counter()
    import labctl_drivers.sim.cells  # noqa: F401  (scipy and the phase-diagram tables)

    upgrade(f"sqlite:///{db_path}")
    return time.perf_counter() - t0


def run_campaign(db_path: Path, station: Path | None, profile: bool
                 ) -> tuple[float, int, int, float]:
    """Run the campaign on `station` (None: the built-in simulated station, as `--sim`);
    return (wall s, point rows, eis rows, simulated hours)."""
    url = f"sqlite:///{db_path}"
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    if station is None:
        launch(PROTOCOL, CELLS, sim=True, db_url=url)
    else:
        launch(PROTOCOL, CELLS, sim=False, station_path=station, db_url=url)
    if prof:
        prof.disable()
    wall = time.perf_counter() - t0
    if prof:
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    eng = create_engine(url)
    with eng.connect() as c:
        points = int(c.execute(text("SELECT count(*) FROM point")).scalar_one())
        eis = int(c.execute(text("SELECT count(*) FROM eis_point")).scalar_one())
        t_max = float(c.execute(text("SELECT max(t_s) FROM point")).scalar_one())
    eng.dispose()
    return wall, points, eis, t_max / 3600.0


def raw_baseline(db_path: Path, n_points: int, n_eis: int) -> float:
    """Time writing the same number of rows of the same shape with bare sqlite3."""
    con = raw_sqlite.connect(db_path)
    rnd = random.Random(0)
    points = [(1 + i // 1800, float(i), rnd.random(), 0.1, rnd.random(), 10.0)
              for i in range(n_points)]
    eis = [(1 + i // 69, float(i), 1e3, rnd.random(), -rnd.random(), 1.0, -10.0, 0.0, 0.0)
           for i in range(n_eis)]
    wall = raw_sqlite.timed_inserts(con, raw_sqlite.POINT_INSERT, points, BATCH)
    wall += raw_sqlite.timed_inserts(con, raw_sqlite.EIS_INSERT, eis, BATCH)
    con.close()
    return wall


def pair(tmp: Path, name: str, station: Path | None, profile: bool
         ) -> tuple[float, float, int, int, float]:
    """One campaign and the baseline measured right after it (a slow minute on the machine
    slows both sides of a pair): (campaign s, raw s, points, eis rows, simulated h)."""
    db = tmp / f"{name}.db"
    once = setup(db)
    wall, points, eis, hours = run_campaign(db, station, profile)
    raw = raw_baseline(tmp / f"{name}-raw.db", points, eis)
    print(f"{name}: setup {once:.2f} s (not in the ratio), campaign {wall:.2f} s, "
          f"raw sqlite {raw:.3f} s")
    return wall, raw, points, eis, hours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--station", type=Path, default=STATION,
                    help="station file to run the campaign on (default: %(default)s)")
    ap.add_argument("--profile", action="store_true", help="cProfile the campaign (to stderr)")
    ap.add_argument("--repeat", type=int, default=5,
                    help="campaign/baseline pairs, interleaved; the median pair ratio is "
                         "reported (this VM's speed drifts by tens of percent between seconds)")
    args = ap.parse_args()
    spec = load_station(args.station)  # checked before anything runs
    builtin = builtin_sim_station()
    walls, raws = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeat):
            wall, raw, points, eis, hours = pair(Path(tmp), f"run {k + 1}", args.station,
                                                 args.profile and k == 0)
            walls.append(wall)
            raws.append(raw)
        wall_1s, raw_1s, points_1s, eis_1s, _ = pair(Path(tmp), "at 1 s polling", None, False)
    print(f"campaign: {len(CELLS)} cells, {hours:.1f} simulated h, station {spec.name} "
          f"({args.station.name}, polling every {spec.poll_interval_s:g} s)")
    print(f"rows written: {points} points + {eis} eis = {points + eis}")
    print(f"median wall: campaign {statistics.median(walls):.2f} s, raw sqlite3 executemany "
          f"(WAL, batches of {BATCH}) {statistics.median(raws):.3f} s")
    if (points_1s, eis_1s) != (points, eis):  # the same records, whatever the polling
        print(f"note: at 1 s polling {points_1s} points + {eis_1s} eis were written")
    print(f"at {builtin.poll_interval_s:g} s polling: campaign/raw-sqlite = {wall_1s / raw_1s:.2f} "
          f"(station {builtin.name}, one pair: campaign {wall_1s:.2f} s, raw {raw_1s:.3f} s)")
    ratio = statistics.median(w / r for w, r in zip(walls, raws))
    print(f"campaign/raw-sqlite = {ratio:.2f} (goal <= 3)")


if __name__ == "__main__":
    main()
