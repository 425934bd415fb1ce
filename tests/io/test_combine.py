"""Summing the per-observation spectra of a source: ``combine_by`` and ``--combine-by``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from xlatent.cli import app
from xlatent.core import EnergyGrid, SpectrumSet
from xlatent.io.ingest import combine_by, read_spectra

STEM = "acisf01878_000N001_r0100"


def _real_one(real_spectra_dir: Path) -> SpectrumSet:
    return read_spectra(real_spectra_dir / f"{STEM}_pha3.fits", progress=False)


def test_two_copies_of_a_real_spectrum_double_the_counts_keep_the_area(
    real_spectra_dir: Path,
) -> None:
    one = _real_one(real_spectra_dir)
    copies = [one[[0]], one[[0]]]
    for cp, sid in zip(copies, ("a", "b"), strict=True):
        cp.meta["spec_id"] = sid
        cp.meta["name"] = "2CXO J000000.0+000000"
    two = SpectrumSet.concat(copies)
    c = combine_by(two, "name")
    assert len(c) == 1
    np.testing.assert_allclose(c.counts[0], 2 * one.counts[0])
    np.testing.assert_allclose(c.background[0], 2 * one.background[0])
    assert c.exposure_s[0] == pytest.approx(2 * one.exposure_s[0])
    np.testing.assert_allclose(c.effective_area_cm2[0], one.effective_area_cm2[0], rtol=1e-12)
    row = c.meta.iloc[0]
    assert row["spec_id"] == "2CXO J000000.0+000000" and row["name"] == row["spec_id"]
    assert row["combined_spec_ids"] == "a;b" and row["n_combined"] == 2
    assert row["net_counts_b"] == pytest.approx(2 * one.meta["net_counts_b"][0])
    assert row["hr_counts_hm"] == pytest.approx(one.meta["hr_counts_hm"][0])
    assert row["obsid"] == 1878  # the same in both copies: kept
    assert c.provenance[-1]["step"] == "combine_by"


def test_synthetic_groups_sum_and_weight_the_arf(tmp_path: Path) -> None:
    grid = EnergyGrid.log(0.5, 8.0, 16)
    rng = np.random.default_rng(0)
    n = 6
    counts = rng.poisson(20, (n, 16)).astype(float)
    bkg = rng.uniform(0, 2, (n, 16))
    area = rng.uniform(100, 600, (n, 16))
    t = np.array([1e4, 3e4, 2e4, 5e3, 8e3, 1e3])
    meta = pd.DataFrame({
        "spec_id": [f"s{i}" for i in range(n)],
        "name": ["B", "A", "B", "", "A", "B"],
        "obsid": [1, 2, 3, 4, 5, 6],
        "source_class": ["AGN", "YSO", "AGN", "", "YSO", "AGN"],
        "powlaw_gamma": [1.7, 2.0, 1.7, np.nan, 2.0, 1.7],  # master-source value: kept
        "theta": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],  # per observation: unknown once combined
        "effective_area_known": [True, True, False, True, True, True],
        "exposure_estimated": [False, True, False, False, False, False],
    })  # fmt: skip
    s = SpectrumSet(grid, counts, bkg, t, area, meta).update_band_columns()
    c = combine_by(s, "name")
    assert c.meta["spec_id"].tolist() == ["B", "A", "s3"]  # order of first appearance
    groups = [[0, 2, 5], [1, 4], [3]]
    for k, g in enumerate(groups):
        np.testing.assert_allclose(c.counts[k], counts[g].sum(0))
        np.testing.assert_allclose(c.background[k], bkg[g].sum(0))
        assert c.exposure_s[k] == pytest.approx(t[g].sum())
        expect = (t[g, None] * area[g]).sum(0) / t[g].sum()
        np.testing.assert_allclose(c.effective_area_cm2[k], expect)
        # exposure x area adds, like the counts
        np.testing.assert_allclose(c.exposure_s[k] * c.effective_area_cm2[k],
                                   (t[g, None] * area[g]).sum(0))  # fmt: skip
    m = c.meta
    assert m["n_combined"].tolist() == [3, 2, 1]
    assert m["combined_spec_ids"].tolist() == ["s0;s2;s5", "s1;s4", "s3"]
    assert m["obsid"].tolist() == [-1, -1, 4]
    assert m["source_class"].tolist() == ["AGN", "YSO", ""]
    assert m["powlaw_gamma"][:2].tolist() == [1.7, 2.0]
    assert np.isnan(m["theta"][0]) and m["theta"][2] == 4.0
    assert m["effective_area_known"].tolist() == [False, True, True]
    assert m["exposure_estimated"].tolist() == [False, True, False]
    np.testing.assert_allclose(m["net_counts_b"], c.meta["net_counts_b"])
    back = SpectrumSet.read_hdf5(c.write(tmp_path / "c.h5"))
    assert back.meta["combined_spec_ids"].tolist() == m["combined_spec_ids"].tolist()
    with pytest.raises(ValueError, match="no such meta column"):
        combine_by(s, "nope")


def test_cli_combine_by(real_spectra_dir: Path, tmp_path: Path) -> None:
    for sub in ("a", "b"):  # the same detection twice (two copies of its files)
        (tmp_path / sub).mkdir()
        for kind in ("pha3", "arf3", "rmf3"):
            src = real_spectra_dir / f"{STEM}_{kind}.fits"
            shutil.copy(src, tmp_path / sub / src.name)
    out = tmp_path / "set.h5"
    runner = CliRunner()
    args = ["ingest", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]
    r = runner.invoke(app, [*args, "--combine-by", "obsid"])
    assert r.exit_code == 0, r.output
    assert "combined 2 spectra into 1 by obsid" in r.output
    s = SpectrumSet.read(out)
    one = _real_one(real_spectra_dir)
    assert len(s) == 1 and s.meta["n_combined"][0] == 2
    np.testing.assert_allclose(s.counts[0], 2 * one.counts[0])
    # Read from a file: the area is stored as float32 (relative rounding <= 6e-8).
    np.testing.assert_allclose(s.effective_area_cm2[0], one.effective_area_cm2[0], rtol=6e-8)
    r = runner.invoke(app, [*args, "--combine-by", "nope"])
    assert r.exit_code == 2 and "nope" in r.output
