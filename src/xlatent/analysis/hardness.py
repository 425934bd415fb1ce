"""The hardness-ratio columns of a set and the broad-band photon flux (the baselines'
inputs, :mod:`xlatent.analysis.features`): count ratios from the spectra, the catalogue's
``hard_*`` where a set carries them, and which of the two the ``hardness`` sets use."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from xlatent.core.bands import COUNT_HARDNESS_COLUMNS, CSC_HARDNESS_COLUMNS

#: Kept for callers of earlier versions: the count hardness ratios computed from spectra.
HARDNESS_COLUMNS = COUNT_HARDNESS_COLUMNS
#: Least share of rows with a catalogue value for the ``hardness`` set to use the catalogue.
CATALOG_MIN_SHARE = 0.5


def photon_flux_b(spectrum_set: Any) -> np.ndarray:
    """Broad-band (0.5-7 keV) net photon flux per spectrum, photons cm^-2 s^-1: the band's
    net counts over the exposure and the band's mean effective area (per keV, i.e. for a flat
    photon spectrum; dividing bin by bin would let the near-zero area at the soft end of a
    contaminated ACIS response blow up its background-subtracted counts). May be <= 0 for a
    spectrum below its background."""
    from xlatent.core import band_sums
    from xlatent.core.bands import CSC_BANDS_KEV

    grid = spectrum_set.grid
    net_b = band_sums(spectrum_set.net_counts, grid)["b"]
    lo, hi = CSC_BANDS_KEV["b"]
    area_b = band_sums(spectrum_set.effective_area_cm2 * grid.widths_kev, grid)["b"] / (hi - lo)
    exposure = np.asarray(spectrum_set.exposure_s, dtype=np.float64)
    denom = exposure * area_b
    return np.divide(net_b, denom, out=np.full_like(net_b, np.nan), where=denom > 0)


def hardness_table(spectrum_set: Any) -> pd.DataFrame:
    """Count ratios ``hr_counts_*`` and ``net_counts_*`` (from meta, computed if absent), the
    broad-band photon flux ``photflux_b`` (:func:`photon_flux_b`), plus the catalogue's
    ``hard_*`` where the set carries them (see :func:`catalog_hardness`)."""
    meta = spectrum_set.meta
    need = [*COUNT_HARDNESS_COLUMNS, "net_counts_s", "net_counts_m", "net_counts_h",
            "net_counts_b"]  # fmt: skip
    if all(c in meta for c in need):
        table = meta[need].apply(pd.to_numeric, errors="coerce").reset_index(drop=True)
    else:
        from xlatent.core import band_sums, hardness_columns

        net = band_sums(spectrum_set.net_counts, spectrum_set.grid)
        cols = {**hardness_columns(net), **{f"net_counts_{k}": v for k, v in net.items()}}
        table = pd.DataFrame(cols)[need]
    table["photflux_b"] = photon_flux_b(spectrum_set)
    for name, values in catalog_hardness(meta.reset_index(drop=True), table).items():
        table[name] = values
    return table


def catalog_hardness(meta: pd.DataFrame, counts: pd.DataFrame) -> dict[str, np.ndarray]:
    """The catalogue's photon-flux hardness ratios as ``hard_hm/hs/ms``, or {} when absent.

    Read from ``hard_*`` (CSC names), else ``csc_hard_*`` (sets joined before the count
    ratios were renamed). A set written before that rename stored its *count* ratios as
    ``hard_*``: such columns equal the count ratios recomputed from the spectra
    (``counts``) and are not taken for the catalogue's.
    """
    for prefix in ("", "csc_"):
        names = [f"{prefix}{c}" for c in CSC_HARDNESS_COLUMNS]
        if not all(c in meta for c in names):
            continue
        vals = [pd.to_numeric(meta[c], errors="coerce").to_numpy(np.float64) for c in names]
        if prefix == "" and all(
            np.allclose(v, counts[c].to_numpy(np.float64), equal_nan=True, atol=1e-9)
            for v, c in zip(vals, COUNT_HARDNESS_COLUMNS, strict=True)
        ):
            continue  # legacy count ratios under the CSC names
        return dict(zip(CSC_HARDNESS_COLUMNS, vals, strict=True))
    return {}


def hardness_choice(table: pd.DataFrame) -> tuple[list[str], str]:
    """The hardness-ratio columns of ``table`` the ``hardness`` set uses, and their source.

    The catalogue's ``hard_*`` (source ``"catalog"``) when every one of them is finite on at
    least :data:`CATALOG_MIN_SHARE` of the rows, else the count ratios (``"counts"``).
    """
    cat = list(CSC_HARDNESS_COLUMNS)
    if all(c in table for c in cat) and len(table):
        share = min(np.isfinite(table[c].to_numpy(np.float64)).mean() for c in cat)
        if share >= CATALOG_MIN_SHARE:
            return cat, "catalog"
    return list(COUNT_HARDNESS_COLUMNS), "counts"
