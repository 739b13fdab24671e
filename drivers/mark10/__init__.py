"""Mark-10 force gauges: the GCL2 driver, its byte transports and the simulated gauge below it.

* `gauge` — `Mark10Gauge`, the driver (command table against the Series 5 user's guide §9.8);
* `transport` — `ByteTransport` and its pyserial (by URL) and pyvisa (VISA resource) forms;
* `sim_gauge` — `SimulatedMark10`, a gauge that answers GCL2 in bytes, reached in-process
  through the pyserial URL ``simgauge://NAME`` (`protocol_simgauge`), over a pty or over TCP;
* ``mark10_sim.yaml`` — a pyvisa-sim description of the gauge (`SIM_YAML`).

Importing this package registers ``simgauge://`` with pyserial.
"""

from __future__ import annotations

from pathlib import Path

from labctl_drivers.mark10.errors import (
    GarbledReply,
    GaugeError,
    GaugeTransportError,
    ReplyTimeout,
    UnitNotShown,
)
from labctl_drivers.mark10.gauge import (
    COMMANDS,
    GAUGE_ERRORS,
    LBF_N,
    TO_NEWTON,
    UNIT_COMMANDS,
    GaugeIdentity,
    Mark10Gauge,
    Reading,
    capacity_from_model,
    parse_reading,
)
from labctl_drivers.mark10.transport import (
    SIMULATOR_SCHEME,
    ByteTransport,
    PySerialTransport,
    VisaTransport,
    is_visa_resource,
    open_transport,
)

#: The pyvisa-sim description of a Mark-10 shipped beside the driver (``SIM_YAML + "@sim"``
#: is the visa library string; its resource is ``ASRL1::INSTR``).
SIM_YAML = str(Path(__file__).with_name("mark10_sim.yaml"))

__all__ = [
    "COMMANDS", "GAUGE_ERRORS", "LBF_N", "SIMULATOR_SCHEME", "SIM_YAML", "TO_NEWTON",
    "UNIT_COMMANDS", "ByteTransport", "GarbledReply", "GaugeError", "GaugeIdentity",
    "GaugeTransportError", "Mark10Gauge", "PySerialTransport", "Reading", "ReplyTimeout",
    "UnitNotShown", "VisaTransport", "capacity_from_model", "is_visa_resource",
    "open_transport", "parse_reading",
]
