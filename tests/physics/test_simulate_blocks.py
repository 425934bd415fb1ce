"""The simulator in blocks (``simulate_blocks``, ``xlatent simulate``): exactly the one-shot
set, written block by block."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from typer.testing import CliRunner

import xlatent.cli.data as cli_data
from xlatent.cli import app
from xlatent.core import SpectrumSet
from xlatent.physics.simulator import simulate, simulate_blocks

ARRAYS = ("counts", "background", "exposure_s", "effective_area_cm2", "expected_counts")


def assert_same(a: SpectrumSet, b: SpectrumSet) -> None:
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    pd.testing.assert_frame_equal(a.meta, b.meta, check_exact=True)


def test_blocks_are_the_one_shot_set() -> None:
    whole = simulate(1300, seed=4)
    blocks = list(simulate_blocks(1300, seed=4, block_rows=400))
    assert [len(b) for b in blocks] == [500, 500, 300]  # rounded up to whole slot blocks
    joined = SpectrumSet.concat(blocks)
    assert_same(joined, whole)
    assert all(b.provenance == whole.provenance for b in blocks)


def test_default_sky_is_pinned() -> None:
    """``simulate(700, seed=3, chunk_size=500)`` pinned: ids, classes, split, responses and each
    spectrum's summed background exactly; the source counts per class to 0.2%. Counts cannot
    be pinned exactly across machines: numpy's SIMD kernels and OpenBLAS's per-CPU kernels move
    expected rates in the last bit, and a Poisson draw near a step then comes out a count
    apart (167 of these 700 spectra, by 1 count typically, between OpenBLAS's Haswell and
    SkylakeX kernels; class totals by at most 5e-4)."""
    s = simulate(700, seed=3, chunk_size=500)
    h = hashlib.sha256()
    for col in ("spec_id", "source_class", "split", "response_id"):
        h.update("\n".join(s.meta[col].astype(str)).encode())
    h.update(np.round(s.background.sum(axis=1), 3).tobytes())
    assert h.hexdigest() == "13f3e406adbcce3d036a2580b83127762d4a0fa4dd1cda627b222c740e3fb785"
    totals = s.meta.assign(c=s.counts.sum(axis=1)).groupby("source_class")["c"].sum()
    expected = {
        "AGN": 448495.6, "CV": 283190.4, "HM-STAR": 7399.0, "HMXB": 8351.6, "LM-STAR": 9833.0,
        "LMXB": 36029.5, "NS": 286452.4, "YSO": 361613.9,
    }  # fmt: skip
    assert totals.to_dict().keys() == expected.keys()
    np.testing.assert_allclose(totals[list(expected)], list(expected.values()), rtol=2e-3)


def test_cli_simulate_writes_blocks_identical_to_one_shot(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cli_data, "SIMULATE_BLOCK_ROWS", 500)  # three blocks
    out = tmp_path / "sim.h5"
    args = ["simulate", "--n", "1200", "--seed", "2", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    whole = simulate(1200, seed=2)
    back = SpectrumSet.read_hdf5(out)
    for name in ("counts", "background", "exposure_s"):
        assert np.array_equal(getattr(back, name), getattr(whole, name)), name
    for name in ("effective_area_cm2", "expected_counts"):  # stored as float32
        np.testing.assert_allclose(getattr(back, name), getattr(whole, name), rtol=6e-8)
    pd.testing.assert_frame_equal(back.meta, whole.meta, check_exact=True)
    assert back.provenance == whole.provenance
    assert whole.summary() in result.output
