"""What the autoencoder and the PCA baseline share: deviance of reconstructions."""

from __future__ import annotations

import numpy as np

from xlatent.core import SpectrumSet
from xlatent.model.preprocess import poisson_deviance


class LatentModel:
    """Common interface: ``fit``, ``transform``, ``reconstruct``, ``save``/``load``."""

    latent_dim: int

    def reconstruct(self, spectrum_set: SpectrumSet) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def deviance(self, spectrum_set: SpectrumSet) -> np.ndarray:
        """Per-spectrum Poisson deviance of the counts given reconstruction + background."""
        recon = self.reconstruct(spectrum_set)
        return poisson_deviance(spectrum_set.counts, recon + spectrum_set.background)
