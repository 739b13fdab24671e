"""Notifications for unattended runs: tell a person when a run ends or something trips.

Overnight campaigns have nobody watching, so labctl can push a short message to wherever the lab
looks — e-mail, Slack, Teams, Matrix, ntfy, a plain webhook — through apprise URLs
(https://github.com/caronc/apprise/wiki), e.g. `--notify mailto://user:pass@lab.org` or
`--notify json://monitor.lab.local/labctl`. What is sent: every run's end (status, reason, key
results) and, as they happen, limit and detector trips, instrument faults and safe-state
actions.

The notifier is a subscriber of the engine's events. Delivering a message can take seconds (a
mail server, a slow webhook), and the engine must never wait for it, so the subscriber only
queues the message; one worker thread sends them in order. A notification that cannot be
delivered is logged and never affects the run.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Mapping

from labctl.analysis.fit_quality import Flagged
from labctl.engine.events import Event, EventKind, Notice, RunStatus, RunSummary, Severity

log = logging.getLogger(__name__)

#: event kinds worth waking someone for
ALERT_KINDS = frozenset({EventKind.LIMIT, EventKind.DETECTOR, EventKind.FAULT,
                         EventKind.SAFE_STATE})
ALERT_SEVERITIES = frozenset({Severity.WARNING, Severity.ERROR, Severity.CRITICAL})
CLOSE_TIMEOUT_S = 30.0  # how long `close` waits for queued messages to go out


class NotificationURLError(ValueError):
    """A --notify URL that apprise cannot use (bad input: refused before any run starts)."""


class Notifier:
    def __init__(self, urls: Iterable[str], station: str = "") -> None:
        import apprise

        self.station = station
        self._apprise = apprise.Apprise()
        bad = [u for u in urls if not self._apprise.add(u)]
        if bad:
            raise NotificationURLError(
                f"not a notification URL apprise understands: {', '.join(bad)}"
            )
        self._queue: queue.Queue[tuple[str, str, bool] | None] = queue.Queue()
        self._worker: threading.Thread | None = None

    def __call__(self, event: Event) -> None:
        """The subscriber: alert-worthy notices as they happen, and each run's summary."""
        if isinstance(event, Notice):
            if event.kind in ALERT_KINDS and event.severity in ALERT_SEVERITIES:
                self._post(f"run {event.run_id}: {event.kind.value}", event.message,
                           event.severity is not Severity.WARNING)
        elif isinstance(event, RunSummary):
            self._post(*run_message(event.run_id, event.cell, event.status, event.reason,
                                    event.results))

    def _post(self, title: str, body: str, failure: bool) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._deliver, name="labctl-notify",
                                            daemon=True)
            self._worker.start()
        self._queue.put((title, body, failure))

    def _deliver(self) -> None:
        while (item := self._queue.get()) is not None:
            self.send(*item)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Send what is queued (waiting at most `timeout_s`), then stop the worker."""
        if self._worker is None:
            return
        self._queue.put(None)
        self._worker.join(timeout_s)
        if self._worker.is_alive():
            log.warning("notifications still pending after %.0f s; giving up", timeout_s)
        self._worker = None

    def send(self, title: str, body: str, failure: bool = False) -> None:
        import apprise

        kind = apprise.NotifyType.FAILURE if failure else apprise.NotifyType.INFO
        prefix = f"[labctl {self.station}] " if self.station else "[labctl] "
        try:
            if not self._apprise.notify(title=prefix + title, body=body, notify_type=kind):
                log.warning("notification not delivered: %s", title)
        except Exception:  # a notification service must never take a run down
            log.warning("notification failed: %s", title, exc_info=True)


def run_message(run_id: int, cell: str, status: RunStatus, reason: str,
                results: Mapping[str, float | str | Flagged | None]) -> tuple[str, str, bool]:
    """(title, body, failure) of a run's end message.

    A value that failed its quality check (`Flagged`) is never sent: it is named as withheld,
    without its number, so a fit the data do not determine cannot go out as a result.
    """
    lines = [f"cell {cell}: {status.value} ({reason})"]
    good = {k: v for k, v in results.items() if v is not None and not isinstance(v, Flagged)}
    lines += [f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in good.items()]
    withheld = [k for k, v in results.items() if isinstance(v, Flagged)]
    if withheld:
        lines.append(f"withheld (failed their quality check): {', '.join(withheld)}")
    return f"run {run_id} {status.value}", "\n".join(lines), status is not RunStatus.COMPLETED
