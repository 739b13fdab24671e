"""`EasyBiologicEClib`: the `EClib` over BioLogic's DLL through easy-biologic 0.4.0's ctypes layer.

Only `easy_biologic.lib.ec_lib` is used (its ctypes structures, parameter encoding and the
bound ``BL_*`` functions); never `BiologicDevice`, `BiologicProgram` or `ProgramRunner`, which
load firmware on every connect, poll at a fixed 1 s, never stop the instrument on abort, and
disconnect a shared device under other threads.

easy-biologic refuses to import anywhere but Windows and binds BioLogic's ``EClib64.dll`` at
import time, so it is imported on first use (``connect``): importing this module works on any
platform, and using it without the DLL raises an `InstrumentError` that says why.

easy-biologic 0.4.0 bugs worked around here:

* its `DataInfo` structure lacks ``_pack_ = 4``: the DLL writes StartTime at offset 28, the
  structure reads it at 32 (≈ 5e-315). The same bytes are re-read through a packed view.
* `EcError` keeps no code (no ``.value``), and for codes missing from its table (-300 ... -307,
  firmware files) its constructor raises ``ValueError('Unknown error value …')`` instead: the
  code is recovered from either message and raised as `EClibError`.
* `data_parser` converts every buffer word with one ``BL_ConvertNumericIntoSingle`` call and
  knows no CPLIMIT: we return the raw words (`decode.py` decodes them at once).
* PEIS/GEIS ``sweep`` crashes its programs, CV's rate is documented in V/s but the DLL takes
  mV/s: irrelevant here, since `translate.py` builds every parameter itself.
"""

from __future__ import annotations

import ctypes
import dataclasses
import re
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np

from labctl_drivers.biologic.eclib import (
    ChannelInfo,
    CurrentValues,
    DataBuffer,
    DataInfo,
    DeviceInfo,
    EccParam,
    EClibError,
    ParamType,
)
from labctl_drivers.errors import GarbledReply, InstrumentError

__all__ = ["EasyBiologicEClib", "dll_code_of", "load_easy_biologic"]

T = TypeVar("T")
_BUFFER_WORDS = 1000  # BL_GetData's buffer (user's guide §6)

_EB: SimpleNamespace | None = None


def load_easy_biologic() -> SimpleNamespace:
    """Import easy-biologic's ctypes layer once; every platform failure becomes one clear
    InstrumentError (no DLL, not Windows, no pkg_resources)."""
    global _EB
    if _EB is None:
        try:
            import easy_biologic.lib.ec_lib as ecl
        except (ImportError, OSError, AttributeError) as exc:
            raise InstrumentError(
                "The SP-300 driver needs easy-biologic (pip install 'labctl[biologic]', with "
                "setuptools<81) on Windows with BioLogic's EClib DLL; it cannot load here: "
                f"{type(exc).__name__}: {exc}") from exc
        _EB = SimpleNamespace(ecl=ecl)
    return _EB


_CODE_IN_MESSAGE = re.compile(r"\((-?\d+)\)")
_UNKNOWN_CODE = re.compile(r"Unknown error value (-?\d+)")


def dll_code_of(exc: BaseException) -> int | None:
    """The DLL return code behind one of easy-biologic's exceptions (EcError's message is
    "NAME (code): text"; an unknown code surfaces as ValueError from EcError's constructor)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if type(cur).__name__ == "EcError":
            m = _CODE_IN_MESSAGE.search(str(cur))
            if m:
                return int(m.group(1))
        if isinstance(cur, ValueError):
            m = _UNKNOWN_CODE.search(str(cur))
            if m:
                return int(m.group(1))
        cur = cur.__cause__ or cur.__context__
    return None


class _PackedDataInfo(ctypes.Structure):
    """DataInfo as the DLL lays it out: 4-byte packing, StartTime at offset 28 (40 bytes)."""

    _pack_ = 4
    _fields_ = [
        ("IRQskipped", ctypes.c_int32),
        ("NbRows", ctypes.c_int32),
        ("NbCols", ctypes.c_int32),
        ("TechniqueIndex", ctypes.c_int32),
        ("TechniqueID", ctypes.c_int32),
        ("ProcessIndex", ctypes.c_int32),
        ("loop", ctypes.c_int32),
        ("StartTime", ctypes.c_double),
        ("MuxPad", ctypes.c_int32),
    ]


def repack_data_info(info: ctypes.Structure) -> _PackedDataInfo:
    """Re-read easy-biologic's (unpacked, 48-byte) DataInfo with the DLL's real layout."""
    raw = ctypes.string_at(ctypes.addressof(info), ctypes.sizeof(_PackedDataInfo))
    return _PackedDataInfo.from_buffer_copy(raw)


def _record(cls: type[T], struct: Any) -> T:
    """A ctypes structure as one of eclib's records (fields by name; RESERVED ones dropped)."""
    return cls(**{f.name: getattr(struct, f.name)
                  for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


_KIND = {ParamType.INT32: "int", ParamType.BOOLEAN: "bool", ParamType.SINGLE: "single"}


class EasyBiologicEClib:
    """The EClib calls of `labctl_drivers.biologic.eclib.EClib`, through easy-biologic."""

    simulated = False

    def _call(self, function: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except InstrumentError:
            raise
        except Exception as exc:
            code = dll_code_of(exc)
            if code is None:
                raise InstrumentError(
                    f"SP-300 {function} failed: {type(exc).__name__}: {exc}") from exc
            raise EClibError(code, function) from exc

    @property
    def _ecl(self) -> Any:
        return load_easy_biologic().ecl

    def connect(self, address: str, timeout_s: int) -> tuple[int, DeviceInfo]:
        idn, info = self._call("BL_Connect", self._ecl.connect, address, int(timeout_s))
        return int(idn), _record(DeviceInfo, info)

    def disconnect(self, idn: int) -> None:
        self._call("BL_Disconnect", self._ecl.disconnect, idn)

    def test_connection(self, idn: int) -> bool:
        return bool(self._call("BL_TestConnection", self._ecl.is_connected, idn))

    def channels_plugged(self, idn: int) -> list[int]:
        plugged = self._call("BL_GetChannelsPlugged", self._ecl.get_channels, idn)
        return [ch for ch, on in enumerate(plugged) if on]

    def channel_info(self, idn: int, channel: int) -> ChannelInfo:
        info = self._call("BL_GetChannelInfos", self._ecl.channel_info, idn, channel)
        return _record(ChannelInfo, info)

    def load_firmware(self, idn: int, channels: Sequence[int], force: bool = False) -> list[int]:
        chs = [int(c) for c in channels]
        if not chs:
            return []
        results = self._call("BL_LoadFirmware", self._ecl.init_channels, idn, chs, bool(force))
        return [int(results[ch]) for ch in chs]

    def load_technique(
        self, idn: int, channel: int, ecc_file: str, params: Sequence[EccParam],
        first: bool, last: bool,
    ) -> None:
        ecl = self._ecl

        def build() -> Any:
            structs = []
            for p in params:
                value: int | float | bool
                if p.type is ParamType.SINGLE:
                    value = float(p.value)
                elif p.type is ParamType.BOOLEAN:
                    value = bool(p.value)
                else:
                    value = int(p.value)
                structs.append(ecl.create_parameter(p.label, value, int(p.index),
                                                    _KIND[ParamType(p.type)]))
            return ecl.combine_parameters(structs)

        ecc_params = self._call("BL_Define*Parameter", build)
        # device=None: the name is already the SP-300 family's (``cplimit4.ecc``)
        self._call(f"BL_LoadTechnique({ecc_file})", ecl.load_technique, idn, channel, ecc_file,
                   ecc_params, bool(first), bool(last))

    def start_channel(self, idn: int, channel: int) -> None:
        self._call("BL_StartChannel", self._ecl.start_channel, idn, channel)

    def stop_channel(self, idn: int, channel: int) -> None:
        self._call("BL_StopChannel", self._ecl.stop_channel, idn, channel)

    def current_values(self, idn: int, channel: int) -> CurrentValues:
        values = self._call("BL_GetCurrentValues", self._ecl.get_values, idn, channel)
        return _record(CurrentValues, values)

    def get_data(self, idn: int, channel: int) -> DataBuffer:
        data, raw_info, values = self._call("BL_GetData", self._ecl.get_data, idn, channel)
        info = repack_data_info(raw_info)
        n = int(info.NbRows) * int(info.NbCols)
        if not 0 <= n <= _BUFFER_WORDS:
            raise GarbledReply(f"SP-300 BL_GetData: {info.NbRows} rows of {info.NbCols} words "
                               f"do not fit its {_BUFFER_WORDS}-word buffer")
        words = np.frombuffer(data, dtype=np.uint32, count=n)
        return DataBuffer(words, _record(DataInfo, info), _record(CurrentValues, values))
