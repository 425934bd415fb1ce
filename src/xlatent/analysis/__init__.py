"""Evaluation of latent catalogues against baselines (hardness ratios, PCA, true parameters).

``evaluate(set, latents, out_dir, model=None)`` runs every analysis and writes
``out_dir/metrics.json`` plus figures; the modules (:mod:`~xlatent.analysis.features`,
:mod:`~xlatent.analysis.clustering`, :mod:`~xlatent.analysis.regression`,
:mod:`~xlatent.analysis.reconstruction`, :mod:`~xlatent.analysis.interpretation`,
:mod:`~xlatent.analysis.timedomain`, :mod:`~xlatent.analysis.maps`) can also be used alone.
``evaluate_table(table, out_dir)`` runs the clustering protocol on the hardness features of a
labelled catalogue table (e.g. the real CSC sources of ``TD.csv``): the real-sky reference.
"""

from __future__ import annotations

from xlatent.analysis._common import REFERENCE, get_metric
from xlatent.analysis.evaluation import METRICS_FILE, evaluate
from xlatent.analysis.table import evaluate_table
from xlatent.core.vocabulary import CLASSES, COMPACT

__all__ = [
    "CLASSES",
    "COMPACT",
    "METRICS_FILE",
    "REFERENCE",
    "evaluate",
    "evaluate_table",
    "get_metric",
]
