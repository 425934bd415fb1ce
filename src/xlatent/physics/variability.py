# ruff: noqa: E501  (the model table keeps one class per line for readability)
"""Intrinsic variability per class, its imprint on the spectrum, and the light curve it gives
with the spectrum's own photons (scored by the CSC's Gregory-Loredo test).

Each source gets an intrinsic light curve ``r(t)`` over its exposure (``N_FINE`` bins, mean 1)
from the models its class has in :data:`VARIABILITY` (each present with probability ``p``):

- ``red_noise``: a power-law power spectrum P(f) ~ f^-slope (Timmer & Koenig 1995) made
  log-normal (the rms-flux relation of accreting sources, Uttley, McHardy & Vaughan 2005),
  its fractional rms over the exposure drawn from ``rms``: AGN (Vaughan et al. 2003; Ponti et
  al. 2012: 10-30% on 10-100 ks, less for luminous quasars), CV flickering (Bruch 1992;
  Mukai 2017), LMXB accretion-rate changes, HMXB wind clumps (Martinez-Nunez et al. 2017).
- ``flare``: coronal flares, linear rise and exponential decay on a quiescent level, a
  Poisson number per exposure (``rate_per_100ks``), peak amplitudes from the flare
  frequency distribution dN/dA ~ A^-2 (Audard et al. 2000; Guedel 2004) between ``amp``;
  YSOs flare more often, higher and longer (COUP: Wolk et al. 2005; Getman et al. 2008).
  A source caught flaring is hotter: the flare's share of the counts, at ``kt_flare_kev``,
  is added to its hotter plasma component before the spectrum is computed (flare
  temperatures 20-100 MK, Guedel 2004).
- ``dips``: periodic absorption dips / eclipses (orbital period ``period_ks``, duty cycle
  ``duty``, column ``nh_dip_1e22``): CV orbital dips (Hellier 2001), LMXB dippers (Frank,
  King & Lasota 1987; Diaz Trigo et al. 2006), HMXB eclipses and absorbing clumps. The dip
  dims the band by the absorber's transmission and hardens the time-averaged spectrum: the
  local column grows by the column that gives the same mean transmission at 1.5 keV.

The rest of a class is steady (isolated neutron stars and pulsars with periods far below the
bins, wind-shock OB stars). ``truth_var_model`` names the models present, ``truth_var_amplitude``
is the fractional rms of r(t) over the exposure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xlatent.physics.gregory_loredo import gl_variability
from xlatent.physics.priors import draw

#: Bins of the simulated light curves (the GL test tries m = 2 .. 64 of them).
N_FINE = 128
MAX_FLARES = 5
BLOCK = 8192
#: H column (1e22 cm^-2) with optical depth 1 at 1.5 keV (Morrison & McCammon 1983, solar).
NH_TAU1_1P5KEV = 1.15

# fmt: off
VARIABILITY: dict[str, dict[str, dict[str, Any]]] = {
    "AGN": {"red_noise": {"p": 1.0, "rms": ("logu", 0.03, 0.6), "slope": 2.0}},
    "LMXB": {"red_noise": {"p": 0.8, "rms": ("logu", 0.05, 1.2), "slope": 1.5},
             "dips": {"p": 0.2, "period_ks": ("logu", 10.0, 100.0), "duty": ("u", 0.1, 0.3), "nh_dip_1e22": ("logu", 1.0, 30.0)}},
    "HMXB": {"red_noise": {"p": 0.9, "rms": ("logu", 0.2, 1.2), "slope": 1.5},
             "dips": {"p": 0.2, "period_ks": ("logu", 100.0, 1000.0), "duty": ("u", 0.1, 0.2), "nh_dip_1e22": ("logu", 3.0, 30.0)}},
    "CV": {"red_noise": {"p": 1.0, "rms": ("logu", 0.08, 0.8), "slope": 1.5},
           "dips": {"p": 0.3, "period_ks": ("logu", 4.7, 36.0), "duty": ("u", 0.1, 0.3), "nh_dip_1e22": ("logu", 0.3, 3.0)}},
    "NS": {"red_noise": {"p": 0.3, "rms": ("logu", 0.1, 0.6), "slope": 1.5}},
    "LM-STAR": {"flare": {"p": 1.0, "rate_per_100ks": ("logu", 1.0, 10.0), "amp": (1.0, 50.0), "decay_ks": ("logu", 1.0, 20.0), "kt_flare_kev": ("logu", 1.5, 4.0)}},
    "HM-STAR": {"flare": {"p": 0.9, "rate_per_100ks": ("logu", 1.0, 10.0), "amp": (0.5, 30.0), "decay_ks": ("logu", 2.0, 20.0), "kt_flare_kev": ("logu", 1.5, 4.0)},
                "red_noise": {"p": 0.9, "rms": ("logu", 0.1, 1.0), "slope": 2.0}},
    "YSO": {"flare": {"p": 1.0, "rate_per_100ks": ("logu", 3.0, 30.0), "amp": (2.0, 100.0), "decay_ks": ("logu", 5.0, 50.0), "kt_flare_kev": ("logu", 1.5, 4.0)},
            "red_noise": {"p": 0.9, "rms": ("logu", 0.2, 1.0), "slope": 2.0}},
}
# fmt: on


@dataclass
class IntrinsicVariability:
    """Intrinsic light curves (``shape``: (n, N_FINE), mean 1 per row) and what they imply."""

    shape: np.ndarray
    model: np.ndarray  # "steady", "flare", "red_noise+dips", ...
    amplitude: np.ndarray  # fractional rms of the intrinsic light curve
    flare_fraction: np.ndarray  # share of the counts from flares
    kt_flare_kev: np.ndarray  # NaN without flares
    nh_dip_eff_1e22: np.ndarray  # extra time-averaged column from dips (0 without)


def red_noise(n: int, slope: float, rms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, N_FINE) log-normal light curves of mean ~1 and fractional rms ``rms`` from a
    P(f) ~ f^-slope Gaussian process (Timmer & Koenig 1995, on twice the length so that the
    curve does not wrap around)."""
    length = 2 * N_FINE
    f = np.arange(1, length // 2 + 1) / length
    amp = f ** (-slope / 2.0)
    spec = np.zeros((n, length // 2 + 1), dtype=np.complex128)
    spec[:, 1:] = amp * (rng.standard_normal((n, f.size)) + 1j * rng.standard_normal((n, f.size)))
    g = np.fft.irfft(spec, n=length, axis=1)[:, :N_FINE]
    g = (g - g.mean(axis=1, keepdims=True)) / g.std(axis=1, keepdims=True)
    s = np.sqrt(np.log1p(rms**2))[:, None]
    return np.exp(s * g - 0.5 * s**2)


def flares(
    n: int, spec: dict[str, Any], exposure_s: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(n, N_FINE) flare light curves above a quiescent level 1 (0 between flares)."""
    decay_s = draw(spec["decay_ks"], n, rng) * 1e3
    rate = draw(spec["rate_per_100ks"], n, rng) / 1e5
    window = exposure_s + 3.0 * decay_s  # flares that began before the exposure still decay
    n_fl = np.minimum(rng.poisson(rate * window), MAX_FLARES)
    t0 = exposure_s[:, None] - rng.random((n, MAX_FLARES)) * window[:, None]
    a_lo, a_hi = spec["amp"]
    amp = a_lo / (1.0 - rng.random((n, MAX_FLARES)) * (1.0 - a_lo / a_hi))  # dN/dA ~ A^-2
    amp *= np.arange(MAX_FLARES)[None, :] < n_fl[:, None]
    rise_s = 0.2 * decay_s[:, None, None]
    t = ((np.arange(N_FINE) + 0.5) / N_FINE)[None, None, :] * exposure_s[:, None, None]
    dt = t - t0[:, :, None]
    # np.where evaluates both branches: the maximum keeps exp() from overflowing where the
    # rise branch is the one used (same values where the decay branch is).
    prof = np.where(dt < rise_s, np.clip(dt / rise_s, 0.0, None),
                    np.exp(-np.maximum(dt - rise_s, 0.0) / decay_s[:, None, None]))  # fmt: skip
    return (amp[:, :, None] * prof).sum(axis=1)


def dips(
    n: int, spec: dict[str, Any], exposure_s: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dip mask (n, N_FINE), the dips' column and their band transmission."""
    period_s = draw(spec["period_ks"], n, rng) * 1e3
    duty = draw(spec["duty"], n, rng)
    nh = draw(spec["nh_dip_1e22"], n, rng)
    phase0 = rng.random(n)
    t = (np.arange(N_FINE) + 0.5) / N_FINE * exposure_s[:, None]
    in_dip = np.mod(t / period_s[:, None] + phase0[:, None], 1.0) < duty[:, None]
    # 0.5-7 keV count transmission of a moderately soft spectrum behind the dip column.
    return in_dip, nh, (1.0 + nh) ** -0.7


def draw_variability(
    classes: np.ndarray,
    exposure_s: np.ndarray,
    rng: np.random.Generator,
    table: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> IntrinsicVariability:
    """Intrinsic variability of every source (draws depend only on the class sequence)."""
    table = VARIABILITY if table is None else table
    classes = np.asarray(classes)
    n = classes.size
    out = IntrinsicVariability(
        shape=np.ones((n, N_FINE), dtype=np.float32), model=np.full(n, "steady", dtype=object),
        amplitude=np.zeros(n), flare_fraction=np.zeros(n), kt_flare_kev=np.full(n, np.nan),
        nh_dip_eff_1e22=np.zeros(n),
    )  # fmt: skip
    for cls in sorted(table):
        for start in range(0, n, BLOCK):
            idx = start + np.flatnonzero(classes[start : start + BLOCK] == cls)
            if idx.size:
                _draw_block(idx, table[cls], exposure_s[idx], rng, out)
    return out


def _draw_block(idx: np.ndarray, models: dict[str, dict[str, Any]], exposure_s: np.ndarray,
                rng: np.random.Generator, out: IntrinsicVariability) -> None:  # fmt: skip
    k = idx.size
    present = {name: rng.random(k) < spec["p"] for name, spec in models.items()}
    base = np.ones((k, N_FINE))
    if "red_noise" in models:
        spec = models["red_noise"]
        rn = red_noise(k, spec["slope"], draw(spec["rms"], k, rng), rng)
        base = np.where(present["red_noise"][:, None], rn, 1.0)
    fl = np.zeros((k, N_FINE))
    if "flare" in models:
        spec = models["flare"]
        fl = flares(k, spec, exposure_s, rng) * present["flare"][:, None]
        kt = draw(spec["kt_flare_kev"], k, rng)
        has = fl.max(axis=1) > 0
        out.kt_flare_kev[idx] = np.where(has, kt, np.nan)
        present["flare"] &= has  # a flare model with no flare in the exposure is steady
    r = base + fl
    if "dips" in models:
        in_dip, nh, trans = dips(k, models["dips"], exposure_s, rng)
        in_dip &= present["dips"][:, None]
        # Photon-weighted share of dip time; the mean transmission it gives at 1.5 keV
        # defines the extra column of the time-averaged spectrum.
        w = (r * in_dip).sum(axis=1) / r.sum(axis=1)
        t15 = (1.0 - w) + w * np.exp(-nh / NH_TAU1_1P5KEV)
        out.nh_dip_eff_1e22[idx] = -NH_TAU1_1P5KEV * np.log(t15)
        r = np.where(in_dip, r * trans[:, None], r)
        present["dips"] &= in_dip.any(axis=1)
    mean = r.mean(axis=1)
    out.flare_fraction[idx] = fl.mean(axis=1) / mean
    out.shape[idx] = r / mean[:, None]
    out.amplitude[idx] = r.std(axis=1) / mean
    names = [name for name in ("flare", "red_noise", "dips") if name in present]
    label = np.full(k, "", dtype=object)
    for name in names:
        label = np.where(present[name], np.where(label == "", name, label + "+" + name), label)
    out.model[idx] = np.where(label == "", "steady", label)


def apply_to_parameters(params: dict[str, np.ndarray], var: IntrinsicVariability) -> None:
    """Flaring sources get their flare emission (at ``kt_flare_kev``) in the hotter plasma
    component; dipping sources a larger local column. In place, before spectra are made."""
    phi = var.flare_fraction
    flaring = (phi > 0) & np.isfinite(var.kt_flare_kev)
    if flaring.any() and "kt_kev" in params and "rel_plasma" in params:
        kt1, kt2 = params["kt_kev"], params.get("kt2_kev", np.full(phi.size, np.nan))
        rel2 = params.get("rel_plasma2", np.zeros(phi.size))
        has2 = (rel2 > 0) & np.isfinite(kt2)
        # Flare flux relative to the primary: quiescent (1 + rel2) * phi / (1 - phi).
        f = (1.0 + np.where(has2, rel2, 0.0)) * phi / np.maximum(1.0 - phi, 1e-3)
        into2 = flaring & (~has2 | (kt2 > kt1))
        into1 = flaring & ~into2
        lt = np.log(np.where(flaring, var.kt_flare_kev, 1.0))
        if "kt2_kev" in params:
            w2 = np.where(has2, rel2, 0.0)
            new2 = np.exp((w2 * np.log(np.where(has2, kt2, 1.0)) + f * lt) / (w2 + f + 1e-300))
            params["kt2_kev"] = np.where(into2, new2, kt2)
            params["rel_plasma2"] = np.where(into2, w2 + f, rel2)
        new1 = np.exp((np.log(np.where(into1, kt1, 1.0)) + f * lt) / (1.0 + f))
        params["kt_kev"] = np.where(into1, new1, kt1)
        if "rel_plasma2" in params:  # relative to a primary that grew by 1 + f
            params["rel_plasma2"] = np.where(
                into1, params["rel_plasma2"] / (1.0 + f), params["rel_plasma2"]
            )
    if "nh_int_1e22" in params:
        params["nh_int_1e22"] = params["nh_int_1e22"] + var.nh_dip_eff_1e22
        if "nh_gal_1e22" in params:
            params["nh_1e22"] = params["nh_gal_1e22"] + params["nh_int_1e22"]


def variability_rngs(entropy: Any) -> tuple[np.random.Generator, np.random.Generator]:
    """The simulator's variability streams: child 5 of its seed (children 0-4 are the other
    streams, left unchanged), split into intrinsic light curves and photons."""
    ss = np.random.SeedSequence(entropy, spawn_key=(5,))
    a, b = (np.random.default_rng(s) for s in ss.spawn(2))
    return a, b


def observe(
    var: IntrinsicVariability,
    counts: np.ndarray,
    expected: np.ndarray,
    background: np.ndarray,
    band: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``var_prob_b`` and ``var_index_b``: each source region's observed counts in ``band``
    (``counts``: source + background, spectra on a grid) spread over the exposure as the
    expected source counts (``expected``) follow the intrinsic light curve and the background
    (``background``, scaled to the source region) is constant; scored with the
    Gregory-Loredo test."""
    band = np.asarray(band, dtype=np.float64)
    counts_b, source_b, background_b = counts @ band, expected @ band, background @ band
    n = counts_b.size
    prob, index = np.empty(n), np.empty(n, dtype=np.int64)
    for a in range(0, n, BLOCK):
        s = slice(a, min(a + BLOCK, n))
        lam = source_b[s, None] * var.shape[s] + np.maximum(background_b[s], 1e-9)[:, None]
        p = lam / lam.sum(axis=1, keepdims=True)
        lc = rng.multinomial(np.round(counts_b[s]).astype(np.int64), p)
        prob[s], index[s] = gl_variability(lc)
    return prob, index
