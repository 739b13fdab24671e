"""Drivers found by name, so a lab adds an instrument without editing labctl.

A station file names each instrument's driver (``driver: biologic-sp300``, ``driver: mark10``).
The name is looked up among Python entry points (the packaging mechanism pyvisa and pytest use
for their plug-ins; `importlib.metadata.entry_points`): a lab's own package declares, in its
``pyproject.toml``::

    [project.entry-points."labctl_drivers.potentiostats"]
    my-potentiostat = "my_lab_drivers.pstat:make"

and `make(request: DriverRequest)` returns an object with the `Potentiostat` interface of
`labctl_drivers.interfaces` (``labctl_drivers.gauges`` for force gauges). labctl's own drivers
are registered the same way in its ``pyproject.toml``, so nothing here knows them by name.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from labctl_drivers.errors import InstrumentError

if TYPE_CHECKING:
    from labctl_drivers.sim.bench import SimulatedBench


class DriverKind(enum.Enum):
    """What a driver makes; the value is its entry-point group."""

    POTENTIOSTAT = "labctl_drivers.potentiostats"
    GAUGE = "labctl_drivers.gauges"


class DriverNotFound(InstrumentError):
    """No installed driver has the name a station file gives."""


@dataclass(frozen=True)
class DriverRequest:
    """What a driver factory gets: the instrument's name in the station, the options of its
    station entry (address, backend, timeouts ...) and, when the station is simulated
    in-process, the bench whose simulated hardware sits below the driver."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    bench: SimulatedBench | None = None


Factory = Callable[[DriverRequest], Any]


def available(kind: DriverKind) -> list[str]:
    """Names of the installed drivers of one kind, sorted."""
    return sorted(ep.name for ep in entry_points(group=kind.value))


def find(kind: DriverKind, name: str) -> Factory:
    """The factory registered under `name`; `DriverNotFound` (with the names there are)."""
    for ep in entry_points(group=kind.value):
        if ep.name == name:
            factory: Factory = ep.load()
            return factory
    names = available(kind)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    what = kind.name.lower()
    raise DriverNotFound(
        f"no {what} driver named '{name}'{hint} (installed: {', '.join(names) or 'none'})"
    )


def make(kind: DriverKind, driver: str, request: DriverRequest) -> Any:
    """Build an instrument: find its driver by name and call its factory."""
    return find(kind, driver)(request)
