"""The SP-300 adapter: labctl's `Potentiostat` over any `EClib` (the DLL's calls as Python).

It runs unchanged on BioLogic's DLL (`EasyBiologicEClib`), on the simulated firmware
(`SimulatedEClib`) and on a simulated bench in another process (`RemoteEClib`), so every
simulated run executes the translation (`translate.py`), the decoding (`decode.py`) and the
end-of-technique logic below. EClib calls and their semantics: EC-Lab Development Package
user's guide v6.04, §6.

Connecting changes nothing on the instrument: ``BL_Connect``, the plugged channels, their
infos, and ``BL_LoadFirmware`` only on channels that neither run the Development Package's
kernel (FirmwareCode 5) nor run anything (loading firmware resets a channel). No channel is
stopped, at connect or at disconnect: a labctl that restarts after a crash must find the
channel as its predecessor left it; the station decides to stop channels before a run.

A channel is loaded with one technique or a linked sequence (``BL_LoadTechnique`` with the
first/last flags), so the instrument runs the techniques back to back with no open-circuit gap;
each labctl technique may become several DLL techniques (a long rest: OCV, LOOP, OCV).

`poll()` drains ``BL_GetData`` until a read returns no rows (bounded), decodes every buffer,
attributes the points to the labctl technique their ``DataInfo.TechniqueIndex`` belongs to, and
reports which techniques ended and why (`TechniqueEnd`):

* technique k ended when data of a later technique arrives; it ran StartTime(next) −
  StartTime(k) (``DataInfo.StartTime``, the start of each technique); or, once the channel is
  STOP and its buffer drained, it ran (StartTime of its last DLL technique − StartTime(k)) +
  ``CurrentValues.ElapsedTime``. A read that returns no rows may still name the technique that
  runs now in its DataInfo (index, id, StartTime); when that names a loaded technique later
  than the latest data, it counts as that technique's start (a technique that ends on a limit
  before its first record has no data of its own). A DataInfo that does not match the loaded
  technique at its index (e.g. all zeros) says nothing and is ignored.
* why, from the instrument, never from the last recorded voltage alone: we stopped it ->
  STOPPED; ``CurrentValues.OptErr`` -> ERROR (state ERROR); a sweep (CV, EIS) -> COMPLETE;
  ran its planned duration (within a few timebases, 1e-6 relative) -> TIME, or CHARGE when
  the duration was the charge limit; ended earlier -> the instrument limit that fired: the only
  one configured, or of E_max and E_min the one nearest to the technique's last decoded E (the
  firmware stops within one sample of the crossing, the other limit is far away; with no E
  decoded at all, the one the current drives E towards); CALIMIT -> I_LIMIT. A technique
  without limits that ends early is reported as ERROR (the instrument ended it for a reason
  it did not tell).

A limit that stops the sequence (Exit_Cond 2, see `translate.py`) leaves the channel IDLE with
`technique_index` = the technique that ended; the techniques after it never ran and get no
`TechniqueEnd`.

Times: t = StartTime + TimeBase·ticks with the TimeBase reported with the buffer. That is the
channel's current timebase, so when a buffer of an earlier technique is drained after the
channel went on to a later technique with another timebase, the reported value is the later
technique's: then (reported ≈ the timebase of a later loaded technique, not this one's) the
buffer's own technique's timebase is used. Any other mismatch is logged and the reported value
used.

Data left in the instrument's memory by an earlier run are read and discarded when a channel
is loaded (the channel is stopped then; they cannot belong to the new sequence).

Transient DLL codes (-2, -12, -202) are retried a bounded number of times (tenacity); every
error is an `InstrumentError` subclass, DLL codes as `EClibError` subclasses that also say the
kind of fault (`SP300LinkError` is a `TransportError`, ...). One lock per device serialises
our threads' calls (the DLL serialises too, but answers -12 after its mutex timeout).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import numpy as np
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_fixed

from labctl_drivers.biologic.decode import (
    decode_series,
    decode_spectrum,
    is_spectrum,
    last_potential,
    row_layout,
)
from labctl_drivers.biologic.eclib import (
    COMMUNICATION_CODES,
    FIRMWARE_KERNEL,
    TRANSIENT_CODES,
    ChannelInfo,
    CurrentValues,
    DataBuffer,
    DataInfo,
    DeviceInfo,
    DllChannelState,
    EClib,
    EClibError,
)
from labctl_drivers.biologic.translate import Program, TechniquePlan, translate_sequence
from labctl_drivers.errors import (
    GarbledReply,
    InstrumentError,
    InstrumentRefused,
    NotConnected,
    ReplyTimeout,
    TransportError,
)
from labctl_drivers.interfaces import (
    ChannelReading,
    ChannelState,
    ChannelStatus,
    EndReason,
    ImpedancePoint,
    InstrumentIdentity,
    PointBatch,
    TechniqueEnd,
)
from labctl_drivers.techniques import ConstantCurrent, Technique

__all__ = [
    "SP300", "SP300_FAMILY", "SP300Busy", "SP300Channel", "SP300FirmwareError",
    "SP300LinkError", "SP300Refused", "specific_error",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: `DeviceInfo.DeviceCode`s of the SP-300 family (user's guide §5.1), which use the ``*4.ecc``
#: techniques and the data layouts this adapter decodes.
SP300_FAMILY: dict[int, str] = {
    12: "VMP-300", 16: "SP-300", 20: "VSP-300", 21: "SP-200", 27: "SP-240", 32: "BP-300",
}
_FIRMWARE_NAMES = {1: "EC-Lab's interpreter firmware", FIRMWARE_KERNEL: "kernel"}


# ---------------------------------------------------------------------------------------------
# errors


class SP300LinkError(EClibError, TransportError):
    """The link to the instrument is gone (not connected, USB/Ethernet failure)."""


class SP300Busy(EClibError, ReplyTimeout):
    """The DLL stayed busy through every retry (-2, -12, -202)."""


class SP300FirmwareError(EClibError, InstrumentRefused):
    """Firmware could not be loaded or does not match the DLL (-300 ... -309)."""


class SP300Refused(EClibError, InstrumentRefused):
    """The DLL refused the call or its parameters (any other code)."""


def specific_error(exc: EClibError) -> EClibError:
    """The same DLL error as the subclass that says what kind of fault it is."""
    code = exc.code
    if code in COMMUNICATION_CODES:
        cls: type[EClibError] = SP300LinkError
    elif code in TRANSIENT_CODES:
        cls = SP300Busy
    elif -309 <= code <= -300:
        cls = SP300FirmwareError
    else:
        cls = SP300Refused
    if isinstance(exc, cls):
        return exc
    out = cls(code, exc.function)
    out.__cause__ = exc.__cause__
    return out


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, EClibError) and exc.code in TRANSIENT_CODES


# ---------------------------------------------------------------------------------------------
# device


class SP300:
    """A BioLogic SP-300 (or another SP-300-family instrument) over an `EClib`.

    `timeout_s` is BL_Connect's timeout, which is also the DLL's mutex timeout (5 s is
    BioLogic's recommendation). `max_reads_per_poll` bounds one poll's drain loop (1000 words
    per read)."""

    def __init__(
        self,
        eclib: EClib,
        address: str = "USB0",
        *,
        name: str = "SP-300",
        timeout_s: int = 5,
        retry_attempts: int = 5,
        retry_wait_s: float = 0.05,
        max_reads_per_poll: int = 200,
    ) -> None:
        self.eclib = eclib
        self.address = address
        self.name = name
        self.timeout_s = int(timeout_s)
        self.retry_attempts = max(1, int(retry_attempts))
        self.retry_wait_s = float(retry_wait_s)
        self.max_reads_per_poll = max(1, int(max_reads_per_poll))
        self.lock = threading.RLock()
        self._idn: int | None = None
        self._device: DeviceInfo | None = None
        self._plugged: list[int] = []
        self._infos: dict[int, ChannelInfo] = {}
        self._unusable: dict[int, str] = {}  # channel -> why we cannot drive it
        self._channels: dict[int, SP300Channel] = {}

    @property
    def simulated(self) -> bool:
        """Whether the EClib below is a simulated instrument (the adapter is the same)."""
        return bool(getattr(self.eclib, "simulated", False))

    # -- DLL calls ----------------------------------------------------------------------------
    def call(self, function: str, fn: Callable[..., T], *args: Any) -> T:
        """One EClib call under the device lock: transient codes retried (bounded), every
        failure raised as an InstrumentError subclass."""

        with self.lock:
            # The first try inline (the usual case: two calls per 1 s poll), without a closure
            # and without tenacity's machinery (~20 µs a call).
            try:
                return fn(*args)
            except Exception as exc:
                try:
                    self._raise_as_instrument_error(function, exc)
                except EClibError as err:
                    if err.code not in TRANSIENT_CODES or self.retry_attempts < 2:
                        raise

            def once() -> T:
                try:
                    return fn(*args)
                except Exception as exc:
                    self._raise_as_instrument_error(function, exc)

            time.sleep(self.retry_wait_s)  # the wait before the first retry
            retrying = Retrying(
                stop=stop_after_attempt(self.retry_attempts - 1),
                wait=wait_fixed(self.retry_wait_s),
                retry=retry_if_exception(_transient),
                reraise=True,
            )
            return retrying(once)

    def _raise_as_instrument_error(self, function: str, exc: Exception) -> NoReturn:
        """Raise a failed call's exception as an InstrumentError: a DLL code as the subclass
        that says its kind of fault, an InstrumentError as it is, anything else wrapped."""
        if isinstance(exc, EClibError):
            raise specific_error(exc) from exc.__cause__
        if isinstance(exc, InstrumentError):
            raise exc
        raise InstrumentError(
            f"{self.name} {function} failed: {type(exc).__name__}: {exc}") from exc

    def require(self) -> int:
        """The connection id; NotConnected before connect() or after disconnect()."""
        if self._idn is None:
            raise NotConnected(f"{self.name} is not connected; call connect() first")
        return self._idn

    # -- Potentiostat -------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the connection; see the module docstring for what it does (and does not)."""
        with self.lock:
            if self._idn is not None:
                return
            lib = self.eclib
            idn, device = self.call("BL_Connect", lib.connect, self.address, self.timeout_s)
            try:
                if int(device.DeviceCode) not in SP300_FAMILY:
                    raise InstrumentRefused(
                        f"{self.name} at {self.address} is device code {device.DeviceCode}, "
                        "not an SP-300-family instrument")
                plugged = sorted(self.call("BL_GetChannelsPlugged", lib.channels_plugged, idn))
                infos = {ch: self.call("BL_GetChannelInfos", lib.channel_info, idn, ch)
                         for ch in plugged}
                unusable: dict[int, str] = {}
                need = []
                for ch, info in infos.items():
                    if info.FirmwareCode == FIRMWARE_KERNEL:
                        continue
                    if info.State != DllChannelState.STOP:
                        unusable[ch] = (f"runs {_firmware(info.FirmwareCode)} and is busy: "
                                        "close EC-Lab (or stop the channel there) first")
                    else:
                        need.append(ch)
                if need:
                    results = self.call("BL_LoadFirmware", lib.load_firmware, idn, need, False)
                    for ch, code in zip(need, results):
                        if int(code) != 0:
                            unusable[ch] = str(SP300FirmwareError(int(code), "BL_LoadFirmware"))
                        else:
                            infos[ch] = self.call("BL_GetChannelInfos", lib.channel_info, idn, ch)
                    log.info("%s: kernel firmware loaded on channels %s", self.name,
                             [ch for ch in need if ch not in unusable])
            except BaseException:
                try:
                    lib.disconnect(idn)
                except Exception:  # the error that brought us here is the one to report
                    log.warning("%s: disconnect after a failed connect failed", self.name,
                                exc_info=True)
                raise
            self._idn, self._device = idn, device
            self._plugged, self._infos, self._unusable = plugged, infos, unusable
            for ch, why in unusable.items():
                log.warning("%s channel %s cannot be used: %s", self.name, ch, why)
            log.info("%s connected at %s, channels %s", self.name, self.address, plugged)

    def disconnect(self) -> None:
        """Release the connection. Changes nothing on the instrument (a running channel keeps
        running: stopping is the engine's and the station's decision)."""
        with self.lock:
            if self._idn is None:
                return
            idn, self._idn = self._idn, None
            self.call("BL_Disconnect", self.eclib.disconnect, idn)

    def channel(self, index: int) -> SP300Channel:
        """The channel object (the same one on every call, across reconnections)."""
        self.require()
        if index not in self._plugged:
            raise InstrumentRefused(
                f"{self.name} channel {index} is not plugged (have {self._plugged})")
        ch = self._channels.get(index)
        if ch is None:
            ch = self._channels[index] = SP300Channel(self, index)
        return ch

    @property
    def n_channels(self) -> int:
        return len(self._plugged)

    def identity(self) -> InstrumentIdentity:
        self.require()
        dev = self._device
        assert dev is not None
        details: list[tuple[str, str]] = [
            ("device code", str(dev.DeviceCode)),
            ("slots", f"{dev.NumberOfChannels} channels in {dev.NumberOfSlots} slots"),
        ]
        for ch in self._plugged:
            info = self._infos[ch]
            details.append((f"channel {ch}", (
                f"board v{info.BoardVersion} s/n {info.BoardSerialNumber}, "
                f"{_firmware(info.FirmwareCode)} v{info.FirmwareVersion}, I ranges "
                f"{info.MinIRange}..{info.MaxIRange}, EIS {'yes' if info.Zboard else 'no'}")))
            if ch in self._unusable:
                details.append((f"channel {ch} unusable", self._unusable[ch]))
        date = f"{dev.FirmwareDate_yyyy:04d}-{dev.FirmwareDate_mm:02d}-{dev.FirmwareDate_dd:02d}"
        return InstrumentIdentity(
            model=SP300_FAMILY.get(int(dev.DeviceCode), f"device {dev.DeviceCode}"),
            serial_number=None,  # DeviceInfo has none; the boards' are in details
            firmware=f"{dev.FirmwareVersion} ({date})",
            address=self.address,
            simulated=self.simulated,
            channels=tuple(self._plugged),
            details=tuple(details),
        )

    # -- for the channels -----------------------------------------------------------------
    def channel_info(self, index: int) -> ChannelInfo:
        return self._infos[index]

    def unusable(self, index: int) -> str | None:
        return self._unusable.get(index)


def _firmware(code: int) -> str:
    return _FIRMWARE_NAMES.get(int(code), f"firmware {code}")


# ---------------------------------------------------------------------------------------------
# channel


@dataclass
class _Run:
    """What one started sequence has shown so far."""

    program: Program
    state: ChannelState = ChannelState.RUNNING
    current: int = 0  # labctl technique of the latest data
    first_start: dict[int, float] = field(default_factory=dict)  # k -> StartTime, first data
    exec_start: dict[int, float] = field(default_factory=dict)  # k -> StartTime, latest data
    last_E: dict[int, float] = field(default_factory=dict)  # from impedance rows
    last_buffer: dict[int, tuple[np.ndarray, DataInfo]] = field(default_factory=dict)
    elapsed: float = 0.0
    last_end: float = 0.0  # when the latest ended technique ended (sequence time)
    stopped_by_us: bool = False
    finished: bool = False
    # read but not yet decoded: (k, info, words, timebase); decoded at the end of the drain
    raw: list[tuple[int, DataInfo, np.ndarray, float]] = field(default_factory=list)
    # decoded but not yet returned (kept, like `raw`, if a read fails halfway through a drain)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = field(default_factory=list)
    impedance: list[ImpedancePoint] = field(default_factory=list)
    ends: list[TechniqueEnd] = field(default_factory=list)
    timebase_warned: set[int] = field(default_factory=set)


class SP300Channel:
    """One channel: load a technique or a linked sequence, start, poll, stop."""

    #: labctl techniques per linked load. The channel's technique memory is finite
    #: (ERR_TECH_MEMFULL, -405) and one labctl technique may take up to three DLL techniques
    #: (a long rest is OCV + LOOP + OCV).
    max_linked_techniques = 16

    def __init__(self, device: SP300, index: int) -> None:
        self.index = index
        self._dev = device
        self._program: Program | None = None
        self._run: _Run | None = None

    @property
    def program(self) -> Program | None:
        """What we loaded (None before the first load, or after a load that failed)."""
        return self._program

    # -- PotentiostatChannel ----------------------------------------------------------------
    def load(
        self,
        technique: Technique | Sequence[Technique],
        *,
        cutoffs: Sequence[Collection[EndReason | str] | None] | None = None,
    ) -> None:
        """Load one technique or a linked sequence (run back to back, no open-circuit gap).

        `cutoffs[k]`: the end reasons that are technique k's normal end (what the engine treats
        as completing the step); only when all of a limit technique's limits are among them
        does a limit let the instrument go on with the next technique (Exit_Cond 1); otherwise
        a limit stops the sequence (2). See `translate.translate_sequence`."""
        dev = self._dev
        with dev.lock:
            idn = dev.require()
            self._check_usable()
            values = dev.call("BL_GetCurrentValues", dev.eclib.current_values, idn, self.index)
            if values.State != DllChannelState.STOP:
                raise InstrumentRefused(
                    f"{dev.name} channel {self.index} is running; stop() it before load()")
            # whatever happens below, what was loaded before must not be started by mistake
            self._program, self._run = None, None
            info = dev.channel_info(self.index)
            bounds = (int(info.MinIRange), int(info.MaxIRange)) if info.MaxIRange > 0 else None
            program = translate_sequence(technique, cutoffs=cutoffs, i_range_bounds=bounds)
            self._discard_old_data(idn)
            dll = program.dll
            for j, d in enumerate(dll):
                dev.call(f"BL_LoadTechnique({d.ecc_file})", dev.eclib.load_technique, idn,
                         self.index, d.ecc_file, list(d.params), j == 0, j == len(dll) - 1)
            self._program = program

    def start(self) -> None:
        dev = self._dev
        with dev.lock:
            idn = dev.require()
            if self._program is None:
                raise InstrumentRefused(f"{dev.name} channel {self.index}: nothing loaded")
            dev.call("BL_StartChannel", dev.eclib.start_channel, idn, self.index)
            self._run = _Run(self._program)

    def stop(self) -> None:
        """Open the circuit now: always sends BL_StopChannel, whatever we believe the state is
        (safe to repeat). NotConnected if there is no connection to send it on."""
        dev = self._dev
        with dev.lock:
            idn = dev.require()
            run = self._run
            was_running = True
            if run is not None and not run.finished:
                try:  # did the instrument end it already? then it is not "stopped by us"
                    was_running = dev.call("BL_GetCurrentValues", dev.eclib.current_values, idn,
                                           self.index).State != DllChannelState.STOP
                except InstrumentError:
                    was_running = True
            dev.call("BL_StopChannel", dev.eclib.stop_channel, idn, self.index)
            if run is not None and not run.finished and was_running:
                run.stopped_by_us = True

    def status(self) -> ChannelStatus:
        """The channel as the instrument reports it (BL_GetCurrentValues); changes nothing."""
        dev = self._dev
        with dev.lock:
            idn = dev.require()
            why = dev.unusable(self.index)
            if why is not None:
                info = dev.call("BL_GetChannelInfos", dev.eclib.channel_info, idn, self.index)
                busy = info.State != DllChannelState.STOP
                return ChannelStatus(self.index, ChannelState.RUNNING if busy else
                                     ChannelState.ERROR, technique=why)
            v = dev.call("BL_GetCurrentValues", dev.eclib.current_values, idn, self.index)
            if self._program is not None:
                what = self._program.describe()
            else:
                info = dev.call("BL_GetChannelInfos", dev.eclib.channel_info, idn, self.index)
                what = (f"{info.NbOfTechniques} technique(s) loaded by another client"
                        if info.NbOfTechniques else None)
            return ChannelStatus(self.index, _state(v), E_V=float(v.Ewe), I_A=float(v.I),
                                 elapsed_s=float(v.ElapsedTime), technique=what)

    def poll(self) -> ChannelReading:
        """New data since the last poll, the channel state, and the techniques that ended."""
        dev = self._dev
        with dev.lock:
            idn = dev.require()
            run = self._run
            if run is None:  # nothing started by us: report the state, take no data
                v = dev.call("BL_GetCurrentValues", dev.eclib.current_values, idn, self.index)
                return ChannelReading(_state(v))
            if run.finished:
                return self._reading(run)
            values: CurrentValues | None = None
            drained = False
            for _ in range(dev.max_reads_per_poll):
                buf = dev.call("BL_GetData", dev.eclib.get_data, idn, self.index)
                values = buf.values
                if int(buf.info.IRQskipped):
                    log.warning("%s channel %s: the instrument dropped %s rows (its memory was "
                                "full)", dev.name, self.index, buf.info.IRQskipped)
                if int(buf.info.NbRows) == 0:
                    drained = True
                    self._running_now(run, buf.info)
                    break
                self._take(run, buf)
            else:
                log.warning("%s channel %s: buffer not drained after %s reads; the rest comes "
                            "with the next poll", dev.name, self.index, dev.max_reads_per_poll)
            if values is not None:
                self._update(run, values, drained)
            return self._reading(run)

    # -- internals --------------------------------------------------------------------------
    def _discard_old_data(self, idn: int) -> None:
        """Read out what an earlier run left in the instrument's memory (bounded)."""
        dev = self._dev
        rows = 0
        for _ in range(dev.max_reads_per_poll):
            buf = dev.call("BL_GetData", dev.eclib.get_data, idn, self.index)
            if int(buf.info.NbRows) == 0:
                break
            rows += int(buf.info.NbRows)
        if rows:
            log.warning("%s channel %s: discarded %s rows an earlier run left in the "
                        "instrument's memory", dev.name, self.index, rows)

    def _check_usable(self) -> None:
        why = self._dev.unusable(self.index)
        if why is not None:
            raise InstrumentRefused(f"{self._dev.name} channel {self.index}: {why}")

    def _running_now(self, run: _Run, info: DataInfo) -> None:
        """Use an empty read's DataInfo when it names a loaded technique (module docstring)."""
        dll = run.program.dll
        j = int(info.TechniqueIndex)
        if not (0 <= j < len(dll) and int(info.TechniqueID) == dll[j].technique_id
                and dll[j].name != "LOOP"):
            return
        k = dll[j].source
        start = _start_time(info)
        if k > run.current:
            self._end_until(run, k, start)
        if k == run.current:
            run.first_start.setdefault(k, start)
            if start > run.exec_start.get(k, -math.inf):
                run.exec_start[k] = start

    def _take(self, run: _Run, buf: DataBuffer) -> None:
        """Decode one buffer and attribute it; end the techniques it shows to be over."""
        info = buf.info
        dll = run.program.dll
        j = int(info.TechniqueIndex)
        if not 0 <= j < len(dll):
            raise GarbledReply(f"{self._dev.name} channel {self.index}: data of technique "
                               f"index {j}, but {len(dll)} are loaded")
        d = dll[j]
        if int(info.TechniqueID) != d.technique_id:
            raise GarbledReply(
                f"{self._dev.name} channel {self.index}: data of technique id "
                f"{info.TechniqueID} at index {j}, where {d.name} ({d.technique_id}) is loaded")
        k = d.source
        start = _start_time(info)
        if k > run.current:
            self._end_until(run, k, start)
        if k == run.current:  # (late data of an ended technique is still recorded as its own)
            run.first_start.setdefault(k, start)
            if start > run.exec_start.get(k, -math.inf):
                run.exec_start[k] = start
        if d.name == "LOOP":  # no data rows
            return
        if is_spectrum(info):  # a few rows per sweep: decoded at once
            out = decode_spectrum(buf.words, info)
            run.impedance.extend(
                ImpedancePoint(float(t), float(f), float(z.real), float(z.imag), float(e),
                               float(i), k)
                for t, f, z, e, i in zip(out.t_s, out.frequency_Hz, out.Z_ohm, out.E_V, out.I_A))
            if len(out):
                run.last_E[k] = float(out.E_V[-1])
                run.last_buffer.pop(k, None)
            return
        row_layout(info)  # a malformed buffer fails here, not later in `_decode_raw`
        tb = self._timebase(run, j, float(buf.values.TimeBase), int(info.ProcessIndex))
        run.last_buffer[k] = (buf.words, info)  # its last E, if `_why` needs it
        run.last_E.pop(k, None)
        run.raw.append((k, info, buf.words, tb))

    @staticmethod
    def _decode_raw(run: _Run) -> None:
        """Decode the buffers read so far, consecutive buffers of one technique execution
        (same index, process, StartTime and timebase) together in one `decode_series`."""
        raw, run.raw = run.raw, []
        if len(raw) == 1:  # a 1 s poll's one buffer
            k, info, words, tb = raw[0]
            out = decode_series(words, info, tb)
            run.parts.append((out.t_s, out.E_V, out.I_A, k))
            return
        g = 0
        while g < len(raw):
            k, info, words, tb = raw[g]
            key = (info.TechniqueIndex, info.ProcessIndex, info.StartTime, tb)
            h = g + 1
            while h < len(raw) and (raw[h][1].TechniqueIndex, raw[h][1].ProcessIndex,
                                    raw[h][1].StartTime, raw[h][3]) == key:
                h += 1
            if h - g > 1:
                group = raw[g:h]
                n_rows = sum(int(x[1].NbRows) for x in group)
                cols = int(info.NbCols)
                words = np.concatenate([x[2][: int(x[1].NbRows) * cols] for x in group])
                info = DataInfo(0, n_rows, cols, info.TechniqueIndex, info.TechniqueID,
                                info.ProcessIndex, info.loop, info.StartTime)
            out = decode_series(words, info, tb)
            run.parts.append((out.t_s, out.E_V, out.I_A, k))
            g = h

    def _timebase(self, run: _Run, j: int, reported: float, process: int) -> float:
        """The timebase of DLL technique j's buffer (module docstring)."""
        d = run.program.dll[j]
        if process != 0 or d.name == "LOOP":  # no tick columns
            return reported
        if not (math.isfinite(reported) and reported > 0):
            raise GarbledReply(f"{self._dev.name} channel {self.index}: TimeBase {reported} "
                               f"with {d.name} data")
        if abs(reported - d.timebase_s) <= 0.01 * d.timebase_s:
            return reported
        later = run.program.dll[j + 1:]
        if any(abs(reported - x.timebase_s) <= 0.01 * x.timebase_s for x in later):
            return d.timebase_s  # the channel's current one belongs to a later technique
        if j not in run.timebase_warned:
            run.timebase_warned.add(j)
            log.warning("%s channel %s: %s data came with TimeBase %.4g s, its timebase is "
                        "%.4g s; times use the reported one", self._dev.name, self.index,
                        d.name, reported, d.timebase_s)
        return reported

    def _end_until(self, run: _Run, k: int, start_next: float) -> None:
        """Techniques run.current .. k-1 are over: data of technique k began at start_next."""
        if k - run.current > 1:
            log.warning("%s channel %s: techniques %s..%s recorded nothing; their durations are "
                        "not known separately", self._dev.name, self.index, run.current + 1,
                        k - 1)
        for j in range(run.current, k):
            begin = run.first_start.get(j, run.last_end)  # no data: it began when j-1 ended
            elapsed = max(0.0, start_next - begin)
            run.ends.append(TechniqueEnd(j, self._why(run, j, elapsed), elapsed))
            run.last_end = start_next
        run.current = k

    def _update(self, run: _Run, values: CurrentValues, drained: bool) -> None:
        """After a drain: the state, and the end of the running technique if the channel
        stopped."""
        k = run.current
        first = run.first_start.get(k)
        offset = run.exec_start[k] - first if first is not None else 0.0
        elapsed = offset + float(values.ElapsedTime)
        if values.OptErr:
            log.error("%s channel %s: instrument error OptErr=%s (option %s)", self._dev.name,
                      self.index, values.OptErr, values.OptPos)
            run.ends.append(TechniqueEnd(k, EndReason.ERROR, elapsed))
            run.state, run.finished, run.elapsed = ChannelState.ERROR, True, elapsed
            return
        if drained and values.State == DllChannelState.STOP:
            reason = EndReason.STOPPED if run.stopped_by_us else self._why(run, k, elapsed)
            run.ends.append(TechniqueEnd(k, reason, elapsed))
            run.state, run.finished = ChannelState.IDLE, True
        run.elapsed = elapsed

    def _why(self, run: _Run, k: int, elapsed: float) -> EndReason:
        """Why technique k ended after `elapsed` s on the instrument (module docstring)."""
        plan: TechniquePlan = run.program.techniques[k]
        if plan.sweep:
            return EndReason.COMPLETE
        assert plan.planned_duration_s is not None
        if elapsed >= plan.planned_duration_s - plan.tolerance_s:
            return EndReason.CHARGE if plan.charge_bound else EndReason.TIME
        limits = plan.limits
        if len(limits) == 1:
            return limits[0]
        if limits:
            E = run.last_E.get(k)
            if E is None and k in run.last_buffer:
                E = last_potential(*run.last_buffer[k])
            if E is None:  # nothing decoded: the limit the current drives E towards
                tech = plan.technique
                up = isinstance(tech, ConstantCurrent) and tech.current_A > 0
                return EndReason.E_MAX if up and EndReason.E_MAX in limits else limits[-1]
            return min(limits, key=lambda r: abs(plan.limit_values[r] - E))
        log.warning("%s channel %s: technique %s (%s) ended after %.6g s of %.6g s planned, with "
                    "no limit that could end it", self._dev.name, self.index, k,
                    type(plan.technique).__name__, elapsed, plan.planned_duration_s)
        return EndReason.ERROR

    def _reading(self, run: _Run) -> ChannelReading:
        """Hand over what was read since the last reading."""
        if run.raw:
            self._decode_raw(run)
        parts, run.parts = run.parts, []
        impedance, run.impedance = run.impedance, []
        ends, run.ends = tuple(run.ends), []
        if not parts:
            points = PointBatch.empty()
        elif len(parts) == 1:
            t, E, current, k = parts[0]
            points = PointBatch(t, E, current, None if k == run.current else
                                np.full(len(t), k, dtype=np.int64))
        else:
            ks = [p[3] for p in parts]
            points = PointBatch(
                np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                np.concatenate([p[2] for p in parts]),
                None if all(k == run.current for k in ks) else
                np.concatenate([np.full(len(p[0]), p[3], dtype=np.int64) for p in parts]))
        return ChannelReading(run.state, points=points, impedance=impedance, ends=ends,
                              technique_index=run.current, elapsed_s=run.elapsed)


def _start_time(info: DataInfo) -> float:
    start = float(info.StartTime)
    return 0.0 if math.isnan(start) else start


def _state(values: CurrentValues) -> ChannelState:
    if values.OptErr:
        return ChannelState.ERROR
    return ChannelState.IDLE if values.State == DllChannelState.STOP else ChannelState.RUNNING
