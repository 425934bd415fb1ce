"""The CUDA paths against the CPU's: run only where a CUDA device is (marked cuda)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xlatent.model import SpectralAutoencoder

from .conftest import FAST
from .toy import piled_toy_set

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def piled_set():
    return piled_toy_set(400, seed=8)


@pytest.fixture(scope="module")
def cpu_model_dir(piled_set, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cpu") / "m"
    SpectralAutoencoder(4, epochs=3, device="cpu", **FAST).fit(piled_set).save(d)
    return d


def test_the_catalogue_encoded_on_cuda_is_the_cpus(piled_set, cpu_model_dir) -> None:
    # Every spectrum refined (the default), piled ones among them, the errors' Poisson draws
    # and the OOD score: the CPU's catalogue to the GPU's float precision (the shipped model
    # on 4,000 simulated spectra: latents 0.002 of their spread apart, median; 0.04 at most).
    cpu, gpu = (SpectralAutoencoder.load(cpu_model_dir, device=d).encode(piled_set)
                for d in ("cpu", "cuda"))  # fmt: skip
    dz = np.abs(gpu.latents - cpu.latents) / cpu.latents.std(0)
    assert np.median(dz) < 0.01 and np.quantile(dz, 0.99) < 0.1
    # Each error is a spread of 16 draws (~18% sampling noise each); their medians agree.
    np.testing.assert_allclose(np.median(gpu.errors, 0), np.median(cpu.errors, 0), rtol=0.1)
    assert np.median(np.abs(gpu.ood_score - cpu.ood_score)) < 0.05
    assert np.isfinite(gpu.deviance).all()


def test_a_model_fitted_on_cuda_reloads_there_bit_for_bit(piled_set, tmp_path: Path) -> None:
    m = SpectralAutoencoder(4, epochs=2, device="cuda", **FAST).fit(piled_set)
    m.save(tmp_path / "m")
    back = SpectralAutoencoder.load(tmp_path / "m", device="cuda")
    assert np.array_equal(back.transform(piled_set), m.transform(piled_set))
    assert np.array_equal(back.reconstruct(piled_set), m.reconstruct(piled_set))
