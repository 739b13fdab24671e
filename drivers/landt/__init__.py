"""LANDT (LANHE / Wuhan LAND) testers: the export format (`formats`) and the live follower.

`formats` knows what a LANDdt record export looks like and parses it into typed `LandtRecords`;
`follower` watches a folder of growing exports and reports new rows per channel. labctl's
importer (`labctl.importers.landt`) builds on `formats`; nothing here imports labctl.
"""

from __future__ import annotations

from labctl_drivers.landt.follower import (
    CyclerCapability,
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

__all__ = [
    "CyclerCapability",
    "LandtExport",
    "LandtFormatError",
    "LandtReading",
    "LandtRecordParser",
    "LandtRecords",
    "LandtTester",
    "NotSupported",
    "StepMode",
    "read_export",
    "step_mode",
]
