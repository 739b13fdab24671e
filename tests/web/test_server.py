"""`labctl serve` as a process, over HTTP (httpx): where it listens, what it refuses, and that
an accepted operator request is the same row write as `labctl pause`."""

from __future__ import annotations

import re
import socket
import subprocess

import httpx
import pytest

from labctl.recording.database import open_database
from labctl.recording.live_reads import run_status
from labctl.recording.recorder import Recorder
from labctl.web.security import SESSION_COOKIE
from tests.web.conftest import _LABCTL, ROOT, TOKEN

CELL = {"id": "web-cell", "anode": {"material": "Na"}, "area_cm2_resolved": 0.283}


@pytest.fixture
def live_run(web_db: str) -> int:
    """A run row that is running (as a launch in another process would leave it)."""
    engine = open_database(web_db)
    rec = Recorder(engine)
    run = rec.start_run(cell=CELL, protocol_name="p", protocol_text="p", protocol_sha256="p",
                        schema_version=1, station="test", simulated=True, operator=None,
                        labctl_version="test")
    engine.dispose()
    return run


def _signed_in(client: httpx.Client, base: str) -> None:
    r = client.post(base + "/sign-in", data={"token": TOKEN, "next": "/"},
                    headers={"Origin": base})
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert TOKEN.lower() not in cookie  # the cookie is a MAC, never the token


def _csrf(client: httpx.Client, base: str, run: int) -> str:
    page = client.get(f"{base}/runs/{run}").text
    found = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page)
    assert found, "a signed-in run page carries the form token"
    return found.group(1)


def test_listens_on_localhost_unless_told(serve, web_db: str) -> None:
    base = serve()
    assert base.startswith("http://127.0.0.1:")
    assert httpx.get(base + "/").status_code == 200


def test_a_busy_port_is_one_line_and_exit_1(web_db: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = subprocess.run([*_LABCTL, "serve", "--db", web_db, "--port", str(port)],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "cannot listen" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_empty_token_file_is_refused(web_db: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "token"
    empty.write_text("\n")
    proc = subprocess.run([*_LABCTL, "serve", "--db", web_db, "--token-file", str(empty)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "is empty" in proc.stderr


def test_requests_that_change_state_are_guarded(serve, live_run: int, web_db: str) -> None:
    base = serve()
    url = f"{base}/runs/{live_run}/control"
    engine = open_database(web_db)
    with httpx.Client() as client:
        # not signed in
        assert client.post(url, data={"action": "pause"}, headers={"Origin": base}
                           ).status_code == 401
        # wrong token
        r = client.post(base + "/sign-in", data={"token": "guess"}, headers={"Origin": base})
        assert r.status_code == 403 and SESSION_COOKIE not in r.headers.get("set-cookie", "")
        _signed_in(client, base)
        csrf = _csrf(client, base, live_run)
        # signed in, but from another site's page, or from no page at all
        for origin in ({"Origin": "http://evil.example"}, {"Referer": "http://evil.example/x"},
                       {}):
            r = client.post(url, data={"action": "pause", "csrf": csrf}, headers=origin)
            assert r.status_code == 403 and "own page" in r.text, origin
        # signed in, own origin, but without the form token
        r = client.post(url, data={"action": "pause"}, headers={"Origin": base})
        assert r.status_code == 403 and "form token" in r.text
        # nothing was written by any of those
        assert run_status(engine, live_run) == ("running", None, None)
        # an unknown action is refused before anything is written
        r = client.post(url, data={"action": "explode", "csrf": csrf}, headers={"Origin": base})
        assert r.status_code == 400
        r = client.post(url, data={"action": "pause"},
                        headers={"Origin": base, "X-CSRF-Token": csrf})
        assert r.status_code == 200 and "pause requested" in r.text
    assert run_status(engine, live_run) == ("running", None, "pause")
    engine.dispose()


def test_a_script_may_use_the_token_as_a_bearer(serve, live_run: int, web_db: str) -> None:
    base = serve()
    url = f"{base}/runs/{live_run}/control"
    assert httpx.post(url, data={"action": "abort"},
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = httpx.post(url, data={"action": "abort"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    engine = open_database(web_db)
    assert run_status(engine, live_run)[2] == "abort"
    engine.dispose()


def test_a_finished_run_takes_no_request(serve, live_run: int, web_db: str) -> None:
    engine = open_database(web_db)
    Recorder(engine).end_run(live_run, "completed", "all steps done")
    base = serve()
    r = httpx.post(f"{base}/runs/{live_run}/control", data={"action": "pause"},
                   headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 409 and "not running" in r.text
    assert run_status(engine, live_run) == ("completed", "all steps done", None)
    engine.dispose()


def test_pages_and_data_of_a_run(serve, live_run: int, web_db: str) -> None:
    base = serve(token=None)
    assert httpx.get(f"{base}/runs/{live_run}").status_code == 200
    assert httpx.get(f"{base}/runs/{live_run}/trace.json").json()["n_points"] == 0
    assert httpx.get(f"{base}/runs/999").status_code == 404
    assert httpx.get(f"{base}/runs/999/trace.json").status_code == 404
    r = httpx.get(f"{base}/runs/{live_run}/figures/voltage.jpeg")
    assert r.status_code == 404
    r = httpx.get(f"{base}/runs/{live_run}/export.csv", timeout=120)
    assert r.status_code == 409 and "no time-series points" in r.text  # labctl export's line
    for vendored in ("htmx-2.0.11.min.js", "htmx-ext-sse-2.2.4.min.js", "uPlot-1.6.32.iife.min.js",
                     "htmx.LICENSE", "uPlot.LICENSE"):
        assert httpx.get(f"{base}/static/vendor/{vendored}").status_code == 200, vendored


def test_a_run_page_shows_results_with_their_quality_flags(serve, live_run: int,
                                                           web_db: str) -> None:
    engine = open_database(web_db)
    Recorder(engine).store_results(live_run, "circuit", "1", [
        ("R_bulk_ohm", 812.5, "ohm", None),
        ("tau_gb_s", 3.1e-6, "s", None, "not determined by the data (95% interval > 100%)"),
    ])
    engine.dispose()
    base = serve(token=None)
    page = httpx.get(f"{base}/runs/{live_run}").text
    rows = re.findall(r"<tr><td>(R_bulk_ohm|tau_gb_s)</td>.*?</tr>", page, flags=re.S)
    assert len(rows) == 2
    bulk, tau = (re.search(rf"<tr><td>{n}</td>.*?</tr>", page, flags=re.S).group(0)
                 for n in ("R_bulk_ohm", "tau_gb_s"))
    assert "812.5" in bulk and ">ok<" in bulk
    assert "flagged: not determined by the data" in tau


def test_pages_and_trace_on_either_database(serve, db_url: str) -> None:
    """The same pages on SQLite and on the PostgreSQL server, read while a recorder writes."""
    import numpy as np

    engine = open_database(db_url)
    rec = Recorder(engine)
    run = rec.start_run(cell=CELL, protocol_name="p", protocol_text="p", protocol_sha256="p",
                        schema_version=1, station="test", simulated=True, operator=None,
                        labctl_version="test")
    step = rec.start_step(run, 1, "galvanostatic", "g", {}, 0.0)
    t = np.arange(0.0, 3000.0)
    rec.add_points(step, t, 0.05 + 0 * t, np.full(t.size, 0.1), t * 1e-5, np.full(t.size, 10.0))
    rec.flush()
    base = serve(token=None, db=db_url)
    first = httpx.get(f"{base}/runs/{run}/trace.json").json()
    assert first["n_points"] == 3000 and len(first["t_lo"]) <= 1201
    t2 = np.arange(3000.0, 4000.0)
    rec.add_points(step, t2, 0.06 + 0 * t2, np.full(t2.size, 0.1), t2 * 1e-5,
                   np.full(t2.size, 10.0))
    rec.flush()
    later = httpx.get(f"{base}/runs/{run}/trace.json").json()
    assert later["n_points"] == 4000 and max(later["E_hi"]) == pytest.approx(0.06)
    overview = httpx.get(base + "/").text
    assert f'data-run="{run}"' in overview and "web-cell" in overview
    assert httpx.get(f"{base}/runs/{run}").status_code == 200
    engine.dispose()


def test_ctrl_c_stops_the_server_with_a_live_stream_open(web_db: str, live_run: int) -> None:
    import signal
    import threading
    import time

    proc = subprocess.Popen([*_LABCTL, "serve", "--db", web_db, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    base = re.search(r"http://[\d.]+:\d+", proc.stdout.readline()).group(0)
    opened = threading.Event()

    def listen() -> None:
        try:
            with httpx.stream("GET", f"{base}/live/runs/{live_run}", timeout=60) as r:
                opened.set()
                for _ in r.iter_text():
                    pass
        except httpx.HTTPError:
            pass

    threading.Thread(target=listen, daemon=True).start()
    assert opened.wait(30)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    assert proc.returncode == 0 and time.monotonic() - t0 < 10
    assert "dashboard stopped" in proc.stdout.read()
    assert "Traceback" not in proc.stderr.read()


def test_a_run_whose_process_died_shows_interrupted_and_takes_no_request(
        serve, launch, long_protocol, web_db: str) -> None:
    import signal

    proc = launch("run", str(long_protocol), "--cell",
                  str(ROOT / "examples" / "cells" / "na_symmetric.yaml"), running=1)
    proc.send_signal(signal.SIGKILL)  # no chance to record its end: a crash
    proc.wait(30)
    base = serve()
    page = httpx.get(f"{base}/runs/1").text
    assert 'id="run-status">interrupted<' in page
    assert 'data-status="interrupted"' in httpx.get(base + "/").text
    r = httpx.post(f"{base}/runs/1/control", data={"action": "pause"},
                   headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 409 and "nothing requested" in r.text
    engine = open_database(web_db)
    assert run_status(engine, 1)[2] is None  # no request written for nobody to act on
    engine.dispose()
