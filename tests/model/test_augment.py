"""Consistency training: the augmented copies (another instrument, fewer photons) and the loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xlatent.core import SpectrumSet
from xlatent.model import SpectralAutoencoder
from xlatent.model.augment import (
    area_ratio,
    augment,
    batch_tensors,
    resample,
    step_generator,
)
from xlatent.model.preprocess import prepare
from xlatent.model.training import training_tensors

from .conftest import FAST, STORED, assert_option_changes_training_reproducibly, make_tiny_set
from .toy import toy_spectrum_set

CPU = torch.device("cpu")
FORMAT1 = Path(__file__).parent / "data" / "format1"


def _tensors(s: SpectrumSet) -> dict[str, torch.Tensor]:
    return training_tensors(prepare(s), CPU)


def test_batch_tensors_are_what_prepare_gives(toy_set) -> None:
    d = _tensors(toy_set)
    b = batch_tensors(d["counts"], d["background"], d["log_area"], d["pileup"])
    assert set(b) == set(d)
    for k, want in d.items():
        got = b[k]
        assert got.shape == want.shape, k
        fin = torch.isfinite(want)
        assert torch.equal(fin, torch.isfinite(got)), k
        torch.testing.assert_close(got[fin], want[fin], rtol=1e-5, atol=1e-4, msg=k)


def test_thinning_by_one_is_the_identity_and_keeps_background() -> None:
    s = make_tiny_set()
    c = torch.as_tensor(s.counts, dtype=torch.float32)
    b = torch.as_tensor(s.background, dtype=torch.float32)
    new_c, new_b = resample(c, b, torch.ones_like(c), step_generator(0, 0, 0, CPU))
    assert torch.equal(new_c, c) and torch.equal(new_b, b)


@pytest.mark.parametrize("q", [0.3, 2.5])
def test_resampled_counts_have_q_times_the_expectation(q: float) -> None:
    # 2,000 copies of one spectrum with integer and fractional counts: the mean per bin is
    # q * counts (binomial thinning below 1, an added Poisson draw above), never negative.
    c = torch.tensor([[0.0, 1.0, 3.0, 7.5, 40.0, 200.0]]).repeat(2000, 1)
    b = torch.full_like(c, 0.2)
    new_c, new_b = resample(c, b, torch.full_like(c, q), step_generator(1, 2, 3, CPU))
    assert (new_c >= 0).all() and torch.equal(new_c, torch.round(new_c))
    torch.testing.assert_close(new_b, b * q)
    mean = new_c.mean(0)
    err = 4 * torch.sqrt(q * c[0] + 1) / np.sqrt(2000)  # 4 sigma, and slack for the 0 bin
    assert ((mean - q * c[0]).abs() <= err).all(), (mean, q * c[0])
    assert float(new_c[:, 0].max()) == 0.0


def test_area_ratio_keeps_the_net_total_and_follows_the_area() -> None:
    s = toy_spectrum_set(50, seed=5)
    d = _tensors(s)
    new_log_area = d["log_area"].flip(0)
    r = area_ratio(d["counts"], d["background"], d["log_area"], new_log_area)
    net = (d["counts"] - d["background"]).clamp_min(0)
    torch.testing.assert_close((net * r).sum(1), net.sum(1), rtol=1e-4, atol=1e-3)
    # Up to the per-spectrum normalisation r is A'/A (none reaches the cap here).
    log_r = torch.log(r) - (new_log_area - d["log_area"])
    assert float((log_r - log_r.mean(1, keepdim=True)).abs().max()) < 1e-4


def test_augmented_batch_is_valid_fainter_and_through_other_areas() -> None:
    s = toy_spectrum_set(400, seed=6)
    d = _tensors(s)
    a = augment(d, step_generator(0, 1, 2, CPU))
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in d.items()}
    assert (a["counts"] >= 0).all() and (a["background"] >= 0).all()
    for k in ("feats", "glob", "log_amp", "clogc", "mse_target"):
        assert torch.isfinite(a[k]).all(), k
    # Each copy wears another spectrum's area curve (a permutation of the batch's).
    rows = {tuple(r) for r in d["log_area"].numpy().round(5)}
    assert all(tuple(r) in rows for r in a["log_area"].numpy().round(5))
    assert not torch.equal(a["log_area"], d["log_area"])
    # Thinned by a log-uniform factor in [0.1, 1]: its mean is 0.9 / ln 10 = 0.39.
    ratio = float(a["counts"].sum() / d["counts"].sum())
    assert 0.2 < ratio < 0.6
    # Same (seed, epoch, step): the same copy; another step: another.
    again = augment(d, step_generator(0, 1, 2, CPU))
    assert torch.equal(again["counts"], a["counts"])
    assert not torch.equal(augment(d, step_generator(0, 1, 3, CPU))["counts"], a["counts"])


def test_consistency_zero_trains_as_before() -> None:
    # expected.npz was written by the code before consistency training existed (commit
    # 77ba7f9, tests/model/data/format1/README.md): retraining with the same options today,
    # consistency left at 0, must give the same latents (to float precision: STORED).
    tiny = dict(
        latent_dim=2, d_model=8, n_heads=2, n_layers=1, ff_dim=8, n_freqs=2, decoder_hidden=8,
        decoder_layers=1, epochs=3, patience=100, batch_size=16, seed=5, progress=False,
        num_threads=1,
    )  # fmt: skip
    threads = torch.get_num_threads()
    try:
        # The options that came after it, off: pile-up (an encoder input more), refinement and
        # the photon channel.
        # Since 2026-12-04 the defaults also train with count-aware latent noise: off here.
        m = SpectralAutoencoder(decoder="mlp", consistency=0.0, latent_noise=0.0,
                                pileup_orders=0, refine_steps=0, photon_channel=False,
                                **tiny).fit(make_tiny_set())  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    expected = np.load(FORMAT1 / "expected.npz")
    np.testing.assert_allclose(m.transform(make_tiny_set()), expected["mlp_z"], **STORED)


def _tilted(n: int, seed: int) -> SpectrumSet:
    """Toy spectra through strongly differing area curves: each toy area tilted by
    (E / 2 keV)^k, k uniform in [-1.5, 1.5], and the counts drawn through it."""
    s = toy_spectrum_set(n, seed=seed)
    rng = np.random.default_rng(seed + 100)
    tilt = (s.grid.centers_kev[None, :] / 2.0) ** rng.uniform(-1.5, 1.5, n)[:, None]
    src = s.expected_counts * tilt
    src *= (s.expected_counts.sum(1) / src.sum(1))[:, None]
    return SpectrumSet(
        grid=s.grid, counts=rng.poisson(src + s.background).astype(float),
        background=s.background, exposure_s=s.exposure_s,
        effective_area_cm2=s.effective_area_cm2 * tilt, meta=s.meta.copy(), expected_counts=src,
    )  # fmt: skip


def _through_other_areas(s: SpectrumSet, seed: int) -> tuple[SpectrumSet, SpectrumSet]:
    """The sources' noiseless spectra through their own area and through another's."""
    perm = np.random.default_rng(seed).permutation(len(s))
    area = s.effective_area_cm2
    ratio = area[perm] / area
    src = s.expected_counts
    swapped = src * ratio * (src.sum(1) / (src * ratio).sum(1))[:, None]
    own = SpectrumSet(
        grid=s.grid, counts=src + s.background, background=s.background,
        exposure_s=s.exposure_s, effective_area_cm2=area, meta=s.meta.copy(),
    )  # fmt: skip
    other = SpectrumSet(
        grid=s.grid, counts=swapped + s.background, background=s.background,
        exposure_s=s.exposure_s, effective_area_cm2=area[perm], meta=s.meta.copy(),
    )  # fmt: skip
    return own, other


def test_consistency_training_pulls_instrument_swapped_copies_together() -> None:
    # The same small run without and with the consistency term; the distance between each
    # held-out source's noiseless spectrum and the same source through another area curve,
    # in units of the latents' spread, must fall by a tenth (measured: 0.130 without, 0.100
    # with; a modest effect, as on the simulated sky: see the README).
    train = _tilted(300, seed=21)
    own, other = _through_other_areas(_tilted(200, seed=22), seed=0)
    # The encoder's own latents: refinement would fit each copy through its own area.
    # The area swap alone (the defaults since 2026-12-04 thin only, with latent noise).
    opts = dict(latent_dim=4, epochs=12, batch_size=50, val_fraction=0.0, patience=100, seed=3,
                refine_steps=0, augment="area+thin", latent_noise=0.0)  # fmt: skip
    dist = {}
    for w in (0.0, 1.0):
        m = SpectralAutoencoder(consistency=w, **opts, **FAST).fit(train)
        z, z_other = m.transform(own), m.transform(other)
        spread = np.sqrt(z.var(0).sum())
        dist[w] = float(np.median(np.linalg.norm(z - z_other, axis=1)) / spread)
    assert dist[1.0] < 0.9 * dist[0.0], dist


def test_thin_mode_keeps_each_spectrums_own_area() -> None:
    s = toy_spectrum_set(200, seed=7)
    d = _tensors(s)
    a = augment(d, step_generator(0, 1, 2, CPU), mode="thin")
    assert torch.equal(a["log_area"], d["log_area"])
    assert (a["counts"] <= torch.ceil(d["counts"])).all()  # thinning only, no added photons
    assert 0.2 < float(a["counts"].sum() / d["counts"].sum()) < 0.6


def test_latent_noise_changes_training_not_the_options_check() -> None:
    with pytest.raises(ValueError, match="latent_noise"):
        SpectralAutoencoder(latent_noise=-0.1)
    with pytest.raises(ValueError, match="augment"):
        SpectralAutoencoder(augment="rotate")
    assert_option_changes_training_reproducibly(latent_noise=0.5)


def test_files_from_before_the_regularisers_read_them_as_off(tmp_path: Path) -> None:
    # The defaults train with latent noise and thin consistency since 2026-12-04; a model.json
    # written before those keys existed was trained without them and must say so.
    old = SpectralAutoencoder.load(FORMAT1 / "mlp")
    assert (old.latent_noise, old.latent_noise_counts, old.consistency) == (0.0, 0.0, 0.0)
    assert (old.augment, old.contrastive, old.polish_epochs) == ("area+thin", 0.0, 0)
    new = SpectralAutoencoder()
    assert (new.latent_noise, new.latent_noise_counts) == (0.3, 300.0)
    assert (new.consistency, new.augment) == (0.3, "thin")
    # A model saved today keeps what it was trained with, defaults included.
    m = SpectralAutoencoder(latent_dim=2, epochs=1, **FAST).fit(make_tiny_set())
    m.save(tmp_path / "m")
    back = SpectralAutoencoder.load(tmp_path / "m")
    assert (back.latent_noise, back.consistency, back.augment) == (0.3, 0.3, "thin")
