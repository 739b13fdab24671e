"""Start-up time of read-only labctl commands against the bare interpreter.

Each command runs as its own process, as a user's shell starts it (the `labctl` console
script of this environment), REPEAT times interleaved so that a load spike hits every command
alike; the median wall time of each is printed beside `python -c pass`, with the difference
and the goal: a read-only command may cost at most 0.3 s above the interpreter. The database
is a fresh SQLite file holding one imported run (tests/data/eclab, the EC-Lab example file),
so `runs` and `show` read a real run.

    python benchmarks/cli_startup.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 0.3


def _labctl() -> list[str]:
    exe = shutil.which("labctl", path=str(Path(sys.executable).parent)) or shutil.which("labctl")
    if exe is None:
        raise SystemExit("the labctl console script is not installed (pip install -e .)")
    return [exe]


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=11)
    args = ap.parse_args()
    labctl = _labctl()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'startup.db'}"
        env = {**os.environ, "LABCTL_DB": url}
        subprocess.run([*labctl, "import", str(ROOT / "tests/data/eclab/exampleDataBioLogic.mpt"),
                        "--cell", str(ROOT / "examples/cells/nak50_half.yaml")],
                       check=True, stdout=subprocess.DEVNULL, env=env)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "labctl --help": [*labctl, "--help"],
            "labctl runs": [*labctl, "runs"],
            "labctl show 1": [*labctl, "show", "1"],
        }
        for cmd in commands.values():  # warm the OS file cache and the .pyc files
            _timed(cmd, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                times[name].append(_timed(cmd, env))
    base = statistics.median(times["python -c pass"])
    print(f"median of {args.repeat} runs each (goal: <= {GOAL_S:.1f} s above the interpreter)")
    print(f"{'command':<16} {'median s':>9} {'above python s':>15} {'ratio':>6}  goal")
    for name, ts in times.items():
        med = statistics.median(ts)
        above = med - base
        ok = "" if name.startswith("python") else ("met" if above <= GOAL_S else "MISSED")
        print(f"{name:<16} {med:>9.3f} {above:>15.3f} {med / base:>6.1f}  {ok}")


if __name__ == "__main__":
    main()
