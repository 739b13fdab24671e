"""Following a LANDT tester's live exports: file-based integration, because nothing else is honest.

**LANDT publishes no control protocol.** No serial/TCP framing, SDK or open-source control
driver exists; LAND's only programming interface, LANDCex.dll, reads data files. So labctl
**cannot start, stop or program a LANDT channel**, and does not pretend to: `start`, `stop` and
`load` raise `NotSupported`. The division of labour is:

1. the operator enters the step program in LAND's software (LANDdt / LAND Monitor) and presses
   start, with LANDdt set to export the channel's record table into a watched folder;
2. `ExportFollower` follows every export file of one channel (a glob pattern, so rotated
   continuation files belong to the same channel) and hands out each record row exactly once;
3. labctl records and analyses the rows and compares them with the program it asked for
   (`labctl_drivers.landt.check`), since it cannot *make* LAND run it.

How rows are delivered exactly once, whatever LANDdt does to its files:

* **Growth** of a text export is read incrementally from the last byte offset; bytes are cut
  into lines at ``\\n`` and each complete line is decoded on its own
  (`labctl_drivers.landt.formats.decode_line`).
* **A last line without a line end** is held back while the file may still be written, and
  parsed once the file has not changed for `settle_s` on the clock (an export that ends without
  a final newline is complete then).
* **Replacement** (a new file at the same path: a new inode) is recognised by content: if the
  new file starts with every byte read so far, reading simply goes on from the old offset;
  otherwise it is re-read from the start.
* **Truncation** (the file shrank, or the bytes around the old offset changed) re-reads it
  from the start.
* **Rotation** (the file renamed aside and a new one started): files are tracked by inode, so
  the renamed file keeps its read position and the new one is read from its start.
* **Spreadsheets** (``.xlsx``) cannot be read from an offset; a changed workbook is re-read.

Every re-read is deduplicated by the row's key -- LAND's record number, else its test time,
which both only grow within one test -- against what was already delivered. A re-read whose
already-delivered rows differ from what was delivered (the operator started a *different* test
into the same file) is a new test: the follower says so (`FollowedRows.reset`) and delivers
that test's rows from its first.

Channel state is inferred, not reported: a channel whose export grew within `stale_after_s`
is RUNNING, otherwise IDLE. LAND's exports carry no "finished" flag, so "IDLE" means "no new
data lately", which the UI should word as such.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labctl_drivers.clock import Clock, WallClock
from labctl_drivers.errors import Unsupported
from labctl_drivers.interfaces import ChannelState, PointBatch
from labctl_drivers.landt.formats import (
    LandtExport,
    LandtRecordParser,
    LandtRecords,
    decode_line,
    read_xlsx_records,
)


class NotSupported(Unsupported):
    """The instrument offers no way to do this (here: no public LANDT control protocol).

    An `Unsupported` so callers that catch `InstrumentError` (the drivers' one root) see it too.
    """


class CyclerCapability(enum.Flag):
    READ_DATA = enum.auto()
    LIVE_DATA = enum.auto()
    START_STOP = enum.auto()
    UPLOAD_PROGRAM = enum.auto()
    READ_PROGRAM = enum.auto()


NO_CONTROL = (
    "LANDT has no public control protocol: start/stop/program the channel in LAND's own software "
    "(LANDdt); labctl only records and analyses its exports."
)
TEXT_PATTERNS = ("*.csv", "*.txt", "*.tsv")
_SPREADSHEET = (".xlsx", ".xlsm")
_FINGERPRINT = 64  # bytes before the read offset that must be unchanged for growth to be growth
_E_TOLERANCE_V = 1e-6  # a re-read row whose voltage differs more is a different test


@dataclass
class FollowedRows:
    """The rows one poll of a channel's exports found, in order, each delivered exactly once."""

    records: LandtRecords
    reset: bool = False  # a different test replaced the export: `records` start that test
    state: ChannelState = ChannelState.IDLE
    last_data_at: float | None = None
    total_rows: int = 0


@dataclass
class _File:
    """Read state of one export file (one inode)."""

    path: Path
    parser: LandtRecordParser
    offset: int = 0
    pending: bytes = b""  # bytes of a line whose end has not been seen
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)  # of bytes[:offset]
    fingerprint: bytes = b""  # bytes[offset - _FINGERPRINT:offset]
    head: bytes = b""  # bytes[:_FINGERPRINT]
    stat_key: tuple[int, int] = (-1, -1)  # (size, mtime_ns) when last read
    unchanged_since: float | None = None
    taken: int = 0  # parser rows already handed to the merge


def _row_keys(rec: LandtRecords) -> np.ndarray:
    """Record number where the export has one, else test time."""
    return rec.record if np.isfinite(rec.record).all() and len(rec) else rec.t_s


def _concat(parts: list[LandtRecords]) -> LandtRecords:
    if not parts:
        return LandtRecords.empty()
    fields = LandtRecords.__dataclass_fields__
    return LandtRecords(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields})


def _take(rec: LandtRecords, index: np.ndarray) -> LandtRecords:
    fields = LandtRecords.__dataclass_fields__
    return LandtRecords(**{f: getattr(rec, f)[index] for f in fields})


class ExportFollower:
    """Follows one LANDT channel: every export file in `folder` matching `pattern`."""

    def __init__(self, folder: str | Path, pattern: str, clock: Clock | None = None,
                 settle_s: float = 30.0, stale_after_s: float = 120.0,
                 before_read: Callable[[], None] | None = None) -> None:
        self.folder = Path(folder)
        self.pattern = pattern
        self.clock: Clock = clock or WallClock()
        self.settle_s = float(settle_s)
        self.stale_after_s = float(stale_after_s)
        self._before_read = before_read
        self._files: dict[tuple[int, int], _File] = {}
        self._keys: list[float] = []  # keys delivered, in order
        self._E: list[float] = []  # their voltages, to tell a re-read from a different test
        self.last_data_at: float | None = None

    @property
    def delivered(self) -> int:
        return len(self._keys)

    def paths(self) -> list[Path]:
        return sorted(p for p in self.folder.glob(self.pattern) if p.is_file())

    def poll(self) -> FollowedRows:
        """Rows not delivered before, from every export file of the channel."""
        if self._before_read is not None:
            self._before_read()
        now = self.clock.now()
        seen: dict[tuple[int, int], _File] = {}
        parts: list[LandtRecords] = []
        for path in self.paths():
            try:
                st = path.stat()
            except FileNotFoundError:
                continue  # LANDdt may delete and re-create during export; keep what we have
            ident = (st.st_dev, st.st_ino)
            f = self._files.get(ident) or self._adopt(path, st.st_size)
            f.path = path
            seen[ident] = f
            parts.append(self._read(f, (st.st_size, st.st_mtime_ns), now))
        self._files = seen
        return self._merge(parts, now)

    # ---- reading one file ----------------------------------------------------------------
    def _adopt(self, path: Path, size: int) -> _File:
        """A new inode: the replacement of a file read before if it starts with its bytes."""
        for ident, old in list(self._files.items()):
            if old.path != path or old.path.suffix.lower() in _SPREADSHEET:
                continue
            if size >= old.offset and self._prefix_digest(path, old.offset) == old.digest.digest():
                del self._files[ident]
                old.stat_key = (-1, -1)
                return old
        return _File(path, LandtRecordParser(path))

    @staticmethod
    def _prefix_digest(path: Path, n: int) -> bytes:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while n > 0:
                block = fh.read(min(n, 1 << 20))
                if not block:
                    break
                h.update(block)
                n -= len(block)
        return h.digest()

    def _read(self, f: _File, stat_key: tuple[int, int], now: float) -> LandtRecords:
        if stat_key != f.stat_key:
            f.unchanged_since = now
            if f.path.suffix.lower() in _SPREADSHEET:
                f.parser, f.taken = read_xlsx_records(f.path), 0
            else:
                self._read_text(f, stat_key[0])
            f.stat_key = stat_key
        elif (f.pending.strip() and f.unchanged_since is not None
              and now - f.unchanged_since >= self.settle_s):
            # a last line without its line end, unchanged for settle_s: the export is complete
            line, f.pending = f.pending, b""
            f.parser.feed_lines([decode_line(line)])
            self._consumed(f, line)
        new = f.parser.records(start=f.taken)
        f.taken = f.parser.n_rows
        return new

    def _read_text(self, f: _File, size: int) -> None:
        with f.path.open("rb") as fh:
            if f.offset and not self._continues(fh, f, size):
                f.parser = LandtRecordParser(f.path)
                f.offset, f.pending, f.taken, f.head = 0, b"", 0, b""
                f.digest = hashlib.sha256()
            fh.seek(f.offset + len(f.pending))
            data = fh.read(size - f.offset - len(f.pending))
        if not f.head:
            f.head = (f.pending + data)[:_FINGERPRINT]
        lines = (f.pending + data).split(b"\n")
        f.pending = lines.pop()
        if lines:
            f.parser.feed_lines([decode_line(ln) for ln in lines])
            self._consumed(f, b"\n".join(lines) + b"\n")

    @staticmethod
    def _continues(fh: object, f: _File, size: int) -> bool:
        """The file still holds, unchanged, what was read of it (it only grew)."""
        if size < f.offset + len(f.pending):
            return False
        fh.seek(0)  # type: ignore[attr-defined]
        if fh.read(len(f.head)) != f.head:  # type: ignore[attr-defined]
            return False
        n = len(f.fingerprint)
        fh.seek(f.offset - n)  # type: ignore[attr-defined]
        return bool(fh.read(n + len(f.pending)) == f.fingerprint + f.pending)  # type: ignore[attr-defined]

    @staticmethod
    def _consumed(f: _File, data: bytes) -> None:
        f.digest.update(data)
        f.offset += len(data)
        f.fingerprint = (f.fingerprint + data)[-_FINGERPRINT:]

    # ---- merging files -------------------------------------------------------------------
    def _merge(self, parts: list[LandtRecords], now: float) -> FollowedRows:
        rows = _concat([p for p in parts if len(p)])
        reset = False
        if len(rows):
            keys = _row_keys(rows)
            order = np.argsort(keys, kind="stable")
            rows, keys = _take(rows, order), keys[order]
            first = np.ones(len(keys), dtype=bool)
            first[1:] = keys[1:] != keys[:-1]
            rows, keys = _take(rows, np.flatnonzero(first)), keys[first]
            old = keys <= (self._keys[-1] if self._keys else -np.inf)
            if old.any() and not self._same_as_delivered(keys[old], rows.E_V[old]):
                reset = True  # a different test: start over with its rows
                self._keys, self._E = [], []
                old[:] = False
            rows, keys = _take(rows, np.flatnonzero(~old)), keys[~old]
            self._keys.extend(keys.tolist())
            self._E.extend(rows.E_V.tolist())
        if len(rows):
            self.last_data_at = now
        running = self.last_data_at is not None and now - self.last_data_at <= self.stale_after_s
        return FollowedRows(rows, reset, ChannelState.RUNNING if running else ChannelState.IDLE,
                            self.last_data_at, len(self._keys))

    def _same_as_delivered(self, keys: np.ndarray, E_V: np.ndarray) -> bool:
        known = np.asarray(self._keys)
        idx = np.searchsorted(known, keys)
        if (idx >= len(known)).any() or not np.array_equal(known[idx], keys):
            return False
        E_known = np.asarray(self._E)[idx]
        both = np.isfinite(E_known) & np.isfinite(E_V)
        return bool(np.all(np.abs(E_known[both] - E_V[both]) <= _E_TOLERANCE_V)
                    and np.array_equal(np.isfinite(E_known), np.isfinite(E_V)))


@dataclass
class LandtReading:
    """What one poll of a LANDT channel returns (new rows since the previous poll, SI units)."""

    channel: str
    state: ChannelState
    points: PointBatch = field(default_factory=PointBatch.empty)
    cycle: np.ndarray = field(default_factory=lambda: np.empty(0))
    step: np.ndarray = field(default_factory=lambda: np.empty(0))
    step_state: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    total_rows: int = 0
    reset: bool = False  # a different test replaced the export: data start again from its row 0
    last_data_at: float | None = None  # clock time new rows were last seen
    elapsed_s: float = 0.0  # tester's TestTime of the last row


class LandtTester:
    """Follows LANDdt exports in `folder`; one channel per export file (named by its stem)."""

    capabilities = CyclerCapability.READ_DATA | CyclerCapability.LIVE_DATA

    def __init__(
        self,
        folder: str | Path,
        clock: Clock | None = None,
        patterns: tuple[str, ...] = (*TEXT_PATTERNS, "*.xlsx"),
        stale_after_s: float = 120.0,
        name: str = "LANDT",
        before_read: Callable[[], None] | None = None,
        simulated: bool = False,
        settle_s: float = 30.0,
    ) -> None:
        self.folder = Path(folder)
        self.clock: Clock = clock or WallClock()
        self.patterns = patterns
        self.stale_after_s = float(stale_after_s)
        self.settle_s = float(settle_s)
        self.name = name
        self.simulated = simulated
        self._before_read = before_read
        self._channels: dict[str, ExportFollower] = {}
        self._rows: dict[str, list[LandtRecords]] = {}
        self._last_t: dict[str, float] = {}

    @classmethod
    def for_simulator(cls, sim: object, **kwargs: object) -> LandtTester:
        """A tester on a `SimulatedLandt`'s folder that lets the simulator catch up before reads.

        The reading code path is the real one; only the exporter is simulated.
        """
        return cls(
            sim.folder,  # type: ignore[attr-defined]
            clock=sim.clock,  # type: ignore[attr-defined]
            before_read=sim.update,  # type: ignore[attr-defined]
            simulated=True,
            **kwargs,  # type: ignore[arg-type]
        )

    # ---- control: not possible ---------------------------------------------------------------
    def start(self, channel: str, *args: object) -> None:
        raise NotSupported(NO_CONTROL)

    def stop(self, channel: str) -> None:
        raise NotSupported(NO_CONTROL)

    def load(self, channel: str, *args: object) -> None:
        raise NotSupported(NO_CONTROL)

    # ---- discovery ---------------------------------------------------------------------------
    def scan(self) -> list[str]:
        """Find export files (new channels appear when LANDdt first writes them)."""
        if self._before_read is not None:
            self._before_read()
        for pattern in self.patterns:
            for p in sorted(self.folder.glob(pattern)):
                if p.is_file() and p.stem not in self._channels:
                    self._channels[p.stem] = ExportFollower(
                        self.folder, p.name, self.clock, self.settle_s, self.stale_after_s)
                    self._rows[p.stem] = []
        return self.channels

    @property
    def channels(self) -> list[str]:
        return sorted(self._channels)

    # ---- data ----------------------------------------------------------------------------------
    def poll(self, channel: str) -> LandtReading:
        """New rows of `channel` since the previous poll, and the inferred channel state."""
        if channel not in self._channels:
            self.scan()
        elif self._before_read is not None:
            self._before_read()
        if channel not in self._channels:
            raise KeyError(f"no LANDT export for channel {channel!r} in {self.folder}")
        got = self._channels[channel].poll()
        if got.reset:
            self._rows[channel] = []
        new = got.records
        if len(new):
            self._rows[channel].append(new)
            self._last_t[channel] = float(new.t_s[-1])
        reading = LandtReading(channel=channel, state=got.state, total_rows=got.total_rows,
                               reset=got.reset, last_data_at=got.last_data_at,
                               elapsed_s=self._last_t.get(channel, 0.0))
        if len(new):
            reading.points = PointBatch(new.t_s, new.E_V, new.I_mA * 1e-3)
            reading.cycle = new.cycle
            reading.step = new.step
            reading.step_state = new.state
        return reading

    def poll_all(self) -> dict[str, LandtReading]:
        self.scan()
        return {ch: self.poll(ch) for ch in self.channels}

    def export(self, channel: str) -> LandtExport:
        """Everything recorded on `channel` so far: header, preamble and every row.

        Rows only, in the export's units: splitting them into steps and signing the capacity is
        the importer's job (`labctl.importers.landt.run_from_export`), above this layer.
        """
        follower = self._channels[channel]
        self.poll(channel)
        f = next(iter(follower._files.values()))
        parsed = f.parser.export()
        rows = _concat(self._rows[channel])
        return LandtExport(parsed.source_path, parsed.delimiter, parsed.header, parsed.preamble,
                           parsed.unplaced_columns, rows)


def follower_for_simulator(sim: object, pattern: str, **kwargs: object) -> ExportFollower:
    """An `ExportFollower` on a simulator's folder that lets it catch up before each read."""
    return ExportFollower(sim.folder, pattern, clock=sim.clock,  # type: ignore[attr-defined]
                          before_read=sim.update, **kwargs)  # type: ignore[attr-defined,arg-type]


__all__ = [
    "NO_CONTROL",
    "CyclerCapability",
    "ExportFollower",
    "FollowedRows",
    "LandtReading",
    "LandtTester",
    "NotSupported",
    "follower_for_simulator",
]
