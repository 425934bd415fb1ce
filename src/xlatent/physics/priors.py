# ruff: noqa: E501  (the prior table keeps one component per line for readability)
"""Per-class priors of the population simulator: one readable table, :data:`PRIORS`.

Distributions are tuples: ``("logu", lo, hi)`` log-uniform, ``("u", lo, hi)`` uniform,
``("n", mean, sd, lo, hi)`` normal truncated by clipping, ``("const", v)``,
``("lnz1", z_median, sd, lo, hi)``: 1 + z log-normal (``sd`` in ln) about 1 + ``z_median``,
z clipped to [lo, hi].
Column densities are in 1e22 cm^-2, temperatures in keV, equivalent widths in keV.

Each class has a *primary* continuum component; optional components appear with probability
``p`` and carry ``rel``: their unabsorbed 0.5-7 keV energy flux relative to the primary.
``nh_gal_1e22`` is the Galactic foreground column (every source); ``nh_int_1e22`` the column
local to the source (for Galactic classes: the rest of the line of sight plus circumstellar
material); with probability ``p_obscured`` it is drawn from ``nh_obscured_1e22`` instead.
The AGN ``scatter`` component is a fraction of the primary power law seen through the Galactic
column only (electron-scattered light of obscured AGN). Fe Kα (6.4 keV) has an equivalent width
relative to the unabsorbed continuum at 6.4 keV (rest frame).

AGN carry a ``redshift``: their local column, Fe Kα and soft excess act at the source
redshift (X-ray selected CSC/ChaMP quasars: median z ≈ 1.2, most at 0.5-2.5, tails to 0.05
and 4; Green et al. 2009, ApJ 690, 644; Trichas et al. 2012, ApJS 200, 17). Magnetic CVs
(intermediate polars) have ``partial_cover``: a fraction ``frac`` of the emission behind an
extra column ``nh_1e22`` in the accretion curtain (Ezuka & Ishida 1999, ApJS 120, 277);
HMXBs likewise see their compact object through the clumpy stellar wind, most of the flux
behind 3e22-1.5e24 cm^-2 and the rest through the interstellar column (e.g. the partial
covering fits of Vela X-1 and wind-fed supergiant systems), which keeps a soft tail.

Variability is not drawn here: :mod:`xlatent.physics.variability` simulates light curves.

The numbers were calibrated against the colours of the labelled CSC sources of Yang et al.
(2022) with :func:`xlatent.physics.realism.compare_to_td` (see docs/simulator.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xlatent.core.vocabulary import CLASSES_BY_TD_SIZE
from xlatent.core.vocabulary import TD_CLASS_COUNTS as TD_CLASS_COUNTS  # the simulator's import

#: The simulator's class order (largest class of TD.csv first); seeded draws depend on it.
CLASSES: tuple[str, ...] = CLASSES_BY_TD_SIZE

Dist = tuple[Any, ...]

# fmt: off
PRIORS: dict[str, dict[str, Any]] = {
    "AGN": {
        "nh_gal_1e22": ("logu", 0.01, 0.1),
        "redshift": ("lnz1", 1.2, 0.35, 0.05, 4.5),
        "nh_int_1e22": ("logu", 0.005, 0.3), "p_obscured": 0.3, "nh_obscured_1e22": ("logu", 1.0, 100.0),
        "primary": ("powerlaw", {"gamma": ("n", 1.9, 0.3, 1.1, 3.0)}),
        "extra": [
            ("bbody", {"kt_bb_kev": ("u", 0.08, 0.2)}, {"p": 0.5, "rel": ("logu", 0.05, 0.3)}),
            ("scatter", {}, {"p": 1.0, "rel": ("logu", 0.005, 0.05)}),
        ],
        "fe_ka": {"p": 0.6, "ew_kev": ("logu", 0.05, 0.2), "sigma_kev": ("u", 0.01, 0.05)},
    },
    "LMXB": {
        "nh_gal_1e22": ("logu", 0.01, 0.1),
        "nh_int_1e22": ("logu", 0.003, 3.0),
        "primary": ("diskbb", {"kt_in_kev": ("logu", 0.5, 2.0)}),
        "extra": [
            ("powerlaw", {"gamma": ("n", 2.0, 0.5, 1.0, 3.5)}, {"p": 1.0, "rel": ("logu", 0.03, 30.0)}),
        ],
    },
    "HMXB": {
        "nh_gal_1e22": ("logu", 0.05, 0.3),
        "nh_int_1e22": ("logu", 0.1, 2.0),
        "primary": ("powerlaw", {"gamma": ("u", 0.3, 1.8)}),
        "extra": [],
        "partial_cover": {"p": 0.75, "frac": ("u", 0.6, 0.995), "nh_1e22": ("logu", 3.0, 150.0)},
        "fe_ka": {"p": 0.8, "ew_kev": ("logu", 0.05, 0.3), "sigma_kev": ("u", 0.01, 0.05)},
    },
    "NS": {
        "nh_gal_1e22": ("logu", 0.01, 0.1),
        "nh_int_1e22": ("logu", 0.06, 6.0),
        "primary": ("bbody", {"kt_bb_kev": ("logu", 0.05, 0.3)}),
        "extra": [
            ("powerlaw", {"gamma": ("n", 1.5, 0.3, 1.0, 3.0)}, {"p": 1.0, "rel": ("logu", 0.2, 20.0)}),
        ],
    },
    "CV": {
        "nh_gal_1e22": ("logu", 0.005, 0.05),
        "nh_int_1e22": ("logu", 0.002, 2.0),
        "primary": ("plasma", {"kt_kev": ("logu", 5.0, 40.0), "abundance": ("u", 0.3, 1.0)}),
        "extra": [
            ("plasma2", {"kt2_kev": ("logu", 0.2, 2.0)}, {"p": 0.8, "rel": ("logu", 0.1, 3.0)}),
        ],
        "partial_cover": {"p": 0.3, "frac": ("u", 0.5, 0.9), "nh_1e22": ("logu", 1.0, 10.0)},
        "fe_ka": {"p": 0.8, "ew_kev": ("logu", 0.05, 0.2), "sigma_kev": ("const", 0.01)},
    },
    "LM-STAR": {
        "nh_gal_1e22": ("logu", 0.0005, 0.005),
        "nh_int_1e22": ("logu", 0.0005, 0.01),
        "primary": ("plasma", {"kt_kev": ("logu", 0.3, 1.0), "abundance": ("u", 0.2, 0.6)}),
        "extra": [
            ("plasma2", {"kt2_kev": ("logu", 1.0, 4.0)}, {"p": 0.4, "rel": ("logu", 0.1, 1.0)}),
        ],
    },
    "HM-STAR": {
        "nh_gal_1e22": ("logu", 0.01, 0.1),
        "nh_int_1e22": ("logu", 0.4, 2.5),
        "primary": ("plasma", {"kt_kev": ("logu", 0.3, 2.0), "abundance": ("u", 0.5, 1.0)}),
        "extra": [
            ("plasma2", {"kt2_kev": ("logu", 1.0, 4.0)}, {"p": 0.7, "rel": ("logu", 0.2, 2.0)}),
        ],
    },
    "YSO": {
        "nh_gal_1e22": ("logu", 0.01, 0.1),
        "nh_int_1e22": ("logu", 0.1, 3.0),
        "primary": ("plasma", {"kt_kev": ("logu", 1.0, 5.0), "abundance": ("u", 0.2, 0.6)}),
        "extra": [
            ("plasma2", {"kt2_kev": ("logu", 0.3, 0.8)}, {"p": 0.5, "rel": ("logu", 0.1, 1.0)}),
        ],
    },
}
# fmt: on

#: Redshifts are quantised to this step in log10(1 + z) so that the cross-section at the
#: source redshift is computed once per step (:mod:`xlatent.physics.spectra`).
REDSHIFT_LOG1PZ_STEP = 0.002

#: Continuum components and the parameters they carry (truth columns ``truth_<param>``).
COMPONENTS: dict[str, tuple[str, ...]] = {
    "powerlaw": ("gamma",),
    "scatter": (),
    "bbody": ("kt_bb_kev",),
    "diskbb": ("kt_in_kev",),
    "plasma": ("kt_kev", "abundance"),
    "plasma2": ("kt2_kev",),
}

#: Every sampled parameter (NaN where a source's model lacks it).
PARAMETERS: tuple[str, ...] = (
    "nh_gal_1e22", "nh_int_1e22", "nh_1e22", "gamma", "kt_bb_kev", "kt_in_kev", "kt_kev",
    "kt2_kev", "abundance", "fe_ka_ew_kev", "fe_ka_sigma_kev", "redshift", "pc_frac",
    "nh_pc_1e22", *(f"rel_{c}" for c in COMPONENTS),
)  # fmt: skip


def draw(spec: Dist, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``size`` values from a distribution tuple (see module docstring)."""
    kind = spec[0]
    if kind == "logu":
        return np.exp(rng.uniform(np.log(spec[1]), np.log(spec[2]), size))
    if kind == "u":
        return rng.uniform(spec[1], spec[2], size)
    if kind == "n":
        return np.clip(rng.normal(spec[1], spec[2], size), spec[3], spec[4])
    if kind == "lnz1":  # 1 + z log-normal about 1 + median, clipped in z
        z1 = (1.0 + spec[1]) * np.exp(rng.normal(0.0, spec[2], size))
        return np.clip(z1 - 1.0, spec[3], spec[4])
    if kind == "const":
        return np.full(size, float(spec[1]))
    raise ValueError(f"unknown distribution {spec!r}")


def sample_parameters(
    classes: np.ndarray, rng: np.random.Generator, priors: dict[str, dict[str, Any]] | None = None
) -> dict[str, np.ndarray]:
    """Model parameters for sources of the given classes (arrays of shape (n,), NaN = absent).

    ``rel_<component>`` is the component's unabsorbed 0.5-7 keV energy flux relative to the
    class's primary component (1 for the primary, 0 when absent).
    """
    priors = PRIORS if priors is None else priors
    classes = np.asarray(classes)
    n = classes.size
    p = {name: np.full(n, np.nan) for name in PARAMETERS}
    for c in COMPONENTS:
        p[f"rel_{c}"] = np.zeros(n)
    p["fe_ka_ew_kev"] = np.zeros(n)
    for cls in CLASSES:
        idx = np.flatnonzero(classes == cls)
        k = idx.size
        if k == 0:
            continue
        pr = priors[cls]
        p["nh_gal_1e22"][idx] = draw(pr["nh_gal_1e22"], k, rng)
        nh_int = draw(pr["nh_int_1e22"], k, rng)
        if pr.get("p_obscured", 0.0) > 0:
            obscured = rng.random(k) < pr["p_obscured"]
            nh_int = np.where(obscured, draw(pr["nh_obscured_1e22"], k, rng), nh_int)
        p["nh_int_1e22"][idx] = nh_int
        comp, params = pr["primary"]
        p[f"rel_{comp}"][idx] = 1.0
        for name, spec in params.items():
            p[name][idx] = draw(spec, k, rng)
        for comp, params, opts in pr["extra"]:
            present = rng.random(k) < opts["p"]
            rel = draw(opts["rel"], k, rng)
            p[f"rel_{comp}"][idx] = np.where(present, rel, 0.0)
            for name, spec in params.items():
                p[name][idx] = np.where(present, draw(spec, k, rng), np.nan)
        if "redshift" in pr:  # quantised like spectra's redshifted cross-sections
            z = draw(pr["redshift"], k, rng)
            step = REDSHIFT_LOG1PZ_STEP
            p["redshift"][idx] = 10 ** (np.rint(np.log10(1.0 + z) / step) * step) - 1.0
        pc = pr.get("partial_cover")
        if pc:
            present = rng.random(k) < pc["p"]
            p["pc_frac"][idx] = np.where(present, draw(pc["frac"], k, rng), np.nan)
            p["nh_pc_1e22"][idx] = np.where(present, draw(pc["nh_1e22"], k, rng), np.nan)
        fe = pr.get("fe_ka")
        if fe:
            present = rng.random(k) < fe["p"]
            p["fe_ka_ew_kev"][idx] = np.where(present, draw(fe["ew_kev"], k, rng), 0.0)
            p["fe_ka_sigma_kev"][idx] = np.where(present, draw(fe["sigma_kev"], k, rng), np.nan)
    # The scattered component repeats the primary power law's slope.
    p["nh_1e22"] = p["nh_gal_1e22"] + p["nh_int_1e22"]
    return p
