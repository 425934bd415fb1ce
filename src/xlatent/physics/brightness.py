"""How bright simulated sources are, how long they were observed, and which are detected.

Default (``brightness="flux"`` of :func:`xlatent.physics.simulator.simulate`):

- each source's absorbed 0.5-7 keV energy flux ``F_b`` (erg cm^-2 s^-1) is log-normal per
  class: median ``med_c + FLUX_SHIFT_DEX[c]`` and spread ``FLUX_WIDTH * sigma_c``, where
  ``med_c`` and ``sigma_c`` (IQR / 1.349) are those of log10 ``Fb`` of the labelled CSC
  sources (TD.csv, :data:`TD_BRIGHTNESS`; recomputed from ``td_path`` when given). The shift
  puts the intrinsic population below the detected one: selection trims the faint end.
- its exposure is log-normal per class: median ``10**x_c / COUNTS_PER_FLUX`` with ``x_c`` the
  median of log10(S/N^2 / Fb) in TD.csv (S/N^2 is about the counts of a source above its
  background, so S/N^2 / Fb measures exposure x effective area per class: YSOs come from
  deep star-forming-region fields, HMXBs and CVs from short pointed observations), spread
  ``EXPOSURE_SIGMA_DEX``, clipped to ``EXPOSURE_LIMITS_S``. It stands for the CSC exposure
  of the source (stacked observations of its field).
- its significance ``snr_b`` (:func:`snr`) is measured on the simulated counts, and only
  sources with ``snr_b >= snr_min`` (default :data:`SNR_MIN`) are kept, as the CSC keeps
  significant detections; rejected sources are redrawn until every slot holds a detection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Per class: (median log10 Fb, robust sigma of log10 Fb = IQR / 1.349, median
#: log10(S/N^2 / Fb)) of TD.csv (Yang et al. 2022), by :func:`td_brightness`.
TD_BRIGHTNESS: dict[str, tuple[float, float, float]] = {
    "AGN": (-13.41, 0.69, 15.34),
    "YSO": (-13.96, 0.83, 16.11),
    "LM-STAR": (-13.85, 0.74, 15.70),
    "HM-STAR": (-14.15, 0.58, 15.79),
    "NS": (-13.37, 0.95, 15.46),
    "LMXB": (-13.41, 0.78, 15.50),
    "CV": (-12.96, 1.07, 15.23),
    "HMXB": (-11.81, 0.40, 14.27),
}
#: Intrinsic median minus the detected (TD) median of log10 Fb, and a per-class correction
#: of the exposure median, dex: tuned (one step from -0.1 / 0 with
#: ``xlatent simulate --n 20000 --seed 0 --compare-td TD.csv``) so that the detected
#: simulated medians of log Fb and log S/N match TD's (see docs/simulator.md).
FLUX_SHIFT_DEX: dict[str, float] = {
    "AGN": -0.14, "YSO": -0.18, "LM-STAR": -0.16, "HM-STAR": -0.14,
    "NS": -0.30, "LMXB": -0.16, "CV": -0.23, "HMXB": -0.01,
}  # fmt: skip
EXPOSURE_SHIFT_DEX: dict[str, float] = {
    "AGN": -0.04, "YSO": 0.06, "LM-STAR": -0.14, "HM-STAR": -0.06,
    "NS": 0.42, "LMXB": 0.10, "CV": 0.23, "HMXB": 0.27,
}  # fmt: skip
FLUX_WIDTH = 1.0
#: Typical 0.5-7 keV counts per unit absorbed flux (counts per erg cm^-2) of the simulated
#: sky: converts TD's S/N^2 / Fb into an exposure (tuned with the S/N medians).
COUNTS_PER_FLUX = 1.0e11
EXPOSURE_SIGMA_DEX = 0.4
EXPOSURE_LIMITS_S = (1.0e3, 2.0e6)
#: Detection threshold on ``snr_b``.
SNR_MIN = 3.0


def td_brightness(td_path: str | Path) -> dict[str, tuple[float, float, float]]:
    """:data:`TD_BRIGHTNESS` computed from a labelled table with ``Fb`` and ``CSCv2_S/N``
    (classes missing there keep the embedded numbers)."""
    import pandas as pd

    from xlatent.io.csc.td import read_td

    td = read_td(td_path)
    out = dict(TD_BRIGHTNESS)
    if "fb" not in td or "cscv2_s/n" not in td:
        return out
    fb = pd.to_numeric(td["fb"], errors="coerce").to_numpy(np.float64)
    sn = pd.to_numeric(td["cscv2_s/n"], errors="coerce").to_numpy(np.float64)
    for cls in out:
        ok = (td["source_class"].to_numpy() == cls) & (fb > 0) & (sn > 0)
        if ok.sum() < 5:
            continue
        lf = np.log10(fb[ok])
        q25, q50, q75 = np.percentile(lf, [25, 50, 75])
        x = float(np.median(np.log10(sn[ok] ** 2) - lf))
        out[cls] = (round(float(q50), 2), round(float(q75 - q25) / 1.349, 2), round(x, 2))
    return out


def brightness_model(
    td_path: str | Path | None = None,
) -> dict[str, dict[str, tuple[float, float]]]:
    """Per class ``{"log_flux": (mu, sigma), "log_exposure": (mu, sigma)}`` (log10 units)."""
    stats = TD_BRIGHTNESS if td_path is None else td_brightness(td_path)
    return {
        cls: {
            "log_flux": (med + FLUX_SHIFT_DEX[cls], FLUX_WIDTH * sig),
            "log_exposure": (
                x - np.log10(COUNTS_PER_FLUX) + EXPOSURE_SHIFT_DEX[cls],
                EXPOSURE_SIGMA_DEX,
            ),
        }
        for cls, (med, sig, x) in stats.items()
    }


def draw_flux_exposure(
    classes: np.ndarray, rng: np.random.Generator, model: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Absorbed 0.5-7 keV fluxes (erg cm^-2 s^-1) and exposures (s) of sources of ``classes``."""
    z = rng.standard_normal((2, classes.size))
    mu = np.array([[model[c][k][0] for c in classes] for k in ("log_flux", "log_exposure")])
    sd = np.array([[model[c][k][1] for c in classes] for k in ("log_flux", "log_exposure")])
    log_f, log_t = (mu + sd * z).reshape(2, -1)
    return 10.0**log_f, np.clip(10.0**log_t, *EXPOSURE_LIMITS_S)


def snr(n_src: np.ndarray, n_bkg: np.ndarray, backscal_ratio: np.ndarray) -> np.ndarray:
    """Significance of a detection: net counts over their Poisson error.

    ``n_src`` counts in the source region, ``n_bkg`` in a background region
    ``backscal_ratio`` times larger: (N_s - N_b / r) / sqrt(N_s + N_b / r^2), the error
    estimated from the counts themselves (at least 1 count), as aperture photometry does."""
    n_src = np.asarray(n_src, dtype=np.float64)
    n_bkg = np.asarray(n_bkg, dtype=np.float64)
    r = np.asarray(backscal_ratio, dtype=np.float64)
    return (n_src - n_bkg / r) / np.sqrt(np.maximum(n_src + n_bkg / r**2, 1.0))
