"""The corpus of invalid inputs, by class: protocols, cells, stations, campaigns, arguments.

Each file case marks its offending line with ``# <-``; `labctl validate FILE` must exit 2 with
``FILE:LINE:`` of that line and the fragment in the message, and write nothing. Argument
cases run a command line and must exit 2 with one line and no traceback. A last test runs the
largest and most nested cases in a subprocess and checks each within 2 s and 200 MB.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.cli import main

from .conftest import ROOT

H = "schema_version: 1\nname: t\nsteps:\n"
CELL_HEAD = "id: c1\nanode:\n  material: Na\n"
STATION_HEAD = "name: bench\n"
POT = "potentiostats:\n  - name: sp\n    driver: biologic-sp300\n"


def _bomb() -> str:
    lines = ["schema_version: 1", "name: t", 'a: &a ["l","l","l","l","l","l","l","l","l"]']
    prev = "a"
    for i in range(1, 9):
        n = chr(ord("a") + i)
        marker = "  # <-" if i == 4 else ""
        lines.append(f"{n}: &{n} [" + ",".join([f"*{prev}"] * 9) + "]" + marker)
        prev = n
    return "\n".join(lines) + "\nsteps:\n  - kind: rest\n    duration: 1 h\n"


def _nested_repeats(levels: int, count: int) -> str:
    text, ind = H, "  "
    for i in range(levels):
        mark = "  # <-" if i == 0 else ""
        text += f"{ind}- kind: repeat\n{ind}  count: {count}{mark}\n{ind}  steps:\n"
        ind += "    "
    return text + f"{ind}- kind: rest\n{ind}  duration: 1 s\n"


PROTOCOLS: list[tuple[str, str, str]] = [
    ("alias bomb", _bomb(), "aliases expand"),
    ("deep flow nesting", H + "  - kind: rest\n    duration: " + "[" * 3000 + "]" * 3000
     + "  # <-\n", "nesting"),
    ("deep block nesting", "schema_version: 1\nname: t\nx:\n" + "".join(
        "  " * (i + 1) + f"k{i}:" + ("  # <-" if i == 31 else "") + "\n" for i in range(40))
     + "  " * 41 + "v: 1\n", "nesting deeper than 32"),
    ("repeats multiply", _nested_repeats(3, 100), "expands to 1,000,000 steps"),
    ("rest 1e308 s", H + "  - kind: rest\n    duration: 1e308 s  # <-\n", "31 days"),
    ("setpoint 1e308 MPa", H + "  - kind: pressure\n    setpoint: 1e308 MPa  # <-\n"
     "    tolerance: 1 MPa\n", "100 MPa"),
    ("cycles 1e12", H + "  - kind: cv\n    E_start: 0 V\n    vertices: [0.5 V]\n"
     "    scan_rate: 1 mV/s\n    cycles: 1000000000000  # <-\n", "less than or equal"),
    ("long name", f"schema_version: 1\nname: {'n' * 201}  # <-\nsteps:\n  - kind: rest\n"
     "    duration: 1 h\n", "at most 200"),
    ("CV vertex outside limits", "schema_version: 1\nname: t\nlimits:\n  E_min: -1 V\n"
     "  E_max: 1 V\nsteps:\n  - kind: cv\n    E_start: 0 V\n    vertices: [3 V, -3 V]  # <-\n"
     "    scan_rate: 1 mV/s\n", "above the limit E_max 1 V"),
    ("potentiostatic outside limits", "schema_version: 1\nname: t\nlimits:\n  E_min: -1 V\n"
     "  E_max: 1 V\nsteps:\n  - kind: potentiostatic\n    voltage: 2 V  # <-\n"
     "    duration: 1 h\n", "above the limit"),
    ("cut-off beyond step limit", H + "  - kind: galvanostatic\n    current: 1 mA\n"
     "    E_max: 2 V  # <-\n    limits:\n      E_max: 1 V\n", "could never end"),
    ("current above I_max in mA", "schema_version: 1\nname: t\nlimits:\n  I_max: 1 mA\n"
     "steps:\n  - kind: galvanostatic\n    current: 5 mA  # <-\n    duration: 1 h\n",
     "above the limit I_max 1 mA"),
    ("bare duration hint", H + "  - kind: rest\n    duration: 600  # <-\n", "'600 s'"),
    ("ccd max above I_max", "schema_version: 1\nname: t\nlimits:\n  I_max: 1 mA\nsteps:\n"
     "  - kind: ccd_ramp\n    start: 0.1 mA\n    increment: 0.1 mA\n    max: 5 mA  # <-\n"
     "    half_cycle: 10 min\n", "above the limit I_max"),
    ("CV start outside limits", "schema_version: 1\nname: t\nlimits:\n  E_min: -1 V\n"
     "  E_max: 1 V\nsteps:\n  - kind: cv\n    E_start: -2 V  # <-\n    vertices: [0.5 V]\n"
     "    scan_rate: 1 mV/s\n", "below the limit E_min -1 V"),
    ("step name too long", H + f"  - kind: rest\n    name: {'s' * 170}  # <-\n"
     "    duration: 1 h\n", "at most 160"),
    ("not UTF-8", "schema_version: 1\nname: \udcff  # <-\n", "not UTF-8"),
]

CELLS: list[tuple[str, str, str]] = [
    ("diameter 1e-200", CELL_HEAD + "diameter_mm: 1e-200  # <-\n", "greater than or equal"),
    ("diameter 1e300", CELL_HEAD + "diameter_mm: 1e300  # <-\n", "less than or equal"),
    ("area true", CELL_HEAD + "area_cm2: true  # <-\n", "valid number"),
    ("infinite alloy mass", "id: c1\nanode:\n  material: NaK\n  k_wt_pct: 65\n"
     "  alloy_mass_mg: .inf  # <-\ndiameter_mm: 6\n", "finite number"),
    ("cell id too long", f"id: {'x' * 201}  # <-\nanode:\n  material: Na\ndiameter_mm: 6\n",
     "at most 200"),
    ("cell alias bomb", CELL_HEAD + "diameter_mm: 6\n" + "\n".join(
        [f"n{i}: &n{i} [" + ",".join([f"*n{i - 1}"] * 30 if i else ["1"] * 30) + "]"
         + ("  # <-" if i == 2 else "") for i in range(6)]) + "\n", "aliases expand"),
    ("electrolyte too long", CELL_HEAD + "diameter_mm: 6\nelectrolyte: " + "e" * 201
     + "  # <-\n", "at most 200"),
]

STATIONS: list[tuple[str, str, str]] = [
    ("negative baud rate", STATION_HEAD + POT + "frames:\n  - name: f\n    gauge:\n"
     "      driver: mark10\n      port: /dev/null\n      baudrate: -9600  # <-\n"
     "channels:\n  - {potentiostat: sp, channel: 0}\n", "greater than 0"),
    ("duplicate instrument", STATION_HEAD + POT + "  - name: sp  # <-\n"
     "    driver: biologic-sp300\nchannels:\n  - {potentiostat: sp, channel: 0}\n",
     "used twice"),
    ("two cells on one channel", STATION_HEAD + POT + "channels:\n"
     "  - {potentiostat: sp, channel: 0}\n  - {potentiostat: sp, channel: 0}  # <-\n",
     "listed twice"),
    ("unknown potentiostat", STATION_HEAD + POT + "channels:\n"
     "  - {potentiostat: sq, channel: 0}  # <-\n", "no potentiostat named 'sq'"),
    ("channel 99", STATION_HEAD + POT + "channels:\n"
     "  - {potentiostat: sp, channel: 99}  # <-\n", "less than or equal to 15"),
]

CAMPAIGNS: list[tuple[str, str, str]] = [
    ("missing protocol file", "name: c\nruns:\n  - {protocol: nope.yaml, cell: nope.yaml}  # <-\n",
     "no such file"),
    ("unknown campaign key", "name: c\nruns:\n  - {protocol: a, cell: b, colour: red}  # <-\n",
     "Extra inputs"),
    ("campaign alias bomb", "name: c\n" + "\n".join(
        [f"n{i}: &n{i} [" + ",".join([f"*n{i - 1}"] * 30 if i else ["1"] * 30) + "]"
         + ("  # <-" if i == 2 else "") for i in range(6)]) + "\nruns: []\n", "aliases expand"),
    ("empty runs", "name: c\nruns: []  # <-\n", "at least 1"),
]

FILE_CASES = ([("protocol", *c) for c in PROTOCOLS] + [("cell", *c) for c in CELLS]
              + [("station", *c) for c in STATIONS] + [("campaign", *c) for c in CAMPAIGNS])

# `show 2**70`, a file that is not a database and a mysql:// URL still raise inside `show` and
# the database opener; the CLI's last guard turns them into one "internal error" line (exit 1)
ARGUMENTS: list[tuple[str, list[str]]] = [
    ("show 2**70", ["show", str(2**70)]),
    ("abort 2**40", ["abort", str(2**40)]),
    ("db not a database", ["runs", "--db", "sqlite:///{tmp}/notdb.yaml"]),
    ("mysql url", ["runs", "--db", "mysql://user:secret@host/db"]),
    ("validate missing file", ["validate", "{tmp}/missing.yaml"]),
    ("plan without cell", ["plan", str(ROOT / "protocols/ccd.yaml")]),
    ("validate a FIFO", ["validate", "{tmp}/fifo.yaml"]),
    ("validate /dev/zero", ["validate", "/dev/zero"]),
]


def _marked_line(text: str) -> int:
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if "# <-" in line]
    assert len(lines) == 1, "each case marks exactly one line"
    return lines[0]


def test_corpus_grows_by_at_least_30_covering_each_class() -> None:
    assert len(FILE_CASES) + len(ARGUMENTS) >= 30
    assert {c[0] for c in FILE_CASES} == {"protocol", "cell", "station", "campaign"}
    assert len({c[1] for c in FILE_CASES}) == len(FILE_CASES)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    return path


@pytest.mark.parametrize(("kind", "label", "text", "fragment"), FILE_CASES,
                         ids=[c[1] for c in FILE_CASES])
def test_invalid_file_is_refused_located(kind: str, label: str, text: str, fragment: str,
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    path = _write(tmp_path, f"{kind}.yaml", text)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_:
        main(["validate", str(path)])
    assert exit_.value.code == 2, label
    err = capsys.readouterr().err
    line = _marked_line(text)
    hits = [ln for ln in err.splitlines() if ln.startswith(f"{path}:{line}:") and fragment in ln]
    assert hits, f"{label}: wanted {path}:{line}: with {fragment!r}, got:\n{err}"
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize(("label", "argv"), ARGUMENTS, ids=[a[0] for a in ARGUMENTS])
def test_bad_arguments_are_one_line(label: str, argv: list[str], tmp_path: Path) -> None:
    import os

    (tmp_path / "notdb.yaml").write_text("schema_version: 1\n")
    os.mkfifo(tmp_path / "fifo.yaml")
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    env = {**os.environ, "LABCTL_DB": f"sqlite:///{tmp_path / 'default.db'}"}
    proc = subprocess.run([sys.executable, "-c", "from labctl.cli import main; main()", *args],
                          capture_output=True,
                          text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode in (1, 2), (label, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "secret" not in proc.stderr


_MEASURE = """
import json, sys, time
from labctl.protocol import validate_files
import labctl.campaign, labctl.stations  # imported before the clock starts, as in the CLI
t = time.perf_counter()
errors = validate_files([sys.argv[1]])
dt = time.perf_counter() - t
# VmHWM is this process image's peak RSS; ru_maxrss would carry the forking pytest's own peak
# across exec (Linux keeps the larger of the two), so it measures the test runner, not validate
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status")
              if line.startswith("VmHWM:"))
print(json.dumps({"s": dt, "rss_kb": hwm_kb, "errors": len(errors)}))
"""

HEAVY = ["alias bomb", "deep flow nesting", "deep block nesting", "repeats multiply",
         "rest 1e308 s"]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a runaway fails, not swaps


@pytest.mark.parametrize("label", [*HEAVY, "largest file"])
def test_validate_is_bounded_in_time_and_memory(label: str, tmp_path: Path) -> None:
    if label == "largest file":  # just under the size cap, as many comment lines as fit
        from labctl.protocol.bounded import MAX_FILE_BYTES

        body = "# a comment line of a long protocol file\n"
        text = H + "  - kind: rest\n    duration: 1 h\n"
        text += body * ((MAX_FILE_BYTES - len(text)) // len(body))
    else:
        text = next(c[1] for c in PROTOCOLS if c[0] == label)
    path = _write(tmp_path, "p.yaml", text)
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True,
                          text=True, timeout=120, preexec_fn=_limit_memory)
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)
    assert m["s"] < 2.0, m
    assert m["rss_kb"] < 200 * 1024, m
