"""Cyclic voltammetry: anodic (oxidation) and cathodic peaks per cycle.

For NaK working electrodes the paper (Fig. 6) follows the stripping (oxidation) peak over ten
cycles; its growth or decay is the number reported, so each cycle's peaks are stored and the
relative change first → last cycle is summarised.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

VERSION = "1"


@dataclass(frozen=True)
class CvCycle:
    cycle: int
    ox_peak_E_V: float
    ox_peak_I_mA: float
    red_peak_E_V: float
    red_peak_I_mA: float


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


def cv_peaks(E_V: np.ndarray, I_mA: np.ndarray, cycles: np.ndarray) -> list[CvCycle]:
    """Largest anodic and cathodic current of each cycle (cycles with < 5 points are skipped)."""
    out = []
    for c in np.unique(cycles):
        sel = cycles == c
        if sel.sum() < 5:
            continue
        e, i = E_V[sel], I_mA[sel]
        k_ox, k_red = int(np.nanargmax(i)), int(np.nanargmin(i))
        out.append(CvCycle(int(c), float(e[k_ox]), float(i[k_ox]), float(e[k_red]),
                           float(i[k_red])))
    return out
