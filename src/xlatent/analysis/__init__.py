"""Evaluation of latent catalogues against baselines (hardness ratios, PCA, true parameters).

``evaluate(set, latents, out_dir, model=None)`` runs every analysis and writes
``out_dir/metrics.json`` plus figures; the modules (:mod:`~xlatent.analysis.features`,
:mod:`~xlatent.analysis.clustering`, :mod:`~xlatent.analysis.regression`,
:mod:`~xlatent.analysis.reconstruction`, :mod:`~xlatent.analysis.interpretation`,
:mod:`~xlatent.analysis.timedomain`, :mod:`~xlatent.analysis.maps`) can also be used alone.
"""

from __future__ import annotations

from xlatent.analysis._common import CLASSES, COMPACT, REFERENCE, get_metric
from xlatent.analysis.evaluation import METRICS_FILE, evaluate

__all__ = ["CLASSES", "COMPACT", "METRICS_FILE", "REFERENCE", "evaluate", "get_metric"]
