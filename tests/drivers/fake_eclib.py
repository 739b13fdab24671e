"""A fake BioLogic EClib/blfind DLL, so easy-biologic's own ctypes layer runs on Linux.

Written from scratch for labctl's tests. `install()` makes `ctypes.WinDLL` return a Python object
that serves the `BL_*` entry points easy-biologic binds at import time, and makes
`platform.system()` say "Windows" *only while* `easy_biologic` is imported; both are restored
afterwards. Everything above the DLL boundary (easy_biologic.lib.ec_lib's ctypes structures,
parameter encoding and calls) is then easy-biologic's unmodified code, under labctl's
`EasyBiologicEClib` and `SP300` adapter.

The fake honours the binary contract the real DLL has with ec_lib:
* out-parameters arrive as `ctypes.byref(...)` objects (`._obj` is the target);
* technique parameters arrive as an `EccParams` structure by value, floats as IEEE-754 bits;
* `BL_GetData` fills a uint32[1000] word buffer (one technique execution and one process per
  call) and writes `DataInfo` with the DLL's 4-byte packing, so easy-biologic's unpacked struct
  misreads StartTime exactly as on Windows;
* |I| is never 0 on EIS rows; phase is in radians.

It runs what is loaded as the instrument would, lazily when called: linked techniques in order,
CPLIMIT/CALIMIT steps, N_Cycles, limit tests with their Exit_Cond (0 next step, 1 next
technique, 2 stop), and LOOP (``loop_N_times`` jumps back to ``protocol_number``). Its cell is
deliberately simple and analytic, so the tests can compute what must come out:

* rest: E = rest potential + 1e-4 V/s · (time in the OCV);
* constant current I: E = rest + R·I + dE/dq·q, q the charge passed since start;
* constant voltage V: I = (V − rest)/R · (1 + t/100 s) (a growing short), t the time in the CA;
* CV: I = (E − rest)/R along the sweep;
* EIS: Randles-like 20 Ω + (100 Ω || 1 µF).

A limit test fires at the exact crossing of the analytic E(t) or I(t), which in general lies
*between* two records: the technique ends there and nothing is recorded at that instant (the
case that made the old adapter report "time"). Records are taken at k·Record_every_dT from each
step's start (k ≥ 0, or k ≥ 1 with `record_t0=False`), and a step that runs its whole duration
records its end.

`CurrentValues.TimeBase` is the timebase of the technique running now (or of the last one),
also when a buffer of an earlier technique is returned, and an empty read's DataInfo is all
zeros (`empty_info="zeros"`) or names the running technique (`empty_info="running"`): the two
behaviours an adapter must survive.

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
    "ocv": 20e-6, "cp": 21e-6, "ca": 21e-6, "cplimit": 34e-6, "calimit": 34e-6,
    "peis": 24e-6, "geis": 24e-6, "cv": 45e-6, "loop": 20e-6,
}
TECH_ID = {
    "ocv": 100, "ca": 101, "cp": 102, "cv": 103, "peis": 104, "geis": 107, "loop": 150,
    "cplimit": 155, "calimit": 157,
}
STOP, RUN = 0, 1
KERNEL = 5
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
    """Rows of one technique execution and process waiting in the instrument's memory."""

    index: int
    tech: str
    process: int
    loop: int
    start: float  # StartTime: sequence time at which this execution started
    rows: list[list[int]]


@dataclass
class SimChannel:
    index: int
    ocv_V: float
    firmware: int = KERNEL
    techniques: list[tuple[str, dict[str, dict[int, Any]]]] = field(default_factory=list)
    state: int = STOP
    t_start: float = 0.0  # clock time at BL_StartChannel
    queue: deque[Segment] = field(default_factory=deque)
    E: float = 0.0
    I: float = 0.0
    q_C: float = 0.0
    running: int = -1  # index of the technique running now (or the last one)
    tech_t0: float = 0.0  # sequence time at which it started
    elapsed: float = 0.0  # its time (frozen once the sequence ended)
    runner: Any = None
    loop_left: dict[int, int] = field(default_factory=dict)
    executions: dict[int, int] = field(default_factory=dict)
    stop_calls: int = 0


class FakeEClib:
    """State of the simulated SP-300 plus the `BL_*` implementations."""

    def __init__(
        self,
        n_channels: int = 2,
        start_time_offset: float = 0.0,
        R_ohm: float = 50.0,
        dEdq_V_per_C: float = 2.0,
        firmware: tuple[int, ...] | None = None,
        empty_info: str = "zeros",
        record_t0: bool = True,
    ) -> None:
        self.now = 0.0
        self.connected: set[int] = set()
        self.channels = [SimChannel(i, 2.90 + 0.01 * i) for i in range(n_channels)]
        for c, fw in zip(self.channels, firmware or ()):
            c.firmware = fw
        self.n_channels = n_channels
        self.start_time_offset = start_time_offset
        self.R_ohm = R_ohm
        self.dEdq = dEdq_V_per_C
        self.empty_info = empty_info
        self.record_t0 = record_t0
        self.calls: dict[str, int] = {}
        self.faults: dict[str, deque[int | None]] = {}
        self.firmware_loads: list[list[int]] = []

    # -- test controls --------------------------------------------------------------------
    def advance(self, dt: float) -> None:
        self.now += dt

    def fail(self, name: str, code: int, times: int = 1, after: int = 0) -> None:
        """Make `times` calls of BL_<name> return `code` instead of working, after `after`
        calls that work."""
        self.faults.setdefault(name, deque()).extend([None] * after + [code] * times)

    def params(self, ch: int, k: int = 0) -> dict[str, dict[int, Any]]:
        return self.channels[ch].techniques[k][1]

    def names(self, ch: int) -> list[str]:
        return [name for name, _ in self.channels[ch].techniques]

    def run_on(self, ch: int) -> None:
        """Leave channel `ch` running, as a crashed predecessor would have."""
        self.channels[ch].state = RUN

    # -- dispatch -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        impl = getattr(self, "_" + name, None)
        if impl is None:
            raise AttributeError(f"function '{name}' not found")

        def entry(*args: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            pending = self.faults.get(name)
            if pending:
                code = pending.popleft()
                if code is not None:
                    return code
            return impl(*args)

        entry.__name__ = name  # ec_lib names its *_async wrappers after this
        return entry

    # -- hardware -------------------------------------------------------------------------
    def _BL_Connect(self, addr_ref: Any, timeout: Any, idn_ref: Any, info_ref: Any) -> int:
        address = addr_ref._obj.value.decode()
        if address.startswith("NOPE"):
            return -201
        # never reuse an id: a stale connection must not disconnect the new one
        global _NEXT_IDN
        _NEXT_IDN += 1
        idn = _NEXT_IDN
        self.connected.add(idn)
        idn_ref._obj.value = idn
        info = info_ref._obj
        info.DeviceCode = 5 if address.startswith("VMP3") else 16  # KBIO_DEV_SP300
        info.RAMSize, info.CPU = 128, 1
        info.NumberOfChannels = self.n_channels
        info.NumberOfSlots = 2
        info.FirmwareVersion, info.FirmwareDate_yyyy = 1140, 2024
        info.FirmwareDate_mm, info.FirmwareDate_dd = 3, 14
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
        self, idn: Any, active_ref: Any, results_ref: Any, length: Any, gauge: Any, force: Any,
        bin_file: Any, xlx_file: Any,
    ) -> int:
        if _v(idn) not in self.connected:
            return -1
        chs = [i for i, on in enumerate(active_ref._obj) if on]
        self.firmware_loads.append(chs)
        for i in chs:
            c = self.channels[i]
            c.firmware, c.state, c.techniques = KERNEL, STOP, []  # loading firmware resets
            c.queue.clear()
            results_ref._obj[i] = 0
        return 0

    def _BL_IsChannelPlugged(self, idn: Any, ch: Any) -> bool:
        return _v(ch) < self.n_channels

    def _BL_GetChannelsPlugged(self, idn: Any, arr_ref: Any, size: Any) -> int:
        arr = arr_ref._obj
        for i in range(min(_v(size), self.n_channels)):
            arr[i] = 1
        return 0

    def _BL_GetChannelInfos(self, idn: Any, ch: Any, info_ref: Any) -> int:
        c = self.channels[_v(ch)]
        self._simulate(c)
        info = info_ref._obj
        info.Channel, info.FirmwareCode, info.Zboard = c.index, c.firmware, 1
        info.FirmwareVersion, info.BoardSerialNumber = 5300, 1000 + c.index
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
        self._simulate(c)
        if c.state == RUN:
            return -13
        fname = fname_ref._obj.value.decode()
        base = os.path.splitext(fname)[0]
        if not base.endswith("4"):  # SP-300 family uses the *4.ecc files
            return -401
        base = base[:-1]
        if base not in TECH_ID:
            return -400
        decoded = self._decode_params(params)
        if "sweep" in decoded:
            return -4  # labctl must never send it
        if base == "loop" and not 0 <= decoded["protocol_number"][0] < len(c.techniques):
            return -4
        if _v(first):
            c.techniques.clear()
        c.techniques.append((base, decoded))
        return 0

    def _BL_UpdateParameters(self, idn: Any, ch: Any, index: Any, params: Any,
                             fname_ref: Any) -> int:
        c = self.channels[_v(ch)]
        for label, vals in self._decode_params(params).items():
            c.techniques[_v(index)][1].setdefault(label, {}).update(vals)
        return 0

    def _start(self, ch: int) -> int:
        c = self.channels[ch]
        if not c.techniques:
            return -7
        c.state, c.t_start = RUN, self.now
        c.q_C, c.E, c.I = 0.0, c.ocv_V, 0.0
        c.loop_left, c.executions = {}, {}
        self._begin(c, 0, 0.0)
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
            if c.state == RUN:
                c.elapsed = self.now - c.t_start - c.tech_t0
            c.state, c.I = STOP, 0.0
        return 0

    def _BL_StopChannel(self, idn: Any, ch: Any) -> int:
        return self._stop(_v(ch))

    def _BL_StopChannels(self, idn: Any, active_ref: Any, results_ref: Any, n: Any) -> int:
        for i, on in enumerate(active_ref._obj):
            if on:
                self._stop(i)
        return 0

    # -- data -----------------------------------------------------------------------------
    def _timebase(self, c: SimChannel) -> float:
        if c.running < 0 or not c.techniques:
            return 0.0
        return TIMEBASE[c.techniques[c.running][0]]

    def _fill_values(self, c: SimChannel, v: Any) -> None:
        v.State, v.MemFilled = c.state, 4 * sum(len(s.rows) * len(s.rows[0]) for s in c.queue)
        v.TimeBase = self._timebase(c)  # the running technique's, whatever the data's
        v.Ewe, v.I = c.E, c.I
        v.EweRangeMin, v.EweRangeMax = -10.0, 10.0
        v.ElapsedTime = (self.now - c.t_start - c.tech_t0) if c.state == RUN else c.elapsed
        v.IRange = 8

    def _BL_GetCurrentValues(self, idn: Any, ch: Any, v_ref: Any) -> int:
        if _v(idn) not in self.connected:
            return -1
        c = self.channels[_v(ch)]
        if c.firmware != KERNEL:
            return -308
        self._simulate(c)
        self._fill_values(c, v_ref._obj)
        return 0

    def _BL_GetData(self, idn: Any, ch: Any, buf_ref: Any, info_ref: Any, v_ref: Any) -> int:
        if _v(idn) not in self.connected:
            return -1
        c = self.channels[_v(ch)]
        self._simulate(c)
        info = _PackedDataInfo.from_address(ctypes.addressof(info_ref._obj))  # DLL's layout
        ctypes.memset(ctypes.addressof(info), 0, ctypes.sizeof(_PackedDataInfo))
        self._fill_values(c, v_ref._obj)
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
            info.TechniqueIndex, info.TechniqueID = seg.index, TECH_ID[seg.tech]
            info.loop, info.StartTime = seg.loop, self.start_time_offset + seg.start
        elif self.empty_info == "running" and c.running >= 0:
            info.TechniqueIndex = c.running
            info.TechniqueID = TECH_ID[c.techniques[c.running][0]]
            info.StartTime = self.start_time_offset + c.tech_t0
        return 0

    def _BL_ConvertNumericIntoSingle(self, u: Any, f_ref: Any) -> int:
        f_ref._obj.value = u2f(_v(u))
        return 0

    # -- the sequence ---------------------------------------------------------------------
    def _begin(self, c: SimChannel, index: int, t0: float) -> None:
        name, p = c.techniques[index]
        c.running, c.tech_t0 = index, t0
        loop = c.executions.get(index, 0)
        c.executions[index] = loop + 1
        one = {k: v.get(0) for k, v in p.items()}
        if name in ("ocv", "ca", "cp", "calimit", "cplimit"):
            c.runner = _Steps(self, c, index, name, p, one, t0, loop)
        elif name == "cv":
            c.runner = _CV(self, c, index, one, p, t0, loop)
        else:
            c.runner = _EIS(self, c, index, name, one, t0, loop)

    def _next(self, c: SimChannel, t_end: float, stop: bool) -> None:
        """The running technique ended at sequence time `t_end`: go on, loop, or stop."""
        c.elapsed = t_end - c.tech_t0
        nxt = c.running + 1
        while not stop and nxt < len(c.techniques) and c.techniques[nxt][0] == "loop":
            lp = c.techniques[nxt][1]
            left = c.loop_left.get(nxt, lp["loop_N_times"][0])
            if left != 0:
                c.loop_left[nxt] = left - 1
                nxt = lp["protocol_number"][0]
            else:
                c.loop_left.pop(nxt, None)
                nxt += 1
        if stop or nxt >= len(c.techniques):
            c.state, c.I = STOP, 0.0
            c.runner = None
            return
        self._begin(c, nxt, t_end)

    def _simulate(self, c: SimChannel) -> None:
        """Run the loaded sequence up to `now`."""
        while c.state == RUN and c.runner is not None:
            t_seq = self.now - c.t_start
            ended = c.runner.advance(t_seq - c.tech_t0)
            if ended is None:
                return
            t_rel, stop = ended
            self._next(c, c.tech_t0 + t_rel, stop)

    def _push(self, seg_key: tuple[int, str, int, int, float], c: SimChannel,
              row: list[int]) -> None:
        index, tech, process, loop, start = seg_key
        last = c.queue[-1] if c.queue else None
        if last is not None and (last.index, last.tech, last.process, last.loop, last.start) \
                == seg_key:
            last.rows.append(row)
        else:
            c.queue.append(Segment(index, tech, process, loop, start, [row]))

    @staticmethod
    def t_words(t: float, tb: float) -> list[int]:
        n = round(t / tb)
        return [n >> 32, n & 0xFFFFFFFF]

    def impedance(self, f: float) -> complex:
        """Randles-like cell: 20 Ω + (100 Ω || 1 µF)."""
        w = 2 * math.pi * f
        return 20.0 + 100.0 / (1 + 1j * w * 100.0 * 1e-6)


class _Steps:
    """OCV, CA, CP, CALIMIT, CPLIMIT: held steps, cycled, with limit tests."""

    def __init__(self, sim: FakeEClib, c: SimChannel, index: int, name: str,
                 p: dict[str, dict[int, Any]], one: dict[str, Any], t0: float,
                 loop: int) -> None:
        self.sim, self.c, self.name = sim, c, name
        self.key = (index, name, 0, loop, t0)
        self.tb = TIMEBASE[name]
        self.dt = one["Record_every_dT"]
        if name == "ocv":
            self.steps = [(0.0, one["Rest_time_T"], [], 0)]
            self.cycles = 1
        else:
            level = "Voltage_step" if name in ("ca", "calimit") else "Current_step"
            n = one["Step_number"] + 1
            self.steps = []
            for i in range(n):
                tests = []
                if name in ("calimit", "cplimit"):
                    for k in (1, 2, 3):
                        cfg = p[f"Test{k}_Config"][i]
                        if cfg & 1:
                            tests.append((bool(cfg & 4), cfg >> 5, p[f"Test{k}_Value"][i]))
                exit_cond = p["Exit_Cond"][i] if "Exit_Cond" in p else 0
                self.steps.append((p[level][i], p["Duration_step"][i], tests, exit_cond))
            self.cycles = one["N_Cycles"] + 1
        self.step, self.cycle = 0, 0
        self.step_t0 = 0.0  # technique time at which the step started
        self.k0 = 0 if sim.record_t0 else 1  # first record index of a step
        self.k = self.k0  # next record index within the step
        self.rest_E = c.E if name != "ocv" else c.ocv_V + sim.dEdq * c.q_C
        self.q0 = c.q_C

    def _state_at(self, t: float) -> tuple[float, float]:
        """(E, I) at technique time t within the current step."""
        sim, c = self.sim, self.c
        level = self.steps[self.step][0]
        if self.name == "ocv":
            return self.rest_E + 1e-4 * t, 0.0
        if self.name in ("ca", "calimit"):
            i0 = (level - self.rest_E) / sim.R_ohm
            return level, i0 * (1 + t / 100.0)
        q = self.q0 + level * (t - self.step_t0)
        return c.ocv_V + sim.R_ohm * level + sim.dEdq * q, level

    def _crossing(self, t_from: float, t_to: float) -> float | None:
        """Earliest technique time in [t_from, t_to] at which a test of the step fires."""
        tests = self.steps[self.step][2]
        if not tests:
            return None
        e0, i0 = self._state_at(t_from)
        e1, i1 = self._state_at(t_to)
        best = None
        for greater, var, value in tests:
            a, b = (e0, e1) if var == 0 else (i0, i1)
            if (a > value) if greater else (a < value):
                t = t_from
            elif (b > value) if greater else (b < value):
                t = t_from + (value - a) / (b - a) * (t_to - t_from)
            else:
                continue
            best = t if best is None else min(best, t)
        return best

    def _record(self, t: float) -> None:
        E, current = self._state_at(t)
        self.c.E, self.c.I = E, current
        if self.name == "ocv":
            row = [*FakeEClib.t_words(t, self.tb), f2u(E)]
        else:
            row = [*FakeEClib.t_words(t, self.tb), f2u(E), f2u(current), self.cycle]
        self.sim._push(self.key, self.c, row)

    def _settle(self, t: float) -> None:
        E, current = self._state_at(t)
        self.c.E, self.c.I = E, current
        if self.name in ("cp", "cplimit"):
            self.c.q_C = self.q0 + self.steps[self.step][0] * (t - self.step_t0)

    def advance(self, t_now: float) -> tuple[float, bool] | None:
        while True:
            _level, duration, _tests, exit_cond = self.steps[self.step]
            step_end = self.step_t0 + duration
            t_to = min(t_now, step_end)
            hit = self._crossing(self.step_t0, t_to)
            last = hit if hit is not None else t_to
            while self.step_t0 + self.k * self.dt <= last + 1e-9:
                self._record(self.step_t0 + self.k * self.dt)
                self.k += 1
            if hit is not None:
                self._settle(hit)
                if exit_cond == 0:
                    self._next_step(hit)
                    continue
                return hit, exit_cond == 2
            if t_now < step_end:
                self._settle(t_now)
                return None
            if self.k == self.k0 or (self.k - 1) * self.dt < duration - 1e-9:
                self._record(step_end)  # a full step records its end
            self._settle(step_end)
            if not self._next_step(step_end):
                return step_end, False

    def _next_step(self, t: float) -> bool:
        if self.name in ("cp", "cplimit"):
            self.q0 += self.steps[self.step][0] * (t - self.step_t0)
        self.step += 1
        if self.step >= len(self.steps):
            self.cycle += 1
            if self.cycle >= self.cycles:
                return False
            self.step = 0
        self.step_t0, self.k = t, self.k0
        return True


class _CV:
    """CV: Ei -> E1 -> E2 -> Ei per cycle, N_Cycles more cycles, then -> Ef; a point every dE."""

    def __init__(self, sim: FakeEClib, c: SimChannel, index: int, one: dict[str, Any],
                 p: dict[str, dict[int, Any]], t0: float, loop: int) -> None:
        self.sim, self.c = sim, c
        self.key = (index, "cv", 0, loop, t0)
        v = p["Voltage_step"]
        rate = p["Scan_Rate"][1] / 1000.0  # mV/s -> V/s
        legs: list[tuple[float, float, int]] = []
        for cyc in range(one["N_Cycles"] + 1):
            legs += [(v[0], v[1], cyc), (v[1], v[2], cyc), (v[2], v[3], cyc)]
        legs.append((v[3], v[4], one["N_Cycles"]))
        self.points: list[tuple[float, float, int]] = []  # (t, E, cycle)
        t = 0.0
        dE = one["Record_every_dE"]
        for a, b, cyc in legs:
            n = round(abs(b - a) / dE)
            for j in range(1, n + 1):
                self.points.append((t + j * dE / rate, a + math.copysign(j * dE, b - a), cyc))
            t += abs(b - a) / rate
        self.duration = t
        self.emitted = 0

    def advance(self, t_now: float) -> tuple[float, bool] | None:
        sim, c = self.sim, self.c
        while self.emitted < len(self.points) and self.points[self.emitted][0] <= t_now:
            t, E, cyc = self.points[self.emitted]
            current = (E - c.ocv_V) / sim.R_ohm
            c.E, c.I = E, current
            sim._push(self.key, c, [*FakeEClib.t_words(t, TIMEBASE["cv"]), f2u(current),
                                    f2u(E), cyc])
            self.emitted += 1
        if t_now >= self.duration:
            return self.duration, False
        return None


class _EIS:
    """PEIS/GEIS: a DC point (process 0) at t = 0, then one row per frequency (process 1)."""

    def __init__(self, sim: FakeEClib, c: SimChannel, index: int, name: str,
                 one: dict[str, Any], t0: float, loop: int) -> None:
        self.sim, self.c, self.name, self.one = sim, c, name, one
        self.index, self.loop, self.t0 = index, loop, t0
        f_hi, f_lo, n = one["Initial_frequency"], one["Final_frequency"], one["Frequency_number"]
        self.freqs = [f_hi * (f_lo / f_hi) ** (k / (n - 1)) for k in range(n)] if n > 1 \
            else [f_hi]
        self.times = []
        t_f = 0.0
        for f in self.freqs:  # each frequency takes max(1/f, 0.1) s
            t_f += max(1.0 / f, 0.1)
            self.times.append(t_f)
        self.emitted = -1

    def advance(self, t_now: float) -> tuple[float, bool] | None:
        sim, c, one = self.sim, self.c, self.one
        if self.emitted < 0:
            self.emitted = 0
            sim._push((self.index, self.name, 0, self.loop, self.t0), c,
                      [*FakeEClib.t_words(0.0, TIMEBASE[self.name]), f2u(c.E), f2u(1e-9)])
        while self.emitted < len(self.freqs) and self.times[self.emitted] <= t_now:
            k = self.emitted
            z = sim.impedance(self.freqs[k])
            if self.name == "peis":
                abs_e = one["Amplitude_Voltage"]
                abs_i = abs_e / abs(z)
            else:
                abs_i = one["Amplitude_Current"]
                abs_e = abs_i * abs(z)
            row = [f2u(self.freqs[k]), f2u(abs_e), f2u(abs_i), f2u(cmath.phase(z)), f2u(c.E),
                   f2u(1e-9), 0, f2u(abs_e / 2), f2u(abs_i), f2u(0.0), f2u(0.0), 0, 0,
                   f2u(self.times[k])]
            sim._push((self.index, self.name, 1, self.loop, self.t0), c, row)
            self.emitted += 1
        if self.emitted >= len(self.freqs):
            return self.times[-1], False
        return None


class FakeBLFind:
    """blfind stand-in: reports one SP-300 on USB0."""

    def __getitem__(self, name: str) -> Any:
        def entry(*args: Any) -> int:
            return 0

        entry.__name__ = name
        return entry


_SIM: FakeEClib | None = None


def install(**kwargs: Any) -> FakeEClib:
    """Create the fake DLL and import easy_biologic against it (once per process); later calls
    reset the same fake (easy-biologic keeps the first DLL object it bound)."""
    global _SIM
    sim = FakeEClib(**kwargs)
    if _SIM is not None:
        _SIM.__dict__.update(sim.__dict__)
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
