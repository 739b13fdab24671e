"""Bad protocols are refused with the exact FILE:LINE:COL of the problem and a clear reason.

Each case marks the offending line with ``# <-``; the test asserts an error on exactly that line
whose message contains the fragment. Cases with a cell are checked at resolve time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from labctl.protocol import (
    ProtocolError,
    load_and_resolve,
    load_cell,
    load_protocol,
    validate_files,
)

from .conftest import ROOT

H = "schema_version: 1\nname: t\nsteps:\n"
NA = ROOT / "examples/cells/na_symmetric.yaml"
NAK = ROOT / "examples/cells/nak65_half.yaml"

CASES: list[tuple[str, str, str, Path | None]] = [
    (
        "misspelt key",
        H + "  - kind: galvanostatic\n    curent: 0.25 mA/cm^2  # <-\n"
        "    current: 1 mA\n    duration: 1 h\n",
        "did you mean 'current'",
        None,
    ),
    (
        "bare number",
        H + "  - kind: galvanostatic\n    current: 0.25  # <-\n    duration: 1 h\n",
        "has no unit",
        None,
    ),
    (
        "capacity as current",
        H + "  - kind: galvanostatic\n    current: 5 mAh  # <-\n    duration: 1 h\n",
        "expected a current (mA) or current density (mA/cm^2), got a capacity",
        None,
    ),
    ("zero duration", H + "  - kind: rest\n    duration: 0 s  # <-\n", "greater than zero", None),
    (
        "negative duration",
        H + "  - kind: rest\n    duration: -5 min  # <-\n",
        "greater than zero",
        None,
    ),
    ("unknown kind", H + "  - kind: resst  # <-\n    duration: 1 h\n", "did you mean 'rest'", None),
    ("missing kind", H + "  - duration: 1 h  # <-\n", "has no 'kind'", None),
    (
        "no end condition",
        H + "  - kind: galvanostatic\n    current: 0.1 mA  # <-\n",
        "no end condition",
        None,
    ),
    (
        "plating with E_max only",
        H + "  - kind: galvanostatic\n    current: -0.1 mA\n    E_max: 0.5 V  # <-\n",
        "never ends",
        None,
    ),
    (
        "stripping with E_min only",
        H + "  - kind: galvanostatic\n    current: 0.1 mA\n    E_min: -0.5 V  # <-\n",
        "never ends",
        None,
    ),
    (
        "voltage beyond 10 V",
        H + "  - kind: potentiostatic\n    voltage: 12 V  # <-\n    duration: 1 h\n",
        "SP-300 range",
        None,
    ),
    (
        "current beyond 500 mA",
        H + "  - kind: galvanostatic\n    current: 0.6 A  # <-\n    duration: 1 h\n",
        "500 mA",
        None,
    ),
    (
        "areal current beyond 500 mA on cell",
        H + "  - kind: galvanostatic\n    current: 2000 mA/cm^2  # <-\n    duration: 1 s\n",
        "beyond the SP-300",
        NA,
    ),
    (
        "f_high above 7 MHz",
        H + "  - kind: eis\n    f_high: 10 MHz  # <-\n    f_low: 1 Hz\n",
        "10 µHz – 7 MHz",
        None,
    ),
    (
        "f_low below 10 uHz",
        H + "  - kind: eis\n    f_high: 1 kHz\n    f_low: 1 uHz  # <-\n",
        "10 µHz – 7 MHz",
        None,
    ),
    (
        "f_low above f_high",
        H + "  - kind: eis\n    f_high: 1 Hz\n    f_low: 1 kHz  # <-\n",
        "must be below f_high",
        None,
    ),
    (
        "PEIS current amplitude",
        H + "  - kind: eis\n    f_high: 1 kHz\n    f_low: 1 Hz\n    amplitude: 1 mA  # <-\n",
        "PEIS amplitude must be a voltage",
        None,
    ),
    (
        "GEIS without amplitude",
        H + "  - kind: eis\n    mode: GEIS  # <-\n    f_high: 1 kHz\n    f_low: 1 Hz\n",
        "GEIS needs",
        None,
    ),
    (
        "schema_version 2",
        "schema_version: 2  # <-\nname: t\nsteps:\n  - kind: rest\n    duration: 1 h\n",
        "unsupported schema_version 2",
        None,
    ),
    (
        "missing schema_version",
        "name: t  # <-\nsteps:\n  - kind: rest\n    duration: 1 h\n",
        "missing required key 'schema_version'",
        None,
    ),
    (
        "misspelt top-level key",
        "schema_version: 1\nname: t\nstep:  # <-\n  - kind: rest\n    duration: 1 h\n",
        "did you mean 'steps'",
        None,
    ),
    ("empty steps", "schema_version: 1\nname: t\nsteps: []  # <-\n", "at least 1", None),
    (
        "yaml syntax",
        H + "  - kind: rest\n    duration: [1 h\n  - kind: rest  # <-\n",
        "YAML syntax error",
        None,
    ),
    (
        "duplicate key",
        H + "  - kind: rest\n    duration: 1 h\n    duration: 2 h  # <-\n",
        "YAML syntax error",
        None,
    ),
    (
        "specific capacity without alloy mass",
        H + "  - kind: galvanostatic\n    current: 0.1 mA\n    capacity: 300 mAh/g  # <-\n",
        "no anode.alloy_mass_mg",
        NA,
    ),
    ("unknown unit", H + "  - kind: rest\n    duration: 5 blorps  # <-\n", "unknown unit", None),
    (
        "scan rate as voltage",
        H + "  - kind: cv\n    E_start: 0 V\n    vertices: [0.5 V]\n    scan_rate: 10 mV  # <-\n",
        "expected a scan rate",
        None,
    ),
    (
        "temperature as duration",
        H + "  - kind: rest\n    duration: 25 degC  # <-\n",
        "got a temperature",
        None,
    ),
    (
        "negative tolerance",
        H + "  - kind: pressure\n    setpoint: 10 MPa\n    tolerance: -1 MPa  # <-\n",
        "greater than zero",
        None,
    ),
    (
        "ccd max below start",
        H + "  - kind: ccd_ramp\n    start: 1 mA/cm^2\n    increment: 0.1 mA/cm^2\n"
        "    max: 0.5 mA/cm^2  # <-\n    half_cycle: 30 min\n",
        "below start",
        None,
    ),
    (
        "ccd mixed current kinds",
        H + "  - kind: ccd_ramp\n    start: 0.1 mA\n    increment: 0.1 mA/cm^2  # <-\n"
        "    max: 5 mA\n    half_cycle: 30 min\n",
        "all be currents",
        None,
    ),
    (
        "ccd half_cycle as current",
        H + "  - kind: ccd_ramp\n    start: 0.1 mA\n    increment: 0.1 mA\n"
        "    max: 5 mA\n    half_cycle: 1 mA  # <-\n",
        "expected a time",
        None,
    ),
    (
        "repeat without count",
        H + "  - kind: repeat  # <-\n    steps:\n      - kind: rest\n        duration: 1 h\n",
        "repeat needs count",
        None,
    ),
    (
        "repeat count vs vary",
        H + "  - kind: repeat\n    count: 3  # <-\n    vary:\n      j: [1 mA, 2 mA]\n"
        "    steps:\n      - kind: galvanostatic\n        current: ${j}\n        duration: 1 h\n",
        "does not match",
        None,
    ),
    (
        "undefined placeholder",
        H + "  - kind: repeat\n    vary:\n      j: [1 mA]\n    steps:\n"
        "      - kind: galvanostatic\n        current: ${j}\n        duration: 1 h\n"
        "      - kind: galvanostatic\n        current: -${k}  # <-\n        duration: 1 h\n",
        "not defined",
        None,
    ),
    (
        "unused vary",
        H + "  - kind: repeat\n    vary:\n      q: [1 mA]  # <-\n    steps:\n"
        "      - kind: rest\n        duration: 1 h\n",
        "not used",
        None,
    ),
    (
        "vary value of wrong kind",
        H + "  - kind: repeat\n    vary:\n      j: [1 mA, 10 min]\n    steps:\n"
        "      - kind: galvanostatic\n        current: ${j}  # <-\n        duration: 1 h\n",
        "with j = '10 min' from vary",
        None,
    ),
    (
        "limits inverted",
        "schema_version: 1\nname: t\nlimits:\n  E_min: 1 V\n  E_max: -1 V  # <-\n"
        "steps:\n  - kind: rest\n    duration: 1 h\n",
        "must be above E_min",
        None,
    ),
    (
        "interleave every beyond capacity",
        H + "  - kind: interleave\n    galvanostatic:\n      current: 0.25 mA/cm^2\n"
        "      capacity: 0.1 mAh/cm^2\n    every: 1 mAh/cm^2  # <-\n    rest: 10 min\n"
        "    eis:\n      f_high: 7 MHz\n"
        "      f_low: 1 Hz\n",
        "no EIS would be interleaved",
        NAK,
    ),
    (
        "cv without vertices",
        H + "  - kind: cv\n    E_start: 0 V\n    vertices: []  # <-\n    scan_rate: 10 mV/s\n",
        "at least 1",
        None,
    ),
    (
        "detector typo",
        H + "  - kind: galvanostatic\n    current: 1 mA\n    duration: 1 h\n    detectors:\n"
        "      noise_sigmaa: 5  # <-\n",
        "did you mean 'noise_sigma'",
        None,
    ),
    (
        "repeat count zero",
        H + "  - kind: repeat\n    count: 0  # <-\n    steps:\n"
        "      - kind: rest\n        duration: 1 h\n",
        "greater than or equal to 1",
        None,
    ),
    (
        "negative cycles",
        H + "  - kind: cv\n    E_start: 0 V\n    vertices: [0.5 V]\n    scan_rate: 1 mV/s\n"
        "    cycles: -1  # <-\n",
        "greater than or equal to 1",
        None,
    ),
    (
        "step current above global I_max",
        "schema_version: 1\nname: t\nlimits:\n  I_max: 1 mA/cm^2\nsteps:\n"
        "  - kind: galvanostatic\n    current: 2 mA/cm^2  # <-\n    duration: 1 h\n",
        "above the limit I_max",  # same unit: found without a cell
        None,
    ),
    (
        "typo inside interleave eis",
        H + "  - kind: interleave\n    galvanostatic:\n      current: 1 mA\n      capacity: 1 mAh\n"
        "    every: 0.5 mAh\n    rest: 1 min\n    eis:\n      f_high: 7 MHz\n      f_low: 1 Hz\n"
        "      point_per_decade: 5  # <-\n",
        "did you mean 'points_per_decade'",
        None,
    ),
    (
        "typo inside nested repeat",
        H
        + "  - kind: repeat\n    count: 2\n    steps:\n      - kind: rest\n        duration: 1 h\n"
        "        setle: 1 mV/s  # <-\n",
        "did you mean 'settle'",
        None,
    ),
    ("scalar top level", "just a string  # <-\n", "mapping at the top level", None),
]


def _marked_line(text: str) -> int:
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if "# <-" in line]
    assert len(lines) == 1, "each case marks exactly one line"
    return lines[0]


def test_enough_cases() -> None:
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("label", "text", "fragment", "cell"), CASES, ids=[c[0] for c in CASES])
def test_invalid_protocol_is_located(
    label: str, text: str, fragment: str, cell: Path | None, write: Callable[..., Path]
) -> None:
    path = write(text)
    with pytest.raises(ProtocolError) as info:
        if cell is None:
            load_protocol(path)
        else:
            load_and_resolve(path, cell)
    line = _marked_line(text)
    errors = info.value.errors
    hits = [e for e in errors if e.line == line and fragment in e.message]
    assert hits, f"{label}: wanted line {line} with {fragment!r}, got:\n{info.value}"
    assert str(hits[0]).startswith(f"{path}:{line}:{hits[0].col}: ")
    assert hits[0].col >= 1


@pytest.mark.parametrize(("label", "text", "fragment", "cell"), CASES, ids=[c[0] for c in CASES])
def test_labctl_run_refuses_before_touching_anything(
    label: str, text: str, fragment: str, cell: Path | None, write: Callable[..., Path],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The same file given to `labctl run --sim`: exit 2, located line, no database touched
    (so certainly no run or step row), nothing sent to an instrument."""
    from labctl.cli import main

    path = write(text)
    db = tmp_path / "never.db"
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(path), "--cell", str(cell or NA), "--sim", "--db", f"sqlite:///{db}"])
    assert exit_.value.code == 2, label
    assert f"{path}:{_marked_line(text)}:" in capsys.readouterr().err
    assert not db.exists()


def test_all_errors_are_collected(write: Callable[..., Path]) -> None:
    text = (
        H + "  - kind: rest\n    duration: 0 s\n  - kind: galvanostatic\n    current: 1 mAh\n"
        "    duration: 1 h\n  - kind: eis\n    f_high: 1 Hz\n    f_low: 1 kHz\n"
    )
    path = write(text)
    errors = validate_files([path])
    assert [e.line for e in errors] == [5, 7, 11]


def test_located_column_points_at_value(write: Callable[..., Path]) -> None:
    path = write(H + "  - kind: rest\n    duration: 0 s\n")
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    (err,) = info.value.errors
    assert (err.line, err.col) == (5, 15)
    assert err.path == ("steps", 0, "duration")


def test_misspelt_key_points_at_key(write: Callable[..., Path]) -> None:
    path = write(H + "  - kind: rest\n    duration: 1 h\n    setle: 1 mV/s\n")
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    (err,) = info.value.errors
    assert (err.line, err.col) == (6, 5)
    assert "did you mean 'settle'" in err.message


def test_cell_errors_are_located(write: Callable[..., Path]) -> None:
    path = write("id: c1\nanode:\n  material: Na\ndiamter_mm: 6\n", "cell.yaml")
    with pytest.raises(ProtocolError) as info:
        load_cell(path)
    msgs = [str(e) for e in info.value.errors]
    assert any(m.startswith(f"{path}:4:1: ") and "did you mean 'diameter_mm'" in m for m in msgs)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    errors = validate_files([tmp_path / "nope.yaml"])
    assert len(errors) == 1 and "cannot read file" in errors[0].message


def test_validate_files_with_bad_cell_reports_both(write: Callable[..., Path]) -> None:
    cell = write("id: c1\nanode:\n  material: Na\n", "cell.yaml")
    proto = write(H + "  - kind: rest\n    duration: 0 s\n")
    errors = validate_files([proto], cell)
    assert {Path(e.file).name for e in errors} == {"cell.yaml", "p.yaml"}
