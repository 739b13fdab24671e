"""The instrument's timing of what only the instrument can time, for the protocol's plan.

The protocol layer imports neither the engine nor the drivers, yet its plan needs to know how
long an EIS sweep takes, and that is the instrument's business: how many frequencies a range
holds and how long each takes are defined once, in `labctl_drivers.techniques`. So the plan
takes an `InstrumentTiming` (a protocol-layer Protocol) and the engine, which builds the very
technique the step will load, supplies it: the estimate is computed from what will run.
"""

from __future__ import annotations

from labctl.engine.channel import expected_duration_s
from labctl.engine.steps import eis_technique
from labctl.protocol.plan import InstrumentTiming
from labctl.protocol.resolved import EIS


class _EngineTiming:
    def eis_duration_s(self, eis: EIS) -> float:
        duration = expected_duration_s(eis_technique(eis))
        assert duration is not None  # a sweep always has a known length
        return duration


INSTRUMENT_TIMING: InstrumentTiming = _EngineTiming()
