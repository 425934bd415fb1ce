"""The folded effective area: the ARF through the RMF onto the grid's channel-energy bins."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from xlatent.core import EnergyGrid
from xlatent.core.grid import bin_average, overlap_matrix
from xlatent.instrument import ARF, RMF, Response, default_response
from xlatent.instrument.family import chip_rmf, effective_area_cm2
from xlatent.instrument.folded_area import fold_operator, folded_area, reference_photons
from xlatent.instrument.response import specresp_on
from xlatent.io.ogip_response import read_arf, read_rmf

GRID = EnergyGrid.default()


def grid_counts(response: Response, photons: np.ndarray) -> np.ndarray:
    """Counts on GRID (by channel energy) of photons per RMF energy bin, 1 s exposure."""
    chan = response.fold(photons, 1.0)
    rmf = response.rmf
    return np.asarray(chan @ overlap_matrix(rmf.e_min, rmf.e_max, GRID.edges_kev).toarray())


def photons_in_grid_bins(rmf: RMF, photons: np.ndarray) -> np.ndarray:
    return np.asarray(overlap_matrix(rmf.energ_lo, rmf.energ_hi, GRID.edges_kev).T @ photons)


def test_delta_rmf_gives_the_arf_average() -> None:
    # Channels = energy bins, each photon in its own channel: no redistribution at all.
    lo = np.geomspace(0.3, 10.0, 601)
    lo, hi = lo[:-1], lo[1:]
    rmf = RMF(lo, hi, sp.identity(lo.size, format="csr"), lo, hi)
    arf = 300.0 + 200.0 * np.sin(3.0 * np.log(lo))
    got = folded_area(arf, rmf, GRID)
    # Reference-weighted instead of width-weighted inside a bin: agree to the bin's slope.
    np.testing.assert_allclose(got, bin_average(arf, lo, hi, GRID), rtol=0.01)


@pytest.mark.parametrize("which", ["builtin", "1575", "308"])
def test_exact_for_a_reference_shaped_spectrum(real_spectra_dir, which) -> None:
    """counts_g = photons of true energy in g x A_g for the reference power law, through a
    real RMF with tails and shifted centroids; the ARF's own average misses near its edges."""
    if which == "builtin":
        response = default_response()
    else:
        stem = {"1575": "acisf01575_001N001_r0085", "308": "acisf00308_000N001_r0044"}[which]
        gz = ".gz" if which == "1575" else ""
        response = Response(
            read_arf(real_spectra_dir / f"{stem}_arf3.fits{gz}"),
            read_rmf(real_spectra_dir / f"{stem}_rmf3.fits{gz}"),
        )
    rmf = response.rmf
    photons = reference_photons(rmf.energ_lo, rmf.energ_hi)
    counts = grid_counts(response, photons)
    per_photon = photons_in_grid_bins(rmf, photons)
    folded = folded_area(response.specresp, rmf, GRID)
    np.testing.assert_allclose(counts, per_photon * folded, rtol=1e-9)
    plain = bin_average(response.specresp, rmf.energ_lo, rmf.energ_hi, GRID)
    # The plain ARF average is off by several per cent somewhere in 0.5-8 keV.
    assert np.max(np.abs(counts / (per_photon * plain) - 1.0)) > 0.03


def test_rows_fold_like_one_and_zero_outside_the_rmf() -> None:
    rmf = chip_rmf("FI")
    areas = effective_area_cm2("FI", np.array([2001.0, 2020.0]), np.array([0.0, 8.0]))
    rows = folded_area(areas.astype(np.float64), rmf, GRID)
    assert rows.shape == (2, GRID.n_bins)
    np.testing.assert_allclose(rows[1], folded_area(areas[1].astype(np.float64), rmf, GRID))
    assert np.all(rows > 0)
    # A grid reaching past the RMF's energies: those bins see no photons, hence no area.
    wide = EnergyGrid.log(0.5, 20.0, 64)
    op = fold_operator(rmf, wide)
    past = wide.edges_kev[:-1] >= rmf.energ_hi[-1]
    assert past.any() and np.all(np.asarray(op.sum(axis=0)).ravel()[past] == 0)


def test_operator_and_direct_fold_agree(real_spectra_dir) -> None:
    rmf = read_rmf(real_spectra_dir / "9774.rmf")
    arf = read_arf(real_spectra_dir / "9774.arf").specresp
    op = fold_operator(rmf, GRID)
    np.testing.assert_allclose(arf @ op, folded_area(arf, rmf, GRID), rtol=1e-10)


def test_specresp_on_the_rmf_bins() -> None:
    rmf = chip_rmf("BI")
    same = ARF(rmf.energ_lo, rmf.energ_hi, np.linspace(50.0, 500.0, rmf.energ_lo.size))
    assert specresp_on(same, rmf) is same.specresp
    # An ARF on coarser bins, linear in energy over 1-5 keV: interpolated at the RMF's centres,
    # zero outside the ARF's range.
    edges = np.linspace(1.0, 5.0, 41)
    coarse = ARF(edges[:-1], edges[1:], 100.0 * (0.5 * (edges[:-1] + edges[1:])))
    got = specresp_on(coarse, rmf)
    mid = 0.5 * (rmf.energ_lo + rmf.energ_hi)
    inside = (mid >= 1.05) & (mid <= 4.95)
    np.testing.assert_allclose(got[inside], 100.0 * mid[inside], rtol=1e-9)
    assert np.all(got[(mid < 1.0) | (mid > 5.0)] == 0.0)
