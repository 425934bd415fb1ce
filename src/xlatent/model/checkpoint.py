"""Model directories: a JSON header plus weights, versioned and checked on load.

A model directory holds

- ``model.json``: format name and version, model kind (``autoencoder`` / ``pca``), xlatent
  version, the grid edges (keV), architecture config, preprocessing and a training summary;
- ``weights.pt`` (autoencoder state dict) or ``pca.npz`` (PCA components);
- ``train_state.pt`` while/after training the autoencoder: everything ``resume=True`` needs
  (optimizer, scheduler, epoch, RNG states, best weights, history).

Every file is written atomically, so an interrupted run leaves the previous complete version.
Model directories are downloaded and shared: they are data, never code. ``.pt`` files are
read with ``torch.load(weights_only=True)`` and hold only tensors, containers and plain
values; ``pca.npz`` is read with ``allow_pickle=False``. Every field is checked against a
schema (types, ranges, shapes, finiteness) before use, and anything wrong is a one-line
:class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from xlatent.core import EnergyGrid, XlatentError, atomic_path, atomic_write_text
from xlatent.model.options import PCA_OPTIONS, TRAIN_OPTIONS, Opt, check_arch, check_options
from xlatent.model.pileup import n_global
from xlatent.model.preprocess import N_CHANNELS

FORMAT_NAME = "xlatent.model"
#: Bumped on any incompatible change of the directory layout or of the preprocessing.
FORMAT_VERSION = 1
HEADER_FILE = "model.json"


class CheckpointError(XlatentError):
    """A model directory that cannot be used here: missing, damaged, unsafe, other format
    version or other grid. The one-line message names the file and the problem."""


class TrainingError(XlatentError):
    """Training cannot go on (e.g. the loss became NaN/inf)."""


def make_header(kind: str, grid: EnergyGrid, config: dict, preprocessing: dict) -> dict:
    """The self-description stored with every model."""
    from xlatent._version import __version__

    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "xlatent_version": __version__,
        "grid_edges_kev": [float(x) for x in grid.edges_kev],
        "config": config,
        "preprocessing": preprocessing,
    }


#: Top-level fields of ``model.json``; the last two are optional (``recipe``: the training
#: recipe that made the model, see :data:`RECIPE_FIELDS`; absent in older directories).
HEADER_FIELDS = (
    "format", "format_version", "kind", "xlatent_version", "grid_edges_kev", "config",
    "preprocessing", "training", "recipe",
)  # fmt: skip
#: ``recipe``: its name, the command that reruns it, the simulated set (size, seed) and the
#: model options it fixes (plain JSON values); optionally (integers >= 0, absent in older
#: directories) the independent sky the OOD threshold was refitted on (size, seed).
RECIPE_FIELDS = ("name", "command", "n", "seed", "options")
RECIPE_OPTIONAL_FIELDS = ("n_ood_reference", "ood_reference_seed")
#: The model kinds; :data:`xlatent.model.MODEL_KINDS` maps each to its estimator class.
KINDS = ("autoencoder", "pca")
#: A model.json larger than this is not one xlatent wrote (the training history is ~100 kB).
MAX_HEADER_BYTES = 64 * 2**20


def check_header(header: Any, where: str | Path, kind: str | None = None) -> dict:
    """Validate a header dict against the schema; raise :class:`CheckpointError` (one line).

    Checks the format and version, every field's type, the grid edges, and the model
    config of the header's kind (unknown/missing keys, types and ranges).
    """
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{where}: not an xlatent model checkpoint")
    version = header.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise CheckpointError(
            f"{where}: checkpoint format version {_short(version)}, this xlatent reads version "
            f"{FORMAT_VERSION}; retrain the model"
        )
    for key in header:
        if key not in HEADER_FIELDS:
            raise CheckpointError(f"{where}: unknown field {_short(key)}")
    for key in HEADER_FIELDS[:-2]:
        if key not in header:
            raise CheckpointError(f"{where}: missing field {key!r}")
    if header["kind"] not in KINDS:
        raise CheckpointError(f"{where}: unknown model kind {_short(header['kind'])}")
    if kind is not None and header["kind"] != kind:
        raise CheckpointError(f"{where}: holds a {header['kind']!r} model, not {kind!r}")
    if not isinstance(header["xlatent_version"], str):
        raise CheckpointError(f"{where}: xlatent_version must be a string")
    grid = _check_edges(header["grid_edges_kev"], where)
    if not isinstance(header["preprocessing"], dict):
        raise CheckpointError(f"{where}: preprocessing must be a JSON object")
    try:
        if header["kind"] == "autoencoder":
            config = check_autoencoder_config(header["config"], grid.n_bins)
        else:
            config = check_options(
                _object(header["config"], "config"), PCA_OPTIONS, required=["n_components"]
            )
        history = _check_history(header.get("training", {"history": []}))
        if "recipe" in header:
            check_recipe(header["recipe"])
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    out = dict(header)
    out["config"] = config
    if "training" in header:
        out["training"] = {"history": history}
    return out


def check_autoencoder_config(config: Any, n_bins: int) -> dict:
    """The ``{"arch": ..., "train": ...}`` config of a stored autoencoder (ValueError)."""
    config = _object(config, "config")
    for key in config:
        if key not in ("arch", "train"):
            raise ValueError(f"unknown config key {_short(key)}")
    for key in ("arch", "train"):
        if key not in config:
            raise ValueError(f"missing config key {key!r}")
    arch = check_arch(_object(config["arch"], "config.arch"), required=True, prefix="arch.")
    n_glob = n_global(arch["pileup_orders"])
    expected = {"n_bins": n_bins, "n_channels": N_CHANNELS, "n_global": n_glob}
    for key, value in expected.items():
        if arch[key] != value:
            raise ValueError(f"arch.{key} is {arch[key]}, expected {value}")
    # Optimisation options missing from an older file take their defaults.
    train = check_options(_object(config["train"], "config.train"), TRAIN_OPTIONS, prefix="train.")
    return {"arch": arch, "train": train}


def check_recipe(recipe: Any) -> dict:
    """A header's ``recipe``: :data:`RECIPE_FIELDS` (and optional ones), plain values."""
    keys, allowed = set(_object(recipe, "recipe")), (*RECIPE_FIELDS, *RECIPE_OPTIONAL_FIELDS)
    if not set(RECIPE_FIELDS) <= keys <= set(allowed):
        raise ValueError(f"recipe must have the keys {', '.join(RECIPE_FIELDS)} (of {allowed})")
    for key in ("name", "command"):
        Opt("str").check(f"recipe.{key}", recipe[key] or None)
    for key in ("n", "seed", *(k for k in RECIPE_OPTIONAL_FIELDS if k in keys)):
        Opt("int", lo=0).check(f"recipe.{key}", recipe[key])
    for key, value in _object(recipe["options"], "recipe.options").items():
        if not (isinstance(value, str | int) or isinstance(value, float) and math.isfinite(value)):
            raise ValueError(f"recipe.options.{key} must be a finite number, string or bool")
    return recipe


def _object(value: Any, name: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object, not {type(value).__name__}")
    return value


def _check_edges(edges: Any, where: str | Path) -> EnergyGrid:
    ok = (
        isinstance(edges, list)
        and len(edges) >= 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in edges)
    )
    if not ok:
        raise CheckpointError(f"{where}: grid_edges_kev must be a list of at least two numbers")
    try:
        return EnergyGrid(np.asarray(edges, dtype=np.float64))
    except ValueError as exc:
        raise CheckpointError(f"{where}: grid_edges_kev: {exc}") from None


def _check_history(training: Any) -> list[dict[str, float]]:
    training = _object(training, "training")
    if set(training) != {"history"} or not isinstance(training["history"], list):
        raise ValueError("training must be an object with one list, 'history'")
    history = training["history"]
    for rec in history:
        ok = isinstance(rec, dict) and all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
            for k, v in rec.items()
        )
        if not ok:
            raise ValueError("training.history must hold objects of numbers")
    return history


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


def require_file(path: Path) -> None:
    """A regular file must be at ``path`` (CheckpointError naming it otherwise)."""
    if not path.exists():
        raise CheckpointError(f"{path}: missing")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file")


def read_header(model_dir: str | Path, kind: str | None = None) -> dict:
    """Read and validate ``model.json`` of a model directory."""
    d = Path(model_dir)
    path = d / HEADER_FILE
    if not path.exists():
        if d.exists() and not d.is_dir():
            raise CheckpointError(f"{d}: not a directory; not a saved xlatent model")
        raise CheckpointError(f"{d}: no {HEADER_FILE}; not a saved xlatent model")
    require_file(path)
    try:
        if path.stat().st_size > MAX_HEADER_BYTES:
            raise CheckpointError(f"{path}: larger than {MAX_HEADER_BYTES >> 20} MiB")
        header = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({_first_line(exc)})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return check_header(header, path, kind)


#: The spectra a model was fitted on (one ``spec_id`` a line), so that evaluation can score
#: only spectra the model never saw. Absent in model directories of older versions.
TRAINING_IDS_FILE = "training_ids.txt"
MAX_TRAINING_IDS_BYTES = 512 * 2**20


def write_training_ids(model_dir: Path, spec_ids: Any) -> None:
    ids = [str(i) for i in spec_ids]
    bad = next((i for i in ids if not i or "\n" in i or "\r" in i), None)
    if bad is not None:
        raise ValueError(f"spec_id {bad!r} cannot be recorded (empty or with a line break)")
    atomic_write_text(model_dir / TRAINING_IDS_FILE, "".join(f"{i}\n" for i in ids))


def read_training_ids(model_dir: str | Path) -> list[str] | None:
    """The ``spec_id`` values the model in ``model_dir`` was fitted on; None if not recorded."""
    path = Path(model_dir) / TRAINING_IDS_FILE
    if not path.exists():
        return None
    require_file(path)
    if path.stat().st_size > MAX_TRAINING_IDS_BYTES:
        raise CheckpointError(f"{path}: larger than {MAX_TRAINING_IDS_BYTES >> 20} MiB")
    try:
        text = path.read_bytes().decode("utf-8")  # no newline translation: \r is refused
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable ({_first_line(exc)})") from None
    ids = text.split("\n")
    if ids and ids[-1] == "":
        ids.pop()
    if any(not i or "\r" in i for i in ids):
        raise CheckpointError(f"{path}: an empty or malformed spec_id line")
    return ids


def torch_save(obj: Any, path: Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def torch_load(path: Path) -> Any:
    """Load a ``.pt`` file as data only: tensors, containers and plain values.

    ``weights_only=True`` refuses any pickled Python object other than those, so a tampered
    file cannot run code; every failure is a one-line :class:`CheckpointError`.
    """
    import torch

    require_file(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: unreadable or unsafe checkpoint (empty file)")
    try:
        with warnings.catch_warnings():
            # A TorchScript archive is refused with weights_only; silence torch's notice.
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise CheckpointError(
            f"{path}: unreadable or unsafe checkpoint ({_load_reason(exc)})"
        ) from None


def _load_reason(exc: BaseException) -> str:
    text = str(exc)
    if "Weights only load failed" in text:
        for line in text.splitlines():
            if "GLOBAL" in line or line.lower().startswith("unsupported global"):
                return "holds Python objects, not only tensors and plain data: " + line.strip()
        return "holds Python objects, not only tensors and plain data"
    if "TorchScript" in text:
        return "a TorchScript archive, which holds code"
    line = _first_line(exc)
    return line.split(". This is an internal")[0]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else ""
    line = line if len(line) <= 160 else line[:157] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def check_state_dict(sd: Any, reference: dict, where: str | Path, what: str = "weights") -> dict:
    """``sd`` must have exactly ``reference``'s tensor names, shapes and dtypes, all finite.

    ``reference`` may live on the meta device (shapes only). Raises CheckpointError.
    """
    import torch

    if not isinstance(sd, dict):
        raise CheckpointError(f"{where}: {what} are not a dict of tensors")
    for key in sd:
        if key not in reference:
            raise CheckpointError(f"{where}: {what}: unexpected tensor {_short(key)}")
    for key, ref in reference.items():
        if key not in sd:
            raise CheckpointError(f"{where}: {what}: missing tensor {key!r}")
        t = sd[key]
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
            raise CheckpointError(f"{where}: {what}: {key!r} is not a dense tensor")
        if t.shape != ref.shape or t.dtype != ref.dtype:
            raise CheckpointError(
                f"{where}: {what}: {key!r} is {t.dtype} {tuple(t.shape)}, "
                f"expected {ref.dtype} {tuple(ref.shape)}"
            )
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{where}: {what}: {key!r} has NaN/inf values")
    return sd


def check_like(value: Any, reference: Any, where: str | Path, what: str) -> None:
    """``value`` must have ``reference``'s structure: same keys, lengths, kinds and tensor shapes.

    Numbers may differ (int and float are interchangeable), but must be finite.
    """
    import torch

    bad = CheckpointError(f"{where}: {what} does not have the expected structure")
    if isinstance(reference, dict):
        if not isinstance(value, dict) or set(value) != set(reference):
            raise bad
        for key in reference:
            check_like(value[key], reference[key], where, f"{what}[{key!r}]")
    elif isinstance(reference, list | tuple):
        if type(value) is not type(reference) or len(value) != len(reference):
            raise bad
        for i, (v, r) in enumerate(zip(value, reference, strict=True)):
            check_like(v, r, where, f"{what}[{i}]")
    elif isinstance(reference, torch.Tensor):
        if (
            not isinstance(value, torch.Tensor)
            or value.layout != torch.strided
            or value.shape != reference.shape
            or value.dtype != reference.dtype
        ):
            raise bad
    elif isinstance(reference, bool) or reference is None or isinstance(reference, str):
        if type(value) is not type(reference):
            raise bad
    elif isinstance(reference, int | float):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise bad
        if isinstance(value, float) and not math.isfinite(value):
            raise bad
    else:  # pragma: no cover - references are built from torch state dicts
        raise TypeError(f"cannot compare with {type(reference).__name__}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
