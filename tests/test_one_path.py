"""One path: a simulated run executes the real drivers, so breaking a driver breaks simulation.

A short protocol (rest, a positive galvanostatic step, a CV, an EIS, all under stack-pressure
limits) runs through `launch` on the built-in simulated station, and `symptoms()` lists what is
wrong with the recorded run. On the real drivers the list is empty. Then each mutation breaks
one conversion inside a real driver — the SP-300 adapter's CV scan-rate unit, its current sign,
the timebase its decoder uses, the Mark-10 driver's unit table — and the same run must show the
symptom. If simulation ran beside the drivers instead of below them, these runs would pass.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from labctl.launch import launch
from labctl.recording import models as m
from labctl.recording.database import open_database
from labctl.stations import StationError
from labctl_drivers.mark10 import gauge

# the modules (the package re-exports a function named `translate`)
translate = importlib.import_module("labctl_drivers.biologic.translate")
adapter = importlib.import_module("labctl_drivers.biologic.adapter")

ROOT = Path(__file__).resolve().parents[1]
CELL = ROOT / "examples" / "cells" / "na_symmetric.yaml"

PROTOCOL = """\
schema_version: 1
name: one path
limits: {E_min: -1 V, E_max: 1 V, P_min: 9 MPa, P_max: 11 MPa}
steps:
  - kind: rest
    duration: 60 s
  - kind: galvanostatic
    current: 0.2 mA/cm^2
    duration: 5 min
  - kind: cv
    E_start: 0 V
    vertices: [0.05 V, -0.05 V]
    scan_rate: 1 mV/s
    cycles: 1
  - kind: eis
    f_high: 100 kHz
    f_low: 10 Hz
    points_per_decade: 5
    amplitude: 10 mV
"""

#: CV path 0 -> 0.05 -> -0.05 -> 0 V at 1 mV/s
CV_DURATION_S = (0.05 + 0.10 + 0.05) / 1e-3


def symptoms(url: str, run_id: int) -> list[str]:
    """What is wrong with the recorded run (empty: it looks like the real instrument's)."""
    out: list[str] = []
    with Session(open_database(url)) as s:
        run = s.get(m.Run, run_id)
        assert run is not None
        if run.status != "completed":
            out.append(f"run {run.status}: {run.end_reason}")
        steps = {st.kind: st for st in s.scalars(select(m.Step).where(m.Step.run_id == run_id))}
        for kind, st in steps.items():
            rows = s.execute(select(m.Point.t_s, m.Point.E_V, m.Point.I_mA, m.Point.P_MPa)
                             .where(m.Point.step_id == st.id).order_by(m.Point.id)).all()
            if not rows:
                continue
            t, E, I_mA, P = (np.array(c, dtype=float) for c in zip(*rows))
            if np.any(np.diff(t) <= 0):
                out.append(f"{kind}: times not increasing")
            if kind in ("rest", "galvanostatic") and not np.allclose(np.diff(t), 1.0,
                                                                      atol=1e-3):
                out.append(f"{kind}: record spacing {np.diff(t)[:3]} s, not 1 s")
            if kind == "galvanostatic":
                if not (np.all(I_mA > 0) and E[-1] > E[0]):
                    out.append("galvanostatic: a positive current must strip (I > 0, E rising)")
                if st.t_end_s is not None and abs(st.t_end_s - st.t_start_s - 300.0) > 2.0:
                    out.append(f"galvanostatic lasted {st.t_end_s - st.t_start_s:.1f} s")
            if kind == "cv" and st.t_end_s is not None:
                took = st.t_end_s - st.t_start_s
                if abs(took - CV_DURATION_S) > 5.0:
                    out.append(f"cv took {took:.0f} s, not {CV_DURATION_S:.0f} s")
                if abs(E.max() - 0.05) > 2e-3 or abs(E.min() + 0.05) > 2e-3:
                    out.append(f"cv swept {E.min():.3f}..{E.max():.3f} V")
            finite = P[np.isfinite(P)]
            if finite.size and np.any(np.abs(finite - 10.0) > 0.3):
                out.append(f"{kind}: stack pressure read {finite.min():.2f}..{finite.max():.2f} "
                           "MPa at a 10 MPa assembly")
    return out


def _run(tmp_path: Path) -> list[str]:
    protocol = tmp_path / "one_path.yaml"
    protocol.write_text(PROTOCOL)
    url = f"sqlite:///{tmp_path / 'one_path.db'}"
    try:
        (out,) = launch(protocol, [CELL], sim=True, db_url=url).outcomes
    except StationError as exc:  # e.g. a gauge reading outside its band at connect
        return [f"station refused: {exc}"]
    return symptoms(url, out.run_id)


def test_unbroken_drivers_give_a_clean_run(tmp_path: Path) -> None:
    assert _run(tmp_path) == []


def _scan_rate_in_V_per_s(monkeypatch: pytest.MonkeyPatch) -> None:
    real = translate._Params.set

    def set_(self, label, value):  # type: ignore[no-untyped-def]
        if label == "Scan_Rate":
            value = [v / 1000.0 for v in value]  # forgot that the DLL takes mV/s
        real(self, label, value)

    monkeypatch.setattr(translate._Params, "set", set_)


def _current_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    real = translate._Params.set

    def set_(self, label, value):  # type: ignore[no-untyped-def]
        if label == "Current_step":
            value = [-v for v in value]  # the SP-300's sign convention got flipped
        real(self, label, value)

    monkeypatch.setattr(translate._Params, "set", set_)


def _timebase(monkeypatch: pytest.MonkeyPatch) -> None:
    real = adapter.decode_series

    def decode_series(words, info, timebase_s):  # type: ignore[no-untyped-def]
        return real(words, info, 20e-6)  # always the OCV timebase

    monkeypatch.setattr(adapter, "decode_series", decode_series)


def _gauge_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(gauge.TO_NEWTON, "N", gauge.TO_NEWTON["LBF"])  # newtons read as lbF


MUTATIONS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], str]] = {
    "CV scan rate in V/s": (_scan_rate_in_V_per_s, "cv"),
    "current sign": (_current_sign, "galvanostatic"),
    "decoder timebase": (_timebase, "spacing"),
    "Mark-10 unit table": (_gauge_units, "outside the frame's band"),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_broken_driver_conversion_breaks_the_simulated_run(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mutate, symptom = MUTATIONS[name]
    mutate(monkeypatch)
    found = _run(tmp_path)
    assert any(symptom in s for s in found), found
