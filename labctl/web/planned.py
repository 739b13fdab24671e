"""The planned duration of a recorded run, recomputed from what the run row keeps.

The run stores the protocol text and the cell description exactly as the operator gave them,
so the plan `labctl plan` would print (with the instrument's timing of EIS sweeps) can be rebuilt
for any run, in any process. Adaptive steps (a CCD ramp ends when the cell fails) make it an
estimate, as the terminal display says too.
"""

from __future__ import annotations

import threading
from typing import Any

from labctl.engine.timing import INSTRUMENT_TIMING
from labctl.protocol import ProtocolError, plan, plan_total, resolve
from labctl.protocol.cell import CellSpec
from labctl.protocol.loader import parse_protocol_text

_cache: dict[tuple[str, str], float | None] = {}
_lock = threading.Lock()


def planned_duration_s(protocol_text: str | None, cell: dict[str, Any] | None) -> float | None:
    """Seconds the plan expects, or None when the stored texts no longer validate (a run made
    by an older labctl, or an imported file)."""
    if protocol_text is None or cell is None:
        return None
    key = (protocol_text, repr(sorted(cell.items())))
    with _lock:
        if key in _cache:
            return _cache[key]
    try:
        doc = parse_protocol_text("<recorded protocol>", protocol_text)
        total: float | None = plan_total(
            plan(resolve(doc, CellSpec.model_validate(cell)), INSTRUMENT_TIMING)).duration_s
    except (ProtocolError, ValueError):
        total = None
    with _lock:
        _cache[key] = total
    return total
