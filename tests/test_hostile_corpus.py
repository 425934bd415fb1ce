"""Issue 10's acceptance corpus, end to end through the command line.

Each area has its own hostile tests (tests/io, tests/core, tests/model, tests/io/csc); this
file checks what a user sees when those inputs reach the commands: for every damaged set,
damaged or malicious model directory and foreign latent catalogue, each command that reads it
exits 1 with one ``error:`` line naming the file, never a traceback and never an "internal
error" (an unanticipated case), runs no planted code and writes no output.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from xlatent.cli import app
from xlatent.core import seal
from xlatent.physics.simulator import simulate

pytestmark = pytest.mark.timeout(240)


class _Payload:
    """Unpickling this runs a shell command that creates the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good set, its latents and two trained models (PCA, 1-epoch autoencoder)."""
    root = tmp_path_factory.mktemp("corpus")
    good = simulate(60, seed=3, progress=False).write(root / "good.h5")
    other = simulate(60, seed=4, progress=False).write(root / "other.h5")
    for kind, extra in (("pca", []), ("autoencoder", ["--epochs", "1"])):
        code, out = run("train", good, "--out", root / kind, "--model", kind, *extra)
        assert code == 0, out
    code, out = run("encode", good, "--model", root / "pca", "--out", root / "good.parquet")
    assert code == 0, out
    code, out = run("encode", other, "--model", root / "pca", "--out", root / "other.parquet")
    assert code == 0, out
    return {"root": root, "good": good, "other": other}


# ------------------------------------------------------------------ damaged SpectrumSet files
def _drop(name: str) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[name]

    return edit


def _attr(name: str, value: object) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        if value is None:
            del f.attrs[name]
        else:
            f.attrs[name] = value

    return edit


def _replace(name: str, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        data = make(f[name][()])
        del f[name]
        f[name] = data

    return edit


SET_DAMAGE: dict[str, Callable[[h5py.File], None]] = {
    "no-counts": _drop("counts"),
    "no-exposure": _drop("exposure_s"),
    "no-background": _drop("background"),
    "no-area": _drop("effective_area_cm2"),
    "no-grid": _drop("energy_edges_kev"),
    "no-meta": _drop("meta"),
    "no-spec-id": _drop("meta/spec_id"),
    "duplicate-spec-id": _replace("meta/spec_id", lambda a: np.array([a[0]] * len(a))),
    "grid-decreasing": _replace("energy_edges_kev", lambda a: a[::-1].copy()),
    "no-format": _attr("format", None),
    "other-format": _attr("format", "something.else"),
    "no-schema": _attr("schema_version", None),
    "future-schema": _attr("schema_version", 99),
    "counts-nan": _replace("counts", lambda a: np.full_like(a, np.nan)),
    "counts-negative": _replace("counts", lambda a: -np.ones_like(a)),
    "counts-short-rows": _replace("counts", lambda a: a[:-3]),
    "counts-wrong-bins": _replace("counts", lambda a: a[:, :-1]),
    "counts-text": _replace("counts", lambda a: np.array([b"x"] * len(a))),
    "exposure-zero": _replace("exposure_s", lambda a: np.zeros_like(a)),
}


def _damaged_set(src: Path, dst: Path, how: str) -> Path:
    shutil.copy(src, dst)
    if how.startswith("truncated-"):
        size = dst.stat().st_size
        with open(dst, "r+b") as fh:
            fh.truncate(int(size * float(how.split("-")[1])))
    elif how == "not-hdf5":
        dst.write_bytes(b"this is not an HDF5 file\n" * 10)
    elif how == "empty":
        dst.write_bytes(b"")
    elif how == "edited-unsealed":
        with h5py.File(dst, "r+") as f:
            f.attrs["schema_version"] = 2
    else:
        with h5py.File(dst, "r+") as f:
            SET_DAMAGE[how](f)
        seal.seal(dst)  # past the seal, so the content checks are what refuses it
    return dst


SET_CASES = [*SET_DAMAGE, "truncated-0.3", "truncated-0.9", "not-hdf5", "empty", "edited-unsealed"]


def _assert_clean_error(code: int, output: str, named: Path) -> None:
    assert code == 1, output
    assert "Traceback" not in output, output
    assert "internal error" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert named.name in errors[0], output


@pytest.mark.parametrize("how", SET_CASES)
def test_damaged_set_in_every_command(corpus: dict[str, Path], tmp_path: Path, how: str) -> None:
    bad = _damaged_set(corpus["good"], tmp_path / f"{how}.h5", how)
    root = corpus["root"]
    commands = {
        "train": ["train", bad, "--out", tmp_path / "m", "--model", "pca"],
        "encode": ["encode", bad, "--model", root / "pca", "--out", tmp_path / "l.parquet"],
        "reconstruct": ["reconstruct", bad, "--model", root / "pca", "--out", tmp_path / "r.h5"],
        "evaluate": ["evaluate", bad, "--latents", root / "good.parquet", "--out", tmp_path / "e"],
    }
    for name, args in commands.items():
        code, output = run(*args)
        _assert_clean_error(code, output, bad)
        assert not (tmp_path / "m" / "model.json").exists(), name
        assert not (tmp_path / "l.parquet").exists() and not (tmp_path / "r.h5").exists(), name
        assert not (tmp_path / "e" / "metrics.json").exists(), name


def test_damaged_set_named_in_an_ingest_batch_is_skipped(
    corpus: dict[str, Path], tmp_path: Path, real_spectra_dir: Path
) -> None:
    bads = [_damaged_set(corpus["good"], tmp_path / f"{h}.h5", h) for h in SET_CASES]
    good = real_spectra_dir / "9774.pi"
    code, output = run("ingest", good, *bads, "--out", tmp_path / "out.h5")
    assert code == 0, output
    assert "Traceback" not in output and "internal error" not in output
    for bad in bads:
        assert f"skipped {bad}" in output, (bad, output)
    assert "ingested 1 spectra" in output


# -------------------------------------------------------------- damaged and malicious models
def _model_damage(kind: str, d: Path, marker: Path) -> dict[str, Callable[[], Path]]:
    header = d / "model.json"

    def edit_json(fn: Callable[[dict], object]) -> Callable[[], Path]:
        def apply() -> Path:
            data = json.loads(header.read_text())
            header.write_text(json.dumps(fn(data)))
            return header

        return apply

    def pop(key: str) -> Callable[[dict], dict]:
        return lambda h: {k: v for k, v in h.items() if k != key}

    def write(name: str, content: bytes) -> Callable[[], Path]:
        def apply() -> Path:
            (d / name).write_bytes(content)
            return d / name

        return apply

    def truncate(name: str) -> Callable[[], Path]:
        def apply() -> Path:
            data = (d / name).read_bytes()
            (d / name).write_bytes(data[: len(data) // 2])
            return d / name

        return apply

    cases = {
        "json-garbage": write("model.json", b"{not json"),
        "json-list": edit_json(lambda h: [h]),
        "json-no-kind": edit_json(pop("kind")),
        "json-no-config": edit_json(pop("config")),
        "json-no-grid": edit_json(pop("grid_edges_kev")),
        "json-grid-decreasing": edit_json(
            lambda h: {**h, "grid_edges_kev": h["grid_edges_kev"][::-1]}
        ),
        "json-unknown-config-key": edit_json(
            lambda h: {**h, "config": {**h["config"], "latent_dimm": 8}}
        ),
    }
    if kind == "pca":
        cases["npz-truncated"] = truncate("pca.npz")
        cases["npz-pickle"] = write("pca.npz", pickle.dumps(_Payload(marker)))

        def npz_object_array() -> Path:
            with np.load(d / "pca.npz") as z:
                arrays = dict(z)
            arrays["components"] = np.array([_Payload(marker)], dtype=object)
            with open(d / "pca.npz", "wb") as fh:
                np.savez(fh, **arrays)
            return d / "pca.npz"

        cases["npz-object-array"] = npz_object_array
    else:
        cases["weights-truncated"] = truncate("weights.pt")
        cases["weights-pickle"] = write("weights.pt", pickle.dumps(_Payload(marker)))

        def weights_payload_inside() -> Path:
            blob = torch.load(d / "weights.pt", weights_only=True)
            blob["model"]["evil"] = _Payload(marker)
            torch.save(blob, d / "weights.pt")
            return d / "weights.pt"

        cases["weights-payload-inside"] = weights_payload_inside
    return cases


MODEL_CASES = [
    ("pca", c)
    for c in (
        "json-garbage json-list json-no-kind json-no-config json-no-grid json-grid-decreasing "
        "json-unknown-config-key npz-truncated npz-pickle npz-object-array"
    ).split()
] + [
    ("autoencoder", c)
    for c in (
        "json-garbage json-no-config json-unknown-config-key weights-truncated weights-pickle "
        "weights-payload-inside"
    ).split()
]


@pytest.mark.parametrize(("kind", "how"), MODEL_CASES)
def test_damaged_or_malicious_model(
    corpus: dict[str, Path], tmp_path: Path, kind: str, how: str
) -> None:
    d = tmp_path / "model"
    shutil.copytree(corpus["root"] / kind, d)
    marker = tmp_path / "PWNED"
    named = _model_damage(kind, d, marker)[how]()
    good = corpus["good"]
    for args in (
        ["encode", good, "--model", d, "--out", tmp_path / "l.parquet"],
        ["reconstruct", good, "--model", d, "--out", tmp_path / "r.h5"],
    ):
        code, output = run(*args)
        _assert_clean_error(code, output, named)
        assert not marker.exists(), f"planted code ran: {how}"
        assert not (tmp_path / "l.parquet").exists() and not (tmp_path / "r.h5").exists()


def test_malicious_train_state_does_not_run_on_resume(
    corpus: dict[str, Path], tmp_path: Path
) -> None:
    d = tmp_path / "model"
    shutil.copytree(corpus["root"] / "autoencoder", d)
    marker = tmp_path / "PWNED"
    (d / "train_state.pt").write_bytes(pickle.dumps(_Payload(marker)))
    code, output = run(
        "train", corpus["good"], "--out", d, "--epochs", "1", "--resume", "--seed", "0"
    )
    _assert_clean_error(code, output, d / "train_state.pt")
    assert not marker.exists()


def test_control_payload_does_run_when_unpickled(tmp_path: Path) -> None:
    """The corpus's payload is live: plain unpickling does run it (so the tests above can fail)."""
    marker = tmp_path / "PWNED"
    pickle.loads(pickle.dumps(_Payload(marker)))  # noqa: S301 - the point of the control
    assert marker.exists()


# ---------------------------------------------------------------- latents of another set
def test_latents_of_another_set_are_refused(corpus: dict[str, Path], tmp_path: Path) -> None:
    code, output = run(
        "evaluate", corpus["good"], "--latents", corpus["root"] / "other.parquet",
        "--out", tmp_path / "e",
    )  # fmt: skip
    _assert_clean_error(code, output, corpus["root"] / "other.parquet")
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_undamaged_corpus_runs(corpus: dict[str, Path], tmp_path: Path) -> None:
    """Control: the same commands on the undamaged files succeed."""
    root, good = corpus["root"], corpus["good"]
    for kind in ("pca", "autoencoder"):
        code, output = run("encode", good, "--model", root / kind, "--out", tmp_path / "l.parquet")
        assert code == 0, output
        code, output = run("reconstruct", good, "--model", root / kind, "--out", tmp_path / "r.h5")
        assert code == 0, output
