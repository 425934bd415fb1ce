"""Physics: cross-sections, models, responses, simulator, PHA round trip, realism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from astropy.io import fits

from xlatent.core.grid import EnergyGrid, overlap_matrix
from xlatent.instrument import ARF, RMF, Response, acis_area_cm2, default_response
from xlatent.io.ingest import ingest_paths
from xlatent.io.ogip_response import read_arf, read_rmf
from xlatent.physics import models as m
from xlatent.physics.absorption import cross_section_cm2
from xlatent.physics.realism import compare_to_td, format_table
from xlatent.physics.simulator import simulate


@pytest.mark.parametrize(("table", "published"), [("angr", 2.6e-22), ("wilm", 1.8e-22)])
def test_cross_section_at_1kev(table: str, published: float) -> None:
    sigma = float(cross_section_cm2(1.0, table))
    assert abs(sigma / published - 1) < 0.10


def test_cross_section_slope() -> None:
    # Between edges the ISM cross-section falls roughly as E^-8/3.
    e = np.array([2.5, 6.0])
    s = cross_section_cm2(e)
    slope = np.log(s[1] / s[0]) / np.log(e[1] / e[0])
    assert -3.0 < slope < -2.3
    # The O K edge (0.543 keV) is a jump up in the cross-section.
    assert cross_section_cm2(0.55) > 1.2 * cross_section_cm2(0.535)


def test_powerlaw_bin_integral_matches_analytic() -> None:
    sub = m.SubGrid(np.geomspace(0.3, 10.0, 400), n_sub=2)
    gamma = np.array([0.5, 1.0, 1.9, 3.0])
    numeric = sub.integrate(m.powerlaw(sub.energy_kev, gamma))
    exact = m.powerlaw_bin_integral(sub.edges_kev, gamma)
    assert np.max(np.abs(numeric / exact - 1)) < 1e-4
    # Gamma = 1: the integral is log(hi/lo).
    assert np.allclose(exact[1], np.diff(np.log(sub.edges_kev)))


def test_counts_conserved_through_diagonal_response() -> None:
    edges = np.linspace(0.3, 10.0, 201)
    rmf = RMF(edges[:-1], edges[1:], sp.identity(200, format="csr"),
              edges[:-1], edges[1:])  # fmt: skip
    arf = ARF(edges[:-1], edges[1:], np.full(200, 100.0))
    flux = m.powerlaw_bin_integral(edges, np.array([1.7]))[0]
    counts = Response(arf, rmf).fold(flux, 1000.0)
    assert np.isclose(counts.sum(), flux.sum() * 100.0 * 1000.0)


@pytest.mark.parametrize("stem", ["9774", "acisf01575_001N001_r0085", "acisf00308_000N001_r0044"])
def test_line_lands_at_right_pi_energy(real_spectra_dir: Path, stem: str) -> None:
    if stem == "9774":
        rmf_path = real_spectra_dir / "9774.rmf"
    else:
        gz = list(real_spectra_dir.glob(f"{stem}_rmf3.fits*"))
        rmf_path = gz[0]
    rmf = read_rmf(rmf_path)
    edges = np.append(rmf.energ_lo, rmf.energ_hi[-1])
    line = m.narrow_lines_to_bins(edges, np.array([1.5]), np.array([[1.0]]))[0]
    counts = Response(None, rmf).fold(line, 1.0)
    e_chan = 0.5 * (rmf.e_min + rmf.e_max)
    peak = e_chan[np.argmax(counts)]
    mean = np.sum(counts * e_chan) / counts.sum()
    assert abs(peak - 1.5) < 0.05
    assert abs(mean - 1.5) < 0.1


def test_builtin_response_shape() -> None:
    r = default_response()
    assert r.rmf.n_channels == 1024
    assert np.allclose(np.diff(r.rmf.e_min), 0.0146, atol=1e-6)
    for e, a in [(0.5, 205), (1.0, 570), (1.5, 705), (3.0, 410), (7.0, 90)]:
        assert abs(float(acis_area_cm2(e)) / a - 1) < 0.05
    # The Gaussian redistribution widens with energy: FWHM ~0.1 keV at 1, ~0.2 at 6 keV.
    for e0, fwhm in [(1.0, 0.1), (6.0, 0.2)]:
        edges = np.append(r.rmf.energ_lo, r.rmf.energ_hi[-1])
        line = m.narrow_lines_to_bins(edges, np.array([e0]), np.array([[1.0]]))[0]
        prof = Response(None, r.rmf).fold(line, 1.0)
        e_chan = 0.5 * (r.rmf.e_min + r.rmf.e_max)
        sd = np.sqrt(np.sum(prof * (e_chan - e0) ** 2) / prof.sum())
        assert abs(2.3548 * sd / fwhm - 1) < 0.15


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
    assert meta["spec_id"].iloc[0] == "sim000001"
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
    for col in ("net_counts_b", "hard_hm", "hard_hs", "hard_ms"):
        np.testing.assert_allclose(got.meta[col], s.meta[col], rtol=1e-9, atol=1e-12)
    for i, spec_id in enumerate(s.meta["spec_id"]):
        counts, background, exposure = _read_back(tmp_path, spec_id, s.grid)
        assert np.allclose(counts, s.counts[i], atol=1e-9)
        assert np.allclose(background, s.background[i], atol=1e-9)
        assert exposure == s.exposure_s[i]


def test_realism_bounds(td_csv: Path) -> None:
    s = simulate(4000, seed=11, class_mix="balanced")
    table = compare_to_td(s, td_csv)
    checked = table[table["checked"]]
    assert set(checked["class"]) == {"AGN", "YSO", "LM-STAR", "HM-STAR", "NS", "LMXB", "CV"}
    failing = checked.loc[~checked["pass"], "class"].tolist()
    assert not failing, f"classes outside the realism bounds: {failing}\n{table}"
    hmxb = next(line for line in format_table(table).splitlines() if line.startswith("| HMXB"))
    assert "| no (< 40 real) |" in hmxb and hmxb.endswith(("| (pass) |", "| (fail) |"))
