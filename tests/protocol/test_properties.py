"""Property tests: quantity parsing round-trips and classifies; generated steps validate or are
rejected with a located error."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.protocol import ProtocolError, load_protocol, parse_protocol_text
from labctl.protocol.units import Kind, QuantityError, to_qty

UNITS: dict[str, tuple[Kind, float]] = {
    "mA": (Kind.CURRENT, 1.0),
    "uA": (Kind.CURRENT, 1e-3),
    "A": (Kind.CURRENT, 1e3),
    "mA/cm^2": (Kind.CURRENT_DENSITY, 1.0),
    "mAh": (Kind.CAPACITY, 1.0),
    "mAh/cm^2": (Kind.AREAL_CAPACITY, 1.0),
    "mAh/g": (Kind.SPECIFIC_CAPACITY, 1.0),
    "s": (Kind.TIME, 1.0),
    "min": (Kind.TIME, 60.0),
    "h": (Kind.TIME, 3600.0),
    "V": (Kind.VOLTAGE, 1.0),
    "mV": (Kind.VOLTAGE, 1e-3),
    "mV/s": (Kind.SCAN_RATE, 1e-3),
    "Hz": (Kind.FREQUENCY, 1.0),
    "MHz": (Kind.FREQUENCY, 1e6),
    "MPa": (Kind.PRESSURE, 1.0),
    "kPa": (Kind.PRESSURE, 1e-3),
}

magnitudes = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(magnitudes, st.sampled_from(sorted(UNITS)))
def test_round_trip_value_and_kind(x: float, unit: str) -> None:
    kind, factor = UNITS[unit]
    q = to_qty(f"{x!r} {unit}")
    assert q.kind is kind
    assert q.value == pytest.approx(x * factor, rel=1e-9, abs=1e-12)
    assert q.text == f"{x!r} {unit}"
    assert to_qty(q.text).value == q.value


@given(magnitudes, st.sampled_from(sorted(UNITS)), st.sampled_from(list(Kind)))
def test_wrong_kind_is_named(x: float, unit: str, wanted: Kind) -> None:
    kind, _ = UNITS[unit]
    if kind is wanted:
        assert to_qty(f"{x} {unit}", wanted).kind is wanted
        return
    with pytest.raises(QuantityError) as info:
        to_qty(f"{x} {unit}", wanted)
    assert f"expected a{'n' if wanted.label[0] in 'aeiou' else ''} {wanted.label}" in str(
        info.value
    )
    assert kind.label in str(info.value)


@given(st.one_of(magnitudes, st.integers()))
def test_bare_numbers_rejected(x: float) -> None:
    with pytest.raises(QuantityError, match="no unit"):
        to_qty(x)


positive = st.floats(min_value=1e-3, max_value=400, allow_nan=False)
durations = st.tuples(positive, st.sampled_from(["s", "min", "h"]))
voltages = st.floats(min_value=-9.9, max_value=9.9, allow_nan=False)


@st.composite
def valid_step(draw: st.DrawFn) -> str:
    """A random valid step as YAML text (each key on its own line)."""
    d, du = draw(durations)
    kind = draw(
        st.sampled_from(["rest", "galvanostatic", "potentiostatic", "eis", "pressure", "cv"])
    )
    if kind == "rest":
        return f"  - kind: rest\n    duration: {d} {du}\n"
    if kind == "galvanostatic":
        i = draw(positive) * draw(st.sampled_from([1, -1]))
        unit = draw(st.sampled_from(["mA", "mA/cm^2"]))
        end = draw(st.sampled_from(["duration", "capacity", "voltage"]))
        body = f"  - kind: galvanostatic\n    current: {i} {unit}\n"
        if end == "duration":
            return body + f"    duration: {d} {du}\n"
        if end == "capacity":
            return body + f"    capacity: {draw(positive)} mAh/cm^2\n"
        return body + ("    E_max: 0.5 V\n" if i > 0 else "    E_min: -0.5 V\n")
    if kind == "potentiostatic":
        return (
            f"  - kind: potentiostatic\n    voltage: {draw(voltages)} V\n    duration: {d} {du}\n"
        )
    if kind == "eis":
        lo = draw(st.floats(min_value=1e-5, max_value=1e3))
        hi = draw(st.floats(min_value=lo * 1.01, max_value=7e6)) if lo * 1.01 <= 7e6 else 7e6
        return f"  - kind: eis\n    f_high: {hi} Hz\n    f_low: {lo} Hz\n"
    if kind == "pressure":
        mpa = draw(st.floats(min_value=1e-3, max_value=100))  # a cell stack takes <= 100 MPa
        return f"  - kind: pressure\n    setpoint: {mpa} MPa\n    tolerance: 0.5 MPa\n"
    v = draw(voltages)
    rate = draw(positive)
    return f"  - kind: cv\n    E_start: 0 V\n    vertices: [{v} V]\n    scan_rate: {rate} mV/s\n"


@settings(max_examples=60, deadline=None)
@given(st.lists(valid_step(), min_size=1, max_size=5))
def test_generated_valid_steps_validate(steps: list[str]) -> None:
    text = "schema_version: 1\nname: gen\nsteps:\n" + "".join(steps)
    doc = parse_protocol_text("gen.yaml", text)
    assert len(doc.spec.steps) == len(steps)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(valid_step(), max_size=3),
    st.floats(max_value=0, allow_nan=False, allow_infinity=False, min_value=-1e6),
    st.sampled_from(["s", "min", "h"]),
)
def test_generated_bad_durations_rejected_with_line(prefix: list[str], d: float, unit: str) -> None:
    head = "schema_version: 1\nname: gen\nsteps:\n" + "".join(prefix)
    bad_line = head.count("\n") + 2
    text = head + f"  - kind: rest\n    duration: {d} {unit}\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gen.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ProtocolError) as info:
            load_protocol(path)
    errs = info.value.errors
    assert [(e.line, e.col) for e in errs] == [(bad_line, 15)]
    assert "greater than zero" in errs[0].message
