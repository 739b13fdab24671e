"""Campaign files: different protocols on different cells, concurrently, validated first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from labctl.recording import models as m

from .conftest import RunCli

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_campaign_runs_each_protocol_on_its_cell(
    run_cli: RunCli, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    code, out, err = run_cli("campaign", str(ROOT / "examples/campaigns/overnight.yaml"),
                          "--sim", "--db", url, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["status"] == "completed" and len(doc["runs"]) == 4
    ccd, nak50, nak80, insitu = doc["runs"]
    assert ccd["results"]["ccd_mA_cm2"] == pytest.approx(3.2)
    assert nak50["results"]["critical_capacity_mAh_g"] > nak80["results"]["critical_capacity_mAh_g"]
    assert insitu["results"]["drt_spectra"] >= 5
    engine = create_engine(url)
    with engine.connect() as conn:
        protocols = conn.scalars(select(m.Protocol.name).join(m.Run)
                                 .order_by(m.Run.id)).all()
        assert len(set(protocols)) == 3
        assert conn.scalar(select(func.count(func.distinct(m.Run.channel)))) == 2  # 2 per SP-300


def test_bad_campaign_is_refused_before_anything_runs(
    run_cli: RunCli, tmp_path: Path
) -> None:
    bad_protocol = tmp_path / "bad.yaml"
    bad_protocol.write_text("schema_version: 1\nname: x\nsteps:\n  - kind: rest\n"
                            "    duration: -1 s\n")
    camp = tmp_path / "c.yaml"
    na = ROOT / "examples/cells/na_symmetric.yaml"
    camp.write_text("name: c\nruns:\n"
                    f"  - {{protocol: bad.yaml, cell: {na}}}\n"
                    "  - {protocol: missing.yaml, cell: nowhere.yaml}\n"
                    "  - {protocl: bad.yaml, cell: x.yaml}\n")
    db = tmp_path / "never.db"
    code, _, err = run_cli("campaign", str(camp), "--sim", "--db", f"sqlite:///{db}")
    assert code == 2
    assert f"{camp}:5:" in err  # the misspelt key, located
    assert not db.exists()
    camp.write_text("name: c\nruns:\n  - {protocol: missing.yaml, cell: nowhere.yaml}\n")
    code, _, err = run_cli("campaign", str(camp), "--sim", "--db", f"sqlite:///{db}")
    assert code == 2 and f"{camp}:3:" in err and "no such file" in err
    camp.write_text(f"name: c\nruns:\n  - {{protocol: bad.yaml, cell: {na}}}\n")
    code, _, err = run_cli("campaign", str(camp), "--sim", "--db", f"sqlite:///{db}")
    assert code == 2 and f"{bad_protocol}:5:" in err
    assert not db.exists()
