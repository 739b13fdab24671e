"""The dashboard in a real browser (Debian's chromium via Playwright) on real processes: a
`labctl campaign --sim` writing the database while `labctl serve` reads it.

The screenshots in docs/ (dashboard_overview.png, dashboard_run.png) are taken here.
"""

from __future__ import annotations

import time

from labctl.recording.database import open_database
from labctl.recording.live_reads import run_status, runs_by_status
from tests.web.conftest import ROOT, TOKEN

DOCS = ROOT / "docs"


def _wait_for(check, timeout_s: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _points_shown(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.get_attribute("#trace", "data-points") or 0)


def test_overview_lists_a_running_simulated_campaign(serve, campaign, page, web_db) -> None:
    campaign(ROOT / "examples" / "campaigns" / "overnight.yaml", n_runs=4)
    base = serve(token=None)
    page.goto(base + "/")
    rows = page.locator("table[data-status=running] tr.run")
    rows.first.wait_for(timeout=15_000)
    shown = {int(r.get_attribute("data-run")) for r in rows.all()}
    engine = open_database(web_db)
    campaign_runs = {r.id for rs in runs_by_status(engine).values() for r in rs}
    assert shown and shown <= campaign_runs == {1, 2, 3, 4}
    text = page.inner_text("#overview")
    for cell in ("na-sym-001", "nak50", "nak80", "nak65"):  # the campaign's four cells
        assert cell in text.lower()
    assert "sim-bench" in text
    assert "Campaign queues and parked runs are not in labctl yet" in text
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "dashboard_overview.png"), full_page=True)
    # the CCD run's page, with its staircase and events, for docs/
    page.goto(base + "/runs/1")
    _wait_for(lambda: _points_shown(page) > 1000, what="the CCD run's trace")
    page.wait_for_timeout(1500)
    page.screenshot(path=str(DOCS / "dashboard_run.png"), full_page=True)
    engine.dispose()


def test_overview_shows_runs_of_several_processes(serve, launch, long_protocol, page) -> None:
    """Two `labctl run --sim` processes write one database; the overview lists both."""
    cells = ROOT / "examples" / "cells"
    launch("run", str(long_protocol), "--cell", str(cells / "na_symmetric.yaml"), running=1)
    launch("run", str(long_protocol), "--cell", str(cells / "nak80_half.yaml"), running=2)
    base = serve(token=None)
    page.goto(base + "/")
    rows = page.locator("table[data-status=running] tr.run")
    page.wait_for_function(
        "() => document.querySelectorAll('table[data-status=running] tr.run').length == 2")
    assert {int(r.get_attribute("data-run")) for r in rows.all()} == {1, 2}
    # both report their newest values, refreshed by the live stream
    first = page.inner_text("table[data-status=running]")
    _wait_for(lambda: page.inner_text("table[data-status=running]") != first,
              what="the overview to refresh")


def test_run_page_trace_grows_while_the_run_runs(serve, campaign, page, web_db) -> None:
    campaign()
    base = serve()
    page.goto(base + "/runs/1")
    first = _wait_for(lambda: _points_shown(page), what="the trace to load")
    grown = _wait_for(lambda: _points_shown(page) > first + 5 and _points_shown(page),
                      what="the trace to grow")
    assert grown > first
    # the page's newest point is one the database has, and the columns stay bounded
    assert int(page.get_attribute("#trace", "data-columns")) <= 3600 + 2000
    assert "running" in page.inner_text("#run-status")
    engine = open_database(web_db)
    with engine.connect() as conn:
        recorded = conn.exec_driver_sql(
            "SELECT count(*) FROM point JOIN step ON point.step_id = step.id "
            "WHERE step.run_id = 1").scalar()
    assert grown <= recorded  # the page shows points the database has, no more
    engine.dispose()


def test_pause_from_the_page_with_the_token(serve, campaign, page, web_db) -> None:
    campaign()
    base = serve()
    engine = open_database(web_db)
    page.goto(base + "/runs/1")
    assert page.locator("button[name=pause]").count() == 0  # not signed in: no controls
    page.fill("#sign-in input[name=token]", TOKEN)
    page.click("#sign-in button")
    page.wait_for_url(base + "/runs/1")
    page.locator("button[name=pause]").click()
    page.locator("#control-result", has_text="pause requested for run 1").wait_for()
    _wait_for(lambda: run_status(engine, 1)[0] == "paused", what="run 1 to be paused")
    assert run_status(engine, 2)[0] == "running"  # the other channel is untouched
    page.locator("#run-status", has_text="paused").wait_for(timeout=10_000)
    page.locator("#events", has_text="paused").wait_for(timeout=10_000)  # the engine's event
    page.locator("button[name=resume]").click()
    _wait_for(lambda: run_status(engine, 1)[0] == "running", what="run 1 to resume")
    engine.dispose()


def _post_from_page(page, path: str, action: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """A same-origin POST from the page's own script, as a forged button would send it."""
    return tuple(page.evaluate(
        """async ([path, action]) => {
            const r = await fetch(path, {method: "POST", body: new URLSearchParams({action})});
            return [r.status, await r.text()];
        }""", [path, action]))


def test_pause_is_refused_without_the_token(serve, campaign, page, web_db) -> None:
    campaign()
    base = serve()
    engine = open_database(web_db)
    page.goto(base + "/runs/1")
    status, text = _post_from_page(page, "/runs/1/control", "pause")
    assert status == 401 and "sign in" in text
    # a wrong token does not sign in
    page.fill("#sign-in input[name=token]", "not the token")
    page.click("#sign-in button")
    assert "wrong operator token" in page.inner_text("body")
    page.goto(base + "/runs/1")
    assert page.locator("button[name=pause]").count() == 0
    status, _ = _post_from_page(page, "/runs/1/control", "pause")
    assert status == 401
    time.sleep(2.5)  # more than two of the engine's polls of the run row
    assert run_status(engine, 1) == ("running", None, None)
    engine.dispose()


def test_a_read_only_dashboard_refuses_every_request(serve, campaign, page, web_db) -> None:
    campaign()
    base = serve(token=None)
    page.goto(base + "/runs/1")
    assert "read-only" in page.inner_text("header")
    status, text = _post_from_page(page, "/runs/1/control", "pause")
    assert status == 403 and "read-only" in text
    engine = open_database(web_db)
    assert run_status(engine, 1) == ("running", None, None)
    engine.dispose()
