"""Small SpectrumSets for the model tests (built with the core constructor)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from xlatent.core import EnergyGrid, SpectrumSet

from .toy import toy_spectrum_set

# Two cores: more threads only add contention; fixed threads also keep results reproducible.
torch.set_num_threads(min(2, torch.get_num_threads()))

#: Fast options for tests: a small network and a few epochs.
FAST = {"d_model": 32, "ff_dim": 64, "n_layers": 1, "decoder_hidden": 64, "progress": False}


@pytest.fixture(scope="session")
def toy_set() -> SpectrumSet:
    return toy_spectrum_set(300, seed=3)


@pytest.fixture()
def tiny_set() -> SpectrumSet:
    """Built directly with the core constructor: 40 power-law-ish spectra, 32 bins."""
    rng = np.random.default_rng(0)
    grid = EnergyGrid.log(0.5, 8.0, 32)
    e = grid.centers_kev
    gamma = rng.uniform(1, 3, 40)
    shape = e[None, :] ** -gamma[:, None]
    expected = shape / shape.sum(1, keepdims=True) * rng.uniform(50, 500, 40)[:, None]
    bkg = np.full((40, 32), 0.05)
    return SpectrumSet(
        grid=grid,
        counts=rng.poisson(expected + bkg).astype(float),
        background=bkg,
        exposure_s=np.full(40, 1e4),
        effective_area_cm2=np.full((40, 32), 400.0),
        meta=pd.DataFrame({"spec_id": [f"s{i}" for i in range(40)], "gamma": gamma}),
        expected_counts=expected,
    )
