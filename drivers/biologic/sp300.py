"""BioLogic SP-300 over easy-biologic's lower layers (BiologicDevice + ec_lib + data_parser).

Why not `BiologicProgram.run()` / `ProgramRunner` (biologic.md §8): they call `asyncio.run()`,
install signal handlers, poll at a fixed 1 s with one `BL_GetData` per channel, never stop the
instrument on abort, and `ProgramRunner` disconnects the shared device under other threads.
This adapter instead loads one DLL technique per labctl `Technique`, starts the channel, and
drains the instrument buffer on every `poll()` until it is empty.

easy-biologic refuses to import anywhere but Windows and needs BioLogic's `EClib64.dll`, so it
is imported lazily in `connect()`: `import labctl_drivers.biologic` works on Linux and fails only when
an adapter is actually used without the DLL (with an `InstrumentError` that says so).

Bugs of easy-biologic 0.4.0 worked around here (biologic.md §4.2):

* `DataInfo` lacks `_pack_=4`: we re-read the same bytes through a correctly packed view, so
  `StartTime` is right.
* `BiologicDevice.connect()` turns every firmware-load error into `AttributeError: 'EcError'
  object has no attribute 'value'`, and `EcError(code)` raises `ValueError` for codes it does not
  know (-300...-307): both are unwrapped back to the DLL code and raised as `BiologicDLLError`.
* `data_parser.parse` calls `TechniqueId(info.TechniqueID)`, which has no CPLIMIT (155): we hand
  it a stand-in id with the same row layout (the fields are always passed explicitly).
* Programs never stop the channel on abort: `stop()` always calls `BL_StopChannel`.
* `|I| = 0` on an EIS row would divide by zero in easy-biologic's field helpers: we never use
  them and compute Z ourselves, giving NaN for such a row.
* PEIS/GEIS `sweep` crashes in base_programs: we build the DLL parameter dicts ourselves and
  never send `sweep` (the DLL default is logarithmic spacing).
* CV `Scan_Rate` is mV/s in the DLL (easy-biologic documents V/s): we convert.
"""

from __future__ import annotations

import ctypes
import logging
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_fixed

from labctl_drivers.interfaces import (
    ChannelReading,
    ChannelState,
    ImpedancePoint,
    InstrumentError,
    PointBatch,
)
from labctl_drivers.techniques import (
    ConstantCurrent,
    ConstantVoltage,
    CyclicVoltammetry,
    GalvanoEIS,
    OpenCircuit,
    PotentioEIS,
    Technique,
    eis_frequencies,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# DLL error codes that mean "busy, ask again" rather than a fault (DevPkg §5.4): another caller
# holds the DLL mutex (-12), a connection is being set up (-2), or an ack is pending (-202).
TRANSIENT_CODES = frozenset({-2, -12, -202})

ERROR_NAMES = {
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
    -405: "ERR_TECH_MEMFULL",
}

# SP-300 technique timebases (biologic.md §6.1): the longest step is tb * 2**31.
_TIMEBASE_S = {
    "ocv": 20e-6,
    "cp": 21e-6,
    "ca": 21e-6,
    "cplimit": 34e-6,
    "calimit": 34e-6,
    "peis": 24e-6,
    "geis": 24e-6,
    "cv": 45e-6,
}
_MAX_LIMIT_STEPS = 20  # CPLIMIT/CALIMIT parameter arrays hold 20 steps

# What the DLL reports in DataInfo.TechniqueID for each technique we load.
_DLL_ID = {
    "ocv": 100,
    "ca": 101,
    "cp": 102,
    "cv": 103,
    "peis": 104,
    "geis": 107,
    "calimit": 157,
    "cplimit": 155,
}
# The TechniqueId easy-biologic's parser is given: the same, except that its enum lacks CPLIMIT
# (155), whose rows have CP's layout.
_PARSE_ID = {**_DLL_ID, "cplimit": _DLL_ID["cp"]}

_STATE_RUN = 1
_IRANGE_AUTO = 12
_MAX_GETDATA_PER_POLL = 200  # bound one poll's drain loop (200 x 1000 words)


class BiologicDLLError(InstrumentError):
    """A non-zero EClib return code; `code` is the DLL's own number (DevPkg §5.4)."""

    def __init__(self, code: int, action: str) -> None:
        self.code = code
        self.action = action
        super().__init__(
            f"SP-300 {action} failed: DLL error {code} ({ERROR_NAMES.get(code, 'unknown')})"
        )


class _PackedDataInfo(ctypes.Structure):
    """DataInfo as the DLL writes it: 4-byte packing, StartTime at offset 28 (DevPkg §5.1)."""

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
    """Re-read easy-biologic's unpacked DataInfo bytes with the DLL's real layout."""
    raw = ctypes.string_at(ctypes.addressof(info), ctypes.sizeof(_PackedDataInfo))
    return _PackedDataInfo.from_buffer_copy(raw)


# ---------------------------------------------------------------------------------------------
# lazy import of easy-biologic

_EB: SimpleNamespace | None = None


def load_easy_biologic() -> SimpleNamespace:
    """Import easy-biologic on first use; turn every platform failure into one clear error."""
    global _EB
    if _EB is None:
        try:
            import easy_biologic.lib.data_parser as dp
            import easy_biologic.lib.ec_lib as ecl
            from easy_biologic import device
            from easy_biologic.lib import ec_errors
        except (ImportError, OSError, AttributeError) as exc:
            raise InstrumentError(
                "The SP-300 driver needs easy-biologic (pip install 'labctl[biologic]', with "
                "setuptools<81) on Windows with BioLogic's EClib DLL; it cannot load here: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        _EB = SimpleNamespace(device=device, ecl=ecl, dp=dp, EcError=ec_errors.EcError)
    return _EB


_CODE_IN_MESSAGE = re.compile(r"\((-?\d+)\)")
_UNKNOWN_CODE = re.compile(r"Unknown error value (-?\d+)")


def dll_code_of(exc: BaseException) -> int | None:
    """Recover the DLL code from easy-biologic's exceptions, including its broken paths."""
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


# ---------------------------------------------------------------------------------------------
# technique translation


@dataclass(frozen=True)
class DllTechnique:
    """One technique as the DLL wants it: .ecc base name, labelled parameters, data layout."""

    name: str  # "ocv", "cplimit", ... (easy-biologic appends "4.ecc" for the SP-300 family)
    params: dict[str, Any]
    kind: str  # "points" | "eis"
    charge_bound: bool = False  # duration was shortened to honour a charge limit


def _i_range(i_max_A: float) -> int:
    """Smallest SP-300 current range (100 pA * 10**n) that holds `i_max_A`; Auto is not allowed
    for CP/CPLIMIT/CALIMIT/GEIS."""
    for n in range(11):
        if abs(i_max_A) <= 100e-12 * 10**n:
            return n
    raise ValueError(f"|I| = {i_max_A} A exceeds the SP-300's 1 A range (booster not supported)")


def _e_range(*values: float | None) -> int:
    """±2.5 V, ±5 V or ±10 V, the tightest that contains all known potentials (±10 V if any is
    unknown, because clipping is worse than resolution)."""
    if not values or any(v is None for v in values):
        return 2
    top = max(abs(float(v)) for v in values if v is not None)
    return 0 if top <= 2.5 else 1 if top <= 5.0 else 2


def _limit_config(variable: int, greater: bool) -> int:
    """Test-config bits (DevPkg §7.36): bit0 active, bit1 logic (OR=0), bit2 '>', bits5+ var."""
    return 1 | (int(greater) << 2) | (variable << 5)


def _split_duration(duration_s: float, name: str, max_steps: int) -> list[float]:
    """Split a hold longer than tb*2**31 into equal steps (biologic.md §4.2 item 15)."""
    if duration_s <= 0:
        raise ValueError(f"duration must be positive, got {duration_s}")
    max_step = _TIMEBASE_S[name] * 2**31 * 0.99
    n = max(1, math.ceil(duration_s / max_step))
    if n > max_steps:
        raise ValueError(f"{duration_s} s is too long for one {name.upper()} technique; split it")
    return [duration_s / n] * n


def _limit_params(
    name: str,
    level_key: str,
    level: float,
    durations: list[float],
    tests: list[tuple[int, float]],
    record: dict[str, float],
    i_range: int,
    e_range: int,
) -> dict[str, Any]:
    n = len(durations)
    params: dict[str, Any] = {
        level_key: [float(level)] * n,
        "vs_initial": [False] * n,
        "Duration_step": [float(d) for d in durations],
        "Step_number": n - 1,
        **record,
        "N_Cycles": 0,
        "Exit_Cond": [2] * n,  # ExitCondition.STOP: a limit ends the whole technique
        "I_Range": i_range,
        "E_Range": e_range,
    }
    for k in range(3):
        cfg, val = tests[k] if k < len(tests) else (0, 0.0)
        params[f"Test{k + 1}_Config"] = [int(cfg)] * n
        params[f"Test{k + 1}_Value"] = [float(val)] * n
    return params


def translate(tech: Technique) -> DllTechnique:
    """Map a labctl technique to exactly one SP-300 DLL technique with on-instrument limits."""
    if isinstance(tech, OpenCircuit):
        if tech.duration_s > _TIMEBASE_S["ocv"] * 2**31:
            raise ValueError("OCV longer than 11.9 h cannot be one DLL technique; split it")
        rec = tech.recording
        return DllTechnique(
            "ocv",
            {
                "Rest_time_T": float(tech.duration_s),
                "Record_every_dE": float(rec.every_dE_V or 0.0),
                "Record_every_dT": float(rec.every_dt_s),
                "E_Range": _e_range(None),
            },
            "points",
        )

    if isinstance(tech, ConstantCurrent):
        duration = float(tech.duration_s)
        charge_bound = False
        if tech.charge_limit_C is not None:
            if tech.current_A == 0:
                raise ValueError("a charge limit needs a non-zero current")
            # At constant current charge is |I|*t, so the instrument's own step timer *is* the
            # charge limit; CPLIMIT's test variables (E, AUX1, AUX2, I) have no charge.
            t_q = float(tech.charge_limit_C) / abs(tech.current_A)
            if t_q < duration:
                duration, charge_bound = t_q, True
        tests: list[tuple[int, float]] = []
        if tech.E_max_V is not None:
            tests.append((_limit_config(0, greater=True), float(tech.E_max_V)))
        if tech.E_min_V is not None:
            tests.append((_limit_config(0, greater=False), float(tech.E_min_V)))
        rec = tech.recording
        params = _limit_params(
            "cplimit",
            "Current_step",
            tech.current_A,
            _split_duration(duration, "cplimit", _MAX_LIMIT_STEPS),
            tests,
            {
                "Record_every_dT": float(rec.every_dt_s),
                "Record_every_dE": float(rec.every_dE_V or 0.0),
            },
            _i_range(tech.current_A),
            _e_range(tech.E_min_V, tech.E_max_V),
        )
        return DllTechnique("cplimit", params, "points", charge_bound)

    if isinstance(tech, ConstantVoltage):
        durations = _split_duration(float(tech.duration_s), "calimit", _MAX_LIMIT_STEPS)
        rec = {"Record_every_dT": float(tech.recording.every_dt_s), "Record_every_dI": 0.0}
        if tech.I_limit_A is not None:
            lim = abs(float(tech.I_limit_A))
            tests = [(_limit_config(3, greater=True), lim), (_limit_config(3, greater=False), -lim)]
            params = _limit_params(
                "calimit",
                "Voltage_step",
                tech.voltage_V,
                durations,
                tests,
                rec,
                _i_range(lim),
                _e_range(tech.voltage_V),
            )
            return DllTechnique("calimit", params, "points")
        # No |I| limit: plain CA, which (unlike CALIMIT) may auto-range the current.
        n = len(durations)
        return DllTechnique(
            "ca",
            {
                "Voltage_step": [float(tech.voltage_V)] * n,
                "vs_initial": [False] * n,
                "Duration_step": durations,
                "Step_number": n - 1,
                **rec,
                "N_Cycles": 0,
                "I_Range": _IRANGE_AUTO,
                "E_Range": _e_range(tech.voltage_V),
            },
            "points",
        )

    if isinstance(tech, CyclicVoltammetry):
        v = [float(x) for x in tech.vertices_V]
        if not 1 <= len(v) <= 2:
            raise ValueError("cv4.ecc sweeps E_start -> E1 -> E2; give one or two vertices")
        e1, e2 = (v[0], float(tech.E_start_V)) if len(v) == 1 else (v[0], v[1])
        es = float(tech.E_start_V)
        rate_mV_s = float(tech.scan_rate_V_s) * 1000.0  # the DLL's Scan_Rate is mV/s
        return DllTechnique(
            "cv",
            {
                "vs_initial": [False] * 5,
                "Voltage_step": [es, e1, e2, es, es],  # Ei, E1, E2, Ei, Ef
                "Scan_Rate": [rate_mV_s] * 5,
                "Scan_number": 2,
                "Record_every_dE": float(tech.record_every_dE_V),
                "Average_over_dE": False,
                "N_Cycles": max(0, int(tech.cycles) - 1),  # N_Cycles counts *extra* cycles
                "Begin_measuring_I": 0.5,
                "End_measuring_I": 1.0,
                "I_Range": _IRANGE_AUTO,
                "E_Range": _e_range(es, e1, e2),
            },
            "points",
        )

    if isinstance(tech, (PotentioEIS, GalvanoEIS)):
        # Frequency_number is the TOTAL count; derive it exactly as eis_frequencies() does so
        # the engine's expected frequency list and the instrument's agree.
        n_f = len(eis_frequencies(tech.f_high_Hz, tech.f_low_Hz, tech.points_per_decade))
        common: dict[str, Any] = {
            "Duration_step": 0.0,
            "Step_number": 0,
            "Record_every_dT": 1.0,
            "Initial_frequency": float(tech.f_high_Hz),
            "Final_frequency": float(tech.f_low_Hz),
            "Frequency_number": int(n_f),
            "Average_N_times": int(tech.averages),
            "Correction": False,
            "Wait_for_steady": 0.0,  # a number of periods (not a fraction, easy-biologic doc bug)
        }  # no "sweep": easy-biologic crashes on it and the DLL default is logarithmic
        if isinstance(tech, PotentioEIS):
            relative = tech.E_dc_V is None
            e_dc = 0.0 if relative else float(tech.E_dc_V)  # type: ignore[arg-type]
            return DllTechnique(
                "peis",
                {
                    "vs_initial": relative,
                    "vs_final": relative,
                    "Initial_Voltage_step": e_dc,
                    "Final_Voltage_step": e_dc,
                    "Record_every_dI": 0.0,
                    "Amplitude_Voltage": float(tech.amplitude_V),
                    "I_Range": _IRANGE_AUTO,
                    "E_Range": _e_range(None if relative else e_dc),
                    **common,
                },
                "eis",
            )
        amp = abs(float(tech.amplitude_A))
        return DllTechnique(
            "geis",
            {
                "vs_initial": False,
                "vs_final": False,
                "Initial_Current_step": float(tech.I_dc_A),
                "Final_Current_step": float(tech.I_dc_A),
                "Record_every_dE": 0.0,
                "Amplitude_Current": amp,
                # amplitude <= 50 % of the range, and the DC part must fit as well
                "I_Range": _i_range(max(2 * amp, abs(tech.I_dc_A) + amp)),
                "E_Range": _e_range(None),
                **common,
            },
            "eis",
        )

    raise TypeError(f"SP-300 adapter cannot run {type(tech).__name__}")


# ---------------------------------------------------------------------------------------------
# device and channels


class EasyBiologicSP300:
    """`Potentiostat` for a BioLogic SP-300 through easy-biologic (Windows + EClib DLL)."""

    simulated = False

    def __init__(
        self,
        address: str = "USB0",
        *,
        name: str = "SP-300",
        timeout_s: int = 5,
        retry_attempts: int = 5,
        retry_wait_s: float = 0.05,
    ) -> None:
        self.name = name
        self.address = address
        self.timeout_s = int(timeout_s)
        self.retry_attempts = max(1, int(retry_attempts))
        self.retry_wait_s = retry_wait_s
        # The DLL serialises calls itself but answers -12 after its mutex timeout; one lock per
        # device keeps our own threads from provoking that.
        self._lock = threading.RLock()
        self._dev: Any = None
        self._channels: dict[int, SP300Channel] = {}
        self._plugged: list[int] = []

    # -- DLL call wrapper ----------------------------------------------------------------
    def call(self, action: str, fn: Callable[..., T], *args: Any) -> T:
        """Run one easy-biologic call: retry transient DLL codes (bounded), map errors."""

        def transient(exc: BaseException) -> bool:
            return isinstance(exc, BiologicDLLError) and exc.code in TRANSIENT_CODES

        def once() -> T:
            with self._lock:
                try:
                    return fn(*args)
                except InstrumentError:
                    raise
                except Exception as exc:
                    code = dll_code_of(exc)
                    if code is None:
                        raise InstrumentError(
                            f"SP-300 {action} failed: {type(exc).__name__}: {exc}"
                        ) from exc
                    raise BiologicDLLError(code, action) from exc

        retrying = Retrying(
            stop=stop_after_attempt(self.retry_attempts),
            wait=wait_fixed(self.retry_wait_s),
            retry=retry_if_exception(transient),
            reraise=True,
        )
        return retrying(once)

    # -- Potentiostat ---------------------------------------------------------------------
    def connect(self) -> None:
        if self._dev is not None:
            return
        eb = load_easy_biologic()
        dev = eb.device.BiologicDevice(self.address, timeout=self.timeout_s, populate_info=False)
        try:
            self.call("connect", dev.connect)
        except InstrumentError:
            # BiologicDevice.connect() may fail *after* BL_Connect succeeded (firmware load);
            # release the connection it left behind before reporting.
            if dev.idn is not None:
                try:
                    eb.ecl.disconnect(dev.idn)
                except Exception:
                    log.warning("SP-300 disconnect after failed connect also failed", exc_info=True)
            raise
        if not eb.ecl.is_in_SP300_family(dev.kind):
            eb.ecl.disconnect(dev.idn)
            raise InstrumentError(
                f"{self.address} is a {dev.kind.name}, not an SP-300-family device"
            )
        self._dev = dev
        self._plugged = [i for i, p in enumerate(dev.plugged) if p]
        log.info("SP-300 %s connected, channels %s", self.address, self._plugged)

    def disconnect(self) -> None:
        """Open every channel's circuit, then release the DLL connection."""
        if self._dev is None:
            return
        errors: list[InstrumentError] = []
        for ch in self._plugged:
            try:
                self.channel(ch).stop()
            except InstrumentError as exc:
                errors.append(exc)
        try:
            self.call("disconnect", self._dev.disconnect)
        finally:
            self._dev = None
            self._channels.clear()
        if errors:
            raise errors[0]

    def channel(self, index: int) -> SP300Channel:
        dev = self.device
        if index not in self._plugged:
            raise InstrumentError(f"SP-300 channel {index} is not plugged (have {self._plugged})")
        if index not in self._channels:
            self._channels[index] = SP300Channel(self, index)
        _ = dev
        return self._channels[index]

    @property
    def n_channels(self) -> int:
        return len(self._plugged)

    @property
    def device(self) -> Any:
        """The connected easy-biologic `BiologicDevice`."""
        if self._dev is None:
            raise InstrumentError("SP-300 is not connected; call connect() first")
        return self._dev


class SP300Channel:
    """One SP-300 channel: load one technique, start, poll the buffer, stop (open circuit)."""

    def __init__(self, sp300: EasyBiologicSP300, index: int) -> None:
        self.index = index
        self._sp = sp300
        self._tech: Technique | None = None
        self._dll: DllTechnique | None = None
        self._started = False
        self._stopped_by_us = False
        self._ended = False
        self._end_reason: str | None = None
        self._state = ChannelState.IDLE
        self._last_E: float | None = None
        self._last_I: float | None = None
        self._elapsed = 0.0

    def load(self, technique: Technique) -> None:
        eb = load_easy_biologic()
        dev = self._sp.device
        values = self._sp.call("get values", dev.get_values, self.index)
        if values.State == _STATE_RUN:
            raise InstrumentError(
                f"SP-300 channel {self.index} is running; stop() it before load()"
            )
        dll = translate(technique)
        self._sp.call(f"load {dll.name}", dev.load_technique, self.index, dll.name, dll.params)
        self._tech, self._dll = technique, dll
        self._started = self._stopped_by_us = self._ended = False
        self._end_reason = None
        self._state = ChannelState.IDLE
        self._last_E = self._last_I = None
        self._elapsed = 0.0
        _ = eb

    def start(self) -> None:
        if self._dll is None:
            raise InstrumentError(f"SP-300 channel {self.index}: nothing loaded")
        self._sp.call("start", self._sp.device.start_channel, self.index)
        self._started = True
        self._state = ChannelState.RUNNING

    def stop(self) -> None:
        """Open the circuit now: always sends BL_StopChannel, whatever we think the state is."""
        if self._sp._dev is None:
            # Never connected (or already disconnected, which stopped every channel first).
            self._state = ChannelState.IDLE
            return
        try:
            self._sp.call("stop", self._sp.device.stop_channel, self.index)
        except InstrumentError:
            self._state = ChannelState.ERROR
            raise
        if self._started and not self._ended:
            self._stopped_by_us = True
        self._state = ChannelState.IDLE

    def poll(self) -> ChannelReading:
        eb = load_easy_biologic()
        if self._dll is None or not self._started:
            return ChannelReading(
                state=self._state, end_reason=self._end_reason, elapsed_s=self._elapsed
            )
        dll = self._dll
        t_parts: list[float] = []
        e_parts: list[float] = []
        i_parts: list[float] = []
        eis: list[ImpedancePoint] = []
        run_state = _STATE_RUN
        values = None
        for _ in range(_MAX_GETDATA_PER_POLL):
            data, info_raw, values = self._sp.call(
                "get data", eb.ecl.get_data, self._sp.device.idn, self.index
            )
            run_state = values.State
            info = repack_data_info(info_raw)
            if info.NbRows == 0:
                break
            if info.TechniqueID != _DLL_ID[dll.name]:
                raise InstrumentError(
                    f"SP-300 channel {self.index}: data from technique {info.TechniqueID}, "
                    f"expected {_DLL_ID[dll.name]} ({dll.name})"
                )
            self._decode(eb, dll, data, info, values, t_parts, e_parts, i_parts, eis)
        else:
            log.warning(
                "SP-300 channel %s: buffer not drained after %s reads",
                self.index,
                _MAX_GETDATA_PER_POLL,
            )
        if values is not None:
            self._elapsed = float(values.ElapsedTime)
            if values.OptErr:
                self._state = ChannelState.ERROR
                self._end_reason = f"option_error_{values.OptErr}"
        if e_parts:
            self._last_E, self._last_I = e_parts[-1], i_parts[-1]
        if self._state is not ChannelState.ERROR:
            if run_state == _STATE_RUN and not self._stopped_by_us:
                self._state = ChannelState.RUNNING
            else:
                self._state = ChannelState.IDLE
                if not self._ended:
                    self._ended = True
                    self._end_reason = self._why_ended()
        points = PointBatch(
            np.asarray(t_parts, float), np.asarray(e_parts, float), np.asarray(i_parts, float)
        )
        return ChannelReading(
            state=self._state,
            points=points,
            impedance=eis,
            end_reason=self._end_reason,
            elapsed_s=self._elapsed,
        )

    # -- helpers ------------------------------------------------------------------------
    def _decode(
        self,
        eb: SimpleNamespace,
        dll: DllTechnique,
        data: Any,
        info: _PackedDataInfo,
        values: Any,
        t: list[float],
        e: list[float],
        i: list[float],
        eis: list[ImpedancePoint],
    ) -> None:
        fields = getattr(eb.dp.SP300_Fields, dll.name.upper())
        parse_info = SimpleNamespace(
            NbRows=info.NbRows,
            NbCols=info.NbCols,
            TechniqueID=_PARSE_ID[dll.name],
            ProcessIndex=info.ProcessIndex,
            StartTime=info.StartTime,
        )
        rows = self._sp.call("parse data", eb.dp.parse, data, parse_info, fields)
        if dll.kind == "eis" and info.ProcessIndex == 1:
            for r in rows:
                if r.abs_current == 0 or not math.isfinite(r.abs_current):
                    log.warning(
                        "SP-300 channel %s: |I| = 0 at %s Hz; Z is NaN", self.index, r.frequency
                    )
                    z_re = z_im = float("nan")
                else:
                    mod = r.abs_voltage / r.abs_current
                    z_re, z_im = (
                        mod * math.cos(r.impedance_phase),
                        mod * math.sin(r.impedance_phase),
                    )
                eis.append(
                    ImpedancePoint(
                        t_s=float(info.StartTime + r.time),
                        frequency_Hz=float(r.frequency),
                        Z_re_ohm=z_re,
                        Z_im_ohm=z_im,
                        E_V=float(r.voltage),
                        I_A=float(r.current),
                    )
                )
            return
        for r in rows:
            t.append(float(eb.dp.calculate_time(r.t_high, r.t_low, info, values)))
            e.append(float(r.voltage))
            i.append(float(getattr(r, "current", 0.0)))

    def _why_ended(self) -> str:
        """Name the limit that ended the technique, from what the instrument last reported."""
        if self._stopped_by_us:
            return "stopped"
        tech, e, cur = self._tech, self._last_E, self._last_I
        if isinstance(tech, ConstantCurrent) and e is not None:
            if tech.E_max_V is not None and e >= tech.E_max_V:
                return "E_max"
            if tech.E_min_V is not None and e <= tech.E_min_V:
                return "E_min"
            if self._dll is not None and self._dll.charge_bound:
                return "charge"
        if (
            isinstance(tech, ConstantVoltage)
            and tech.I_limit_A is not None
            and cur is not None
            and abs(cur) >= abs(tech.I_limit_A)
        ):
            return "I_limit"
        if isinstance(tech, (CyclicVoltammetry, PotentioEIS, GalvanoEIS)):
            return "complete"
        return "time"
