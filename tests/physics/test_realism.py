"""physics.realism: simulated colours against the labelled CSC sources (TD.csv)."""

from __future__ import annotations

from pathlib import Path

from xlatent.physics.realism import compare_to_td, format_table
from xlatent.physics.simulator import simulate


def test_realism_bounds(td_csv: Path) -> None:
    s = simulate(4000, seed=11, class_mix="balanced")
    table = compare_to_td(s, td_csv)
    checked = table[table["checked"]]
    assert set(checked["class"]) == {"AGN", "YSO", "LM-STAR", "HM-STAR", "NS", "LMXB", "CV"}
    failing = checked.loc[~checked["pass"], "class"].tolist()
    assert not failing, f"classes outside the realism bounds: {failing}\n{table}"
    hmxb = next(line for line in format_table(table).splitlines() if line.startswith("| HMXB"))
    assert "| no (< 40 real) |" in hmxb and hmxb.endswith(("| (pass) |", "| (fail) |"))


def test_td_without_band_fluxes_is_refused(tmp_path: Path) -> None:
    import pytest

    from xlatent.core.errors import InputError

    bad = tmp_path / "td.csv"
    bad.write_text("CSCv2_name,True_Class,Fs\n2CXO J1,AGN,1e-14\n")
    with pytest.raises(InputError, match="fm, fh"):
        compare_to_td(simulate(8, seed=0), bad)
