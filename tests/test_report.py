"""`labctl report` of the paper's example runs: one self-contained HTML file with every figure
that applies and every stored result.

Self-contained is checked on the parsed document: every src/href is a data: URI or an anchor
in the page, no <link>, <script> or CSS url() outside data:, so the page reads the same from a
mail attachment with no network.
"""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from labctl.analysis.figures.kinds import FigureKind
from labctl.cli import main
from labctl.recording.database import open_database
from labctl.recording.queries import run_steps
from labctl.recording.reads_analysis import protocol_text, run_results_rows
from labctl.report.numbering import step_labels
from labctl.report.readable import result_value
from tests.paper_runs import PaperRuns, paper_runs


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tags: list[str] = []
        self.figures: dict[str, str] = {}  # kind -> img src
        self._kind: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        for name in ("src", "href", "srcset", "poster", "data", "action"):
            if a.get(name) is not None:
                self.refs.append((tag, name, a[name] or ""))
        if tag == "figure":
            self._kind = a.get("data-kind")
        if tag == "img" and self._kind:
            self.figures[self._kind] = a.get("src") or ""

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> PaperRuns:
    return paper_runs(tmp_path_factory)


def test_report_of_the_paper_runs_is_self_contained_with_every_figure_and_result(
        paper: PaperRuns, tmp_path: Path) -> None:
    ids = [paper.ccd_10MPa[0], paper.ccd_10MPa[1], paper.ccd_1MPa[0], paper.stripping[0],
           paper.insitu_eis[0], paper.cv[0]]
    out = tmp_path / "report.html"
    note = f"pellet <b>chipped</b> {tmp_path.name}"  # operator text: escaped, not markup
    with pytest.raises(SystemExit) as exc:
        main(["note", str(ids[0]), note, "--db", paper.url])
        raise SystemExit(0)
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        main(["report", *map(str, ids), "-o", str(out), "--db", paper.url])
        raise SystemExit(0)
    assert exc.value.code == 0
    html = out.read_text(encoding="utf-8")
    page = _Page()
    page.feed(html)

    # nothing fetched from anywhere
    for tag, attr, value in page.refs:
        assert value.startswith(("data:", "#")), f"<{tag} {attr}={value[:60]!r}> is external"
    assert "link" not in page.tags and "script" not in page.tags and "iframe" not in page.tags
    assert not re.search(r"url\((?!\s*['\"]?data:)", html)
    assert "@import" not in html

    # every kind applies to one of these runs, and each is an embedded PNG
    assert set(page.figures) == {k.value for k in FigureKind}
    for kind, src in page.figures.items():
        head, _, data = src.partition(",")
        assert head == "data:image/png;base64", kind
        assert base64.b64decode(data).startswith(b"\x89PNG"), kind

    # every stored result of every run, as people read it, and each run's protocol text
    text = "".join(page.text)
    engine = open_database(paper.url)
    n_results = 0
    for rid in ids:
        labels = step_labels(run_steps(engine, rid))
        rows = run_results_rows(engine, rid)
        n_results += len(rows)
        for r in rows:
            assert r.name in text
            assert result_value(r, labels) in text, (rid, r.name)
        proto = protocol_text(engine, rid)
        assert proto and proto.splitlines()[-1].strip() in text
    assert n_results > 600  # CCD, critical stripping, DRT and circuit results
    assert "labctl" in text and "station" in text.lower()
    assert note in text and "<b>chipped</b>" not in html  # shown as written, escaped


def test_report_of_a_missing_run_is_one_line(paper: PaperRuns, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["report", str(paper.cv[0]), "999999", "-o", str(tmp_path / "r.html"),
              "--db", paper.url])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "999999" in err
    assert not (tmp_path / "r.html").exists()
