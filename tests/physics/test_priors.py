"""physics.priors: one prior per class, drawn in the simulator's (TD size) class order."""

from __future__ import annotations

import numpy as np

from xlatent.core.vocabulary import CLASSES, TD_CLASS_COUNTS
from xlatent.physics.priors import CLASSES as SIM_CLASSES
from xlatent.physics.priors import PRIORS


def test_every_class_has_a_prior_in_td_size_order() -> None:
    assert set(PRIORS) == set(CLASSES) == set(SIM_CLASSES)
    sizes = [TD_CLASS_COUNTS[c] for c in SIM_CLASSES]
    assert sizes == sorted(sizes, reverse=True)
    # The simulator's order is fixed: seeded draws depend on it.
    assert SIM_CLASSES == ("AGN", "YSO", "LM-STAR", "HM-STAR", "NS", "LMXB", "CV", "HMXB")
    assert np.isclose(sum(TD_CLASS_COUNTS.values()), 2941)
