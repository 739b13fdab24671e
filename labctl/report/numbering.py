"""One step numbering for people, the same in `plan`, `show`, results and the report.

Top-level steps are numbered 1, 2, 3 ... in protocol order, as `labctl plan` lists them; the
stages a step runs as children (a CCD ramp's half-cycles and rests) are N.1, N.2 ... under it.
The database's step.index (execution order counting children) and step.id (a key) are for
machines; a result that refers to a step (e.g. ccd_failed_step_id) is shown by this number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class _Step(Protocol):
    id: int
    parent_id: int | None


def step_labels(steps: Sequence[_Step]) -> dict[int, str]:
    """Database step id → '3' or '4.12', for steps given in execution order."""
    labels: dict[int, str] = {}
    top = 0
    children: dict[int, int] = {}
    for s in steps:
        if s.parent_id is None or s.parent_id not in labels:
            top += 1
            labels[s.id] = str(top)
        else:
            k = children.get(s.parent_id, 0) + 1
            children[s.parent_id] = k
            labels[s.id] = f"{labels[s.parent_id]}.{k}"
    return labels
