import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlatent.core import EnergyGrid, band_sums, bin_average, hardness_ratio, regrid_counts


def test_default_grid_has_csc_band_edges() -> None:
    g = EnergyGrid.default()
    assert g.n_bins == 128
    assert g.edges_kev[0] == pytest.approx(0.5) and g.edges_kev[-1] == pytest.approx(8.0)
    for edge in (1.2, 2.0, 7.0):
        assert np.min(np.abs(g.edges_kev - edge)) < 1e-12
    # Log spacing: bin widths relative to energy vary little between segments.
    rel = g.widths_kev / g.centers_kev
    assert rel.max() / rel.min() < 1.2


def test_band_sums_are_exact_on_the_default_grid() -> None:
    g = EnergyGrid.default()
    ones = np.ones(g.n_bins)
    sums = band_sums(ones, g)
    assert sums["s"] + sums["m"] + sums["h"] == pytest.approx(sums["b"])
    assert all(float(v).is_integer() for v in sums.values())


def test_invalid_grids_are_refused() -> None:
    with pytest.raises(ValueError):
        EnergyGrid(np.array([1.0, 0.5]))
    with pytest.raises(ValueError):
        EnergyGrid.log(2.0, 1.0, 10)


def test_hardness_ratio_conventions() -> None:
    assert hardness_ratio(np.array([3.0]), np.array([1.0]))[0] == pytest.approx(0.5)
    assert hardness_ratio(np.array([-2.0]), np.array([2.0]))[0] == pytest.approx(-1.0)
    assert np.isnan(hardness_ratio(np.array([0.0]), np.array([0.0]))[0])


@settings(max_examples=60, deadline=None)
@given(
    n_in=st.integers(2, 300),
    lo=st.floats(0.05, 2.0),
    span=st.floats(0.5, 15.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_regridding_conserves_counts(n_in: int, lo: float, span: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    edges = np.sort(rng.uniform(lo, lo + span, n_in + 1))
    edges = np.unique(edges)
    counts = rng.poisson(5.0, edges.size - 1).astype(float)
    g = EnergyGrid.default()
    out = regrid_counts(counts, edges[:-1], edges[1:], g)
    # Expected: each input bin's counts times its fractional overlap with [0.5, 8].
    ov = np.clip(np.minimum(edges[1:], 8.0) - np.maximum(edges[:-1], 0.5), 0, None)
    expected = np.sum(counts * ov / np.diff(edges))
    assert out.sum() == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert np.all(out >= 0)


def test_bin_average_of_a_constant_is_the_constant() -> None:
    g = EnergyGrid.default()
    e = np.linspace(0.3, 10.0, 500)
    avg = bin_average(np.full(e.size - 1, 7.0), e[:-1], e[1:], g)
    np.testing.assert_allclose(avg, 7.0)
