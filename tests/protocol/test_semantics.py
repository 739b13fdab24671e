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
