"""Moved: the simulated Mark-10 lives beside its driver, `labctl_drivers.mark10.sim_gauge`.

This name stays importable until its last users (the station rewrite, tests/cli) move over.
"""

from __future__ import annotations

from labctl_drivers.mark10.sim_gauge import SimulatedMark10

__all__ = ["SimulatedMark10"]
