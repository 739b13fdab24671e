"""The report as one HTML page, rendered with Jinja2 (autoescaped: cell names and notes are
operator text) from the template beside this module."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import jinja2
from sqlalchemy import Engine

from labctl.report.contents import Report, gather
from labctl.report.numbers import seconds

TEMPLATE = "report.html.j2"


def render(report: Report) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    source = resources.files("labctl.report").joinpath(TEMPLATE).read_text(encoding="utf-8")
    return env.from_string(source).render(report=report, seconds=seconds)


def write_report(engine: Engine, run_ids: Sequence[int], path: str | Path) -> Path:
    """Gather the runs, render, and write the page to `path` (UTF-8)."""
    path = Path(path)
    path.write_text(render(gather(engine, run_ids)), encoding="utf-8")
    return path
