"""Damaged model directories: every bad field is a one-line CheckpointError naming the file.

Each test copies a directory saved by ``saved_dirs`` (conftest), damages one thing and
loads it. ``test_undamaged_copies_load`` shows the copies load when nothing is damaged, so
each refusal below comes from the damage.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from xlatent.model import CheckpointError, PCABaseline, SpectralAutoencoder, load_model

from .conftest import SAVED_OPTS, make_tiny_set


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _refused(call: Callable[[], object], path: Path, *fragments: str) -> str:
    with pytest.raises(CheckpointError) as err:
        call()
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def test_undamaged_copies_load(saved_dirs, tmp_path: Path) -> None:
    s = make_tiny_set()
    ae = load_model(_copy(saved_dirs["ae"], tmp_path / "ae"))
    assert isinstance(ae, SpectralAutoencoder) and ae.transform(s).shape == (40, 3)
    pca = load_model(_copy(saved_dirs["pca"], tmp_path / "pca"))
    assert isinstance(pca, PCABaseline) and pca.transform(s).shape == (40, 4)
    # The interrupted run resumes from its train_state.pt.
    seen: list[int] = []
    SpectralAutoencoder(**SAVED_OPTS).fit(
        s, checkpoint_dir=_copy(saved_dirs["cut"], tmp_path / "cut"), resume=True,
        callback=lambda e, r: seen.append(e),
    )  # fmt: skip
    assert seen == [3]


# ------------------------------------------------------------------------------ model.json
def _set(path: list, value: object) -> Callable[[dict], None]:
    def edit(h: dict) -> None:
        node = h
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _del(path: list) -> Callable[[dict], None]:
    def edit(h: dict) -> None:
        node = h
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return edit


def _edges(fn: Callable[[list], list]) -> Callable[[dict], None]:
    def edit(h: dict) -> None:
        h["grid_edges_kev"] = fn(h["grid_edges_kev"])

    return edit


AE_HEADER_DAMAGE = {
    "no_kind": (_del(["kind"]), "missing field 'kind'"),
    "no_config": (_del(["config"]), "missing field 'config'"),
    "no_grid": (_del(["grid_edges_kev"]), "missing field 'grid_edges_kev'"),
    "no_preprocessing": (_del(["preprocessing"]), "missing field 'preprocessing'"),
    "no_format": (_del(["format"]), "not an xlatent model"),
    "other_format": (_set(["format"], "keras"), "not an xlatent model"),
    "version_string": (_set(["format_version"], "1"), "format version '1'"),
    "version_true": (_set(["format_version"], True), "format version True"),
    "kind_number": (_set(["kind"], 5), "unknown model kind 5"),
    "kind_unknown": (_set(["kind"], "vae"), "unknown model kind 'vae'"),
    "unknown_field": (_set(["weights_url"], "http://x"), "unknown field 'weights_url'"),
    "version_not_str": (_set(["xlatent_version"], 3), "xlatent_version"),
    "preprocessing_list": (_set(["preprocessing"], []), "preprocessing must be"),
    "config_list": (_set(["config"], [8]), "config must be a JSON object"),
    "config_unknown_key": (_set(["config", "latent_dimm"], 8), "unknown config key 'latent_dimm'"),
    "arch_unknown_key": (
        _set(["config", "arch", "latent_dimm"], 8),
        "unknown config key 'arch.latent_dimm'",
    ),
    "train_unknown_key": (
        _set(["config", "train", "momentum"], 0.9),
        "unknown config key 'train.momentum'",
    ),
    "no_arch": (_del(["config", "arch"]), "missing config key 'arch'"),
    "arch_missing_key": (_del(["config", "arch", "d_model"]), "missing config key 'arch.d_model'"),
    "latent_zero": (_set(["config", "arch", "latent_dim"], 0), "arch.latent_dim must be"),
    "latent_negative": (_set(["config", "arch", "latent_dim"], -3), "arch.latent_dim must be"),
    "latent_string": (_set(["config", "arch", "latent_dim"], "3"), "arch.latent_dim must be"),
    "latent_float": (_set(["config", "arch", "latent_dim"], 3.5), "arch.latent_dim must be"),
    "latent_bool": (_set(["config", "arch", "latent_dim"], True), "arch.latent_dim must be"),
    "heads_not_divisor": (_set(["config", "arch", "n_heads"], 5), "multiple of arch.n_heads"),
    "dropout_one": (_set(["config", "arch", "dropout"], 1.0), "arch.dropout must be"),
    "decoder_unknown": (_set(["config", "arch", "decoder"], "rnn"), "arch.decoder must be one"),
    "area_aware_string": (_set(["config", "arch", "area_aware"], "yes"), "arch.area_aware"),
    "n_bins_mismatch": (_set(["config", "arch", "n_bins"], 33), "arch.n_bins is 33, expected 32"),
    "n_channels_other": (_set(["config", "arch", "n_channels"], 4), "arch.n_channels is 4"),
    "train_lr_negative": (_set(["config", "train", "lr"], -0.1), "train.lr must be a number > 0"),
    "train_epochs_zero": (_set(["config", "train", "epochs"], 0), "train.epochs must be"),
    "train_loss_unknown": (_set(["config", "train", "loss"], "chi2"), "train.loss must be one"),
    "train_seed_negative": (_set(["config", "train", "seed"], -1), "train.seed must be"),
    "edges_decreasing": (_edges(lambda e: e[::-1]), "grid_edges_kev"),
    "edges_nan": (_edges(lambda e: [*e[:-1], math.nan]), "grid_edges_kev"),
    "edges_inf": (_edges(lambda e: [*e[:-1], math.inf]), "grid_edges_kev"),
    "edges_negative": (_edges(lambda e: [-1.0, *e[1:]]), "grid_edges_kev"),
    "edges_one": (_edges(lambda e: e[:1]), "grid_edges_kev"),
    "edges_string": (_edges(lambda e: "0.5-8"), "grid_edges_kev"),
    "edges_with_string": (_edges(lambda e: [*e[:-1], "8"]), "grid_edges_kev"),
    "training_number": (_set(["training"], 5), "training must be"),
    "history_strings": (_set(["training", "history"], [{"epoch": "one"}]), "training.history"),
}


@pytest.mark.parametrize("case", sorted(AE_HEADER_DAMAGE))
def test_damaged_autoencoder_model_json(saved_dirs, tmp_path: Path, case: str) -> None:
    edit, fragment = AE_HEADER_DAMAGE[case]
    d = _copy(saved_dirs["ae"], tmp_path / "m")
    header = json.loads((d / "model.json").read_text())
    edit(header)
    (d / "model.json").write_text(json.dumps(header))
    _refused(lambda: load_model(d), d / "model.json", fragment)


PCA_HEADER_DAMAGE = {
    "components_zero": (_set(["config", "n_components"], 0), "n_components must be"),
    "components_string": (_set(["config", "n_components"], "4"), "n_components must be"),
    "seed_negative": (_set(["config", "seed"], -1), "seed must be"),
    "unknown_key": (_set(["config", "whiten"], True), "unknown config key 'whiten'"),
    "no_components": (_del(["config", "n_components"]), "missing config key 'n_components'"),
    "more_components": (_set(["config", "n_components"], 5), "pca.npz"),
}


@pytest.mark.parametrize("case", sorted(PCA_HEADER_DAMAGE))
def test_damaged_pca_model_json(saved_dirs, tmp_path: Path, case: str) -> None:
    edit, fragment = PCA_HEADER_DAMAGE[case]
    d = _copy(saved_dirs["pca"], tmp_path / "p")
    header = json.loads((d / "model.json").read_text())
    edit(header)
    (d / "model.json").write_text(json.dumps(header))
    # n_components disagreeing with pca.npz is the npz's fault; the rest model.json's.
    where = d / ("pca.npz" if case == "more_components" else "model.json")
    _refused(lambda: load_model(d), where, fragment)


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"null", "not a JSON object"),
        (b'"model"', "not a JSON object"),
    ],
    ids=["empty", "broken", "binary", "deep", "list", "null", "string"],
)
def test_model_json_not_an_object(saved_dirs, tmp_path: Path, raw: bytes, fragment: str) -> None:
    d = _copy(saved_dirs["ae"], tmp_path / "m")
    (d / "model.json").write_bytes(raw)
    _refused(lambda: load_model(d), d / "model.json", fragment)


def test_model_json_a_directory_or_missing(saved_dirs, tmp_path: Path) -> None:
    d = _copy(saved_dirs["ae"], tmp_path / "m")
    (d / "model.json").unlink()
    _refused(lambda: load_model(d), d, "no model.json")
    (d / "model.json").mkdir()
    _refused(lambda: load_model(d), d / "model.json", "not a regular file")
    f = tmp_path / "file"
    f.write_text("x")
    _refused(lambda: load_model(f), f, "not a directory")


# ------------------------------------------------------------------------------ weights.pt
def _truncations(path: Path) -> list[int]:
    n = path.stat().st_size
    return [0, 1, 64, n // 3, n // 2, n - 100, n - 1]


@pytest.mark.parametrize("which", range(7))
def test_truncated_weights(saved_dirs, tmp_path: Path, which: int) -> None:
    d = _copy(saved_dirs["ae"], tmp_path / "m")
    data = (d / "weights.pt").read_bytes()
    cut = _truncations(d / "weights.pt")[which]
    (d / "weights.pt").write_bytes(data[:cut])
    _refused(lambda: load_model(d), d / "weights.pt", "unreadable or unsafe checkpoint")


def test_weights_missing_or_a_directory(saved_dirs, tmp_path: Path) -> None:
    d = _copy(saved_dirs["ae"], tmp_path / "m")
    (d / "weights.pt").unlink()
    _refused(lambda: load_model(d), d / "weights.pt", "missing")
    (d / "weights.pt").mkdir()
    _refused(lambda: load_model(d), d / "weights.pt", "not a regular file")


def _drop_first(sd: dict) -> None:
    del sd[next(iter(sd))]


def _widen_first_linear(sd: dict) -> None:
    sd["to_latent.weight"] = torch.zeros(4, sd["to_latent.weight"].shape[1])


WEIGHTS_DAMAGE = {
    "missing_tensor": (lambda b: _drop_first(b["model"]), "missing tensor"),
    "unexpected_tensor": (
        lambda b: b["model"].__setitem__("extra.weight", torch.zeros(2)),
        "unexpected tensor 'extra.weight'",
    ),
    "shape_mismatch": (lambda b: _widen_first_linear(b["model"]), "'to_latent.weight' is"),
    "dtype_mismatch": (
        lambda b: b["model"].__setitem__("to_latent.bias", b["model"]["to_latent.bias"].double()),
        "torch.float64",
    ),
    "nan_weights": (
        lambda b: b["model"]["to_latent.bias"].fill_(float("nan")),
        "NaN/inf",
    ),
    "not_a_tensor": (
        lambda b: b["model"].__setitem__("to_latent.bias", [0.0, 0.0, 0.0]),
        "not a dense tensor",
    ),
    "model_not_dict": (lambda b: b.__setitem__("model", [1, 2]), "not a dict of tensors"),
    "no_model": (lambda b: b.pop("model"), "not an xlatent weights file"),
    "other_arch_header": (
        lambda b: b["header"]["config"]["arch"].__setitem__("decoder_hidden", 16),
        "written for another model",
    ),
    "header_bad_config": (
        lambda b: b["header"]["config"]["arch"].__setitem__("latent_dimm", 3),
        "unknown config key 'arch.latent_dimm'",
    ),
}


@pytest.mark.parametrize("case", sorted(WEIGHTS_DAMAGE))
def test_weights_not_matching_architecture(saved_dirs, tmp_path: Path, case: str) -> None:
    edit, fragment = WEIGHTS_DAMAGE[case]
    d = _copy(saved_dirs["ae"], tmp_path / "m")
    blob = torch.load(d / "weights.pt", weights_only=True)
    edit(blob)
    torch.save(blob, d / "weights.pt")
    _refused(lambda: load_model(d), d / "weights.pt", fragment)


def test_weights_not_a_dict(saved_dirs, tmp_path: Path) -> None:
    d = _copy(saved_dirs["ae"], tmp_path / "m")
    torch.save([torch.zeros(3)], d / "weights.pt")
    _refused(lambda: load_model(d), d / "weights.pt", "not an xlatent weights file")


# -------------------------------------------------------------------------- train_state.pt
def _mutate_opt_state(state: dict) -> None:
    st = state["optimizer"]["state"]
    st[0]["exp_avg"] = torch.zeros(7)


STATE_DAMAGE = {
    "no_optimizer": (lambda s: s.pop("optimizer"), "no 'optimizer'"),
    "no_generator": (lambda s: s.pop("generator"), "no 'generator'"),
    "no_header": (lambda s: s.pop("header"), "no 'header'"),
    "extra_entry": (lambda s: s.__setitem__("notes", "x"), "unexpected entry 'notes'"),
    "epoch_string": (lambda s: s.__setitem__("epoch", "1"), "'epoch' is a str"),
    "epoch_bool": (lambda s: s.__setitem__("epoch", True), "'epoch' is a bool"),
    "epoch_past_end": (lambda s: s.__setitem__("epoch", 99), "epoch 99 out of range"),
    "best_val_nan": (lambda s: s.__setitem__("best_val", math.nan), "best_val nan"),
    "history_short": (lambda s: s.__setitem__("history", []), "history"),
    "optimizer_not_dict": (lambda s: s.__setitem__("optimizer", {"lr": 1}), "optimizer is not"),
    "optimizer_state_shape": (_mutate_opt_state, "optimizer state 0"),
    "optimizer_group_removed": (
        lambda s: s["optimizer"]["param_groups"].clear(),
        "optimizer groups",
    ),
    "scheduler_extra_key": (
        lambda s: s["scheduler"].__setitem__("lr_lambdas", [{"__code__": 1}]),
        "scheduler",
    ),
    "scheduler_inf_lr": (
        lambda s: s["scheduler"].__setitem__("base_lrs", [math.inf]),
        "scheduler['base_lrs'][0]",
    ),
    "optimizer_nan_eps": (
        lambda s: s["optimizer"]["param_groups"][0].__setitem__("eps", math.nan),
        "optimizer groups[0]['eps']",
    ),
    "generator_short": (
        lambda s: s.__setitem__("generator", torch.zeros(8, dtype=torch.uint8)),
        "generator",
    ),  # fmt: skip
    "model_missing_tensor": (lambda s: _drop_first(s["model"]), "model: missing tensor"),
    "best_model_shape": (lambda s: _widen_first_linear(s["best_model"]), "best_model:"),
    "header_other_kind": (lambda s: s["header"].__setitem__("kind", "pca"), "'pca' model"),
    "other_set": (lambda s: s.__setitem__("set_digest", "0" * 16), "different training set"),
    "not_a_dict": (lambda s: s.clear() or s.__setitem__("x", 1), "unexpected entry 'x'"),
}


@pytest.mark.parametrize("case", sorted(STATE_DAMAGE))
def test_damaged_train_state_refused_on_resume(saved_dirs, tmp_path: Path, case: str) -> None:
    edit, fragment = STATE_DAMAGE[case]
    d = _copy(saved_dirs["cut"], tmp_path / "run")
    state = torch.load(d / "train_state.pt", weights_only=True)
    edit(state)
    torch.save(state, d / "train_state.pt")
    model = SpectralAutoencoder(**SAVED_OPTS)
    _refused(
        lambda: model.fit(make_tiny_set(), checkpoint_dir=d, resume=True),
        d / "train_state.pt",
        fragment,
    )
    assert not (d / "model.json").exists(), "a refused resume must not save a model"


@pytest.mark.parametrize("which", range(7))
def test_truncated_train_state(saved_dirs, tmp_path: Path, which: int) -> None:
    d = _copy(saved_dirs["cut"], tmp_path / "run")
    data = (d / "train_state.pt").read_bytes()
    (d / "train_state.pt").write_bytes(data[: _truncations(d / "train_state.pt")[which]])
    model = SpectralAutoencoder(**SAVED_OPTS)
    _refused(
        lambda: model.fit(make_tiny_set(), checkpoint_dir=d, resume=True),
        d / "train_state.pt",
        "unreadable or unsafe checkpoint",
    )


def test_train_state_a_directory(saved_dirs, tmp_path: Path) -> None:
    d = _copy(saved_dirs["cut"], tmp_path / "run")
    (d / "train_state.pt").unlink()
    (d / "train_state.pt").mkdir()
    model = SpectralAutoencoder(**SAVED_OPTS)
    _refused(
        lambda: model.fit(make_tiny_set(), checkpoint_dir=d, resume=True),
        d / "train_state.pt",
        "not a regular file",
    )


# -------------------------------------------------------------------------------- pca.npz
def _arrays(d: Path) -> dict[str, np.ndarray]:
    with np.load(d / "pca.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _with(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], None]:
    def edit(a: dict) -> None:
        a[name] = fn(a[name])

    return edit


NPZ_DAMAGE = {
    "no_components": (lambda a: a.pop("components"), "no array 'components'"),
    "no_mean": (lambda a: a.pop("mean"), "no array 'mean'"),
    "extra_array": (lambda a: a.__setitem__("whiten", np.ones(1)), "unexpected array 'whiten'"),
    "components_transposed": (_with("components", lambda c: c.T.copy()), "array 'components'"),
    "components_extra_bin": (
        _with("components", lambda c: np.hstack([c, c[:, :1]])),
        "expected float (4, 32)",
    ),
    "components_1d": (_with("components", lambda c: c.ravel()), "array 'components'"),
    "mean_int": (_with("mean", lambda m: m.astype(np.int64)), "array 'mean' is int64"),
    "mean_string": (_with("mean", lambda m: m.astype(str)), "array 'mean'"),
    "components_nan": (
        _with("components", lambda c: np.where(np.eye(*c.shape, dtype=bool), np.nan, c)),
        "NaN/inf",
    ),
    "variance_inf": (_with("explained_variance", lambda v: v * np.inf), "NaN/inf"),
    "huge_array": (
        _with("singular_values", lambda v: np.zeros(10**6)),
        "array 'singular_values' is larger",
    ),
}


@pytest.mark.parametrize("case", sorted(NPZ_DAMAGE))
def test_damaged_pca_npz(saved_dirs, tmp_path: Path, case: str) -> None:
    edit, fragment = NPZ_DAMAGE[case]
    d = _copy(saved_dirs["pca"], tmp_path / "p")
    arrays = _arrays(d)
    edit(arrays)
    np.savez_compressed(d / "pca.npz", **arrays)
    _refused(lambda: load_model(d), d / "pca.npz", fragment)


@pytest.mark.parametrize("which", range(7))
def test_truncated_pca_npz(saved_dirs, tmp_path: Path, which: int) -> None:
    d = _copy(saved_dirs["pca"], tmp_path / "p")
    data = (d / "pca.npz").read_bytes()
    (d / "pca.npz").write_bytes(data[: _truncations(d / "pca.npz")[which]])
    _refused(lambda: load_model(d), d / "pca.npz")


def test_pca_npz_missing_directory_or_plain_npy(saved_dirs, tmp_path: Path) -> None:
    d = _copy(saved_dirs["pca"], tmp_path / "p")
    (d / "pca.npz").unlink()
    _refused(lambda: load_model(d), d / "pca.npz", "missing")
    (d / "pca.npz").mkdir()
    _refused(lambda: load_model(d), d / "pca.npz", "not a regular file")
    (d / "pca.npz").rmdir()
    with open(d / "pca.npz", "wb") as f:
        np.save(f, np.zeros((4, 32)))
    _refused(lambda: load_model(d), d / "pca.npz", "not an npz archive")
