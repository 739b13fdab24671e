"""Warnings show, don't block, and are recorded with the run; refusals name the reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from labctl.cli import main
from labctl.protocol import ProtocolError, load_and_resolve
from labctl.recording import models as m
from labctl.recording.database import open_database

from .conftest import ROOT

NAK_HALF = ROOT / "examples/cells/nak65_half.yaml"
REST_CCD = ("schema_version: 1\nname: t\nanalyses: [ccd]\nsteps:\n  - kind: rest\n"
            "    duration: 2 s\n")
STRIP = ("schema_version: 1\nname: t\nanalyses: [critical_stripping]\nsteps:\n"
         "  - kind: galvanostatic\n    current: 0.1 mA\n    E_max: 0.5 V\n")


def _nak(write: Callable[..., Path], k: float, temperature: float = 25.0) -> Path:
    return write(f"id: nak{k:g}\nanode:\n  material: NaK\n  k_wt_pct: {k:g}\n"
                 f"  alloy_mass_mg: 10\ndiameter_mm: 6\ntemperature_C: {temperature:g}\n",
                 f"nak{k:g}.yaml")


@pytest.mark.parametrize("k", [95, 20])
def test_nak_outside_liquid_window_refused_for_stripping(k: float,
                                                         write: Callable[..., Path]) -> None:
    cell = _nak(write, k)
    with pytest.raises(ProtocolError) as info:
        load_and_resolve(write(STRIP), cell)
    (err,) = info.value.errors
    assert err.file == str(cell) and err.line == 4  # the cell's k_wt_pct line
    assert "not liquid at 25 °C" in err.message and "critical stripping" in err.message


def test_nak_outside_window_warns_otherwise(write: Callable[..., Path]) -> None:
    resolved, _, _ = load_and_resolve(write(REST_CCD.replace("analyses: [ccd]\n", "")),
                                      _nak(write, 95))
    assert len(resolved.warnings) == 1 and "warning: NaK with 95 wt% K" in resolved.warnings[0]


def test_ccd_on_half_cell_warns_and_is_recorded(write: Callable[..., Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    protocol = write(REST_CCD)
    main_args = ["validate", str(protocol), "--cell", str(NAK_HALF)]
    main(main_args)  # warnings do not block: exit 0
    err = capsys.readouterr().err
    assert f"{protocol}:3:" in err and "not symmetric" in err
    url = f"sqlite:///{tmp_path / 'w.db'}"
    main(["run", str(protocol), "--cell", str(NAK_HALF), "--sim", "--db", url])
    with open_database(url).connect() as conn:
        rows = conn.execute(select(m.Event.severity, m.Event.message)).all()
        status = conn.scalar(select(m.Run.status))
    assert status == "completed"
    assert any(sev == "warning" and "not symmetric" in msg for sev, msg in rows)


STATION = ("name: small-board\npotentiostats:\n"
           "  - {name: sp-a, driver: biologic-sp300}\n"
           "  - name: sp-b\n    driver: biologic-sp300\n"
           "    ranges: {E_max_V: 5, I_max_mA: 100, f_max_Hz: 1.0e+5}\n"
           "channels:\n  - {potentiostat: sp-a, channel: 0}\n")
WIDE = ("schema_version: 1\nname: t\nsteps:\n  - kind: potentiostatic\n    voltage: 7 V\n"
        "    duration: 1 h\n  - kind: galvanostatic\n    current: 200 mA\n    duration: 1 h\n"
        "  - kind: eis\n    f_high: 1 MHz\n    f_low: 1 Hz\n"
        "  - kind: galvanostatic\n    current: 400 mA/cm^2\n    duration: 1 s\n")


def test_station_ranges_narrow_the_sp300s(write: Callable[..., Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A protocol the SP-300 takes is refused, located, for a station whose board cannot."""
    from labctl.protocol.instrument import SP300
    from labctl.stations import load_station

    station, protocol = write(STATION, "station.yaml"), write(WIDE)
    ranges = load_station(station).instrument_ranges
    assert (ranges.E_abs_max_V, ranges.I_abs_max_mA, ranges.f_max_Hz) == (5, 100, 1e5)
    assert ranges.f_min_Hz == SP300.f_min_Hz
    main(["validate", str(protocol)])  # fine on an SP-300
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["validate", str(protocol), "--station", str(station),
              "--cell", str(ROOT / "examples/cells/na_symmetric.yaml")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    for line, fragment in ((5, "±5 V"), (8, "±100 mA"), (11, "EIS range"), (14, "113.1 mA")):
        assert any(ln.startswith(f"{protocol}:{line}:") and fragment in ln
                   for ln in err.splitlines()), (line, fragment, err)


def test_run_on_a_narrower_station_is_refused_before_the_database(
        write: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    station, protocol = write(STATION, "station.yaml"), write(WIDE)
    db = tmp_path / "never.db"
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(protocol), "--cell", str(ROOT / "examples/cells/na_symmetric.yaml"),
              "--station", str(station), "--db", f"sqlite:///{db}"])
    assert exit_.value.code == 2
    assert f"{protocol}:5:" in capsys.readouterr().err
    assert not db.exists()
