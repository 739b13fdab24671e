"""Stations: the instruments a run uses, described by a station file and opened through the
driver registry. `--sim` is the built-in simulated station (`builtin/sim.yaml`)."""

from __future__ import annotations

from importlib.resources import files

from labctl.stations.connect import (
    ChannelBinding,
    InstrumentRecord,
    Station,
    StationError,
    open_station,
)
from labctl.stations.schema import StationSpec, load_station, parse_station_text

BUILTIN_SIM = "sim.yaml"


def builtin_sim_station() -> StationSpec:
    """The simulated station `--sim` runs on (shipped with labctl as a station file)."""
    text = files("labctl.stations").joinpath("builtin", BUILTIN_SIM).read_text(encoding="utf-8")
    return parse_station_text(f"<builtin>/{BUILTIN_SIM}", text)


__all__ = [
    "ChannelBinding",
    "InstrumentRecord",
    "Station",
    "StationError",
    "StationSpec",
    "builtin_sim_station",
    "load_station",
    "open_station",
    "parse_station_text",
]
