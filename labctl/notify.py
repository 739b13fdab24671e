"""Notifications for unattended runs: tell a person when a run ends or something trips.

Overnight campaigns have nobody watching, so labctl can push a short message to wherever the lab
looks — e-mail, Slack, Teams, Matrix, ntfy, a plain webhook — through apprise URLs
(https://github.com/caronc/apprise/wiki), e.g. `--notify mailto://user:pass@lab.org` or
`--notify json://monitor.lab.local/labctl`. What is sent: every run's end (status, reason, key
results) and, as they happen, limit and detector trips, instrument faults and safe-state
actions. A notification that cannot be delivered is logged and never affects the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

#: event kinds worth waking someone for
ALERT_KINDS = frozenset({"limit", "detector", "fault", "safe_state"})


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

    def send(self, title: str, body: str, failure: bool = False) -> None:
        import apprise

        kind = apprise.NotifyType.FAILURE if failure else apprise.NotifyType.INFO
        prefix = f"[labctl {self.station}] " if self.station else "[labctl] "
        try:
            if not self._apprise.notify(title=prefix + title, body=body, notify_type=kind):
                log.warning("notification not delivered: %s", title)
        except Exception:  # a notification service must never take a run down
            log.warning("notification failed: %s", title, exc_info=True)

    def on_event(self, run_id: int, kind: str, message: str, severity: str) -> None:
        """Recorder observer: forward alert-worthy events as they are recorded."""
        if kind in ALERT_KINDS and severity in ("warning", "error", "critical"):
            self.send(f"run {run_id}: {kind}", message, failure=severity != "warning")

    def run_ended(self, run_id: int, cell: str, status: str, reason: str,
                  results: dict[str, float | str | None]) -> None:
        lines = [f"cell {cell}: {status} ({reason})"]
        lines += [f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                  for k, v in results.items() if v is not None]
        self.send(f"run {run_id} {status}", "\n".join(lines), failure=status != "completed")
