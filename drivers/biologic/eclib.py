"""The boundary below the SP-300 adapter: the EC-Lab Development Package's DLL, as Python calls.

The adapter (`labctl_drivers.biologic.adapter`) talks only to an `EClib`. Two implement it:

* `EasyBiologicEClib` (`easy_eclib.py`) — BioLogic's real `EClib64.dll` through easy-biologic's
  ctypes layer (`easy_biologic.lib.ec_lib`), on Windows with the instrument; on Linux the tests
  run it against a fake DLL, so easy-biologic's own code is exercised.
* `SimulatedEClib` (`sim_eclib.py`) — a simulated instrument firmware driven by the digital
  twin: it interprets the DLL parameters exactly as they are sent, and answers with the DLL's
  data layout (32-bit words, singles as IEEE-754 bit patterns, times as timebase counts), its
  error codes and its channel states.

So the adapter's translation (techniques -> DLL parameters) and its decoding (data words ->
points) run in every simulated run, and a mistake in either shows up in simulation. The names
and fields below are the DLL's own (EC-Lab Development Package user's guide v6.04, §5.1 for the
structures, §6 for the calls, §5.4 for the error codes); each side keeps its own tables of
technique ids, timebases and column layouts, so that one can catch the other's mistakes.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from labctl_drivers.errors import InstrumentError

#: EClib error codes (user's guide §5.4) that labctl names in messages.
ERROR_NAMES: dict[int, str] = {
    -1: "ERR_GEN_NOTCONNECTED",
    -2: "ERR_GEN_CONNECTIONINPROGRESS",
    -3: "ERR_GEN_CHANNELNOTPLUGGED",
    -4: "ERR_GEN_INVALIDPARAMETERS",
    -5: "ERR_GEN_FILENOTEXISTS",
    -6: "ERR_GEN_FUNCTIONFAILED",
    -7: "ERR_GEN_NOCHANNELSELECTED",
    -8: "ERR_GEN_INVALIDCONF",
    -9: "ERR_GEN_ECLAB_LOADED",
    -10: "ERR_GEN_LIBNOTCORRECTLYLOADED",
    -11: "ERR_GEN_USBLIBRARYERROR",
    -12: "ERR_GEN_FUNCTIONINPROGRESS",
    -13: "ERR_GEN_CHANNEL_RUNNING",
    -14: "ERR_GEN_DEVICE_NOTALLOWED",
    -15: "ERR_GEN_UPDATEPARAMETERS",
    -200: "ERR_COMM_COMMFAILED",
    -201: "ERR_COMM_CONNECTIONFAILED",
    -202: "ERR_COMM_WAITINGACK",
    -206: "ERR_COMM_INCOMPATIBLESERVER",
    -308: "ERR_FIRM_FIRMWARENOTLOADED",
    -309: "ERR_FIRM_FIRMWAREINCOMPATIBLE",
    -400: "ERR_TECH_ECCFILENOTEXISTS",
    -401: "ERR_TECH_INCOMPATIBLEECC",
    -402: "ERR_TECH_ECCFILECORRUPTED",
    -403: "ERR_TECH_LOADTECHNIQUEFAILED",
    -404: "ERR_TECH_DATACORRUPTED",
    -405: "ERR_TECH_MEMFULL",
}

#: Codes that mean "busy, ask again" rather than a fault: another caller holds the DLL's mutex
#: (-12), a connection is being set up (-2), an acknowledgement is pending (-202).
TRANSIENT_CODES = frozenset({-2, -12, -202})
#: Codes that mean the link to the instrument is gone.
COMMUNICATION_CODES = frozenset({-1, -10, -11, -200, -201})


class EClibError(InstrumentError):
    """A non-zero EClib return code; `code` is the DLL's own number (user's guide §5.4)."""

    def __init__(self, code: int, function: str) -> None:
        self.code = int(code)
        self.function = function
        super().__init__(
            f"SP-300 {function} failed: DLL error {code} ({ERROR_NAMES.get(code, 'unknown')})"
        )

    def __reduce__(self) -> tuple[type, tuple[int, str]]:  # picklable across the sim server
        return (type(self), (self.code, self.function))


class ParamType(enum.IntEnum):
    """`EccParam.ParamType` (user's guide §5.1)."""

    INT32 = 0
    BOOLEAN = 1
    SINGLE = 2


class DllChannelState(enum.IntEnum):
    """`CurrentValues.State` / `ChannelInfo.State`."""

    STOP = 0
    RUN = 1
    PAUSE = 2


#: `ChannelInfo.FirmwareCode` of the Development Package's kernel firmware.
FIRMWARE_KERNEL = 5
#: `DeviceInfo.DeviceCode` of an SP-300 (the SP-300 family also has SP-200, VSP-300, ...).
DEVICE_SP300 = 16


@dataclass(frozen=True)
class EccParam:
    """One technique parameter as `BL_Define*Parameter` builds it: a label, its type, its
    value and, for per-step arrays, the step index."""

    label: str
    type: ParamType
    value: int | float | bool
    index: int = 0


@dataclass(frozen=True)
class DeviceInfo:
    DeviceCode: int
    RAMSize: int = 0
    CPU: int = 0
    NumberOfChannels: int = 0
    NumberOfSlots: int = 0
    FirmwareVersion: int = 0
    FirmwareDate_yyyy: int = 0
    FirmwareDate_mm: int = 0
    FirmwareDate_dd: int = 0
    HTdisplayOn: int = 0
    NbOfConnectedPC: int = 0


@dataclass(frozen=True)
class ChannelInfo:
    Channel: int
    BoardVersion: int = 0
    BoardSerialNumber: int = 0
    FirmwareCode: int = 0
    FirmwareVersion: int = 0
    XilinxVersion: int = 0
    AmpCode: int = 0
    NbAmps: int = 0
    Lcboard: int = 0
    Zboard: int = 0
    MemSize: int = 0
    MemFilled: int = 0
    State: int = DllChannelState.STOP
    MaxIRange: int = 0
    MinIRange: int = 0
    MaxBandwidth: int = 0
    NbOfTechniques: int = 0


@dataclass(frozen=True)
class CurrentValues:
    State: int
    MemFilled: int = 0
    TimeBase: float = 0.0
    Ewe: float = 0.0
    EweRangeMin: float = 0.0
    EweRangeMax: float = 0.0
    Ece: float = 0.0
    EceRangeMin: float = 0.0
    EceRangeMax: float = 0.0
    Eoverflow: int = 0
    I: float = 0.0
    IRange: int = 0
    Ioverflow: int = 0
    ElapsedTime: float = 0.0
    Freq: float = 0.0
    Rcomp: float = 0.0
    Saturation: int = 0
    OptErr: int = 0
    OptPos: int = 0


@dataclass(frozen=True)
class DataInfo:
    """`DataInfo` as the DLL writes it (4-byte packing; StartTime at offset 28)."""

    IRQskipped: int
    NbRows: int
    NbCols: int
    TechniqueIndex: int
    TechniqueID: int
    ProcessIndex: int
    loop: int
    StartTime: float
    MuxPad: int = 0


@dataclass(frozen=True)
class DataBuffer:
    """What one `BL_GetData` returns: `NbRows * NbCols` 32-bit words, row-major (the DLL's
    buffer holds at most 1000), with the segment's `DataInfo` and the channel's values."""

    words: np.ndarray  # dtype uint32, length info.NbRows * info.NbCols
    info: DataInfo
    values: CurrentValues


@runtime_checkable
class EClib(Protocol):
    """The EClib calls the SP-300 adapter makes (user's guide §6). Every call raises
    `EClibError` for a non-zero DLL return code."""

    simulated: bool

    def connect(self, address: str, timeout_s: int) -> tuple[int, DeviceInfo]:
        """`BL_Connect`: the connection id and the device's description."""
        ...

    def disconnect(self, idn: int) -> None: ...
    def test_connection(self, idn: int) -> bool: ...
    def channels_plugged(self, idn: int) -> list[int]:
        """`BL_GetChannelsPlugged`: the indices (0..15) of the channels the chassis has."""
        ...

    def channel_info(self, idn: int, channel: int) -> ChannelInfo: ...
    def load_firmware(self, idn: int, channels: Sequence[int], force: bool = False) -> list[int]:
        """`BL_LoadFirmware` (the Development Package's kernel) on `channels`; one result code
        per channel. Loading firmware resets a channel, so the adapter calls it only on
        channels that do not already run the kernel."""
        ...

    def load_technique(
        self, idn: int, channel: int, ecc_file: str, params: Sequence[EccParam],
        first: bool, last: bool,
    ) -> None:
        """`BL_LoadTechnique`: `ecc_file` is the bare file name (``cplimit4.ecc`` for the SP-300
        family); `first` starts a new sequence, `last` closes it (linked techniques)."""
        ...

    def start_channel(self, idn: int, channel: int) -> None: ...
    def stop_channel(self, idn: int, channel: int) -> None: ...
    def current_values(self, idn: int, channel: int) -> CurrentValues: ...
    def get_data(self, idn: int, channel: int) -> DataBuffer: ...
