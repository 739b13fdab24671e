"""`labctl validate`, `plan` and `schema` as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import RunCli

ROOT = Path(__file__).resolve().parents[2]
CELL = ROOT / "examples" / "cells" / "na_symmetric.yaml"


def test_validate_shipped_protocols(run_cli: RunCli) -> None:
    files = [str(p) for p in sorted((ROOT / "protocols").glob("*.yaml"))]
    code, out, err = run_cli("validate", *files)
    assert code == 0 and err == "" and f"{len(files)} protocol file(s) valid" in out


def test_validate_reports_every_error_located(run_cli: RunCli,
                                              tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nname: x\nsteps:\n  - kind: rest\n    durration: 5 s\n"
                   "  - kind: galvanostatic\n    current: 5 mAh\n    duration: 1 h\n")
    code, _, err = run_cli("validate", str(bad))
    assert code == 2
    lines = err.strip().splitlines()
    assert any(ln.startswith(f"{bad}:5:5:") and "duration" in ln for ln in lines)  # did-you-mean
    assert any(ln.startswith(f"{bad}:7:") for ln in lines)  # a capacity where a current goes


def test_plan_json(run_cli: RunCli) -> None:
    code, out, _ = run_cli("plan", str(ROOT / "protocols" / "ccd.yaml"), "--cell",
                        str(CELL), "--json")
    assert code == 0
    doc = json.loads(out)
    ramp = next(s for s in doc["steps"] if s["kind"] == "ccd_ramp")
    assert ramp["params"]["start_mA"] == pytest.approx(0.1 * 0.2827, rel=1e-3)
    assert doc["total"]["duration_s"] > 3600


def test_schema_to_file(run_cli: RunCli, tmp_path: Path) -> None:
    target = tmp_path / "schema.json"
    code, _, _ = run_cli("schema", "-o", str(target))
    assert code == 0
    assert "steps" in json.loads(target.read_text())["properties"]
