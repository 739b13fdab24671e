"""`labctl station check`: connect to every instrument of a station, say what each one is and
what state it is in, read every gauge — and change nothing.

Nothing is loaded, started or stopped: a channel that a crashed labctl left running is reported
as running (that is how an operator finds out), and no current is ever applied by a check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labctl.stations.connect import StationError, open_station
from labctl.stations.schema import StationSpec
from labctl_drivers.errors import InstrumentError
from labctl_drivers.interfaces import ChannelStatus, InstrumentIdentity


@dataclass(frozen=True)
class PotentiostatReport:
    name: str
    identity: InstrumentIdentity
    channels: tuple[ChannelStatus, ...]


@dataclass(frozen=True)
class FrameReport:
    name: str
    identity: InstrumentIdentity
    force_N: float
    pressure_MPa: float | None  # None: the frame takes its area from the cell it presses
    area_mm2: float | None


@dataclass
class StationReport:
    station: str
    simulated: bool
    potentiostats: list[PotentiostatReport] = field(default_factory=list)
    frames: list[FrameReport] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as an operator reads it, one instrument or channel per line."""
        out = [f"station {self.station}" + (" (simulated)" if self.simulated else "")]
        for p in self.potentiostats:
            ident = p.identity
            extra = "".join(f", {k} {v}" for k, v in ident.details)
            out.append(f"  {p.name}: {ident.model} at {ident.address}, serial "
                       f"{ident.serial_number or '?'}, firmware {ident.firmware or '?'}{extra}")
            for ch in p.channels:
                e = "" if ch.E_V is None else f", E = {ch.E_V:.4f} V"
                i = "" if ch.I_A is None else f", I = {ch.I_A * 1e3:.4g} mA"
                tech = f", {ch.technique}" if ch.technique else ""
                out.append(f"    channel {ch.index}: {ch.state.value}{tech}{e}{i}")
        for f in self.frames:
            p = ("(area from the cell)" if f.pressure_MPa is None or f.area_mm2 is None
                 else f"= {f.pressure_MPa:.2f} MPa on {f.area_mm2:.2f} mm^2")
            out.append(f"  {f.name}: {f.identity.model}, serial {f.identity.serial_number or '?'}"
                       f" at {f.identity.address}: {f.force_N:.1f} N {p}")
        return out


def check_station(spec: StationSpec) -> StationReport:
    """Connect to everything, report, let go. Raises StationError (one line) on any fault."""
    station = open_station(spec, [], every_instrument=True)
    try:
        report = StationReport(spec.name, spec.simulated)
        for name, pot in station.potentiostats.items():
            ident = pot.identity()
            statuses = tuple(pot.channel(i).status() for i in ident.channels)
            report.potentiostats.append(PotentiostatReport(name, ident, statuses))
        for name, frame in station.frames.items():
            force = frame.read_force_N()
            area = float(frame.area_mm2)  # type: ignore[attr-defined]
            report.frames.append(FrameReport(name, frame.identity(), force, force / area, area))
        for name, gauge in station.gauges.items():
            g = gauge.identity()  # type: ignore[attr-defined]
            ident = InstrumentIdentity(g.model, g.serial_number, g.firmware,
                                       address=str(getattr(gauge, "url", "")),
                                       simulated=g.simulated)
            report.frames.append(FrameReport(name, ident, gauge.read_force_N(), None, None))
        return report
    except InstrumentError as exc:
        raise StationError(f"station {spec.name!r}: {exc}") from None
    finally:
        station.close()
