"""Opt-in tests against real instruments; skipped unless the LABCTL_HW_* variables are set.

LABCTL_HW_SP300=USB0 (or an IP)        SP-300 through easy-biologic on Windows; channel from
                                        LABCTL_HW_SP300_CHANNEL (default 0). Runs only OCV, which
                                        never drives current, so any cell (or none) may be attached.
LABCTL_HW_MARK10=/dev/ttyUSB0 (or COM3) Mark-10 gauge; baud from LABCTL_HW_MARK10_BAUD (115200).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from labctl_drivers.interfaces import ChannelState

SP300 = os.environ.get("LABCTL_HW_SP300")
MARK10 = os.environ.get("LABCTL_HW_MARK10")

pytestmark = pytest.mark.hardware


@pytest.mark.skipif(not SP300, reason="set LABCTL_HW_SP300 (e.g. USB0) to test a real SP-300")
def test_sp300_ocv_and_stop() -> None:
    from labctl_drivers.biologic import EasyBiologicSP300
    from labctl_drivers.techniques import OpenCircuit, Recording

    ch_index = int(os.environ.get("LABCTL_HW_SP300_CHANNEL", "0"))
    sp = EasyBiologicSP300(SP300 or "USB0")
    sp.connect()
    try:
        assert sp.n_channels >= 1
        ch = sp.channel(ch_index)
        ch.stop()  # whatever a previous run left behind
        ch.load(OpenCircuit(4.0, Recording(every_dt_s=0.5, every_dE_V=None)))
        ch.start()
        t: list[float] = []
        E: list[float] = []
        deadline = time.monotonic() + 20.0
        reading = ch.poll()
        while reading.state is ChannelState.RUNNING and time.monotonic() < deadline:
            t += list(reading.points.t_s)
            E += list(reading.points.E_V)
            time.sleep(0.5)
            reading = ch.poll()
        t += list(reading.points.t_s)
        E += list(reading.points.E_V)
        assert reading.state is ChannelState.IDLE and reading.end_reason == "time"
        assert len(t) >= 5 and np.all(np.diff(t) > 0) and t[-1] == pytest.approx(4.0, abs=0.6)
        assert all(-10.0 <= e <= 10.0 for e in E)
        ch.stop()
    finally:
        sp.disconnect()


@pytest.mark.skipif(not MARK10, reason="set LABCTL_HW_MARK10 (serial port) to test a Mark-10")
def test_mark10_reading_and_units() -> None:
    from labctl_drivers.mark10 import Mark10Gauge

    baud = int(os.environ.get("LABCTL_HW_MARK10_BAUD", "115200"))
    with Mark10Gauge(MARK10 or "", baudrate=baud, timeout_s=1.0) as gauge:
        assert gauge.identify()
        unit = gauge.units()
        force = gauge.read_force_N()
        assert -10_000.0 < force < 10_000.0
        gauge.set_units("N")
        assert gauge.units() == "N"
        assert gauge.read_force_N() == pytest.approx(force, abs=max(1.0, 0.02 * abs(force)))
        if unit.upper() != "N":
            gauge.set_units(
                {"LBF": "lbF", "KGF": "kgF", "OZF": "ozF", "GF": "gF", "KN": "kN", "MN": "mN"}.get(
                    unit.upper(), "N"
                )
            )
