"""Techniques a potentiostat channel runs, in the instrument's own units (V, A, s, Hz).

These mirror the SP-300's technique set (OCV, CP/CPLIMIT, CA/CALIMIT, CV, PEIS, GEIS; EC-Lab
Development Package user's guide §7) so that the SP-300 adapter can map each one to DLL
techniques with on-instrument limits. The engine builds these from resolved protocol steps; the
driver never sees a protocol.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recording:
    """Record a point every `every_dt_s`, or sooner when E moved by `every_dE_V` (EC-Lab style)."""

    every_dt_s: float = 1.0
    every_dE_V: float | None = 0.001
    max_rate_hz: float = 10.0  # caps dE-triggered bursts


@dataclass(frozen=True)
class OpenCircuit:
    """OCV: no current, voltage recorded; ends after `duration_s`."""

    duration_s: float
    recording: Recording = Recording()


@dataclass(frozen=True)
class ConstantCurrent:
    """CP with on-instrument limits (the SP-300's CPLIMIT).

    Ends on time, or when E leaves [E_min_V, E_max_V], or when |charge| passed reaches
    `charge_limit_C`, whichever comes first. The limits are evaluated by the instrument itself
    (firmware) so they survive a PC crash. `duration_s=None` means open-ended: it runs until a
    potential or charge limit ends it (at least one must be given).
    """

    current_A: float
    duration_s: float | None
    E_min_V: float | None = None
    E_max_V: float | None = None
    charge_limit_C: float | None = None
    recording: Recording = Recording()


@dataclass(frozen=True)
class ConstantVoltage:
    """CA with an on-instrument |I| limit (CALIMIT); without a limit, plain CA."""

    voltage_V: float
    duration_s: float
    I_limit_A: float | None = None
    recording: Recording = Recording()


@dataclass(frozen=True)
class CyclicVoltammetry:
    """CV: from E_start through each vertex in turn, `cycles` times, at `scan_rate_V_s`.

    `I_limit_A` is the protocol's |I| bound: cv4.ecc has no limit tests, so the adapter sets the
    smallest current range that holds it (the instrument cannot drive far beyond a range's full
    scale) and software checks it at every poll as the second layer.
    """

    E_start_V: float
    vertices_V: tuple[float, ...]
    scan_rate_V_s: float
    cycles: int = 1
    record_every_dE_V: float = 0.001
    I_limit_A: float | None = None


@dataclass(frozen=True)
class PotentioEIS:
    """PEIS: sinus of `amplitude_V` around the present potential (or `E_dc_V` if given)."""

    f_high_Hz: float
    f_low_Hz: float
    points_per_decade: int = 10
    amplitude_V: float = 0.010
    averages: int = 1
    E_dc_V: float | None = None


@dataclass(frozen=True)
class GalvanoEIS:
    """GEIS: sinus of `amplitude_A` around `I_dc_A`."""

    f_high_Hz: float
    f_low_Hz: float
    points_per_decade: int = 10
    amplitude_A: float = 1e-5
    averages: int = 1
    I_dc_A: float = 0.0


Technique = (
    OpenCircuit | ConstantCurrent | ConstantVoltage | CyclicVoltammetry | PotentioEIS | GalvanoEIS
)


def eis_frequencies(f_high_Hz: float, f_low_Hz: float, points_per_decade: int) -> list[float]:
    """Log-spaced frequencies from high to low, as the SP-300 builds them.

    floor(ppd * decades) + 1 points: 69 for 7 MHz-1 Hz at 10 points per decade. The one
    definition of an EIS sweep's frequencies: the adapter's `Frequency_number`, the simulated
    instrument and the protocol's plan all use it.
    """
    import math

    decades = math.log10(f_high_Hz / f_low_Hz)
    n = math.floor(points_per_decade * decades + 1e-9) + 1
    if n == 1:
        return [f_high_Hz]
    step = decades / (n - 1)
    return [f_high_Hz / 10 ** (k * step) for k in range(n)]


def eis_point_duration_s(frequency_Hz: float, averages: int = 1) -> float:
    """Time an impedance analyser spends at one frequency: two periods per average plus a 10 %
    settling wait, at least 0.5 s (the SP-300's per-frequency overhead). The one definition of
    an EIS sweep's timing, used by the simulated instrument and the protocol's plan."""
    return max(0.5, averages * 2.1 / frequency_Hz)


def eis_sweep_duration_s(f_high_Hz: float, f_low_Hz: float, points_per_decade: int,
                         averages: int = 1) -> float:
    """How long a whole sweep takes (see `eis_point_duration_s`)."""
    return sum(eis_point_duration_s(f, averages)
               for f in eis_frequencies(f_high_Hz, f_low_Hz, points_per_decade))
