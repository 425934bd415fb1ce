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
    """A digest of ``simulate(700, seed=3, chunk_size=500)``: ids, classes, split and responses
    exactly, each spectrum's summed counts and background to 1e-3. The earlier digest of every
    value rounded to 1e-6 depended on the CPU: some regridded counts lie within 1e-10 of the
    rounding's half-way points, and BLAS kernels that differ by CPU move them either way."""
    s = simulate(700, seed=3, chunk_size=500)
    h = hashlib.sha256()
    for col in ("spec_id", "source_class", "split", "response_id"):
        h.update("\n".join(s.meta[col].astype(str)).encode())
    h.update(np.round(s.counts.sum(axis=1), 3).tobytes())
    h.update(np.round(s.background.sum(axis=1), 3).tobytes())
    assert h.hexdigest() == "dccf5f2fae6f8a8ec8d9dbaad07d00ad2ac09085c613db6586a181ca06ed6e4e"


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
