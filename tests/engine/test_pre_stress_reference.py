"""The failure detectors' reference before the cell is stressed: the latest impedance spectrum.

A detector learns the cell's resistance from its first plateaus; before that (a cell shorted at
its very first sample) it has nothing to compare with but the sample itself. The engine keeps
the real part of the latest spectrum at its lowest frequency (ohmic + interfacial) and gives it
to every detector it creates, so the first sample is compared with what the cell was.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.engine import channel as engine_channel
from labctl.engine.detectors import FailureDetector
from labctl.engine.events import RunStatus, SpectrumPoint
from labctl.launch import launch

ROOT = Path(__file__).resolve().parents[2]
CELL = ROOT / "examples" / "cells" / "na_symmetric.yaml"
EIS_THEN_RAMP = """\
schema_version: 1
name: EIS then CCD ramp
limits:
  E_min: -5 V
  E_max: 5 V
steps:
  - kind: eis
    mode: PEIS
    f_high: 100 kHz
    f_low: 1 Hz
    amplitude: 10 mV
    points_per_decade: 4
  - kind: ccd_ramp
    start: 0.5 mA/cm^2
    increment: 0.5 mA/cm^2
    max: 1 mA/cm^2
    half_cycle: 0.05 mAh/cm^2
    E_limit: 1 V
"""


def _point(f_Hz: float, z_re: float) -> SpectrumPoint:
    return SpectrumPoint(0.0, f_Hz, z_re, -1.0, None, None)


def test_the_lowest_frequency_of_the_latest_spectrum_is_kept() -> None:
    ctx = engine_channel.ChannelContext.__new__(engine_channel.ChannelContext)
    ctx.pre_stress_R_ohm = None
    ctx._pre_stress_from = None
    ctx.note_spectrum(3, (_point(1e5, 10.0), _point(1e3, 40.0)))
    assert ctx.pre_stress_R_ohm == 40.0
    ctx.note_spectrum(3, (_point(1e4, 20.0),))  # a later poll of the same sweep, higher f
    assert ctx.pre_stress_R_ohm == 40.0
    ctx.note_spectrum(3, (_point(1.0, 90.0),))  # the sweep reaches lower frequencies
    assert ctx.pre_stress_R_ohm == 90.0
    ctx.note_spectrum(7, (_point(1e5, 12.0),))  # a new spectrum replaces the old one
    assert ctx.pre_stress_R_ohm == 12.0


def test_a_ramp_after_an_eis_gives_its_detector_the_spectrum_s_resistance(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given: list[float | None] = []
    real = FailureDetector.set_pre_stress_reference

    def spy(self: FailureDetector, R_ohm: float | None) -> None:
        given.append(R_ohm)
        real(self, R_ohm)

    monkeypatch.setattr(FailureDetector, "set_pre_stress_reference", spy)
    protocol = tmp_path / "eis_then_ramp.yaml"
    protocol.write_text(EIS_THEN_RAMP)
    result = launch(protocol, [CELL], sim=True, db_url=f"sqlite:///{tmp_path / 'r.db'}")
    assert result.outcomes[0].status in (RunStatus.COMPLETED, RunStatus.COMPLETED.value)
    assert given, "the ramp's detector was never given a reference"
    R = given[0]
    assert R is not None and 1.0 < R < 1e5  # ohm: the cell's measured impedance, not a default
