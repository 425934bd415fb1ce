"""physics.models: spectral models integrated over energy bins."""

from __future__ import annotations

import numpy as np

from xlatent.physics import models as m


def test_powerlaw_bin_integral_matches_analytic() -> None:
    sub = m.SubGrid(np.geomspace(0.3, 10.0, 400), n_sub=2)
    gamma = np.array([0.5, 1.0, 1.9, 3.0])
    numeric = sub.integrate(m.powerlaw(sub.energy_kev, gamma))
    exact = m.powerlaw_bin_integral(sub.edges_kev, gamma)
    assert np.max(np.abs(numeric / exact - 1)) < 1e-4
    # Gamma = 1: the integral is log(hi/lo).
    assert np.allclose(exact[1], np.diff(np.log(sub.edges_kev)))
