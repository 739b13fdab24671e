"""labctl techniques -> SP-300 DLL parameters (`labctl_drivers.biologic.translate`), no DLL."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl_drivers.biologic.eclib import ParamType
from labctl_drivers.biologic.translate import (
    OPEN_ENDED_MAX_S,
    SPECS,
    DllTechnique,
    check_sequence,
    check_technique,
    max_step_s,
    translate,
    translate_sequence,
)
from labctl_drivers.errors import InstrumentError, Unsupported
from labctl_drivers.interfaces import EndReason
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

H = 3600.0
TIMEBASE = {"OCV": 20e-6, "CA": 21e-6, "CPLIMIT": 34e-6, "CALIMIT": 34e-6, "CV": 45e-6,
            "PEIS": 24e-6, "GEIS": 24e-6, "LOOP": 20e-6}


def f32(x: float) -> float:
    return float(np.float32(x))


def check_params(d: DllTechnique) -> None:
    """Every parameter is a label of its technique, with its type, a valid index, and a
    single-precision value where it is a single; timed steps fit the 31-bit counter."""
    spec = SPECS[d.name]
    seen = set()
    for p in d.params:
        kind, length = spec.labels[p.label]
        assert p.type is kind and 0 <= p.index < length
        assert (p.label, p.index) not in seen
        seen.add((p.label, p.index))
        if kind is ParamType.SINGLE:
            assert isinstance(p.value, float) and p.value == f32(p.value)
        elif kind is ParamType.BOOLEAN:
            assert isinstance(p.value, bool)
        else:
            assert isinstance(p.value, int) and not isinstance(p.value, bool)
    assert d.timebase_s == TIMEBASE[d.name]
    for label in ("Duration_step", "Rest_time_T"):
        for v in d.values(label):
            assert float(v) <= d.timebase_s * 2**31
    assert "sweep" not in {p.label for p in d.params}


def names(program) -> list[str]:
    return [d.name for d in program.dll]


# -- rests ------------------------------------------------------------------------------------


def test_short_rest_is_one_ocv() -> None:
    plan = translate(OpenCircuit(11 * H, Recording(every_dt_s=10.0, every_dE_V=None)))
    (d,) = plan.dll
    check_params(d)
    assert d.ecc_file == "ocv4.ecc" and d.technique_id == 100
    assert d.value("Rest_time_T") == 11 * H and d.value("Record_every_dT") == 10.0
    assert d.value("Record_every_dE") == 0.0  # None = no dE-triggered records
    assert plan.planned_duration_s == 11 * H and plan.limits == ()


def test_24h_rest_is_ocv_loop_ocv() -> None:
    plan = translate(OpenCircuit(24 * H))
    assert [d.name for d in plan.dll] == ["OCV", "LOOP", "OCV"]
    first, loop, last = plan.dll
    for d in plan.dll:
        check_params(d)
    assert loop.ecc_file == "loop4.ecc" and loop.technique_id == 150
    # 24 h / 11.9 h -> 3 executions of 8 h: the first, once more through the LOOP, the last
    assert first.value("Rest_time_T") == last.value("Rest_time_T") == 8 * H
    assert loop.value("loop_N_times") == 1 and loop.value("protocol_number") == 0
    assert plan.planned_duration_s == pytest.approx(24 * H)


def test_long_rest_loops_back_to_its_own_index() -> None:
    prog = translate_sequence([ConstantCurrent(1e-3, 60.0), ConstantVoltage(3.0, 60.0),
                               OpenCircuit(100 * H)])
    assert names(prog) == ["CPLIMIT", "CA", "OCV", "LOOP", "OCV"]
    loop = prog.dll[3]
    n = math.ceil(100 * H / max_step_s("OCV"))
    assert loop.value("protocol_number") == 2  # the OCV's position in the whole sequence
    assert loop.value("loop_N_times") == n - 2
    assert prog.dll[2].value("Rest_time_T") == pytest.approx(100 * H / n, rel=1e-7)
    assert [prog.source_of(j) for j in range(5)] == [0, 1, 2, 2, 2]
    assert prog.techniques[2].planned_duration_s == pytest.approx(100 * H, rel=1e-7)


def test_rest_up_to_two_steps_needs_no_loop() -> None:
    plan = translate(OpenCircuit(20 * H))
    assert [d.name for d in plan.dll] == ["OCV", "OCV"]
    assert plan.dll[0].value("Rest_time_T") == 10 * H


@pytest.mark.parametrize("hours", [0.001, 1, 11.9, 12, 23.8, 24, 72, 1000])
def test_every_rest_fits_the_timebase(hours: float) -> None:
    plan = translate(OpenCircuit(hours * H))
    for d in plan.dll:
        check_params(d)
    assert plan.planned_duration_s == pytest.approx(hours * H, rel=1e-6)


# -- constant current -------------------------------------------------------------------------


def test_cp_limits_on_the_instrument() -> None:
    plan = translate(ConstantCurrent(-2e-3, 3600.0, E_min_V=2.0, E_max_V=3.0,
                                     recording=Recording(every_dt_s=5.0, every_dE_V=0.002)))
    (d,) = plan.dll
    check_params(d)
    assert d.ecc_file == "cplimit4.ecc" and d.technique_id == 155
    assert d.value("Current_step") == f32(-2e-3) and d.value("Duration_step") == 3600.0
    assert d.value("Test1_Config") == 0b101 and d.value("Test1_Value") == 3.0  # E > 3 V
    assert d.value("Test2_Config") == 0b001 and d.value("Test2_Value") == 2.0  # E < 2 V
    assert d.value("Test3_Config") == 0  # inactive
    assert d.value("Exit_Cond") == 2  # a safety window stops the sequence
    assert d.value("I_Range") == 8  # the 1 mA range (7) cannot hold 2 mA: 10 mA is 8
    assert d.value("Record_every_dE") == f32(0.002) and d.value("Record_every_dT") == 5.0
    assert d.value("Step_number") == 0 and d.value("N_Cycles") == 0
    assert plan.limits == (EndReason.E_MAX, EndReason.E_MIN) and not plan.charge_bound
    assert plan.limit_values == {EndReason.E_MAX: 3.0, EndReason.E_MIN: 2.0}


def test_cp_current_range_is_never_auto() -> None:
    for current, rng in [(1e-3, 7), (1.0001e-3, 8), (-5e-7, 4), (0.4, 10), (0.1, 9), (2e-11, 0)]:
        (d,) = translate(ConstantCurrent(current, 10.0)).dll
        assert d.value("I_Range") == rng


def test_charge_bound_cp() -> None:
    plan = translate(ConstantCurrent(-2e-3, 3600.0, E_min_V=1.0, charge_limit_C=0.02))
    assert plan.dll[0].value("Duration_step") == 10.0 and plan.charge_bound
    assert plan.planned_duration_s == 10.0
    # the charge limit further away than the duration: time-bound
    plan = translate(ConstantCurrent(-2e-3, 5.0, charge_limit_C=0.02))
    assert plan.dll[0].value("Duration_step") == 5.0 and not plan.charge_bound
    # open-ended with a charge limit: a timed step, ended as CHARGE
    plan = translate(ConstantCurrent(1e-3, None, E_max_V=3.5, charge_limit_C=36.0))
    assert plan.planned_duration_s == 36000.0 and plan.charge_bound
    assert plan.dll[0].value("Exit_Cond") == 2  # E_max is a safety bound here


def test_open_ended_cp_uses_cycles() -> None:
    plan = translate(ConstantCurrent(-1e-3, None, E_min_V=2.5))
    (d,) = plan.dll
    check_params(d)
    assert d.value("Step_number") == 0 and d.value("N_Cycles") == 999
    assert d.value("Duration_step") == pytest.approx(34e-6 * 2**31 * 0.999, rel=1e-6)
    assert plan.planned_duration_s == OPEN_ENDED_MAX_S
    assert 20_000 * H < OPEN_ENDED_MAX_S < 20_300 * H  # ~2.3 years
    assert d.value("Exit_Cond") == 1  # its limit is its normal end: a sequence goes on
    assert plan.limits == (EndReason.E_MIN,) and plan.limits_continue


@pytest.mark.parametrize("hours,steps,cycles", [(1, 1, 1), (20, 1, 1), (48, 3, 1),
                                                (400, 20, 1), (1000, 20, 3)])
def test_long_cp_is_split_over_steps_then_cycles(hours: float, steps: int, cycles: int) -> None:
    plan = translate(ConstantCurrent(1e-3, hours * H, E_max_V=4.0))
    (d,) = plan.dll
    check_params(d)
    assert d.value("Step_number") == steps - 1 and d.value("N_Cycles") == cycles - 1
    durations = d.values("Duration_step")
    assert len(durations) == steps and len(set(durations)) == 1
    assert d.values("Exit_Cond") == [2] * steps and d.values("Test1_Config") == [5] * steps
    assert plan.planned_duration_s == pytest.approx(hours * H, rel=1e-6)


def test_cutoffs_choose_the_exit_condition() -> None:
    tech = ConstantCurrent(1e-3, 3600.0, E_max_V=3.0)
    assert translate(tech).dll[0].value("Exit_Cond") == 2
    # the engine's normal ends (strings, with names that are not instrument ends)
    prog = translate_sequence([tech], cutoffs=[{"time", "charge", "E_max", "settled"}])
    assert prog.dll[0].value("Exit_Cond") == 1 and prog.techniques[0].limits_continue
    # one limit a cut-off, the other a safety bound: Exit_Cond is per step, safety wins
    both = ConstantCurrent(1e-3, 3600.0, E_min_V=2.0, E_max_V=3.0)
    prog = translate_sequence([both], cutoffs=[{EndReason.E_MAX}])
    assert prog.dll[0].value("Exit_Cond") == 2
    with pytest.raises(ValueError):
        translate_sequence([tech, tech], cutoffs=[None])


# -- constant voltage -------------------------------------------------------------------------


def test_ca_with_current_limit_is_calimit() -> None:
    plan = translate(ConstantVoltage(3.2, 60.0, I_limit_A=-5e-3))
    (d,) = plan.dll
    check_params(d)
    assert d.ecc_file == "calimit4.ecc" and d.technique_id == 157
    assert d.value("Voltage_step") == f32(3.2)
    assert (d.value("Test1_Config"), d.value("Test1_Value")) == (0b1100101, f32(5e-3))  # I>
    assert (d.value("Test2_Config"), d.value("Test2_Value")) == (0b1100001, f32(-5e-3))  # I<
    assert d.value("I_Range") == 8 and d.value("E_Range") == 1 and d.value("Exit_Cond") == 2
    assert plan.limits == (EndReason.I_LIMIT,)
    prog = translate_sequence([ConstantVoltage(3.2, 60.0, I_limit_A=5e-3)],
                              cutoffs=[{"I_limit"}])
    assert prog.dll[0].value("Exit_Cond") == 1
    # a limit at a range's full scale could never be exceeded on that range: the next one
    assert translate(ConstantVoltage(3.2, 60.0, 1e-3)).dll[0].value("I_Range") == 8
    assert translate(ConstantVoltage(3.2, 60.0, 0.9e-3)).dll[0].value("I_Range") == 7


def test_ca_without_limit_auto_ranges() -> None:
    plan = translate(ConstantVoltage(-1.0, 30 * H))
    (d,) = plan.dll
    check_params(d)
    assert d.name == "CA" and d.value("I_Range") == 12 and d.value("E_Range") == 0
    assert d.value("Step_number") == 2 and d.values("Duration_step") == [10 * H] * 3
    assert plan.limits == () and plan.planned_duration_s == pytest.approx(30 * H)


# -- CV ---------------------------------------------------------------------------------------


def test_cv_scan_rate_in_mV_per_s_and_current_range() -> None:
    plan = translate(CyclicVoltammetry(2.5, (3.5, 1.5), scan_rate_V_s=0.05, cycles=3,
                                       I_limit_A=1e-3))
    (d,) = plan.dll
    check_params(d)
    assert d.values("Scan_Rate") == [50.0] * 5
    assert d.values("Voltage_step") == [2.5, 3.5, 1.5, 2.5, 2.5]  # Ei, E1, E2, Ei, Ef
    assert d.value("N_Cycles") == 2 and d.value("Scan_number") == 2
    assert d.value("I_Range") == 7 and d.value("E_Range") == 1  # 1 mA holds the |I| bound
    assert plan.sweep and plan.planned_duration_s is None
    assert translate(CyclicVoltammetry(0.0, (1.0,), 0.1, I_limit_A=1.5e-3)).dll[0].value(
        "I_Range") == 8
    one = translate(CyclicVoltammetry(0.2, (1.0,), 0.1)).dll[0]
    assert one.value("I_Range") == 12  # no bound: Auto
    assert one.values("Voltage_step") == [f32(0.2), 1.0, f32(0.2), f32(0.2), f32(0.2)]


# -- EIS --------------------------------------------------------------------------------------


def test_peis_frequency_count_and_no_sweep() -> None:
    plan = translate(PotentioEIS(7e6, 1.0, 10, amplitude_V=0.01))
    (d,) = plan.dll
    check_params(d)
    assert d.value("Frequency_number") == len(eis_frequencies(7e6, 1.0, 10)) == 69
    assert d.value("Initial_frequency") == 7e6 and d.value("Final_frequency") == 1.0
    assert d.value("vs_initial") is True and d.value("I_Range") == 12
    fixed = translate(PotentioEIS(1e5, 1.0, 5, E_dc_V=3.0)).dll[0]
    assert fixed.value("vs_initial") is False and fixed.value("Initial_Voltage_step") == 3.0


def test_geis_range_holds_amplitude_and_dc() -> None:
    d = translate(GalvanoEIS(1e4, 0.1, 5, amplitude_A=1e-4)).dll[0]
    check_params(d)
    assert d.value("Frequency_number") == 26 and d.value("I_Range") == 7  # 2·0.1 mA <= 1 mA
    d = translate(GalvanoEIS(1e4, 0.1, 5, amplitude_A=1e-4, I_dc_A=-1e-3)).dll[0]
    assert d.value("I_Range") == 8 and d.value("Initial_Current_step") == f32(-1e-3)


# -- what cannot run --------------------------------------------------------------------------


@pytest.mark.parametrize("tech,fragment", [
    (CyclicVoltammetry(0.0, (1.0, 0.5, 0.2), 0.1), "one or two vertices"),
    (ConstantCurrent(0.6, 10.0), "0.5 A"),
    (ConstantCurrent(1e-3, None), "open-ended"),
    (ConstantCurrent(0.0, 10.0, charge_limit_C=1.0), "never be reached"),
    (ConstantCurrent(1e-3, 10.0, E_min_V=3.0, E_max_V=2.0), "below E_max"),
    (ConstantVoltage(12.0, 10.0), "10.0 V"),
    (OpenCircuit(0.0), "positive"),
    (PotentioEIS(1e7, 1.0), "7e+06"),
    (GalvanoEIS(1e3, 10.0, amplitude_A=0.0), "non-zero"),
    ("not a technique", "cannot run str"),
])
def test_check_technique_says_what_cannot_run(tech: object, fragment: str) -> None:
    problems = check_technique(tech)
    assert problems and any(fragment in p for p in problems), problems
    with pytest.raises(Unsupported, match="cannot run on an SP-300") as ei:
        translate_sequence([tech])  # type: ignore[list-item]
    assert isinstance(ei.value, InstrumentError)


def test_valid_techniques_have_no_problems() -> None:
    techs = [OpenCircuit(1e6), ConstantCurrent(-1e-3, None, E_min_V=0.0),
             ConstantVoltage(3.0, 10.0, 1e-3), CyclicVoltammetry(0, (1,), 0.01),
             PotentioEIS(7e6, 1e-5), GalvanoEIS(1e5, 1.0)]
    assert [check_technique(t) for t in techs] == [[]] * len(techs)
    assert check_sequence(techs) == [] and check_sequence([]) == ["an empty sequence"]
    assert check_sequence([techs[0], ConstantCurrent(1, 1)])[0].startswith("technique 1:")


def test_channel_current_ranges_bound_the_choice() -> None:
    tech = ConstantCurrent(1e-9, 10.0)
    assert translate(tech).dll[0].value("I_Range") == 1
    # a channel without the low-current board starts at 10 µA (range 5)
    assert translate(tech, i_range_bounds=(5, 10)).dll[0].value("I_Range") == 5
    with pytest.raises(Unsupported, match="goes up to range 9"):
        translate(ConstantCurrent(0.2, 10.0), i_range_bounds=(0, 9))
