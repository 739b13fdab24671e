"""Property: whatever arguments and files an operator hands labctl, it answers with an exit
status and lines — never a traceback — and an invalid input writes no run row.

In-process `main` turns every error into SystemExit (an exception escaping it is what would
print a traceback), so the property is "main raises SystemExit and nothing else".
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from labctl.cli import main

ROOT = Path(__file__).resolve().parents[2]
CELL = ROOT / "examples/cells/na_symmetric.yaml"
BASE = {"schema_version": 1, "name": "p", "limits": {"E_min": "-1 V", "E_max": "1 V"},
        "steps": [{"kind": "galvanostatic", "current": "0.1 mA", "duration": "10 s"},
                  {"kind": "cv", "E_start": "0 V", "vertices": ["0.5 V"],
                   "scan_rate": "10 mV/s"}]}

tokens = st.one_of(
    st.text(max_size=12), st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.sampled_from(["::::", "mysql://u:pw@h/db", "sqlite:///", "postgresql://x:-1/y",
                     "[/bold]", "\x1b[31m", "1e308", "nan", "-1", "/dev/zero", ".."]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                    st.sampled_from(["1e308 s", "600", "-3 V", "1e12", "0 mA", "${x}",
                                     "2 MPa", "0.1 mA/cm^2", "10 uHz"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)


@contextlib.contextmanager
def _sandbox() -> Iterator[Path]:
    """A fresh directory as cwd and default database, so a bad --db cannot land in the repo."""
    old_cwd, old_db = os.getcwd(), os.environ.get("LABCTL_DB")
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        os.environ["LABCTL_DB"] = f"sqlite:///{tmp}/default.db"
        try:
            yield Path(tmp)
        finally:
            os.chdir(old_cwd)
            if old_db is None:
                os.environ.pop("LABCTL_DB", None)
            else:
                os.environ["LABCTL_DB"] = old_db


def _exit_code(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["show", "abort", "pause", "plot", "export", "analyze", "validate",
                        "plan", "runs"]), st.lists(tokens, max_size=3))
def test_any_arguments_exit_cleanly(command: str, args: list[str]) -> None:
    with _sandbox() as tmp:
        argv = [command, *args]
        if command == "runs" and args:
            argv = ["runs", "--db", args[0]]
        assert _exit_code(argv) in (0, 1, 2)
        assert not (tmp / "::::").exists()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["steps", "limits", "name", "schema_version", "analyses"]), values,
       st.booleans())
def test_generated_files_never_traceback_nor_write_runs(key: str, value: object,
                                                        inside_step: bool) -> None:
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    if inside_step:
        doc["steps"][0][key] = value
    else:
        doc[key] = value
    with _sandbox() as tmp:
        path = tmp / "p.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        code = _exit_code(["validate", str(path)])
        assert code in (0, 2)
        if code == 0:
            return  # a valid protocol: nothing to refuse
        url = f"sqlite:///{tmp / 'run.db'}"
        assert _exit_code(["run", str(path), "--cell", str(CELL), "--sim", "--db", url]) == 2
        db = tmp / "run.db"
        if db.exists():
            from labctl.recording import models as m
            from labctl.recording.database import open_database

            with open_database(url).connect() as conn:
                assert conn.scalar(select(func.count()).select_from(m.Run)) == 0


CELL_BASE = {"id": "c1", "anode": {"material": "NaK", "k_wt_pct": 65, "alloy_mass_mg": 10},
             "diameter_mm": 6.0}
STATION_BASE = {"name": "s", "potentiostats": [{"name": "p", "driver": "biologic-sp300"}],
                "channels": [{"potentiostat": "p", "channel": 0}]}
CAMPAIGN_BASE = {"name": "c", "runs": [{"protocol": "p.yaml", "cell": "c.yaml"}]}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from([CELL_BASE, STATION_BASE, CAMPAIGN_BASE]),
       st.sampled_from(["id", "anode", "diameter_mm", "area_cm2", "temperature_C", "name",
                        "potentiostats", "channels", "runs", "frames"]), values)
def test_generated_cell_station_campaign_files_exit_cleanly(base: dict[str, object], key: str,
                                                            value: object) -> None:
    doc = yaml.safe_load(yaml.safe_dump(base))
    doc[key] = value
    with _sandbox() as tmp:
        path = tmp / "f.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        assert _exit_code(["validate", str(path)]) in (0, 2)
