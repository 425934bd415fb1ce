"""Encode-time latent refinement (``refine_steps``): bright spectra get the decoder's best-fit
latent, started at the encoder's; faint ones keep the encoder's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xlatent.model import SpectralAutoencoder, load_model
from xlatent.model.preprocess import poisson_deviance, prepare

from .conftest import FAST
from .toy import piled_toy_set, toy_spectrum_set

FORMAT1 = Path(__file__).parent / "data" / "format1"


@pytest.fixture(scope="module")
def fitted() -> tuple[SpectralAutoencoder, object]:
    s = toy_spectrum_set(300, seed=2, counts_range=(20.0, 20000.0))
    return SpectralAutoencoder(4, epochs=3, **FAST).fit(s), s


def test_refinement_fits_bright_spectra_better_and_leaves_faint_ones(fitted, tmp_path) -> None:
    model, s = fitted
    model.save(tmp_path / "m")
    plain, refined = load_model(tmp_path / "m"), load_model(tmp_path / "m")
    plain.set_params(refine_steps=0)
    z0, r0 = plain.encode_and_reconstruct(s)
    refined.set_params(refine_steps=10, refine_min_counts=1000.0)
    z1, r1 = refined.encode_and_reconstruct(s)
    net = s.counts.sum(1) - s.background.sum(1)
    bright, faint = net >= 1000, net < 1000
    assert bright.sum() > 30 and faint.sum() > 30
    assert np.array_equal(z1[faint], z0[faint]) and np.array_equal(r1[faint], r0[faint])
    d0 = poisson_deviance(s.counts, r0 + s.background)
    d1 = poisson_deviance(s.counts, r1 + s.background)
    # Steps that do not lower deviance + prior (0 at the start) are refused: never worse.
    assert (d1[bright] <= d0[bright] * (1 + 1e-5)).all()
    assert (d1[bright] < d0[bright]).mean() > 0.9
    # one pass for both gives what the two separate calls give
    assert np.array_equal(refined.transform(s), z1)
    assert np.array_equal(refined.reconstruct(s), r1)
    # Without the prior (one too wide to matter) the fit goes further and fits better.
    refined.set_params(refine_prior_sigma=1e3)
    z2, r2 = refined.encode_and_reconstruct(s)
    d2 = poisson_deviance(s.counts, r2 + s.background)
    assert d2[bright].sum() < min(0.99 * d0[bright].sum(), d1[bright].sum())
    moved = np.linalg.norm(z1 - z0, axis=1)[bright], np.linalg.norm(z2 - z0, axis=1)[bright]
    assert np.median(moved[0]) < np.median(moved[1])


def test_refine_options_are_saved_and_older_files_do_not_refine(fitted, tmp_path) -> None:
    model, s = fitted
    before = model.get_params()
    keys = ("refine_steps", "refine_min_counts", "refine_prior_sigma")
    model.set_params(refine_steps=5, refine_min_counts=300.0, refine_prior_sigma=0.7)
    try:
        model.save(tmp_path / "m")
        back = load_model(tmp_path / "m")
        assert tuple(getattr(back, k) for k in keys) == (5, 300.0, 0.7)
        assert np.array_equal(back.transform(s), model.transform(s))
    finally:  # the module's fixture, as the other tests find it
        model.set_params(**{k: before[k] for k in keys})
    old = load_model(FORMAT1 / "mlp")
    assert old.refine_steps == 0 and old.refine_prior_sigma == 0.2


@pytest.mark.parametrize(("key", "bad"), [("refine_steps", -1), ("refine_steps", 1.5),
                                          ("refine_min_counts", -3.0),
                                          ("refine_prior_sigma", 0.0)])  # fmt: skip
def test_bad_refine_options_are_refused(key: str, bad: object) -> None:
    with pytest.raises(ValueError, match=key):
        SpectralAutoencoder(**{key: bad})


@pytest.mark.parametrize("pileup_orders", [0, 3])
def test_the_transformer_decoder_refines_too(pileup_orders: int) -> None:
    # Its fused inference layer has no forward-mode derivative: refinement by forward-mode
    # AD used to crash every encode of a set with a bright spectrum.
    import torch

    s = toy_spectrum_set(120, seed=5, counts_range=(20.0, 20000.0))
    s.meta["frame_time_s"], s.meta["psf_core_fraction"] = 3.241, 0.79
    model = SpectralAutoencoder(4, decoder="transformer", pileup_orders=pileup_orders,
                                epochs=1, **FAST).fit(s)  # fmt: skip
    bright = s.counts.sum(1) - s.background.sum(1) >= model.refine_min_counts
    assert model.refine_steps >= 1 and bright.sum() > 10
    z, r = model.encode_and_reconstruct(s)
    z0, r0 = model.set_params(refine_steps=0).encode_and_reconstruct(s)
    assert np.array_equal(z[~bright], z0[~bright]) and not np.array_equal(z[bright], z0[bright])
    d, d0 = (poisson_deviance(s.counts, x + s.background)[bright] for x in (r, r0))
    assert (d <= d0 * (1 + 1e-5)).all() and d.sum() < d0.sum()
    assert torch.backends.mha.get_fastpath_enabled()  # the fast path is back on after


def test_a_latent_never_depends_on_the_other_spectra_in_its_batch() -> None:
    # Piled and refined spectra among others: the catalogue of the whole set is the one of
    # any cut of it, bit for bit (the parallel encode writes blocks; `--workers` must not
    # change a number).
    s = piled_toy_set(200, seed=4)
    model = SpectralAutoencoder(
        4, pileup_orders=3, refine_steps=5, refine_min_counts=1000.0, epochs=2, **FAST
    ).fit(s)
    net = s.counts.sum(1) - s.background.sum(1)
    piled = prepare(s).pileup[:, 0] >= 0.01
    assert (piled & (net >= 1000)).sum() > 5 and (~piled & (net >= 1000)).sum() > 5
    assert all(((net >= 1000)[a:b]).sum() % 8 for a, b in ((48, 64), (64, 120)))
    z, r = model.encode_and_reconstruct(s)
    # Cuts at multiples of 8 spectra: the CPU matmuls were seen to round the rows past the
    # last multiple of 8 of a batch differently, for the encoder as for the decoder, as they
    # always have; the parallel encode's blocks are multiples of 8.
    cuts = [(0, 48), (48, 64), (64, 120), (120, 200)]
    parts = [model.encode_and_reconstruct(s[a:b]) for a, b in cuts]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), z)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), r)


def test_refined_latents_do_not_depend_on_torch_threads(fitted) -> None:
    # Each chunk is refined on one thread, the chunks shared out over torch's threads (a
    # gradient summed over threads rounds differently): more threads may change the speed
    # only, never a number.
    import torch

    from xlatent.model.parallel_encode import torch_threads
    from xlatent.model.refine import REFINE_CHUNK

    model, _ = fitted
    s = toy_spectrum_set(1000, seed=9, counts_range=(500.0, 20000.0))
    assert (
        s.counts.sum(1) - s.background.sum(1) >= model.refine_min_counts
    ).sum() > 3 * REFINE_CHUNK
    before = model.refine_steps
    model.set_params(refine_steps=4)
    try:
        with torch_threads(1):
            one = model.transform(s)
        with torch_threads(3):
            three = model.transform(s)
            assert torch.get_num_threads() == 3  # the refinement gives its threads back
    finally:
        model.set_params(refine_steps=before)
    assert np.array_equal(one, three)


def test_refinement_raises_no_warning_in_a_fresh_process(tmp_path) -> None:
    # torch's first forward-mode pass warns (a deprecation inside torch); with warnings as
    # errors (`python -W error`, or a filter leaked by other code) encoding must still work.
    import subprocess
    import sys

    code = (
        "from xlatent.model import SpectralAutoencoder\n"
        "from tests.model.toy import toy_spectrum_set\n"
        "s = toy_spectrum_set(80, seed=1, counts_range=(2000.0, 5000.0))\n"
        "m = SpectralAutoencoder(4, epochs=1, refine_steps=1, d_model=16, ff_dim=32,\n"
        "                        n_layers=1, decoder_hidden=32, device='cpu', progress=False)\n"
        "print(m.fit(s).transform(s).shape)\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], cwd=root, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(80, 4)"


def test_piled_and_unpiled_spectra_are_refined_in_chunks_of_their_own(monkeypatch) -> None:
    # A chunk with one piled spectrum pays the pile-up's FFTs for all its rows; the set is
    # refined as a whole (not batch by batch), so the chunks fill with one kind each.
    from xlatent.model import refine

    s = piled_toy_set(200, seed=4)
    model = SpectralAutoencoder(
        4, pileup_orders=3, refine_steps=1, refine_min_counts=1000.0, epochs=1, **FAST
    ).fit(s)
    piled = prepare(s).pileup[:, 0] >= 0.01
    bright = s.counts.sum(1) - s.background.sum(1) >= 1000
    seen: list[np.ndarray] = []
    inner = refine._refine
    monkeypatch.setattr(refine, "_refine", lambda *a: seen.append(a[3]) or inner(*a))
    z = model.transform(s, batch_size=16)  # 13 batches, but chunks across them
    kinds = [(bright & piled).sum(), (bright & ~piled).sum()]
    assert min(kinds) > 5 and len(seen) == sum(-(-k // refine.REFINE_CHUNK) for k in kinds)
    assert all(piled[rows].all() or not piled[rows].any() for rows in seen)
    assert set(np.concatenate(seen)) == set(np.flatnonzero(bright))
    monkeypatch.setattr(refine, "_refine", inner)
    assert np.array_equal(model.transform(s, batch_size=512), z)


@pytest.mark.parametrize(("decoder", "piled"), [("mlp", False), ("mlp", True),
                                                 ("transformer", False)])  # fmt: skip
def test_forward_difference_jacobian_matches_the_exact_derivative(
    decoder: str, piled: bool
) -> None:
    import torch

    from xlatent.model.refine import log_shape_and_jacobian

    s = toy_spectrum_set(40, seed=6, counts_range=(200.0, 20000.0))
    s.meta["frame_time_s"], s.meta["psf_core_fraction"] = 3.241, 0.79
    if piled:
        s.exposure_s[:] = 1000.0  # bright in a short exposure: every spectrum piles
    model = SpectralAutoencoder(4, decoder=decoder, epochs=1, **FAST).fit(s)
    prep = prepare(s)
    assert bool((prep.pileup[:, 0] >= 0.01).all()) is piled
    net, z = model.net_, torch.as_tensor(model.transform(s), dtype=torch.float32)
    log_area = torch.as_tensor(prep.log_area, dtype=torch.float32)
    pileup = torch.as_tensor(prep.pileup, dtype=torch.float32)
    d = z.shape[1]
    with torch.no_grad():
        log_p, jac = log_shape_and_jacobian(
            net, z, *(torch.cat([a, a.repeat_interleave(d, 0)]) for a in (log_area, pileup))
        )
        assert torch.allclose(log_p, net.log_shape(z, log_area, pileup), atol=1e-5)
    # Reverse mode, with gradients on: the transformer's fused layer (taken without) has no
    # derivative.
    want = torch.stack([  # (n, d, m)
        torch.func.jacrev(lambda w, i=i: net.log_shape(w[None], log_area[i : i + 1],
                                                       pileup[i : i + 1])[0])(z[i]).T.detach()
        for i in range(len(z))
    ])  # fmt: skip
    # Forward differences err by ~ step/2 x the second derivative: < 1% here.
    assert (jac - want).abs().max() <= 0.01 * want.abs().max()
    assert (jac - want).norm() <= 0.01 * want.norm()
