"""Latent models of spectral shape: the transformer autoencoder and the PCA baseline.

``SpectralAutoencoder(latent_dim=8).fit(s)``, ``.transform(s)``, ``.reconstruct(s)``,
``.save(dir)``; ``PCABaseline(n_components=8)`` has the same API; ``load_model(dir)`` loads
either (by :data:`MODEL_KINDS`), and with no directory the pretrained model that ships in the
package (``model/data/pretrained``, :mod:`xlatent.model.pretrained`);
:mod:`xlatent.model.catalog` writes and reads latent catalogues.

Modules: ``options`` (option groups, tables, validation), ``network`` (torch modules),
``training`` (the training loop and its resumable state), ``checkpoint`` (model-directory
schema and safe loading), ``pretrained`` (the shipped model), ``autoencoder`` and ``pca`` (the
estimators), ``base`` (their scikit-learn-style contract), ``preprocess``, ``catalog``,
``uncertainty`` (latent errors by Poisson resampling: ``model.encode(s)``,
``model.encode_catalog(s)``) and ``calibration`` (the error scale and OOD threshold a model
directory keeps in ``calibration.json``). Nothing in the package imports this module, so
loading by kind needs no import cycle.
"""

from __future__ import annotations

from pathlib import Path

from xlatent.model.autoencoder import SpectralAutoencoder
from xlatent.model.base import LatentModel
from xlatent.model.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    TrainingError,
    read_header,
)
from xlatent.model.pca import PCABaseline
from xlatent.model.preprocess import poisson_deviance

#: The estimator class of each model kind (the ``kind`` of ``model.json``).
MODEL_KINDS: dict[str, type[LatentModel]] = {
    cls.kind: cls for cls in (SpectralAutoencoder, PCABaseline)
}


def load_model(model_dir: str | Path | None = None) -> SpectralAutoencoder | PCABaseline:
    """Load a saved :class:`SpectralAutoencoder` or :class:`PCABaseline` (by its header);
    with no ``model_dir``, the pretrained model shipped with xlatent
    (:meth:`SpectralAutoencoder.pretrained`)."""
    if model_dir is None:
        return SpectralAutoencoder.pretrained()
    header = read_header(model_dir)
    cls = MODEL_KINDS.get(header["kind"])
    if cls is None:
        raise CheckpointError(f"{model_dir}: unknown model kind {header['kind']!r}")
    return cls.load(model_dir)


__all__ = [
    "FORMAT_VERSION",
    "MODEL_KINDS",
    "CheckpointError",
    "PCABaseline",
    "SpectralAutoencoder",
    "TrainingError",
    "load_model",
    "poisson_deviance",
]
