"""The simulated SP-300 firmware (`SimulatedEClib`) against the EC-Lab Development Package's
documented behaviour (user's guide v6.04), with technique parameters built by hand as the guide
lists them, independently of the SP-300 adapter, and data decoded here from the raw words.

The cell is the linear equivalent circuit (OCV + R_s + R_ct || C_dl), whose responses are known
in closed form, except where the paper twin is the point.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator

import numpy as np
import pytest

from labctl_drivers.biologic.eclib import (
    DataBuffer,
    EccParam,
    EClib,
    EClibError,
    ParamType,
)
from labctl_drivers.biologic.sim_eclib import SimulatedEClib
from labctl_drivers.clock import VirtualClock
from labctl_drivers.sim.cells import make_cell
from labctl_drivers.sim.equivalent_circuit import EquivalentCircuitCell
from labctl_drivers.sim.faults import Fault, FaultPlan
from labctl_drivers.techniques import eis_point_duration_s

# The guide's timebases and technique ids, restated here (not imported from either side).
TB = {"ocv": 20e-6, "ca": 21e-6, "cp": 21e-6, "cplimit": 34e-6, "calimit": 34e-6,
      "peis": 24e-6, "geis": 24e-6, "cv": 45e-6}
ID = {"ocv": 100, "ca": 101, "cp": 102, "cv": 103, "peis": 104, "geis": 107, "loop": 150,
      "cplimit": 155, "calimit": 157}
OCV_V, RS, RCT, CDL = 0.5, 100.0, 50.0, 1e-4


def s(label: str, v: float, i: int = 0) -> EccParam:
    return EccParam(label, ParamType.SINGLE, float(v), i)


def b(label: str, v: bool, i: int = 0) -> EccParam:
    return EccParam(label, ParamType.BOOLEAN, bool(v), i)


def n(label: str, v: int, i: int = 0) -> EccParam:
    return EccParam(label, ParamType.INT32, int(v), i)


def ocv(rest_s: float, dt: float = 1.0, dE: float = 0.0) -> list[EccParam]:
    return [s("Rest_time_T", rest_s), s("Record_every_dE", dE), s("Record_every_dT", dt),
            n("E_Range", 2)]


def cp(steps: list[tuple[float, float]], dt: float = 1.0, cycles: int = 0, i_range: int = 7,
       dE: float = 0.0, relative: bool = False) -> list[EccParam]:
    out = [n("Step_number", len(steps) - 1), s("Record_every_dT", dt), s("Record_every_dE", dE),
           n("N_Cycles", cycles), n("I_Range", i_range)]
    for k, (i_A, dur) in enumerate(steps):
        out += [s("Current_step", i_A, k), b("vs_initial", relative, k),
                s("Duration_step", dur, k)]
    return out


def ca(steps: list[tuple[float, float]], dt: float = 1.0, cycles: int = 0) -> list[EccParam]:
    out = [n("Step_number", len(steps) - 1), s("Record_every_dT", dt), s("Record_every_dI", 0.0),
           n("N_Cycles", cycles), n("I_Range", 12), n("E_Range", 2)]
    for k, (e, dur) in enumerate(steps):
        out += [s("Voltage_step", e, k), b("vs_initial", False, k), s("Duration_step", dur, k)]
    return out


def cfg(variable: int, greater: bool, logic_and: bool = False) -> int:
    """Test config word: bit0 active, bit1 logic (0 = OR), bit2 '>', bits 5+ variable."""
    return 1 | (int(logic_and) << 1) | (int(greater) << 2) | (variable << 5)


def limit(level_label: str, steps: list[tuple[float, float]],
          tests: list[tuple[int, float]] | dict[int, list[tuple[int, float]]], exit_cond: int,
          dt: float = 1.0, i_range: int = 7, cycles: int = 0) -> list[EccParam]:
    """A CALIMIT/CPLIMIT parameter set; `tests` apply to every step, or per step (a dict)."""
    dx = "Record_every_dE" if level_label == "Current_step" else "Record_every_dI"
    out = [n("Step_number", len(steps) - 1), s("Record_every_dT", dt), s(dx, 0.0),
           n("N_Cycles", cycles), n("I_Range", i_range), n("E_Range", 2)]
    for k, (level, dur) in enumerate(steps):
        out += [s(level_label, level, k), b("vs_initial", False, k), s("Duration_step", dur, k),
                n("Exit_Cond", exit_cond, k)]
        mine = tests.get(k, []) if isinstance(tests, dict) else tests
        for j in range(3):
            c, v = mine[j] if j < len(mine) else (0, 0.0)
            out += [n(f"Test{j + 1}_Config", c, k), s(f"Test{j + 1}_Value", v, k)]
    return out


def cv(points: list[float], rate_mV_s: float, dE: float = 0.001, cycles: int = 0,
       i_range: int = 12) -> list[EccParam]:
    out = [n("Scan_number", 2), s("Record_every_dE", dE), b("Average_over_dE", False),
           n("N_Cycles", cycles), s("Begin_measuring_I", 0.5), s("End_measuring_I", 1.0),
           n("I_Range", i_range), n("E_Range", 2)]
    for k, e in enumerate(points):
        out += [b("vs_initial", False, k), s("Voltage_step", e, k), s("Scan_Rate", rate_mV_s, k)]
    return out


def eis(galvano: bool, f_i: float, f_f: float, nf: int, amplitude: float, dc: float = 0.0,
        relative: bool = True, hold_s: float = 0.0, i_range: int = 12,
        averages: int = 1, wait: float = 0.0) -> list[EccParam]:
    q = "Current" if galvano else "Voltage"
    out = [b("vs_initial", relative), b("vs_final", relative), s(f"Initial_{q}_step", dc),
           s(f"Final_{q}_step", dc), s("Duration_step", hold_s), n("Step_number", 0),
           s("Record_every_dT", 1.0), s("Record_every_dE" if galvano else "Record_every_dI", 0.0),
           s("Initial_frequency", f_i), s("Final_frequency", f_f), s(f"Amplitude_{q}", amplitude),
           n("Frequency_number", nf), n("Average_N_times", averages), b("Correction", False),
           s("Wait_for_steady", wait), n("I_Range", i_range), n("E_Range", 2)]
    return out


def loop(times: int, target: int) -> list[EccParam]:
    return [n("loop_N_times", times), n("protocol_number", target)]


# ---- decoding, written from the guide's layouts ------------------------------------------------


def rows(buf: DataBuffer) -> np.ndarray:
    return buf.words.reshape(buf.info.NbRows, buf.info.NbCols)


def times(buf: DataBuffer, tb: float) -> np.ndarray:
    w = rows(buf)
    ticks = (w[:, 0].astype(np.uint64) << np.uint64(32)) + w[:, 1].astype(np.uint64)
    return buf.info.StartTime + tb * ticks.astype(np.float64)


def single(buf: DataBuffer, col: int) -> np.ndarray:
    return rows(buf)[:, col].copy().view(np.float32).astype(np.float64)


def drain(lib: SimulatedEClib, idn: int, ch: int = 0) -> list[DataBuffer]:
    out = []
    for _ in range(100_000):
        buf = lib.get_data(idn, ch)
        if buf.info.NbRows == 0:
            return out
        out.append(buf)
    raise AssertionError("buffer never drained")


def merged(bufs: list[DataBuffer], name: str, process: int = 0) -> dict[str, np.ndarray]:
    """Concatenate the segments of one technique (by id and process) into named columns."""
    sel = [x for x in bufs if x.info.TechniqueID == ID[name] and x.info.ProcessIndex == process]
    assert sel, f"no {name} data"
    if process == 1:
        cols = ["f", "absE", "absI", "phase", "E", "I", "z6", "absEce", "absIce", "phce", "Ece",
                "z11", "z12", "t"]
        return {c: np.concatenate([single(x, k) for x in sel]) for k, c in enumerate(cols)}
    t = np.concatenate([times(x, TB[name]) for x in sel])
    if name == "ocv":
        return {"t": t, "E": np.concatenate([single(x, 2) for x in sel])}
    e_col, i_col = (3, 2) if name == "cv" else (2, 3)
    out = {"t": t, "E": np.concatenate([single(x, e_col) for x in sel]),
           "I": np.concatenate([single(x, i_col) for x in sel])}
    if sel[0].info.NbCols == 5:
        out["cycle"] = np.concatenate([rows(x)[:, 4].astype(np.int64) for x in sel])
    return out


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def lib(clock: VirtualClock) -> SimulatedEClib:
    sim = SimulatedEClib(clock, seed=1)
    sim.attach_cell(0, EquivalentCircuitCell(ocv_V=OCV_V, r_series_ohm=RS, r_ct_ohm=RCT,
                                             c_dl_F=CDL))
    return sim


@pytest.fixture
def idn(lib: SimulatedEClib) -> Iterator[int]:
    i, _ = lib.connect("USB0", 5)
    assert lib.load_firmware(i, [0, 1]) == [0, 0]
    yield i


def run(lib: SimulatedEClib, idn: int, clock: VirtualClock, seq: list[tuple[str, list[EccParam]]],
        until: float, ch: int = 0) -> list[DataBuffer]:
    for k, (ecc, params) in enumerate(seq):
        lib.load_technique(idn, ch, ecc, params, k == 0, k == len(seq) - 1)
    lib.start_channel(idn, ch)
    clock.sleep_until(clock.now() + until)
    return drain(lib, idn, ch)


# ---- connection, identity, firmware ------------------------------------------------------------


def test_is_an_eclib_and_identifies_as_an_sp300(lib: SimulatedEClib) -> None:
    assert isinstance(lib, EClib) and lib.simulated
    a, info = lib.connect("USB0", 5)
    b_, _ = lib.connect("USB0", 5)
    assert a != b_
    assert info.DeviceCode == 16 and info.NumberOfChannels == 2
    assert lib.channels_plugged(a) == [0, 1]
    assert lib.test_connection(a)
    c0 = lib.channel_info(a, 0)
    assert c0.FirmwareCode == 0 and c0.Zboard == 1 and c0.MaxIRange == 10
    with pytest.raises(EClibError) as e:
        lib.load_technique(a, 0, "ocv4.ecc", ocv(5), True, True)
    assert e.value.code == -308
    lib.load_firmware(a, [0])
    assert lib.channel_info(a, 0).FirmwareCode == 5
    with pytest.raises(EClibError) as e:
        lib.channel_info(a, 2)
    assert e.value.code == -3
    lib.disconnect(a)
    assert not lib.test_connection(a)
    with pytest.raises(EClibError) as e:
        lib.get_data(a, 0)
    assert e.value.code == -1
    assert lib.channel_info(b_, 0).FirmwareCode == 5
    err = pickle.loads(pickle.dumps(e.value))
    assert err.code == -1


def test_load_firmware_resets_only_what_it_loads(lib: SimulatedEClib, idn: int,
                                                 clock: VirtualClock) -> None:
    lib.load_technique(idn, 0, "ocv4.ecc", ocv(100), True, True)
    lib.start_channel(idn, 0)
    clock.sleep_until(10)
    lib.load_firmware(idn, [0])  # already runs the kernel: untouched
    assert lib.current_values(idn, 0).State == 1
    lib.load_firmware(idn, [0], force=True)  # reloading resets the channel
    v = lib.current_values(idn, 0)
    assert v.State == 0 and v.MemFilled == 0
    assert lib.channel_info(idn, 0).NbOfTechniques == 0


# ---- techniques --------------------------------------------------------------------------------


def test_ocv_rows_times_and_values(lib: SimulatedEClib, idn: int, clock: VirtualClock) -> None:
    bufs = run(lib, idn, clock, [("ocv4.ecc", ocv(10.0, dt=1.0))], 20.0)
    d = merged(bufs, "ocv")
    assert bufs[0].info.NbCols == 3
    np.testing.assert_allclose(d["t"], np.arange(1, 11), atol=TB["ocv"])
    np.testing.assert_allclose(d["E"], OCV_V, atol=1e-6)
    v = lib.current_values(idn, 0)
    assert v.State == 0 and v.ElapsedTime == pytest.approx(10.0)
    assert v.TimeBase == pytest.approx(20e-6)


def test_cp_rows_follow_the_circuit(lib: SimulatedEClib, idn: int, clock: VirtualClock) -> None:
    i = 1e-3
    tau = RCT * CDL
    bufs = run(lib, idn, clock, [("cp4.ecc", cp([(i, 0.05)], dt=0.005, i_range=7))], 1.0)
    d = merged(bufs, "cp")
    t = np.arange(1, 11) * 0.005
    np.testing.assert_allclose(d["t"], t, atol=TB["cp"])
    expected = OCV_V + i * RS + i * RCT * (1 - np.exp(-t / tau))
    np.testing.assert_allclose(d["E"], expected, rtol=1e-6)
    np.testing.assert_allclose(d["I"], i, rtol=1e-7)
    assert (d["cycle"] == 0).all()
    assert bufs[0].info.TechniqueID == 102 and bufs[0].info.NbCols == 5


def test_negative_current_polarises_the_other_way(lib: SimulatedEClib, idn: int,
                                                  clock: VirtualClock) -> None:
    d = merged(run(lib, idn, clock, [("cp4.ecc", cp([(-1e-3, 2.0)]))], 3.0), "cp")
    np.testing.assert_allclose(d["E"], OCV_V - 1e-3 * (RS + RCT), rtol=1e-5)
    np.testing.assert_allclose(d["I"], -1e-3)


def test_cp_steps_and_n_cycles(lib: SimulatedEClib, idn: int, clock: VirtualClock) -> None:
    params = cp([(1e-3, 3.0), (-1e-3, 2.0)], dt=1.0, cycles=1)
    d = merged(run(lib, idn, clock, [("cp4.ecc", params)], 20.0), "cp")
    np.testing.assert_allclose(d["t"], np.arange(1, 11), atol=TB["cp"])
    assert list(d["cycle"]) == [0] * 5 + [1] * 5
    assert list(np.sign(d["I"])) == [1, 1, 1, -1, -1] * 2


def test_step_end_off_the_record_grid_is_recorded(lib: SimulatedEClib, idn: int,
                                                  clock: VirtualClock) -> None:
    d = merged(run(lib, idn, clock, [("cp4.ecc", cp([(1e-3, 3.5)], dt=1.0))], 5.0), "cp")
    np.testing.assert_allclose(d["t"], [1, 2, 3, 3.5], atol=TB["cp"])


def test_vs_initial_is_relative_to_the_start(lib: SimulatedEClib, idn: int,
                                             clock: VirtualClock) -> None:
    params = [n("Step_number", 0), s("Record_every_dT", 1.0), s("Record_every_dI", 0.0),
              n("N_Cycles", 0), n("I_Range", 12), s("Voltage_step", 0.1, 0),
              b("vs_initial", True, 0), s("Duration_step", 3.0, 0)]
    d = merged(run(lib, idn, clock, [("ca4.ecc", params)], 5.0), "ca")
    np.testing.assert_allclose(d["E"], OCV_V + 0.1, rtol=1e-6)
    # at steady state the circuit carries 0.1 V / (R_s + R_ct)
    np.testing.assert_allclose(d["I"], 0.1 / (RS + RCT), rtol=3e-3)


def test_ca_current_is_clipped_to_the_range(lib: SimulatedEClib, idn: int,
                                            clock: VirtualClock) -> None:
    # 1 V across 150 ohm wants 6.7 mA; the 1 mA range (I_Range 7) cannot drive more than 1 mA
    params = limit("Voltage_step", [(OCV_V + 1.0, 5.0)], [], 0, i_range=7)
    d = merged(run(lib, idn, clock, [("calimit4.ecc", params)], 6.0), "calimit")
    assert np.abs(d["I"]).max() <= 1e-3 * (1 + 1e-6)
    assert d["E"][-1] < OCV_V + 1.0  # the potential cannot follow


def test_cv_scan_rate_is_in_mV_per_s(lib: SimulatedEClib, idn: int, clock: VirtualClock) -> None:
    pts = [OCV_V, OCV_V + 0.1, OCV_V, OCV_V, OCV_V]
    d = merged(run(lib, idn, clock, [("cv4.ecc", cv(pts, 10.0))], 30.0), "cv")
    assert len(d["t"]) == 200  # 0.2 V of sweep, a point every mV
    assert d["t"][-1] == pytest.approx(20.0, abs=TB["cv"])
    assert d["E"].max() == pytest.approx(OCV_V + 0.1, abs=1e-6)
    np.testing.assert_allclose(np.diff(d["t"]), 0.1, atol=2 * TB["cv"])
    assert lib.current_values(idn, 0).State == 0
    # the same number read as V/s (0.01) sweeps 1000x slower: still running, 0.2 mV swept
    lib.load_technique(idn, 0, "cv4.ecc", cv(pts, 0.01), True, True)
    lib.start_channel(idn, 0)
    clock.sleep_until(clock.now() + 20.0)
    assert lib.current_values(idn, 0).State == 1
    assert drain(lib, idn) == []  # not even one dE step yet (100 s per mV)


def test_cv_columns_cycles_and_current(lib: SimulatedEClib, idn: int, clock: VirtualClock) -> None:
    pts = [OCV_V, OCV_V + 0.05, OCV_V - 0.05, OCV_V, OCV_V]
    d = merged(run(lib, idn, clock, [("cv4.ecc", cv(pts, 50.0, dE=0.005, cycles=1))], 20.0),
               "cv")
    assert len(d["t"]) == 2 * 40
    assert list(np.unique(d["cycle"])) == [0, 1]
    # I (column 2) follows E - OCV through the circuit: positive above the OCV
    above = d["E"] > OCV_V + 0.01
    assert (d["I"][above] > 0).all() and (d["I"][d["E"] < OCV_V - 0.01] < 0).all()


def test_peis_rows(lib: SimulatedEClib, idn: int, clock: VirtualClock) -> None:
    nf = 11
    bufs = run(lib, idn, clock, [("peis4.ecc", eis(False, 1e5, 1.0, nf, 0.01, hold_s=3.0))],
               200.0)
    hold = merged(bufs, "peis", 0)
    np.testing.assert_allclose(hold["t"], [1, 2, 3], atol=TB["peis"])
    d = merged(bufs, "peis", 1)
    f = 1e5 * (1.0 / 1e5) ** (np.arange(nf) / (nf - 1))
    np.testing.assert_allclose(d["f"], f, rtol=1e-6)
    z_true = RS + RCT / (1 + 2j * np.pi * f * RCT * CDL)
    mod = d["absE"] / d["absI"]
    np.testing.assert_allclose(mod, np.abs(z_true), rtol=0.02)
    np.testing.assert_allclose(d["phase"], np.angle(z_true), atol=0.02)
    assert (d["absI"] > 0).all() and (d["absIce"] > 0).all()
    np.testing.assert_allclose(d["absE"], 0.01, rtol=1e-6)
    durations = np.cumsum([eis_point_duration_s(x, 1) for x in f])
    np.testing.assert_allclose(d["t"], 3.0 + durations, rtol=1e-6)
    p1 = [x for x in bufs if x.info.ProcessIndex == 1]
    assert p1[0].info.NbCols == 14


def test_geis_amplitude_and_range_rules(lib: SimulatedEClib, idn: int,
                                        clock: VirtualClock) -> None:
    with pytest.raises(EClibError) as e:  # 0.6 mA > 50 % of the 1 mA range
        lib.load_technique(idn, 0, "geis4.ecc", eis(True, 1e3, 1.0, 4, 6e-4, i_range=7),
                           True, True)
    assert e.value.code == -4
    with pytest.raises(EClibError) as e:  # Auto is not allowed for GEIS
        lib.load_technique(idn, 0, "geis4.ecc", eis(True, 1e3, 1.0, 4, 1e-4, i_range=12),
                           True, True)
    assert e.value.code == -4
    bufs = run(lib, idn, clock, [("geis4.ecc", eis(True, 1e3, 1.0, 4, 1e-4, i_range=7))],
               100.0)
    d = merged(bufs, "geis", 1)
    np.testing.assert_allclose(d["absI"], 1e-4, rtol=1e-6)
    f = d["f"]
    z_true = np.abs(RS + RCT / (1 + 2j * np.pi * f * RCT * CDL))
    np.testing.assert_allclose(d["absE"] / d["absI"], z_true, rtol=0.02)


def test_eis_wait_and_averages_lengthen_each_point(lib: SimulatedEClib, idn: int,
                                                   clock: VirtualClock) -> None:
    params = eis(False, 10.0, 1.0, 2, 0.01, averages=2, wait=3.0)
    d = merged(run(lib, idn, clock, [("peis4.ecc", params)], 100.0), "peis", 1)
    d0 = eis_point_duration_s(10.0, 2) + 3.0 / 10.0
    d1 = eis_point_duration_s(1.0, 2) + 3.0
    np.testing.assert_allclose(d["t"], [d0, d0 + d1], rtol=1e-6)


# ---- limits and exit conditions ----------------------------------------------------------------


def slow_cell() -> EquivalentCircuitCell:
    """R_ct = 1 kohm, tau = 100 s, no series resistance: under 1 mA, E = 1 V (1 - exp(-t/100 s)),
    so a threshold's crossing time is known in closed form."""
    return EquivalentCircuitCell(ocv_V=0.0, r_series_ohm=0.0, r_ct_ohm=1000.0, c_dl_F=0.1)


def test_limit_fires_between_records_and_is_not_recorded(clock: VirtualClock) -> None:
    lib = SimulatedEClib(clock)
    lib.attach_cell(0, slow_cell())
    idn, _ = lib.connect("USB0", 5)
    lib.load_firmware(idn, [0])
    i = 1e-3
    threshold = i * 1000.0 * (1 - math.exp(-36.5 / 100.0))  # crossed between 36 s and 37 s
    params = limit("Current_step", [(i, 100.0)], [(cfg(0, True), threshold)], 1, dt=10.0)
    seq = [("cplimit4.ecc", params), ("ocv4.ecc", ocv(5.0))]
    bufs = run(lib, idn, clock, seq, 200.0)
    d = merged(bufs, "cplimit")
    np.testing.assert_allclose(d["t"], [10, 20, 30], atol=TB["cplimit"])  # no point at 37 s
    o = [x for x in bufs if x.info.TechniqueID == ID["ocv"]]
    assert o[0].info.TechniqueIndex == 1
    assert o[0].info.StartTime == pytest.approx(37.0, abs=1e-9)  # Exit_Cond 1: next technique
    np.testing.assert_allclose(times(o[0], TB["ocv"]), 37.0 + np.arange(1, 6), atol=1e-4)


def test_exit_cond_0_goes_to_the_next_step_and_2_stops_the_sequence(
        clock: VirtualClock) -> None:
    lib = SimulatedEClib(clock)
    lib.attach_cell(0, slow_cell())
    idn, _ = lib.connect("USB0", 5)
    lib.load_firmware(idn, [0])
    thr = 1e-3 * 1000.0 * (1 - math.exp(-4.5 / 100.0))  # crossed at 5 s
    # (the rest step has no test: the same E > thr would fire again at its first sample)
    params = limit("Current_step", [(1e-3, 100.0), (0.0, 3.0)], {0: [(cfg(0, True), thr)]}, 0)
    d = merged(run(lib, idn, clock, [("cplimit4.ecc", params)], 50.0), "cplimit")
    np.testing.assert_allclose(d["t"], [1, 2, 3, 4, 5, 6, 7, 8], atol=TB["cplimit"])
    np.testing.assert_allclose(d["I"], [1e-3] * 5 + [0.0] * 3)
    lib.attach_cell(1, slow_cell())  # a fresh cell: the first one is still charged
    lib.load_firmware(idn, [1])
    stop = limit("Current_step", [(1e-3, 100.0)], [(cfg(0, True), thr)], 2)
    bufs = run(lib, idn, clock, [("cplimit4.ecc", stop), ("ocv4.ecc", ocv(5.0))], 50.0, ch=1)
    assert {x.info.TechniqueID for x in bufs} == {ID["cplimit"]}
    v = lib.current_values(idn, 1)
    assert v.State == 0 and v.ElapsedTime == pytest.approx(5.0)


def test_calimit_current_limit(lib: SimulatedEClib, idn: int, clock: VirtualClock) -> None:
    # 0.15 V across 150 ohm settles at 1 mA: an |I| < 1.2 mA test never fires, > 0.9 mA does
    params = limit("Voltage_step", [(OCV_V + 0.15, 50.0)], [(cfg(3, True), 0.9e-3)], 1,
                   i_range=7)
    run(lib, idn, clock, [("calimit4.ecc", params)], 60.0)
    assert lib.current_values(idn, 0).ElapsedTime == pytest.approx(1.0)
    never = limit("Voltage_step", [(OCV_V + 0.15, 5.0)], [(cfg(3, True), 1.2e-3)], 1,
                  i_range=7)
    run(lib, idn, clock, [("calimit4.ecc", never)], 60.0)
    assert lib.current_values(idn, 0).ElapsedTime == pytest.approx(5.0)


def test_and_logic_needs_both_tests(clock: VirtualClock) -> None:
    lib = SimulatedEClib(clock)
    lib.attach_cell(0, slow_cell())
    idn, _ = lib.connect("USB0", 5)
    lib.load_firmware(idn, [0])
    lo = 1e-3 * 1000.0 * (1 - math.exp(-2.5 / 100.0))
    hi = 1e-3 * 1000.0 * (1 - math.exp(-5.5 / 100.0))
    # E > lo AND E < hi: true from 3 s on (a band the fast path cannot express)
    tests = [(cfg(0, True), lo), (cfg(0, False, logic_and=True), hi)]
    run(lib, idn, clock, [("cplimit4.ecc", limit("Current_step", [(1e-3, 50.0)], tests, 1))],
        60.0)
    assert lib.current_values(idn, 0).ElapsedTime == pytest.approx(3.0)


# ---- sequences ---------------------------------------------------------------------------------


def test_linked_techniques_run_back_to_back(lib: SimulatedEClib, idn: int,
                                            clock: VirtualClock) -> None:
    seq = [("ocv4.ecc", ocv(5.0)), ("cp4.ecc", cp([(1e-3, 4.0)])), ("ocv4.ecc", ocv(3.0))]
    bufs = run(lib, idn, clock, seq, 20.0)
    infos = [(x.info.TechniqueIndex, x.info.TechniqueID, x.info.StartTime) for x in bufs]
    assert infos == [(0, 100, 0.0), (1, 102, 5.0), (2, 100, 9.0)]
    t1 = times(bufs[1], TB["cp"])
    np.testing.assert_allclose(t1, 5.0 + np.arange(1, 5), atol=TB["cp"])
    np.testing.assert_allclose(times(bufs[2], TB["ocv"]), 9.0 + np.arange(1, 4), atol=1e-4)


def test_loop_reruns_techniques(lib: SimulatedEClib, idn: int, clock: VirtualClock) -> None:
    seq = [("ocv4.ecc", ocv(2.0)), ("cp4.ecc", cp([(1e-3, 1.0)])), ("loop4.ecc", loop(2, 0)),
           ("ocv4.ecc", ocv(1.0))]
    bufs = run(lib, idn, clock, seq, 30.0)
    got = [(x.info.TechniqueIndex, x.info.loop, x.info.StartTime) for x in bufs]
    assert got == [(0, 0, 0.0), (1, 0, 2.0), (0, 1, 3.0), (1, 1, 5.0), (0, 2, 6.0),
                   (1, 2, 8.0), (3, 0, 9.0)]
    with pytest.raises(EClibError) as e:  # a LOOP can only jump back
        lib.load_technique(idn, 0, "loop4.ecc", loop(1, 0), True, True)
    assert e.value.code == -4


def test_open_circuit_gap_between_separate_starts_but_not_linked(clock: VirtualClock) -> None:
    def relaxation(linked: bool) -> float:
        c = VirtualClock()
        lib = SimulatedEClib(c)
        lib.attach_cell(0, slow_cell())
        idn, _ = lib.connect("USB0", 5)
        lib.load_firmware(idn, [0])
        charge = ("cp4.ecc", cp([(1e-3, 50.0)]))
        rest = ("ocv4.ecc", ocv(5.0))
        if linked:
            bufs = run(lib, idn, c, [charge, rest], 100.0)
        else:
            bufs = run(lib, idn, c, [charge], 50.0)
            c.sleep_until(c.now() + 100.0)  # labctl takes its time between techniques
            bufs += run(lib, idn, c, [rest], 10.0)
        o = next(x for x in bufs if x.info.TechniqueID == ID["ocv"])
        assert o.info.StartTime == pytest.approx(50.0 if linked else 0.0)
        return float(single(o, 2)[0])

    e_charged = 1.0 * (1 - math.exp(-0.5))
    # linked: the rest starts where the charge ended (1 s of relaxation at the first record)
    assert relaxation(True) == pytest.approx(e_charged * math.exp(-1 / 100), rel=1e-4)
    # separately started: 100 s more at open circuit before the OCV even begins
    assert relaxation(False) == pytest.approx(e_charged * math.exp(-101 / 100), rel=1e-4)


# ---- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("ecc", "params", "why"), [
    ("cp4.ecc", cp([(1e-3, 45_098.0)]), "longer than 21 us * 2**31"),
    ("ocv4.ecc", ocv(42_950.0), "longer than 20 us * 2**31"),
    ("cp4.ecc", cp([(1e-3, 10.0)], i_range=12), "Auto I range for CP"),
    ("cplimit4.ecc", limit("Current_step", [(1e-3, 10.0)], [], 1, i_range=12), "Auto, CPLIMIT"),
    ("cp4.ecc", cp([(2e-3, 10.0)], i_range=7), "2 mA on the 1 mA range"),
    ("cp4.ecc", [*cp([(1e-3, 10.0)]), s("Bogus", 1.0)], "unknown label"),
    ("cp4.ecc", [*cp([(1e-3, 10.0)])[:-1]], "missing I_Range"),
    ("ocv4.ecc", [*ocv(10.0)[1:]], "missing Rest_time_T"),
    ("ocv4.ecc", [n("Rest_time_T", 10), *ocv(10.0)[1:]], "INT32 for a SINGLE"),
    ("cv4.ecc", cv([0, 1, 0, 0, 0], 10.0)[:-3], "missing CV step 4"),
    ("cplimit4.ecc", limit("Current_step", [(1e-3, 10.0)], [(1 | (5 << 5), 1.0)], 1),
     "test variable 5"),
])
def test_invalid_parameters_are_refused_with_minus_4(lib: SimulatedEClib, idn: int, ecc: str,
                                                     params: list[EccParam], why: str) -> None:
    with pytest.raises(EClibError) as e:
        lib.load_technique(idn, 0, ecc, params, True, True)
    assert e.value.code == -4, why


def test_longest_step_the_timebase_counts_is_accepted(lib: SimulatedEClib, idn: int) -> None:
    lib.load_technique(idn, 0, "cp4.ecc", cp([(1e-3, 45_097.0)]), True, True)
    lib.load_technique(idn, 0, "cplimit4.ecc",
                       limit("Current_step", [(1e-3, 73_000.0)], [], 1), True, True)


def test_unknown_file_running_channel_and_missing_cell(lib: SimulatedEClib, idn: int) -> None:
    with pytest.raises(EClibError) as e:
        lib.load_technique(idn, 0, "cplimit.ecc", [], True, True)  # the VMP3 file, not *4
    assert e.value.code == -400
    lib.load_technique(idn, 0, "ocv4.ecc", ocv(100.0), True, True)
    lib.start_channel(idn, 0)
    with pytest.raises(EClibError) as e:
        lib.load_technique(idn, 0, "ocv4.ecc", ocv(100.0), True, True)
    assert e.value.code == -13
    with pytest.raises(EClibError) as e:
        lib.start_channel(idn, 0)
    assert e.value.code == -13
    lib.load_technique(idn, 1, "ocv4.ecc", ocv(100.0), True, True)
    with pytest.raises(EClibError) as e:
        lib.start_channel(idn, 1)
    assert e.value.code == -6 and "no cell" in str(e.value)
    lib.load_technique(idn, 1, "ocv4.ecc", ocv(100.0), True, False)
    lib.attach_cell(1, EquivalentCircuitCell())
    with pytest.raises(EClibError) as e:  # sequence not closed
        lib.start_channel(idn, 1)
    assert e.value.code == -8


# ---- data transfer and memory ------------------------------------------------------------------


def test_get_data_limits_and_segments(lib: SimulatedEClib, idn: int, clock: VirtualClock) -> None:
    bufs = run(lib, idn, clock, [("cp4.ecc", cp([(1e-3, 500.0)], dt=1.0))], 600.0)
    assert [x.info.NbRows for x in bufs] == [200, 200, 100]
    assert all(x.words.dtype == np.uint32 and x.words.size <= 1000 for x in bufs)
    t = np.concatenate([times(x, TB["cp"]) for x in bufs])
    np.testing.assert_allclose(t, np.arange(1, 501), atol=TB["cp"])
    empty = lib.get_data(idn, 0)
    assert empty.info.NbRows == 0 and empty.words.size == 0


def test_time_words_carry_into_t_high(lib: SimulatedEClib, idn: int, clock: VirtualClock) -> None:
    # three 45 000 s cycles = 135 000 s = 6.4e9 ticks of 21 us, beyond 2**32
    params = cp([(1e-4, 45_000.0)], dt=45_000.0, cycles=2)
    bufs = run(lib, idn, clock, [("cp4.ecc", params)], 140_000.0)
    w = rows(bufs[0])
    assert list(w[:, 0]) == [0, 0, 1]
    np.testing.assert_allclose(times(bufs[0], TB["cp"]), [45_000, 90_000, 135_000], atol=1e-4)
    assert list(w[:, 4]) == [0, 1, 2]


def test_memory_is_bounded_and_losses_counted(clock: VirtualClock) -> None:
    lib = SimulatedEClib(clock, memory_words=3000)
    lib.attach_cell(0, EquivalentCircuitCell())
    idn, _ = lib.connect("USB0", 5)
    lib.load_firmware(idn, [0])
    lib.load_technique(idn, 0, "ocv4.ecc", ocv(100.0, dt=0.01), True, True)  # 10 000 rows
    lib.start_channel(idn, 0)
    clock.sleep_until(200.0)
    assert lib.current_values(idn, 0).MemFilled <= 4 * 3000
    bufs = drain(lib, idn)
    kept = sum(x.info.NbRows for x in bufs)
    assert kept == 1000 and bufs[0].info.IRQskipped == 9000
    assert sum(x.info.IRQskipped for x in bufs) == 9000
    np.testing.assert_allclose(times(bufs[-1], TB["ocv"])[-1], 100.0, atol=1e-4)


def test_disconnect_keeps_the_channel_running(lib: SimulatedEClib, idn: int,
                                              clock: VirtualClock) -> None:
    lib.load_technique(idn, 0, "cp4.ecc", cp([(1e-3, 100.0)]), True, True)
    lib.start_channel(idn, 0)
    clock.sleep_until(10.0)
    lib.disconnect(idn)
    clock.sleep_until(50.0)
    again, _ = lib.connect("USB0", 5)
    assert lib.channel_info(again, 0).FirmwareCode == 5  # no reload needed
    v = lib.current_values(again, 0)
    assert v.State == 1 and v.ElapsedTime == pytest.approx(50.0)
    d = merged(drain(lib, again), "cp")
    np.testing.assert_allclose(d["t"], np.arange(1, 51), atol=TB["cp"])


# ---- faults ------------------------------------------------------------------------------------


def test_faults_are_enacted_as_dll_codes(clock: VirtualClock) -> None:
    plan = FaultPlan([
        Fault("timeout", 5.0, "sim-SP300-1", "poll"),
        Fault("garbled", 6.0, "sim-SP300-1", "poll"),
        Fault("dll_error", 0.0, "sim-SP300-1", "load", code=-14),
        Fault("disconnect", 8.0, "sim-SP300-1", "poll"),
        Fault("dll_error", 9.0, "other", "poll", code=-11),  # another instrument's
    ])
    lib = SimulatedEClib(clock, faults=plan)
    lib.attach_cell(0, EquivalentCircuitCell())
    idn, _ = lib.connect("USB0", 5)
    lib.load_firmware(idn, [0])
    with pytest.raises(EClibError) as e:
        lib.load_technique(idn, 0, "cp4.ecc", cp([(1e-3, 100.0)]), True, True)
    assert e.value.code == -14
    lib.load_technique(idn, 0, "cp4.ecc", cp([(1e-3, 100.0)]), True, True)
    lib.start_channel(idn, 0)
    clock.sleep_until(5.0)
    with pytest.raises(EClibError) as e:
        lib.get_data(idn, 0)
    assert e.value.code == -12  # transient: the next call works
    assert lib.get_data(idn, 0).info.NbRows == 5
    clock.sleep_until(6.0)
    with pytest.raises(EClibError) as e:
        lib.get_data(idn, 0)
    assert e.value.code == -404
    assert lib.get_data(idn, 0).info.NbRows == 1  # the 6 s row was not lost
    clock.sleep_until(8.0)
    with pytest.raises(EClibError) as e:
        lib.current_values(idn, 0)
    assert e.value.code == -200
    with pytest.raises(EClibError) as e:
        lib.get_data(idn, 0)
    assert e.value.code == -1  # until reconnected
    clock.sleep_until(20.0)
    again, _ = lib.connect("USB0", 5)
    v = lib.current_values(again, 0)
    assert v.State == 1 and v.ElapsedTime == pytest.approx(20.0)
    assert sum(x.info.NbRows for x in drain(lib, again)) == 14


def test_forever_disconnect_refuses_connect(clock: VirtualClock) -> None:
    lib = SimulatedEClib(clock, faults=FaultPlan([Fault("disconnect", 1.0, count=-1)]))
    idn, _ = lib.connect("USB0", 5)
    clock.sleep_until(2.0)
    for _ in range(3):
        with pytest.raises(EClibError) as e:
            lib.connect("USB0", 5)
        assert e.value.code == -201
    with pytest.raises(EClibError) as e:
        lib.get_data(idn, 0)
    assert e.value.code == -1


def test_stop_keeps_data_and_reports_the_last_technique(lib: SimulatedEClib, idn: int,
                                                        clock: VirtualClock) -> None:
    lib.load_technique(idn, 0, "cplimit4.ecc", limit("Current_step", [(1e-3, 100.0)], [], 1),
                       True, True)
    lib.start_channel(idn, 0)
    clock.sleep_until(12.5)
    lib.stop_channel(idn, 0)
    clock.sleep_until(30.0)
    v = lib.current_values(idn, 0)
    assert v.State == 0 and v.ElapsedTime == pytest.approx(12.5)
    assert v.TimeBase == pytest.approx(34e-6) and v.I == 0.0
    assert sum(x.info.NbRows for x in drain(lib, idn)) == 12
    st = lib.channel_status(0)
    assert not st.running and st.technique_id == 155


def test_paper_cell_campaign_slice_is_fast_and_consistent(clock: VirtualClock) -> None:
    """Two hours of 1 s CPLIMIT records on the paper twin, read after the fact in one drain."""
    lib = SimulatedEClib(clock)
    cell = make_cell("NaK", 65.0, None, "NaK", None, 0.5, 25.0, 10.0, seed=3)
    lib.attach_cell(0, cell)
    idn, _ = lib.connect("USB0", 5)
    lib.load_firmware(idn, [0])
    i = 0.3e-3 * 0.5
    strip = limit("Current_step", [(i, 1800.0)], [(cfg(0, True), 1.0)], 1, i_range=7)
    plate = limit("Current_step", [(-i, 1800.0)], [(cfg(0, False), -1.0)], 1, i_range=7)
    seq = [("cplimit4.ecc", strip), ("cplimit4.ecc", plate), ("loop4.ecc", loop(1, 0))]
    bufs = run(lib, idn, clock, seq, 4 * 1800.0 + 10)
    assert sum(x.info.NbRows for x in bufs) == 4 * 1800
    assert next(x.info.StartTime for x in bufs if x.info.TechniqueIndex == 1) == 1800.0
    assert lib.current_values(idn, 0).State == 0


# ---- laziness, recording rules, bench hooks ----------------------------------------------------


def test_data_do_not_depend_on_how_often_labctl_asks() -> None:
    """Polled every 0.7 s or read once long after the end: the same rows (lazy firmware)."""
    thr = 1e-3 * (10.0 + 1000.0 * (1 - math.exp(-20.5 / 100.0)))

    def go(poll_s: float | None) -> list[tuple[int, int, float, np.ndarray]]:
        c = VirtualClock()
        lib = SimulatedEClib(c)
        lib.attach_cell(0, EquivalentCircuitCell(ocv_V=0.0, r_series_ohm=10.0, r_ct_ohm=1000.0,
                                                 c_dl_F=0.1))
        idn, _ = lib.connect("USB0", 5)
        lib.load_firmware(idn, [0])
        seq = [("ocv4.ecc", ocv(3.0)),
               ("cplimit4.ecc", limit("Current_step", [(1e-3, 100.0)], [(cfg(0, True), thr)],
                                      1, dt=2.0)),
               ("cp4.ecc", cp([(-1e-3, 5.5)], dt=1.5)), ("loop4.ecc", loop(1, 2)),
               ("cv4.ecc", cv([0.0, 0.05, -0.05, 0.0, 0.0], 20.0, dE=0.002)),
               ("peis4.ecc", eis(False, 1e3, 1.0, 5, 0.01))]
        for k, (e, p) in enumerate(seq):
            lib.load_technique(idn, 0, e, p, k == 0, k == len(seq) - 1)
        lib.start_channel(idn, 0)
        bufs = []
        if poll_s is None:
            c.sleep_until(200.0)
        while c.now() < 200.0:
            c.sleep_until(c.now() + poll_s)  # type: ignore[operator]
            bufs += drain(lib, idn)
        bufs += drain(lib, idn)
        out = []
        for x in bufs:
            for r in rows(x):
                out.append((x.info.TechniqueIndex, x.info.loop, x.info.StartTime, r))
        return out

    a, b_ = go(0.7), go(None)
    assert len(a) == len(b_) > 100
    for (ia, la, sa, ra), (ib, lb, sb, rb) in zip(a, b_):
        assert (ia, la) == (ib, lb) and sa == pytest.approx(sb)
        fa, fb = ra.view(np.float32), rb.view(np.float32)
        np.testing.assert_allclose(fa, fb, rtol=1e-5, atol=1e-9)  # float32 of the same values


def test_everything_crosses_a_process_boundary(lib: SimulatedEClib, idn: int,
                                               clock: VirtualClock) -> None:
    """A server process will forward these calls over multiprocessing.connection (pickle)."""
    bufs = run(lib, idn, clock, [("cp4.ecc", cp([(1e-3, 3.0)]))], 1.5)
    for obj in (bufs[0], lib.get_data(idn, 0), lib.channel_info(idn, 0),
                lib.current_values(idn, 0), lib.connect("USB0", 5)[1]):
        back = pickle.loads(pickle.dumps(obj))
        assert repr(back) == repr(obj)
    back = pickle.loads(pickle.dumps(bufs[0]))
    assert back.info == bufs[0].info and (back.words == bufs[0].words).all()


def test_record_every_dE_between_time_records(clock: VirtualClock) -> None:
    lib = SimulatedEClib(clock)
    lib.attach_cell(0, slow_cell())
    idn, _ = lib.connect("USB0", 5)
    lib.load_firmware(idn, [0])
    d = merged(run(lib, idn, clock, [("cp4.ecc", cp([(1e-3, 60.0)], dt=20.0, dE=0.05))], 70.0),
               "cp")
    on_grid = np.isclose(d["t"] % 20.0, 0.0, atol=1e-3) | np.isclose(d["t"] % 20.0, 20.0,
                                                                        atol=1e-3)
    assert on_grid.sum() == 3 and (~on_grid).sum() > 3  # dE records between the dT ones
    # a dE record comes at the first 1 s sample where E moved >= 50 mV since the last record
    dE = np.diff(np.concatenate([[0.0], d["E"]]))
    assert (dE[~on_grid] >= 0.05 - 1e-6).all()
    off = d["t"][~on_grid]
    np.testing.assert_allclose(off, np.round(off), atol=1e-3)  # on the 1 s sample grid


def test_relative_current_adds_to_the_current_at_the_start(lib: SimulatedEClib, idn: int,
                                                           clock: VirtualClock) -> None:
    seq = [("cp4.ecc", cp([(1e-3, 2.0)], i_range=8)),
           ("cp4.ecc", cp([(0.5e-3, 2.0)], relative=True, i_range=8))]
    d = merged(run(lib, idn, clock, seq, 10.0), "cp")
    np.testing.assert_allclose(d["I"], [1e-3, 1e-3, 1.5e-3, 1.5e-3], rtol=1e-6)


def test_bench_hooks(lib: SimulatedEClib, idn: int, clock: VirtualClock) -> None:
    seen: list[float] = []
    lib.before_advance = lambda: seen.append(clock.now())
    lib.load_technique(idn, 0, "cp4.ecc", cp([(1e-3, 100.0)]), True, True)
    lib.start_channel(idn, 0)
    clock.sleep_until(30.0)
    lib.advance(10.0)  # e.g. up to a cell fault's time, before the fault is applied
    assert lib.channel_status(0).elapsed_s == pytest.approx(30.0)
    assert sum(x.info.NbRows for x in drain(lib, idn)) == 30
    assert seen and seen[-1] == 30.0
    st = lib.channel_status(0)
    assert st.running and st.technique_id == 102 and st.has_cell and st.I_A == pytest.approx(1e-3)
