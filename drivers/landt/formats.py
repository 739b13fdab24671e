"""What a LANDT (LANHE / Wuhan LAND) record export looks like, and how to read it row by row.

LAND testers hand data out only through the LANDdt software's exports of the record table; their
columns, units, separators and encodings are user-configurable and differ between software
versions. This module is the one place that knows those forms, so both the live follower
(`labctl_drivers.landt.follower`) and labctl's offline importer read an export the same way, and
the knowledge sits in the drivers layer, below everything that uses it. It is header-driven and
never hard-codes units:

* The header row is found by content (a voltage column plus a time or record column); anything
  before it is kept as key/value preamble (test name, channel, ...).
* Column names are parsed as ``Name/unit`` (LANDdt: ``Current/mA``, ``TestTime/h``), ``Name(unit)``
  (``Test_Time(s)``) or ``Name_unit`` (``Current_mA``); units are converted to s, V, mA, mAh.
* Times without a unit may be durations ``D HH:MM:SS.mmm`` / ``HH:MM:SS``.
* ``-`` (an unconnected auxiliary channel) and empty cells become NaN, never 0.
* Text forms: comma-, tab- or semicolon-separated (sniffed from the header row); decimal commas
  are accepted when the separator is not a comma. ``.xlsx`` is read only if openpyxl is
  installed; otherwise the error says to export CSV from LANDdt.
* Encodings: UTF-8 (with or without BOM) or, from a Chinese-locale LANDdt, GB18030 (the superset
  of GBK; Python's codec list: https://docs.python.org/3/library/codecs.html#standard-encodings).
  Each *complete line* is decoded on its own (`decode_line`: strict UTF-8, else strict GB18030,
  else Latin-1), so the choice never rests on a first chunk that happened to be ASCII: GBK text
  arriving later in a growing file still decodes correctly. A line is cut only at ``\n``, and a
  ``\n`` byte never occurs inside a UTF-8 or GB18030 multi-byte character, so splitting bytes
  at ``\n`` before decoding is safe in both.

Parsing yields `LandtRecords`: typed per-row columns in LAND's own current and capacity units
(mA, mAh) so every value is exactly the number written in the file. What the rows *mean* for a
battery test (step boundaries, the sign of the capacity counter) is the importer's business;
the one piece of meaning kept here is LAND's step-state vocabulary (`step_mode`), because those
codes are part of the export format.
"""

from __future__ import annotations

import codecs
import datetime as _dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from labctl_drivers.errors import GarbledReply


class LandtFormatError(GarbledReply, ValueError):
    """The file is not a LAND record table this reader understands; the message says why.

    A `GarbledReply` because an export is the tester's only way of answering; a `ValueError` so
    offline readers can treat it as bad input like any other malformed file.
    """


_UNIT_SCALE: dict[str, dict[str, float]] = {
    "time": {"s": 1.0, "sec": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0, "hr": 3600.0},
    "voltage": {"v": 1.0, "mv": 1e-3},
    "current": {"a": 1e3, "ma": 1.0, "ua": 1e-3, "µa": 1e-3, "μa": 1e-3, "na": 1e-6},
    "capacity": {"ah": 1e3, "mah": 1.0, "uah": 1e-3, "µah": 1e-3, "μah": 1e-3},
}
_DEFAULT_UNIT = {"time": "s", "voltage": "v", "current": "ma", "capacity": "mah"}

# normalised column name (lowercase, no spaces/_/-) -> role
_ROLES: dict[str, str] = {
    "testtime": "time",
    "totaltime": "time",
    "steptime": "step_time",
    "voltage": "voltage",
    "current": "current",
    "capacity": "capacity",
    "cycleindex": "cycle",
    "cycle": "cycle",
    "cycleno": "cycle",
    "stepindex": "step",
    "step": "step",
    "stepno": "step",
    "stepstate": "state",
    "stepstatus": "state",
    "state": "state",
    "mode": "state",
    "systime": "systime",
    "datetime": "systime",
    "record": "record",
    "index": "record",
    "datapoint": "record",
}
_NUMERIC_ROLES = ("time", "step_time", "voltage", "current", "capacity", "cycle", "step", "record")

# LAND step states as LANDdt names them (R, RateC, CC_Chg, ...) and as its numeric mode codes.
_REST_STATES = {"r", "rest", "pmrest", "112", "0x70", "搁置", "静置"}
_CC_STATES = {
    "ratec",
    "rated",
    "ccchg",
    "ccdchg",
    "ccc",
    "ccd",
    "ccchar",
    "ccdis",
    "cccharge",
    "ccdischarge",
    "charge",
    "discharge",
    "c",
    "d",
    "2",
    "3",
    "117",
    "118",
    "0x02",
    "0x03",
    "0x75",
    "0x76",
    "恒流充电",
    "恒流放电",
}
_CV_STATES = {"cvchg", "cvdchg", "cvc", "cvd", "cvcharge", "cvdischarge", "4", "5", "0x04", "0x05"}

StepMode = Literal["rest", "constant_current", "constant_voltage"]


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name).lower()


def step_mode(state: str) -> StepMode | None:
    """The control mode a LAND step-state label or code stands for (None if not recognised)."""
    s = _norm(state)
    if not s:
        return None
    if s in _REST_STATES:
        return "rest"
    if s in _CC_STATES:
        return "constant_current"
    if s in _CV_STATES:
        return "constant_voltage"
    return None


def split_name_unit(header: str) -> tuple[str, str | None]:
    """Split a header: `Current/mA`, `Test_Time(s)`, `Current_mA` → (name, unit)."""
    h = header.strip()
    m = re.match(r"^(.*?)\s*\(([^()]*)\)\s*$", h)
    if m:
        return m.group(1), m.group(2)
    if "/" in h:
        name, _, unit = h.partition("/")
        return name.strip(), unit.strip()
    if "_" in h:
        name, _, unit = h.rpartition("_")
        if any(unit.lower() in table for table in _UNIT_SCALE.values()):
            return name, unit
    return h, None


def _parse_duration(text: str) -> float:
    """`1 02:03:04.500` or `02:03:04.5` or `03:04` → seconds."""
    days = 0.0
    if " " in text.strip():
        d, _, text = text.strip().partition(" ")
        days = float(d)
    parts = [float(p) for p in text.split(":")]
    secs = 0.0
    for p in parts:
        secs = secs * 60.0 + p
    return days * 86400.0 + secs


def _parse_systime(text: str) -> float:
    """Wall-clock stamp as naive seconds (only differences are used; tester zone unknown)."""
    t = text.strip().replace("/", "-")
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            d = _dt.datetime.strptime(t, fmt)
            return (d - _dt.datetime(1970, 1, 1)).total_seconds()
        except ValueError:
            continue
    return float("nan")


def _floats(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=float)


@dataclass(frozen=True)
class LandtRecords:
    """Rows of a LAND record table, one array per column (numbers are NaN where absent).

    Current and capacity stay in LAND's own mA / mAh, so each value is the number in the file;
    `capacity_mAh` is LAND's raw step counter (usually a magnitude for charge and discharge).
    `state` and `systime` hold the cells' text.
    """

    t_s: np.ndarray
    step_time_s: np.ndarray
    E_V: np.ndarray
    I_mA: np.ndarray
    capacity_mAh: np.ndarray
    cycle: np.ndarray
    step: np.ndarray
    record: np.ndarray
    state: np.ndarray
    systime: np.ndarray

    def __len__(self) -> int:
        return len(self.t_s)

    @classmethod
    def empty(cls) -> LandtRecords:
        """No rows (a file whose header has not been written yet)."""
        f = np.empty(0)
        o = np.empty(0, dtype=object)
        return cls(f, f, f, f, f, f, f, f, o, o)


@dataclass(frozen=True)
class LandtExport:
    """One export as read so far: where it came from, its header and preamble, and its rows."""

    source_path: Path
    delimiter: str | None  # "" for spreadsheet rows, else the text separator
    header: tuple[str, ...]
    preamble: dict[str, str]
    unplaced_columns: tuple[str, ...]  # columns this reader has no role for (AuxVolt, Energy...)
    records: LandtRecords


class LandtRecordParser:
    """Incremental parser for one LAND record export (text lines or spreadsheet rows).

    Incremental because a live auto-export grows while the test runs: the follower feeds only the
    bytes added since its last poll instead of re-parsing the whole file each time.
    """

    def __init__(self, source_path: str | Path = "") -> None:
        self.source_path = Path(source_path)
        self.preamble: dict[str, str] = {}
        self.header: list[str] | None = None
        self.delimiter: str | None = None
        self.unplaced_columns: list[str] = []
        self._cols: dict[str, tuple[int, float]] = {}  # role -> (index, scale)
        self._time_is_duration = False
        self._data: dict[str, list[Any]] = {}
        self._partial = ""

    # ---- feeding -------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return len(self._data.get("voltage", []))

    def feed_text(self, chunk: str) -> int:
        """Add text (any split); only complete lines are parsed. Returns rows added."""
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()  # incomplete last line waits for the next chunk
        return self.feed_lines(lines)

    def finish(self) -> int:
        """Parse a trailing line without newline (end of a complete file)."""
        rest, self._partial = self._partial, ""
        return self.feed_lines([rest]) if rest.strip() else 0

    def feed_lines(self, lines: Iterable[str]) -> int:
        """Complete text lines; the first that looks like a header fixes the separator."""
        rows: list[list[str]] = []
        for ln in lines:
            ln = ln.rstrip("\r")
            if not ln.strip():
                continue
            if self.delimiter is None:
                delim = "\t" if "\t" in ln else ("," if "," in ln else (";" if ";" in ln else None))
                fields = ln.split(delim) if delim else [ln]
                if self._looks_like_header(fields):
                    self.delimiter = delim
                    self._set_header(fields)
                else:
                    self._add_preamble(ln)
                continue
            rows.append(ln.split(self.delimiter))
        return self._add_rows(rows)

    def feed_rows(self, rows: Iterable[Sequence[Any]]) -> int:
        """Spreadsheet rows (cells of any type); header detection as for text."""
        data: list[list[str]] = []
        for row in rows:
            cells = ["" if c is None else str(c) for c in row]
            if not any(c.strip() for c in cells):
                continue
            if self.header is None:
                if self._looks_like_header(cells):
                    self.delimiter = ""
                    self._set_header(cells)
                else:
                    self._add_preamble(" ".join(c for c in cells if c.strip()))
                continue
            data.append(cells)
        return self._add_rows(data)

    # ---- header ------------------------------------------------------------------------------
    @staticmethod
    def _looks_like_header(fields: Sequence[str]) -> bool:
        roles = {_ROLES.get(_norm(split_name_unit(f)[0])) for f in fields if f.strip()}
        return "voltage" in roles and bool(roles & {"time", "record", "systime"})

    def _add_preamble(self, line: str) -> None:
        # the earliest separator wins, so "Start time,2026-01-01 09:00" keeps its clock time
        found = [(line.index(sep), sep) for sep in (":", "=", ",", "\t", ";") if sep in line]
        if found:
            k, _, v = line.partition(min(found)[1])
            self.preamble.setdefault(k.strip(), v.strip().strip(",;\t"))

    def _set_header(self, fields: Sequence[str]) -> None:
        self.header = [f.strip() for f in fields]
        for j, f in enumerate(self.header):
            if not f:
                continue  # LANDdt's blank spacer column
            name, unit = split_name_unit(f)
            role = _ROLES.get(_norm(name))
            if role is None or role in self._cols:
                self.unplaced_columns.append(f)
                continue
            scale = 1.0
            table = "time" if role == "step_time" else role
            if table in _UNIT_SCALE:
                u = (unit or "").strip().lower()
                if not u:
                    if role == "time":
                        self._time_is_duration = True
                    u = _DEFAULT_UNIT[table]
                if u not in _UNIT_SCALE[table]:
                    raise LandtFormatError(
                        f"{self.source_path}: column {f!r}: unknown unit {unit!r} "
                        f"(known: {sorted(_UNIT_SCALE[table])})"
                    )
                scale = _UNIT_SCALE[table][u]
            self._cols[role] = (j, scale)
        if "time" not in self._cols and "systime" not in self._cols:
            raise LandtFormatError(
                f"{self.source_path}: no TestTime or SysTime column in {self.header}"
            )
        for role in (*_NUMERIC_ROLES, "state", "systime"):
            self._data[role] = []

    # ---- rows --------------------------------------------------------------------------------
    def _num(self, text: str, role: str) -> float:
        s = text.strip()
        if not s or s == "-":
            return float("nan")
        if role in ("time", "step_time") and (self._time_is_duration or ":" in s):
            return _parse_duration(s)
        try:
            return float(s)
        except ValueError:
            if self.delimiter != ",":
                try:
                    return float(s.replace(",", "."))
                except ValueError:
                    pass
            raise LandtFormatError(
                f"{self.source_path}: {role} value {text!r} is not a number"
            ) from None

    def _add_rows(self, rows: list[list[str]]) -> int:
        if not rows:
            return 0
        if self.header is None:
            return 0
        for fields in rows:
            for role in _NUMERIC_ROLES:
                spec = self._cols.get(role)
                if spec is None:
                    self._data[role].append(np.nan)
                    continue
                j, scale = spec
                v = self._num(fields[j], role) if j < len(fields) else float("nan")
                self._data[role].append(v * scale)
            for role in ("state", "systime"):
                spec = self._cols.get(role)
                self._data[role].append(
                    fields[spec[0]].strip() if spec and spec[0] < len(fields) else ""
                )
        return len(rows)

    # ---- output ------------------------------------------------------------------------------
    def records(self, start: int = 0) -> LandtRecords:
        """The rows from row `start` on (no rows before the header has been seen).

        Without a TestTime column, time is SysTime relative to the *first* row of the file, not
        of the slice, so successive slices of a growing file share one time axis.
        """
        d = self._data
        if not d:
            return LandtRecords.empty()
        t = _floats(d["time"][start:])
        if "time" not in self._cols:
            sys_t = np.array([_parse_systime(s) for s in d["systime"]], dtype=float)
            t = (sys_t - sys_t[0])[start:] if sys_t.size else t
        return LandtRecords(
            t_s=t,
            step_time_s=_floats(d["step_time"][start:]),
            E_V=_floats(d["voltage"][start:]),
            I_mA=_floats(d["current"][start:]),
            capacity_mAh=_floats(d["capacity"][start:]),
            cycle=_floats(d["cycle"][start:]),
            step=_floats(d["step"][start:]),
            record=_floats(d["record"][start:]),
            state=np.asarray(d["state"][start:], dtype=object),
            systime=np.asarray(d["systime"][start:], dtype=object),
        )

    def export(self) -> LandtExport:
        """Everything read so far; a file without a record header is not a LAND export."""
        if self.header is None:
            raise LandtFormatError(
                f"{self.source_path}: no LAND record header found (need a Voltage column and a "
                "TestTime/Record column)"
            )
        return LandtExport(
            source_path=self.source_path,
            delimiter=self.delimiter,
            header=tuple(self.header),
            preamble=dict(self.preamble),
            unplaced_columns=tuple(self.unplaced_columns),
            records=self.records(),
        )


# ---- encodings --------------------------------------------------------------------------------
# LANDdt on a Chinese-locale Windows writes GBK; latin-1 last because it accepts any bytes.
_LINE_ENCODINGS = ("utf-8", "gb18030")


def decode_line(raw: bytes) -> str:
    """One complete line of an export: strict UTF-8, else strict GB18030, else Latin-1.

    Strict decoders fail on text of the other encoding (GBK's lead bytes 0x81-0xFE followed by
    ASCII-range trail bytes are invalid UTF-8; UTF-8's continuation bytes are rarely a valid
    GB18030 sequence), so a line is read in the encoding it was written in even when lines of
    different encodings share a file (a re-export appended after a locale change).
    """
    for enc in _LINE_ENCODINGS:
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def decode_export(raw: bytes) -> str:
    """A complete export's text, decoded line by line (`decode_line`); a BOM is dropped."""
    raw = raw.removeprefix(codecs.BOM_UTF8)
    return "\n".join(decode_line(line) for line in raw.split(b"\n"))


# ---- whole files ------------------------------------------------------------------------------
def _read_xlsx(path: Path) -> LandtRecordParser:
    try:
        import openpyxl
    except ImportError:
        raise LandtFormatError(
            f"{path}: reading LANDdt .xlsx needs the optional package openpyxl, which is not "
            "installed. Export the record table from LANDdt as CSV/TXT instead "
            "(or install openpyxl)."
        ) from None
    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        names = wb.sheetnames
        record = [n for n in names
                  if "record" in n.lower() or "defaultgroup" in n.lower()] or names[:1]
        parser = LandtRecordParser(path)
        for name in record:  # continuation sheets carry no header: they just extend the table
            parser.feed_rows(wb[name].iter_rows(values_only=True))
    finally:
        wb.close()
    return parser


def read_xlsx_records(path: str | Path) -> LandtRecordParser:
    """Every record row of a LANDdt workbook so far (the live follower re-reads a workbook
    whole: an .xlsx is a zip archive and cannot be read from an offset)."""
    return _read_xlsx(Path(path))


def read_export(path: str | Path) -> LandtExport:
    """Read one complete LANDdt record export (.csv/.txt/.tsv; .xlsx if openpyxl is installed)."""
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return _read_xlsx(path).export()
    if path.suffix.lower() in (".xls", ".cex"):
        raise LandtFormatError(
            f"{path}: {path.suffix} is not supported; export the record table from LANDdt as CSV"
        )
    parser = LandtRecordParser(path)
    parser.feed_text(decode_export(path.read_bytes()))
    parser.finish()
    return parser.export()
