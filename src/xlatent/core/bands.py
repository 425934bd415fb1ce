"""Band counts and count-based hardness ratios in the CSC bands.

Column names: ``net_counts_s/m/h/b`` (net counts per CSC band) and ``hr_counts_hm``,
``hr_counts_hs``, ``hr_counts_ms`` (hardness ratios of those *counts*). The CSC's own
``hard_hm``, ``hard_hs``, ``hard_ms`` are ratios of aperture-corrected *photon fluxes*
(with ``_lolim``/``_hilim``): another quantity, kept under the CSC names when a catalogue is
joined, so the two never collide.
"""

from __future__ import annotations

import numpy as np

from xlatent.core.grid import EnergyGrid
from xlatent.core.vocabulary import CSC_BANDS_KEV


def band_sums(values: np.ndarray, grid: EnergyGrid) -> dict[str, np.ndarray]:
    """Sum a per-bin quantity (last axis on ``grid``) over each CSC band.

    Bins partly outside a band are weighted by their overlap fraction, which for grids made by
    :meth:`EnergyGrid.log` (band edges are bin edges) is exactly 0 or 1.
    """
    arr = np.asarray(values, dtype=np.float64)
    out = {}
    for code, (lo, hi) in CSC_BANDS_KEV.items():
        ov = np.clip(np.minimum(grid.hi_kev, hi) - np.maximum(grid.lo_kev, lo), 0, None)
        out[code] = arr @ (ov / grid.widths_kev)
    return out


def hardness_ratio(hard: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """(hard - soft) / (hard + soft) with negative net counts clipped to 0; NaN when both are 0."""
    h = np.clip(np.asarray(hard, dtype=np.float64), 0, None)
    s = np.clip(np.asarray(soft, dtype=np.float64), 0, None)
    total = h + s
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, (h - s) / total, np.nan)


#: Count hardness ratios computed from spectra (not the CSC's photon-flux ``hard_*``).
COUNT_HARDNESS_COLUMNS = ("hr_counts_hm", "hr_counts_hs", "hr_counts_ms")
#: The CSC catalogue's photon-flux hardness ratios (CSC column names).
CSC_HARDNESS_COLUMNS = ("hard_hm", "hard_hs", "hard_ms")


def hardness_columns(net: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Count hardness ratios ``hr_counts_hm``, ``hr_counts_hs``, ``hr_counts_ms``.

    (h-m)/(h+m), (h-s)/(h+s), (m-s)/(m+s) of the band net counts ``net`` (keys s, m, h).
    """
    return {
        "hr_counts_hm": hardness_ratio(net["h"], net["m"]),
        "hr_counts_hs": hardness_ratio(net["h"], net["s"]),
        "hr_counts_ms": hardness_ratio(net["m"], net["s"]),
    }
