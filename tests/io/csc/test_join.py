"""Joining catalogue columns and labels onto a SpectrumSet; the query -> download -> ingest run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlatent.core import EnergyGrid, SpectrumSet
from xlatent.core.errors import InputError
from xlatent.io.csc.join import SOURCE_CLASSES, join_catalog, normalize_name, read_labels


def small_set() -> SpectrumSet:
    grid = EnergyGrid.default()
    n = 3
    meta = pd.DataFrame(
        {
            "spec_id": ["a", "b", "c"],
            "obsid": [308, 1575, 77],
            "obi": [0, 1, 0],
            "region_id": [44, 85, 1],
            "var_prob_b": [np.nan, 0.5, np.nan],
        }
    )
    s = SpectrumSet(
        grid=grid,
        counts=np.ones((n, grid.n_bins)),
        background=np.zeros((n, grid.n_bins)),
        exposure_s=np.full(n, 1e4),
        effective_area_cm2=np.full((n, grid.n_bins), 100.0),
        meta=meta,
    )
    return s.update_band_columns()


CATALOG = pd.DataFrame(
    {
        "name": ["2CXO J000009.3+135618", "2CXO J000230.7+004959", "2CXO J999999.9+000000"],
        "obsid": [308, 1575, 308],
        "obi": [0, 1, 0],
        "region_id": [44, 85, 44],  # the third row repeats the first key (ambiguous)
        "hard_hm": [0.25, -0.5, 0.9],
        "var_prob_b": [0.1, np.nan, 0.2],
        "powlaw_nh": [0.3, 1.2, 9.9],
        "flux_significance_b": [12.0, 7.0, 1.0],
    }
)


def test_join_by_detection_key() -> None:
    s = small_set()
    own_hm = s.meta["hr_counts_hm"].copy()
    out = join_catalog(s, CATALOG)
    m = out.meta
    assert m["name"].tolist() == ["2CXO J000009.3+135618", "2CXO J000230.7+004959", ""]
    # the spectrum's own count ratio stays; the catalogue's photon-flux ratio keeps its name
    pd.testing.assert_series_equal(m["hr_counts_hm"], own_hm)
    assert m["hard_hm"].tolist()[:2] == [0.25, -0.5] and np.isnan(m["hard_hm"][2])
    assert "csc_hard_hm" not in m
    assert m["powlaw_nh"].tolist()[:2] == [0.3, 1.2]  # first row of the ambiguous key wins
    # CSC powlaw_nh is in 1e20 cm^-2; the converted column is in 1e22 cm^-2
    np.testing.assert_allclose(m["powlaw_nh_1e22"][:2], [0.003, 0.012])
    # a catalogue NULL does not erase a value meta already had
    assert m["var_prob_b"].tolist()[:2] == [0.1, 0.5] and np.isnan(m["var_prob_b"][2])
    assert m["flux_significance_b"].iloc[2] != m["flux_significance_b"].iloc[2]  # NaN
    last = out.provenance[-1]
    assert last["step"] == "join_catalog" and last["n_matched"] == 2
    assert last["n_unmatched"] == 1 and last["n_ambiguous_keys"] == 1
    assert out.counts is s.counts and "powlaw_nh" not in s.meta  # input left unchanged


def test_labels_by_name(td_csv: Path) -> None:
    labels = read_labels(td_csv)
    assert list(labels.columns) == ["name", "source_class"]
    assert len(labels) > 1000 and set(labels["source_class"]) <= set(SOURCE_CLASSES)
    assert not labels["name"].duplicated().any()
    td = pd.read_csv(td_csv, usecols=["CSCv2_name", "True_Class"], nrows=2)
    catalog = CATALOG.copy()
    catalog.loc[0, "name"] = "  " + td["CSCv2_name"][0].lower().replace(" ", "   ")
    out = join_catalog(small_set(), catalog, labels=labels)
    assert out.meta["source_class"].tolist() == [td["True_Class"][0], td["True_Class"][1], ""]
    assert out.provenance[-1]["n_labelled"] == 2


def test_read_labels_generic_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("name,source_class\n2CXO J1,agn\n2CXO J2,YSO\n2CXO J2,CV\n,NS\n2CXO J3,\n")
    labels = read_labels(path)
    assert labels.to_dict("list") == {"name": ["2CXO J1"], "source_class": ["AGN"]}
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    with pytest.raises(InputError, match="CSCv2_name"):
        read_labels(bad)
    with pytest.raises(InputError, match="no such file"):
        read_labels(tmp_path / "nope.csv")
    assert normalize_name(" 2cxo  j000009.3+135618 ") == "2CXO J000009.3+135618"
    with pytest.raises(ValueError, match="region_id"):
        join_catalog(small_set(), CATALOG.drop(columns="region_id"))


def test_query_download_ingest_join(fake_csc, tmp_path: Path, td_csv: Path) -> None:
    """The whole user path against the fake service: 6 detections end up labelled in a set."""
    from xlatent.io.csc import download_spectra, query_csc, read_catalog, write_catalog

    ingest = pytest.importorskip("xlatent.io.ingest")
    catalog_path = write_catalog(
        query_csc(url=fake_csc.tap_url, retries=0), tmp_path / "catalog.fits"
    )
    catalog = read_catalog(catalog_path)
    data = tmp_path / "data"
    fake_csc.fail_retrieve = ["503", "drop"]
    report = download_spectra(
        catalog, data, url=fake_csc.retrieve_url, batch_size=4, backoff_s=0.01, progress=False
    )
    assert len(report.downloaded) == 6 and not report.failed
    result = ingest.ingest_paths(data, progress=False)
    assert result.n_ingested == 6, result.summary()
    joined = join_catalog(result.spectrum_set, catalog, labels=read_labels(td_csv))
    m = joined.meta.sort_values(["obsid", "region_id"])
    assert (m["name"] != "").all()
    expected = catalog.set_index(["obsid", "obi", "region_id"])["name"]
    assert [expected[tuple(k)] for k in m[["obsid", "obi", "region_id"]].to_numpy()] == m[
        "name"
    ].tolist()
    assert (m["source_class"] != "").all()  # the fake named them after TD.csv sources
    assert m["hard_hm"].notna().all() and m["powlaw_nh"].isna().sum() == 1
    out = joined.write(tmp_path / "set.h5")
    back = SpectrumSet.read(out)
    assert back.meta["name"].tolist() == joined.meta["name"].tolist()


def test_join_files_labels_only(tmp_path: Path) -> None:
    from xlatent.io.csc.join import join_files

    s = small_set()
    s.meta["name"] = ["2CXO J1", "", "2CXO J3"]
    path = tmp_path / "labels.csv"
    path.write_text("name,source_class\n2cxo j1,LMXB\n2CXO J3,NS\n")
    out = join_files(s, labels=path)
    assert out.meta["source_class"].tolist() == ["LMXB", "", "NS"]
    assert join_files(s) is s
    cat = tmp_path / "cat.csv"
    CATALOG.to_csv(cat, index=False)
    assert join_files(s, catalog=cat).meta["powlaw_nh"].tolist()[:2] == [0.3, 1.2]


def test_legacy_count_ratios_under_csc_names_are_renamed_before_a_join() -> None:
    s = small_set()
    legacy = s.meta.rename(columns={f"hr_counts_{k}": f"hard_{k}" for k in ("hm", "hs", "ms")})
    s.meta = legacy
    counts_hm = legacy["hard_hm"].copy()
    m = join_catalog(s, CATALOG).meta
    pd.testing.assert_series_equal(m["hr_counts_hm"], counts_hm, check_names=False)
    assert m["hard_hm"].tolist()[:2] == [0.25, -0.5]


@pytest.mark.parametrize(
    ("unit", "factor"), [("1e20 cm**-2", 0.01), ("1e22 cm**-2", 1.0), (None, 0.01)]
)
def test_powlaw_nh_follows_the_unit_the_catalogue_declares(
    tmp_path: Path, unit: str | None, factor: float
) -> None:
    """A FITS catalogue keeps the service's unit (TUNIT) and the join converts from it; with no
    unit it falls back to the CSC's documented 10^20 cm^-2."""
    from astropy.table import Table

    from xlatent.io.csc.join import join_files

    table = Table.from_pandas(CATALOG.iloc[:2])
    if unit is not None:
        table["powlaw_nh"].unit = unit
    path = tmp_path / "cat.fits"
    table.write(path)
    out = join_files(small_set(), path, None)
    np.testing.assert_allclose(out.meta["powlaw_nh_1e22"][:2], np.array([0.3, 1.2]) * factor)
