"""Property: whatever LANDdt does to a channel's export files between polls, every record row is
delivered exactly once, in order, with the values written.

A writer (below) produces the export the way LAND's software lays it out (the layouts, forms and
encodings of `labctl_drivers.sim.landt`), and interleaves, between the follower's polls:
growth by arbitrary byte counts (cutting lines and multi-byte characters), rotation (the file
renamed aside, a new one started), replacement (a re-export with more rows atomically put in its
place), truncation (the file rewritten in place shorter, then grown again), and a last row with or
without its line end. `.xlsx` workbooks are only ever replaced whole. The one assumption, stated
in `labctl_drivers.landt.follower`: a writer never leaves a line half-written for longer than the
follower's `settle_s` while it is still writing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from labctl_drivers.clock import VirtualClock
from labctl_drivers.landt.follower import ExportFollower
from labctl_drivers.sim.landt import LAYOUTS, format_text

SETTLE_S = 30.0
STATES = {"english": ("R", "RateC", "RateD"), "chinese": ("搁置", "恒流充电", "恒流放电")}


def _rows(n: int, layout: str, states: str) -> list[list[object]]:
    out = []
    for k in range(1, n + 1):
        t = 10.0 * k
        I_mA = (0.0, 0.1, -0.1)[(k // 5) % 3]
        V = 0.001 * k + (0.2 if I_mA > 0 else -0.2 if I_mA < 0 else 0.0)
        state = STATES[states][(k // 5) % 3]
        out.append(LAYOUTS[layout].row(k, t, t % 50, I_mA, abs(I_mA) * (t % 50) / 3600.0, V,
                                       f"2026-01-01 09:{k // 60:02d}:{k % 60:02d}.000",
                                       1 + k // 15, 1 + (k // 5) % 3, state))
    return out


@dataclass
class Writer:
    """One channel's export files, written as the drawn operations say."""

    folder: Path
    fmt: str
    encoding: str
    layout: str
    rows: list[list[object]]
    final_newline: bool
    start: int = 0  # first row of the active file
    written: int = 0  # bytes (text) or rows (xlsx) of the active file's target written
    rotations: int = 0
    last_write: float = 0.0  # clock time of the last change to the files
    path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.path = self.folder / f"cell.{self.fmt}"

    # ---- the active file's full intended content -----------------------------------------
    def head(self) -> bytes:
        d = "," if self.fmt == "csv" else "\t"
        pre = [["测试名称", "cell"], ["通道", "1-3"]] if self.encoding == "gbk" else [
            ["Test name", "cell"]]
        return "".join(format_text(r, d) for r in [*pre, list(LAYOUTS[self.layout].header)]
                       ).encode(self.encoding)

    def lines(self) -> list[bytes]:
        d = "," if self.fmt == "csv" else "\t"
        out = [format_text(r, d).encode(self.encoding) for r in self.rows[self.start:]]
        if out and not self.final_newline:
            out[-1] = out[-1].rstrip(b"\r\n")
        return out

    def target(self) -> bytes:
        return self.head() + b"".join(self.lines())

    def mid_line(self) -> bool:
        """The active file ends inside a line (the writer is still writing it)."""
        return self.fmt != "xlsx" and self.written not in (0, *self.boundaries())

    def boundaries(self) -> list[int]:
        b = [len(self.head())]
        for ln in self.lines():
            b.append(b[-1] + len(ln))
        return b

    # ---- operations ------------------------------------------------------------------------
    def grow(self, n: int) -> None:
        if self.fmt == "xlsx":
            self.written = min(len(self.rows) - self.start, self.written + max(1, n // 40))
            self._xlsx()
            return
        data = self.target()[self.written:self.written + n]
        if not self.path.exists() and self.written == 0:
            data = self.target()[:max(n, 1)]
        with self.path.open("ab") as f:
            f.write(data)
        self.written += len(data)

    def rotate(self, _: int = 0) -> None:
        if self.fmt == "xlsx":
            return
        b = next((x for x in self.boundaries() if x >= self.written), None)
        if b is None or b == self.boundaries()[-1]:
            return
        self.grow(b - self.written)  # finish the line being written
        n_rows = self.boundaries().index(b)
        self.rotations += 1
        os.replace(self.path, self.folder / f"cell_{self.rotations}.{self.fmt}")
        self.start += n_rows
        self.written = 0
        self.grow(len(self.head()))

    def replace(self, more: int) -> None:
        if self.fmt == "xlsx":
            self.grow(40 * more)
            return
        bounds = self.boundaries()
        b = next((x for x in bounds if x >= self.written), bounds[-1])
        b = bounds[min(bounds.index(b) + more, len(bounds) - 1)]
        tmp = self.folder / "cell.tmp"
        tmp.write_bytes(self.target()[:b])
        os.replace(tmp, self.path)
        self.written = b

    def truncate(self, back: int) -> None:
        if self.fmt == "xlsx" or not self.path.exists():
            return
        bounds = [0, *(x for x in self.boundaries() if x <= self.written)]
        b = bounds[max(0, len(bounds) - 1 - back)]
        with self.path.open("r+b") as f:  # in place: same inode, shorter
            f.truncate(b)
        self.written = b

    def finish(self) -> None:
        if self.fmt == "xlsx":
            self.written = len(self.rows) - self.start
            self._xlsx()
        else:
            self.grow(len(self.target()))

    def _xlsx(self) -> None:
        import openpyxl

        wb = openpyxl.Workbook()
        wb.active.title = "Test information"
        wb.active.append(["Test name", "cell"])
        sheet = wb.create_sheet("Record")
        sheet.append(list(LAYOUTS[self.layout].header))
        for r in self.rows[self.start:self.start + self.written]:
            sheet.append(r)
        tmp = self.folder / "cell.tmp.xlsx"
        wb.save(tmp)
        os.replace(tmp, self.path)


OPS = st.one_of(
    st.tuples(st.just("grow"), st.integers(1, 400)),
    st.tuples(st.just("rotate"), st.just(0)),
    st.tuples(st.just("replace"), st.integers(0, 5)),
    st.tuples(st.just("truncate"), st.integers(0, 6)),
    st.tuples(st.just("poll"), st.floats(0.0, SETTLE_S * 0.9)),
)


# No shrink phase: shrinking file-system examples takes minutes; a failure prints its example.
@settings(max_examples=int(os.environ.get("LANDT_PROPERTY_EXAMPLES", "120")), deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    form=st.sampled_from([("csv", "utf-8"), ("csv", "gbk"), ("txt", "utf-8"), ("txt", "gbk"),
                          ("xlsx", "utf-8")]),
    layout=st.sampled_from(sorted(LAYOUTS)),
    states=st.sampled_from(sorted(STATES)),
    n_rows=st.integers(1, 40),
    final_newline=st.booleans(),
    ops=st.lists(OPS, max_size=40),
)
def test_every_row_once_whatever_the_files_do(tmp_path_factory, form, layout, states, n_rows,
                                              final_newline, ops) -> None:
    folder = tmp_path_factory.mktemp("exports")
    fmt, encoding = form
    rows = _rows(n_rows, layout, states)
    w = Writer(folder, fmt, encoding, layout, rows, final_newline)
    clock = VirtualClock()
    follower = ExportFollower(folder, f"cell*.{fmt}", clock, settle_s=SETTLE_S)
    got: list[np.ndarray] = []
    volts: list[np.ndarray] = []
    states_seen: list[np.ndarray] = []

    def poll(dt: float) -> None:
        if w.mid_line():  # the writer finishes a line within settle_s (the stated assumption)
            dt = max(0.0, min(dt, w.last_write + 0.9 * SETTLE_S - clock.now()))
        clock.sleep_until(clock.now() + dt)
        r = follower.poll()
        assert not r.reset
        got.append(r.records.record)
        volts.append(r.records.E_V)
        states_seen.append(r.records.state)

    w.grow(1)
    for op, arg in ops:
        if op == "poll":
            poll(arg)
        else:
            getattr(w, op)(arg)
            w.last_write = clock.now()
    w.finish()
    poll(1.0)
    poll(SETTLE_S + 1.0)  # a last line without line end is read once it has settled
    record = np.concatenate(got)
    np.testing.assert_array_equal(record, np.arange(1, n_rows + 1))  # each once, in order
    V_col = LAYOUTS[layout].header.index("Voltage/V")
    # .xlsx keeps 15 significant digits (openpyxl writes floats so); text keeps every digit
    np.testing.assert_allclose(np.concatenate(volts), [float(r[V_col]) for r in rows],
                               rtol=1e-14 if fmt == "xlsx" else 0.0, atol=0.0)
    if layout == "landdt":
        assert list(np.concatenate(states_seen)) == [r[-1] for r in rows]
