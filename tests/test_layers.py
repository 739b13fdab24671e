"""The layer contracts in pyproject.toml ``[tool.importlinter]`` hold, and the check can fail.

Import Linter (https://import-linter.readthedocs.io/) reads every module's imports statically
and checks them against the contracts. It runs here as the ``lint-imports`` command in a
subprocess, once per contract, so each contract is its own test with the offending imports in the
failure message, and so the negative tests can point it at a copy of the packages (in-process,
``labctl`` is already imported and would resolve to this checkout).

Import Linter works on module names: it cannot say *which names* a module takes from
SQLAlchemy. `test_sqlalchemy_outside_recording_is_only_the_engine_handle` closes that gap for the
modules the ``sqlalchemy-only-in-recording`` contract allows outside ``labctl.recording``.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"

#: Contracts broken today for a known reason that a change in progress removes. Strict xfail: the
#: day the change lands the test XPASSes, which fails the run, and the entry is deleted here.
PENDING: dict[str, str] = {}

# Folder in the checkout -> its import name (pyproject.toml [tool.setuptools.package-dir]).
_PACKAGES = {"labctl": "labctl", "drivers": "labctl_drivers", "chemistry": "labctl_chemistry"}
_LINT = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"


def _config() -> dict[str, Any]:
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)["tool"]["importlinter"]


def _contract(contract_id: str) -> dict[str, Any]:
    return next(c for c in _config()["contracts"] if c["id"] == contract_id)


def _lint(contract_id: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on one contract, resolving the root packages from `cwd` first."""
    return subprocess.run(
        [sys.executable, "-c", _LINT, "--config", str(cwd / "pyproject.toml"), "--no-cache",
         "--contract", contract_id],
        cwd=cwd, capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "200"},  # wide enough that contract names do not wrap
    )


def _params() -> list[Any]:
    return [
        pytest.param(c["id"], marks=pytest.mark.xfail(reason=PENDING[c["id"]], strict=True))
        if c["id"] in PENDING else c["id"]
        for c in _config()["contracts"]
    ]


@pytest.mark.parametrize("contract_id", _params())
def test_contract_is_kept(contract_id: str) -> None:
    result = _lint(contract_id, ROOT)
    name = _contract(contract_id)["name"]
    assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"


def test_dotted_roots_are_still_namespace_portions() -> None:
    """`labctl.engine` is a root of its own only because its folder has no __init__.py (grimp does
    not walk into a namespace portion from `labctl`). Once it gets one, grimp rejects the nested
    root with a bare NotATopLevelModule; this says what to do instead."""
    for root in _config()["root_packages"]:
        if "." in root:
            folder = ROOT.joinpath(*root.split("."))
            assert not (folder / "__init__.py").exists(), (
                f"{folder.relative_to(ROOT)} is a regular package now: delete {root!r} from "
                "root_packages in pyproject.toml [tool.importlinter]"
            )


def test_pending_contracts_exist() -> None:
    """A PENDING entry whose contract was renamed or removed would hide nothing and mean nothing."""
    assert set(PENDING) <= {c["id"] for c in _config()["contracts"]}


@pytest.fixture(scope="module")
def copy_of_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three packages under their import names plus the config, in a scratch folder."""
    tmp = tmp_path_factory.mktemp("layers")
    for folder, name in _PACKAGES.items():
        shutil.copytree(ROOT / folder, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PYPROJECT, tmp / "pyproject.toml")
    return tmp


def _add_import(path: Path, statement: str) -> str:
    original = path.read_text(encoding="utf-8")
    path.write_text(f"{original}\n{statement}  # added by tests/test_layers.py\n", encoding="utf-8")
    return original


@pytest.mark.parametrize(
    ("module", "statement", "contract_id", "reported"),
    [
        ("labctl_drivers/clock.py", "import labctl.engine.channel", "drivers-below-labctl",
         "labctl_drivers.clock -> labctl.engine.channel"),
        ("labctl/protocol/units.py", "from sqlalchemy import text", "sqlalchemy-only-in-recording",
         "labctl.protocol.units -> sqlalchemy"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    copy_of_packages: Path, module: str, statement: str, contract_id: str, reported: str
) -> None:
    """The check is not vacuous: one added import in the copy breaks the contract, and the report
    names that import (which exists only in the copy, so the copy is what was analysed)."""
    path = copy_of_packages / module
    original = _add_import(path, statement)
    try:
        result = _lint(contract_id, copy_of_packages)
    finally:
        path.write_text(original, encoding="utf-8")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout and reported in result.stdout, result.stdout


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT / "labctl").with_suffix("")
    parts = ["labctl", *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sqlalchemy_names(tree: ast.AST) -> set[str]:
    """Every name a module takes from SQLAlchemy (`import sqlalchemy...` counts as `*`)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {"*" for a in node.names if a.name.split(".")[0] == "sqlalchemy"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            prefix = "" if node.module == "sqlalchemy" else f"{node.module}."
            names |= {prefix + a.name for a in node.names}
    return names


def test_sqlalchemy_outside_recording_is_only_the_engine_handle() -> None:
    """Outside labctl.recording, a module may hold the `Engine` it passes to recording's readers
    and writers, but never build statements, sessions or tables, which is how data gets written.

    Every holder is in the contract's allow-list (the contract itself checks that); an entry
    whose module stopped importing SQLAlchemy is only a loose end, left for its owner to delete.
    """
    holders: dict[str, set[str]] = {}
    for path in sorted((ROOT / "labctl").rglob("*.py")):
        name = _module_name(path)
        if name == "labctl.recording" or name.startswith("labctl.recording."):
            continue
        used = _sqlalchemy_names(ast.parse(path.read_text(encoding="utf-8")))
        if used:
            holders[name] = used
    more = {m: sorted(n) for m, n in holders.items() if n != {"Engine"}}
    assert not more, f"only `from sqlalchemy import Engine` is allowed outside recording: {more}"
