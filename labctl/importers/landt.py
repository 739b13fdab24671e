"""LANDT / LANHE (Wuhan LAND) record exports into `ImportedRun`.

LANDT has no public control or streaming protocol; data leaves the tester through the LANDdt
software's exports (landt_pressure.md §0, §1.4). Those exports are user-configurable and differ
between software versions, so this reader is header-driven and never hard-codes units:

* The header row is found by content (a voltage column plus a time or record column), anything
  before it is kept as key/value metadata (test name, channel, ...).
* Column names are parsed as ``Name/unit`` (LANDdt: ``Current/mA``, ``TestTime/h``), ``Name(unit)``
  (``Test_Time(s)``) or ``Name_unit`` (``Current_mA``); units are converted to s, V, mA, mAh.
* Times without a unit may be durations ``D HH:MM:SS.mmm`` / ``HH:MM:SS``.
* ``-`` (an unconnected auxiliary channel) and empty cells become NaN, never 0.
* Text forms: comma-, tab- or semicolon-separated (sniffed from the header row); decimal commas
  are accepted when the separator is not a comma. ``.xlsx`` is read only if openpyxl is
  installed; otherwise the error says to export CSV from LANDdt.

Capacity: LAND's ``Capacity`` counter is charge since the step began, usually as a *magnitude*
for both charge and discharge. ``Q_mAh`` is signed like the current (the labctl convention), so a
non-negative counter takes the sign of the step's current; a counter that already has negative
values is kept as is. Without a capacity column, Q is integrated from the current.

Steps: a new step starts where the step index, the cycle index or the step state changes; with
none of those, where the sign of the current changes. The step kind comes from the state
vocabulary (R / RateC / RateD / CC_Chg / CC_DChg / CV_Chg ... and LAND's PM_* mode codes), else
from the current (zero → rest, constant → galvanostatic).

`LandtRecordParser` is incremental (feed text as the export grows) so `labctl_drivers.landt` can follow
a live auto-export without re-parsing the whole file each poll.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labctl.importers.model import (
    ImportedRun,
    ImportedStep,
    ImportFormatError,
    StepKind,
    cumulative_charge_mAh,
)

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

_REST_STATES = {"r", "rest", "pmrest", "112", "0x70"}
_GALV_STATES = {
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
}
_POT_STATES = {"cvchg", "cvdchg", "cvc", "cvd", "cvcharge", "cvdischarge", "4", "5", "0x04", "0x05"}


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name).lower()


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


class LandtRecordParser:
    """Incremental parser for one LAND record export (text lines or spreadsheet rows)."""

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
            if role in _UNIT_SCALE:
                u = (unit or "").strip().lower()
                if not u:
                    if role == "time":
                        self._time_is_duration = True
                    u = _DEFAULT_UNIT[role]
                if u not in _UNIT_SCALE[role]:
                    raise ImportFormatError(
                        f"{self.source_path}: column {f!r}: unknown unit {unit!r} "
                        f"(known: {sorted(_UNIT_SCALE[role])})"
                    )
                scale = _UNIT_SCALE[role][u]
            self._cols[role] = (j, scale)
        if "time" not in self._cols and "systime" not in self._cols:
            raise ImportFormatError(
                f"{self.source_path}: no TestTime or SysTime column in {self.header}"
            )
        for role in (*_NUMERIC_ROLES, "state", "systime"):
            self._data[role] = []

    # ---- rows --------------------------------------------------------------------------------
    def _num(self, text: str, role: str) -> float:
        s = text.strip()
        if not s or s == "-":
            return float("nan")
        if role == "time" and (self._time_is_duration or ":" in s):
            return _parse_duration(s)
        try:
            return float(s)
        except ValueError:
            if self.delimiter != ",":
                try:
                    return float(s.replace(",", "."))
                except ValueError:
                    pass
            raise ImportFormatError(
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
                self._data[role].append(v * scale if role in _UNIT_SCALE else v)
            for role in ("state", "systime"):
                spec = self._cols.get(role)
                self._data[role].append(
                    fields[spec[0]].strip() if spec and spec[0] < len(fields) else ""
                )
        return len(rows)

    # ---- output ------------------------------------------------------------------------------
    def columns(self, start: int = 0) -> dict[str, np.ndarray]:
        """Per-row columns from row `start` on: t_s, step_time_s, E_V, I_mA, capacity_mAh (raw
        counter), cycle, step, record (float, NaN if absent), state (str)."""
        d = self._data
        if not d:
            return {}
        t = np.asarray(d["time"][start:], dtype=float)
        if "time" not in self._cols:
            sys_t = np.array([_parse_systime(s) for s in d["systime"]], dtype=float)
            t = (sys_t - sys_t[0])[start:] if sys_t.size else t
        return {
            "t_s": t,
            "step_time_s": np.asarray(d["step_time"][start:], dtype=float),
            "E_V": np.asarray(d["voltage"][start:], dtype=float),
            "I_mA": np.asarray(d["current"][start:], dtype=float),
            "capacity_mAh": np.asarray(d["capacity"][start:], dtype=float),
            "cycle": np.asarray(d["cycle"][start:], dtype=float),
            "step": np.asarray(d["step"][start:], dtype=float),
            "record": np.asarray(d["record"][start:], dtype=float),
            "state": np.asarray(d["state"][start:], dtype=object),
            "systime": np.asarray(d["systime"][start:], dtype=object),
        }

    def to_run(self) -> ImportedRun:
        if self.header is None:
            raise ImportFormatError(
                f"{self.source_path}: no LAND record header found (need a Voltage column and a "
                "TestTime/Record column)"
            )
        cols = self.columns()
        steps = build_steps(cols)
        meta: dict[str, Any] = {
            "format": "land-export-text" if self.delimiter else "land-export-xlsx",
            "header": self.header,
            "preamble": dict(self.preamble),
            "unplaced_columns": list(self.unplaced_columns),
        }
        if len(cols["systime"]) and cols["systime"][0]:
            meta["first_systime"] = cols["systime"][0]
        techniques = sorted({s.label for s in steps if s.label})
        return ImportedRun(self.source_path, "LANDT", techniques, steps, meta)


def _state_kind(state: str) -> StepKind | None:
    s = _norm(state)
    if not s:
        return None
    if s in _REST_STATES:
        return "rest"
    if s in _GALV_STATES:
        return "galvanostatic"
    if s in _POT_STATES:
        return "potentiostatic"
    return None


def _current_kind(i_mA: np.ndarray) -> StepKind:
    finite = i_mA[np.isfinite(i_mA)]
    if finite.size == 0:
        return "unknown"
    peak = float(np.max(np.abs(finite)))
    if peak < 1e-9:
        return "rest"
    if float(np.ptp(finite)) <= 0.02 * peak:
        return "galvanostatic"
    return "unknown"


def build_steps(cols: dict[str, np.ndarray]) -> list[ImportedStep]:
    """Split per-row LAND columns into `ImportedStep`s (see module docstring for the rules)."""
    n = len(cols.get("t_s", []))
    if n == 0:
        return []
    keys: list[np.ndarray] = []
    for k in ("step", "cycle"):
        if np.isfinite(cols[k]).any():
            keys.append(np.nan_to_num(cols[k], nan=-1.0))
    if any(s for s in cols["state"]):
        keys.append(cols["state"])
    if not keys:
        keys.append(np.sign(np.nan_to_num(cols["I_mA"])))
    change = np.zeros(n, dtype=bool)
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    starts = np.concatenate([[0], np.flatnonzero(change)])
    stops = np.concatenate([starts[1:], [n]])
    steps: list[ImportedStep] = []
    for idx, (a, b) in enumerate(zip(starts.tolist(), stops.tolist(), strict=True)):
        sl = slice(a, b)
        t, i_mA = cols["t_s"][sl], cols["I_mA"][sl]
        state = str(cols["state"][a])
        kind = _state_kind(state) or _current_kind(i_mA)
        cap = cols["capacity_mAh"][sl]
        if np.isfinite(cap).any():
            if np.nanmin(cap) >= 0:
                fin = i_mA[np.isfinite(i_mA)]
                sign = float(np.sign(np.median(fin))) if fin.size else 1.0
                q = cap * (sign if sign != 0 else 1.0)
            else:
                q = cap.copy()
        else:
            q = cumulative_charge_mAh(t, i_mA)
        pts = {"t_s": t.copy(), "E_V": cols["E_V"][sl].copy(), "I_mA": i_mA.copy(), "Q_mAh": q}
        if np.isfinite(cols["cycle"][sl]).all():
            pts["cycle"] = cols["cycle"][sl].astype(np.int64)
        label = state
        if not label and np.isfinite(cols["step"][a]):
            label = f"step {int(cols['step'][a])}"
        steps.append(ImportedStep(idx, kind, pts, None, np.arange(a, b), label))
    return steps


def _read_xlsx(path: Path) -> LandtRecordParser:
    try:
        import openpyxl
    except ImportError:
        raise ImportFormatError(
            f"{path}: reading LANDdt .xlsx needs the optional package openpyxl, which is not "
            "installed. Export the record table from LANDdt as CSV/TXT instead "
            "(or install openpyxl)."
        ) from None
    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    names = wb.sheetnames
    record = [n for n in names if "record" in n.lower() or "defaultgroup" in n.lower()] or names[:1]
    parser = LandtRecordParser(path)
    for name in record:  # continuation sheets carry no header: they just extend the table
        parser.feed_rows(wb[name].iter_rows(values_only=True))
    wb.close()
    return parser


def read_landt(path: str | Path) -> ImportedRun:
    """Read one LANDdt record export (.csv/.txt/.tsv; .xlsx if openpyxl is installed)."""
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return _read_xlsx(path).to_run()
    if path.suffix.lower() in (".xls", ".cex"):
        raise ImportFormatError(
            f"{path}: {path.suffix} is not supported; export the record table from LANDdt as CSV"
        )
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "gb18030", "latin-1"):  # LANDdt on Chinese Windows writes GBK
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    parser = LandtRecordParser(path)
    parser.feed_text(text)
    parser.finish()
    return parser.to_run()
