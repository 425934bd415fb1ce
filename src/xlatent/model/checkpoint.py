"""Model directories: a JSON header plus weights, versioned and checked on load.

A model directory holds

- ``model.json``: format name and version, model kind (``autoencoder`` / ``pca``), xlatent
  version, the grid edges (keV), architecture config, preprocessing and a training summary;
- ``weights.pt`` (autoencoder state dict) or ``pca.npz`` (PCA components);
- ``train_state.pt`` while/after training the autoencoder: everything ``resume=True`` needs
  (optimizer, scheduler, epoch, RNG states, best weights, history, split).

Every file is written atomically, so an interrupted run leaves the previous complete version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from xlatent.core import EnergyGrid, XlatentError, atomic_path, atomic_write_text

FORMAT_NAME = "xlatent.model"
#: Bumped on any incompatible change of the directory layout or of the preprocessing.
FORMAT_VERSION = 1
HEADER_FILE = "model.json"


class CheckpointError(XlatentError):
    """A model directory that cannot be used here (missing, other format version, other grid)."""


class TrainingError(XlatentError):
    """Training cannot go on (e.g. the loss became NaN/inf)."""


def make_header(kind: str, grid: EnergyGrid, config: dict, preprocessing: dict) -> dict:
    """The self-description stored with every model."""
    from xlatent import __version__

    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "xlatent_version": __version__,
        "grid_edges_kev": [float(x) for x in grid.edges_kev],
        "config": config,
        "preprocessing": preprocessing,
    }


def check_header(header: Any, where: str | Path, kind: str | None = None) -> dict:
    """Validate a header dict; raise :class:`CheckpointError` with a one-line reason."""
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{where}: not an xlatent model checkpoint")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{where}: checkpoint format version {version}, this xlatent reads version "
            f"{FORMAT_VERSION}; retrain the model"
        )
    if kind is not None and header.get("kind") != kind:
        raise CheckpointError(f"{where}: holds a {header.get('kind')!r} model, not {kind!r}")
    return header


def check_grid(header: dict, grid: EnergyGrid, where: str | Path) -> None:
    """Refuse a set on another grid than the one the model was trained on."""
    trained = EnergyGrid(np.asarray(header["grid_edges_kev"]))
    if trained != grid:
        raise CheckpointError(
            f"{where}: model was trained on {trained!r} but the spectra are on {grid!r}; "
            "regrid them or retrain"
        )


def write_header(model_dir: Path, header: dict) -> None:
    atomic_write_text(model_dir / HEADER_FILE, json.dumps(header, indent=2, default=_jsonable))


def read_header(model_dir: str | Path, kind: str | None = None) -> dict:
    """Read and validate ``model.json`` of a model directory."""
    path = Path(model_dir) / HEADER_FILE
    if not path.is_file():
        raise CheckpointError(f"{model_dir}: no {HEADER_FILE}; not a saved xlatent model")
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None
    return check_header(header, model_dir, kind)


def torch_save(obj: Any, path: Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def torch_load(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__})") from None


def load_model(model_dir: str | Path) -> Any:
    """Load a saved :class:`SpectralAutoencoder` or :class:`PCABaseline` (by its header)."""
    header = read_header(model_dir)
    if header["kind"] == "autoencoder":
        from xlatent.model.autoencoder import SpectralAutoencoder

        return SpectralAutoencoder.load(model_dir)
    if header["kind"] == "pca":
        from xlatent.model.pca import PCABaseline

        return PCABaseline.load(model_dir)
    raise CheckpointError(f"{model_dir}: unknown model kind {header['kind']!r}")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
