"""Factories of labctl's own drivers, registered by name in ``pyproject.toml`` (entry points).

Each builds the REAL driver and picks only its lowest backend from the station entry: the
SP-300 adapter over BioLogic's DLL (through easy-biologic), over the in-process simulated EClib,
or over a simulated bench in another process; the Mark-10 GCL2 driver over whatever byte
transport its port names (a tty, a pyserial URL, a VISA resource, the simulated gauge).
"""

from __future__ import annotations

from typing import Any

from labctl_drivers.errors import Unsupported
from labctl_drivers.registry import DriverRequest

SIMGAUGE = "simgauge://"


def make_sp300(request: DriverRequest) -> Any:
    """`biologic-sp300`: the SP-300 adapter (labctl_drivers.biologic.adapter)."""
    from labctl_drivers.biologic.adapter import SP300

    opts = request.options
    backend = str(opts.get("backend", "vendor"))
    eclib: Any
    if backend == "vendor":
        from labctl_drivers.biologic.easy_eclib import EasyBiologicEClib

        eclib = EasyBiologicEClib()
    elif backend == "simulated":
        if request.bench is None:
            raise Unsupported(f"{request.name}: backend 'simulated' needs the simulated bench")
        eclib = request.bench.sp300(request.name)
    elif backend.startswith("tcp://"):
        from labctl_drivers.sim.remote import RemoteEClib

        eclib = RemoteEClib(backend, instrument=request.name)
    else:
        raise Unsupported(f"{request.name}: unknown SP-300 backend {backend!r}")
    return SP300(eclib, address=str(opts.get("address", "USB0")), name=request.name,
                 timeout_s=int(opts.get("timeout_s", 5)))


def make_mark10(request: DriverRequest) -> Any:
    """`mark10`: the Mark-10 GCL2 gauge driver on the port the station names."""
    from labctl_drivers.mark10 import Mark10Gauge

    opts = request.options
    port = str(opts["port"])
    if port.startswith(SIMGAUGE) and request.bench is not None:
        # the station names the frame's gauge; each bench registers its own under a
        # bench-scoped name, so two benches in one process never share a gauge
        port = request.bench.gauge_url(port.removeprefix(SIMGAUGE))
    return Mark10Gauge(port, baudrate=int(opts.get("baudrate", 115200)),
                       timeout_s=float(opts.get("timeout_s", 1.0)))
