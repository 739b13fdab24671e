"""Live progress for people at a terminal: step, elapsed time, V, I, Q per running channel.

A subscriber of the engine's events (`labctl.engine.events`): it keeps the latest values per run
and redraws at most every REFRESH_S. Only shown on a terminal; with --json or when output is
piped, nothing is drawn, so stdout stays machine-readable.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from labctl.engine.events import Event, Points, RunStarted, StepStarted

REFRESH_S = 0.25


class LiveProgress:
    def __init__(self, console: Console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self.state: dict[int, dict[str, Any]] = {}
        self.steps: dict[int, str] = {}  # run id -> name of its innermost running step
        self.estimated_s: float | None = None  # from the plan; adaptive steps make it a guess
        self._live: Live | None = None
        self._last = 0.0

    def __enter__(self) -> LiveProgress:
        if self.enabled:
            self._live = Live(self._table(), console=self.console, transient=False,
                              auto_refresh=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table(), refresh=True)
            self._live.__exit__(None, None, None)

    def __call__(self, event: Event) -> None:
        """The subscriber: only run starts, step starts and points matter here."""
        if isinstance(event, Points):
            self.state[event.run_id] = {
                "step": self.steps.get(event.run_id, ""), "t_s": float(event.t_s[-1]),
                "E_V": float(event.E_V[-1]), "I_mA": float(event.I_mA[-1]),
                "Q_mAh": float(event.Q_mAh[-1]),
            }
            self._refresh()
        elif isinstance(event, StepStarted):
            self.steps[event.run_id] = event.name
        elif isinstance(event, RunStarted):
            self.state[event.run_id] = {}
            if event.estimated_s is not None:
                self.estimated_s = max(self.estimated_s or 0.0, event.estimated_s)
            if self.enabled:
                self.console.print(f"run {event.run_id} started")

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._live is not None and now - self._last >= REFRESH_S:
            self._last = now
            self._live.update(self._table(), refresh=True)

    def _table(self) -> Table:
        t = Table("run", "step", "elapsed", "estimated", "E (V)", "I (mA)", "Q (mAh)")
        est = "?" if self.estimated_s is None else _hms(self.estimated_s)
        for rid, s in self.state.items():
            if not s:
                t.add_row(str(rid), "", "", est, "", "", "")
                continue
            t.add_row(str(rid), s.get("step", ""), _hms(s["t_s"]), est, f"{s['E_V']:.4f}",
                      f"{s['I_mA']:.4f}", f"{s['Q_mAh']:.5f}")
        return t


def _hms(seconds: float) -> str:
    h, rem = divmod(int(seconds), 3600)
    return f"{h}h{rem // 60:02d}m{rem % 60:02d}s"
