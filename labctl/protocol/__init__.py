"""labctl.protocol: YAML protocols → validated, located, resolved steps for the engine.

Pure functions only (no database, instruments or printing): the CLI formats what these return.

    doc = load_protocol("protocols/ccd.yaml")            # ProtocolError if refused
    resolved, doc, cell = load_and_resolve("protocols/ccd.yaml", "examples/cells/na_symmetric.yaml")
    rows = plan(resolved); total = plan_total(rows)
    problems = validate_files(["protocols/ccd.yaml"], cell_path="examples/cells/na_symmetric.yaml")
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from labctl.protocol.cell import CellSpec
from labctl.protocol.errors import LocatedError, ProtocolError
from labctl.protocol.instrument import SP300, InstrumentRanges
from labctl.protocol.loader import (
    ProtocolDocument,
    load_cell,
    load_protocol,
    parse_protocol_text,
)
from labctl.protocol.plan import PlanRow, PlanTotal, plan, plan_total
from labctl.protocol.resolve import resolve
from labctl.protocol.resolved import ResolvedProtocol
from labctl.protocol.schema import SCHEMA_VERSION, ProtocolSpec


def load_and_resolve(
    protocol_path: str | Path, cell_path: str | Path, ranges: InstrumentRanges = SP300
) -> tuple[ResolvedProtocol, ProtocolDocument, CellSpec]:
    """Load both files and resolve; errors from both files are raised together."""
    errors: list[LocatedError] = []
    doc: ProtocolDocument | None = None
    cell: CellSpec | None = None
    try:
        doc = load_protocol(protocol_path)
    except ProtocolError as exc:
        errors.extend(exc.errors)
    try:
        cell = load_cell(cell_path)
    except ProtocolError as exc:
        errors.extend(exc.errors)
    if errors or doc is None or cell is None:
        raise ProtocolError(errors)
    return resolve(doc, cell, ranges), doc, cell


def validate_files(
    paths: Iterable[str | Path], cell_path: str | Path | None = None
) -> list[LocatedError]:
    """Every problem in every file (and, with a cell, every resolve problem); [] means all good."""
    errors: list[LocatedError] = []
    cell: CellSpec | None = None
    if cell_path is not None:
        try:
            cell = load_cell(cell_path)
        except ProtocolError as exc:
            errors.extend(exc.errors)
    for p in paths:
        try:
            doc = load_protocol(p)
            if cell is not None:
                resolve(doc, cell)
        except ProtocolError as exc:
            errors.extend(exc.errors)
    return errors


def json_schema() -> dict[str, Any]:
    """JSON Schema of protocol files (schema_version 1), e.g. for editor completion."""
    return ProtocolSpec.model_json_schema()


__all__ = [
    "SCHEMA_VERSION",
    "SP300",
    "CellSpec",
    "InstrumentRanges",
    "LocatedError",
    "PlanRow",
    "PlanTotal",
    "ProtocolDocument",
    "ProtocolError",
    "ResolvedProtocol",
    "json_schema",
    "load_and_resolve",
    "load_cell",
    "load_protocol",
    "parse_protocol_text",
    "plan",
    "plan_total",
    "resolve",
    "validate_files",
]
