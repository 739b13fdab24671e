"""What typer/click users expect of a command line, checked through the real entry point.

--version/-V, -h on every command, shell completion of choices, choices listed in help,
conventional metavars; `runs` filters and columns; notes and tags; `show` prints numbers with
units at a readable precision and one step numbering. The database is a real SQLite file with
one imported EC-Lab run (fast) and the CLI runs in-process (tests/cli/conftest.py), except
completion, which needs the console script's environment protocol and runs as a process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from labctl import __version__
from labctl.cli.inspecting import parse_since
from tests.cli.conftest import RunCli

ROOT = Path(__file__).resolve().parents[2]
LABCTL = Path(sys.executable).parent / "labctl"


@pytest.fixture
def db(tmp_path: Path, run_cli: RunCli) -> str:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    for data, cell, analyses in (("exampleDataBioLogic.mpt", "nak50_half", ["--analyze", "drt"]),
                                 ("00_test_01_OCV_C01.mpr", "nak80_half", [])):
        code, _, err = run_cli("import", str(ROOT / "tests/data/eclab" / data), "--cell",
                               str(ROOT / f"examples/cells/{cell}.yaml"), "--db", url, *analyses)
        assert code == 0, err
    return url


def test_version_and_short_help(run_cli: RunCli) -> None:
    for flag in ("--version", "-V"):
        code, out, _ = run_cli(flag)
        assert code == 0 and out.strip() == f"labctl {__version__}"
    for args in (["-h"], ["plot", "-h"], ["runs", "-h"], ["db", "-h"]):
        code, out, _ = run_cli(*args)
        assert code == 0 and out.startswith("Usage: labctl"), args


def test_choices_and_metavars_in_help(run_cli: RunCli) -> None:
    _, plot, _ = run_cli("plot", "-h")
    assert "voltage|ccd|ccd-summary|stripping|nyquist|bode|drt|drt-map|cv" in plot
    assert "png|svg|pdf" in plot
    assert "-o, --output PATH" in plot and "--db URL" in plot
    _, runs, _ = run_cli("runs", "-h")
    assert "running|paused|completed|failed|aborted|interrupted|unresponsive" in runs
    assert "--since WHEN" in runs and "--cell TEXT" in runs and "-n, --limit N" in runs
    _, export, _ = run_cli("export", "-h")
    assert "csv|parquet|bdf" in export and "points|eis" in export
    # options name their value (URL, PATH, N), not its Python type; arguments are upper case
    # (typer appends the type to an argument's own help line, e.g. "RUN <int>")
    for text in (plot, runs, export):
        assert not re.search(r"--[\w-]+ <(str|path|int|float|list\[)", text), text
    assert "RUN..." in plot and "{RUN...}" in plot.splitlines()[0]


def test_shell_completion_offers_the_kinds() -> None:
    env = {**os.environ, "_LABCTL_COMPLETE": "complete_bash",
           "COMP_WORDS": "labctl plot 1 --kind d", "COMP_CWORD": "4"}
    done = subprocess.run([str(LABCTL)], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["drt", "drt-map"], done.stderr
    _, out = subprocess.run([str(LABCTL), "--show-completion", "bash"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "SHELL": "/bin/bash"}
                            ).returncode, None
    assert out is None  # the option exists (exit status checked below)
    shown = subprocess.run([str(LABCTL), "--help"], capture_output=True, text=True, timeout=60)
    assert "--install-completion" in shown.stdout and "--show-completion" in shown.stdout


def test_runs_columns_and_filters(run_cli: RunCli, db: str) -> None:
    code, out, _ = run_cli("runs", "--db", db)
    assert code == 0 and "duration" in out and "cell" in out and "protocol" in out
    code, out, _ = run_cli("runs", "--db", db, "--json", "--cell", "NAK80")  # case-insensitive
    assert [r["cell"] for r in json.loads(out)] == ["nak80-half-001"]
    _, out, _ = run_cli("runs", "--db", db, "--json", "--status", "completed")
    assert len(json.loads(out)) == 2
    _, out, _ = run_cli("runs", "--db", db, "--json", "--status", "failed")
    assert json.loads(out) == []
    _, out, _ = run_cli("runs", "--db", db, "--json", "--since", "2000-01-01")
    assert len(json.loads(out)) == 2  # imports start when the instrument file says
    _, out, _ = run_cli("runs", "--db", db, "--json", "--since", "2999-01-01")
    assert json.loads(out) == []
    _, out, _ = run_cli("runs", "--db", db, "--json", "--protocol", "IMPORT")
    assert len(json.loads(out)) == 2
    _, out, _ = run_cli("runs", "--db", db, "--json", "--protocol", "biologic")
    assert [r["id"] for r in json.loads(out)] == [1]
    code, _, err = run_cli("runs", "--db", db, "--since", "last tuesday")
    assert code == 2 and err.count("\n") == 1 and "--since" in err
    code, _, err = run_cli("runs", "--db", db, "--status", "done")
    assert code == 2 and err.count("\n") == 1


def test_since_forms() -> None:
    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    assert parse_since("2d", now) == now - dt.timedelta(days=2)
    assert parse_since("30min", now) == now - dt.timedelta(minutes=30)
    assert parse_since("2026-11-30", now) == dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    assert parse_since("2026-11-30T14:00+01:00", now) == dt.datetime(2026, 11, 30, 13,
                                                                     tzinfo=dt.UTC)


def test_notes_and_tags_are_recorded_and_shown(run_cli: RunCli, db: str) -> None:
    assert run_cli("note", "1", "pellet chipped at the edge", "--author", "ana",
                   "--db", db)[0] == 0
    assert run_cli("tag", "1", "fig2", "keep", "--db", db)[0] == 0
    assert run_cli("tag", "2", "fig2", "--db", db)[0] == 0
    assert run_cli("tag", "1", "keep", "--remove", "--db", db)[0] == 0
    _, out, _ = run_cli("show", "1", "--db", db)
    assert "pellet chipped at the edge" in out and "(ana)" in out and "tags: fig2" in out
    assert "keep" not in out
    _, out, _ = run_cli("runs", "--db", db, "--json", "--tag", "fig2")
    assert sorted(r["id"] for r in json.loads(out)) == [1, 2]
    _, out, _ = run_cli("runs", "--db", db, "--json", "--tag", "keep")
    assert json.loads(out) == []  # removed, and the removal is itself recorded
    code, _, err = run_cli("tag", "1", "two words", "--db", db)
    assert code == 2 and err.count("\n") == 1
    code, _, err = run_cli("note", "99", "x", "--db", db)
    assert code == 2 and "no run 99" in err


def test_show_prints_units_at_readable_precision(run_cli: RunCli, db: str) -> None:
    _, out, _ = run_cli("show", "1", "--db", db)
    results = out[out.index("results:"):]
    assert re.search(r"R_electrode_first_ohm = \d+(\.\d{1,3})? Ω", results), results
    assert not re.search(r"\d\.\d{6,}", out), "raw floats in show"
    assert re.search(r"^│ 1 ", out, re.M)  # step numbers start at 1, as in `labctl plan`


def test_eis_export_uses_the_database_column_names(run_cli: RunCli, db: str,
                                                   tmp_path: Path) -> None:
    path = tmp_path / "eis.csv"
    code, _, err = run_cli("export", "1", "--data", "eis", "-o", str(path), "--db", db)
    assert code == 0, err
    header = path.read_text().splitlines()[0].split(",")
    assert header == ["step_index", "step_number", "t_s", "frequency_Hz", "Z_re_ohm",
                      "Z_im_ohm", "Z_mod_ohm", "phase_deg", "E_V", "I_mA"]
    side = json.loads((tmp_path / "eis.csv.meta.json").read_text())
    assert side["units"]["Z_re_ohm"] == "ohm" and side["units"]["frequency_Hz"] == "Hz"
    code, _, err = run_cli("export", "1", "--data", "eis", "--format", "bdf", "--db", db)
    assert code == 2 and err.count("\n") == 1


def test_head_revision_read_from_the_scripts_agrees_with_alembic() -> None:
    from alembic.script import ScriptDirectory

    from labctl.recording.database import _alembic_config, head_revision

    expected = ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()
    assert head_revision() == expected


@pytest.mark.parametrize("args", [["--help"], ["runs"], ["show", "1"], ["runs", "--tag", "x"]])
def test_read_only_commands_import_only_what_they_need(db: str, args: list[str]) -> None:
    """A fresh interpreter runs the command; the engine, the launcher, pint, alembic and the
    plotting stack must not have been imported (they cost read-only commands seconds)."""
    code = ("import sys\nfrom labctl.cli import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "heavy = ('labctl.engine.runner', 'labctl.engine.channel', 'labctl.launch', 'pint', "
            "'alembic', 'matplotlib', "
            "'scipy', 'labctl.protocol', 'labctl.analysis.figures.registry', "
            "'labctl.analysis.plots')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or "
            "any(m == h or m.startswith(h + '.') for h in heavy)), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, *args, *(["--db", db] if args != ["--help"]
                                                                 else [])],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]"
