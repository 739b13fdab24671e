"""Every shipped protocol validates and resolves against the shipped cells it is meant for."""

from __future__ import annotations

import pytest

from labctl.protocol import (
    json_schema,
    load_and_resolve,
    load_cell,
    load_protocol,
    plan,
    plan_total,
    validate_files,
)
from labctl.protocol.resolved import CCDRamp, Galvanostatic, Interleave

from .conftest import ROOT

PROTOCOLS = sorted((ROOT / "protocols").glob("*.yaml"))
CELLS = sorted((ROOT / "examples" / "cells").glob("*.yaml"))
NAK_CELLS = [c for c in CELLS if c.name.startswith("nak")]


def test_files_exist() -> None:
    names = {p.stem for p in PROTOCOLS}
    assert {"ccd", "critical_stripping", "insitu_eis", "cv", "cycling", "quickstart"} <= names
    assert {"na_symmetric", "nak50_half", "nak65_half", "nak80_half"} <= {c.stem for c in CELLS}


@pytest.mark.parametrize("cell", CELLS, ids=lambda p: p.stem)
def test_cells_load(cell) -> None:  # type: ignore[no-untyped-def]
    spec = load_cell(cell)
    assert spec.area == pytest.approx(0.2827, rel=1e-3)  # the paper's 6 mm electrodes


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.stem)
@pytest.mark.parametrize("cell", NAK_CELLS, ids=lambda p: p.stem)
def test_resolves_on_nak_cells(protocol, cell) -> None:  # type: ignore[no-untyped-def]
    resolved, doc, _ = load_and_resolve(protocol, cell)
    assert resolved.schema_version == 1 == doc.schema_version
    assert len(doc.sha256) == 64 and doc.text.startswith("#")
    assert all(s.source_line for s in resolved.steps)
    rows = plan(resolved)
    assert len(rows) == len(resolved.steps)
    assert plan_total(rows).duration_s > 0


@pytest.mark.parametrize("name", ["ccd", "cycling", "quickstart", "cv"])
def test_symmetric_protocols_on_na_cell(name: str) -> None:
    cell = ROOT / "examples/cells/na_symmetric.yaml"
    assert validate_files([ROOT / f"protocols/{name}.yaml"], cell) == []


def test_ccd_defaults_resolve_to_paper_values() -> None:
    r, _, cell = load_and_resolve(
        ROOT / "protocols/ccd.yaml", ROOT / "examples/cells/na_symmetric.yaml"
    )
    ramp = next(s for s in r.steps if isinstance(s, CCDRamp))
    assert ramp.start_mA == pytest.approx(0.1 * cell.area)
    assert ramp.increment_mA == pytest.approx(0.1 * cell.area)
    assert ramp.half_cycle_mAh == pytest.approx(0.1 * cell.area)
    assert ramp.eis_after_step is not None and ramp.eis_after_step.f_high_Hz == 7e6
    row = next(r for r in plan(r) if r.kind == "ccd_ramp")
    assert row.params["current_steps"] == 50
    assert "reaches max" in row.bound


def test_critical_stripping_is_voltage_bounded() -> None:
    r, _, cell = load_and_resolve(
        ROOT / "protocols/critical_stripping.yaml", ROOT / "examples/cells/nak65_half.yaml"
    )
    g = next(s for s in r.steps if isinstance(s, Galvanostatic))
    assert g.current_mA == pytest.approx(0.25 * cell.area)
    assert g.E_max_V == 0.5 and g.detectors is not None and not g.detectors.enabled
    assert r.analyses == ("critical_stripping",)
    assert r.limits.Q_max_mAh == pytest.approx(600 * 4.35e-3)
    row = next(x for x in plan(r) if x.kind == "galvanostatic")
    assert row.est_duration_s is None and "E_max 0.5 V" in row.bound


def test_insitu_eis_every_quarter_mah_cm2() -> None:
    r, _, cell = load_and_resolve(
        ROOT / "protocols/insitu_eis.yaml", ROOT / "examples/cells/nak50_half.yaml"
    )
    il = next(s for s in r.steps if isinstance(s, Interleave))
    assert il.every_mAh == pytest.approx(0.25 * cell.area)
    assert il.galvanostatic.capacity_mAh == pytest.approx(1.0 * cell.area)


def test_cycling_expands_nested_repeats() -> None:
    r, _, _ = load_and_resolve(
        ROOT / "protocols/cycling.yaml", ROOT / "examples/cells/na_symmetric.yaml"
    )
    assert len(r.steps) == 1 + 10 * (10 * 2 + 1)
    assert r.steps[1].name == "strip [1/10, 1/10]"


def test_quickstart_is_a_few_minutes() -> None:
    r, _, _ = load_and_resolve(
        ROOT / "protocols/quickstart.yaml", ROOT / "examples/cells/na_symmetric.yaml"
    )
    assert 5 * 60 < plan_total(plan(r)).duration_s < 20 * 60
    currents = [s.current_mA for s in r.steps if isinstance(s, Galvanostatic)]
    assert currents[0] == -currents[1] > 0


def test_json_schema_lists_step_kinds() -> None:
    text = str(json_schema())
    for kind in ("ccd_ramp", "interleave", "repeat", "galvanostatic"):
        assert kind in text


def test_load_protocol_keeps_raw_text() -> None:
    doc = load_protocol(ROOT / "protocols/ccd.yaml")
    assert doc.text == (ROOT / "protocols/ccd.yaml").read_text(encoding="utf-8")
