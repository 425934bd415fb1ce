"""physics.absorption: photoelectric cross-sections against published values."""

from __future__ import annotations

import numpy as np
import pytest

from xlatent.physics.absorption import cross_section_cm2


@pytest.mark.parametrize(("table", "published"), [("angr", 2.6e-22), ("wilm", 1.8e-22)])
def test_cross_section_at_1kev(table: str, published: float) -> None:
    sigma = float(cross_section_cm2(1.0, table))
    assert abs(sigma / published - 1) < 0.10


def test_cross_section_slope() -> None:
    # Between edges the ISM cross-section falls roughly as E^-8/3.
    e = np.array([2.5, 6.0])
    s = cross_section_cm2(e)
    slope = np.log(s[1] / s[0]) / np.log(e[1] / e[0])
    assert -3.0 < slope < -2.3
    # The O K edge (0.543 keV) is a jump up in the cross-section.
    assert cross_section_cm2(0.55) > 1.2 * cross_section_cm2(0.535)
