"""EC-Lab importer against real files.

Sample files (see tests/data/README.md): the three .mpr come from navani
(be-smith/navani, Example_data, MIT); exampleDataBioLogic.mpt from impedance.py
(ECSHackWeek/impedance.py, data/, MIT).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from galvani import BioLogic

from labctl.importers import ImportFormatError, read_eclab, read_mpr, read_mpt

DATA = Path(__file__).resolve().parents[1] / "data" / "eclab"
GCPL = DATA / "jdb11-1_c3_gcpl_5cycles_2V-3p8V_C-24_data_C09.mpr"
MB = DATA / "00_test_04_MB_C01.mpr"
OCV = DATA / "00_test_01_OCV_C01.mpr"
PEIS = DATA / "exampleDataBioLogic.mpt"



def _raw(path: Path) -> np.ndarray:
    return BioLogic.MPRfile(str(path)).data


def test_gcpl_rows_match_galvani_row_for_row() -> None:
    raw = _raw(GCPL)
    run = read_mpr(GCPL)
    assert run.n_points == len(raw) == 46102
    rows = np.concatenate([s.source_rows for s in run.steps])
    np.testing.assert_array_equal(rows, np.arange(len(raw)))
    np.testing.assert_array_equal(run.column("t_s"), raw["time/s"])
    np.testing.assert_array_equal(run.column("E_V"), raw["Ewe/V"].astype(float))
    # Q within each step = (Q-Qo) minus its value at the step's first row
    for s in run.steps:
        q = raw["(Q-Qo)/mA.h"][s.source_rows]
        np.testing.assert_allclose(s.points["Q_mAh"], q - q[0], rtol=0, atol=1e-12)
        assert np.all(raw["Ns"][s.source_rows] == raw["Ns"][s.source_rows[0]])


def test_gcpl_structure_and_sanity() -> None:
    run = read_mpr(GCPL)
    assert run.technique_names == ["GCPL"]
    assert run.steps[0].kind == "rest" and len(run.steps[0]) == 361
    assert all(s.kind == "galvanostatic" for s in run.steps[1:])
    assert [s.label for s in run.steps] == ["Ns 0", "Ns 1"] + ["Ns 2", "Ns 3"] * 6
    e = run.column("E_V")
    assert 2.0 - 1e-3 <= e.min() and e.max() <= 3.8 + 1e-3
    # Current is not recorded in this GCPL file; dq/dt gives back the ±0.088796 mA set-point
    # (control/V/mA) to better than 0.1 % on the bulk of each CC step.
    raw = _raw(GCPL)
    for s in run.steps[1:]:
        i = s.points["I_mA"][5:-5]
        setpoint = raw["control/V/mA"][s.source_rows[5]]
        assert np.nanmedian(np.abs(i / setpoint - 1)) < 1e-3
    # Charge segments (Ns 2): 5 loop repeats after the first pass -> 6; each ends at 3.8 V.
    charges = [s for s in run.steps if s.label == "Ns 2"]
    assert len(charges) == 6
    assert all(abs(s.points["E_V"][-1] - 3.8) < 5e-3 for s in charges)
    assert all(s.points["Q_mAh"][-1] > 0.7 for s in charges)
    discharges = [s for s in run.steps if s.label == "Ns 3"]
    assert all(s.points["Q_mAh"][-1] < -0.7 for s in discharges)
    # cycle = half cycle // 2: 0 (rest + first discharge), then 1..6, one per charge/discharge
    cyc = np.concatenate([s.points["cycle"] for s in run.steps])
    assert list(np.unique(cyc)) == [0, 1, 2, 3, 4, 5, 6]
    assert [int(s.points["cycle"][0]) for s in charges] == [1, 2, 3, 4, 5, 6]


def test_modulo_bat_and_ocv() -> None:
    raw = _raw(MB)
    run = read_mpr(MB)
    assert run.technique_names == ["Modulo Bat"]
    assert run.n_points == len(raw) == 1501 and len(run.steps) == 1
    s = run.steps[0]
    assert s.kind == "potentiostatic"
    np.testing.assert_array_equal(s.points["I_mA"], raw["I/mA"].astype(float))
    np.testing.assert_array_equal(s.points["t_s"], raw["time/s"])
    assert s.points["E_V"][0] == pytest.approx(-1.6501378, abs=1e-7)

    ocv = read_eclab(OCV)
    assert ocv.technique_names == ["OCV"] and ocv.n_points == 2
    st = ocv.steps[0]
    assert st.kind == "rest"
    np.testing.assert_allclose(st.points["E_V"], [-0.37380898, -0.37328216], atol=1e-7)
    np.testing.assert_array_equal(st.points["I_mA"], [0.0, 0.0])


def _independent_mpt_table() -> tuple[list[str], np.ndarray]:
    with PEIS.open(encoding="latin-1") as f:
        lines = f.read().splitlines()
    n_header = int(lines[1].split(":")[1])
    names = [c for c in lines[n_header - 1].split("\t") if c]
    table = np.loadtxt(
        PEIS, skiprows=n_header, delimiter="\t", encoding="latin-1", usecols=range(len(names))
    )
    return names, table


def test_mpt_peis_matches_plain_table() -> None:
    names, table = _independent_mpt_table()
    run = read_mpt(PEIS)
    col = {n: table[:, j] for j, n in enumerate(names)}
    assert run.technique_names == ["Potentio Electrochemical Impedance Spectroscopy"]
    assert len(run.steps) == 1 and run.steps[0].kind == "eis"
    assert run.n_points == table.shape[0] == 43
    eis = run.steps[0].eis
    assert eis is not None
    np.testing.assert_array_equal(eis["frequency_Hz"], col["freq/Hz"])
    np.testing.assert_array_equal(eis["Z_re_ohm"], col["Re(Z)/Ohm"])
    np.testing.assert_array_equal(eis["Z_im_ohm"], -col["-Im(Z)/Ohm"])  # Im(Z), not -Im(Z)
    np.testing.assert_array_equal(eis["Zmod_ohm"], col["|Z|/Ohm"])
    np.testing.assert_array_equal(eis["phase_deg"], col["Phase(Z)/deg"])
    np.testing.assert_array_equal(run.steps[0].points["t_s"], col["time/s"])
    np.testing.assert_array_equal(run.steps[0].points["E_V"], col["<Ewe>/V"])
    np.testing.assert_array_equal(run.steps[0].points["I_mA"], col["<I>/mA"])
    # convention check: phase is arg(Z) with Z = Z_re + j*Z_im
    np.testing.assert_allclose(
        np.degrees(np.arctan2(eis["Z_im_ohm"], eis["Z_re_ohm"])), eis["phase_deg"], atol=1e-4
    )
    np.testing.assert_allclose(
        np.hypot(eis["Z_re_ohm"], eis["Z_im_ohm"]), eis["Zmod_ohm"], rtol=1e-6
    )
    assert eis["frequency_Hz"][0] == pytest.approx(1000.3201)
    assert run.metadata["header"]["Device"].startswith("SP-150")


def test_mpt_decimal_comma(tmp_path: Path) -> None:
    """The same file as written by a French-locale EC-Lab parses to the same numbers."""
    text = PEIS.read_bytes().decode("latin-1")
    head, _, body = text.partition("freq/Hz")
    first, _, rest = body.partition("\n")
    fr = tmp_path / "fr.mpt"
    fr.write_bytes((head + "freq/Hz" + first + "\n" + rest.replace(".", ",")).encode("cp1252"))
    a, b = read_mpt(PEIS), read_mpt(fr)
    np.testing.assert_array_equal(a.steps[0].eis["Z_re_ohm"], b.steps[0].eis["Z_re_ohm"])


def test_not_eclab(tmp_path: Path) -> None:
    p = tmp_path / "x.mpt"
    p.write_text("hello\n")
    with pytest.raises(ImportFormatError):
        read_mpt(p)
