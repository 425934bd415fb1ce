"""PCA baseline with the autoencoder's API, on exactly the same preprocessed spectra.

scikit-learn PCA on x = log1p(m * y), y the normalised net spectrum (the autoencoder's first
input channel, :mod:`xlatent.model.preprocess`). Reconstruction inverts the transform,
clips negative values at a tiny floor, renormalises to a shape and multiplies by the same
amplitude N as the autoencoder, so both are scored by the same Poisson deviance.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xlatent.core import EnergyGrid, SpectrumSet, atomic_path
from xlatent.model.base import LatentModel
from xlatent.model.checkpoint import (
    CheckpointError,
    check_grid,
    make_header,
    read_header,
    read_training_ids,
    require_file,
    write_header,
    write_training_ids,
)
from xlatent.model.options import PCA_OPTIONS, check_options
from xlatent.model.preprocess import prepare, shape_to_counts, x_to_shape

if TYPE_CHECKING:
    from sklearn.decomposition import PCA

PCA_FILE = "pca.npz"
PREPROCESSING = {
    "input": "log1p(m * net_shape)",
    "amplitude": "max(sum(counts) - sum(background), 1)",
    "reconstruction": "amplitude * normalise(max(expm1(x) / m, 1e-9))",
}


class PCABaseline(LatentModel):
    """``PCABaseline(n_components=8).fit(s)``, then ``transform``/``reconstruct``/``save``.

    Parameters ``n_components`` and ``seed`` (scikit-learn's ``random_state``), checked here.
    Fitted attributes: ``training_ids_`` (``spec_id`` of the spectra fitted on, saved as
    ``training_ids.txt``), ``grid_`` (the training set's energy grid) and ``pca_`` (the fitted
    :class:`sklearn.decomposition.PCA`).
    """

    kind = "pca"

    def __init__(self, n_components: int = 8, seed: int = 0) -> None:
        opts = check_options({"n_components": n_components, "seed": seed}, PCA_OPTIONS)
        self.n_components = opts["n_components"]
        self.seed = opts["seed"]

    @property
    def latent_dim(self) -> int:
        return self.n_components

    def fit(self, spectrum_set: SpectrumSet) -> PCABaseline:
        """Fit the components on ``spectrum_set``; returns self."""
        n, m = len(spectrum_set), spectrum_set.grid.n_bins
        if self.n_components > min(n, m):
            raise ValueError(
                f"{self.n_components} components need at least {self.n_components} spectra "
                f"and energy bins; the set has {n} spectra on {m} bins"
            )
        from sklearn.decomposition import PCA  # here: scikit-learn takes ~1.5 s to import

        x = prepare(spectrum_set, check_area=False).net_shape_x
        self.pca_ = PCA(n_components=self.n_components, random_state=self.seed).fit(x)
        self.grid_ = spectrum_set.grid
        self.training_ids_ = spectrum_set.meta["spec_id"].astype(str).tolist()
        return self

    def _x(self, s: SpectrumSet) -> tuple[PCA, np.ndarray, np.ndarray]:
        pca, grid = self._fitted("pca_", "grid_")
        check_grid({"grid_edges_kev": grid.edges_kev}, s.grid, "model")
        p = prepare(s, check_area=False)
        return pca, p.net_shape_x, p.amplitude

    def transform(self, spectrum_set: SpectrumSet) -> np.ndarray:
        """PCA scores, (n, n_components)."""
        pca, x, _ = self._x(spectrum_set)
        return pca.transform(x)

    def reconstruct(self, spectrum_set: SpectrumSet) -> np.ndarray:
        """Expected source counts (n, m) from the first ``n_components`` components."""
        pca, x, amp = self._x(spectrum_set)
        x_hat = pca.inverse_transform(pca.transform(x))
        return shape_to_counts(x_to_shape(x_hat), amp)

    def save(self, model_dir: str | Path) -> Path:
        """Write ``model.json`` and ``pca.npz`` into ``model_dir``."""
        if not (hasattr(self, "pca_") and hasattr(self, "grid_")):
            raise RuntimeError("the model is not fitted")
        pca, grid = self.pca_, self.grid_
        d = Path(model_dir)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / PCA_FILE) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                components=pca.components_,
                mean=pca.mean_,
                explained_variance=pca.explained_variance_,
                explained_variance_ratio=pca.explained_variance_ratio_,
                singular_values=pca.singular_values_,
            )
        if getattr(self, "training_ids_", None) is not None:
            write_training_ids(d, self.training_ids_)
        config = {"n_components": self.n_components, "seed": self.seed}
        write_header(d, make_header(self.kind, grid, config, PREPROCESSING))
        return d

    @classmethod
    def load(cls, model_dir: str | Path) -> PCABaseline:
        """Load a baseline saved by :meth:`save`."""
        d = Path(model_dir)
        header = read_header(d, kind=cls.kind)
        model = cls(**header["config"])
        grid = EnergyGrid(np.asarray(header["grid_edges_kev"]))
        z = _read_arrays(d / PCA_FILE, model.n_components, grid.n_bins)
        from sklearn.decomposition import PCA

        pca = PCA(n_components=model.n_components)
        pca.components_ = z["components"]
        pca.mean_ = z["mean"]
        pca.explained_variance_ = z["explained_variance"]
        pca.explained_variance_ratio_ = z["explained_variance_ratio"]
        pca.singular_values_ = z["singular_values"]
        pca.n_components_ = model.n_components
        pca.n_features_in_ = grid.n_bins
        pca.whiten = False
        model.pca_, model.grid_ = pca, grid
        model.training_ids_ = read_training_ids(d)
        return model


def _read_arrays(path: Path, k: int, n_bins: int) -> dict[str, np.ndarray]:
    """The arrays of ``pca.npz``, read without unpickling and checked (CheckpointError).

    Exactly the five arrays :meth:`PCABaseline.save` writes, float, finite and of the shapes
    that ``k`` components on ``n_bins`` bins have.
    """
    shapes = {
        "components": (k, n_bins),
        "mean": (n_bins,),
        "explained_variance": (k,),
        "explained_variance_ratio": (k,),
        "singular_values": (k,),
    }
    require_file(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: unreadable or unsafe array archive (empty file)")
    out: dict[str, np.ndarray] = {}
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path}: not an npz archive of arrays")
        with z:
            names = set(z.files)
            for name in sorted(names - set(shapes)):
                raise CheckpointError(f"{path}: unexpected array {name[:60]!r}")
            for name, shape in shapes.items():
                if name not in names:
                    raise CheckpointError(f"{path}: no array {name!r}")
                # Refuse before decompressing anything much larger than the array should be.
                size = z.zip.getinfo(f"{name}.npy").file_size
                if size > 16 * int(np.prod(shape)) + 4096:
                    raise CheckpointError(f"{path}: array {name!r} is larger than {shape}")
                arr = z[name]
                if arr.dtype.kind != "f" or arr.shape != shape:
                    raise CheckpointError(
                        f"{path}: array {name!r} is {arr.dtype} {arr.shape}, expected float {shape}"
                    )
                if not np.isfinite(arr).all():
                    raise CheckpointError(f"{path}: array {name!r} has NaN/inf values")
                out[name] = arr.astype(np.float64)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        line = (str(exc).strip().splitlines() or [""])[0][:160]
        raise CheckpointError(
            f"{path}: unreadable or unsafe array archive ({type(exc).__name__}: {line})"
        ) from None
    return out
