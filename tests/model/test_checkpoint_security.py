"""Model directories are data, never code: tampered files are refused and run nothing.

Each test plants a pickle whose unpickling creates a marker file (``os.system("touch ...")``)
into an otherwise valid model directory, and checks that loading raises CheckpointError and
that the marker does not exist. ``test_payload_runs_when_unpickled`` shows the payload does
create the marker when a file is unpickled without restrictions, so the other tests can fail.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from xlatent.model import CheckpointError, PCABaseline, SpectralAutoencoder, load_model

from .conftest import SAVED_OPTS, make_tiny_set


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, (f"touch '{self.marker}'",))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _assert_refused(call, path_fragment: str, marker: Path) -> CheckpointError:  # noqa: ANN001
    with pytest.raises(CheckpointError) as err:
        call()
    msg = str(err.value)
    assert path_fragment in msg and "\n" not in msg, msg
    assert not marker.exists(), "the pickled payload ran"
    return err.value


def test_payload_runs_when_unpickled(tmp_path: Path) -> None:
    # Control: without weights_only the payload runs, so a missing marker below means safety.
    marker = tmp_path / "MARKER"
    torch.save({"model": Payload(marker)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_saved_train_state_and_weights_are_plain_data(saved_dirs) -> None:
    # What xlatent writes must load under the restricted unpickler (no Python objects).
    for name in ("weights.pt", "train_state.pt"):
        blob = torch.load(saved_dirs["ae"] / name, weights_only=True)
        assert isinstance(blob, dict) and "model" in blob


@pytest.mark.parametrize("where", ["whole_file", "model_entry", "header_entry"])
def test_pickled_code_in_weights_refused(saved_dirs, tmp_path: Path, where: str) -> None:
    d = _copy(saved_dirs["ae"], tmp_path / "m")
    marker = tmp_path / "MARKER"
    blob = torch.load(d / "weights.pt", weights_only=True)
    if where == "whole_file":
        blob = Payload(marker)
    elif where == "model_entry":
        blob["model"] = Payload(marker)
    else:
        blob["header"]["config"] = Payload(marker)
    torch.save(blob, d / "weights.pt")
    err = _assert_refused(lambda: load_model(d), "weights.pt", marker)
    assert "unsafe" in str(err) and "system" in str(err)
    _assert_refused(lambda: SpectralAutoencoder.load(d), "weights.pt", marker)


def test_pickled_code_in_legacy_torch_format_refused(saved_dirs, tmp_path: Path) -> None:
    d = _copy(saved_dirs["ae"], tmp_path / "m")
    marker = tmp_path / "MARKER"
    torch.save(
        {"header": {}, "model": Payload(marker)},
        d / "weights.pt",
        _use_new_zipfile_serialization=False,
    )
    _assert_refused(lambda: load_model(d), "weights.pt", marker)


def test_raw_pickle_as_weights_refused(saved_dirs, tmp_path: Path) -> None:
    d = _copy(saved_dirs["ae"], tmp_path / "m")
    marker = tmp_path / "MARKER"
    (d / "weights.pt").write_bytes(pickle.dumps(Payload(marker)))
    _assert_refused(lambda: load_model(d), "weights.pt", marker)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_archive_as_weights_refused(saved_dirs, tmp_path: Path) -> None:
    d = _copy(saved_dirs["ae"], tmp_path / "m")
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(d / "weights.pt"))
    err = _assert_refused(lambda: load_model(d), "weights.pt", tmp_path / "MARKER")
    assert "TorchScript" in str(err)


@pytest.mark.parametrize("entry", ["optimizer", "history", "whole_file"])
def test_pickled_code_in_train_state_refused_on_resume(
    saved_dirs, tmp_path: Path, entry: str
) -> None:
    d = _copy(saved_dirs["cut"], tmp_path / "run")
    marker = tmp_path / "MARKER"
    state = torch.load(d / "train_state.pt", weights_only=True)
    if entry == "whole_file":
        state = Payload(marker)
    else:
        state[entry] = Payload(marker)
    torch.save(state, d / "train_state.pt")
    model = SpectralAutoencoder(**SAVED_OPTS)
    err = _assert_refused(
        lambda: model.fit(make_tiny_set(), checkpoint_dir=d, resume=True),
        "train_state.pt",
        marker,
    )
    assert "unsafe" in str(err)
    # Refused before training: nothing was saved into the run directory.
    assert not (d / "model.json").exists() and not (d / "weights.pt").exists()


def _pca_arrays(d: Path) -> dict[str, np.ndarray]:
    with np.load(d / "pca.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_pickled_object_array_in_pca_npz_refused(saved_dirs, tmp_path: Path) -> None:
    d = _copy(saved_dirs["pca"], tmp_path / "p")
    marker = tmp_path / "MARKER"
    arrays = _pca_arrays(d)
    arrays["components"] = np.array([Payload(marker)], dtype=object)
    np.savez(d / "pca.npz", **arrays)  # np.savez pickles object arrays
    # Control: the archive really holds the payload (an unrestricted load runs it).
    with np.load(d / "pca.npz", allow_pickle=True) as z:
        z["components"]
    assert marker.exists()
    marker.unlink()
    err = _assert_refused(lambda: load_model(d), "pca.npz", marker)
    assert "unsafe" in str(err)
    _assert_refused(lambda: PCABaseline.load(d), "pca.npz", marker)


def test_raw_pickle_as_pca_npz_refused(saved_dirs, tmp_path: Path) -> None:
    d = _copy(saved_dirs["pca"], tmp_path / "p")
    marker = tmp_path / "MARKER"
    buf = io.BytesIO()
    pickle.dump({"components": Payload(marker)}, buf)
    (d / "pca.npz").write_bytes(buf.getvalue())
    _assert_refused(lambda: load_model(d), "pca.npz", marker)
