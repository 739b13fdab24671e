"""Run traces kept as min/max buckets in the dashboard's memory, extended with new points only.

The database reduces a run to buckets once (`labctl.recording.live_reads.run_trace`, a GROUP BY
over the run's points). Reading every point of a 7-day run takes seconds on a lab PC, so doing
it on every page load would make long runs slow to open; instead each run's buckets are kept
here, and each later load first adds only the points recorded since (one indexed query from the
newest point id it has). When a growing run fills twice the buckets asked for, neighbouring
buckets are merged pairwise (the bucket width doubles), which keeps min and max exact: a
bucket's min is the min of its two halves'.

The first load of a run after the server starts still reads all of it; `warm` does that in the
background at start-up for the runs the overview lists, so that by the time someone opens one
it is ready.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from labctl.recording.live_reads import Trace, points_after, run_trace

log = logging.getLogger(__name__)

#: per bucket: t min, t max, E min, E max, I min, I max, P min, P max
_LO = (0, 2, 4, 6)
_HI = (1, 3, 5, 7)


class RunTrace:
    """One run's buckets: dense arrays indexed by bucket number from the run's start."""

    def __init__(self, trace: Trace, target: int) -> None:
        self.target = target
        self.t0 = trace.t0
        self.width = trace.bucket_s or 1.0
        size = (max(trace.index) + 1) if trace.index else 1
        self.stats = np.full((8, size), np.nan)
        self.count = np.zeros(size, dtype=np.int64)
        if trace.index:
            idx = np.asarray(trace.index)
            cols = (trace.t_lo, trace.t_hi, trace.E_lo, trace.E_hi, trace.I_lo, trace.I_hi,
                    trace.P_lo, trace.P_hi)
            for row, values in enumerate(cols):
                self.stats[row, idx] = np.array(values, dtype=float)
            self.count[idx] = trace.count
        self.last_point_id = trace.last_point_id
        self.empty = not trace.index
        self.lock = threading.Lock()
        self.encoded: tuple[int, bytes] | None = None  # (last point id, JSON) once asked

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        """Fold points (id, t_s, E_V, I_mA, P_MPa) recorded after `last_point_id` in."""
        if not rows:
            return
        arr = np.array(rows, dtype=float)
        t = arr[:, 1]
        b = np.maximum(np.floor((t - self.t0) / self.width), 0).astype(np.int64)
        while b.max() >= 2 * self.target:
            self._halve()
            b //= 2
        if b.max() >= self.count.size:
            grow = int(b.max()) + 1 - self.count.size
            self.stats = np.concatenate([self.stats, np.full((8, grow), np.nan)], axis=1)
            self.count = np.concatenate([self.count, np.zeros(grow, dtype=np.int64)])
        for lo, hi, col in zip(_LO, _HI, (1, 2, 3, 4)):
            np.fmin.at(self.stats[lo], b, arr[:, col])
            np.fmax.at(self.stats[hi], b, arr[:, col])
        np.add.at(self.count, b, 1)
        self.last_point_id = int(arr[-1, 0])

    def _halve(self) -> None:
        """Merge buckets 2k and 2k+1 into k: the width doubles, min and max stay exact."""
        if self.count.size % 2:
            self.stats = np.concatenate([self.stats, np.full((8, 1), np.nan)], axis=1)
            self.count = np.concatenate([self.count, np.zeros(1, dtype=np.int64)])
        pairs = self.stats.reshape(8, -1, 2)
        merged = np.empty((8, pairs.shape[1]))
        merged[list(_LO)] = np.fmin(pairs[list(_LO), :, 0], pairs[list(_LO), :, 1])
        merged[list(_HI)] = np.fmax(pairs[list(_HI), :, 0], pairs[list(_HI), :, 1])
        self.stats = merged
        self.count = self.count.reshape(-1, 2).sum(axis=1)
        self.width *= 2

    def as_json(self) -> dict[str, Any]:
        """The non-empty buckets, in the shape of `live_reads.Trace` (NaN as null)."""
        keep = self.count > 0
        out: dict[str, Any] = {"bucket_s": self.width, "t0": self.t0,
                               "n_points": int(self.count.sum()),
                               "last_point_id": self.last_point_id}
        names = ("t_lo", "t_hi", "E_lo", "E_hi", "I_lo", "I_hi", "P_lo", "P_hi")
        for row, name in enumerate(names):
            values = self.stats[row, keep]
            out[name] = [None if v != v else v for v in values.tolist()]
        return out


class TraceCache:
    """RunTrace per run, at most `max_runs` of them (least recently used dropped first)."""

    def __init__(self, engine: Any, target: int, max_runs: int = 256) -> None:
        self.engine = engine
        self.target = target
        self.max_runs = max_runs
        self._runs: OrderedDict[int, RunTrace] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[int, threading.Lock] = {}

    def trace(self, run_id: int) -> dict[str, Any]:
        """The run's trace as of now (blocking: call from a worker thread)."""
        return json.loads(self.trace_json(run_id))

    def trace_json(self, run_id: int) -> bytes:
        """The run's trace as of now, encoded; the encoding is reused while nothing is new."""
        entry = self._entry(run_id)
        with entry.lock:
            while True:
                rows = points_after(self.engine, run_id, entry.last_point_id)
                entry.add(rows)
                if len(rows) < 100_000:
                    break
            if entry.encoded is None or entry.encoded[0] != entry.last_point_id:
                entry.encoded = (entry.last_point_id,
                                 json.dumps(entry.as_json(), separators=(",", ":")).encode())
            return entry.encoded[1]

    def _entry(self, run_id: int) -> RunTrace:
        with self._lock:
            entry = self._runs.get(run_id)
            if entry is not None and not entry.empty:
                self._runs.move_to_end(run_id)
                return entry
            building = self._building.setdefault(run_id, threading.Lock())
        with building:  # one full read per run, however many pages ask at once
            with self._lock:
                entry = self._runs.get(run_id)
                if entry is not None and not entry.empty:
                    return entry
            # a run without points yet is read again next time (its width is not known)
            entry = RunTrace(run_trace(self.engine, run_id, self.target), self.target)
            with self._lock:
                self._runs[run_id] = entry
                self._runs.move_to_end(run_id)
                while len(self._runs) > self.max_runs:
                    self._runs.popitem(last=False)
                self._building.pop(run_id, None)
        return entry

    def warm(self, run_ids: list[int]) -> threading.Thread:
        """Build the given runs' traces in a background thread (start-up)."""
        def build() -> None:
            for run_id in run_ids:
                try:
                    self.trace(run_id)
                except Exception as exc:  # a display aid: never stop the server for it
                    log.warning("could not prepare the trace of run %s: %s", run_id, exc)

        thread = threading.Thread(target=build, name="trace warm-up", daemon=True)
        thread.start()
        return thread
