"""physics.brightness / detect: per-class fluxes and exposures, S/N-selected detections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xlatent.physics.brightness import TD_BRIGHTNESS, brightness_model, snr, td_brightness
from xlatent.physics.simulator import simulate


@pytest.fixture(scope="module")
def balanced():  # noqa: ANN201
    return simulate(1200, seed=3, class_mix="balanced", chunk_size=500)


def test_detections_only_and_same_set_whatever_the_batching(balanced) -> None:  # noqa: ANN001
    m = balanced.meta
    assert (m["snr_b"] >= 3.0).all()
    other = simulate(1200, seed=3, class_mix="balanced", chunk_size=2000)
    assert np.array_equal(balanced.counts, other.counts)
    assert np.array_equal(balanced.background, other.background)
    assert m["truth_flux_b"].equals(other.meta["truth_flux_b"])
    # The detections are a selection: sources near the threshold are there, not below it.
    assert (m["snr_b"] < 4.0).mean() > 0.05
    strict = simulate(100, seed=3, snr_min=8.0).meta
    assert (strict["snr_b"] >= 8.0).all()


def test_no_selection_with_counts_brightness() -> None:
    m = simulate(200, seed=4, brightness="counts", counts_range=(2.0, 10.0)).meta
    assert (m["snr_b"] < 3.0).mean() > 0.3
    assert m["truth_counts_ref_b"].between(2.0, 10.0).all()


def test_class_flux_ordering(balanced) -> None:  # noqa: ANN001
    med = balanced.meta.groupby("source_class")["truth_flux_b"].median()
    assert med.idxmax() == "HMXB" and med.idxmin() == "HM-STAR"
    # Long exposures where TD's S/N per unit flux is high (YSO fields), short for HMXBs.
    exp = balanced.meta.groupby("source_class")["exposure_s"].median()
    assert exp["YSO"] > 3 * exp["AGN"] > 3 * exp["HMXB"]


def test_embedded_numbers_recomputed_from_td(td_csv: Path) -> None:
    assert td_brightness(td_csv) == TD_BRIGHTNESS
    assert brightness_model(td_csv) == brightness_model()


def test_snr_definition() -> None:
    # 100 source-region counts, 200 background counts in a 20x larger region: net 90.
    assert snr(np.array([100]), np.array([200]), np.array([20.0]))[0] == pytest.approx(
        90 / np.sqrt(100 + 200 / 400)
    )
    assert snr(np.array([0]), np.array([0]), np.array([20.0]))[0] == 0.0


def test_snr_is_that_of_the_written_spectrum(tmp_path: Path) -> None:
    """The 0.5-7 keV channels of each spectrum hold exactly the counts drawn at detection."""
    from astropy.io import fits

    from xlatent.io.ogip_response import read_rmf
    from xlatent.physics.brightness import snr as significance

    s = simulate(30, seed=5, write_pha=tmp_path)
    for spec_id, want in zip(s.meta["spec_id"], s.meta["snr_b"], strict=True):
        with (
            fits.open(tmp_path / f"{spec_id}.pha") as src,
            fits.open(tmp_path / f"{spec_id}_bkg.pha") as bkg,
        ):
            h, hb = src["SPECTRUM"].header, bkg["SPECTRUM"].header
            rmf = read_rmf(tmp_path / h["RESPFILE"], cache=None)
            centre = 0.5 * (rmf.e_min + rmf.e_max)
            band = (centre >= 0.5) & (centre < 7.0)
            n_src = np.asarray(src["SPECTRUM"].data["COUNTS"])[band].sum()
            n_bkg = np.asarray(bkg["SPECTRUM"].data["COUNTS"])[band].sum()
            got = significance(n_src, n_bkg, hb["BACKSCAL"] / h["BACKSCAL"])
        assert got == pytest.approx(want, rel=1e-9) and got >= 3.0
