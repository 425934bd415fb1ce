"""The pile-up arithmetic shared by simulator, ingest and model (xlatent.core.pileup)."""

from __future__ import annotations

import numpy as np
import pytest

from xlatent.core.pileup import (
    FRAME_TIME_S,
    MAX_LAM,
    frame_time_from_header,
    incident_counts_per_frame,
    observed_counts_per_frame,
)


def test_observed_rate_is_the_incident_one_when_faint_and_less_when_piled() -> None:
    lam = np.array([1e-4, 0.1, 0.5, 1.0])
    obs = observed_counts_per_frame(lam, 0.79)
    assert obs[0] == pytest.approx(lam[0], rel=1e-4)
    assert (obs[1:] < lam[1:]).all() and (np.diff(obs) > 0).all()
    # no core: nothing piles, nothing is lost
    assert np.allclose(observed_counts_per_frame(lam, 0.0), lam)
    # all in the core, alpha = 0.5: e^-lam (e^(lam/2) - 1) / 0.5
    assert observed_counts_per_frame(1.0, 1.0) == pytest.approx(2 * np.exp(-1) * np.expm1(0.5))


@pytest.mark.parametrize("core", [0.1, 0.5, 0.79, 1.0])
def test_incident_inverts_observed_on_the_rising_branch(core: float) -> None:
    lam = np.array([0.0, 1e-3, 0.05, 0.3, 1.0, 1.3])
    back = incident_counts_per_frame(observed_counts_per_frame(lam, core), core)
    assert np.allclose(back, lam, atol=1e-9)
    # past the peak (all in the core: 2 ln 2) a rate maps to the peak, never beyond
    top = incident_counts_per_frame(np.array([50.0]), core)[0]
    assert top == pytest.approx(2 * np.log(2) if core == 1.0 else MAX_LAM, rel=1e-6)


def test_frame_time_from_header() -> None:
    nan = float("nan")  # a keyword the header lacks
    assert frame_time_from_header(3.14104, nan, nan) == 3.14104  # TIMEDEL wins
    assert frame_time_from_header(nan, 0.4, 0.9) == pytest.approx(0.44104)
    # DTCOR of a full frame (3.2 s exposure of 3.24104 s) gives it back
    assert frame_time_from_header(nan, nan, 3.2 / 3.24104) == pytest.approx(3.24104)
    assert frame_time_from_header(nan, nan, nan) == FRAME_TIME_S
    assert frame_time_from_header(-1.0, 0.0, 1.0) == FRAME_TIME_S  # nothing usable
