"""The dashboard's run-page trace: time to first byte and payload for a 1-hour and a 7-day run,
and the latency from a recorded point to the browser.

Both runs are written into a fresh SQLite file through labctl's Recorder, at the same recording
rate (one point per second of run time: 3,600 and 604,800 points), as several steps, the way a
long cycling run is recorded. `labctl serve` then runs as its own process on that file and the
trace endpoint a run page loads (`/runs/N/trace.json`) is timed over HTTP on a new connection
each time: time to first byte (request sent to the first byte of the body's status line) and
the body's size, median of --repeat requests after the first. The server reduces each run once
(a GROUP BY over all its points, when it starts or when the run is first asked for) and then
only adds what is new (labctl.web.trace_cache); that first load is printed on its own, since it
grows with the run. The baseline, measured in the same run on the same
file, is the 1-hour run: the goal is `7d/1h <= 2` and the 7-day TTFB under 200 ms. For scale it
also prints the time to read every point of the 7-day run (labctl.recording.reads_analysis),
which is what drawing the trace without server-side downsampling would have to start from.

The latency part opens the page of a live run in Debian's chromium (Playwright), then commits
one point at a time through the Recorder and reads, in the page, when the server-sent event
carrying that point arrived (both clocks are this machine's). Goal: < 2 s.

    python benchmarks/dashboard.py [--repeat 31] [--latency-points 10] [--keep DIR]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from labctl.recording.database import open_database
from labctl.recording.reads_analysis import run_points
from labctl.recording.recorder import Recorder

CHROMIUM = os.environ.get("LABCTL_TEST_CHROMIUM", "/usr/bin/chromium")
STEP_S = 6 * 3600  # one step per 6 h of run time, as a long cycling protocol records them
POLL = 1000
CELL = {"id": "bench-cell", "anode": {"material": "Na"}, "area_cm2_resolved": 0.283}


def record_run(rec: Recorder, name: str, duration_s: int) -> int:
    """A completed run of `duration_s` seconds at one point per second."""
    run = rec.start_run(cell=CELL, protocol_name=name, protocol_text=name,
                        protocol_sha256=name, schema_version=1, station="bench",
                        simulated=True, operator=None, labctl_version="bench")
    rng = np.random.default_rng(duration_s)
    for index, t0 in enumerate(range(0, duration_s, STEP_S), start=1):
        t1 = min(t0 + STEP_S, duration_s)
        step = rec.start_step(run, index, "galvanostatic", f"half-cycle {index}", {}, float(t0))
        sign = 1.0 if index % 2 else -1.0
        for a in range(t0, t1, POLL):
            t = np.arange(a, min(a + POLL, t1), dtype=float)
            n = len(t)
            rec.add_points(step, t, sign * 0.05 + rng.normal(0, 0.002, n), np.full(n, sign * 0.1),
                           (t - t0) * 0.1 / 3600, 10.0 + rng.normal(0, 0.02, n))
        rec.end_step(step, "completed", "duration reached", float(t1))
    rec.end_run(run, "completed", "all steps done")
    return run


def serve(db_url: str) -> tuple[subprocess.Popen[str], str, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from labctl.cli import main; main(sys.argv[1:])",
         "serve", "--db", db_url, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "LABCTL_WEB_TOKEN"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"http://([\d.]+):(\d+)/", line)
    if found is None:
        proc.kill()
        raise SystemExit(f"labctl serve did not start: {line}{proc.stderr.read()}")
    return proc, found.group(1), int(found.group(2))


def ttfb(host: str, port: int, path: str) -> tuple[float, int]:
    """(seconds from the request to the first byte of the answer, body bytes) on a new
    connection, as a browser's first load of the page makes it."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.connect()
    t0 = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()  # returns once the status line and headers have arrived
    first = time.perf_counter() - t0
    body = resp.read()
    conn.close()
    if resp.status != 200:
        raise SystemExit(f"GET {path}: {resp.status} {body[:200]!r}")
    return first, len(body)


def trace_numbers(host: str, port: int, runs: tuple[int, ...],
                  repeat: int) -> list[tuple[float, float, int]]:
    """Per run: (first load's TTFB, median TTFB of the next `repeat` loads, body bytes). The
    loads of the runs alternate, so a busy machine slows each the same."""
    first = [ttfb(host, port, f"/runs/{run}/trace.json") for run in runs]
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeat):
        for i, run in enumerate(runs):
            times[i].append(ttfb(host, port, f"/runs/{run}/trace.json")[0])
    return [(f[0], statistics.median(t), f[1]) for f, t in zip(first, times)]


def latency(db_url: str, host: str, port: int, n: int) -> list[float]:
    """Seconds from a point's commit to its arrival in the run page, for n points."""
    from playwright.sync_api import sync_playwright

    engine = open_database(db_url)
    rec = Recorder(engine, flush_interval_s=3600.0)
    run = rec.start_run(cell=CELL, protocol_name="live", protocol_text="live",
                        protocol_sha256="live", schema_version=1, station="bench",
                        simulated=True, operator=None, labctl_version="bench", pid=os.getpid())
    step = rec.start_step(run, 1, "rest", "live", {}, 0.0)
    out = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"http://{host}:{port}/runs/{run}")
        page.wait_for_function("() => window.labctlTrace !== undefined")
        time.sleep(1.0)  # the stream is open
        for i in range(n):
            rec.add_points(step, np.array([float(i)]), np.array([0.0]), np.array([0.0]),
                           np.array([0.0]), np.array([10.0]))
            rec.flush()
            committed_ms = time.time() * 1000.0
            with engine.connect() as conn:
                point_id = conn.exec_driver_sql("SELECT max(id) FROM point").scalar()
            page.wait_for_function(f"() => window.labctlTrace.received[{point_id}] !== undefined",
                                   timeout=10_000)
            arrived_ms = page.evaluate(f"() => window.labctlTrace.received[{point_id}]")
            out.append((arrived_ms - committed_ms) / 1000.0)
            time.sleep(0.37)  # not in step with the server's polling
        browser.close()
    rec.end_step(step, "completed", None, float(n))
    rec.end_run(run, "completed", "benchmark done")
    engine.dispose()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=31)
    ap.add_argument("--latency-points", type=int, default=10)
    ap.add_argument("--keep", type=Path, help="keep the database in this folder")
    args = ap.parse_args(argv)

    folder = args.keep or Path(tempfile.mkdtemp(prefix="labctl-dashboard-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{folder / 'dashboard.db'}"
    engine = open_database(db_url)
    rec = Recorder(engine, flush_interval_s=3600.0, max_buffer_rows=50_000)
    t0 = time.perf_counter()
    hour, week = record_run(rec, "1 hour", 3600), record_run(rec, "7 days", 7 * 86400)
    print(f"recorded a 1-hour and a 7-day run (3,600 and 604,800 points) in "
          f"{time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    n_all = len(run_points(engine, week)["t_s"])
    full_read = time.perf_counter() - t0
    engine.dispose()

    proc, host, port = serve(db_url)
    try:
        (f_hour, t_hour, b_hour), (f_week, t_week, b_week) = trace_numbers(
            host, port, (hour, week), args.repeat)
        for name, first, t, b in (("1-hour", f_hour, t_hour, b_hour),
                                  ("7-day ", f_week, t_week, b_week)):
            print(f"trace {name} run: TTFB {t * 1000:.1f} ms (median of {args.repeat}), "
                  f"{b / 1024:.1f} KiB; first load after the server started "
                  f"{first * 1000:.0f} ms (the one full read of the run)")
        print(f"for scale: reading all {n_all} points of the 7-day run takes "
              f"{full_read * 1000:.0f} ms")
        lat: list[Any] = []
        if Path(CHROMIUM).is_file():
            lat = latency(db_url, host, port, args.latency_points)
            print(f"point -> browser latency over {len(lat)} points: median "
                  f"{statistics.median(lat):.2f} s, max {max(lat):.2f} s (goal < 2 s)")
        else:
            print(f"point -> browser latency not measured: no chromium at {CHROMIUM}")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"7d TTFB {t_week * 1000:.1f} ms (goal < 200 ms); payload 7d/1h = {b_week / b_hour:.2f}")
    print(f"TTFB 7d/1h = {t_week / t_hour:.2f} (goal <= 2)")


if __name__ == "__main__":
    main()
