"""LANDT (LANHE / Wuhan LAND) testers: the export format (`formats`) and the live follower.

`formats` knows what a LANDdt record export looks like and parses it into typed `LandtRecords`;
`follower` follows a channel's export files and delivers each row once (growth, rotation,
replacement, truncation); `program` is a LAND step program and its printable sheet; `check`
compares the rows LAND exports with the program. labctl's importer (`labctl.importers.landt`)
builds on `formats`; nothing here imports labctl.
"""

from __future__ import annotations

from labctl_drivers.landt.check import Mismatch, MismatchKind, ProgramCheck
from labctl_drivers.landt.follower import (
    CyclerCapability,
    ExportFollower,
    LandtReading,
    LandtTester,
    NotSupported,
)
from labctl_drivers.landt.formats import (
    LandtExport,
    LandtFormatError,
    LandtRecordParser,
    LandtRecords,
    StepMode,
    read_export,
    step_mode,
)
from labctl_drivers.landt.program import LandMode, LandProgram, LandStep, render_sheet

__all__ = [
    "CyclerCapability",
    "ExportFollower",
    "LandMode",
    "LandProgram",
    "LandStep",
    "LandtExport",
    "LandtFormatError",
    "LandtReading",
    "LandtRecordParser",
    "LandtRecords",
    "LandtTester",
    "Mismatch",
    "MismatchKind",
    "NotSupported",
    "ProgramCheck",
    "StepMode",
    "read_export",
    "render_sheet",
    "step_mode",
]
