"""Real parts for the dashboard tests: `labctl serve` and `labctl campaign --sim` as processes on
one SQLite file, and Debian's chromium driven by Playwright.

Playwright's own browser download cannot work here (offline CI), so the tests launch
/usr/bin/chromium, which .ci/run installs. Without it the browser tests skip locally and fail
under CI=true, as the PostgreSQL tests do.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labctl.recording.database import open_database
from labctl.recording.live_reads import runs_by_status

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LABCTL_TEST_CHROMIUM", "/usr/bin/chromium")
TOKEN = "correct horse battery staple"
_LABCTL = [sys.executable, "-c", "import sys; from labctl.cli import main; main(sys.argv[1:])"]

#: A protocol that keeps its channel busy for minutes of wall time on the virtual clock (a 30-day
#: rest records one point a second of run time), so a test can watch a run that runs.
LONG_PROTOCOL = """\
schema_version: 1
name: long rest
limits:
  E_min: -2 V
  E_max: 2 V
steps:
  - kind: rest
    duration: 30 d
"""


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT, wait_s: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).is_file() and shutil.which("chromium") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"chromium required in CI but missing at {CHROMIUM} (.ci/run installs it)")
        pytest.skip(f"no chromium at {CHROMIUM}")
    return CHROMIUM if Path(CHROMIUM).is_file() else str(shutil.which("chromium"))


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start
        b = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    p = context.new_page()
    yield p
    context.close()


@pytest.fixture
def web_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'labctl.db'}"
    open_database(url).dispose()  # schema created once, before any process opens it
    return url


Serve = Callable[..., str]


@pytest.fixture
def serve(web_db: str) -> Iterator[Serve]:
    """Start `labctl serve --port 0` on the test database; returns its base URL."""
    procs: list[subprocess.Popen[str]] = []

    def start(token: str | None = TOKEN, db: str | None = None) -> str:
        env = {k: v for k, v in os.environ.items() if k != "LABCTL_WEB_TOKEN"}
        if token is not None:
            env["LABCTL_WEB_TOKEN"] = token
        proc = subprocess.Popen([*_LABCTL, "serve", "--db", db or web_db, "--port", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, cwd=ROOT)
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"http://[\d.]+:\d+/", line)
        if found is None:
            _stop(proc)
            raise AssertionError(f"labctl serve did not start: {line}{proc.stderr.read()}")
        return found.group(0).rstrip("/")

    yield start
    for proc in procs:
        _stop(proc)


Launch = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def launch(web_db: str) -> Iterator[Launch]:
    """Start `labctl ARGS... --sim --db <test db>` as a process; return once at least
    `running` runs in the database are running (from every process so far)."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, running: int) -> subprocess.Popen[str]:
        proc = subprocess.Popen([*_LABCTL, *args, "--sim", "--db", web_db],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=ROOT)
        procs.append(proc)
        engine = open_database(web_db)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if len(runs_by_status(engine).get("running", [])) >= running:
                    return proc
                if proc.poll() is not None:
                    raise AssertionError(f"labctl {args[0]} ended early: {proc.stderr.read()}")
                time.sleep(0.2)
            raise AssertionError(f"{running} runs were not running within 120 s")
        finally:
            engine.dispose()

    yield start
    for proc in procs:
        _stop(proc)  # Ctrl-C: channels off, runs recorded as aborted


@pytest.fixture
def long_protocol(tmp_path: Path) -> Path:
    path = tmp_path / "long.yaml"
    path.write_text(LONG_PROTOCOL, encoding="utf-8")
    return path


Campaign = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def campaign(launch: Launch, long_protocol: Path, tmp_path: Path) -> Campaign:
    """Start `labctl campaign FILE --sim` (default: two cells on the long protocol)."""

    def start(campaign_file: Path | None = None, n_runs: int = 2) -> subprocess.Popen[str]:
        if campaign_file is None:
            campaign_file = tmp_path / "campaign.yaml"
            cells = ROOT / "examples" / "cells"
            campaign_file.write_text(
                "name: dashboard test campaign\nruns:\n"
                f"  - {{protocol: {long_protocol.name}, cell: {cells / 'na_symmetric.yaml'}}}\n"
                f"  - {{protocol: {long_protocol.name}, cell: {cells / 'nak50_half.yaml'}}}\n",
                encoding="utf-8")
        return launch("campaign", str(campaign_file), running=n_runs)

    return start
