"""Latent catalogue: columns, parquet and FITS round trips, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xlatent.core import InputError
from xlatent.model.catalog import latent_catalog, latent_columns, read_latents, write_latents


@pytest.mark.parametrize("name", ["lat.parquet", "lat.fits"])
def test_round_trip(toy_set, tmp_path: Path, name: str) -> None:
    z = np.random.default_rng(0).normal(size=(len(toy_set), 3))
    df = latent_catalog(toy_set, z)
    assert list(df.columns[:1]) == ["spec_id"]
    assert latent_columns(df) == ["latent_0", "latent_1", "latent_2"]
    assert "truth_nh_1e22" in df and "source_class" in df
    path = write_latents(df, tmp_path / name)
    back = read_latents(path)
    np.testing.assert_array_equal(back[latent_columns(back)].to_numpy(), z)
    assert list(back["spec_id"]) == list(toy_set.meta["spec_id"])
    assert list(back["source_class"]) == list(toy_set.meta["source_class"])
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_wrong_shape_and_missing_file(toy_set, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="latents must be"):
        latent_catalog(toy_set, np.zeros((3, 2)))
    with pytest.raises(InputError, match="no such file"):
        read_latents(tmp_path / "none.parquet")
