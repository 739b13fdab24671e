"""The paper's example runs as multi-run sets, recorded once per test session into one SQLite file.

Figure and report tests need several runs of one kind (Fig. 1b's four anodes, Fig. 1c's
pressures, Fig. 1d's three alloys, Fig. 3's in-situ EIS, a CV per alloy). They are launched
through `labctl.launch.launch` on the simulated bench with the shipped protocols and the cell
files in examples/paper, exactly as `examples/paper/reproduce.py` does, into one database
kept in pytest's session directory so every module that asks gets the same runs.

Set LABCTL_PAPER_RUNS_DIR to a folder to keep the database there between sessions (it is
reused when the folder holds one from the same set; delete the folder after changing the
protocols, cells or schema).

Fig. 6's own ±0.5 V protocol shorts the twin's cells (docs/paper_reproduction.md); the CV set
runs the shipped protocols/cv.yaml (the same 10 cycles at 10 mV/s over ±50 mV).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from labctl.launch import launch

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "examples" / "paper"
CELLS = PAPER / "cells"


@dataclass(frozen=True)
class PaperRuns:
    """Run ids of each figure's set in the database at `url`."""

    url: str
    ccd_10MPa: list[int]  # Na, NaK50, NaK65, NaK80 symmetric cells (Fig. 1b)
    ccd_1MPa: list[int]  # Na, NaK50 at 1 MPa (with ccd_10MPa: Fig. 1c)
    stripping: list[int]  # NaK50, NaK65, NaK80 half cells (Fig. 1d/e)
    insitu_eis: list[int]  # NaK50, NaK65, NaK80 strip/plate/strip with EIS (Fig. 2c-e, 3b-d)
    cv: list[int]  # NaK50, NaK80 half cells (Fig. 6)

    @property
    def all(self) -> list[int]:
        return [*self.ccd_10MPa, *self.ccd_1MPa, *self.stripping, *self.insitu_eis, *self.cv]


def _launch(protocol: Path, cells: list[str], url: str) -> list[int]:
    res = launch(protocol, [CELLS / f"{c}.yaml" for c in cells], sim=True, db_url=url, seed=0)
    return [o.run_id for o in res.outcomes]


def paper_runs(factory: pytest.TempPathFactory) -> PaperRuns:
    """The session's paper runs, launched on first use (about three minutes on two cores)."""
    keep = os.environ.get("LABCTL_PAPER_RUNS_DIR")
    base = Path(keep) if keep else factory.getbasetemp()
    base.mkdir(parents=True, exist_ok=True)
    db, ids = base / "paper_runs.db", base / "paper_runs.json"
    cached = getattr(paper_runs, "_cached", None)
    if cached is not None and cached.url.endswith(str(db)):
        return cached
    if keep and db.is_file() and ids.is_file():
        runs = PaperRuns(**json.loads(ids.read_text()))
        paper_runs._cached = runs  # type: ignore[attr-defined]
        return runs
    db.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    runs = PaperRuns(
        url=url,
        ccd_10MPa=_launch(PAPER / "ccd_10MPa.yaml",
                          [f"{k}_sym_10MPa" for k in ("na", "nak50", "nak65", "nak80")], url),
        ccd_1MPa=_launch(PAPER / "ccd_1MPa.yaml", ["na_sym_1MPa", "nak50_sym_1MPa"], url),
        stripping=_launch(ROOT / "protocols" / "critical_stripping.yaml",
                          ["nak50_half", "nak65_half", "nak80_half"], url),
        insitu_eis=_launch(PAPER / "fig3_insitu_eis.yaml",
                           ["nak50_half", "nak65_half", "nak80_half"], url),
        cv=_launch(ROOT / "protocols" / "cv.yaml", ["nak50_half", "nak80_half"], url),
    )
    ids.write_text(json.dumps(asdict(runs)))
    paper_runs._cached = runs  # type: ignore[attr-defined]
    return runs
