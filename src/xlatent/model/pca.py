"""PCA baseline with the autoencoder's API, on exactly the same preprocessed spectra.

scikit-learn PCA on x = log1p(m * y), y the normalised net spectrum (the autoencoder's first
input channel, :mod:`xlatent.model.preprocess`). Reconstruction inverts the transform,
clips negative values at a tiny floor, renormalises to a shape and multiplies by the same
amplitude N as the autoencoder, so both are scored by the same Poisson deviance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA

from xlatent.core import EnergyGrid, SpectrumSet, atomic_path
from xlatent.model.base import LatentModel
from xlatent.model.checkpoint import (
    CheckpointError,
    check_grid,
    make_header,
    read_header,
    write_header,
)
from xlatent.model.preprocess import prepare, shape_to_counts, x_to_shape

PCA_FILE = "pca.npz"
PREPROCESSING = {
    "input": "log1p(m * net_shape)",
    "amplitude": "max(sum(counts) - sum(background), 1)",
    "reconstruction": "amplitude * normalise(max(expm1(x) / m, 1e-9))",
}


class PCABaseline(LatentModel):
    """``PCABaseline(n_components=8).fit(s)``, then ``transform``/``reconstruct``/``save``."""

    def __init__(self, n_components: int = 8, seed: int = 0) -> None:
        self.n_components = n_components
        self.seed = seed
        self.grid: EnergyGrid | None = None
        self.pca: PCA | None = None

    @property
    def latent_dim(self) -> int:
        return self.n_components

    def fit(self, spectrum_set: SpectrumSet) -> PCABaseline:
        """Fit the components on ``spectrum_set``; returns self."""
        x = prepare(spectrum_set).net_shape_x
        k = min(self.n_components, *x.shape)
        if k < self.n_components:
            raise ValueError(f"{self.n_components} components need at least as many spectra")
        self.pca = PCA(n_components=self.n_components, random_state=self.seed).fit(x)
        self.grid = spectrum_set.grid
        return self

    def _x(self, s: SpectrumSet) -> tuple[np.ndarray, np.ndarray]:
        if self.pca is None or self.grid is None:
            raise RuntimeError("the model is not fitted; call fit() or load() first")
        check_grid({"grid_edges_kev": self.grid.edges_kev}, s.grid, "model")
        p = prepare(s)
        return p.net_shape_x, p.amplitude

    def transform(self, spectrum_set: SpectrumSet) -> np.ndarray:
        """PCA scores, (n, n_components)."""
        x, _ = self._x(spectrum_set)
        return self.pca.transform(x)

    def reconstruct(self, spectrum_set: SpectrumSet) -> np.ndarray:
        """Expected source counts (n, m) from the first ``n_components`` components."""
        x, amp = self._x(spectrum_set)
        x_hat = self.pca.inverse_transform(self.pca.transform(x))
        return shape_to_counts(x_to_shape(x_hat), amp)

    def save(self, model_dir: str | Path) -> Path:
        """Write ``model.json`` and ``pca.npz`` into ``model_dir``."""
        if self.pca is None or self.grid is None:
            raise RuntimeError("the model is not fitted")
        d = Path(model_dir)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / PCA_FILE) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                components=self.pca.components_,
                mean=self.pca.mean_,
                explained_variance=self.pca.explained_variance_,
                explained_variance_ratio=self.pca.explained_variance_ratio_,
                singular_values=self.pca.singular_values_,
            )
        config = {"n_components": self.n_components, "seed": self.seed}
        write_header(d, make_header("pca", self.grid, config, PREPROCESSING))
        return d

    @classmethod
    def load(cls, model_dir: str | Path) -> PCABaseline:
        """Load a baseline saved by :meth:`save`."""
        d = Path(model_dir)
        header = read_header(d, kind="pca")
        if not (d / PCA_FILE).is_file():
            raise CheckpointError(f"{d}: no {PCA_FILE}")
        model = cls(**header["config"])
        with np.load(d / PCA_FILE) as z:
            pca = PCA(n_components=model.n_components)
            pca.components_ = z["components"]
            pca.mean_ = z["mean"]
            pca.explained_variance_ = z["explained_variance"]
            pca.explained_variance_ratio_ = z["explained_variance_ratio"]
            pca.singular_values_ = z["singular_values"]
            pca.n_components_ = pca.components_.shape[0]
            pca.n_features_in_ = pca.components_.shape[1]
            pca.whiten = False
        model.pca = pca
        model.grid = EnergyGrid(np.asarray(header["grid_edges_kev"]))
        return model
