"""Pile-up in the decoder (``pileup_orders``): the grid kernel against the simulator's channel
pile-up, the rate estimate from observables against the simulator's truth, and the model's
plumbing (unpiled rows untouched, gradients, save/load, older files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xlatent.core import EnergyGrid
from xlatent.instrument.acis import default_response
from xlatent.io.grid_mapper import GridMapper
from xlatent.model import SpectralAutoencoder, load_model
from xlatent.model.network import InstrumentResponse
from xlatent.model.pileup import Pileup, pileup_inputs
from xlatent.model.preprocess import poisson_deviance, prepare
from xlatent.physics.pileup import channel_shift, pile

from .conftest import FAST
from .toy import toy_spectrum_set

FORMAT1 = Path(__file__).parent / "data" / "format1"
GRID = EnergyGrid.default()


def _channel_spectrum(gamma: float, nh_1e22: float) -> np.ndarray:
    r = default_response()
    e = 0.5 * (r.rmf.energ_lo + r.rmf.energ_hi)
    flux = e**-gamma * (r.rmf.energ_hi - r.rmf.energ_lo) * np.exp(-2.0 * nh_1e22 * e**-2.6)
    return r.fold(flux, 1.0)


CASES = [(1.7, 0.05, 0.6, 0.79), (2.0, 1.0, 1.2, 0.5), (1.0, 3.0, 0.3, 0.3)]


@pytest.mark.parametrize(("gamma", "nh", "lam", "core"), CASES)
def test_the_grid_kernel_reproduces_the_simulators_channel_pileup(
    gamma: float, nh: float, lam: float, core: float
) -> None:
    rmf = default_response().rmf
    chan = _channel_spectrum(gamma, nh)
    to_grid = GridMapper(GRID).channel_matrix(rmf)
    incident = chan @ to_grid
    piled = pile(chan[None], np.array([lam]), channel_shift(rmf.e_min, rmf.e_max),
                 core=np.array([core]))[0] @ to_grid  # fmt: skip
    n = 5.0e4  # a bright spectrum: Poisson deviance ~1 per bin
    observed = piled / piled.sum() * n
    p = torch.tensor(incident / incident.sum(), dtype=torch.float32)[None]
    model = Pileup(GRID.edges_kev, 3)(p, torch.tensor([[lam, core]]))[0].double().detach()
    model = model.numpy() / float(model.sum()) * n
    dev_model = poisson_deviance(observed, model) / GRID.n_bins
    dev_unpiled = poisson_deviance(observed, incident / incident.sum() * n) / GRID.n_bins
    assert dev_model < min(0.03, 0.1 * dev_unpiled)  # a tenth of the distortion at most


def test_rate_per_frame_from_observables_matches_the_simulators_truth() -> None:
    from xlatent.core.pileup import pileup_fraction
    from xlatent.physics.simulator import simulate

    s = simulate(3000, seed=3, counts_range=(5e3, 2e5), brightness="counts")
    lam = pileup_inputs(s, prepare(s).amplitude)
    grid = np.logspace(-7, 1, 4000)
    true = np.interp(s.meta["pileup_fraction"], pileup_fraction(grid), grid)
    ok = (true > 0.02) & (true < 2.0)
    assert ok.sum() > 50
    ratio = lam[ok, 0] / true[ok]
    assert 0.9 < np.median(ratio) < 1.05
    core = s.meta["psf_core_fraction"].to_numpy()
    assert np.array_equal(lam[:, 1], core) and ((core > 0) & (core < 0.8)).all()


def test_sets_without_the_columns_are_not_piled() -> None:
    s = toy_spectrum_set(20, seed=0)
    assert not (pileup_inputs(s, prepare(s).amplitude)).any()
    s.meta["frame_time_s"] = np.nan
    s.meta["psf_core_fraction"] = 0.79
    assert not prepare(s).pileup.any()


def test_unpiled_rows_are_the_plain_softmax_and_piled_ones_learn() -> None:
    logits, log_area = torch.randn(3, 128, requires_grad=True), torch.randn(3, 128)
    ir = InstrumentResponse(True, GRID.edges_kev, 0, pileup_orders=3)
    pu = torch.tensor([[0.0, 0.79], [1e-4, 0.79], [0.8, 0.79]])
    out = ir(logits, log_area, pu)
    plain = torch.log_softmax(logits + log_area, dim=-1)
    assert torch.equal(out[:2], plain[:2])
    assert torch.allclose(torch.logsumexp(out[2], 0), torch.tensor(0.0), atol=1e-5)
    assert not torch.allclose(out[2], plain[2], atol=1e-2)
    assert torch.equal(ir(logits, log_area, None), plain)  # no inputs: no pile-up
    out[2].sum().backward()
    assert logits.grad[2].abs().sum() > 0 and ir.pileup.log_lam_scale.grad is not None


def test_a_model_with_pileup_saves_and_loads_bit_for_bit(tmp_path: Path) -> None:
    s = toy_spectrum_set(200, seed=1)
    s.meta["frame_time_s"], s.meta["psf_core_fraction"] = 3.241, 0.79
    # 20-5000 counts in 200 s: up to ~0.6 incident counts per frame; in 1e6 s: none
    s.exposure_s[:] = np.where(np.arange(len(s)) % 2, 200.0, 1e6)
    prep = prepare(s)
    assert (prep.pileup[:, 0] > 0.1).sum() > 20
    m = SpectralAutoencoder(3, pileup_orders=3, epochs=2, **FAST).fit(s)
    m.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.pileup_orders == 3
    piled = back.reconstruct(s)
    assert np.array_equal(piled, m.reconstruct(s))
    s.meta["frame_time_s"] = np.nan  # now nothing piles
    plain, faint = back.reconstruct(s), prep.pileup[:, 0] < 1e-3
    assert faint.any() and np.allclose(plain[faint], piled[faint], rtol=1e-3)
    assert not np.allclose(plain[~faint], piled[~faint], rtol=1e-3)
    assert load_model(FORMAT1 / "mlp").pileup_orders == 0  # older files: no pile-up


@pytest.mark.parametrize("bad", [-1, 5, 2.5, True])
def test_bad_pileup_orders_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="pileup_orders must be an integer"):
        SpectralAutoencoder(pileup_orders=bad)


def test_the_encoder_is_told_the_rate_only_when_the_model_piles() -> None:
    assert SpectralAutoencoder(pileup_orders=3).arch.n_global == 3
    assert SpectralAutoencoder(pileup_orders=0).arch.n_global == 2
    s = toy_spectrum_set(8, seed=0)
    s.meta["frame_time_s"], s.meta["psf_core_fraction"] = 3.241, 0.79
    s.exposure_s[:] = 100.0
    glob = prepare(s).global_features
    assert glob.shape == (8, 3) and (glob[:, 2] > 0).all()


def test_error_draws_keep_each_spectrums_pileup() -> None:
    from xlatent.model.uncertainty import resampled_set

    s = toy_spectrum_set(5, seed=0)
    s.meta["frame_time_s"], s.meta["psf_core_fraction"] = 3.241, np.linspace(0.2, 0.79, 5)
    s.exposure_s[:] = 100.0
    draws = resampled_set(s, np.repeat(s.counts, 3, axis=0), 3)
    assert np.array_equal(prepare(draws).pileup, np.repeat(prepare(s).pileup, 3, axis=0))
