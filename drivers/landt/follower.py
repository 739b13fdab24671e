"""Following a LANDT tester's live exports: file-based integration, because nothing else is honest.

**LANDT publishes no control protocol.** No serial/TCP framing, SDK or open-source control
driver exists; LAND's only programming interface, LANDCex.dll, reads data files. So labctl
**cannot start, stop or program a LANDT channel**, and does not pretend to: `start`, `stop` and
`load` raise `NotSupported`. The division of labour is:

1. the operator enters the schedule in LAND's software (LANDdt / LAND Monitor) and presses start,
   with LANDdt set to auto-export each channel's record table (CSV/TXT) into a watched folder;
2. `LandtTester` watches that folder, parses each export *incrementally* with
   `labctl_drivers.landt.formats.LandtRecordParser` (only bytes added since the last poll are
   parsed; a rewritten or truncated file is detected and re-read from the start), and exposes
   per-channel status and new data through `poll()` in SI units (`PointBatch`), plus every row
   so far as typed `LandtRecords` through `export()`;
3. labctl records and analyses the data; comparing the recorded steps with the intended recipe
   is the way to *prove* what ran, since we cannot *make* it run.

Channel state is inferred, not reported: a channel whose export grew within `stale_after_s`
(measured on the injected clock) is RUNNING, otherwise IDLE. LAND's exports carry no "finished"
flag, so "IDLE" means "no new data lately", which the UI should word as such.

A channel is identified by its export file's stem (LANDdt names exports after the battery/channel).
"""

from __future__ import annotations

import codecs
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labctl_drivers.clock import Clock, WallClock
from labctl_drivers.errors import Unsupported
from labctl_drivers.interfaces import ChannelState, PointBatch
from labctl_drivers.landt.formats import LandtExport, LandtRecordParser, export_decoder


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


_NO_CONTROL = (
    "LANDT has no public control protocol: start/stop/program the channel in LAND's own software "
    "(LANDdt); labctl only records and analyses its exports."
)


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
    reset: bool = False  # the export was rewritten differently/truncated: data re-read from row 0
    last_data_at: float | None = None  # clock time new rows were last seen
    elapsed_s: float = 0.0  # tester's TestTime of the last row


@dataclass
class _Watch:
    path: Path
    parser: LandtRecordParser
    offset: int = 0
    head: bytes = b""
    delivered: int = 0
    decoder: codecs.IncrementalDecoder | None = None
    last_data_at: float | None = None
    pending_reset: bool = False


class LandtTester:
    """Follows LANDdt auto-export files in `folder`; one channel per export file."""

    capabilities = CyclerCapability.READ_DATA | CyclerCapability.LIVE_DATA

    def __init__(
        self,
        folder: str | Path,
        clock: Clock | None = None,
        patterns: tuple[str, ...] = ("*.csv", "*.txt", "*.tsv"),
        stale_after_s: float = 120.0,
        name: str = "LANDT",
        before_read: Callable[[], None] | None = None,
        simulated: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.clock: Clock = clock or WallClock()
        self.patterns = patterns
        self.stale_after_s = float(stale_after_s)
        self.name = name
        self.simulated = simulated
        self._before_read = before_read
        self._watches: dict[str, _Watch] = {}

    @classmethod
    def for_simulator(cls, sim: object, **kwargs: object) -> LandtTester:
        """A tester on a `SimulatedLandt`'s folder that lets the simulator catch up before reads.

        The reading code path is the real one; only the exporter is simulated.
        """
        return cls(
            sim.folder,
            clock=sim.clock,
            before_read=sim.update,
            simulated=True,  # type: ignore[attr-defined]
            **kwargs,  # type: ignore[arg-type]
        )

    # ---- control: not possible ---------------------------------------------------------------
    def start(self, channel: str, *args: object) -> None:
        raise NotSupported(_NO_CONTROL)

    def stop(self, channel: str) -> None:
        raise NotSupported(_NO_CONTROL)

    def load(self, channel: str, *args: object) -> None:
        raise NotSupported(_NO_CONTROL)

    # ---- discovery ---------------------------------------------------------------------------
    def scan(self) -> list[str]:
        """Find export files (new channels appear when LANDdt first writes them)."""
        if self._before_read is not None:
            self._before_read()
        for pattern in self.patterns:
            for p in sorted(self.folder.glob(pattern)):
                if p.is_file() and p.stem not in self._watches:
                    self._watches[p.stem] = _Watch(p, LandtRecordParser(p))
        return self.channels

    @property
    def channels(self) -> list[str]:
        return sorted(self._watches)

    # ---- data ----------------------------------------------------------------------------------
    def poll(self, channel: str) -> LandtReading:
        """New rows of `channel` since the previous poll, and the inferred channel state."""
        if self._before_read is not None:
            self._before_read()
        if channel not in self._watches:
            self.scan()
        if channel not in self._watches:
            raise KeyError(f"no LANDT export for channel {channel!r} in {self.folder}")
        w = self._watches[channel]
        self._read_new(w)
        now = self.clock.now()
        reset, w.pending_reset = w.pending_reset, False
        new = w.parser.records(start=w.delivered)
        n_new = len(new)
        if n_new:
            w.last_data_at = now
        w.delivered = w.parser.n_rows
        running = w.last_data_at is not None and now - w.last_data_at <= self.stale_after_s
        reading = LandtReading(
            channel=channel,
            state=ChannelState.RUNNING if running else ChannelState.IDLE,
            total_rows=w.parser.n_rows,
            reset=reset,
            last_data_at=w.last_data_at,
        )
        if n_new:
            reading.points = PointBatch(new.t_s, new.E_V, new.I_mA * 1e-3)
            reading.cycle = new.cycle
            reading.step = new.step
            reading.step_state = new.state
        if w.parser.n_rows:
            reading.elapsed_s = float(w.parser.records(start=w.parser.n_rows - 1).t_s[0])
        return reading

    def poll_all(self) -> dict[str, LandtReading]:
        self.scan()
        return {ch: self.poll(ch) for ch in self.channels}

    def export(self, channel: str) -> LandtExport:
        """Everything recorded on `channel` so far: header, preamble and every row.

        Rows only, in the export's units: splitting them into steps and signing the capacity is
        the importer's job (`labctl.importers.landt.run_from_export`), above this layer.
        """
        w = self._watches[channel]
        self._read_new(w)
        return w.parser.export()

    def _read_new(self, w: _Watch) -> None:
        try:
            size = w.path.stat().st_size
        except FileNotFoundError:
            return  # LANDdt may delete and re-create during export; keep what we have
        with w.path.open("rb") as f:
            head = f.read(min(len(w.head), size)) if w.head else b""
            if size < w.offset or (w.head and head != w.head):
                # truncated or rewritten with different content: start over
                w.parser = LandtRecordParser(w.path)
                w.offset, w.head, w.delivered, w.decoder = 0, b"", 0, None
                w.pending_reset = True
            f.seek(w.offset)
            data = f.read(size - w.offset)
        if not data:
            return
        if not w.head:
            w.head = data[:256]
        if w.decoder is None:
            w.decoder = export_decoder(data)
        w.offset += len(data)
        w.parser.feed_text(w.decoder.decode(data))
