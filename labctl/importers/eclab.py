"""BioLogic EC-Lab files (`.mpr` binary, `.mpt` text export) into `ImportedRun`.

`.mpr` is read with galvani's `BioLogic.MPRfile` (a maintained GPL-3 reader; we do not re-derive
the binary layout). `.mpt` is EC-Lab's own text export, simple enough to read here: a header whose
second line says how many header lines there are (`Nb header lines : 61`), then a tab-separated
table whose first row is the column names. It is written in the Windows code page (cp1252 /
latin-1: `Â°C`, `µ`) and, on a French/German Windows, with decimal commas.

Both routes meet in `_build_run`, which works on EC-Lab's own column names (`time/s`, `Ewe/V`,
`<I>/mA`, `(Q-Qo)/mA.h`, `freq/Hz`, `-Im(Z)/Ohm`, ...) so one mapping serves both.

Step splitting: a new step starts wherever the sequence number `Ns` or the control `mode` changes
(EC-Lab's loops make `Ns` values repeat, so steps are *contiguous runs*, not unique Ns values).
EC-Lab mode codes: 1 = galvanostatic (CC), 2 = potentiostatic (CV hold), 3 = rest (open
circuit); checked against the sample files (GCPL rest segment = 3, its CC segments = 1; the
Modulo Bat constant-potential file = 2).

Current: some techniques (GCPL in the sample) do not record I at all, only the charge increment
`dq` per point. Then I is derived as dq/dt (mA·h over the time since the previous point → mA) and
`metadata["I_mA_source"]` says so; it is the measured charge, not the set-point.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from labctl.importers.model import (
    ImportedRun,
    ImportedStep,
    ImportFormatError,
    StepKind,
    cumulative_charge_mAh,
    parse_instrument_time,
)

# EC-Lab column name -> scale factor to labctl's unit. First match wins, so order = preference.
_TIME = {"time/s": 1.0, "time/h": 3600.0}
_VOLT = {"Ewe/V": 1.0, "<Ewe>/V": 1.0, "Ecell/V": 1.0, "<Ecell>/V": 1.0, "Ewe/mV": 1e-3}
_CURR = {
    "I/mA": 1.0,
    "<I>/mA": 1.0,
    "I/A": 1e3,
    "<I>/A": 1e3,
    "I/µA": 1e-3,
    "<I>/µA": 1e-3,
    "I/uA": 1e-3,
    "<I>/uA": 1e-3,
}
_CHARGE = {"(Q-Qo)/mA.h": 1.0, "(Q-Qo)/A.h": 1e3, "(Q-Qo)/C": 1.0 / 3.6, "(Q-Qo)/µA.h": 1e-3}
_DQ = {"dq/mA.h": 1.0, "dQ/mA.h": 1.0, "dq/A.h": 1e3, "dQ/C": 1.0 / 3.6, "dq/µA.h": 1e-3}
_EIS = {
    "frequency_Hz": {"freq/Hz": 1.0},
    "Z_re_ohm": {"Re(Z)/Ohm": 1.0},
    "minus_Z_im_ohm": {"-Im(Z)/Ohm": 1.0},
    "Zmod_ohm": {"|Z|/Ohm": 1.0},
    "phase_deg": {"Phase(Z)/deg": 1.0},
}

_MODE_KIND: dict[int, StepKind] = {1: "galvanostatic", 2: "potentiostatic", 3: "rest"}

# First byte of the "VMP Set" module. Only codes seen in the sample files (whose names state the
# technique) are named; anything else is reported by number rather than guessed.
_MPR_TECHNIQUE_IDS = {4: "GCPL", 11: "OCV", 127: "Modulo Bat"}


def _pick(
    cols: Mapping[str, np.ndarray], table: Mapping[str, float]
) -> tuple[str, np.ndarray] | None:
    for name, scale in table.items():
        if name in cols:
            return name, np.asarray(cols[name], dtype=float) * scale
    return None


def _technique_kind(names: list[str]) -> StepKind | None:
    """Kind implied by the technique alone (for files without a mode column)."""
    joined = " ".join(names).lower()
    if "impedance" in joined or re.search(r"\b[pg]eis\b", joined):
        return "eis"
    if "cyclic voltammetry" in joined or re.search(r"\bcv\b", joined):
        return "cv"
    if "open circuit" in joined or re.search(r"\bocv\b", joined):
        return "rest"
    return None


def _segments(keys: list[np.ndarray], n: int) -> list[tuple[int, int]]:
    """[start, stop) of contiguous runs over which every key column is constant."""
    if n == 0:
        return []
    change = np.zeros(n, dtype=bool)
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    starts = np.concatenate([[0], np.flatnonzero(change)])
    stops = np.concatenate([starts[1:], [n]])
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _build_run(
    cols: Mapping[str, np.ndarray],
    mode: np.ndarray | None,
    technique_names: list[str],
    path: Path,
    metadata: dict[str, Any],
) -> ImportedRun:
    """Map EC-Lab columns to the neutral model and split into steps."""
    n = len(next(iter(cols.values()))) if cols else 0
    nan = np.full(n, np.nan)
    t = _pick(cols, _TIME)
    if t is None:
        raise ImportFormatError(f"{path}: no time column (expected one of {list(_TIME)})")
    t_s = t[1]
    e = _pick(cols, _VOLT)
    E_V = e[1] if e else nan
    metadata["E_V_source"] = e[0] if e else None

    i = _pick(cols, _CURR)
    dq = _pick(cols, _DQ)
    if i is not None:
        I_mA = i[1]
        metadata["I_mA_source"] = i[0]
    elif dq is not None:
        dt = np.diff(t_s, prepend=np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            I_mA = np.where(dt > 0, dq[1] * 3600.0 / dt, np.nan)
        if mode is not None:
            I_mA = np.where(mode == 3, 0.0, I_mA)  # open circuit: no current by definition
        metadata["I_mA_source"] = f"derived: {dq[0]} / dt"
    else:
        I_mA = nan
        metadata["I_mA_source"] = None
    if mode is not None:
        # open circuit (mode 3, e.g. the OCV technique): no current flows by definition, even
        # when the technique does not record one
        I_mA = np.where((mode == 3) & np.isnan(I_mA), 0.0, I_mA)

    q = _pick(cols, _CHARGE)
    cycle: np.ndarray | None = None
    if "cycle number" in cols:
        cycle = np.asarray(cols["cycle number"]).astype(np.int64)
        metadata["cycle_source"] = "cycle number"
    elif "half cycle" in cols:
        cycle = np.asarray(cols["half cycle"]).astype(np.int64) // 2
        metadata["cycle_source"] = "half cycle // 2"

    eis_cols = {k: _pick(cols, tbl) for k, tbl in _EIS.items()}
    has_eis = eis_cols["frequency_Hz"] is not None

    keys: list[np.ndarray] = []
    if "Ns" in cols:
        keys.append(np.asarray(cols["Ns"]))
    if mode is not None:
        keys.append(np.asarray(mode))
    tech_kind = _technique_kind(technique_names)

    steps: list[ImportedStep] = []
    for idx, (a, b) in enumerate(_segments(keys, n)):
        sl = slice(a, b)
        if has_eis:
            kind: StepKind = "eis"
        elif mode is not None and int(mode[a]) in _MODE_KIND:
            kind = _MODE_KIND[int(mode[a])]
            if kind == "potentiostatic" and tech_kind == "cv":
                kind = "cv"
        else:
            kind = tech_kind or "unknown"
        if q is not None:
            Q = q[1][sl] - q[1][a]
        elif dq is not None:
            Q = np.cumsum(dq[1][sl]) - dq[1][a]
        else:
            Q = cumulative_charge_mAh(t_s[sl], I_mA[sl])
        pts = {"t_s": t_s[sl].copy(), "E_V": E_V[sl].copy(), "I_mA": I_mA[sl].copy(), "Q_mAh": Q}
        if cycle is not None:
            pts["cycle"] = cycle[sl].copy()
        eis = None
        if has_eis:
            eis = {}
            for k, v in eis_cols.items():
                if v is None:
                    continue
                if k == "minus_Z_im_ohm":
                    eis["Z_im_ohm"] = -v[1][sl]  # EC-Lab stores -Im(Z); we store Im(Z)
                else:
                    eis[k] = v[1][sl].copy()
            eis["E_V"] = E_V[sl].copy()
            eis["I_mA"] = I_mA[sl].copy()
        label = (
            f"Ns {int(cols['Ns'][a])}"
            if "Ns" in cols
            else (technique_names[0] if technique_names else "")
        )
        steps.append(ImportedStep(idx, kind, pts, eis, np.arange(a, b), label))
    return ImportedRun(path, "BioLogic EC-Lab", technique_names, steps, metadata)


def read_mpr(path: str | Path) -> ImportedRun:
    """Read an EC-Lab `.mpr` through galvani and map it to the neutral model."""
    # imported here so the .mpt reader works without galvani installed
    from galvani import BioLogic

    path = Path(path)
    try:
        mpr = BioLogic.MPRfile(str(path))
    except Exception as exc:  # galvani raises plain ValueError/NotImplementedError on odd files
        raise ImportFormatError(f"{path}: galvani could not read this .mpr: {exc}") from exc
    data = mpr.data
    cols = {name: data[name] for name in data.dtype.names if name != "flags"}
    mode = None
    if "mode" in getattr(mpr, "flags_dict", {}):
        mode = np.asarray(mpr.get_flag("mode")).astype(np.int64)
    techniques: list[str] = []
    for module in mpr.modules:
        if module["shortname"].strip() == b"VMP Set" and module["data"]:
            tid = module["data"][0]
            techniques.append(_MPR_TECHNIQUE_IDS.get(tid, f"EC-Lab technique #{tid}"))
    meta: dict[str, Any] = {
        "format": "mpr",
        "columns": list(cols),
        "start_date": str(getattr(mpr, "startdate", "")),
        "timestamp": str(getattr(mpr, "timestamp", "")) or None,
        "mpr_version": getattr(mpr, "version", None),
    }
    run = _build_run(cols, mode, techniques, path, meta)
    stamp = getattr(mpr, "timestamp", None)  # galvani: the log module's acquisition start
    run.acquired_at = stamp if isinstance(stamp, dt.datetime) else None
    return run


def _to_float(field: str) -> float:
    field = field.strip()
    if not field:
        return float("nan")
    try:
        return float(field)
    except ValueError:
        return float(field.replace(",", "."))  # decimal comma (French/German Windows)


def read_mpt_table(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """Return (header lines, column names, float table) of an EC-Lab `.mpt` text export.

    Exposed separately so callers (and tests) can get at the raw table without step logic.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # cp1252 leaves 5 bytes undefined; latin-1 maps them all
    lines = text.splitlines()
    if not lines or not lines[0].startswith("EC-Lab ASCII FILE"):
        raise ImportFormatError(f"{path}: not an EC-Lab text export (first line {lines[:1]!r})")
    m = re.match(r"Nb header lines\s*:\s*(\d+)", lines[1]) if len(lines) > 1 else None
    if m is None:
        # "Export without header" files: line 1 is already the column names.
        n_header = 2
    else:
        n_header = int(m.group(1))
    if n_header > len(lines):
        raise ImportFormatError(f"{path}: header says {n_header} lines but file has {len(lines)}")
    names = lines[n_header - 1].rstrip("\r\n").split("\t")
    while names and not names[-1].strip():
        names.pop()  # EC-Lab ends every row with a tab
    rows = []
    for ln in lines[n_header:]:
        if not ln.strip():
            continue
        fields = ln.split("\t")[: len(names)]
        fields += [""] * (len(names) - len(fields))
        rows.append([_to_float(f) for f in fields])
    table = np.array(rows, dtype=float).reshape(len(rows), len(names))
    return lines[: n_header - 1], names, table


def read_mpt(path: str | Path) -> ImportedRun:
    """Read an EC-Lab `.mpt` text export and map it to the neutral model."""
    path = Path(path)
    header, names, table = read_mpt_table(path)
    cols = {name: table[:, j] for j, name in enumerate(names)}
    techniques: list[str] = []
    for ln in header[2:]:
        if ln.strip():
            techniques.append(ln.strip())  # EC-Lab puts the technique's long name here
            break
    info: dict[str, str] = {}
    for ln in header:
        if " : " in ln:
            k, _, v = ln.partition(" : ")
            info.setdefault(k.strip(), v.strip())
    mode = cols["mode"].astype(np.int64) if "mode" in cols else None
    meta: dict[str, Any] = {"format": "mpt", "columns": names, "header": info}
    run = _build_run(cols, mode, techniques, path, meta)
    run.acquired_at = parse_instrument_time(info.get("Acquisition started on"), MPT_TIME_FORMATS)
    return run


#: EC-Lab writes "Acquisition started on : 02/04/2018 10:02:46" (month first, local time)
MPT_TIME_FORMATS = ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S.%f", "%m/%d/%Y %H:%M")


def read_eclab(path: str | Path) -> ImportedRun:
    """Read `.mpr` or `.mpt` by extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mpr":
        return read_mpr(path)
    if suffix in (".mpt", ".txt"):
        return read_mpt(path)
    raise ImportFormatError(f"{path}: expected an EC-Lab .mpr or .mpt file")
