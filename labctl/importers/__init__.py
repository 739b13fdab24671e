"""Instrument files → one neutral in-memory structure (`ImportedRun`), see `model.py`."""

from __future__ import annotations

from pathlib import Path

from labctl.importers.eclab import read_eclab, read_mpr, read_mpt
from labctl.importers.landt import LandtRecordParser, read_landt
from labctl.importers.model import (
    EIS_COLUMNS,
    POINT_COLUMNS,
    ImportedRun,
    ImportedStep,
    ImportFormatError,
)

__all__ = [
    "EIS_COLUMNS",
    "POINT_COLUMNS",
    "ImportFormatError",
    "ImportedRun",
    "ImportedStep",
    "LandtRecordParser",
    "read_eclab",
    "read_file",
    "read_landt",
    "read_mpr",
    "read_mpt",
]


def read_file(path: str | Path, instrument: str | None = None) -> ImportedRun:
    """Pick the reader by `instrument` ("eclab"/"landt") or, if None, by extension."""
    p = Path(path)
    if instrument is None:
        instrument = "eclab" if p.suffix.lower() in (".mpr", ".mpt") else "landt"
    if instrument.lower() in ("eclab", "biologic"):
        return read_eclab(p)
    if instrument.lower() in ("landt", "land", "lanhe"):
        return read_landt(p)
    raise ValueError(f"unknown instrument {instrument!r}")
