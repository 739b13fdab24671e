"""Names of the figure kinds and image formats, importable without matplotlib or the database.

The command line builds its `--kind` and `--format` choices from these at start-up, so they
live apart from the drawing code (see labctl.analysis.figures.registry).
"""

from __future__ import annotations

import enum


class FigureKind(enum.StrEnum):
    """The figure kinds, named after what they show; the paper's panel is in each docstring."""

    VOLTAGE = "voltage"
    CCD = "ccd"
    CCD_SUMMARY = "ccd-summary"
    STRIPPING = "stripping"
    NYQUIST = "nyquist"
    BODE = "bode"
    DRT = "drt"
    DRT_MAP = "drt-map"
    CV = "cv"


class ImageFormat(enum.StrEnum):
    """File formats a figure is saved in (matplotlib picks the writer from the suffix)."""

    PNG = "png"
    SVG = "svg"
    PDF = "pdf"


FORMATS: tuple[str, ...] = tuple(f.value for f in ImageFormat)
