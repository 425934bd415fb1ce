"""physics.observation / physics.responses: the response-diverse simulated sky (issue 12)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xlatent.instrument import Response, default_response, gaussian_rmf
from xlatent.instrument.family import response_id
from xlatent.io.ogip_response import read_arf, read_rmf
from xlatent.io.response_context import decimal_year
from xlatent.physics.observation import (
    date_obs,
    draw_instrument,
    epoch_from_uniform,
    theta_from_uniform,
)
from xlatent.physics.simulator import simulate

#: Columns that describe the source itself, not how it was observed.
SOURCE_COLUMNS = [
    "source_class", "exposure_s", "truth_var_model", "truth_var_amplitude", "truth_nh_1e22",
    "truth_gamma", "truth_kt_kev",
    "truth_kt2_kev", "truth_kt_in_kev", "truth_kt_bb_kev", "truth_abundance",
    "truth_fe_ka_ew_kev", "truth_frac_powerlaw", "truth_frac_plasma", "truth_flux_s",
    "truth_flux_b", "truth_uflux_b", "truth_counts_ref_b", "truth_backscal_ratio", "truth_model",
]  # fmt: skip
ON_AXIS_2001 = {"chip_type": "BI", "epoch_year": 2001.76, "theta_arcmin": 0.0}


@pytest.fixture(scope="module")
def sky():  # noqa: ANN201
    return simulate(3000, seed=7)


def test_default_sky_spans_chips_dates_and_angles(sky) -> None:  # noqa: ANN001
    m = sky.meta
    assert set(m["chip_type"]) == {"FI", "BI"} and set(m["detector"]) == {"ACIS-I", "ACIS-S"}
    assert 0.3 < (m["chip_type"] == "BI").mean() < 0.7
    assert m["epoch_year"].min() < 2001 and m["epoch_year"].max() > 2023
    assert m["theta_arcmin"].min() < 1 and m["theta_arcmin"].max() > 9.0
    assert m["theta_arcmin"].between(0, 10).all()
    # ACIS-I sources sit on I0-I3 unless far off-axis; BI chips are S1/S3.
    on_s = (m["detector"] == "ACIS-I") & (m["ccd_id"] >= 4)
    assert on_s.any() and (m.loc[on_s, "theta_arcmin"] > 6).all()
    assert (m.loc[m["chip_type"] == "BI", "ccd_id"].isin([5, 7])).all()
    # A detector and date per observation (20 sources), an angle per source.
    per_obs = m.groupby("obsid")
    assert (per_obs["epoch_year"].nunique() == 1).all() and (
        per_obs["detector"].nunique() == 1
    ).all()
    assert per_obs["theta_arcmin"].nunique().max() > 1
    expected_ids = response_id(m["chip_type"].to_numpy(), m["epoch_year"], m["theta_arcmin"])
    assert list(m["response_id"]) == list(expected_ids)
    assert all(
        abs(decimal_year(d) - y) < 1e-6
        for d, y in zip(m["date_obs"][:50], m["epoch_year"][:50], strict=True)
    )
    # Per-spectrum effective areas (not one response for all).
    assert len({tuple(np.round(a, 6)) for a in sky.effective_area_cm2[:40]}) == 40


def test_draw_distributions() -> None:
    u = np.linspace(0.0005, 0.9995, 2000)
    theta = theta_from_uniform(u)
    assert theta.min() >= 0 and theta.max() <= 10 and 4.0 < np.median(theta) < 5.5
    epoch = epoch_from_uniform(u)
    assert 1999.6 <= epoch.min() and epoch.max() <= 2025.9
    # Fewer observations per year after 2019 than before.
    rate_early = np.mean((epoch > 2005) & (epoch < 2010)) / 5
    rate_late = np.mean((epoch > 2021) & (epoch < 2025.9)) / 4.9
    assert rate_late < 0.85 * rate_early
    fixed = draw_instrument(np.arange(40) // 20, np.random.default_rng(0), {"chip_type": "BI"})
    assert set(fixed["ccd_id"]) == {7} and set(fixed["detector"]) == {"ACIS-S"}
    assert date_obs(np.array([2001.0, np.nan])).tolist() == ["2001-01-01T00:00:00", ""]


def test_same_seed_same_sources_whatever_the_instrument() -> None:
    # Without detection (brightness="counts"); with it, the instrument changes which
    # sources are detected.
    kw = {"seed": 11, "brightness": "counts"}
    a = simulate(200, instrument=ON_AXIS_2001, **kw)
    b = simulate(200, instrument={"chip_type": "FI", "epoch_year": 2020.5}, **kw)
    c = simulate(200, **kw)
    for other in (b, c):
        for col in SOURCE_COLUMNS:
            left, right = a.meta[col].to_numpy(), other.meta[col].to_numpy()
            if left.dtype.kind == "f":
                np.testing.assert_allclose(left, right, rtol=1e-12, equal_nan=True)
            else:
                assert list(left) == list(right)
        assert not np.array_equal(a.counts, other.counts)
    assert (b.meta["chip_type"] == "FI").all() and (b.meta["epoch_year"] == 2020.5).all()
    assert not (b.meta["theta_arcmin"] == 0).any()  # still drawn
    assert list(b.meta["theta_arcmin"]) == list(c.meta["theta_arcmin"])  # same draws


def test_later_and_off_axis_give_fewer_counts_more_background() -> None:
    kw = {"seed": 12, "brightness": "counts", "pileup": False}  # the same sources, unpiled
    base = simulate(150, instrument=ON_AXIS_2001, **kw)
    late = simulate(150, instrument={**ON_AXIS_2001, "epoch_year": 2020.5}, **kw)
    far = simulate(150, instrument={**ON_AXIS_2001, "theta_arcmin": 9.0}, **kw)
    soft = base.grid.band_mask(0.5, 1.2)
    s_base, s_late = (x.expected_counts[:, soft].sum(1) for x in (base, late))
    assert (s_late < 0.8 * s_base).all()  # the contaminant
    assert (far.meta["truth_counts_b"] < base.meta["truth_counts_b"]).all()  # vignetting
    # Off-axis: a larger aperture and more background counts in it.
    assert (far.meta["truth_src_area_arcsec2"] > 2 * base.meta["truth_src_area_arcsec2"]).all()
    assert far.background.sum() > 2 * base.background.sum()
    # Counts through the reference response are what counts_range draws.
    assert np.array_equal(base.meta["truth_counts_ref_b"], late.meta["truth_counts_ref_b"])


def test_background_grows_with_theta_in_the_default_sky(sky) -> None:  # noqa: ANN001
    m = sky.meta
    per_s = sky.background.sum(1) / m["exposure_s"]
    near, far = m["theta_arcmin"] < 3, m["theta_arcmin"] > 7
    assert np.median(per_s[far]) > 2 * np.median(per_s[near])
    assert np.all(
        np.diff(m["truth_src_area_arcsec2"].to_numpy()[np.argsort(m["theta_arcmin"])]) >= 0
    )


def test_real_responses_mixed_with_the_family(real_spectra_dir: Path) -> None:
    real = [
        Response(read_arf(real_spectra_dir / "9774.arf"), read_rmf(real_spectra_dir / "9774.rmf")),
        Response(
            read_arf(real_spectra_dir / "acisf00308_000N001_r0044_arf3.fits"),
            read_rmf(real_spectra_dir / "acisf00308_000N001_r0044_rmf3.fits"),
        ),
    ]
    s = simulate(400, seed=5, responses=real, real_fraction=0.5)
    m = s.meta
    real_ids = ["9774.arf", "acisf00308_000N001_r0044_arf3.fits"]
    is_real = m["response_id"].isin(real_ids)
    assert 0.2 < is_real.mean() < 0.8
    assert (is_real.groupby(m["obsid"]).nunique() == 1).all()  # whole observations
    r308 = m["response_id"] == "acisf00308_000N001_r0044_arf3.fits"
    assert (m.loc[r308, "detector"] == "ACIS-I").all() and (m.loc[r308, "ccd_id"] == 3).all()
    net = m["net_counts_b"] / m["truth_counts_b"]
    assert 0.9 < np.median(net[is_real]) < 1.1
    only_real = simulate(100, seed=5, responses=real)
    assert (
        only_real.meta["response_id"].isin(["9774.arf", "acisf00308_000N001_r0044_arf3.fits"]).all()
    )


def test_responses_with_other_channel_counts_are_chunk_independent() -> None:
    ref = default_response()
    e = np.linspace(0.0, 14.6, 513)
    small = Response(ref.arf, gaussian_rmf(ref.rmf.energ_lo, ref.rmf.energ_hi, e[:-1], e[1:],
                                           np.full(ref.rmf.energ_lo.size, 0.15)))  # fmt: skip
    a = simulate(90, seed=2, responses=[small], real_fraction=0.5, chunk_size=7)
    b = simulate(90, seed=2, responses=[small], real_fraction=0.5, chunk_size=1000)
    assert np.array_equal(a.counts, b.counts) and np.array_equal(a.background, b.background)
    assert 0 < (a.meta["ccd_id"] == -1).sum() < 90


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"instrument": {"chip": "FI"}}, "unknown key"),
        ({"instrument": {"chip_type": "XX"}}, "chip_type"),
        ({"instrument": {"epoch_year": 1990.0}}, "epoch_year"),
        ({"instrument": {"theta_arcmin": -1.0}}, "theta_arcmin"),
        ({"response": default_response(), "instrument": {"chip_type": "FI"}}, "one response"),
        ({"responses": []}, "empty"),
        ({"real_fraction": 1.5}, "real_fraction"),
    ],
)
def test_bad_options_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate(5, **kwargs)
