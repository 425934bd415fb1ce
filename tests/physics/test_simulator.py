"""physics.simulator: reproducibility, the output contract, real responses, the PHA round trip."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from astropy.io import fits

from xlatent.core.grid import EnergyGrid, overlap_matrix
from xlatent.core.spectrumset import SpectrumSet
from xlatent.instrument import Response, default_response
from xlatent.instrument.family import family_response
from xlatent.io.ingest import ingest_paths
from xlatent.io.ogip_response import read_arf, read_rmf
from xlatent.physics.simulator import simulate


def test_simulate_reproducible_and_contract() -> None:
    a = simulate(300, seed=5, chunk_size=100)
    b = simulate(300, seed=5, chunk_size=1000)
    c = simulate(300, seed=6)
    assert np.array_equal(a.counts, b.counts) and np.array_equal(a.background, b.background)
    assert not np.array_equal(a.counts, c.counts)
    meta = a.meta
    required = ["spec_id", "source_class", "truth_nh_1e22", "truth_gamma", "truth_kt_kev"]
    required += ["truth_flux_b", "truth_uflux_s", "var_prob_b", "var_index_b", "exposure_s"]
    for col in required:
        assert col in meta
    assert re.fullmatch(r"sim-[0-9a-f]{8}-000001", meta["spec_id"].iloc[0])
    assert list(a.meta["spec_id"]) == list(b.meta["spec_id"])  # chunk_size does not matter
    assert set(a.meta["spec_id"]).isdisjoint(c.meta["spec_id"])
    assert (meta["instrument"] == "ACIS").all()
    for col in ("detector", "ccd_id", "chip_type", "epoch_year", "date_obs", "theta_arcmin"):
        assert col in meta and meta[col].equals(b.meta[col])
    assert a.expected_counts is not None
    # Noiseless expected 0.5-7 keV counts through each spectrum's own response.
    broad = a.grid.band_mask(0.5, 7.0)
    assert np.allclose(a.expected_counts[:, broad].sum(1), meta["truth_counts_b"], rtol=1e-9)
    # Default brightness: only detections (snr_b >= 3) are kept; pile-up is a fraction.
    assert (meta["snr_b"] >= 3.0).all() and meta["pileup_fraction"].between(0, 1).all()
    old = simulate(40, seed=5, brightness="counts").meta
    assert old["truth_counts_ref_b"].between(50, 20000).all()
    assert ((meta["var_prob_b"] >= 0) & (meta["var_prob_b"] <= 1)).all()
    assert meta["var_index_b"].between(0, 10).all()
    # Absorbed flux never exceeds unabsorbed; parameters absent from a model are NaN.
    assert (meta["truth_flux_b"] <= meta["truth_uflux_b"] * (1 + 1e-9)).all()
    agn = meta["source_class"] == "AGN"
    assert meta.loc[agn, "truth_gamma"].notna().all() and meta.loc[agn, "truth_kt_kev"].isna().all()


def test_simulate_with_real_response(real_spectra_dir: Path) -> None:
    resp = Response(
        read_arf(real_spectra_dir / "9774.arf"), read_rmf(real_spectra_dir / "9774.rmf")
    )
    s = simulate(200, seed=1, response=resp)
    assert s.counts.shape == (200, EnergyGrid.default().n_bins)
    assert np.all(s.expected_counts >= 0)
    net = s.meta["net_counts_b"] / s.meta["truth_counts_b"]
    assert 0.8 < np.median(net) < 1.2
    # Context from the ARF header: ACIS-S3 (DETNAM ACIS-7), 2007-12-06, 1.25' from the
    # pointing (its RA_TARG/DEC_TARG against RA_PNT/DEC_PNT).
    row = s.meta.iloc[0]
    assert (row["detector"], row["ccd_id"], row["chip_type"]) == ("ACIS-S", 7, "BI")
    assert row["date_obs"] == "2007-12-06T05:30:00" and abs(row["epoch_year"] - 2007.93) < 0.01
    assert abs(row["theta_arcmin"] - 1.25) < 0.01
    assert (s.meta["response_id"] == resp.arf.path).all()
    # One area for every spectrum: the ARF averaged on the grid.
    assert np.array_equal(
        s.effective_area_cm2, np.broadcast_to(s.effective_area_cm2[0], (200, 128))
    )


def _read_back(directory: Path, spec_id: str, grid: EnergyGrid) -> tuple[np.ndarray, ...]:
    with fits.open(directory / f"{spec_id}.pha") as src:
        h = src["SPECTRUM"].header
        assert h["HDUCLAS2"] == "TOTAL" and h["HDUCLAS4"] == "TYPE:I" and h["POISSERR"]
        assert (directory / h["RESPFILE"]).exists() and (directory / h["ANCRFILE"]).exists()
        rmf = read_rmf(directory / h["RESPFILE"])
        w = overlap_matrix(rmf.e_min, rmf.e_max, grid.edges_kev)
        counts = np.asarray(src["SPECTRUM"].data["COUNTS"]) @ w
        with fits.open(directory / h["BACKFILE"]) as bkg:
            hb = bkg["SPECTRUM"].header
            assert hb["HDUCLAS2"] == "BKG"
            scale = h["EXPOSURE"] * h["BACKSCAL"] / (hb["EXPOSURE"] * hb["BACKSCAL"])
            background = np.asarray(bkg["SPECTRUM"].data["COUNTS"]) @ w * scale
    return counts, background, np.float64(h["EXPOSURE"])


def test_pha_round_trip(tmp_path: Path) -> None:
    """One fixed response: shared response.arf / response.rmf."""
    resp = default_response()
    s = simulate(12, seed=3, response=resp, write_pha=tmp_path)
    arf = read_arf(tmp_path / "response.arf", cache=None)
    rmf = read_rmf(tmp_path / "response.rmf", cache=None)
    assert np.array_equal(arf.specresp, resp.arf.specresp)
    assert abs(rmf.matrix - resp.rmf.matrix).max() == 0
    # `xlatent ingest DIR` must reproduce the simulated set.
    result = ingest_paths(tmp_path, progress=False)
    assert result.skipped == []
    got = result.spectrum_set
    assert list(got.meta["spec_id"]) == list(s.meta["spec_id"])
    np.testing.assert_allclose(got.counts, s.counts, atol=1e-9)
    np.testing.assert_allclose(got.background, s.background, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.exposure_s, s.exposure_s)
    np.testing.assert_allclose(got.effective_area_cm2, s.effective_area_cm2, rtol=1e-6)
    for col in ("net_counts_b", "hr_counts_hm", "hr_counts_hs", "hr_counts_ms"):
        np.testing.assert_allclose(got.meta[col], s.meta[col], rtol=1e-9, atol=1e-12)
    for i, spec_id in enumerate(s.meta["spec_id"]):
        counts, background, exposure = _read_back(tmp_path, spec_id, s.grid)
        assert np.allclose(counts, s.counts[i], atol=1e-9)
        assert np.allclose(background, s.background[i], atol=1e-9)
        assert exposure == s.exposure_s[i]


def _assert_ingests_back(directory: Path, s: SpectrumSet) -> SpectrumSet:
    """`xlatent ingest DIR` gives back the simulated set (rows matched by spec_id)."""
    result = ingest_paths(directory, progress=False)
    assert result.skipped == []
    got = result.spectrum_set
    pos = {spec_id: i for i, spec_id in enumerate(got.meta["spec_id"])}
    got = got[np.array([pos[spec_id] for spec_id in s.meta["spec_id"]])]
    assert np.array_equal(got.counts, s.counts)
    np.testing.assert_allclose(got.background, s.background, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.exposure_s, s.exposure_s)
    np.testing.assert_allclose(got.effective_area_cm2, s.effective_area_cm2, rtol=1e-12)
    for col in ("net_counts_b", "hr_counts_hm", "hr_counts_hs", "hr_counts_ms"):
        np.testing.assert_allclose(got.meta[col], s.meta[col], rtol=1e-9, atol=1e-12)
    return got


def test_pha_round_trip_response_per_spectrum(tmp_path: Path, real_spectra_dir: Path) -> None:
    """The default sky: each spectrum its own ARF, one RMF per chip type; real pairs share
    theirs. Ingesting the folder gives the set back."""
    s = simulate(30, seed=3, write_pha=tmp_path / "family")
    assert set(s.meta["chip_type"]) == {"FI", "BI"}
    for i, spec_id in enumerate(s.meta["spec_id"]):
        with fits.open(tmp_path / "family" / f"{spec_id}.pha") as f:
            h = f["SPECTRUM"].header
        assert h["ANCRFILE"] == f"{spec_id}.arf"
        assert h["RESPFILE"] == f"acis-{s.meta['chip_type'].iloc[i]}.rmf"
        assert h["DATE-OBS"] == s.meta["date_obs"].iloc[i]
        assert h["DETNAM"] == f"ACIS-{s.meta['ccd_id'].iloc[i]}"
        arf = read_arf(tmp_path / "family" / h["ANCRFILE"], cache=None)
        assert np.array_equal(arf.specresp, family_response(
            s.meta["chip_type"].iloc[i], s.meta["epoch_year"].iloc[i],
            s.meta["theta_arcmin"].iloc[i]).arf.specresp)  # fmt: skip
        counts, background, _ = _read_back(tmp_path / "family", spec_id, s.grid)
        assert np.allclose(counts, s.counts[i], atol=1e-9)
        assert np.allclose(background, s.background[i], atol=1e-9)
    assert sorted(p.name for p in (tmp_path / "family").glob("*.rmf")) == [
        "acis-BI.rmf",
        "acis-FI.rmf",
    ]
    _assert_ingests_back(tmp_path / "family", s)
    real = [
        Response(read_arf(real_spectra_dir / "9774.arf"), read_rmf(real_spectra_dir / "9774.rmf"))
    ]
    mixed = simulate(60, seed=4, responses=real, real_fraction=0.5, write_pha=tmp_path / "mixed")
    assert 0 < (mixed.meta["response_id"] == "9774.arf").sum() < 60
    _assert_ingests_back(tmp_path / "mixed", mixed)


def test_simulated_spec_ids_differ_between_sets_and_repeat_with_the_seed() -> None:
    base = simulate(20, seed=1)
    again = simulate(20, seed=1, chunk_size=7)
    assert list(base.meta["spec_id"]) == list(again.meta["spec_id"])
    others = [
        simulate(20, seed=2),
        simulate(21, seed=1),
        simulate(20, seed=1, class_mix="balanced"),
        simulate(20, seed=1, brightness="counts"),
        simulate(20, seed=1, snr_min=5.0),
        simulate(20, seed=1, exposure_range_s=(1e4, 2e4)),
        simulate(20, seed=1, grid=EnergyGrid.log(0.5, 7.0, 64)),
        simulate(20, seed=1, response=default_response()),
        simulate(20, seed=1, instrument={"chip_type": "FI"}),
        simulate(20, seed=1, instrument={"epoch_year": 2020.5}),
        simulate(20, seed=1, src_area_arcsec2=(4.0, 100.0)),
    ]
    ids = set(base.meta["spec_id"])
    for other in others:
        assert ids.isdisjoint(other.meta["spec_id"])
    counts = simulate(20, seed=1, brightness="counts")
    narrower = simulate(20, seed=1, brightness="counts", counts_range=(100.0, 1000.0))
    assert set(counts.meta["spec_id"]).isdisjoint(narrower.meta["spec_id"])
    prefix = base.provenance[-1]["spec_id_prefix"]
    assert all(s.startswith(prefix) for s in base.meta["spec_id"])
