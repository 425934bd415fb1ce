"""physics.pileup: frame rates, pile-up fraction, energy pile-up and grade losses."""

from __future__ import annotations

import numpy as np
import pytest

from xlatent.physics.pileup import core_fraction, counts_per_frame, pile, pileup_fraction
from xlatent.physics.simulator import simulate


def test_fraction_and_core() -> None:
    lam = np.array([1e-8, 0.01, 1.0])
    f = pileup_fraction(lam)
    assert f[0] == pytest.approx(5e-9) and f[1] == pytest.approx(0.005, rel=0.01)
    assert f[2] == pytest.approx(1 - np.exp(-1) / (1 - np.exp(-1)))
    core = core_fraction(np.array([0.0, 4.0, 9.0]))
    assert 0.7 < core[0] < 0.85 and core[0] > core[1] > core[2]
    assert counts_per_frame(np.array([0.3]), np.array([0.0]))[0] == pytest.approx(
        0.3 * 3.241 * core[0]
    )


def _spectrum() -> np.ndarray:
    chan = np.zeros((1, 1024))
    chan[0, 30:140] = np.linspace(5.0, 1.0, 110)  # confined below 1024 / 6 channels
    return chan * 100


def test_faint_source_unaffected_and_bookkeeping() -> None:
    chan = _spectrum()
    faint = pile(chan, np.array([1e-5]), 0.5)  # 3e-6 counts/s: unchanged within 1e-4
    np.testing.assert_allclose(faint, chan, rtol=1e-4, atol=1e-9)
    lam = np.array([0.8])
    # Without grade losses (alpha = 1): every frame with >= 1 photon gives one event, and
    # the energy of the photons is all there (pulse heights add).
    kept = pile(chan, lam, 0.5, alpha=1.0, core=0.7)
    e = np.arange(1024) + 1.0
    expected = chan.sum() * (0.3 + 0.7 * (1 - np.exp(-lam[0])) / lam[0])
    assert kept.sum() == pytest.approx(expected, rel=1e-4)  # frames of > 6 photons: lost
    assert (kept * e).sum() == pytest.approx((chan * e).sum(), rel=0.01)
    # Grade migration loses a share of the piled events.
    assert pile(chan, lam, 0.5, alpha=0.5, core=0.7).sum() < kept.sum()


def test_bright_hard_source_loses_counts_and_hardens() -> None:
    # ~0.25 counts/s on-axis: about 0.6 counts per frame in the core.
    kw = {"seed": 2, "brightness": "counts", "counts_range": (5e3, 5e3), "class_mix": "balanced",
          "exposure_range_s": (2e4, 2e4), "instrument": {"theta_arcmin": 0.0}}  # fmt: skip
    piled, clean = simulate(16, **kw), simulate(16, pileup=False, **kw)
    hard = (piled.meta["source_class"] == "HMXB").to_numpy()
    assert hard.any() and (piled.meta["pileup_fraction"] > 0.1).all()
    assert (clean.meta["pileup_fraction"] == 0).all()
    e = piled.grid.centers_kev
    p_cnt, c_cnt = piled.expected_counts[hard], clean.expected_counts[hard]
    assert (p_cnt.sum(1) < 0.8 * c_cnt.sum(1)).all()
    # Every piled source hardens: its mean energy and its >2 keV / <2 keV count ratio rise
    # (a very hard HMXB only a little: part of its piled counts land above the 8 keV grid).
    p_all, c_all = piled.expected_counts, clean.expected_counts
    assert ((p_all @ e) / p_all.sum(1) > 1.01 * (c_all @ e) / c_all.sum(1)).all()
    hs = e > 2.0
    assert (p_all[:, hs].sum(1) / p_all[:, ~hs].sum(1)
            > 1.02 * c_all[:, hs].sum(1) / c_all[:, ~hs].sum(1)).all()  # fmt: skip
