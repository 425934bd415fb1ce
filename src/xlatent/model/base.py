"""What the latent models share: scikit-learn's estimator contract and the deviance.

The contract (``sklearn/base.py``): every hyper-parameter is an explicit keyword of
``__init__``, stored under the same name (options are checked there, so a stored value is the
checked, plain-Python one: a plain int/float/bool/str passes through as the same object);
``get_params``/``set_params`` derive from that signature, so ``type(m)(**m.get_params())`` (or
``sklearn.base.clone(m)``) is the same unfitted estimator. What ``fit`` learns ends in ``_``
(``grid_``, ``net_``, ``history_``, ``pca_``) and does not exist before it.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd

from xlatent.core import SpectrumSet
from xlatent.model.preprocess import poisson_deviance

if TYPE_CHECKING:
    from xlatent.model.uncertainty import Encoded


class Params:
    """``get_params``/``set_params`` from the keywords of ``__init__`` (scikit-learn style)."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind not in kinds]

    def get_params(self, deep: bool = False) -> dict[str, Any]:  # noqa: ARG002 - no sub-estimators
        """The hyper-parameters, by name, as given to (and checked by) ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Set hyper-parameters, checked as ``__init__`` checks them (fitted state is kept)."""
        names = self._param_names()
        for name in params:
            if name not in names:
                raise ValueError(
                    f"invalid parameter {name!r} for {type(self).__name__}; "
                    f"valid parameters: {', '.join(names)}"
                )
        checked = type(self)(**{**self.get_params(), **params})
        for name in params:
            setattr(self, name, getattr(checked, name))
        return self


class LatentModel(Params):
    """Common interface: ``fit``, ``transform``, ``reconstruct``, ``save``/``load``;
    ``encode`` / ``encode_catalog`` add latent errors and the OOD score."""

    #: The ``kind`` of its model directories (``model.json``).
    kind: str
    latent_dim: int

    def reconstruct(self, spectrum_set: SpectrumSet) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def transform(self, spectrum_set: SpectrumSet) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def encode_and_reconstruct(self, spectrum_set: SpectrumSet) -> tuple[np.ndarray, np.ndarray]:
        """(latents, reconstruction); a model whose reconstruction encodes again overrides
        this to encode once."""
        return self.transform(spectrum_set), self.reconstruct(spectrum_set)

    def deviance(self, spectrum_set: SpectrumSet) -> np.ndarray:
        """Per-spectrum Poisson deviance of the counts given reconstruction + background."""
        recon = self.reconstruct(spectrum_set)
        return poisson_deviance(spectrum_set.counts, recon + spectrum_set.background)

    def _fitted(self, *names: str) -> tuple[Any, ...]:
        """The fitted attributes ``names``; RuntimeError before ``fit``/``load``."""
        if not all(hasattr(self, name) for name in names):
            raise RuntimeError("the model is not fitted; call fit() or load() first")
        return tuple(getattr(self, name) for name in names)

    def encode(self, spectrum_set: SpectrumSet, n_draws: int = 16, seed: int = 0) -> Encoded:
        """Latents with their errors (``n_draws`` Poisson redraws each, 0: none), the
        reconstruction deviance and the OOD score and flag
        (:func:`~xlatent.model.uncertainty.encode_with_errors`)."""
        from xlatent.model.uncertainty import encode_with_errors

        return encode_with_errors(self, spectrum_set, n_draws, seed=seed)

    def calibrate_ood(self, reference: SpectrumSet, description: str = "user reference") -> Any:
        """Refit the OOD threshold (and its standardisers) on ``reference``: spectra the model
        was not trained on that it should flag at 1% (an independent simulated sky, or real
        spectra you trust); ``description`` is kept in ``calibration.json``. Returns self.
        (:func:`~xlatent.model.calibration.recalibrate_ood`)"""
        from xlatent.model.calibration import recalibrate_ood

        self.calibration_ = recalibrate_ood(self, reference, description)
        return self

    def encode_catalog(
        self, spectrum_set: SpectrumSet, n_draws: int = 16, seed: int = 0
    ) -> pd.DataFrame:
        """The latent catalogue as ``xlatent encode`` writes it: meta, ``latent_<i>``,
        ``latent_<i>_err`` (unless ``n_draws`` = 0), ``ood_score`` and, when the model has a
        calibration, ``ood_flag``."""
        from xlatent.model.catalog import latent_catalog

        r = self.encode(spectrum_set, n_draws, seed)
        return latent_catalog(spectrum_set, r.latents, r.errors, r.ood_score, r.ood_flag)
