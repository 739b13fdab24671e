"""`labctl sim serve`: the simulated bench as its own process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labctl.cli.app import SeedOption, UserError, sim_app


@sim_app.command("serve")
def sim_serve(
    cell: Annotated[list[Path], typer.Option("--cell", help="Cell description YAML (one "
                                                            "channel each, in order).")],
    station_out: Annotated[Path, typer.Option(
        "--station-out", help="Where to write the station file that reaches this bench.")],
    port: Annotated[int, typer.Option(help="TCP port (0: any free one).", min=0, max=65535)] = 0,
    speed: Annotated[float, typer.Option(help="Clock acceleration (1 = real time).", min=0.01,
                                         max=10000)] = 1.0,
    seed: SeedOption = 0,
) -> None:
    """Run the simulated bench as its own process until SIGTERM or Ctrl-C.

    Its instruments outlive any labctl that drives them through the station file it writes.
    """
    from labctl.protocol import load_cell
    from labctl.stations.serve import serve

    for path in cell:
        if not path.is_file():
            raise UserError(f"{path}: no such file")
    cells = [load_cell(p) for p in cell]
    serve(cells, station_out, port=port, seed=seed, speed=speed)
