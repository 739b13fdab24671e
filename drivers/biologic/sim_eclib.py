"""`SimulatedEClib`: a simulated SP-300 behind the EC-Lab Development Package's DLL calls.

It implements `labctl_drivers.biologic.eclib.EClib`, so the real SP-300 adapter runs on top of it
unchanged: the adapter's technique translation and its data decoding execute in every simulated
run. The instrument side is the channel firmware of `sim_firmware.py`, which interprets the DLL
parameters as the SP-300 kernel does (EC-Lab Development Package user's guide v6.04) and
integrates each channel's cell of the digital twin (`attach_cell`).

Behaviour of the DLL and the instrument that is modelled here (guide §6 for the calls, §5.4 for
the error codes):

* Nothing runs in the background. Every call first brings every channel up to `clock.now()`
  (a `labctl_drivers.clock.Clock`: `VirtualClock` in tests and in-process simulation,
  `WallClock` when a server process hosts the instrument), so a channel left alone for hours
  has done, when next asked, exactly what the instrument would have done meanwhile.
* Connections: `connect` returns a new id every time (several PCs/processes may be connected);
  calls with an id that is not connected fail with -1 (ERR_GEN_NOTCONNECTED). `disconnect`
  releases an id and never stops a channel: the instrument keeps running when the PC lets go,
  which is what crash recovery relies on.
* `load_firmware` loads the kernel on channels that do not run it (or on all the given ones with
  `force`), and loading resets a channel: it stops, forgets its techniques and its data. Before
  the kernel is loaded, `load_technique` and `start_channel` fail with -308.
* `load_technique`: -13 on a running channel, -400 for an unknown technique file, -4 for an
  invalid parameter set; `first` starts a new sequence, further calls append, `last` closes it
  (-8, ERR_GEN_INVALIDCONF, when appending to no open sequence). `start_channel` runs the closed
  sequence from its first technique: -13 if running, -8 if the sequence is empty or not closed,
  -6 (ERR_GEN_FUNCTIONFAILED) if no cell is attached to the channel (a simulation wiring error:
  the message says so). `stop_channel` stops the sequence; buffered data stay readable.
* `get_data`: at most 1000 words, one technique execution and one process per call; the
  `CurrentValues` it returns (like `current_values`) describe the channel *now*: State,
  Ewe, I, TimeBase and ElapsedTime of the running (or last) technique execution, MemFilled =
  bytes still in memory after this read. Rows waiting in the buffer may belong to an earlier
  technique of a linked sequence, whose timebase is its own: DataInfo.TechniqueID says which.
  An empty read's DataInfo names the running (or last) technique: its index, id and StartTime.
* Faults (`labctl_drivers.sim.faults.FaultPlan.take`, operations "connect", "load", "start",
  "stop", "poll" for get_data/current_values) are enacted as the DLL shows them: a disconnect
  fails the call with -200 (-201 on connect) and drops every connection, so later calls get -1
  until `connect` succeeds again (the channels keep running); a timeout is -12 (function in
  progress, transient); a garbled reply is -404 (data corrupted) on a poll and -200 otherwise,
  and the data stay buffered; a dll_error is its own code. A failed call has no effect.

Extras for the simulated bench (not DLL calls): `attach_cell`, `advance` (integrate up to a
time, e.g. a cell fault's), `before_advance` (a hook called at the start of every DLL call, where
the bench applies due cell faults) and `channel_status`.

Every argument and result is an eclib.py dataclass, an int, float, str, list or numpy array, so
a server process can host a `SimulatedEClib` and forward the calls over a pipe.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from labctl_drivers.biologic.eclib import (
    DEVICE_SP300,
    FIRMWARE_KERNEL,
    ChannelInfo,
    CurrentValues,
    DataBuffer,
    DeviceInfo,
    DllChannelState,
    EccParam,
    EClibError,
)
from labctl_drivers.biologic.sim_firmware import (
    DEFAULT_MEMORY_WORDS,
    I_RANGE_FULL_SCALE_A,
    ChannelFirmware,
    SimChannelStatus,
    _frozen,
    parse_technique,
)
from labctl_drivers.clock import Clock
from labctl_drivers.sim.cell_model import CellModel
from labctl_drivers.sim.faults import FaultPlan

__all__ = ["SimChannelStatus", "SimulatedEClib"]

_EMPTY_WORDS = np.empty(0, dtype=np.uint32)
_EMPTY_WORDS.flags.writeable = False


#: How many of its last calls a simulated SP-300 keeps in its command log.
COMMAND_LOG_LENGTH = 10_000


class SimulatedEClib:
    """A simulated SP-300 (`EClib` protocol) whose channels run cells of the digital twin.

    `seed` (or `rng`, whose children are spawned per channel) feeds the instrument's own noise
    (EIS); the cells carry their own generators. `memory_words` bounds each channel's data
    memory. `address`, when given, is the only address `connect` answers on.
    """

    simulated = True

    def __init__(
        self,
        clock: Clock,
        *,
        seed: int | Sequence[int] = 0,
        rng: np.random.Generator | None = None,
        faults: FaultPlan | None = None,
        n_channels: int = 2,
        name: str = "sim-SP300-1",
        serial_number: int = 1001,
        memory_words: int = DEFAULT_MEMORY_WORDS,
        address: str | None = None,
    ) -> None:
        if not 1 <= n_channels <= 16:
            raise ValueError("an SP-300 chassis has 1..16 channels")
        self.clock = clock
        self.name = name
        self.serial_number = int(serial_number)
        self.address = address
        self.faults = faults or FaultPlan()
        rngs = (rng.spawn(n_channels) if rng is not None
                else [np.random.default_rng([*np.atleast_1d(seed).tolist(), k])
                      for k in range(n_channels)])
        self._channels = [ChannelFirmware(k, rngs[k], memory_words) for k in range(n_channels)]
        t = clock.now()
        for ch in self._channels:
            ch.cell_t = t
        self._empty: list[DataBuffer | None] = [None] * n_channels
        self._idns: set[int] = set()
        self._next_idn = 1
        self._lock = threading.RLock()
        #: Called at the start of every DLL call, before the channels are integrated (the bench
        #: applies due cell faults there, calling `advance(t_fault)` first if it wants them at
        #: their own time).
        self.before_advance: Callable[[], None] | None = None
        self._log: deque[tuple[float, str, int | None]] = deque(maxlen=COMMAND_LOG_LENGTH)

    # -- bench API -------------------------------------------------------------------------------
    @property
    def n_channels(self) -> int:
        return len(self._channels)

    def attach_cell(self, channel: int, cell: CellModel) -> None:
        """Wire `cell` to `channel` (its working and counter leads). The channel reads the
        cell's open-circuit voltage at once (a zero-length `cell.step(0.0, 0.0)`), so that a
        technique started before the clock moves knows its start potential."""
        with self._lock:
            self._channel(channel, "attach_cell").attach(cell, self.clock.now())

    def advance(self, until: float | None = None) -> None:
        """Integrate every channel up to `until` (default: now; never beyond now)."""
        with self._lock:
            now = self.clock.now()
            t = now if until is None else min(float(until), now)
            for ch in self._channels:
                ch.advance(t)

    def channel_status(self, channel: int) -> SimChannelStatus:
        """The channel's state as the instrument has it, integrated up to now."""
        with self._lock:
            now = self._sync()
            return self._channel(channel, "channel_status").status(now)

    # -- helpers ---------------------------------------------------------------------------------
    def _sync(self) -> float:
        if self.before_advance is not None:
            self.before_advance()
        now = self.clock.now()
        for ch in self._channels:
            if now > ch.cell_t:
                ch.advance(now)
        return now

    def command_log(self) -> list[tuple[float, str, int | None]]:
        """The instrument's own record of the calls it received, oldest first: (bench clock
        time, DLL function, channel or None). What reached the instrument, in which order
        (e.g. that a crashed run's channels were stopped before anything else)."""
        with self._lock:
            return list(self._log)

    def _channel(self, channel: int, function: str) -> ChannelFirmware:
        self._log.append((self.clock.now(), function, int(channel)))
        if not 0 <= int(channel) < len(self._channels):
            raise EClibError(-3, f"{function} (channel {channel})")
        return self._channels[int(channel)]

    def _check(self, idn: int, function: str) -> None:
        if idn not in self._idns:
            raise EClibError(-1, function)

    def _fault(self, operation: str, function: str) -> None:
        if not self.faults.faults:
            return
        f = self.faults.take(self.name, operation, self.clock.now())
        if f is None:
            return
        if f.kind == "disconnect":
            self._idns.clear()
            raise EClibError(-201 if operation == "connect" else -200, function)
        if f.kind == "timeout":
            raise EClibError(-12, function)
        if f.kind == "garbled":
            raise EClibError(-404 if operation == "poll" else -200, function)
        raise EClibError(f.code, function)

    # -- EClib -----------------------------------------------------------------------------------
    def connect(self, address: str, timeout_s: int) -> tuple[int, DeviceInfo]:
        with self._lock:
            self._log.append((self.clock.now(), "BL_Connect", None))
            self._fault("connect", "BL_Connect")
            if self.address is not None and address != self.address:
                raise EClibError(-201, f"BL_Connect (nothing answers at {address!r})")
            self._sync()
            idn = self._next_idn
            self._next_idn += 1
            self._idns.add(idn)
            n = len(self._channels)
            return idn, DeviceInfo(
                DeviceCode=DEVICE_SP300, RAMSize=64, CPU=1, NumberOfChannels=n,
                NumberOfSlots=n, FirmwareVersion=604, FirmwareDate_yyyy=2020,
                FirmwareDate_mm=1, FirmwareDate_dd=1, HTdisplayOn=0,
                NbOfConnectedPC=len(self._idns),
            )

    def disconnect(self, idn: int) -> None:
        with self._lock:
            self._check(idn, "BL_Disconnect")
            self._idns.discard(idn)

    def test_connection(self, idn: int) -> bool:
        with self._lock:
            return idn in self._idns

    def channels_plugged(self, idn: int) -> list[int]:
        with self._lock:
            self._check(idn, "BL_GetChannelsPlugged")
            return list(range(len(self._channels)))

    def channel_info(self, idn: int, channel: int) -> ChannelInfo:
        with self._lock:
            self._check(idn, "BL_GetChannelInfos")
            ch = self._channel(channel, "BL_GetChannelInfos")
            self._sync()
            return ChannelInfo(
                Channel=ch.index, BoardVersion=3, BoardSerialNumber=self.serial_number * 100
                + ch.index, FirmwareCode=FIRMWARE_KERNEL if ch.firmware_loaded else 0,
                FirmwareVersion=604 if ch.firmware_loaded else 0, XilinxVersion=1,
                AmpCode=0, NbAmps=0, Lcboard=0, Zboard=1,
                MemSize=4 * ch.memory.capacity_words, MemFilled=4 * ch.memory.words,
                State=int(DllChannelState.RUN if ch.running else DllChannelState.STOP),
                MaxIRange=len(I_RANGE_FULL_SCALE_A) - 1, MinIRange=0, MaxBandwidth=9,
                NbOfTechniques=len(ch.sequence),
            )

    def load_firmware(self, idn: int, channels: Sequence[int], force: bool = False) -> list[int]:
        with self._lock:
            self._check(idn, "BL_LoadFirmware")
            now = self._sync()
            results = []
            for c in channels:
                if not 0 <= int(c) < len(self._channels):
                    results.append(-3)
                    continue
                ch = self._channels[int(c)]
                if force or not ch.firmware_loaded:
                    ch.reset(now)
                results.append(0)
            return results

    def load_technique(
        self, idn: int, channel: int, ecc_file: str, params: Sequence[EccParam],
        first: bool, last: bool,
    ) -> None:
        fn = "BL_LoadTechnique"
        with self._lock:
            self._check(idn, fn)
            ch = self._channel(channel, fn)
            self._fault("load", fn)
            self._sync()
            if ch.running:
                raise EClibError(-13, f"{fn} (channel {channel} is running)")
            if not ch.firmware_loaded:
                raise EClibError(-308, f"{fn} (channel {channel} has no kernel loaded)")
            if not first and (ch.closed or not ch.sequence):
                raise EClibError(-8, f"{fn} (first=False but channel {channel} has no open "
                                     "sequence)")
            position = 0 if first else len(ch.sequence)
            prog = parse_technique(ecc_file, params, position)
            if first:
                ch.sequence = [prog]
            else:
                ch.sequence.append(prog)
            ch.closed = bool(last)

    def start_channel(self, idn: int, channel: int) -> None:
        fn = "BL_StartChannel"
        with self._lock:
            self._check(idn, fn)
            ch = self._channel(channel, fn)
            self._fault("start", fn)
            now = self._sync()
            if ch.running:
                raise EClibError(-13, f"{fn} (channel {channel} is running)")
            if not ch.firmware_loaded:
                raise EClibError(-308, f"{fn} (channel {channel} has no kernel loaded)")
            if not ch.sequence or not ch.closed:
                raise EClibError(-8, f"{fn} (channel {channel}: no closed technique sequence; "
                                     "load with last=True)")
            if ch.cell is None:
                raise EClibError(-6, f"{fn} (simulated channel {channel} has no cell attached: "
                                     "SimulatedEClib.attach_cell(channel, cell) first)")
            ch.start(now)

    def stop_channel(self, idn: int, channel: int) -> None:
        fn = "BL_StopChannel"
        with self._lock:
            self._check(idn, fn)
            ch = self._channel(channel, fn)
            self._fault("stop", fn)
            now = self._sync()
            ch.stop(now)

    def current_values(self, idn: int, channel: int) -> CurrentValues:
        fn = "BL_GetCurrentValues"
        with self._lock:
            self._check(idn, fn)
            ch = self._channel(channel, fn)
            self._fault("poll", fn)
            now = self._sync()
            return ch.current_values(now)

    def get_data(self, idn: int, channel: int) -> DataBuffer:
        with self._lock:  # the 1 s poll's hot path: checks inlined
            if idn not in self._idns:
                raise EClibError(-1, "BL_GetData")
            if not 0 <= channel < len(self._channels):
                raise EClibError(-3, f"BL_GetData (channel {channel})")
            ch = self._channels[channel]
            if self.faults.faults:
                self._fault("poll", "BL_GetData")
            now = self._sync()
            got = ch.memory.take()
            if got is None:
                info, values = ch.data_info(None, 0, 0), ch.current_values(now)
                last = self._empty[ch.index]
                if last is not None and last.info is info and last.values is values:
                    return last  # nothing changed since the previous empty read
                buf = self._empty[ch.index] = DataBuffer(_EMPTY_WORDS, info, values)
                return buf
            key, ncols, words = got
            return _frozen(DataBuffer, {
                "words": words, "info": ch.data_info(key, len(words) // ncols, ncols),
                "values": ch.current_values(now)})
