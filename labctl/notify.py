"""Notifications for unattended runs: tell a person when a run ends or something trips.

Overnight campaigns have nobody watching, so labctl can push a short message to wherever the lab
looks — e-mail, Slack, Teams, Matrix, ntfy, a plain webhook — through apprise URLs
(https://github.com/caronc/apprise/wiki), e.g. `--notify mailto://user:pass@lab.org` or
`--notify json://monitor.lab.local/labctl`. What is sent: every run's end (status, reason, key
results) and, as they happen, limit and detector trips, instrument faults and safe-state
actions.

The notifier is a subscriber of the engine's events. Delivering a message can take seconds (a
mail server, a slow webhook, one that never answers), and the engine must never wait for it, so
the subscriber only queues the message; one worker thread sends them in order, off the engine
loop. A notification that cannot be delivered never affects the run: the reason apprise gives
is logged and kept (`failures`), and the launcher records it on the run.

Each message carries its severity as apprise's message type (which sets the colour or icon in
Slack, Teams, ntfy...): a notice is sent as its own severity (a detector trip is a warning, a
safety-limit trip or a fault an error, a channel that could not be confirmed off critical), and
a run's end as success (completed), warning (aborted, interrupted) or failure (failed).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from labctl.analysis.fit_quality import Flagged
from labctl.engine.events import Event, EventKind, Notice, RunStatus, RunSummary, Severity

log = logging.getLogger(__name__)

#: event kinds worth waking someone for
ALERT_KINDS = frozenset({EventKind.LIMIT, EventKind.DETECTOR, EventKind.FAULT,
                         EventKind.SAFE_STATE})
ALERT_SEVERITIES = frozenset({Severity.WARNING, Severity.ERROR, Severity.CRITICAL})
CLOSE_TIMEOUT_S = 30.0  # how long `close` waits for queued messages to go out
#: apprise's message type (its NotifyType values) of each severity and of each run end
SEVERITY_TYPES = {Severity.INFO: "info", Severity.WARNING: "warning", Severity.ERROR: "failure",
                  Severity.CRITICAL: "failure"}
RUN_END_TYPES = {RunStatus.COMPLETED: "success", RunStatus.ABORTED: "warning",
                 RunStatus.INTERRUPTED: "warning", RunStatus.FAILED: "failure"}


@dataclass(frozen=True)
class DeliveryFailure:
    """A message that did not reach a service, and apprise's reason."""

    run_id: int | None
    title: str
    reason: str


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
        self._queue: queue.Queue[tuple[int | None, str, str, str] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self.failures: list[DeliveryFailure] = []  # appended by the worker thread

    def __call__(self, event: Event) -> None:
        """The subscriber: alert-worthy notices as they happen, and each run's summary."""
        if isinstance(event, Notice):
            if event.kind in ALERT_KINDS and event.severity in ALERT_SEVERITIES:
                self._post(event.run_id, f"run {event.run_id}: {event.kind.value}",
                           event.message, SEVERITY_TYPES[event.severity])
        elif isinstance(event, RunSummary):
            title, body, _ = run_message(event.run_id, event.cell, event.status, event.reason,
                                         event.results)
            self._post(event.run_id, title, body, RUN_END_TYPES.get(event.status, "info"))

    def _post(self, run_id: int | None, title: str, body: str, notify_type: str) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._deliver, name="labctl-notify",
                                            daemon=True)
            self._worker.start()
        self._queue.put((run_id, title, body, notify_type))

    def _deliver(self) -> None:
        while (item := self._queue.get()) is not None:
            run_id, title, body, notify_type = item
            reason = self.send(title, body, notify_type)
            if reason is not None:
                self.failures.append(DeliveryFailure(run_id, title, reason))

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Send what is queued (waiting at most `timeout_s`), then stop the worker."""
        if self._worker is None:
            return
        self._queue.put(None)
        self._worker.join(timeout_s)
        if self._worker.is_alive():
            pending = self._queue.qsize()
            log.warning("notifications still pending after %.0f s; giving up", timeout_s)
            self.failures.append(DeliveryFailure(
                None, f"{pending + 1} message(s)", f"still being delivered after {timeout_s:.0f}"
                " s when labctl exited (the service did not answer in time)"))
        self._worker = None

    def send(self, title: str, body: str, notify_type: str = "info") -> str | None:
        """Deliver one message now; None when delivered, else apprise's reason."""
        import apprise

        prefix = f"[labctl {self.station}] " if self.station else "[labctl] "
        try:
            with apprise.LogCapture(level=logging.DEBUG, fmt="%(levelname)s %(message)s") as said:
                ok = self._apprise.notify(title=prefix + title, body=body,
                                          notify_type=apprise.NotifyType(notify_type))
                text = said.getvalue()
        except Exception as exc:  # a notification service must never take a run down
            log.warning("notification failed: %s", title, exc_info=True)
            return f"{type(exc).__name__}: {exc}"
        if ok:
            return None
        reason = _reason(text)
        log.warning("notification not delivered: %s: %s", title, reason)
        return reason


def _reason(log_text: str) -> str:
    """What apprise said about a failed delivery: its warnings and the exceptions it met."""
    lines = [ln.partition(" ")[2] for ln in log_text.splitlines()
             if ln.startswith(("WARNING ", "ERROR ")) or "Exception" in ln]
    return "; ".join(dict.fromkeys(lines)) or "the service refused the message"


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
