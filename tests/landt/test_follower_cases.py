"""The export cases the old follower got wrong, one by one, and the station file's LANDT section."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

from labctl.importers import read_landt
from labctl.protocol import ProtocolError
from labctl.stations.schema import load_station
from labctl_drivers.clock import VirtualClock
from labctl_drivers.landt.follower import ExportFollower
from labctl_drivers.landt.formats import decode_line, read_export

HEADER = ("Record,TestTime/s,StepTime/s,Current/mA,Capacity/mAh,Voltage/V,Cycle-Index,"
          "Step-Index,Step-State\r\n")


def _row(k: int, state: str = "R") -> str:
    return f"{k},{10.0 * k},{10.0 * k},0.1,{k / 1000},{0.5 + k / 1000},1,1,{state}\r\n"


def _follower(folder: Path) -> tuple[ExportFollower, VirtualClock]:
    clock = VirtualClock()
    return ExportFollower(folder, "cell*.csv", clock, settle_s=30.0), clock


def test_gbk_after_an_ascii_first_chunk_decodes(tmp_path: Path) -> None:
    p = tmp_path / "cell.csv"
    p.write_bytes((HEADER + "".join(_row(k) for k in range(1, 4))).encode("ascii"))
    f, _ = _follower(tmp_path)
    assert len(f.poll().records) == 3  # the first poll sees only ASCII
    with p.open("ab") as fh:
        fh.write("".join(_row(k, "恒流充电") for k in range(4, 7)).encode("gbk"))
    rec = f.poll().records
    assert list(rec.state) == ["恒流充电"] * 3
    assert decode_line("恒流充电".encode("gbk")) == "恒流充电"
    assert decode_line("恒流充电".encode()) == "恒流充电"


def test_replaced_by_a_new_file_with_the_same_header_loses_and_repeats_nothing(
        tmp_path: Path) -> None:
    p = tmp_path / "cell.csv"
    p.write_text(HEADER + "".join(_row(k) for k in range(1, 41)))
    f, _ = _follower(tmp_path)
    assert len(f.poll().records) == 40
    # a re-export: the same header, the same 40 rows and 40 more, put in place atomically
    tmp = tmp_path / "cell.tmp"
    tmp.write_text(HEADER + "".join(_row(k) for k in range(1, 81)))
    os.replace(tmp, p)
    got = f.poll()
    assert not got.reset
    np.testing.assert_array_equal(got.records.record, np.arange(41, 81))


def test_a_last_row_without_line_end_is_read_once_settled(tmp_path: Path) -> None:
    p = tmp_path / "cell.csv"
    p.write_text(HEADER + _row(1) + _row(2).rstrip("\r\n"))
    f, clock = _follower(tmp_path)
    assert len(f.poll().records) == 1  # row 2 may still be being written
    clock.sleep_until(31.0)
    np.testing.assert_array_equal(f.poll().records.record, [2.0])
    clock.sleep_until(100.0)
    assert len(f.poll().records) == 0


def test_a_different_test_in_the_same_file_is_a_reset(tmp_path: Path) -> None:
    p = tmp_path / "cell.csv"
    p.write_text(HEADER + "".join(_row(k) for k in range(1, 11)))
    f, _ = _follower(tmp_path)
    f.poll()
    p.write_text(HEADER + "".join(_row(k).replace(",0.5", ",3.5") for k in range(1, 4)))
    got = f.poll()
    assert got.reset and len(got.records) == 3


def test_xlsx_exports_are_read(tmp_path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.title = "Record"
    wb.active.append(HEADER.strip().split(","))
    for k in range(1, 6):
        wb.active.append([float(x) if x[0].isdigit() else x for x in _row(k).strip().split(",")])
    wb.save(tmp_path / "cell.xlsx")
    assert len(read_export(tmp_path / "cell.xlsx").records) == 5
    assert read_landt(tmp_path / "cell.xlsx").n_points == 5


def _station(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent(body))
    return p


def test_a_landt_station_is_read(tmp_path: Path) -> None:
    spec = load_station(_station(tmp_path, f"""\
        name: land
        landt:
          testers:
            - {{name: land-1, model: CT3002A, exports: '{tmp_path}'}}
          channels:
            - {{tester: land-1, channel: '1-3', export: 'cell*.csv', skip: [eis]}}
        """))
    assert spec.runs_on_landt and not spec.simulated
    assert spec.landt is not None and spec.landt.channels[0].skip[0].value == "eis"


@pytest.mark.parametrize(("channels", "line", "fragment"), [
    ("    - {tester: land-2, channel: '1', export: 'a*.csv'}\n", 6, "no LANDT tester named"),
    ("    - {tester: land-1, channel: '1', export: 'a*.csv'}\n"
     "    - {tester: land-1, channel: '1', export: 'b*.csv'}\n", 7, "listed twice"),
    ("    - {tester: land-1, channel: '1', export: 'a*.csv', skip: [cv]}\n", 6,
     "'eis' or 'pressure'"),
])
def test_landt_section_errors_are_located(tmp_path: Path, channels: str, line: int,
                                          fragment: str) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("name: land\nlandt:\n  testers:\n    - {name: land-1, exports: /tmp}\n"
                 "  channels:\n" + channels)
    with pytest.raises(ProtocolError) as ei:
        load_station(p)
    assert any(e.line == line and fragment in str(e) for e in ei.value.errors), \
        [str(e) for e in ei.value.errors]
