"""Notifications reach a webhook when a run ends (apprise json:// to a real local HTTP server)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from labctl.engine.events import LimitTripped, RunStatus, RunSummary
from labctl.launch import launch
from labctl.notify import NotificationURLError, Notifier

ROOT = Path(__file__).resolve().parents[2]


def test_run_end_is_notified(webhook: tuple[str, list[dict[str, str]]], tmp_path: Path) -> None:
    url, received = webhook
    res = launch(ROOT / "protocols" / "ccd.yaml", [ROOT / "examples/cells/na_symmetric.yaml"],
                 sim=True, db_url=f"sqlite:///{tmp_path / 'n.db'}", notify=[url])
    (out,) = res.outcomes
    ends = [m for m in received if f"run {out.run_id} completed" in m["title"]]
    assert len(ends) == 1
    assert "ccd_mA_cm2 = 3.2" in ends[0]["message"]
    # the detector trip that ended the ramp was sent as it happened, before the run's end
    trips = [i for i, m in enumerate(received) if f"run {out.run_id}: detector" in m["title"]]
    assert trips and trips[0] < received.index(ends[0])


def test_bad_notification_url_is_refused_before_any_run(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    with pytest.raises(NotificationURLError):
        launch(ROOT / "protocols" / "quickstart.yaml",
               [ROOT / "examples/cells/na_symmetric.yaml"], sim=True,
               db_url=f"sqlite:///{db}", notify=["nonsense-scheme://x"])
    assert not db.exists()


def test_a_slow_notification_service_never_holds_the_engine_up(
        webhook: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The notifier subscribes to the engine's events but only queues: delivery (here 0.5 s a
    message) happens on its own thread, in order, and close() waits for it."""
    url, received = webhook
    notifier = Notifier([url])
    deliver = notifier.send

    def slow_send(title: str, body: str, failure: bool = False) -> None:
        time.sleep(0.5)
        deliver(title, body, failure)

    monkeypatch.setattr(notifier, "send", slow_send)
    t0 = time.monotonic()
    notifier(LimitTripped(7, 10.0, 3, "safety limit: E 5 V"))
    notifier(RunSummary(7, "cell-1", RunStatus.FAILED, "step 'x': safety limit", {}))
    assert time.monotonic() - t0 < 0.1
    notifier.close()
    assert [m["title"] for m in received] == ["[labctl] run 7: limit", "[labctl] run 7 failed"]
