"""Station files: which real instruments a bench has, and which channel each cell uses.

labctl never guesses instrument addresses. A station file names them:

    # stations/glovebox-1.yaml
    name: glovebox-1
    potentiostats:
      - name: sp300-a
        driver: biologic-sp300      # easy-biologic, Windows + BioLogic's EClib DLL
        address: USB0               # or the instrument's IP address
    frames:
      - name: frame-1
        gauge: {driver: mark10, port: /dev/ttyUSB0, baudrate: 115200}
        electrode_diameter_mm: 6
    channels:                       # cells given with --cell take these in order
      - {potentiostat: sp300-a, channel: 0, frame: frame-1}
      - {potentiostat: sp300-a, channel: 1}

`connect_station` opens every instrument and puts every channel it will use into the safe state
(circuit open) before anything else happens, so a bench that rebooted mid-run never comes up
with current flowing (anchors.md §4, the power-loss lesson).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from labctl.protocol.cell import CellSpec
from labctl.station import HW_POLL_INTERVAL_S, ChannelBinding, Station
from labctl_drivers.clock import WallClock
from labctl_drivers.interfaces import InstrumentError, Potentiostat, PressureFrame


class StationError(RuntimeError):
    """The station file is wrong, or its instruments cannot be reached."""


class PotentiostatEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    driver: Literal["biologic-sp300"]
    address: str = "USB0"
    timeout_s: int = Field(default=5, gt=0)


class GaugeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    driver: Literal["mark10"]
    port: str  # a device path or any pyserial URL (socket://host:port, loop://, ...)
    baudrate: int = 115200


class FrameEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    gauge: GaugeEntry
    electrode_diameter_mm: float | None = Field(default=None, gt=0)
    area_mm2: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_area(self) -> FrameEntry:
        if (self.electrode_diameter_mm is None) == (self.area_mm2 is None):
            raise ValueError("give exactly one of electrode_diameter_mm or area_mm2")
        return self


class ChannelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    potentiostat: str
    channel: int = Field(ge=0, le=15)
    frame: str | None = None


class StationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    potentiostats: list[PotentiostatEntry]
    frames: list[FrameEntry] = []
    channels: list[ChannelEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> StationSpec:
        pots = {p.name for p in self.potentiostats}
        frames = {f.name for f in self.frames}
        for i, ch in enumerate(self.channels):
            if ch.potentiostat not in pots:
                raise ValueError(f"channels[{i}]: no potentiostat named {ch.potentiostat!r}")
            if ch.frame is not None and ch.frame not in frames:
                raise ValueError(f"channels[{i}]: no frame named {ch.frame!r}")
        return self


def load_station_spec(path: str | Path) -> StationSpec:
    path = Path(path)
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StationError(f"{path}: {exc.strerror or exc}") from None
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise StationError(f"{path}{where}: YAML syntax error") from None
    try:
        return StationSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise StationError(f"{path}: {loc}: {first['msg']}") from None


def _potentiostat(entry: PotentiostatEntry) -> Potentiostat:
    from labctl_drivers.biologic import EasyBiologicSP300

    return EasyBiologicSP300(entry.address, name=entry.name, timeout_s=entry.timeout_s)


def _frame(entry: FrameEntry) -> PressureFrame:
    from labctl_drivers.mark10 import Mark10Gauge
    from labctl_drivers.pressure_frame import SpringPressureFrame

    gauge = Mark10Gauge(entry.gauge.port, baudrate=entry.gauge.baudrate)
    gauge.open()
    return SpringPressureFrame(gauge, electrode_diameter_mm=entry.electrode_diameter_mm,
                               area_mm2=entry.area_mm2, name=entry.name)


def connect_station(spec: StationSpec, cells: list[CellSpec]) -> Station:
    """Open the instruments, switch the channels in use off, bind cells to channels in order."""
    if len(cells) > len(spec.channels):
        raise StationError(f"{len(cells)} cells but station {spec.name!r} has only "
                           f"{len(spec.channels)} channels")
    pots: dict[str, Potentiostat] = {}
    frames: dict[str, PressureFrame] = {}
    try:
        for entry in spec.potentiostats:
            pot = _potentiostat(entry)
            pot.connect()
            pots[entry.name] = pot
        for fentry in spec.frames:
            frames[fentry.name] = _frame(fentry)
        bindings = []
        for cell, ch in zip(cells, spec.channels):
            pot = pots[ch.potentiostat]
            channel = pot.channel(ch.channel)
            channel.stop()  # safe state first, whatever the instrument was doing
            entry = next(p for p in spec.potentiostats if p.name == ch.potentiostat)
            bindings.append(ChannelBinding(
                cell=cell, channel=channel, channel_index=ch.channel,
                frame=frames.get(ch.frame) if ch.frame else None,
                potentiostat={"name": entry.name, "kind": "potentiostat", "model": "SP-300",
                              "address": entry.address, "simulated": False},
            ))
    except InstrumentError as exc:
        for pot in pots.values():
            try:
                pot.disconnect()
            except InstrumentError:
                pass
        raise StationError(f"station {spec.name!r}: {exc}") from None
    return Station(spec.name, False, WallClock(), bindings, HW_POLL_INTERVAL_S)
