"""Opt-in tests against real instruments; skipped unless the LABCTL_HW_* variables are set.

LABCTL_HW_SP300=USB0 (or an IP)        SP-300 (SP300 adapter over EasyBiologicEClib, Windows +
                                        BioLogic's DLL); channel from LABCTL_HW_SP300_CHANNEL
                                        (default 0). Runs only OCV, which never drives current, so
                                        any cell (or none) may be attached.
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
def test_sp300_ocv_sequence_and_stop() -> None:
    """A linked OCV, OCV sequence on a real channel: the ends come from the instrument, each
    point is attributed to its technique, times run on across the two."""
    from labctl_drivers.biologic import SP300 as Adapter
    from labctl_drivers.biologic import EasyBiologicEClib
    from labctl_drivers.interfaces import EndReason
    from labctl_drivers.techniques import OpenCircuit, Recording

    ch_index = int(os.environ.get("LABCTL_HW_SP300_CHANNEL", "0"))
    sp = Adapter(EasyBiologicEClib(), SP300 or "USB0", name="hw-sp300")
    sp.connect()
    try:
        ident = sp.identity()
        assert ident.model and ch_index in ident.channels and not ident.simulated
        ch = sp.channel(ch_index)
        before = ch.status()  # read only
        assert before.index == ch_index
        ch.stop()  # whatever a previous run left behind
        rec = Recording(every_dt_s=0.5, every_dE_V=None)
        ch.load([OpenCircuit(3.0, rec), OpenCircuit(2.0, rec)])
        ch.start()
        t: list[float] = []
        E: list[float] = []
        idx: list[int] = []
        ends = []
        deadline = time.monotonic() + 30.0
        reading = ch.poll()
        while True:
            pts = reading.points
            t += list(pts.t_s)
            E += list(pts.E_V)
            k = pts.technique_index
            idx += list(k) if k is not None else [reading.technique_index] * len(pts)
            ends += list(reading.ends)
            if reading.state is not ChannelState.RUNNING or time.monotonic() > deadline:
                break
            time.sleep(0.5)
            reading = ch.poll()
        assert reading.state is ChannelState.IDLE
        assert [(e.index, e.reason) for e in ends] == [(0, EndReason.TIME), (1, EndReason.TIME)]
        assert [e.elapsed_s for e in ends] == pytest.approx([3.0, 2.0], abs=0.05)
        assert len(t) >= 8 and np.all(np.diff(t) > -1e-3) and t[-1] == pytest.approx(5.0, abs=0.6)
        assert set(idx) == {0, 1} and all(-10.0 <= e <= 10.0 for e in E)
        ch.stop()
        assert ch.status().state is ChannelState.IDLE
    finally:
        sp.disconnect()


@pytest.mark.skipif(not (SP300 and os.environ.get("LABCTL_HW_SP300_ZERO_CURRENT")),
                    reason="set LABCTL_HW_SP300 and LABCTL_HW_SP300_ZERO_CURRENT=1 (a 0 A CP)")
def test_sp300_times_across_a_timebase_change() -> None:
    """OCV (20 µs timebase) linked to a CP at 0 A (CPLIMIT, 34 µs), polled only at the end, so
    the OCV's rows are read after the channel went on to the CP: their times must still be
    right (the adapter's answer to a TimeBase that is the channel's current one)."""
    from labctl_drivers.biologic import SP300 as Adapter
    from labctl_drivers.biologic import EasyBiologicEClib
    from labctl_drivers.interfaces import EndReason
    from labctl_drivers.techniques import ConstantCurrent, OpenCircuit, Recording

    ch_index = int(os.environ.get("LABCTL_HW_SP300_CHANNEL", "0"))
    sp = Adapter(EasyBiologicEClib(), SP300 or "USB0", name="hw-sp300")
    sp.connect()
    try:
        ch = sp.channel(ch_index)
        ch.stop()
        rec = Recording(every_dt_s=0.5, every_dE_V=None)
        ch.load([OpenCircuit(2.0, rec), ConstantCurrent(0.0, 2.0, recording=rec)])
        ch.start()
        time.sleep(6.0)
        r = ch.poll()
        assert r.state is ChannelState.IDLE
        assert [(e.index, e.reason) for e in r.ends] == [(0, EndReason.TIME), (1, EndReason.TIME)]
        idx = r.points.technique_index
        assert idx is not None
        t = r.points.t_s
        assert t[idx == 0][-1] == pytest.approx(2.0, abs=0.6)
        assert t[idx == 1][0] == pytest.approx(2.0, abs=0.6) and t[-1] == pytest.approx(4.0,
                                                                                      abs=0.6)
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
