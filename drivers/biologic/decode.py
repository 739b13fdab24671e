"""SP-300 data words -> points, a whole `BL_GetData` buffer at a time (numpy, no per-row Python).

A buffer holds `NbRows` rows of `NbCols` 32-bit words of one technique and one process
(EC-Lab Development Package user's guide v6.04, §6 `BL_GetData` and §7 for each technique's
row layout). Each column is decoded for all rows at once:

* **time**: ``t_high``/``t_low`` are the two halves of a 64-bit count of timebase ticks since
  the technique started; t = StartTime + TimeBase·((t_high << 32) + t_low), in float64 (the
  user's guide §7 gives this formula with `CurrentValues.TimeBase` and `DataInfo.StartTime`).
  A NaN StartTime counts as 0, as easy-biologic's `calculate_time` does.
* **singles**: for the SP-300 family the words of E, I, frequency, ... are IEEE-754 single bit
  patterns. The user's guide documents the conversion of a data word into a single with
  `BL_ConvertNumericIntoSingle` (§6, data functions; the technique sections of §7 mark which
  columns are singles), and for the SP-300 family that call is a plain reinterpretation of the
  32 bits (as the ECC parameters' singles are, §5.1 `EccParam`). So the single columns are
  read as float32 straight from the words (a ``<f4`` field of the row dtype, the same as
  ``.view(np.float32)``) instead of ~600 DLL calls per buffer (easy-biologic's way).
  (VMP3-family boards encode differently; this adapter refuses them at connect.)
* integers (``cycle``) are the words themselves.

Row layouts (SP-300 family, user's guide §7):

====================================  ======================================================
OCV (100)                             t_high, t_low, Ewe
CA (101), CP (102), CALIMIT (157),    t_high, t_low, Ewe, I, cycle
CPLIMIT (155)
CV (103)                              t_high, t_low, I, Ewe, cycle
PEIS (104) / GEIS (107), process 0    t_high, t_low, Ewe, I
PEIS / GEIS, process 1 (14 words)     freq, |Ewe|, |I|, Phase_Zwe (rad), Ewe, I, –, |Ece|,
                                      |Ice|, Phase_Zce, Ece, –, –, t (single, s since the
                                      technique started)
LOOP (150)                            no data rows
====================================  ======================================================

Impedance: Z = |Ewe|/|I|·e^{i·Phase_Zwe}; a row with |I| = 0 gets Z = NaN (and a warning)
instead of a division by zero. The CE columns are not used (the guide says not to, on SP-300).

Each layout is a numpy structured dtype that spells the table's row out (`_ROWS`), so a buffer
is viewed as an array of rows with no copy and each column is converted once for all rows: the
decoder reads like the tables above, so there is no separate per-row reference decoder
(tests/drivers/test_sp300_decode.py checks it against words built independently with
`struct.pack('<f')`). Only the single columns are converted to floats: a tick word can be a
signalling-NaN bit pattern, which a cast would flag.

A 1 s poll brings one row, where each of those numpy calls costs a microsecond or more for one
value. Up to `SMALL_ROWS` rows, `decode_series` therefore unpacks the buffer with one `struct`
call (the same little-endian layout, ``I`` for a ``<u4`` field and ``f`` for a ``<f4`` one) and
does the same float64 operations, in the same order, on Python floats: the result is the same
to the bit (widening a single to a double is exact, and tick counts below 2**53 convert
exactly). The vectorised decoder stays the reference: tests/drivers/test_sp300_decode.py checks
that both agree bit for bit on every layout, on random words and on special bit patterns.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

import numpy as np

from labctl_drivers.biologic.eclib import DataInfo
from labctl_drivers.errors import GarbledReply

log = logging.getLogger(__name__)

_U, _F = "<u4", "<f4"  # a 32-bit word as an integer, as a single


def _row(*columns: tuple[str, str]) -> np.dtype:
    return np.dtype(list(columns))


_TICKS = (("t_high", _U), ("t_low", _U))
#: Row layouts by (TechniqueID, ProcessIndex), SP-300 family (user's guide §7).
_ROWS: dict[tuple[int, int], np.dtype] = {
    (100, 0): _row(*_TICKS, ("Ewe", _F)),  # OCV
    **{(tid, 0): _row(*_TICKS, ("Ewe", _F), ("I", _F), ("cycle", _U))
       for tid in (101, 102, 155, 157)},  # CA, CP, CPLIMIT, CALIMIT
    (103, 0): _row(*_TICKS, ("I", _F), ("Ewe", _F), ("cycle", _U)),  # CV: <I> before <Ewe>
    **{(tid, 0): _row(*_TICKS, ("Ewe", _F), ("I", _F)) for tid in (104, 107)},  # EIS DC part
    **{(tid, 1): _row(("freq", _F), ("abs_Ewe", _F), ("abs_I", _F), ("phase_Zwe", _F),
                      ("Ewe", _F), ("I", _F), ("unused_6", _U), ("abs_Ece", _F),
                      ("abs_Ice", _F), ("phase_Zce", _F), ("Ece", _F), ("unused_11", _U),
                      ("unused_12", _U), ("t", _F))
       for tid in (104, 107)},  # PEIS/GEIS impedance rows
}
#: Techniques that produce no data rows.
_NO_DATA = frozenset({150})  # LOOP


@dataclass(slots=True)
class Series:
    """Time-series rows of one buffer, in SI units (t since the sequence started).

    A plain slotted class, not a frozen one: it is built for every buffer, and a frozen
    dataclass's constructor costs a tenth of the decoding."""

    t_s: np.ndarray  # float64
    E_V: np.ndarray  # float64
    I_A: np.ndarray  # float64 (0 for OCV, which records no current)
    cycle: np.ndarray | None  # the cycle column (uint32 words); None where there is none

    def __len__(self) -> int:
        return int(self.t_s.shape[0])


@dataclass(slots=True)
class Spectrum:
    """Impedance rows of one buffer (one row per frequency)."""

    t_s: np.ndarray
    frequency_Hz: np.ndarray
    Z_ohm: np.ndarray  # complex128; NaN where |I| was 0
    E_V: np.ndarray
    I_A: np.ndarray

    def __len__(self) -> int:
        return int(self.t_s.shape[0])


def row_layout(info: DataInfo) -> np.dtype:
    """The row dtype of a buffer; GarbledReply for an unknown technique/process or a width
    that does not match it."""
    dtype = _ROWS.get((int(info.TechniqueID), int(info.ProcessIndex)))
    if dtype is None:
        raise GarbledReply(f"SP-300 data: no row layout for technique {info.TechniqueID} "
                           f"process {info.ProcessIndex}")
    if int(info.NbCols) * 4 != dtype.itemsize:
        raise GarbledReply(f"SP-300 data of technique {info.TechniqueID} process "
                           f"{info.ProcessIndex}: {info.NbCols} columns, expected "
                           f"{dtype.itemsize // 4}")
    return dtype


def is_spectrum(info: DataInfo) -> bool:
    """Whether a buffer holds impedance rows (PEIS/GEIS process 1)."""
    return int(info.ProcessIndex) == 1 and int(info.TechniqueID) in (104, 107)


def _words(words: np.ndarray, info: DataInfo) -> tuple[np.ndarray, np.dtype, int]:
    """The buffer's NbRows rows as contiguous uint32 words, with their row layout and count."""
    dtype = row_layout(info)
    n = int(info.NbRows)
    n_words = n * (dtype.itemsize // 4)
    if n < 0 or words.size < n_words:
        raise GarbledReply(f"SP-300 data: {words.size} words for {n} rows of "
                           f"{dtype.itemsize // 4}")
    flat = words[:n_words]
    if flat.dtype != np.uint32 or not flat.flags.c_contiguous:
        flat = np.ascontiguousarray(flat, dtype=np.uint32)
    return flat, dtype, n


def _rows(words: np.ndarray, info: DataInfo) -> np.ndarray:
    """The buffer as NbRows records of its row layout (a view, no copy)."""
    flat, dtype, _ = _words(words, info)
    return flat.view(dtype)


def _start(info: DataInfo) -> float:
    start = float(info.StartTime)
    return 0.0 if start != start else start  # NaN -> 0


def last_potential(words: np.ndarray, info: DataInfo) -> float:
    """Ewe of a buffer's last row, without decoding the rest."""
    rows = _rows(words, info)
    if not len(rows):
        raise GarbledReply("SP-300 data: a buffer without rows has no last potential")
    return float(rows["Ewe"][-1])


def decode_series(words: np.ndarray, info: DataInfo, timebase_s: float) -> Series:
    """Time-series rows (every technique but EIS process 1); `timebase_s` is
    `CurrentValues.TimeBase` as the instrument reported it with this buffer.

    `words` may also be several buffers of the same technique execution one after the other,
    with `info.NbRows` their total (the adapter decodes a drain that way: the numpy calls cost
    the same for 200 rows as for 20,000). Up to `SMALL_ROWS` rows go through
    `_decode_series_small` (module docstring), the same numbers for less overhead."""
    flat, dtype, n = _words(words, info)
    if "t_high" not in dtype.names:
        raise GarbledReply(f"SP-300 data of technique {info.TechniqueID} process "
                           f"{info.ProcessIndex} are not a time series")
    if 0 < n <= SMALL_ROWS:
        return _decode_series_small(flat, dtype, n, info, timebase_s)
    return decode_series_vectorised(flat.view(dtype), info, timebase_s)


def decode_series_vectorised(rows: np.ndarray, info: DataInfo, timebase_s: float) -> Series:
    """The reference decoder: every column converted for all `rows` (`_rows`) at once."""
    # ticks = (t_high << 32) + t_low, exact in float64 below 2**53 (~6000 years at 20 µs)
    t = rows["t_high"].astype(np.float64)
    t *= 4294967296.0
    t += rows["t_low"]
    t *= float(timebase_s)
    start = _start(info)
    if start:
        t += start
    fields = rows.dtype.fields
    E = rows["Ewe"].astype(np.float64)
    current = rows["I"].astype(np.float64) if "I" in fields else np.zeros(len(t))
    return Series(t, E, current, rows["cycle"] if "cycle" in fields else None)


#: Up to this many rows `decode_series` decodes with `struct` instead of numpy (a 1 s poll
#: brings one row; at 16 rows the two cost about the same).
SMALL_ROWS = 16


@dataclass(frozen=True, slots=True)
class _SmallLayout:
    """How `_decode_series_small` reads one row layout: a `struct` format per row count and
    the positions of the columns in a row."""

    row_format: str  # one row's struct codes, e.g. "IIffI"
    cols: int
    t_high: int
    t_low: int
    E: int
    I: int | None
    cycle: int | None


_SMALL_LAYOUTS: dict[np.dtype, _SmallLayout] = {}
_SMALL_STRUCTS: dict[tuple[str, int], struct.Struct] = {}


def _small_layout(dtype: np.dtype) -> _SmallLayout:
    layout = _SMALL_LAYOUTS.get(dtype)
    if layout is None:
        names = list(dtype.names or ())
        codes = "".join("f" if dtype.fields[n][0].kind == "f" else "I" for n in names)
        layout = _SMALL_LAYOUTS[dtype] = _SmallLayout(
            codes, len(names), names.index("t_high"), names.index("t_low"), names.index("Ewe"),
            names.index("I") if "I" in names else None,
            names.index("cycle") if "cycle" in names else None)
    return layout


def _decode_series_small(flat: np.ndarray, dtype: np.dtype, n: int, info: DataInfo,
                         timebase_s: float) -> Series:
    """`decode_series_vectorised` for a few rows (`flat`: their words, `_words`): one
    `struct.unpack_from`, the same float64 operations in the same order on Python floats,
    then one array per column."""
    layout = _small_layout(dtype)
    key = (layout.row_format, n)
    st = _SMALL_STRUCTS.get(key)
    if st is None:
        st = _SMALL_STRUCTS[key] = struct.Struct("<" + layout.row_format * n)
    values = st.unpack_from(flat)
    cols = layout.cols
    tb = float(timebase_s)
    start = _start(info)
    # the reference's t_high * 2**32, + t_low, * timebase, + start (when not 0), per row
    if n == 1:  # a 1 s poll's row
        t = [(values[layout.t_high] * 4294967296.0 + values[layout.t_low]) * tb]
    else:
        t = [(hi * 4294967296.0 + lo) * tb for hi, lo in
             zip(values[layout.t_high::cols], values[layout.t_low::cols])]
    if start:
        t = [x + start for x in t]
    # Python floats (the singles widened exactly) make float64 arrays
    E = np.array(values[layout.E::cols])
    current = np.array(values[layout.I::cols]) if layout.I is not None else np.zeros(n)
    cycle = flat[layout.cycle::cols] if layout.cycle is not None else None
    return Series(np.array(t), E, current, cycle)


def decode_spectrum(words: np.ndarray, info: DataInfo) -> Spectrum:
    """Impedance rows (PEIS/GEIS process 1): Z = |Ewe|/|I|·e^{i·phase}; NaN where |I| = 0."""
    if not is_spectrum(info):
        raise GarbledReply(f"SP-300 data: no impedance layout for technique "
                           f"{info.TechniqueID} process {info.ProcessIndex}")
    rows = _rows(words, info)
    abs_i = rows["abs_I"].astype(np.float64)
    bad = ~(abs_i != 0)  # also catches NaN
    with np.errstate(divide="ignore", invalid="ignore"):
        modulus = rows["abs_Ewe"] / abs_i
    z = modulus * np.exp(1j * rows["phase_Zwe"].astype(np.float64))
    freq = rows["freq"].astype(np.float64)
    if bad.any():
        z[bad] = complex(np.nan, np.nan)
        log.warning("SP-300 impedance: |I| = 0 at %s Hz; Z is NaN there",
                    ", ".join(f"{x:g}" for x in freq[bad]))
    return Spectrum(rows["t"].astype(np.float64) + _start(info), freq, z,
                    rows["Ewe"].astype(np.float64), rows["I"].astype(np.float64))


def decode(words: np.ndarray, info: DataInfo, timebase_s: float) -> Series | Spectrum | None:
    """Whatever one buffer holds: a Series, a Spectrum, or None (no rows, or a LOOP)."""
    if int(info.NbRows) == 0 or int(info.TechniqueID) in _NO_DATA:
        return None
    if is_spectrum(info):
        return decode_spectrum(words, info)
    return decode_series(words, info, timebase_s)
