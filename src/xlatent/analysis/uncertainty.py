"""Intervals for balanced accuracies: stratified bootstrap over test rows, pooled over repeats.

A balanced accuracy is the mean over classes of the recall; its sampling error is dominated by
the rare classes (the real table's test split holds 8 HMXB). Every headline figure is therefore
given as a mean over repeats (split / clustering seeds, where repeating is affordable) with a
95% interval from a *class-stratified* bootstrap of the test rows: each class's rows are
resampled with replacement, keeping the class counts, so each class's recall is re-estimated
from as many rows as it has. With several repeats, the bootstrap replicates of all repeats are
pooled (a mixture: it carries the test-sample and the seed/split variation) and the interval is
its 2.5 and 97.5 percentiles.

Differences between feature sets are *paired*: the same repeats (same splits, same seeds) and
the same bootstrap rows are used for both sets, and the interval is that of the per-replicate
difference. Balanced accuracy is linear in the per-row correctness, so the difference of two
sets' balanced accuracies on one replicate is the balanced accuracy computed from the
difference of their 0/1 correctness vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Bootstrap replicates per summary (split evenly over the repeats).
N_BOOT = 1000


@dataclass
class Scored:
    """Test-row predictions of one repeat: true labels and 0/1 correctness (aligned)."""

    y: np.ndarray  # labels of the scored test rows (object array)
    correct: np.ndarray  # float 0/1, same length
    rows: np.ndarray  # row indices of the evaluation (to check pairing)

    @property
    def bacc(self) -> float:
        return bacc_of(self.y, self.correct)


def bacc_of(y: np.ndarray, correct: np.ndarray) -> float:
    """Balanced accuracy (mean per-class recall) from a 0/1 (or difference) correctness vector."""
    classes = np.unique(y)
    if classes.size == 0:
        return float("nan")
    return float(np.mean([np.mean(correct[y == c]) for c in classes]))


def boot_bacc(y: np.ndarray, correct: np.ndarray, n_boot: int, seed: Any) -> np.ndarray:
    """``n_boot`` class-stratified bootstrap replicates of ``bacc_of(y, correct)``.

    The draws depend on ``seed`` and ``y`` only (not on ``correct``), so two calls with the
    same ``y`` and seed resample the same rows: that is what makes differences paired.
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    if classes.size == 0 or n_boot < 1:
        return np.full(max(n_boot, 0), np.nan)
    total = np.zeros(n_boot)
    for c in classes:
        vals = np.asarray(correct, dtype=np.float64)[y == c]
        draw = rng.integers(0, vals.size, size=(n_boot, vals.size))
        total += vals[draw].mean(axis=1)
    return total / classes.size


def summarise(reps: list[Scored], n_boot: int = N_BOOT, seed: Any = 0) -> dict[str, Any]:
    """Mean over repeats of the balanced accuracy, and a 95% pooled-bootstrap interval."""
    reps = [r for r in reps if r is not None and r.y.size]
    if not reps:
        return {"mean": None, "ci95": None, "reps": []}
    per = max(1, n_boot // len(reps))
    boots = np.concatenate(
        [boot_bacc(r.y, r.correct, per, [*_seed(seed), i]) for i, r in enumerate(reps)]
    )
    points = [r.bacc for r in reps]
    return {"mean": float(np.mean(points)), "ci95": _interval(boots), "reps": points}


def summarise_difference(
    a: list[Scored], b: list[Scored], n_boot: int = N_BOOT, seed: Any = 0
) -> dict[str, Any]:
    """Paired difference ``a - b`` over the same repeats and the same bootstrap rows."""
    pairs = [(x, y) for x, y in zip(a, b, strict=False) if x is not None and y is not None]
    pairs = [(x, y) for x, y in pairs if x.y.size and np.array_equal(x.rows, y.rows)]
    if not pairs:
        return {"mean": None, "ci95": None}
    per = max(1, n_boot // len(pairs))
    boots = np.concatenate([
        boot_bacc(x.y, x.correct - y.correct, per, [*_seed(seed), i])
        for i, (x, y) in enumerate(pairs)
    ])  # fmt: skip
    points = [bacc_of(x.y, x.correct - y.correct) for x, y in pairs]
    return {"mean": float(np.mean(points)), "ci95": _interval(boots)}


def _seed(seed: Any) -> list[int]:
    return [int(s) for s in np.atleast_1d(seed)]


def _interval(boots: np.ndarray) -> list[float] | None:
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return None
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return [float(lo), float(hi)]
