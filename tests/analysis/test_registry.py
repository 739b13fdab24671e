"""Protocols may name exactly the analyses labctl can run, and a misspelt one is refused."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from labctl.analysis.runner import ANALYSES
from labctl.protocol import validate_files
from labctl.protocol.schema import AnalysisName


def test_protocol_schema_lists_every_registered_analysis() -> None:
    assert set(get_args(AnalysisName)) == set(ANALYSES)


def test_unknown_analysis_is_located(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("schema_version: 1\nname: x\nanalyses: [ccd, asr]\n"
                 "steps:\n  - kind: rest\n    duration: 1 s\n")
    (err,) = validate_files([p])
    assert (err.line, err.col) == (3, 17)
    assert "critical_stripping" in err.message
