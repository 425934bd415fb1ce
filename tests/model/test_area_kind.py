"""Sets say what their effective areas hold; the model says when they are not what it learned."""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from xlatent.core.area_kind import AREA_DEFINITION, plain_mean_areas
from xlatent.instrument.folded_area import REFERENCE_GAMMA
from xlatent.io.ingest import read_spectra
from xlatent.model import PCABaseline, SpectralAutoencoder
from xlatent.model.preprocess import PLAIN_MEAN_WARNING
from xlatent.physics.simulator import simulate


def test_definition_names_the_reference_spectrum() -> None:
    assert AREA_DEFINITION == f"folded:gamma={REFERENCE_GAMMA:g}"


def test_plain_mean_areas_reads_the_steps_that_make_areas() -> None:
    assert not plain_mean_areas([])
    assert not plain_mean_areas([{"step": "combine_by"}, {"step": "poisson_twin"}])
    assert not plain_mean_areas([{"step": "ingest", "area": AREA_DEFINITION}])
    assert plain_mean_areas([{"step": "simulate", "seed": 0}])  # before 2026-12-04
    assert plain_mean_areas([{"step": "ingest", "area": AREA_DEFINITION}, {"step": "ingest"}])
    assert plain_mean_areas([{"step": "ingest", "area": "something else"}])


def test_simulated_and_ingested_sets_record_folded_areas(real_spectra_dir, tmp_path) -> None:
    s = simulate(40, seed=5)
    assert [p["area"] for p in s.provenance if p["step"] == "simulate"] == [AREA_DEFINITION]
    s.write(tmp_path / "s.h5")
    assert not plain_mean_areas(type(s).read(tmp_path / "s.h5").provenance)
    real = read_spectra(real_spectra_dir)
    assert [p.get("area") for p in real.provenance if p["step"] == "ingest"] == [AREA_DEFINITION]


def test_encoding_plain_mean_areas_warns_and_pca_does_not() -> None:
    s = simulate(40, seed=5)
    model = SpectralAutoencoder.pretrained()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # today's sets: no warning at all
        model.transform(s)
    old = dataclasses.replace(
        s, provenance=[{k: v for k, v in p.items() if k != "area"} for p in s.provenance]
    )
    with pytest.warns(UserWarning, match="plain bin means") as record:
        model.transform(old)
    assert str(record[0].message) == PLAIN_MEAN_WARNING
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PCA works on counts only: the area does not matter
        PCABaseline(n_components=2).fit(old).transform(old)
