"""EasyBiologicSP300 driving easy-biologic's own code against a fake EClib DLL (biologic.md §3.3).

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
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-W",
                "ignore::UserWarning",
                str(Path(__file__)),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"fake-DLL scenarios failed:\n{proc.stdout}\n{proc.stderr}"
        assert " passed" in proc.stdout

    def test_import_without_dll_is_clean() -> None:
        """`import labctl_drivers.biologic` must not import easy_biologic (Windows-only)."""
        code = (
            "import sys, labctl_drivers.biologic as b; assert 'easy_biologic' not in sys.modules;"
            "sp = b.EasyBiologicSP300('USB0');\n"
            "from labctl_drivers.interfaces import InstrumentError\n"
            "try:\n    sp.connect()\nexcept InstrumentError as e:\n    print('ERR', e)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        assert proc.returncode == 0, proc.stderr
        assert "ERR" in proc.stdout and "Windows" in proc.stdout

else:
    import ctypes
    import platform

    import fake_eclib

    SIM = fake_eclib.install(n_channels=2)

    from labctl_drivers.biologic import BiologicDLLError, EasyBiologicSP300, translate
    from labctl_drivers.interfaces import (
        ChannelState,
        InstrumentError,
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

    @pytest.fixture()
    def sp():
        fake_eclib.install(n_channels=2)  # fresh simulated instrument state
        dev = EasyBiologicSP300("USB0", retry_wait_s=0.001)
        dev.connect()
        yield dev
        if dev._dev is not None:
            dev.disconnect()

    def test_patches_are_scoped_to_the_import() -> None:
        assert platform.system() != "Windows"
        assert not hasattr(ctypes, "WinDLL")
        import easy_biologic.lib.ec_lib as ecl

        assert type(ecl.BL_GetData).__name__ == "function"  # easy-biologic bound our fake

    def test_connect_and_protocols(sp: EasyBiologicSP300) -> None:
        assert isinstance(sp, Potentiostat)
        assert sp.n_channels == 2
        assert isinstance(sp.channel(1), PotentiostatChannel)
        assert SIM.calls["BL_LoadFirmware"] == 1  # BiologicDevice.connect ran
        with pytest.raises(InstrumentError):
            sp.channel(5)

    def test_ocv_and_cplimit_on_two_channels(sp: EasyBiologicSP300) -> None:
        c0, c1 = sp.channel(0), sp.channel(1)
        c0.load(OpenCircuit(10.0, Recording(every_dt_s=1.0)))
        c1.load(
            ConstantCurrent(
                1e-3, 3600.0, E_min_V=2.0, E_max_V=3.0, recording=Recording(every_dt_s=2.0)
            )
        )
        p = SIM.params(1)
        assert p["Current_step"][0] == pytest.approx(1e-3)
        assert p["Test1_Config"][0] == 5 and p["Test1_Value"][0] == pytest.approx(3.0)  # E > 3 V
        assert p["Test2_Config"][0] == 1 and p["Test2_Value"][0] == pytest.approx(2.0)  # E < 2 V
        assert p["I_Range"][0] == 7 and p["Exit_Cond"][0] == 2  # 1 mA range; limit stops
        assert SIM.channels[1].techniques[0][0] == "cplimit"
        c0.start()
        c1.start()
        SIM.advance(4.0)
        r0, r1 = c0.poll(), c1.poll()
        assert r0.state is ChannelState.RUNNING and r1.state is ChannelState.RUNNING
        assert r0.points.t_s == pytest.approx([0, 1, 2, 3, 4], abs=1e-5)
        assert r0.points.E_V == pytest.approx(2.90 + 1e-4 * r0.points.t_s, abs=1e-6)
        assert (r0.points.I_A == 0).all()
        # fake cell: E = 2.91 + 50 Ω * 1 mA + 2 V/C * q
        assert r1.points.t_s == pytest.approx([0, 2, 4], abs=1e-4)
        assert r1.points.I_A == pytest.approx([1e-3] * 3)
        assert r1.points.E_V == pytest.approx(2.96 + 2e-3 * r1.points.t_s, abs=1e-6)
        SIM.advance(100.0)
        r0, r1 = c0.poll(), c1.poll()
        assert r0.state is ChannelState.IDLE and r0.end_reason == "time"
        assert r0.points.t_s == pytest.approx([5, 6, 7, 8, 9, 10], abs=1e-5)
        assert (
            r1.state is ChannelState.IDLE and r1.end_reason == "E_max"
        )  # at t = 20 s on-instrument
        assert r1.points.t_s[-1] == pytest.approx(20.0, abs=1e-3)
        assert r1.points.E_V[-1] == pytest.approx(3.0, abs=1e-6)

    def test_charge_limit_becomes_instrument_step_time(sp: EasyBiologicSP300) -> None:
        c = sp.channel(0)
        c.load(ConstantCurrent(-2e-3, 3600.0, E_min_V=1.0, charge_limit_C=0.02))
        assert SIM.params(0)["Duration_step"][0] == pytest.approx(10.0)  # 0.02 C / 2 mA
        c.start()
        SIM.advance(30.0)
        r = c.poll()
        assert r.end_reason == "charge" and r.points.t_s[-1] == pytest.approx(10.0, abs=1e-3)
        assert abs(r.points.I_A).max() * r.points.t_s[-1] == pytest.approx(0.02, rel=1e-4)

    def test_peis_impedance(sp: EasyBiologicSP300) -> None:
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
        assert rest.state is ChannelState.IDLE and rest.end_reason == "complete"
        assert len(pts) == 51
        assert [q.frequency_Hz for q in pts] == pytest.approx(freqs, rel=1e-5)
        for q in pts:  # fake cell: 20 Ω + (100 Ω || 1 µF); phase came in radians
            w = 2 * math.pi * q.frequency_Hz
            z = 20.0 + 100.0 / (1 + 1j * w * 1e-4)
            assert q.Z_re_ohm == pytest.approx(z.real, rel=1e-4)
            assert q.Z_im_ohm == pytest.approx(z.imag, rel=1e-3, abs=1e-4)
        assert pts[-1].Z_re_ohm == pytest.approx(120.0, rel=1e-3)
        assert len(first.points) == 1  # process-0 DC point

    def test_stop_on_abort_opens_circuit(sp: EasyBiologicSP300) -> None:
        c = sp.channel(0)
        c.load(ConstantCurrent(1e-3, 3600.0))
        c.start()
        SIM.advance(3.0)
        assert c.poll().state is ChannelState.RUNNING
        c.stop()
        assert SIM.channels[0].state == fake_eclib.STOP and SIM.channels[0].I == 0.0
        r = c.poll()
        assert r.state is ChannelState.IDLE and r.end_reason == "stopped"
        calls = SIM.channels[0].stop_calls
        c.stop()
        c.stop()  # idempotent, and still really sent to the instrument each time
        assert SIM.channels[0].stop_calls == calls + 2
        # load refuses a running channel instead of hitting -13
        c.load(OpenCircuit(100.0))
        c.start()
        with pytest.raises(InstrumentError, match="running"):
            c.load(OpenCircuit(5.0))
        sp.disconnect()  # disconnect opens every circuit
        assert SIM.channels[0].state == fake_eclib.STOP

    def test_dll_error_code_becomes_instrument_error(sp: EasyBiologicSP300) -> None:
        c = sp.channel(0)
        c.load(OpenCircuit(10.0))
        SIM.fail("BL_StartChannel", -3)
        with pytest.raises(BiologicDLLError) as ei:
            c.start()
        assert isinstance(ei.value, InstrumentError) and ei.value.code == -3
        assert "ERR_GEN_CHANNELNOTPLUGGED" in str(ei.value)

    def test_transient_error_retried_then_bounded(sp: EasyBiologicSP300) -> None:
        c = sp.channel(0)
        c.load(OpenCircuit(10.0))
        c.start()
        SIM.advance(2.0)
        SIM.fail("BL_GetData", -12, times=2)  # function in progress: retried
        assert len(c.poll().points) == 3
        SIM.fail("BL_GetData", -12, times=50)
        before = SIM.calls["BL_GetData"]
        with pytest.raises(BiologicDLLError) as ei:
            c.poll()
        assert ei.value.code == -12
        assert SIM.calls["BL_GetData"] - before == sp.retry_attempts  # bounded
        SIM.faults.clear()
        c.stop()

    def test_firmware_errors_unwrapped_from_easy_biologic_bugs() -> None:
        fake_eclib.install(n_channels=1)
        # -9: BiologicDevice.connect raises AttributeError ('EcError' has no 'value')
        SIM.fail("BL_LoadFirmware", -9)
        with pytest.raises(BiologicDLLError) as ei:
            EasyBiologicSP300("USB0").connect()
        assert ei.value.code == -9
        # -301 is missing from EcError's table: easy-biologic raises ValueError instead
        SIM.fail("BL_LoadFirmware", -301)
        with pytest.raises(BiologicDLLError) as ei:
            EasyBiologicSP300("USB0").connect()
        assert ei.value.code == -301
        assert SIM.connected == set()  # the half-open connections were released
        with pytest.raises(BiologicDLLError) as ei:
            EasyBiologicSP300("NOPE").connect()
        assert ei.value.code == -201

    def test_start_time_uses_packed_data_info() -> None:
        fake_eclib.install(n_channels=1, start_time_offset=100.0)
        import easy_biologic.lib.ec_lib as ecl

        sp = EasyBiologicSP300("USB0")
        sp.connect()
        c = sp.channel(0)
        c.load(OpenCircuit(5.0))
        c.start()
        SIM.advance(2.0)
        _, raw_info, _ = ecl.get_data(sp.device.idn, 0)  # easy-biologic's own struct...
        assert raw_info.StartTime < 1e-300  # ...misreads StartTime (no _pack_)
        SIM.advance(2.0)
        r = c.poll()  # rows for t = 3, 4 (t = 0..2 were taken by the raw call above)
        assert r.points.t_s == pytest.approx([103.0, 104.0], abs=1e-4)
        sp.disconnect()

    def test_other_technique_parameters() -> None:
        fake_eclib.install(n_channels=1)
        sp = EasyBiologicSP300("USB0")
        sp.connect()
        c = sp.channel(0)
        c.load(CyclicVoltammetry(2.5, (3.5, 1.5), scan_rate_V_s=0.05, cycles=3))
        p = SIM.params(0)
        assert [p["Scan_Rate"][k] for k in range(5)] == pytest.approx([50.0] * 5)  # mV/s
        assert [p["Voltage_step"][k] for k in range(5)] == pytest.approx([2.5, 3.5, 1.5, 2.5, 2.5])
        assert p["N_Cycles"][0] == 2
        c.load(GalvanoEIS(1e4, 0.1, 5, amplitude_A=1e-4, I_dc_A=0.0))
        p = SIM.params(0)
        assert "sweep" not in p and p["Frequency_number"][0] == 26 and p["I_Range"][0] == 7
        c.load(ConstantVoltage(3.2, 60.0, I_limit_A=5e-3))
        p = SIM.params(0)
        assert SIM.channels[0].techniques[0][0] == "calimit"
        assert (p["Test1_Config"][0], p["Test2_Config"][0]) == (101, 97)  # I > +5 mA, I < -5 mA
        c.load(ConstantVoltage(3.2, 60.0))
        assert SIM.channels[0].techniques[0][0] == "ca"
        long = translate(ConstantCurrent(1e-3, 48 * 3600.0))
        assert long.params["Step_number"] == 2 and sum(
            long.params["Duration_step"]
        ) == pytest.approx(48 * 3600)
        sp.disconnect()
