"""The code base stays ruff-clean (rules in pyproject.toml); CI fails otherwise."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean() -> None:
    beside = Path(sys.executable).with_name("ruff")
    ruff = str(beside) if beside.exists() else shutil.which("ruff")
    assert ruff, "ruff is a test dependency: pip install -e '.[test]'"
    res = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_package_folder_is_in_the_wheel() -> None:
    """The wheel lists its packages explicitly (folders install under other import names): a
    new package folder missing from pyproject.toml would be missing from an installed labctl."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    folder_of = {name: folder for name, folder in cfg["package-dir"].items()}
    wanted = set()
    for top, folder in (("labctl", "labctl"), *((n, f) for n, f in folder_of.items()
                                                 if n != "labctl._alembic")):
        for d in [ROOT / folder, *(ROOT / folder).rglob("*")]:
            if d.is_dir() and any(d.glob("*.py")) and "__pycache__" not in d.parts:
                rel = d.relative_to(ROOT / folder).parts
                wanted.add(".".join((top, *rel)))
    assert wanted - listed == set()
