"""`labctl sim serve`: the simulated bench as its own process, and the station file to reach it.

The bench process holds the cells (digital twins of the described cells, as the operator puts
real cells on real channels), simulated SP-300s, spring frames with their gauges and the
simulated operator, all on one wall clock (optionally accelerated). It writes a station file in
the ordinary schema — potentiostats with ``backend: tcp://...``, gauges on ``socket://...`` —
so `labctl run ... --station FILE` drives it through the real drivers, and it keeps running
when that labctl is killed.
"""

from __future__ import annotations

import math
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from labctl.protocol.cell import CellSpec
from labctl.stations.connect import DEFAULT_SIM_PRESSURE_MPA, make_cell_model
from labctl_drivers.clock import WallClock
from labctl_drivers.sim.bench import SimulatedBench
from labctl_drivers.sim.server import BenchServer

CHANNELS_PER_SP300 = 2


def build_served_bench(cells: list[CellSpec], *, seed: int, speed: float
                       ) -> tuple[SimulatedBench, list[tuple[str, int, str]]]:
    """A wall-clock bench with one channel and one frame per cell, cells in place.
    Returns the bench and, per cell, (potentiostat, channel, frame)."""
    bench = SimulatedBench(seed=seed, clock=WallClock(speed=speed))
    layout = []
    for k in range(math.ceil(len(cells) / CHANNELS_PER_SP300)):
        bench.add_sp300(f"sim-SP300-{k + 1}", n_channels=CHANNELS_PER_SP300)
    for k, cell in enumerate(cells):
        pot, ch, frame = f"sim-SP300-{k // CHANNELS_PER_SP300 + 1}", k % CHANNELS_PER_SP300, \
            f"sim-frame-{k + 1}"
        bench.add_frame(frame)
        pressure = (cell.stack_pressure_MPa if cell.stack_pressure_MPa is not None
                    else DEFAULT_SIM_PRESSURE_MPA)
        bench.place_cell(cell.id, make_cell_model(cell, pressure, seed * 1000 + k), pot, ch,
                         frame, pressure)
        layout.append((pot, ch, frame))
    return bench, layout


def station_document(name: str, url: str, speed: float, layout: list[tuple[str, int, str]],
                     gauge_urls: dict[str, str]) -> dict[str, object]:
    """The station file (as data) that reaches a served bench through the real drivers."""
    pots = list(dict.fromkeys(p for p, _, _ in layout))
    return {
        "name": name,
        "clock": {"kind": "wall", "speed": speed},
        "poll_interval_s": 1.0,
        "potentiostats": [{"name": p, "driver": "biologic-sp300", "address": f"USB{i}",
                           "backend": f"{url}/{p}"} for i, p in enumerate(pots)],
        "frames": [{"name": f, "gauge": {"driver": "mark10", "port": gauge_urls[f]},
                    "actuator": f"{url}/{f}"} for _, _, f in layout],
        "channels": [{"potentiostat": p, "channel": c, "frame": f} for p, c, f in layout],
    }


@dataclass
class ServedBench:
    """A bench being served: its server, and the station file that reaches it."""

    bench: SimulatedBench
    server: BenchServer
    station_path: Path

    def close(self) -> None:
        self.server.stop()
        self.bench.close()

    def __enter__(self) -> ServedBench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_served_bench(cells: list[CellSpec], station_out: Path, *, port: int = 0,
                       seed: int = 0, speed: float = 1.0) -> ServedBench:
    """Build the bench, serve it from background threads, write its station file."""
    bench, layout = build_served_bench(cells, seed=seed, speed=speed)
    server = BenchServer(bench, port=port).start()
    gauge_urls = {f: bench.serve_gauge(f) for _, _, f in layout}
    doc = station_document("sim-bench-served", server.url, speed, layout, gauge_urls)
    tmp = station_out.with_name(station_out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write("# written by `labctl sim serve`: a simulated bench in its own process\n")
        YAML(typ="safe", pure=True).dump(doc, fh)
    tmp.replace(station_out)  # atomically: a reader never sees half a station file
    return ServedBench(bench, server, station_out)


def serve(cells: list[CellSpec], station_out: Path, *, port: int = 0, seed: int = 0,
          speed: float = 1.0) -> None:
    """Serve until SIGTERM, SIGHUP or Ctrl-C (the `labctl sim serve` command)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    with start_served_bench(cells, station_out, port=port, seed=seed, speed=speed) as served:
        print(f"serving {len(cells)} cell(s) at {served.server.url}; station file "
              f"{station_out}", flush=True)
        stop.wait()
