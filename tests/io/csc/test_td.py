"""io.csc.td: the one reader of labelled source tables (TD.csv and xlatent's own)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xlatent.core.errors import InputError
from xlatent.core.vocabulary import TD_CLASS_COUNTS
from xlatent.io.csc.td import band_fluxes, read_td


def test_read_td(td_csv: Path) -> None:
    td = read_td(td_csv)
    assert td.attrs["class_column"] == "true_class"
    assert td["source_class"].value_counts().to_dict() == TD_CLASS_COUNTS
    assert td["name"].str.startswith("2CXO J").all()
    flux = band_fluxes(td)
    assert set(flux) == {"s", "m", "h", "b"} and (np.nanmedian(flux["b"]) > 0)


def test_read_td_generic_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("name,source_class\n 2CXO  J1 , agn\n2CXO J2,\n")
    td = read_td(path)
    assert td["name"].tolist() == ["2CXO J1", "2CXO J2"]
    assert td["source_class"].tolist() == ["AGN", ""]
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n")
    with pytest.raises(InputError, match="True_Class"):
        read_td(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="no such file"):
        read_td(tmp_path / "nope.csv")
