"""response_context: chip, date and off-axis angle of a real response from its headers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xlatent.instrument.response import ARF
from xlatent.io.ogip_write import write_arf
from xlatent.io.response_context import (
    CC_FRAME_TIME_S,
    angular_distance_arcmin,
    decimal_year,
    pileup_context,
    response_context,
)


def test_decimal_year() -> None:
    assert decimal_year("2001-01-01T00:00:00") == 2001.0
    assert decimal_year("2001-10-05T00:33:43") == pytest.approx(2001.759, abs=1e-3)
    assert decimal_year("2000-12-31T12:00:00") == pytest.approx(2000.9986, abs=1e-4)


def test_angular_distance() -> None:
    assert angular_distance_arcmin(10.0, 0.0, 10.0, 1.0) == pytest.approx(60.0)
    # RA offsets shrink with cos(dec).
    assert angular_distance_arcmin(0.0, 60.0, 0.1, 60.0) == pytest.approx(3.0, rel=1e-3)


def _arf(path, **keys):
    lo = np.array([0.3, 0.4])
    return write_arf(path, ARF(lo, lo + 0.1, np.array([1.0, 2.0])), extra=keys)


def test_context_from_arf_keywords(tmp_path) -> None:
    ctx = response_context(
        _arf(
            tmp_path / "a.arf",
            CCD_ID=5,
            **{"DATE-OBS": "2010-07-02T12:00:00"},
            RA_PNT=10.0,
            DEC_PNT=0.0,
            RA_TARG=10.0,
            DEC_TARG=0.1,
        )
    )
    assert (ctx["chip_type"], ctx["ccd_id"], ctx["detector"]) == ("BI", 5, "ACIS-S")
    assert ctx["theta_arcmin"] == pytest.approx(6.0)
    assert ctx["epoch_year"] == pytest.approx(2010.5, abs=0.01)


def test_unknown_context_is_empty_not_an_error(tmp_path) -> None:
    ctx = response_context(_arf(tmp_path / "b.arf", DETNAM="ACIS-0123"))
    assert (ctx["chip_type"], ctx["ccd_id"], ctx["detector"], ctx["date_obs"]) == ("", -1, "", "")
    assert math.isnan(ctx["theta_arcmin"]) and math.isnan(ctx["epoch_year"])
    assert response_context(_arf(tmp_path / "c.arf", DETNAM="ACIS-2"))["chip_type"] == "FI"


def test_pileup_context_of_acis_modes_and_other_instruments() -> None:
    on_axis = {"INSTRUME": "ACIS", "READMODE": "TIMED", "DTCOR": 3.2 / 3.24104,
               "RA": 10.0, "DEC": 0.0, "RA_PNT": 10.0, "DEC_PNT": 0.0}  # fmt: skip
    ctx = pileup_context(on_axis)
    assert ctx["frame_time_s"] == pytest.approx(3.24104)
    assert ctx["theta_arcmin"] == 0.0 and ctx["psf_core_fraction"] == pytest.approx(0.79, abs=0.01)
    cc = pileup_context({**on_axis, "READMODE": "CONTINUOUS"})
    assert cc["frame_time_s"] == CC_FRAME_TIME_S
    # no positions: the off-axis angle is unknown and the core is taken on-axis (the worst case)
    blind = pileup_context({"INSTRUME": "ACIS"})
    assert math.isnan(blind["theta_arcmin"])
    assert blind["psf_core_fraction"] == ctx["psf_core_fraction"]
    other = pileup_context({**on_axis, "INSTRUME": "EPN"})
    assert math.isnan(other["frame_time_s"]) and math.isnan(other["psf_core_fraction"])
