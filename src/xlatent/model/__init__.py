"""Latent models of spectral shape: the transformer autoencoder and the PCA baseline.

``SpectralAutoencoder(latent_dim=8).fit(s)``, ``.transform(s)``, ``.reconstruct(s)``,
``.save(dir)``; ``PCABaseline(n_components=8)`` has the same API; ``load_model(dir)`` loads
either; :mod:`xlatent.model.catalog` writes and reads latent catalogues.
"""

from __future__ import annotations

from xlatent.model.autoencoder import SpectralAutoencoder
from xlatent.model.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    TrainingError,
    load_model,
)
from xlatent.model.pca import PCABaseline
from xlatent.model.preprocess import poisson_deviance

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "PCABaseline",
    "SpectralAutoencoder",
    "TrainingError",
    "load_model",
    "poisson_deviance",
]
