"""A fake BioLogic EClib/blfind DLL, so easy-biologic's own code runs on Linux (biologic.md §3.3).

Written from scratch for labctl's tests. `install()` makes `ctypes.WinDLL` return a Python object
that serves the `BL_*` entry points easy-biologic binds at import time, and makes
`platform.system()` say "Windows" *only while* `easy_biologic` is imported; both are restored
afterwards. Everything above the DLL boundary (ec_lib's ctypes structures and parameter
encoding, `BiologicDevice`, `data_parser`) is then easy-biologic's unmodified code.

The fake honours the binary contract the real DLL has with ec_lib:
* out-parameters arrive as `ctypes.byref(...)` objects (`._obj` is the target);
* technique parameters arrive as an `EccParams` structure by value, floats as IEEE-754 bits;
* `BL_GetData` fills a uint32[1000] word buffer (one technique and one process per call) and
  writes `DataInfo` with the DLL's 4-byte packing, so easy-biologic's unpacked struct misreads
  StartTime exactly as on Windows;
* |I| is never 0 on EIS rows; phase is in radians.

Time is simulated: the test calls `sim.advance(seconds)`; nothing depends on wall time.
"""

from __future__ import annotations

import cmath
import ctypes
import importlib
import math
import os
import platform
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

TIMEBASE = {
    "ocv": 20e-6,
    "cp": 21e-6,
    "ca": 21e-6,
    "cplimit": 34e-6,
    "calimit": 34e-6,
    "peis": 24e-6,
    "geis": 24e-6,
    "cv": 45e-6,
}
TECH_ID = {
    "ocv": 100,
    "ca": 101,
    "cp": 102,
    "cv": 103,
    "peis": 104,
    "geis": 107,
    "cplimit": 155,
    "calimit": 157,
}
STOP, RUN = 0, 1
_NEXT_IDN = 0


def f2u(x: float) -> int:
    """float32 bit pattern as an unsigned 32-bit word (how the DLL stores singles)."""
    return struct.unpack("<I", struct.pack("<f", float(x)))[0]


def u2f(u: int) -> float:
    return struct.unpack("<f", struct.pack("<I", int(u) & 0xFFFFFFFF))[0]


def _v(x: Any) -> Any:
    """Value of a ctypes scalar, or the object itself for plain Python arguments."""
    return x.value if hasattr(x, "value") and not isinstance(x, (bytes, str)) else x


class _PackedDataInfo(ctypes.Structure):
    """DataInfo exactly as the DLL lays it out (40 bytes, StartTime at offset 28)."""

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


@dataclass
class Segment:
    """Rows of one technique process waiting in the instrument's memory."""

    tech: str
    process: int
    rows: list[list[int]]


@dataclass
class SimChannel:
    index: int
    ocv_V: float
    techniques: list[tuple[str, dict[str, dict[int, Any]]]] = field(default_factory=list)
    state: int = STOP
    t_start: float = 0.0
    t_done: float = 0.0  # technique time already simulated
    end_time: float | None = None
    queue: deque[Segment] = field(default_factory=deque)
    E: float = 0.0
    I: float = 0.0
    q_C: float = 0.0
    eis_emitted: int = 0
    next_rec: int = 0
    stop_calls: int = 0


class FakeEClib:
    """State of the simulated SP-300 plus the `BL_*` implementations."""

    def __init__(
        self,
        n_channels: int = 2,
        start_time_offset: float = 0.0,
        R_ohm: float = 50.0,
        dEdq_V_per_C: float = 2.0,
    ) -> None:
        self.now = 0.0
        self.connected: set[int] = set()
        self.channels = [SimChannel(i, 2.90 + 0.01 * i) for i in range(n_channels)]
        self.n_channels = n_channels
        self.start_time_offset = start_time_offset
        self.R_ohm = R_ohm
        self.dEdq = dEdq_V_per_C
        self.calls: dict[str, int] = {}
        self.faults: dict[str, deque[int]] = {}

    # -- test controls --------------------------------------------------------------------
    def advance(self, dt: float) -> None:
        self.now += dt

    def fail(self, name: str, code: int, times: int = 1) -> None:
        """Make the next `times` calls of BL_<name> return `code` instead of working."""
        self.faults.setdefault(name, deque()).extend([code] * times)

    def params(self, ch: int, k: int = 0) -> dict[str, dict[int, Any]]:
        return self.channels[ch].techniques[k][1]

    # -- dispatch -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        impl = getattr(self, "_" + name, None)
        if impl is None:
            raise AttributeError(f"function '{name}' not found")

        def entry(*args: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            pending = self.faults.get(name)
            if pending:
                return pending.popleft()
            return impl(*args)

        entry.__name__ = name  # ec_lib names its *_async wrappers after this
        return entry

    # -- hardware -------------------------------------------------------------------------
    def _BL_Connect(self, addr_ref: Any, timeout: Any, idn_ref: Any, info_ref: Any) -> int:
        address = addr_ref._obj.value.decode()
        if address.startswith("NOPE"):
            return -201
        # never reuse an id: a stale BiologicDevice's __del__ would disconnect the new one
        global _NEXT_IDN
        _NEXT_IDN += 1
        idn = _NEXT_IDN
        self.connected.add(idn)
        idn_ref._obj.value = idn
        info = info_ref._obj
        info.DeviceCode = 16  # KBIO_DEV_SP300
        info.RAMSize, info.CPU = 128, 1
        info.NumberOfChannels = self.n_channels
        info.NumberOfSlots = 2
        info.FirmwareVersion, info.FirmwareDate_yyyy = 1140, 2024
        info.NbOfConnectedPC = 1
        return 0

    def _BL_Disconnect(self, idn: Any) -> int:
        if _v(idn) not in self.connected:
            return -1
        self.connected.discard(_v(idn))
        return 0

    def _BL_TestConnection(self, idn: Any) -> int:
        return 0 if _v(idn) in self.connected else -1

    def _BL_LoadFirmware(
        self,
        idn: Any,
        active_ref: Any,
        results_ref: Any,
        length: Any,
        gauge: Any,
        force: Any,
        bin_file: Any,
        xlx_file: Any,
    ) -> int:
        return 0 if _v(idn) in self.connected else -1

    def _BL_IsChannelPlugged(self, idn: Any, ch: Any) -> bool:
        return _v(ch) < self.n_channels

    def _BL_GetChannelsPlugged(self, idn: Any, arr_ref: Any, size: Any) -> int:
        arr = arr_ref._obj
        for i in range(min(_v(size), self.n_channels)):
            arr[i] = 1
        return 0

    def _BL_GetChannelInfos(self, idn: Any, ch: Any, info_ref: Any) -> int:
        c = self.channels[_v(ch)]
        info = info_ref._obj
        info.Channel, info.FirmwareCode, info.Zboard = c.index, 5, 1
        info.State, info.NbOfTechniques = c.state, len(c.techniques)
        info.MaxIRange, info.MinIRange, info.MaxBandwidth = 10, 0, 9
        return 0

    def _BL_GetHardConf(self, idn: Any, ch: Any, conf_ref: Any) -> int:
        conf_ref._obj.Conn, conf_ref._obj.Ground = 0, 0
        return 0

    def _BL_SetHardConf(self, idn: Any, ch: Any, conf: Any) -> int:
        return 0

    # -- techniques -----------------------------------------------------------------------
    def _define(self, kind: int, label: bytes, value: Any, index: Any, ref: Any) -> int:
        p = ref._obj
        p.ParamStr = label
        p.ParamType = kind
        if kind == 2:
            p.ParamVal = struct.unpack("<i", struct.pack("<f", _v(value)))[0]
        else:
            p.ParamVal = int(_v(value))
        p.ParamIndex = _v(index)
        return 0

    def _BL_DefineBoolParameter(self, label: bytes, value: Any, index: Any, ref: Any) -> int:
        return self._define(1, label, value, index, ref)

    def _BL_DefineIntParameter(self, label: bytes, value: Any, index: Any, ref: Any) -> int:
        return self._define(0, label, value, index, ref)

    def _BL_DefineSglParameter(self, label: bytes, value: Any, index: Any, ref: Any) -> int:
        return self._define(2, label, value, index, ref)

    @staticmethod
    def _decode_params(params: Any) -> dict[str, dict[int, Any]]:
        out: dict[str, dict[int, Any]] = {}
        for k in range(params.len):
            p = params.pParams[k]
            if p.ParamType == 2:
                val: Any = u2f(p.ParamVal)
            elif p.ParamType == 1:
                val = bool(p.ParamVal)
            else:
                val = int(p.ParamVal)
            out.setdefault(p.ParamStr.decode(), {})[p.ParamIndex] = val
        return out

    def _BL_LoadTechnique(
        self, idn: Any, ch: Any, fname_ref: Any, params: Any, first: Any, last: Any, verbose: Any
    ) -> int:
        if _v(idn) not in self.connected:
            return -1
        c = self.channels[_v(ch)]
        if c.state == RUN:
            return -13
        fname = fname_ref._obj.value.decode()
        base = os.path.splitext(fname)[0]
        if not base.endswith("4"):  # SP-300 family uses the *4.ecc files
            return -401
        base = base[:-1]
        if base not in TECH_ID:
            return -400
        if _v(first):
            c.techniques.clear()
        c.techniques.append((base, self._decode_params(params)))
        return 0

    def _BL_UpdateParameters(
        self, idn: Any, ch: Any, index: Any, params: Any, fname_ref: Any
    ) -> int:
        c = self.channels[_v(ch)]
        for label, vals in self._decode_params(params).items():
            c.techniques[_v(index)][1].setdefault(label, {}).update(vals)
        return 0

    def _start(self, ch: int) -> int:
        c = self.channels[ch]
        if not c.techniques:
            return -7
        c.state, c.t_start, c.t_done, c.end_time = RUN, self.now, 0.0, None
        c.queue.clear()
        c.q_C, c.eis_emitted, c.next_rec = 0.0, 0, 0
        c.E, c.I = c.ocv_V, 0.0
        return 0

    def _BL_StartChannel(self, idn: Any, ch: Any) -> int:
        return self._start(_v(ch))

    def _BL_StartChannels(self, idn: Any, active_ref: Any, results_ref: Any, n: Any) -> int:
        for i, on in enumerate(active_ref._obj):
            if on:
                err = self._start(i)
                if err:
                    return err
        return 0

    def _stop(self, ch: int) -> int:
        c = self.channels[ch]
        c.stop_calls += 1
        if c.state == RUN:
            self._simulate(c)
            c.state, c.I = STOP, 0.0
            c.E = c.ocv_V
        return 0

    def _BL_StopChannel(self, idn: Any, ch: Any) -> int:
        return self._stop(_v(ch))

    def _BL_StopChannels(self, idn: Any, active_ref: Any, results_ref: Any, n: Any) -> int:
        for i, on in enumerate(active_ref._obj):
            if on:
                self._stop(i)
        return 0

    # -- data -----------------------------------------------------------------------------
    def _fill_values(self, c: SimChannel, v: Any, tb: float) -> None:
        v.State, v.MemFilled, v.TimeBase = c.state, 4 * sum(len(s.rows) for s in c.queue), tb
        v.Ewe, v.I = c.E, c.I
        v.EweRangeMin, v.EweRangeMax = -10.0, 10.0
        v.ElapsedTime = c.t_done
        v.IRange = 8

    def _BL_GetCurrentValues(self, idn: Any, ch: Any, v_ref: Any) -> int:
        if _v(idn) not in self.connected:
            return -1
        c = self.channels[_v(ch)]
        self._simulate(c)
        tech = c.techniques[0][0] if c.techniques else "ocv"
        self._fill_values(c, v_ref._obj, TIMEBASE[tech])
        return 0

    def _BL_GetData(self, idn: Any, ch: Any, buf_ref: Any, info_ref: Any, v_ref: Any) -> int:
        if _v(idn) not in self.connected:
            return -1
        c = self.channels[_v(ch)]
        self._simulate(c)
        tech = c.techniques[0][0] if c.techniques else "ocv"
        info = _PackedDataInfo.from_address(ctypes.addressof(info_ref._obj))  # DLL's real layout
        ctypes.memset(ctypes.addressof(info), 0, ctypes.sizeof(_PackedDataInfo))
        info.TechniqueID = TECH_ID[tech]
        info.StartTime = self.start_time_offset
        self._fill_values(c, v_ref._obj, TIMEBASE[tech])
        if c.queue:
            seg = c.queue[0]
            ncols = len(seg.rows[0])
            take = seg.rows[: 1000 // ncols]
            del seg.rows[: len(take)]
            if not seg.rows:
                c.queue.popleft()
            buf = buf_ref._obj
            for r, row in enumerate(take):
                for k, word in enumerate(row):
                    buf[r * ncols + k] = word
            info.NbRows, info.NbCols, info.ProcessIndex = len(take), ncols, seg.process
        return 0

    def _BL_ConvertNumericIntoSingle(self, u: Any, f_ref: Any) -> int:
        f_ref._obj.value = u2f(_v(u))
        return 0

    # -- physics --------------------------------------------------------------------------
    def _push(self, c: SimChannel, tech: str, process: int, row: list[int]) -> None:
        if c.queue and c.queue[-1].process == process and c.queue[-1].tech == tech:
            c.queue[-1].rows.append(row)
        else:
            c.queue.append(Segment(tech, process, [row]))

    @staticmethod
    def _t_words(t: float, tb: float) -> list[int]:
        n = round(t / tb)
        return [n >> 32, n & 0xFFFFFFFF]

    def _simulate(self, c: SimChannel) -> None:
        """Generate the rows the instrument would have recorded up to `now`."""
        if c.state != RUN or not c.techniques:
            return
        tech, p = c.techniques[0]
        t_now = self.now - c.t_start
        one = {k: v.get(0) for k, v in p.items()}
        if tech == "ocv":
            self._sim_ocv(c, one, t_now)
        elif tech in ("cp", "cplimit"):
            self._sim_cp(c, tech, p, one, t_now)
        elif tech in ("peis", "geis"):
            self._sim_eis(c, tech, one, t_now)
        else:  # parameters are recorded; no data model for this technique
            c.state = STOP

    @staticmethod
    def _record_times(c: SimChannel, dt: float, t_end: float) -> list[float]:
        """Record instants k*dt not yet emitted, up to t_end."""
        times = []
        while c.next_rec * dt <= t_end + 1e-9:
            times.append(c.next_rec * dt)
            c.next_rec += 1
        return times

    def _sim_ocv(self, c: SimChannel, one: dict[str, Any], t_now: float) -> None:
        dur, dt = one["Rest_time_T"], one["Record_every_dT"]
        t_end = min(t_now, dur)
        for t in self._record_times(c, dt, t_end):
            c.E = c.ocv_V + 1e-4 * t
            self._push(c, "ocv", 0, [*self._t_words(t, TIMEBASE["ocv"]), f2u(c.E)])
        c.t_done = t_end
        if t_now >= dur:
            c.state = STOP

    def _sim_cp(
        self,
        c: SimChannel,
        tech: str,
        p: dict[str, dict[int, Any]],
        one: dict[str, Any],
        t_now: float,
    ) -> None:
        current = one["Current_step"]
        dur = sum(p["Duration_step"].values())
        dt = one["Record_every_dT"]
        tests = []
        for k in (1, 2, 3):
            cfg = p.get(f"Test{k}_Config", {}).get(0, 0)
            if cfg & 1:
                tests.append((bool(cfg & 4), (cfg >> 5), p[f"Test{k}_Value"][0]))
        t_end = min(t_now, dur)
        for t in self._record_times(c, dt, t_end):
            c.I = current
            c.q_C = current * t
            c.E = c.ocv_V + self.R_ohm * current + self.dEdq * c.q_C
            hit = any(var == 0 and ((c.E > val) if gt else (c.E < val)) for gt, var, val in tests)
            self._push(c, tech, 0, [*self._t_words(t, TIMEBASE[tech]), f2u(c.E), f2u(c.I), 0])
            if hit:
                c.t_done, c.state, c.I = t, STOP, 0.0
                return
        c.t_done = t_end
        if t_now >= dur:
            c.state, c.I = STOP, 0.0

    def _impedance(self, f: float) -> complex:
        """Randles-like cell: 20 Ω + (100 Ω || 1 µF)."""
        w = 2 * math.pi * f
        return 20.0 + 100.0 / (1 + 1j * w * 100.0 * 1e-6)

    def _sim_eis(self, c: SimChannel, tech: str, one: dict[str, Any], t_now: float) -> None:
        if c.next_rec == 0:
            c.next_rec = 1
            # process 0: one DC point at t = 0 (Duration_step is 0 for labctl's EIS)
            self._push(c, tech, 0, [*self._t_words(0.0, TIMEBASE[tech]), f2u(c.E), f2u(1e-9)])
        f_hi, f_lo, n = one["Initial_frequency"], one["Final_frequency"], one["Frequency_number"]
        freqs = [f_hi * (f_lo / f_hi) ** (k / (n - 1)) for k in range(n)] if n > 1 else [f_hi]
        t_f = 0.0
        times = []
        for f in freqs:  # each frequency takes max(1/f, 0.1) s
            t_f += max(1.0 / f, 0.1)
            times.append(t_f)
        while c.eis_emitted < n and times[c.eis_emitted] <= t_now:
            k = c.eis_emitted
            z = self._impedance(freqs[k])
            if tech == "peis":
                abs_e = one["Amplitude_Voltage"]
                abs_i = abs_e / abs(z)
            else:
                abs_i = one["Amplitude_Current"]
                abs_e = abs_i * abs(z)
            phase = cmath.phase(z)
            row = [
                f2u(freqs[k]),
                f2u(abs_e),
                f2u(abs_i),
                f2u(phase),
                f2u(c.E),
                f2u(1e-9),
                0,
                f2u(abs_e / 2),
                f2u(abs_i),
                f2u(0.0),
                f2u(0.0),
                0,
                0,
                f2u(times[k]),
            ]
            self._push(c, tech, 1, row)
            c.eis_emitted += 1
        c.t_done = min(t_now, times[-1])
        if c.eis_emitted >= n:
            c.state = STOP


class FakeBLFind:
    """blfind stand-in: reports one SP-300 on USB0."""

    def __getitem__(self, name: str) -> Any:
        def entry(*args: Any) -> int:
            return 0

        entry.__name__ = name
        return entry


_SIM: FakeEClib | None = None


def install(**kwargs: Any) -> FakeEClib:
    """Create the fake DLL and import easy_biologic against it (once per process)."""
    global _SIM
    sim = FakeEClib(**kwargs)
    if _SIM is not None:
        _SIM.__dict__.update(sim.__dict__)  # easy-biologic keeps the first DLL object
        return _SIM
    _SIM = sim

    def fake_windll(path: str, *args: Any, **kwargs: Any) -> Any:
        base = os.path.basename(str(path)).lower()
        if base.startswith("eclib"):
            return sim
        if base.startswith("blfind"):
            return FakeBLFind()
        raise OSError(f"fake_eclib has no {base}")

    had = hasattr(ctypes, "WinDLL")
    old_windll = getattr(ctypes, "WinDLL", None)
    old_system = platform.system
    ctypes.WinDLL = fake_windll  # type: ignore[attr-defined]
    platform.system = lambda: "Windows"
    try:
        importlib.import_module("easy_biologic")
    finally:
        platform.system = old_system
        if had:
            ctypes.WinDLL = old_windll  # type: ignore[attr-defined]
        else:
            del ctypes.WinDLL  # type: ignore[attr-defined]
    return sim
