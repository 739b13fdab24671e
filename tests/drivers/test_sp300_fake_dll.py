"""`SP300(EasyBiologicEClib())` over easy-biologic's own ctypes layer and a fake EClib DLL.

Installing the fake patches `ctypes.WinDLL` and imports easy_biologic with a fake Windows
`platform.system()`; the imported modules then stay in `sys.modules`. So that nothing leaks into
the other tests of a pytest session, the scenarios run in a child pytest process: the parent
test (`test_sp300_under_fake_dll`) spawns it and fails with its output if any scenario fails.
In the child (env LABCTL_FAKE_DLL_CHILD=1) the scenario tests below are collected instead.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHILD = os.environ.get("LABCTL_FAKE_DLL_CHILD") == "1"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("easy_biologic") is None,
    reason="easy-biologic is not installed (optional extra 'biologic': "
    "pip install 'easy-biologic==0.4.0' 'setuptools<81')",
)


if not CHILD:

    def test_sp300_under_fake_dll() -> None:
        env = dict(
            os.environ,
            LABCTL_FAKE_DLL_CHILD="1",
            PYTHONPATH=os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")]),
        )
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W",
             "ignore::UserWarning", str(Path(__file__))],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
        )
        assert proc.returncode == 0, f"fake-DLL scenarios failed:\n{proc.stdout}\n{proc.stderr}"
        assert " passed" in proc.stdout

    def test_import_without_dll_is_clean() -> None:
        """`import labctl_drivers.biologic` must not import easy_biologic (Windows-only), and
        using the real EClib off Windows fails with one clear InstrumentError."""
        code = (
            "import sys, labctl_drivers.biologic as b; assert 'easy_biologic' not in sys.modules\n"
            "sp = b.SP300(b.EasyBiologicEClib(), 'USB0')\n"
            "from labctl_drivers.errors import InstrumentError\n"
            "try:\n    sp.connect()\nexcept InstrumentError as e:\n    print('ERR', e)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
            check=False, env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        assert proc.returncode == 0, proc.stderr
        assert "ERR" in proc.stdout and "Windows" in proc.stdout
        assert "easy-biologic" in proc.stdout

else:
    import ctypes
    import platform

    import fake_eclib
    import numpy as np

    SIM = fake_eclib.install(n_channels=2)

    from labctl_drivers.biologic import (
        SP300,
        EasyBiologicEClib,
        EClibError,
        SP300Busy,
        SP300FirmwareError,
        SP300LinkError,
        SP300Refused,
    )
    from labctl_drivers.errors import (
        InstrumentError,
        InstrumentRefused,
        NotConnected,
        ReplyTimeout,
        TransportError,
        Unsupported,
    )
    from labctl_drivers.interfaces import (
        ChannelState,
        EndReason,
        Potentiostat,
        PotentiostatChannel,
    )
    from labctl_drivers.techniques import (
        ConstantCurrent,
        ConstantVoltage,
        CyclicVoltammetry,
        GalvanoEIS,
        OpenCircuit,
        PotentioEIS,
        Recording,
        eis_frequencies,
    )

    def make(**kwargs: object) -> SP300:
        fake_eclib.install(**kwargs)  # fresh simulated instrument state
        dev = SP300(EasyBiologicEClib(), "USB0", retry_wait_s=0.001)
        dev.connect()
        return dev

    @pytest.fixture()
    def sp():
        dev = make(n_channels=2)
        yield dev
        dev.disconnect()

    def drain(ch, dt: float, until_idle: float = 1e7):
        """Advance the fake by dt between polls until the channel is idle; all readings."""
        out = []
        t = 0.0
        while t < until_idle:
            SIM.advance(dt)
            t += dt
            r = ch.poll()
            out.append(r)
            if r.state is not ChannelState.RUNNING:
                break
        return out

    def cat(readings, attr: str) -> np.ndarray:
        return np.concatenate([getattr(r.points, attr) for r in readings])

    def ends(readings) -> list:
        return [e for r in readings for e in r.ends]

    # -- import and connection ------------------------------------------------------------

    def test_patches_are_scoped_to_the_import() -> None:
        assert platform.system() != "Windows"
        assert not hasattr(ctypes, "WinDLL")
        import easy_biologic.lib.ec_lib as ecl

        assert type(ecl.BL_GetData).__name__ == "function"  # easy-biologic bound our fake

    def test_connect_changes_nothing_on_the_instrument() -> None:
        fake_eclib.install(n_channels=2)
        SIM.run_on(1)  # a crashed predecessor left channel 1 on
        dev = SP300(EasyBiologicEClib(), "USB0", name="sp-a")
        dev.connect()
        assert isinstance(dev, Potentiostat) and dev.n_channels == 2
        assert isinstance(dev.channel(1), PotentiostatChannel)
        assert SIM.calls.get("BL_LoadFirmware", 0) == 0  # both run the kernel already
        assert SIM.channels[1].stop_calls == 0 and SIM.channels[1].state == fake_eclib.RUN
        st = dev.channel(1).status()
        assert st.state is ChannelState.RUNNING and st.index == 1
        assert dev.channel(0).status().state is ChannelState.IDLE
        ident = dev.identity()
        assert ident.model == "SP-300" and ident.channels == (0, 1) and not ident.simulated
        assert ident.firmware == "1140 (2024-03-14)" and ident.address == "USB0"
        assert any("s/n 1001" in v for _, v in ident.details)
        dev.disconnect()  # changes nothing either
        assert SIM.channels[1].state == fake_eclib.RUN and SIM.channels[1].stop_calls == 0
        with pytest.raises(NotConnected):
            dev.channel(0)
        with pytest.raises(InstrumentRefused, match="not plugged"):
            make(n_channels=1).channel(1)

    def test_firmware_loaded_only_where_needed() -> None:
        fake_eclib.install(n_channels=2, firmware=(1, 5))  # ch0: EC-Lab's firmware, stopped
        dev = SP300(EasyBiologicEClib(), "USB0")
        dev.connect()
        assert SIM.firmware_loads == [[0]] and SIM.channels[0].firmware == 5
        dev.disconnect()
        fake_eclib.install(n_channels=2, firmware=(1, 1))
        SIM.run_on(1)  # running EC-Lab's firmware: must be left alone
        dev = SP300(EasyBiologicEClib(), "USB0")
        dev.connect()
        assert SIM.firmware_loads == [[0]] and SIM.channels[1].state == fake_eclib.RUN
        st = dev.channel(1).status()
        assert st.state is ChannelState.RUNNING and "EC-Lab" in (st.technique or "")
        with pytest.raises(InstrumentRefused, match="EC-Lab"):
            dev.channel(1).load(OpenCircuit(5.0))
        dev.disconnect()

    def test_not_an_sp300_is_refused() -> None:
        fake_eclib.install(n_channels=1)
        with pytest.raises(InstrumentRefused, match="not an SP-300"):
            SP300(EasyBiologicEClib(), "VMP3-1").connect()
        assert SIM.connected == set()

    # -- single techniques ----------------------------------------------------------------

    def test_ocv_and_cplimit_on_two_channels(sp: SP300) -> None:
        c0, c1 = sp.channel(0), sp.channel(1)
        c0.load(OpenCircuit(10.0, Recording(every_dt_s=1.0)))
        # fake cell: E = 2.91 + 50 Ω·1 mA + 2 V/C·q = 2.96 + 2e-3·t; E_max 3.005 V is crossed at
        # t = 22.5 s, between the records at 22 and 24 s
        c1.load(ConstantCurrent(1e-3, 3600.0, E_min_V=2.0, E_max_V=3.005,
                                recording=Recording(every_dt_s=2.0)))
        p = SIM.params(1)
        assert SIM.names(1) == ["cplimit"]
        assert p["Current_step"][0] == pytest.approx(1e-3)
        assert p["Test1_Config"][0] == 5 and p["Test1_Value"][0] == pytest.approx(3.005)
        assert p["Test2_Config"][0] == 1 and p["Test2_Value"][0] == pytest.approx(2.0)
        assert p["I_Range"][0] == 7 and p["E_Range"][0] == 1  # 1 mA range, ±5 V
        assert p["Exit_Cond"][0] == 2  # a safety limit stops the sequence
        c0.start()
        c1.start()
        SIM.advance(4.0)
        r0, r1 = c0.poll(), c1.poll()
        assert r0.state is ChannelState.RUNNING and r1.state is ChannelState.RUNNING
        assert r0.points.t_s == pytest.approx([0, 1, 2, 3, 4], abs=1e-5)
        assert r0.points.E_V == pytest.approx(2.90 + 1e-4 * r0.points.t_s, abs=1e-6)
        assert (r0.points.I_A == 0).all() and r0.ends == ()
        assert r1.points.t_s == pytest.approx([0, 2, 4], abs=1e-4)
        assert r1.points.I_A == pytest.approx([1e-3] * 3)
        assert r1.points.E_V == pytest.approx(2.96 + 2e-3 * r1.points.t_s, abs=1e-6)
        SIM.advance(100.0)
        r0, r1 = c0.poll(), c1.poll()
        assert r0.state is ChannelState.IDLE and r0.end_reason is EndReason.TIME
        assert r0.ends[0].elapsed_s == pytest.approx(10.0, abs=1e-4)
        assert r0.points.t_s == pytest.approx([5, 6, 7, 8, 9, 10], abs=1e-5)
        # the instrument ended it on E_max between two records: the last recorded E is below
        # the limit, yet the end is E_max (from the elapsed time, not from the last voltage)
        assert r1.state is ChannelState.IDLE and r1.end_reason is EndReason.E_MAX
        assert r1.points.t_s[-1] == pytest.approx(22.0, abs=1e-3)
        assert r1.points.E_V[-1] < 3.005
        assert r1.ends[0].elapsed_s == pytest.approx(22.5, abs=1e-3)
        assert c1.poll().ends == ()  # an end is reported once

    def test_charge_limit_is_the_step_time(sp: SP300) -> None:
        c = sp.channel(0)
        c.load(ConstantCurrent(-2e-3, 3600.0, E_min_V=1.0, charge_limit_C=0.02))
        assert SIM.params(0)["Duration_step"][0] == pytest.approx(10.0)  # 0.02 C / 2 mA
        c.start()
        SIM.advance(30.0)
        r = c.poll()
        assert r.end_reason is EndReason.CHARGE
        assert r.points.t_s[-1] == pytest.approx(10.0, abs=1e-3)
        assert abs(r.points.I_A).max() * r.ends[0].elapsed_s == pytest.approx(0.02, rel=1e-4)

    def test_open_ended_cp_runs_until_its_limit(sp: SP300) -> None:
        c = sp.channel(0)
        # E = 2.90 - 0.05 - 2e-3·t: reaches E_min 2.5 V at t = 175 s
        c.load(ConstantCurrent(-1e-3, None, E_min_V=2.5, E_max_V=4.0,
                               recording=Recording(every_dt_s=10.0)))
        p = SIM.params(0)
        assert p["Step_number"][0] == 0 and p["N_Cycles"][0] == 999
        assert p["Duration_step"][0] == pytest.approx(34e-6 * 2**31, rel=2e-3)
        assert p["Exit_Cond"][0] == 1  # its limits are its normal end
        c.start()
        rs = drain(c, 60.0)
        assert rs[-1].end_reason is EndReason.E_MIN  # both limits set: E ended near E_min
        assert rs[-1].ends[0].elapsed_s == pytest.approx(175.0, abs=1e-3)

    def test_calimit_current_limit_and_plain_ca(sp: SP300) -> None:
        c = sp.channel(0)
        # I = (3.1 - 2.90)/50 · (1 + t/100 s) = 4 mA · (1 + t/100): 5 mA at t = 25 s
        c.load(ConstantVoltage(3.1, 60.0, I_limit_A=5e-3, recording=Recording(every_dt_s=2.0)))
        p = SIM.params(0)
        assert SIM.names(0) == ["calimit"]
        assert (p["Test1_Config"][0], p["Test2_Config"][0]) == (101, 97)  # I > 5 mA, I < -5 mA
        assert p["Test1_Value"][0] == pytest.approx(5e-3) and p["I_Range"][0] == 8
        c.start()
        r = drain(c, 100.0)[-1]
        assert r.end_reason is EndReason.I_LIMIT
        assert r.ends[0].elapsed_s == pytest.approx(25.0, abs=1e-3)
        assert r.points.I_A[-1] < 5e-3
        c.load(ConstantVoltage(3.1, 6.0, recording=Recording(every_dt_s=2.0)))
        assert SIM.names(0) == ["ca"] and SIM.params(0)["I_Range"][0] == 12  # CA may auto-range
        c.start()
        r = drain(c, 100.0)[-1]
        assert r.end_reason is EndReason.TIME and r.points.I_A[0] == pytest.approx(4e-3)

    def test_cv_in_mV_per_s_with_current_range_bound(sp: SP300) -> None:
        c = sp.channel(0)
        c.load(CyclicVoltammetry(2.9, (3.0, 2.8), scan_rate_V_s=0.01, cycles=2,
                                 record_every_dE_V=0.01, I_limit_A=1e-3))
        p = SIM.params(0)
        assert [p["Scan_Rate"][k] for k in range(5)] == pytest.approx([10.0] * 5)  # mV/s
        assert [p["Voltage_step"][k] for k in range(5)] == pytest.approx([2.9, 3.0, 2.8, 2.9,
                                                                          2.9])
        assert p["N_Cycles"][0] == 1 and p["I_Range"][0] == 7  # the 1 mA range holds 1 mA
        c.start()
        rs = drain(c, 30.0)
        assert rs[-1].end_reason is EndReason.COMPLETE
        E, current = cat(rs, "E_V"), cat(rs, "I_A")
        assert len(E) == 2 * 40 and E.max() == pytest.approx(3.0) and E.min() == pytest.approx(2.8)
        assert current == pytest.approx((E - 2.90) / 50.0, abs=1e-8)  # I before E in each row
        assert cat(rs, "t_s")[-1] == pytest.approx(80.0, abs=1e-3)  # 2 · 0.4 V at 10 mV/s

    def test_peis_impedance(sp: SP300) -> None:
        c = sp.channel(1)
        tech = PotentioEIS(f_high_Hz=1e5, f_low_Hz=1.0, points_per_decade=10, amplitude_V=0.01)
        c.load(tech)
        p = SIM.params(1)
        freqs = eis_frequencies(1e5, 1.0, 10)
        assert p["Frequency_number"][0] == len(freqs) == 51
        assert "sweep" not in p
        assert p["vs_initial"][0] is True and p["Amplitude_Voltage"][0] == pytest.approx(0.01)
        c.start()
        SIM.advance(2.0)
        first = c.poll()
        assert first.state is ChannelState.RUNNING and 0 < len(first.impedance) < 51
        SIM.advance(60.0)
        rest = c.poll()
        pts = first.impedance + rest.impedance
        assert rest.state is ChannelState.IDLE and rest.end_reason is EndReason.COMPLETE
        assert len(pts) == 51
        assert [q.frequency_Hz for q in pts] == pytest.approx(freqs, rel=1e-5)
        for q in pts:  # fake cell: 20 Ω + (100 Ω || 1 µF); phase came in radians
            w = 2 * math.pi * q.frequency_Hz
            z = 20.0 + 100.0 / (1 + 1j * w * 1e-4)
            assert q.Z_re_ohm == pytest.approx(z.real, rel=1e-4)
            assert q.Z_im_ohm == pytest.approx(z.imag, rel=1e-3, abs=1e-4)
        assert pts[-1].Z_re_ohm == pytest.approx(120.0, rel=1e-3)
        assert len(first.points) == 1  # process-0 DC point

    def test_geis_parameters(sp: SP300) -> None:
        c = sp.channel(0)
        c.load(GalvanoEIS(1e4, 0.1, 5, amplitude_A=1e-4, I_dc_A=0.0))
        p = SIM.params(0)
        assert "sweep" not in p and p["Frequency_number"][0] == 26 and p["I_Range"][0] == 7

    # -- linked sequences -----------------------------------------------------------------

    def _rest_cp_rest(cutoff: bool) -> list:
        return [
            OpenCircuit(5.0, Recording(every_dt_s=1.0)),
            # E = 2.90 + 50 Ω·1 mA + 2 V/C·q = 2.95 + 2e-3·t: E_max 3.0 at t = 25 s
            ConstantCurrent(1e-3, 100.0, E_max_V=3.0, recording=Recording(every_dt_s=2.0)),
            OpenCircuit(3.0, Recording(every_dt_s=1.0)),
        ]

    def test_linked_sequence_goes_on_after_a_cutoff(sp: SP300) -> None:
        c = sp.channel(0)
        c.load(_rest_cp_rest(True), cutoffs=[None, {"E_max", "time"}, None])
        assert SIM.names(0) == ["ocv", "cplimit", "ocv"]
        assert SIM.params(0, 1)["Exit_Cond"][0] == 1
        c.start()
        SIM.advance(200.0)
        r = c.poll()  # everything in one poll: OCV and CP data drained after the channel moved on
        assert r.state is ChannelState.IDLE
        assert [(e.index, e.reason) for e in r.ends] == [
            (0, EndReason.TIME), (1, EndReason.E_MAX), (2, EndReason.TIME)]
        t_cross = 25.0
        assert [e.elapsed_s for e in r.ends] == pytest.approx([5.0, t_cross, 3.0], abs=1e-3)
        idx = r.points.technique_index
        assert idx is not None and list(np.unique(idx)) == [0, 1, 2]
        t = r.points.t_s  # since the sequence started, each with its own timebase
        assert np.all(np.diff(t) > -1e-4)  # (a timed end rounds to its timebase)
        assert t[idx == 0] == pytest.approx(np.arange(6.0), abs=1e-5)
        assert t[idx == 1] == pytest.approx(5.0 + np.arange(0, 25, 2.0), abs=1e-4)
        assert t[idx == 2] == pytest.approx(5.0 + t_cross + np.arange(4.0), abs=1e-4)
        assert r.technique_index == 2

    def test_linked_sequence_stops_on_a_safety_limit(sp: SP300) -> None:
        c = sp.channel(0)
        c.load(_rest_cp_rest(False))
        assert SIM.params(0, 1)["Exit_Cond"][0] == 2
        c.start()
        rs = drain(c, 4.0)
        r = rs[-1]
        assert [(e.index, e.reason) for e in ends(rs)] == [(0, EndReason.TIME),
                                                           (1, EndReason.E_MAX)]
        assert r.state is ChannelState.IDLE and r.technique_index == 1
        assert r.end_reason is EndReason.E_MAX
        assert r.ends[-1].elapsed_s == pytest.approx(25.0, abs=1e-3)
        # polled every 4 s: points arrive per poll, attributed to their technique
        assert all(len(x.points) < 10 for x in rs)

    def test_long_rest_is_ocv_loop_ocv(sp: SP300) -> None:
        c = sp.channel(0)
        c.load([ConstantCurrent(1e-6, 10.0), OpenCircuit(30 * 3600.0,
                                                          Recording(every_dt_s=600.0))])
        assert SIM.names(0) == ["cplimit", "ocv", "loop", "ocv"]
        loop = SIM.params(0, 2)
        assert loop["loop_N_times"][0] == 1 and loop["protocol_number"][0] == 1
        assert SIM.params(0, 1)["Rest_time_T"][0] == pytest.approx(10 * 3600.0)
        c.start()
        rs = drain(c, 3600.0)
        got = ends(rs)
        assert [(e.index, e.reason) for e in got] == [(0, EndReason.TIME), (1, EndReason.TIME)]
        assert got[1].elapsed_s == pytest.approx(30 * 3600.0, abs=1e-2)
        t = cat(rs, "t_s")
        assert np.all(np.diff(t) > -1e-4) and t[-1] == pytest.approx(10.0 + 30 * 3600.0,
                                                                      abs=1e-2)

    def test_duration_beyond_twenty_steps_uses_cycles(sp: SP300) -> None:
        c = sp.channel(0)
        c.load(ConstantCurrent(1e-9, 1000 * 3600.0, recording=Recording(every_dt_s=3600.0)))
        p = SIM.params(0)
        assert p["Step_number"][0] == 19 and p["N_Cycles"][0] == 2 and p["I_Range"][0] == 1
        c.start()
        rs = drain(c, 50 * 3600.0)
        assert rs[-1].end_reason is EndReason.TIME
        assert rs[-1].ends[0].elapsed_s == pytest.approx(1000 * 3600.0, rel=1e-6)

    def test_technique_without_data_is_found_from_an_empty_read() -> None:
        """A technique that ends on a limit before its first record has no data; an empty
        read's DataInfo that names it (as the simulated firmware's does) says it ran."""
        dev = make(n_channels=1, empty_info="running", record_t0=False)
        c = dev.channel(0)
        # CP: E = 2.95 + 2e-3·t crosses E_max 2.96 V at t = 5 s, before its first record (10 s)
        c.load([OpenCircuit(5.0, Recording(every_dt_s=1.0)),
                ConstantCurrent(1e-3, 100.0, E_max_V=2.96, recording=Recording(every_dt_s=10))])
        c.start()
        SIM.advance(50.0)
        r = c.poll()
        assert list(r.points.technique_index) == [0] * 5  # t = 1..5, all the OCV's
        assert [(e.index, e.reason) for e in r.ends] == [(0, EndReason.TIME),
                                                         (1, EndReason.E_MAX)]
        assert [e.elapsed_s for e in r.ends] == pytest.approx([5.0, 5.0], abs=1e-3)
        dev.disconnect()

    # -- stop, errors ---------------------------------------------------------------------

    def test_stop_opens_the_circuit_and_is_reported(sp: SP300) -> None:
        c = sp.channel(0)
        c.load(ConstantCurrent(1e-3, 3600.0))
        c.start()
        SIM.advance(3.0)
        assert c.poll().state is ChannelState.RUNNING
        c.stop()
        assert SIM.channels[0].state == fake_eclib.STOP and SIM.channels[0].I == 0.0
        r = c.poll()
        assert r.state is ChannelState.IDLE and r.end_reason is EndReason.STOPPED
        assert r.ends[0].elapsed_s == pytest.approx(3.0, abs=1e-3)
        calls = SIM.channels[0].stop_calls
        c.stop()
        c.stop()  # idempotent, and still really sent to the instrument each time
        assert SIM.channels[0].stop_calls == calls + 2
        c.load(OpenCircuit(100.0))
        c.start()
        with pytest.raises(InstrumentRefused, match="running"):
            c.load(OpenCircuit(5.0))  # refused before the DLL's -13
        sp.disconnect()  # changes nothing on the instrument
        assert SIM.channels[0].state == fake_eclib.RUN
        sp.connect()  # a successor sees it running
        assert sp.channel(0).status().state is ChannelState.RUNNING
        sp.channel(0).stop()

    def test_an_end_before_stop_is_not_stopped(sp: SP300) -> None:
        c = sp.channel(0)
        c.load(OpenCircuit(5.0))
        c.start()
        SIM.advance(10.0)  # it ended on the instrument, unseen
        c.stop()
        r = c.poll()
        assert r.end_reason is EndReason.TIME

    def test_old_data_are_discarded_at_load(sp: SP300) -> None:
        c = sp.channel(0)
        c.load(OpenCircuit(5.0))
        c.start()
        SIM.advance(10.0)
        c.load(ConstantCurrent(1e-3, 2.0))  # the OCV's rows were never read
        c.start()
        SIM.advance(5.0)
        r = c.poll()
        assert r.end_reason is EndReason.TIME and r.points.I_A == pytest.approx([1e-3] * 3)

    def test_dll_error_codes_become_instrument_errors(sp: SP300) -> None:
        c = sp.channel(0)
        c.load(OpenCircuit(10.0))
        SIM.fail("BL_StartChannel", -3)
        with pytest.raises(SP300Refused) as ei:
            c.start()
        assert isinstance(ei.value, InstrumentRefused) and isinstance(ei.value, EClibError)
        assert ei.value.code == -3 and "ERR_GEN_CHANNELNOTPLUGGED" in str(ei.value)
        with pytest.raises(Unsupported, match="exceeds"):
            c.load(ConstantCurrent(2.0, 10.0))
        with pytest.raises(InstrumentRefused, match="nothing loaded"):
            c.start()  # a failed load leaves nothing to start, not the previous sequence

    def test_transient_errors_retried_then_bounded(sp: SP300) -> None:
        c = sp.channel(0)
        c.load(OpenCircuit(10.0))
        c.start()
        SIM.advance(2.0)
        SIM.fail("BL_GetData", -12, times=2)  # function in progress: retried
        assert len(c.poll().points) == 3
        SIM.fail("BL_GetData", -12, times=50)
        before = SIM.calls["BL_GetData"]
        with pytest.raises(SP300Busy) as ei:
            c.poll()
        assert ei.value.code == -12 and isinstance(ei.value, ReplyTimeout)
        assert SIM.calls["BL_GetData"] - before == sp.retry_attempts  # bounded
        SIM.faults.clear()
        c.stop()

    def test_points_survive_a_failed_read(sp: SP300) -> None:
        c = sp.channel(0)
        c.load(OpenCircuit(600.0, Recording(every_dt_s=1.0)))  # 3 words a row: 333 per read
        c.start()
        SIM.advance(500.0)
        SIM.fail("BL_GetData", -6, after=1)  # the second read of the drain fails
        with pytest.raises(SP300Refused):
            c.poll()
        r = c.poll()
        assert len(r.points) == 501 and r.points.t_s == pytest.approx(np.arange(501.0), abs=1e-4)
        c.stop()

    def test_connect_errors_unwrapped_from_easy_biologic() -> None:
        fake_eclib.install(n_channels=1, firmware=(1,))
        # -9 (EC-Lab firmware loaded): easy-biologic's EcError carries the code in its text
        SIM.fail("BL_LoadFirmware", -9)
        with pytest.raises(EClibError) as ei:
            SP300(EasyBiologicEClib(), "USB0").connect()
        assert ei.value.code == -9
        # -301 is missing from EcError's table: easy-biologic raises ValueError instead
        SIM.fail("BL_LoadFirmware", -301)
        with pytest.raises(SP300FirmwareError) as ei:
            SP300(EasyBiologicEClib(), "USB0").connect()
        assert ei.value.code == -301
        assert SIM.connected == set()  # the half-open connections were released
        with pytest.raises(SP300LinkError) as ei:
            SP300(EasyBiologicEClib(), "NOPE").connect()
        assert ei.value.code == -201 and isinstance(ei.value, TransportError)
        assert isinstance(ei.value, InstrumentError)

    def test_start_time_uses_packed_data_info() -> None:
        dev = make(n_channels=1, start_time_offset=100.0)
        import easy_biologic.lib.ec_lib as ecl

        c = dev.channel(0)
        c.load(OpenCircuit(5.0))
        c.start()
        SIM.advance(2.0)
        _, raw_info, _ = ecl.get_data(dev.require(), 0)  # easy-biologic's own struct...
        assert raw_info.StartTime < 1e-300  # ...misreads StartTime (no _pack_)
        SIM.advance(2.0)
        r = c.poll()  # rows for t = 3, 4 (t = 0..2 were taken by the raw call above)
        assert r.points.t_s == pytest.approx([103.0, 104.0], abs=1e-4)
        dev.disconnect()
