"""physics.simulator: reproducibility, the output contract, real responses, the PHA round trip."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from astropy.io import fits

from xlatent.core.grid import EnergyGrid, overlap_matrix
from xlatent.instrument import Response, default_response
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
    assert a.expected_counts is not None
    # Noiseless expected 0.5-7 keV counts equal the drawn target counts.
    broad = a.grid.band_mask(0.5, 7.0)
    assert np.allclose(a.expected_counts[:, broad].sum(1), meta["truth_counts_b"], rtol=1e-9)
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


def _read_back(directory: Path, spec_id: str, grid: EnergyGrid) -> tuple[np.ndarray, ...]:
    rmf = read_rmf(directory / "response.rmf")
    w = overlap_matrix(rmf.e_min, rmf.e_max, grid.edges_kev)
    with fits.open(directory / f"{spec_id}.pha") as src:
        h = src["SPECTRUM"].header
        assert h["HDUCLAS2"] == "TOTAL" and h["HDUCLAS4"] == "TYPE:I" and h["POISSERR"]
        assert (directory / h["RESPFILE"]).exists() and (directory / h["ANCRFILE"]).exists()
        counts = np.asarray(src["SPECTRUM"].data["COUNTS"]) @ w
        with fits.open(directory / h["BACKFILE"]) as bkg:
            hb = bkg["SPECTRUM"].header
            assert hb["HDUCLAS2"] == "BKG"
            scale = h["EXPOSURE"] * h["BACKSCAL"] / (hb["EXPOSURE"] * hb["BACKSCAL"])
            background = np.asarray(bkg["SPECTRUM"].data["COUNTS"]) @ w * scale
    return counts, background, np.float64(h["EXPOSURE"])


def test_pha_round_trip(tmp_path: Path) -> None:
    s = simulate(12, seed=3, write_pha=tmp_path)
    resp = default_response()
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


def test_simulated_spec_ids_differ_between_sets_and_repeat_with_the_seed() -> None:
    base = simulate(20, seed=1)
    again = simulate(20, seed=1, chunk_size=7)
    assert list(base.meta["spec_id"]) == list(again.meta["spec_id"])
    others = [
        simulate(20, seed=2),
        simulate(21, seed=1),
        simulate(20, seed=1, class_mix="balanced"),
        simulate(20, seed=1, counts_range=(100.0, 1000.0)),
        simulate(20, seed=1, grid=EnergyGrid.log(0.5, 7.0, 64)),
    ]
    ids = set(base.meta["spec_id"])
    for other in others:
        assert ids.isdisjoint(other.meta["spec_id"])
    prefix = base.provenance[-1]["spec_id_prefix"]
    assert all(s.startswith(prefix) for s in base.meta["spec_id"])
