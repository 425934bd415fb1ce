"""The instrument: responses as data, folding, and the built-in Chandra ACIS-S response.

Imports neither :mod:`xlatent.io` nor :mod:`xlatent.physics`; both import it. OGIP ARF/RMF
files are read into these objects by :mod:`xlatent.io.ogip_response`.
"""

from xlatent.instrument.acis import (
    ACIS_S_AREA_ANCHORS,
    CHANNEL_WIDTH_KEV,
    N_CHANNELS,
    acis_area_cm2,
    acis_fwhm_kev,
    default_response,
    gaussian_rmf,
)
from xlatent.instrument.response import ARF, RMF, Response, line_core

__all__ = [
    "ACIS_S_AREA_ANCHORS",
    "ARF",
    "CHANNEL_WIDTH_KEV",
    "N_CHANNELS",
    "RMF",
    "Response",
    "acis_area_cm2",
    "acis_fwhm_kev",
    "default_response",
    "gaussian_rmf",
    "line_core",
]
