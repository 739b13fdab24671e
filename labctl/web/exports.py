"""A run's exports for download, made by `labctl export` itself in a child process.

The export command is the one place that decides what an export holds (columns, units,
metadata sidecar); running it rather than re-assembling its columns here keeps the dashboard's
downloads identical to the files an operator makes at the terminal.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: format -> (file suffix, media type)
FORMATS = {
    "csv": (".csv", "text/csv"),
    "parquet": (".parquet", "application/vnd.apache.parquet"),
    "bdf": (".bdf.csv", "text/csv"),
}
_LABCTL = [sys.executable, "-c", "import sys; from labctl.cli import main; main(sys.argv[1:])"]


class ExportFailed(RuntimeError):
    """`labctl export` refused or failed; the message is its one line."""


@dataclass(frozen=True)
class ExportFile:
    path: Path
    folder: Path  # delete when sent
    media_type: str

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def export(db_url: str, run_id: int, fmt: str, timeout_s: float = 600) -> ExportFile:
    """Run `labctl export RUN --format FMT` into a fresh temporary folder."""
    suffix, media = FORMATS[fmt]
    folder = Path(tempfile.mkdtemp(prefix="labctl-web-export-"))
    target = folder / f"run{run_id}{suffix}"
    try:
        proc = subprocess.run(
            [*_LABCTL, "export", str(run_id), "--format", fmt, "-o", str(target), "--db", db_url],
            capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        shutil.rmtree(folder, ignore_errors=True)
        raise ExportFailed(f"export of run {run_id} took longer than {timeout_s:.0f} s") from None
    if proc.returncode != 0 or not target.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        lines = proc.stderr.strip().splitlines()
        raise ExportFailed(lines[-1].removeprefix("labctl: ") if lines else "export failed")
    return ExportFile(target, folder, media)
