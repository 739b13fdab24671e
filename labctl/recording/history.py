"""Records are history: a cell id, once recorded, always means the cell description it ran with.

A run's plots, current densities and stored results are computed from the cell row it points
at. If a second description under the same id (another diameter, say) replaced that row, every
earlier run of the id would silently change its current density while its stored CCD kept the
old value. labctl therefore **refuses** a description that differs from the recorded one under
the same id, naming the fields that differ, and says how to go on: give the changed cell a new
id (it is a different sample, or a corrected description of one), or use the recorded
description. An identical description reuses the row.

Refusing was chosen over versioning cells because a run's cell is then always *the* cell of
that id — queries, exports and the operator's notebook all use the id — and nothing about an
earlier run can differ from what was shown when it ran.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Engine, select

from labctl.recording import models as m

#: Only for the recorder: the resolved area travels with the description, stored in its column.
RESOLVED_AREA_KEY = "area_cm2_resolved"


class CellHistoryConflict(ValueError):
    """A cell description differs from the one already recorded under its id (exit 2)."""


def description_of(cell: Mapping[str, Any]) -> dict[str, Any]:
    """The stored description: the cell as given, without the recorder's resolved area."""
    return {k: v for k, v in cell.items() if k != RESOLVED_AREA_KEY}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return bool(a == b)


def differences(recorded: Mapping[str, Any], given: Mapping[str, Any], prefix: str = "",
                labels: tuple[str, str] = ("recorded", "given")) -> list[str]:
    """'diameter_mm: recorded 6.0, given 10.0' for every field that differs (nested: dots)."""
    out: list[str] = []
    for key in sorted(set(recorded) | set(given)):
        a, b = recorded.get(key), given.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.", labels)
        elif not _same(a, b):
            out.append(f"{prefix}{key}: {labels[0]} {a!r}, {labels[1]} {b!r}")
    return out


def conflict(name: str, diffs: list[str], first_run: int | None) -> CellHistoryConflict:
    """The refusal, one line: what differs and how to go on (first_run None: within a launch)."""
    where = ("is given twice in this launch" if first_run is None
             else f"is already recorded (first run {first_run})")
    return CellHistoryConflict(
        f"cell {name!r} {where} with another description — "
        + "; ".join(diffs)
        + f". Recorded runs keep the cell they ran with: give this cell a new id (e.g. "
        f"'{name}-2'), or use the recorded description"
    )


def check_recorded(conn: Connection, cell: Mapping[str, Any]) -> int | None:
    """The id of the cell row recorded under `cell['id']`, or None; refuses a changed one."""
    row = conn.execute(
        select(m.Cell.id, m.Cell.description).where(m.Cell.name == cell["id"])
    ).first()
    if row is None:
        return None
    diffs = differences(row.description or {}, description_of(cell))
    if diffs:
        first_run = conn.scalar(select(m.Run.id).where(m.Run.cell_id == row.id)
                                .order_by(m.Run.id).limit(1))
        raise conflict(str(cell["id"]), diffs, int(first_run or 0))
    return int(row.id)


def check_cells(engine: Engine, cells: Iterable[Mapping[str, Any]]) -> None:
    """Before any run row is written: every cell agrees with its recorded description and
    with every other cell of the same id in this launch; raises CellHistoryConflict."""
    seen: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for cell in cells:
            name = str(cell["id"])
            desc = description_of(cell)
            if name in seen:
                diffs = differences(seen[name], desc, labels=("first given", "then"))
                if diffs:
                    raise conflict(name, diffs, None)
                continue
            seen[name] = desc
            check_recorded(conn, cell)
