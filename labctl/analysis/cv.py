"""Cyclic voltammetry: anodic (oxidation) and cathodic peaks per cycle.

For NaK working electrodes the paper (Fig. 6) follows the stripping (oxidation) peak over ten
cycles; its growth or decay is the number reported, so each cycle's peaks are stored and the
relative change first → last cycle is summarised.

A peak is a current maximum (anodic) or minimum (cathodic) that the current falls back from
before the vertex: the current at the vertex is at least PEAK_DROP of the cycle's current range
below the peak. The largest current of a straight-line (resistive) or S-shaped (limiting-current)
CV sits at its vertex and is not a peak, so such a cycle reports none.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

VERSION = "2"
#: how far (fraction of the cycle's current range) the current must fall after a peak
PEAK_DROP = 0.05


@dataclass(frozen=True)
class CvCycle:
    cycle: int
    ox_peak_E_V: float | None  # None: no anodic peak in this cycle
    ox_peak_I_mA: float | None
    red_peak_E_V: float | None  # None: no cathodic peak in this cycle
    red_peak_I_mA: float | None


def cycle_numbers(t_s: np.ndarray, E_V: np.ndarray, E_start_V: float | None,
                  vertices_V: list[float] | None, scan_rate_V_s: float | None) -> np.ndarray:
    """1-based cycle of each point.

    From the programmed waveform when known (a cycle is E_start → vertices → E_start, so its
    duration is the path length over the scan rate); otherwise the whole record is one cycle,
    because splitting a noisy measured sweep on potential crossings is ambiguous.
    """
    if E_start_V is None or not vertices_V or not scan_rate_V_s or len(t_s) == 0:
        return np.ones(len(t_s), dtype=int)
    path = [E_start_V, *vertices_V, E_start_V]
    period = sum(abs(b - a) for a, b in itertools.pairwise(path)) / scan_rate_V_s
    if period <= 0:
        return np.ones(len(t_s), dtype=int)
    rel = t_s - t_s[0]
    return (np.floor(rel / period + 1e-9) + 1).astype(int)


def _peak(e: np.ndarray, i: np.ndarray, sign: float) -> tuple[float, float] | None:
    """(E, I) of the anodic (sign +1) or cathodic (-1) peak, or None if the extreme current is
    the vertex's (no fall-back after it)."""
    si = sign * i
    k = int(np.nanargmax(si))
    vertex = int(np.nanargmax(sign * e))
    span = float(np.nanmax(i) - np.nanmin(i))
    if si[k] <= 0 or span <= 0 or si[k] - si[vertex] < PEAK_DROP * span:
        return None
    return float(e[k]), float(i[k])


def cv_peaks(E_V: np.ndarray, I_mA: np.ndarray, cycles: np.ndarray) -> list[CvCycle]:
    """The anodic and cathodic peak of each cycle that has at least one (cycles with < 5 points
    are skipped)."""
    out = []
    for c in np.unique(cycles):
        sel = cycles == c
        if sel.sum() < 5:
            continue
        e, i = E_V[sel], I_mA[sel]
        ox, red = _peak(e, i, 1.0), _peak(e, i, -1.0)
        if ox is None and red is None:
            continue
        out.append(CvCycle(int(c), *(ox or (None, None)), *(red or (None, None))))
    return out
