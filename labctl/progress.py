"""Live progress for people at a terminal: step, elapsed time, V, I, Q per running channel.

Only shown on a terminal; with --json or when output is piped, nothing is drawn, so stdout stays
machine-readable.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy import Engine

REFRESH_S = 0.25


class LiveProgress:
    def __init__(self, console: Console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self.state: dict[int, dict[str, Any]] = {}
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

    def start(self, run_ids: list[int], engine: Engine) -> None:
        for rid in run_ids:
            self.state[rid] = {}
        if self.enabled:
            self.console.print(f"runs {', '.join(map(str, run_ids))} started")

    def set_estimate(self, seconds: float) -> None:
        self.estimated_s = seconds

    def update(self, run_id: int, info: dict[str, Any]) -> None:
        self.state[run_id] = info
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
