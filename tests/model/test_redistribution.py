"""The instrument module's energy redistribution (``redistribution`` = k > 0): the detector's
smoothing applied after the effective area's sharp edges, learned, started at an ACIS-like
Gaussian; k = 0 is the area alone, as every model before it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xlatent.core import EnergyGrid
from xlatent.model import SpectralAutoencoder, load_model
from xlatent.model.network import InstrumentResponse, redistribution_init

from .conftest import FAST
from .toy import toy_spectrum_set

FORMAT1 = Path(__file__).parent / "data" / "format1"
EDGES = EnergyGrid.default().edges_kev


def test_no_redistribution_is_the_area_and_a_softmax() -> None:
    logits, log_area = torch.randn(4, 128), torch.randn(4, 128)
    out = InstrumentResponse(True, EDGES, 0)(logits, log_area)
    assert torch.equal(out, torch.log_softmax(logits + log_area, dim=-1))
    assert not list(InstrumentResponse(True, EDGES, 0).parameters())


def test_the_matrix_is_banded_positive_and_wider_in_bins_at_low_energy() -> None:
    ir = InstrumentResponse(True, EDGES, 8)
    m = ir.matrix().detach().numpy()
    j, i = np.indices(m.shape)
    assert (m[np.abs(i - j) > 8] == 0).all() and (m >= 0).all()
    assert (m[np.abs(i - j) <= 1] > 0).all()
    assert (m.sum(axis=1) <= 1 + 1e-6).all()
    assert (m.argmax(axis=1) == np.arange(128)).all()  # centred on the photon's own bin
    # ACIS resolution ~ constant in keV against log-spaced bins: more bins wide at 0.5 keV
    assert m[0, 0] < m[64, 64] < m[127, 127]
    sigma = np.sqrt(-0.5 / redistribution_init(EDGES, 8)[:, 9])  # offset +1 in bins
    assert 2.0 < sigma[0] < 4.5 and 0.3 < sigma[-1] < 0.6


def _fit_shared_shape(half: int, observed: torch.Tensor, log_areas: torch.Tensor) -> float:
    """Deviance per bin of the best single photon shape for spectra seen through two areas."""
    torch.manual_seed(0)
    ir = InstrumentResponse(True, EDGES, half)
    for p in ir.parameters():
        p.requires_grad_(False)
    logits = torch.zeros(1, 128, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)
    n = observed.sum(dim=1, keepdim=True)
    for _ in range(1500):
        opt.zero_grad()
        mu = n * torch.exp(ir(logits.expand(2, -1), log_areas))
        dev = 2 * (observed * torch.log(observed / mu) - (observed - mu)).sum()
        dev.backward()
        opt.step()
    return float(dev.detach()) / observed.numel()


def test_one_shape_through_two_edged_areas_needs_the_redistribution() -> None:
    # Two areas with a Si-K-like step of different depths at 1.84 keV; counts = the
    # detector's smoothing of area x photons (the start matrix stands for the detector).
    e = np.sqrt(EDGES[:-1] * EDGES[1:])
    phot = e**-1.7 * np.exp(-0.3 * e**-2.6)
    areas = np.stack([np.where(e < 1.84, 1.0, 0.5), np.where(e < 1.84, 1.0, 0.9)])
    detector = InstrumentResponse(True, EDGES, 8).matrix().detach().numpy()
    expected = (areas * phot) @ detector
    observed = torch.tensor(1e5 * expected / expected.sum(1, keepdims=True), dtype=torch.float32)
    log_areas = torch.tensor(np.log(areas / areas.mean(1, keepdims=True)), dtype=torch.float32)
    with_redist = _fit_shared_shape(8, observed, log_areas)
    area_only = _fit_shared_shape(0, observed, log_areas)
    assert with_redist < 0.01 < area_only  # the area alone leaves the edge's residuals


def test_a_model_with_redistribution_saves_and_loads_bit_for_bit(tmp_path: Path) -> None:
    s = toy_spectrum_set(200, seed=1)
    m = SpectralAutoencoder(3, redistribution=4, epochs=2, **FAST).fit(s)
    m.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.redistribution == 4
    assert np.array_equal(back.reconstruct(s), m.reconstruct(s))
    assert np.array_equal(back.transform(s), m.transform(s))
    w = back.net_.instrument.redist_logits.detach()
    assert not torch.equal(w, torch.tensor(redistribution_init(s.grid.edges_kev, 4)).float())


def test_older_model_files_load_without_the_field() -> None:
    import json

    cfg = json.loads((FORMAT1 / "mlp" / "model.json").read_text())["config"]["arch"]
    assert "redistribution" not in cfg
    assert load_model(FORMAT1 / "mlp").redistribution == 0


@pytest.mark.parametrize("bad", [-1, 33, 2.5, True])
def test_bad_redistribution_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="redistribution must be an integer"):
        SpectralAutoencoder(redistribution=bad)
