"""SP-300 data decoding: labctl's adapter against easy-biologic's own per-point parsing.

Data: full CPLIMIT buffers as `BL_GetData` returns them (200 rows of 5 words = 1000 words:
t_high, t_low, Ewe, I, cycle), 50 distinct buffers.

* labctl: `labctl_drivers.biologic.decode.decode_series` on each buffer (numpy over the whole
  buffer: the singles are a float32 view of the words). Also the whole adapter path,
  `SP300Channel.poll()` draining the same buffers from an in-memory EClib (locking, retry
  wrapper, technique attribution; it decodes the consecutive buffers of one technique
  execution together, so a drain of many buffers costs few numpy calls).
* easy-biologic 0.4.0: what its programs do per buffer, `data_parser.parse(data, info,
  fields)` (one `BL_ConvertNumericIntoSingle` per single word, then one namedtuple per row)
  plus `data_parser.calculate_time` per row. easy-biologic imports only on Windows, with
  BioLogic's DLL bound at import: it is imported here against the tests' fake DLL
  (tests/drivers/fake_eclib.py, the same trick as tests/drivers/test_sp300_fake_dll.py), and
  `BL_ConvertNumericIntoSingle` is then replaced by a minimal Python stand-in that
  reinterprets the 32 bits (struct pack/unpack), about what a ctypes call into the real DLL
  costs. As a lower bound on easy-biologic's own cost, the same parse is also timed with a
  stand-in that converts nothing ("free DLL"), so the ratio against it holds however fast the
  real DLL call is.

Both decoders are checked to agree on a buffer before timing. Timing: interleaved repeats
(ours, then the baseline, next to each other), the median of the per-pair rates and of the
per-pair ratios, because the VM's speed drifts. Run: python benchmarks/sp300_decode.py
"""

from __future__ import annotations

import ctypes
import statistics
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "drivers"))

from labctl_drivers.biologic.adapter import SP300  # noqa: E402
from labctl_drivers.biologic.decode import decode_series  # noqa: E402
from labctl_drivers.biologic.eclib import (  # noqa: E402
    ChannelInfo,
    CurrentValues,
    DataBuffer,
    DataInfo,
    DeviceInfo,
    EccParam,
)
from labctl_drivers.techniques import ConstantCurrent, Recording  # noqa: E402

ROWS, COLS = 200, 5
N_BUFFERS = 50
TB = 34e-6  # CPLIMIT
REPEATS = 15
OURS_PASSES = 20  # buffers decoded per timing = OURS_PASSES * N_BUFFERS
BASE_BUFFERS = 10  # buffers parsed by easy-biologic per timing


def make_buffers() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = []
    t0 = 0
    for _ in range(N_BUFFERS):
        ticks = t0 + np.arange(ROWS, dtype=np.uint64) * 29412  # 1 s records
        t0 = int(ticks[-1]) + 29412
        E = (3.0 + 0.01 * rng.standard_normal(ROWS)).astype(np.float32)
        current = np.full(ROWS, -1e-3, dtype=np.float32)
        w = np.empty((ROWS, COLS), dtype=np.uint32)
        w[:, 0] = ticks >> np.uint64(32)
        w[:, 1] = ticks & np.uint64(0xFFFFFFFF)
        w[:, 2] = E.view(np.uint32)
        w[:, 3] = current.view(np.uint32)
        w[:, 4] = 0
        out.append(w.ravel())
    return out


def load_easy_biologic() -> SimpleNamespace:
    import fake_eclib

    fake_eclib.install(n_channels=1)
    import easy_biologic.lib.data_parser as dp
    import easy_biologic.lib.ec_lib as ecl

    return SimpleNamespace(dp=dp, ecl=ecl)


def reinterpret(num: Any, f_ref: Any) -> int:
    """Stand-in for BL_ConvertNumericIntoSingle: the 32 bits as a single."""
    f_ref._obj.value = struct.unpack("<f", struct.pack("<I", num.value))[0]
    return 0


def no_conversion(num: Any, f_ref: Any) -> int:
    """Stand-in that converts nothing: easy-biologic's cost with a free DLL call."""
    return 0


def time_ours(buffers: Sequence[np.ndarray]) -> float:
    info = DataInfo(0, ROWS, COLS, 0, 155, 0, 0, 0.0)
    t = time.perf_counter()
    for _ in range(OURS_PASSES):
        for w in buffers:
            decode_series(w, info, TB)
    return OURS_PASSES * len(buffers) * ROWS / (time.perf_counter() - t)


def time_easy_biologic(eb: SimpleNamespace, raw: Sequence[Any], stand_in: Any) -> float:
    eb.ecl.BL_ConvertNumericIntoSingle = stand_in
    fields = eb.dp.SP300_Fields.CP  # CPLIMIT rows have CP's layout (its TechniqueId has no 155)
    info = SimpleNamespace(NbRows=ROWS, NbCols=COLS, TechniqueID=102, ProcessIndex=0,
                           StartTime=0.0)
    values = SimpleNamespace(TimeBase=TB)
    t = time.perf_counter()
    for data in raw[:BASE_BUFFERS]:
        rows = eb.dp.parse(data, info, fields)
        for r in rows:
            eb.dp.calculate_time(r.t_high, r.t_low, info, values)
    return BASE_BUFFERS * ROWS / (time.perf_counter() - t)


class ReplayEClib:
    """An in-memory EClib that hands out the benchmark's buffers, for the poll() path (its
    records are built once, so that what is timed is the adapter, not this stand-in)."""

    simulated = True

    def __init__(self, buffers: Sequence[np.ndarray]) -> None:
        self.buffers = list(buffers)
        self.queue: list[np.ndarray] = []
        self.running = False
        tb = float(np.float32(TB))
        self._values = {run: CurrentValues(State=int(run), TimeBase=tb) for run in (0, 1)}
        self._full = DataInfo(0, ROWS, COLS, 0, 155, 0, 0, 0.0)
        self._empty = DataInfo(0, 0, 0, 0, 0, 0, 0, 0.0)
        self._no_words = np.empty(0, np.uint32)

    def values(self) -> CurrentValues:
        return self._values[int(self.running)]

    def connect(self, address: str, timeout_s: int) -> tuple[int, DeviceInfo]:
        return 1, DeviceInfo(16, NumberOfChannels=1)

    def disconnect(self, idn: int) -> None: ...
    def test_connection(self, idn: int) -> bool:
        return True

    def channels_plugged(self, idn: int) -> list[int]:
        return [0]

    def channel_info(self, idn: int, channel: int) -> ChannelInfo:
        return ChannelInfo(0, FirmwareCode=5, MaxIRange=10)

    def load_firmware(self, idn: int, channels: Sequence[int], force: bool = False) -> list[int]:
        return [0 for _ in channels]

    def load_technique(self, idn: int, channel: int, ecc_file: str, params: Sequence[EccParam],
                       first: bool, last: bool) -> None: ...
    def start_channel(self, idn: int, channel: int) -> None:
        self.running = True

    def stop_channel(self, idn: int, channel: int) -> None:
        self.running = False

    def current_values(self, idn: int, channel: int) -> CurrentValues:
        return self.values()

    def get_data(self, idn: int, channel: int) -> DataBuffer:
        if not self.queue:
            return DataBuffer(self._no_words, self._empty, self.values())
        return DataBuffer(self.queue.pop(), self._full, self.values())


def time_poll(buffers: Sequence[np.ndarray]) -> float:
    lib = ReplayEClib(buffers)
    dev = SP300(lib, max_reads_per_poll=len(buffers) + 1)
    dev.connect()
    ch = dev.channel(0)
    ch.load(ConstantCurrent(-1e-3, 3600.0, E_min_V=2.0, recording=Recording(every_dt_s=1.0)))
    ch.start()
    n = 0
    t = time.perf_counter()
    for _ in range(OURS_PASSES):
        lib.queue = list(reversed(buffers))
        n += len(ch.poll().points)
    return n / (time.perf_counter() - t)


def main() -> None:
    buffers = make_buffers()
    eb = load_easy_biologic()
    raw = []
    for w in buffers:
        data = (ctypes.c_uint32 * 1000)()
        ctypes.memmove(data, w.ctypes.data, w.nbytes)
        raw.append(data)
    # the two decoders agree (values as singles, times within float64 rounding)
    eb.ecl.BL_ConvertNumericIntoSingle = reinterpret
    info = SimpleNamespace(NbRows=ROWS, NbCols=COLS, TechniqueID=102, ProcessIndex=0,
                           StartTime=0.0)
    rows = eb.dp.parse(raw[3], info, eb.dp.SP300_Fields.CP)
    ours = decode_series(buffers[3], DataInfo(0, ROWS, COLS, 0, 155, 0, 0, 0.0), TB)
    assert np.array_equal(ours.E_V, [r.voltage for r in rows])
    assert np.array_equal(ours.I_A, [r.current for r in rows])
    t_eb = [eb.dp.calculate_time(r.t_high, r.t_low, info, SimpleNamespace(TimeBase=TB))
            for r in rows]
    assert np.allclose(ours.t_s, t_eb, rtol=1e-12, atol=0)

    for _ in range(2):  # warm-up
        time_ours(buffers)
        time_poll(buffers)
        time_easy_biologic(eb, raw, reinterpret)
    ours_r, poll_r, base_r, free_r = [], [], [], []
    for _ in range(REPEATS):
        ours_r.append(time_ours(buffers))
        base_r.append(time_easy_biologic(eb, raw, reinterpret))
        poll_r.append(time_poll(buffers))
        free_r.append(time_easy_biologic(eb, raw, no_conversion))
    med = statistics.median
    print(f"SP-300 data decoding, {ROWS}-row CPLIMIT buffers ({ROWS * COLS} words), median of "
          f"{REPEATS} interleaved repeats")
    print(f"  labctl decode_series         {med(ours_r):14,.0f} points/s")
    print(f"  labctl SP300Channel.poll     {med(poll_r):14,.0f} points/s")
    print(f"  easy-biologic parse+time     {med(base_r):14,.0f} points/s  (DLL conversion "
          "stand-in)")
    print(f"  easy-biologic, free DLL call {med(free_r):14,.0f} points/s  (lower bound)")
    for ours_name, mine in (("decode", ours_r), ("poll  ", poll_r)):
        for base_name, base in (("", base_r), (" (free DLL call)", free_r)):
            ratio = med(o / b for o, b in zip(mine, base))
            print(f"  ratio {ours_name} / easy-biologic{base_name:17s} {ratio:7.0f}x")
    print("  goals: >= 1,000,000 points/s and >= 100x easy-biologic")


if __name__ == "__main__":
    main()
