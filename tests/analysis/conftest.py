"""Fixtures: one shared evaluate() run on the synthetic set."""

from __future__ import annotations

import pytest

from xlatent.core import SpectrumSet

from .synth import OracleModel, make_set, separated_latents


@pytest.fixture(scope="session")
def synth_set() -> SpectrumSet:
    return make_set()


@pytest.fixture(scope="session")
def synth_eval(synth_set: SpectrumSet, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """One full evaluate() run shared by the tests (it is the slow part)."""
    from xlatent.analysis import evaluate

    out = tmp_path_factory.mktemp("eval")
    metrics = evaluate(synth_set, separated_latents(synth_set), out, model=OracleModel(),
                       seed=0, projection="pca", max_points=400)  # fmt: skip
    return out, metrics
