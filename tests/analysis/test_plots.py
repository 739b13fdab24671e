"""Every figure kind drawn from multi-run sets of the paper's example runs, checked on the render.

The runs are the paper's examples recorded on the simulated bench (tests/paper_runs.py). For
each kind: an artist per run (found by the run's gid), every axis labelled with a unit, and no
legend overlapping any axes' data area, measured with the Agg renderer's bounding boxes after
the constrained layout has run. Kind-specific content (phase-window lines where the phase
diagram puts them, CCD markers at the stored CCDs, a fitted curve per spectrum) is checked too.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import QuadMesh
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from labctl.analysis.figures.registry import PLOT_KINDS, PlotError
from labctl.analysis.plots import figure_for, plot_runs
from labctl.cli import main
from labctl.recording.database import open_database
from labctl.recording.reads_analysis import run_context, run_results_rows
from labctl_chemistry import phase_diagram as pd
from tests.paper_runs import PaperRuns, paper_runs

UNIT = re.compile(r"\(.+\)$")


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> PaperRuns:
    return paper_runs(tmp_path_factory)


def _sets(p: PaperRuns) -> dict[str, list[int]]:
    return {
        "voltage": p.ccd_10MPa, "ccd": p.ccd_10MPa, "ccd-summary": p.ccd_10MPa + p.ccd_1MPa,
        "stripping": p.stripping, "nyquist": p.insitu_eis, "bode": p.insitu_eis,
        "drt": p.insitu_eis, "drt-map": p.insitu_eis, "cv": p.cv,
    }


def _rendered(fig: Figure) -> object:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # runs the constrained layout; bounding boxes are final after this
    return canvas.get_renderer()


def _is_colorbar(ax: Axes) -> bool:
    return hasattr(ax, "_colorbar")


def _artists_of(fig: Figure, gid: str) -> list[object]:
    return [a for ax in fig.axes for a in [*ax.lines, *ax.collections] if a.get_gid() == gid]


def _check_units(fig: Figure) -> None:
    for ax in fig.axes:
        if _is_colorbar(ax):
            label = ax.get_ylabel() or ax.get_xlabel()
            assert UNIT.search(label), f"colour bar label without unit: {label!r}"
            continue
        assert UNIT.search(ax.get_ylabel()), f"y label without unit: {ax.get_ylabel()!r}"
        xlabel = ax.get_xlabel() or next(
            (o.get_xlabel() for o in ax.get_shared_x_axes().get_siblings(ax) if o.get_xlabel()),
            "")
        assert UNIT.search(xlabel), f"x label without unit: {xlabel!r}"


def _check_legends_outside(fig: Figure) -> None:
    renderer = _rendered(fig)
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), \
                f"legend over the data area of {ax.get_title() or ax.get_ylabel()!r}"


@pytest.mark.parametrize("kind", PLOT_KINDS)
def test_figure_kind_from_a_multi_run_set(paper: PaperRuns, kind: str) -> None:
    ids = _sets(paper)[kind]
    assert len(ids) >= 2
    fig = figure_for(open_database(paper.url), ids, kind)
    for rid in ids:
        drawn = _artists_of(fig, f"run{rid}")
        assert drawn, f"{kind}: nothing drawn for run {rid}"
        assert any(len(np.atleast_1d(a.get_xdata())) >= 1 if isinstance(a, Line2D)
                   else np.asarray(a.get_array()).size > 1 for a in drawn)
    _check_units(fig)
    _check_legends_outside(fig)


@pytest.mark.parametrize("kind", ["voltage", "ccd", "stripping"])
def test_one_colour_per_run_across_panels(paper: PaperRuns, kind: str) -> None:
    ids = _sets(paper)[kind]
    fig = figure_for(open_database(paper.url), ids, kind)
    colours = {}
    for rid in ids:
        lines = [a for a in _artists_of(fig, f"run{rid}") if isinstance(a, Line2D)]
        assert len({a.axes for a in lines}) == len([a for a in fig.axes
                                                      if any(x in a.lines for x in lines)])
        found = {to_hex(a.get_color()) for a in lines}
        assert len(found) == 1, f"run {rid} drawn in {found}"
        colours[rid] = found.pop()
    assert len(set(colours.values())) == len(ids)


def test_stripping_panels_carry_the_phase_windows_of_each_alloy(paper: PaperRuns) -> None:
    engine = open_database(paper.url)
    fig = figure_for(engine, paper.stripping, "stripping")
    panels = [ax for ax in fig.axes if not _is_colorbar(ax)]
    assert len(panels) == 3  # NaK50, NaK65, NaK80
    for ax, rid in zip(panels, paper.stripping):
        ctx = run_context(engine, rid)
        assert ctx is not None and ctx.k_wt_pct is not None
        w0, T = ctx.k_wt_pct / 100.0, ctx.temperature_C or 25.0
        assert len(ax.patches) >= 2  # liquid window, liquid + K(s)
        vertical = sorted(float(np.atleast_1d(line.get_xdata())[0]) for line in ax.lines
                          if line.get_gid() is None and len(set(line.get_xdata())) == 1)
        assert vertical == pytest.approx(sorted([float(pd.q_window(w0, T)),
                                                 float(pd.q_all(w0))]), rel=1e-9)
        assert "mAh g" in ax.get_xlabel()


def test_ccd_summary_puts_each_run_at_its_pressure_and_ccd(paper: PaperRuns) -> None:
    engine = open_database(paper.url)
    ids = paper.ccd_10MPa + paper.ccd_1MPa
    fig = figure_for(engine, ids, "ccd-summary")
    ax = fig.axes[0]
    assert "MPa" in ax.get_xlabel()  # two pressures: CCD against pressure
    for rid in ids:
        res = {r.name: r.value for r in run_results_rows(engine, rid, "ccd")
               if r.step_id is None}
        (marker,) = _artists_of(fig, f"run{rid}")
        assert marker.get_xdata()[0] == pytest.approx(res["ccd_stack_pressure_MPa"])
        assert marker.get_ydata()[0] == pytest.approx(res["ccd_mA_cm2"])
    one_pressure = figure_for(engine, paper.ccd_10MPa, "ccd-summary")
    assert "wt %" in one_pressure.axes[0].get_xlabel()  # one pressure: against K content


def test_nyquist_draws_the_fitted_circuit_of_every_spectrum(paper: PaperRuns) -> None:
    engine = open_database(paper.url)
    fig = figure_for(engine, paper.insitu_eis, "nyquist")
    for rid in paper.insitu_eis:
        ctx = run_context(engine, rid)
        assert ctx is not None
        n_spectra = sum(1 for s in ctx.steps if s.n_eis >= 3)
        lines = [a for a in _artists_of(fig, f"run{rid}") if isinstance(a, Line2D)]
        measured = [a for a in lines if a.get_marker() == "o"]
        fitted = [a for a in lines if a.get_linestyle() == "-"]
        assert len(measured) == len(fitted) == n_spectra > 1
        # the fit passes through the data: its extent matches the measured arc within 10 %
        x_data = np.concatenate([a.get_xdata() for a in measured])
        x_fit = np.concatenate([a.get_xdata() for a in fitted])
        assert x_fit.max() == pytest.approx(x_data.max(), rel=0.1)
    assert sum(_is_colorbar(ax) for ax in fig.axes) == 3  # spectrum time, one per run


def test_drt_map_panels_share_one_colour_scale(paper: PaperRuns) -> None:
    fig = figure_for(open_database(paper.url), paper.insitu_eis, "drt-map")
    meshes = [c for ax in fig.axes for c in ax.collections
              if isinstance(c, QuadMesh) and c.get_gid()]  # not the colour bar's own mesh
    assert [m.get_gid() for m in meshes] == [f"run{rid}" for rid in paper.insitu_eis]
    assert len({(m.norm.vmin, m.norm.vmax) for m in meshes}) == 1


def test_cv_is_in_current_density(paper: PaperRuns) -> None:
    from labctl.recording.reads_analysis import run_points

    engine = open_database(paper.url)
    fig = figure_for(engine, paper.cv, "cv")
    for rid in paper.cv:
        ctx = run_context(engine, rid)
        assert ctx is not None
        pts = run_points(engine, rid)
        cv_ids = [s.id for s in ctx.steps if s.kind == "cv"]
        j_max = float(np.max(pts["I_mA"][np.isin(pts["step_id"], cv_ids)])) / ctx.area_cm2
        drawn = max(float(np.max(a.get_ydata())) for a in _artists_of(fig, f"run{rid}"))
        assert drawn == pytest.approx(j_max, rel=1e-12)
    assert all("mA cm" in ax.get_ylabel() for ax in fig.axes if not _is_colorbar(ax))


def test_a_kind_that_does_not_apply_refuses_in_one_line(
        paper: PaperRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = open_database(paper.url)
    with pytest.raises(PlotError, match=rf"run {paper.stripping[0]} has no CV step with data"):
        figure_for(engine, [paper.cv[0], paper.stripping[0]], "cv")
    with pytest.raises(PlotError, match=rf"run {paper.cv[0]} has no CCD result"):
        figure_for(engine, [paper.ccd_10MPa[0], paper.cv[0]], "ccd-summary")
    with pytest.raises(SystemExit) as exc:
        main(["plot", str(paper.stripping[0]), str(paper.ccd_10MPa[0]), "--kind", "stripping",
              "-o", str(tmp_path / "x.png"), "--db", paper.url])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "CCD ramp" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"),
                                          (".pdf", b"%PDF")])
def test_saved_in_png_svg_and_pdf(paper: PaperRuns, tmp_path: Path, suffix: str,
                                  magic: bytes) -> None:
    path = plot_runs(open_database(paper.url), paper.stripping, "stripping",
                     tmp_path / f"fig{suffix}")
    assert path.read_bytes().startswith(magic)
    if suffix == ".svg":  # every run's artists keep their gid in the SVG
        text = path.read_text()
        assert all(f'id="run{rid}' in text for rid in paper.stripping)


def test_a_short_imported_segment_has_readable_axes(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A 5.6 s EC-Lab OCV record: time in seconds, no offset or scientific multiplier."""
    url = f"sqlite:///{tmp_path / 'short.db'}"
    root = Path(__file__).resolve().parents[2]
    with pytest.raises(SystemExit) as exc:
        main(["import", str(root / "tests/data/eclab/00_test_01_OCV_C01.mpr"), "--cell",
              str(root / "examples/cells/nak50_half.yaml"), "--db", url])
        raise SystemExit(0)
    assert exc.value.code == 0, capsys.readouterr().err
    fig = figure_for(open_database(url), 1, "voltage")
    _rendered(fig)
    assert fig.axes[-1].get_xlabel() == "t (s)"
    for ax in fig.axes:
        assert ax.xaxis.get_offset_text().get_text() == ""
        assert ax.yaxis.get_offset_text().get_text() == ""
        assert not any("e" in t.get_text() for t in ax.get_yticklabels())
