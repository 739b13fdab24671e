"""SP-300 data words -> points (`labctl_drivers.biologic.decode`), against words built here
independently of the decoder: singles with ``struct.pack('<f')``, ticks split by hand."""

from __future__ import annotations

import cmath
import logging
import math
import struct

import numpy as np
import pytest

from labctl_drivers.biologic import decode as decode_module
from labctl_drivers.biologic.decode import (
    SMALL_ROWS,
    decode,
    decode_series,
    decode_series_vectorised,
    decode_spectrum,
)
from labctl_drivers.biologic.eclib import DataInfo
from labctl_drivers.errors import GarbledReply


def sgl(x: float) -> int:
    """The 32-bit word of a single, as the instrument stores it."""
    return struct.unpack("<I", struct.pack("<f", x))[0]


def back(x: float) -> float:
    """x as a single (what the instrument can represent)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def ticks(n: int) -> list[int]:
    return [n // 2**32, n % 2**32]


def info(tech: int, rows: int, cols: int, process: int = 0, start: float = 0.0) -> DataInfo:
    return DataInfo(0, rows, cols, 0, tech, process, 0, start)


def words(rows: list[list[int]]) -> np.ndarray:
    return np.frombuffer(struct.pack(f"<{sum(map(len, rows))}I", *[w for r in rows for w in r]),
                         dtype="<u4")  # read-only, as a buffer from the DLL or the wire is


def test_ocv_rows() -> None:
    tb = 20e-6
    n = [0, 50_000, 2**32 + 7]  # the last needs t_high: 85 899.35 s
    rows = [[*ticks(k), sgl(2.9 + 0.001 * j)] for j, k in enumerate(n)]
    s = decode_series(words(rows), info(100, 3, 3, start=12.5), tb)
    assert s.t_s.dtype == np.float64
    assert list(s.t_s) == [12.5 + tb * k for k in n]  # exact in float64
    assert list(s.E_V) == [back(2.9), back(2.901), back(2.902)]
    assert list(s.I_A) == [0.0] * 3 and s.cycle is None


@pytest.mark.parametrize("tech", [101, 102, 155, 157])
def test_ca_cp_limit_rows(tech: int) -> None:
    tb = 34e-6
    rows = [[*ticks(k * 1000), sgl(3.0 - 0.01 * k), sgl(-1e-3 * (k + 1)), k // 2]
            for k in range(200)]  # a full 1000-word buffer
    s = decode_series(words(rows), info(tech, 200, 5), tb)
    assert len(s) == 200
    assert s.t_s == pytest.approx([tb * 1000 * k for k in range(200)], rel=1e-15)
    assert list(s.E_V) == [back(3.0 - 0.01 * k) for k in range(200)]
    assert list(s.I_A) == [back(-1e-3 * (k + 1)) for k in range(200)]
    assert list(s.cycle) == [k // 2 for k in range(200)]


def test_cv_has_current_before_potential() -> None:
    rows = [[*ticks(1000 * k), sgl(1e-4 * k), sgl(2.0 + 0.01 * k), 1] for k in range(4)]
    s = decode_series(words(rows), info(103, 4, 5, start=1.0), 45e-6)
    assert list(s.I_A) == [back(1e-4 * k) for k in range(4)]
    assert list(s.E_V) == [back(2.0 + 0.01 * k) for k in range(4)]
    assert s.t_s == pytest.approx([1.0 + 0.045 * k for k in range(4)])


def test_eis_dc_rows() -> None:
    rows = [[*ticks(0), sgl(3.1), sgl(2e-6)]]
    s = decode_series(words(rows), info(104, 1, 4), 24e-6)
    assert (s.E_V[0], s.I_A[0]) == (back(3.1), back(2e-6))


def test_impedance_rows() -> None:
    freqs = [1e5, 1e3, 10.0]
    zs = [complex(20, -3), complex(60, -45), complex(119, -1)]
    rows = []
    for k, (f, z) in enumerate(zip(freqs, zs)):
        abs_i = 1e-4
        rows.append([sgl(f), sgl(abs(z) * abs_i), sgl(abs_i), sgl(cmath.phase(z)), sgl(3.0),
                     sgl(1e-9), 0, sgl(0.5), sgl(1e-12), sgl(0.0), sgl(0.0), 0, 0,
                     sgl(0.5 * (k + 1))])
    sp = decode_spectrum(words(rows), info(107, 3, 14, process=1, start=100.0))
    assert list(sp.frequency_Hz) == [back(f) for f in freqs]
    assert sp.Z_ohm == pytest.approx(zs, rel=1e-6)
    assert list(sp.t_s) == [100.5, 101.0, 101.5]
    assert list(sp.E_V) == [back(3.0)] * 3 and list(sp.I_A) == [back(1e-9)] * 3


def test_zero_current_gives_nan_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    row = [sgl(50.0), sgl(0.01), sgl(0.0), sgl(-0.3), 0, 0, 0, 0, 0, 0, 0, 0, 0, sgl(2.0)]
    good = [sgl(60.0), sgl(0.01), sgl(1e-4), sgl(0.0), 0, 0, 0, 0, 0, 0, 0, 0, 0, sgl(3.0)]
    with caplog.at_level(logging.WARNING):
        sp = decode_spectrum(words([row, good]), info(104, 2, 14, process=1))
    assert math.isnan(sp.Z_ohm[0].real) and math.isnan(sp.Z_ohm[0].imag)
    assert sp.Z_ohm[1] == pytest.approx(100.0)
    assert "|I| = 0 at 50 Hz" in caplog.text


def test_nan_start_time_counts_as_zero() -> None:
    s = decode_series(words([[*ticks(50_000), sgl(1.0)]]), info(100, 1, 3, start=math.nan),
                      20e-6)
    assert s.t_s[0] == 1.0


def test_buffer_dispatch() -> None:
    assert decode(words([]), info(155, 0, 0), 34e-6) is None  # no rows
    assert decode(words([[1, 2]]), info(150, 1, 2), 20e-6) is None  # LOOP: no data rows
    one = [sgl(1.0)] * 14
    assert len(decode(words([one]), info(104, 1, 14, process=1), 24e-6)) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("inf,n_words", [
    (info(102, 2, 4), 8),  # CP rows have 5 columns
    (info(100, 4, 3), 9),  # fewer words than rows
    (info(999, 1, 3), 3),  # unknown technique
    (info(104, 1, 14, process=2), 14),  # no such process
])
def test_garbled_buffers_are_refused(inf: DataInfo, n_words: int) -> None:
    with pytest.raises(GarbledReply):
        decode(np.zeros(n_words, np.uint32), inf, 20e-6)


def test_only_the_rows_are_read() -> None:
    """The DLL's buffer holds 1000 words; only NbRows·NbCols of them are data."""
    buf = np.full(1000, sgl(9.9), dtype=np.uint32)
    buf[:6] = [*ticks(10), sgl(1.5), *ticks(20), sgl(2.5)]
    s = decode_series(buf, info(100, 2, 3), 1.0)
    assert list(s.t_s) == [10.0, 20.0] and list(s.E_V) == [1.5, 2.5]


def test_tick_words_are_never_read_as_singles() -> None:
    """A t_low word can be a signalling-NaN bit pattern (every ~40 h at 34 µs): decoding must
    not turn it into a float (an FP-invalid warning for every such buffer)."""
    import warnings

    row = [0, 0x7F800001, sgl(1.0), sgl(2e-3), 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = decode_series(words([row]), info(155, 1, 5), 34e-6)
    assert s.t_s[0] == 0x7F800001 * 34e-6 and s.E_V[0] == 1.0


def test_consecutive_buffers_decode_together() -> None:
    """Buffers of one technique execution, concatenated with NbRows their total, decode to the
    concatenation of their separate decodings (how the adapter decodes a drain)."""
    a = [[*ticks(10 * k), sgl(1.0 + k), sgl(-1e-3), 0] for k in range(200)]
    b = [[*ticks(10 * k), sgl(2.0 + k), sgl(-2e-3), 1] for k in range(200, 230)]
    one = decode_series(words(a + b), info(155, 230, 5, start=7.0), 34e-6)
    sa = decode_series(words(a), info(155, 200, 5, start=7.0), 34e-6)
    sb = decode_series(words(b), info(155, 30, 5, start=7.0), 34e-6)
    assert np.array_equal(one.t_s, np.concatenate([sa.t_s, sb.t_s]))
    assert np.array_equal(one.E_V, np.concatenate([sa.E_V, sb.E_V]))
    assert np.array_equal(one.I_A, np.concatenate([sa.I_A, sb.I_A]))


#: Single bit patterns that a cast could treat specially: ±0, ±inf, quiet and signalling NaNs
#: (with payloads), the smallest subnormal, the largest finite single.
SPECIAL_SINGLES = [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7FC12345, 0x7F800001,
                   0xFFA00001, 0x00000001, 0x7F7FFFFF, 0x80800000]
TIME_SERIES = sorted(key for key, dt in decode_module._ROWS.items() if "t_high" in dt.names)


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize("layout", TIME_SERIES, ids=[f"{t}-{p}" for t, p in TIME_SERIES])
def test_small_batches_decode_as_the_vectorised_reference(layout: tuple[int, int]) -> None:
    """Up to SMALL_ROWS rows `decode_series` takes its struct path; the vectorised decoder is
    the reference, and both must agree bit for bit (NaN payloads included) on random words,
    on special single bit patterns, on tick counts beyond 2**53 and on every StartTime."""
    tech, process = layout
    dtype = decode_module._ROWS[layout]
    cols = dtype.itemsize // 4
    singles = [k for k, name in enumerate(dtype.names) if dtype.fields[name][0].kind == "f"]
    rng = np.random.default_rng(tech)
    taken: list[int] = []
    real = decode_module._decode_series_small

    def small(*args):  # type: ignore[no-untyped-def]
        taken.append(args[2])
        return real(*args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode_module, "_decode_series_small", small)
        for trial in range(60):
            n = 1 + trial % SMALL_ROWS
            w = rng.integers(0, 2**32, size=(n, cols), dtype=np.uint64).astype(np.uint32)
            if trial % 3 == 0:  # realistic ticks (below 2**53) and singles
                w[:, 0] = rng.integers(0, 2**20, size=n)
                for k in singles:
                    w[:, k] = np.float32(rng.normal(0.0, 2.0, size=n)).view(np.uint32)
            if trial % 3 == 1:
                for k in singles:
                    w[:, k] = rng.choice(SPECIAL_SINGLES, size=n)
            start = [0.0, math.nan, 12.5, -0.0, 1e9 + 0.1, 3.7e-5][trial % 6]
            tb = [20e-6, 34e-6, float(np.float32(24e-6)), 1.0, 45e-6][trial % 5]
            inf = DataInfo(0, n, cols, 2, tech, process, 1, start)
            got = decode_series(w.reshape(-1), inf, tb)
            with np.errstate(invalid="ignore"):  # numpy flags its cast of a signalling NaN
                want = decode_series_vectorised(decode_module._rows(w.reshape(-1), inf), inf,
                                                tb)
            for a, b in ((got.t_s, want.t_s), (got.E_V, want.E_V), (got.I_A, want.I_A)):
                assert a.dtype == b.dtype == np.float64 and a.shape == b.shape == (n,)
                assert _bits(a) == _bits(b)
            assert (got.cycle is None) == (want.cycle is None)
            if got.cycle is not None:
                assert np.array_equal(got.cycle, want.cycle) and got.cycle.dtype == np.uint32
    assert taken == [1 + t % SMALL_ROWS for t in range(60)]  # the struct path did the work


def test_more_rows_than_a_small_batch_take_the_vectorised_decoder() -> None:
    rows = [[*ticks(10 * k), sgl(1.0), sgl(2e-3), 0] for k in range(SMALL_ROWS + 1)]
    got = decode_series(words(rows), info(155, SMALL_ROWS + 1, 5), 34e-6)
    want = decode_series_vectorised(decode_module._rows(words(rows), info(155, SMALL_ROWS + 1, 5)),
                                    info(155, SMALL_ROWS + 1, 5), 34e-6)
    assert _bits(got.t_s) == _bits(want.t_s) and len(got) == SMALL_ROWS + 1
