"""Issue 16's rehearsal, small: a mock CSC archive in exact pha3/arf3/rmf3 form (several
responses, repeated sources, interleaved and mixed-version products) served by the loopback
stand-in that speaks only the real protocol; `xlatent csc query` -> `csc download` ->
`ingest --catalog --labels` -> `train` -> `encode` -> `evaluate`, checking that every
detection's counts and label arrive intact. (>= 2,000 detections: benchmarks/csc_rehearsal.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from xlatent.cli import app
from xlatent.core import SpectrumSet
from xlatent.physics.mock_csc import write_mock_archive

from .rehearsal import serve

PAIRS = [
    ("acisf00308_000N001_r0044_arf3.fits", "acisf00308_000N001_r0044_rmf3.fits"),
    ("acisf01878_000N001_r0100_arf3.fits", "acisf01878_000N001_r0100_rmf3.fits"),
]
N = 64


def run(*args: object) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.timeout(300)
def test_query_download_ingest_train_encode_evaluate(
    tmp_path: Path, real_spectra_dir: Path
) -> None:
    responses = [(real_spectra_dir / a, real_spectra_dir / r) for a, r in PAIRS]
    archive = write_mock_archive(tmp_path / "archive", N, seed=5, responses=responses,
                                 n_obsids=8, n_interleaved=1, n_mixed_version=2)  # fmt: skip
    fake = serve(archive.root, archive.catalog_path)
    try:
        cat, data = tmp_path / "catalog.fits", tmp_path / "data"
        out = run("csc", "query", "--url", fake.tap_url, "--min-counts", "0",
                  "--min-significance", "0", "--max-theta", "30", "--out", cat)  # fmt: skip
        assert f"{N} detections" in out
        run("csc", "download", cat, "--dir", data, "--url", fake.retrieve_url,
            "--no-progress", "--batch-size", "16")  # fmt: skip
    finally:
        fake.stop()
    assert all(r["method"] == "GET" for r in fake.retrieve_log)
    run(
        "ingest",
        data,
        "--catalog",
        cat,
        "--labels",
        archive.labels_path,
        "--out",
        tmp_path / "s.h5",
    )
    s = SpectrumSet.read(tmp_path / "s.h5")
    assert len(s) == N

    # Every detection's counts and label arrive intact (interleaved and mixed-version included).
    truth = archive.truth.reset_index()
    got = s.meta.merge(truth, on=["obsid", "obi", "region_id"], suffixes=("", "_truth"))
    assert len(got) == N
    for band in ("s", "m", "h", "b"):
        np.testing.assert_allclose(got[f"net_counts_{band}"], got[f"net_counts_{band}_truth"])
    assert (got["source_class"] == got["source_class_truth"]).all()
    assert (got["name"] == got["name_truth"]).all()
    assert (truth["cycle"] > 0).any()
    # The split keeps every source (repeated across ObsIDs) on one side.
    assert (s.meta.groupby("name")["split"].nunique() == 1).all()

    run("train", tmp_path / "s.h5", "--out", tmp_path / "m", "--epochs", "2")
    run("encode", tmp_path / "s.h5", "--model", tmp_path / "m", "--out", tmp_path / "l.parquet")
    run("evaluate", tmp_path / "s.h5", "--latents", tmp_path / "l.parquet", "--model",
        tmp_path / "m", "--out", tmp_path / "eval")  # fmt: skip
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    n_train = int((s.meta["split"] == "train").sum())
    assert metrics["data"]["n_excluded_trained"] == n_train
    assert "catalog_powlaw_gamma" in metrics["regression"]["latent"]
    assert pd.read_parquet(tmp_path / "l.parquet").shape[0] == N
