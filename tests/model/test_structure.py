"""The model package (issue 11): the estimator contract, the network's composition, and
checkpoints of format 1 still read as written. (Import cycles and module sizes of the whole
package: tests/test_structure.py.)"""

from __future__ import annotations

import inspect
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from xlatent.model import MODEL_KINDS, PCABaseline, SpectralAutoencoder, load_model
from xlatent.model.checkpoint import KINDS
from xlatent.model.network import DECODERS, InstrumentResponse, SpectrumEncoder
from xlatent.model.options import ARCH_OPTIONS, ArchConfig, TrainConfig

from .conftest import FAST, STORED, make_tiny_set

FORMAT1 = Path(__file__).parent / "data" / "format1"


# ------------------------------------------------------------------ estimator contract
def test_params_are_the_init_keywords_with_config_defaults() -> None:
    sig = inspect.signature(SpectralAutoencoder.__init__).parameters
    arch = {f.name: f.default for f in fields(ArchConfig)}
    for k in ("n_bins", "n_channels", "n_global"):
        arch.pop(k)
    train = {f.name: f.default for f in fields(TrainConfig)}
    run = {"device": "auto", "max_time_s": None, "num_threads": None, "progress": True}
    assert {k: p.default for k, p in sig.items() if k != "self"} == {**arch, **train, **run}
    m = SpectralAutoencoder()
    assert m.get_params() == {**arch, **train, **run}
    assert PCABaseline().get_params() == {"n_components": 8, "seed": 0}


@pytest.mark.parametrize(
    "model",
    [
        SpectralAutoencoder(3, epochs=2, lr=1e-3, decoder="transformer", progress=False),
        PCABaseline(4, seed=2),
    ],
    ids=["autoencoder", "pca"],
)
def test_clone_round_trip_gives_an_equal_unfitted_estimator(model) -> None:
    from sklearn.base import clone

    for again in (type(model)(**model.get_params()), clone(model)):
        assert type(again) is type(model) and again.get_params() == model.get_params()
        assert not [k for k in vars(again) if k.endswith("_")]


def test_set_params_validates_and_fit_changes_only_fitted_state() -> None:
    m = SpectralAutoencoder(3, epochs=1, **FAST)
    assert m.set_params(epochs=2, lr=1e-3) is m and (m.epochs, m.lr) == (2, 1e-3)
    before = m.get_params()
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        m.set_params(epochs=0)
    with pytest.raises(ValueError, match="d_model .* multiple of n_heads"):
        m.set_params(d_model=30)
    with pytest.raises(ValueError, match="invalid parameter 'laten_dim'"):
        m.set_params(laten_dim=3)
    assert m.get_params() == before
    assert not hasattr(m, "net_") and m.net is None
    with pytest.raises(RuntimeError, match="not fitted"):
        m.transform(make_tiny_set())
    s = make_tiny_set()
    m.fit(s)
    assert m.get_params() == before
    assert {k for k in vars(m) if k.endswith("_")} == {
        "grid_",
        "net_",
        "history_",
        "training_ids_",
        "calibration_",
    }
    assert m.grid_ == s.grid and m.net is m.net_ and m.arch.n_bins == 32
    assert m.train_cfg.epochs == 2 and len(m.history_) == 2
    p = PCABaseline(3).fit(s)
    assert {k for k in vars(p) if k.endswith("_")} == {"grid_", "pca_", "training_ids_"}
    with pytest.raises(ValueError, match="n_components"):
        p.set_params(n_components=0)


def test_kind_table_matches_the_schema() -> None:
    assert sorted(MODEL_KINDS) == sorted(KINDS)
    assert all(cls.kind == kind for kind, cls in MODEL_KINDS.items())


# ------------------------------------------------------------------------------ network
def test_network_is_composed_and_decoders_come_from_the_table(tiny_set) -> None:
    assert sorted(DECODERS) == sorted(ARCH_OPTIONS["decoder"].choices)
    for name, cls in DECODERS.items():
        m = SpectralAutoencoder(2, epochs=1, decoder=name, decoder_layers=1, **FAST).fit(tiny_set)
        assert isinstance(m.net_.encoder, SpectrumEncoder)
        assert isinstance(m.net_.decoder, cls)
        assert isinstance(m.net_.instrument, InstrumentResponse)
        # state_dict speaks format 1 and loads back.
        sd = m.net_.state_dict()
        assert "global_token" in sd and "enc_norm.weight" in sd and "encoder.stack" not in str(sd)
        m.net_.load_state_dict(sd)
        assert len(m.net_.ordered_parameters()) == len(list(m.net_.parameters()))


def test_decode_shapes_normalisation_and_consistency_with_reconstruct(tiny_set) -> None:
    m = SpectralAutoencoder(3, epochs=2, **FAST).fit(tiny_set)
    z = m.transform(tiny_set)
    area = tiny_set.effective_area_cm2
    shapes = m.decode(z, effective_area_cm2=area)
    assert shapes.shape == (len(tiny_set), tiny_set.grid.n_bins) and (shapes > 0).all()
    np.testing.assert_allclose(shapes.sum(1), 1.0, rtol=1e-6)
    amp = np.maximum(tiny_set.counts.sum(1) - tiny_set.background.sum(1), 1)
    np.testing.assert_allclose(shapes * amp[:, None], m.reconstruct(tiny_set), rtol=1e-5)
    # One area curve for all latents, and a flat one by default.
    one = m.decode(z[:4], effective_area_cm2=area[0])
    np.testing.assert_allclose(one, shapes[:4], rtol=1e-5)
    flat = m.decode(z[:4])
    np.testing.assert_allclose(flat, m.decode(z[:4], effective_area_cm2=np.ones(32)), rtol=1e-6)
    np.testing.assert_allclose(flat.sum(1), 1.0, rtol=1e-6)


# ------------------------------------------------------------------ format-1 checkpoints
def test_format1_model_dirs_load_as_written() -> None:
    s, expected = make_tiny_set(), np.load(FORMAT1 / "expected.npz")
    for name in ("mlp", "transformer"):
        m = load_model(FORMAT1 / name)
        assert isinstance(m, SpectralAutoencoder) and m.decoder == name
        np.testing.assert_allclose(m.transform(s), expected[f"{name}_z"], **STORED)
        np.testing.assert_allclose(m.reconstruct(s), expected[f"{name}_r"], **STORED)


def test_format1_train_state_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    d = shutil.copytree(FORMAT1 / "cut", tmp_path / "cut")
    opts = {**SpectralAutoencoder.load(FORMAT1 / "transformer").get_params(), "progress": False}
    seen: list[int] = []
    torch_threads = torch.get_num_threads()
    try:
        m = SpectralAutoencoder(**{**opts, "num_threads": 1}).fit(
            make_tiny_set(), checkpoint_dir=d, resume=True, callback=lambda e, r: seen.append(e)
        )
    finally:
        torch.set_num_threads(torch_threads)
    assert seen == [3]
    expected = np.load(FORMAT1 / "expected.npz")
    np.testing.assert_allclose(m.transform(make_tiny_set()), expected["transformer_z"], **STORED)
