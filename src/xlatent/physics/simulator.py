"""Population simulator: CSC-like sources of eight classes folded through a Chandra response.

Pipeline for a batch of sources (all vectorised, in chunks):

1. class labels (realistic CSC mix or balanced) and model parameters from :mod:`priors`;
2. photon flux densities on sub-samples of the RMF true-energy bins (:mod:`models`),
   photoelectric absorption (:mod:`absorption`), integration over the bins;
3. normalisation so that the expected 0.5-7 keV net source counts follow a log-uniform
   distribution (a high-significance catalogue), for exposures drawn per synthetic ObsID;
4. folding through ARF x RMF (one sparse product for the whole chunk), ACIS-like particle +
   sky background in a region ``backscal_ratio`` times larger, Poisson sampling per PI
   channel, and count-conserving regridding onto the SpectrumSet grid exactly as ingest does.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlatent.core.grid import EnergyGrid
from xlatent.core.spectrumset import SpectrumSet
from xlatent.core.split import split_column
from xlatent.instrument import Response, default_response
from xlatent.physics import models as m
from xlatent.physics.absorption import DEFAULT_ABUNDANCES
from xlatent.physics.priors import (
    CLASSES,
    COMPONENTS,
    PRIORS,
    TD_CLASS_COUNTS,
    sample_parameters,
    sample_variability,
)
from xlatent.physics.spectra import (
    BAND_CODES,
    PARTICLE_RATE,
    SKY_RATE,
    folder,
    model_spectra,
)

#: ACIS pixel size (arcsec); BACKSCAL is written in pixels^2 like CIAO region areas.
ACIS_PIXEL_ARCSEC = 0.492
SOURCES_PER_OBSID = 20


def class_fractions(
    class_mix: str = "realistic", td_path: str | Path | None = None
) -> dict[str, float]:
    """Class proportions: ``realistic`` (CSC labelled set, from ``td_path`` when given) or
    ``balanced`` (equal)."""
    if class_mix == "balanced":
        return {c: 1.0 / len(CLASSES) for c in CLASSES}
    if class_mix != "realistic":
        raise ValueError(f"class_mix must be 'realistic' or 'balanced', not {class_mix!r}")
    counts: dict[str, float] = dict(TD_CLASS_COUNTS)
    if td_path is not None:
        from xlatent.io.csc.td import read_td

        vc = read_td(td_path)["source_class"].value_counts()
        counts = {c: float(vc.get(c, 0)) for c in CLASSES}
    total = sum(counts.values())
    return {c: counts[c] / total for c in CLASSES}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _response_digest(response: Response) -> str:
    if response is default_response():
        return "builtin:acis-s"
    h = hashlib.sha256()
    parts = [response.rmf.energ_lo, response.rmf.energ_hi, response.rmf.e_min,
             response.rmf.e_max, response.rmf.matrix.data, response.rmf.matrix.indices,
             response.rmf.matrix.indptr]  # fmt: skip
    if response.arf is not None:
        parts += [response.arf.energ_lo, response.arf.energ_hi, response.arf.specresp]
    for a in parts:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def simulation_digest(
    *, entropy: Any, response: Response, grid: EnergyGrid, priors: Any, **params: Any
) -> str:
    """8 hex digits identifying a simulation: its seed entropy and every parameter that shapes
    the set (size, class fractions, response, grid, ranges, abundances, priors; not
    ``chunk_size``, which does not change the set). Simulated ``spec_id`` values are
    ``sim-<digest>-<index>``: the same call with the same seed gives the same ids, two
    different simulations (practically: 1 in 4e9 per pair) never share one."""
    record = {
        "entropy": entropy,
        "response": _response_digest(response),
        "grid": hashlib.sha256(np.ascontiguousarray(grid.edges_kev).tobytes()).hexdigest(),
        "priors": "default" if priors is None or priors is PRIORS else priors,
        **params,
    }
    text = json.dumps(record, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def simulate(
    n: int,
    seed: int = 0,
    class_mix: str = "realistic",
    response: Response | None = None,
    grid: EnergyGrid | None = None,
    *,
    counts_range: tuple[float, float] = (50.0, 20000.0),
    exposure_range_s: tuple[float, float] = (1.0e4, 1.5e5),
    backscal_ratio: tuple[float, float] = (20.0, 50.0),
    src_area_arcsec2: tuple[float, float] = (4.0, 100.0),
    td_path: str | Path | None = None,
    abundances: str = DEFAULT_ABUNDANCES,
    priors: dict[str, dict[str, Any]] | None = None,
    chunk_size: int = 2000,
    n_sub: int = 2,
    write_pha: str | Path | None = None,
    test_fraction: float = 0.2,
    progress: bool = False,
) -> SpectrumSet:
    """Simulate ``n`` CSC-like spectra (a :class:`SpectrumSet` with ``truth_*`` columns).

    ``class_mix``: ``"realistic"`` (CSC labelled-set proportions, from ``td_path`` if given)
    or ``"balanced"``. ``response``: an ``xlatent.instrument.Response`` (default: built-in
    on-axis ACIS-S). ``counts_range``: log-uniform expected 0.5-7 keV source counts.
    ``write_pha``: also write OGIP PHA/ARF/RMF files there (ingesting them gives this set).
    ``test_fraction``: the share of each class in ``meta["split"] == "test"`` (the rest
    ``"train"``, drawn from ``seed``): ``xlatent train`` fits only the train rows and
    ``evaluate`` scores on the test rows, so every command-line run is held out by construction.
    The same ``seed`` gives the same set, whatever ``chunk_size``.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), not {test_fraction}")
    response = default_response() if response is None else response
    grid = EnergyGrid.default() if grid is None else grid
    f = folder(response, grid, n_sub, abundances)
    ss = np.random.SeedSequence(seed)
    rng_pop, rng_src, rng_bkg = (np.random.default_rng(s) for s in ss.spawn(3))

    frac = class_fractions(class_mix, td_path)
    classes = rng_pop.choice(np.array(CLASSES), size=n, p=[frac[c] for c in CLASSES])
    params = sample_parameters(classes, rng_pop, priors)
    var_prob, var_index = sample_variability(classes, rng_pop, priors)
    n_obs = -(-n // SOURCES_PER_OBSID)
    obs_exposure = np.exp(rng_pop.uniform(*np.log(exposure_range_s), n_obs))
    obs_index = np.arange(n) // SOURCES_PER_OBSID
    exposure_s = obs_exposure[obs_index]
    target_counts = np.exp(rng_pop.uniform(*np.log(counts_range), n))
    ratio = rng_pop.uniform(*backscal_ratio, n)
    area = np.exp(rng_pop.uniform(*np.log(src_area_arcsec2), n))
    sky_scale = np.exp(rng_pop.normal(0.0, 0.3, n))  # field-to-field sky brightness
    bkg_src_counts = area * exposure_s * (PARTICLE_RATE + SKY_RATE * sky_scale)
    bkg_sky_share = SKY_RATE * sky_scale / (PARTICLE_RATE + SKY_RATE * sky_scale)

    m_bins = grid.n_bins
    counts = np.empty((n, m_bins))
    background = np.empty((n, m_bins))
    expected = np.empty((n, m_bins))
    fluxes = {k: np.empty((n, 4)) for k in ("flux_abs", "flux_unabs")}
    fracs = {c: np.empty(n) for c in COMPONENTS}
    prefix = simulation_digest(
        entropy=ss.entropy, n=n, fractions=frac, response=response, grid=grid,
        counts_range=counts_range, exposure_range_s=exposure_range_s,
        backscal_ratio=backscal_ratio, src_area_arcsec2=src_area_arcsec2,
        abundances=abundances, priors=priors, n_sub=n_sub,
    )  # fmt: skip
    spec_ids = np.array([f"sim-{prefix}-{i + 1:06d}" for i in range(n)])
    writer = None
    if write_pha is not None:
        from xlatent.io.ogip_write import PhaDirWriter

        writer = PhaDirWriter(write_pha, response)

    starts = range(0, n, chunk_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, total=-(-n // chunk_size), desc="simulate", unit="chunk")
    for a in starts:
        b = min(a + chunk_size, n)
        sl = slice(a, b)
        res = model_spectra({k: v[sl] for k, v in params.items()}, f)
        chan_rate = np.asarray((f.resp.T @ res["photon_flux"].T).T)  # counts/s per unit
        rate_b = (chan_rate @ f.w_grid) @ f.broad_grid
        scale = target_counts[sl] / (exposure_s[sl] * rate_b)
        exp_chan = chan_rate * (scale * exposure_s[sl])[:, None]
        bkg_chan = bkg_src_counts[sl, None] * (
            (1.0 - bkg_sky_share[sl, None]) * f.bkg_particle[None, :]
            + bkg_sky_share[sl, None] * f.bkg_sky[None, :]
        )
        src_obs = rng_src.poisson(exp_chan + bkg_chan)
        bkg_obs = rng_bkg.poisson(bkg_chan * ratio[sl, None])
        counts[sl] = src_obs @ f.w_grid
        background[sl] = (bkg_obs @ f.w_grid) / ratio[sl, None]
        expected[sl] = exp_chan @ f.w_grid
        for k in fluxes:
            fluxes[k][sl] = res[k] * scale[:, None] * m.KEV_TO_ERG
        for c in COMPONENTS:
            fracs[c][sl] = res[f"frac_{c}"]
        if writer is not None:
            px2 = area[sl] / ACIS_PIXEL_ARCSEC**2
            for i in range(b - a):
                writer.write(
                    spec_ids[a + i], src_obs[i], bkg_obs[i], float(exposure_s[a + i]),
                    float(px2[i]), float(px2[i] * ratio[a + i]),
                    obsid=90000 + int(obs_index[a + i]),
                )  # fmt: skip

    meta = pd.DataFrame(
        {
            "spec_id": spec_ids,
            "obsid": 90000 + obs_index,
            "obi": np.zeros(n, dtype=np.int64),
            "region_id": np.arange(n) % SOURCES_PER_OBSID + 1,
            "name": "",
            "object": spec_ids,
            "source_file": "" if writer is None else [str(writer.pha_path(s)) for s in spec_ids],
            "instrument": "ACIS",
            "source_class": classes,
            "var_prob_b": var_prob,
            "var_index_b": var_index,
            "exposure_s": exposure_s,
        }
    )
    truth = {
        "truth_nh_1e22": params["nh_1e22"],
        "truth_nh_gal_1e22": params["nh_gal_1e22"],
        "truth_nh_int_1e22": params["nh_int_1e22"],
    }
    for name in ("gamma", "kt_kev", "kt2_kev", "kt_in_kev", "kt_bb_kev", "abundance"):
        truth[f"truth_{name}"] = params[name]
    truth["truth_fe_ka_ew_kev"] = params["fe_ka_ew_kev"]
    truth["truth_fe_ka_sigma_kev"] = params["fe_ka_sigma_kev"]
    for c in COMPONENTS:
        truth[f"truth_frac_{c}"] = fracs[c]
    for j, band in enumerate(BAND_CODES):
        truth[f"truth_flux_{band}"] = fluxes["flux_abs"][:, j]
    for j, band in enumerate(BAND_CODES):
        truth[f"truth_uflux_{band}"] = fluxes["flux_unabs"][:, j]
    truth["truth_counts_b"] = target_counts
    truth["truth_backscal_ratio"] = ratio
    truth["truth_model"] = [
        "+".join(c for c in COMPONENTS if fracs[c][i] > 0)
        + ("+feka" if params["fe_ka_ew_kev"][i] > 0 else "")
        for i in range(n)
    ]
    meta = pd.concat([meta, pd.DataFrame(truth)], axis=1)
    meta["split"] = split_column(meta, test_fraction, seed)
    out = SpectrumSet(
        grid=grid,
        counts=counts,
        background=background,
        exposure_s=exposure_s,
        effective_area_cm2=np.broadcast_to(f.area_grid, (n, m_bins)).copy(),
        meta=meta,
        expected_counts=expected,
    )
    out.update_band_columns()
    out.add_provenance(
        "simulate",
        n=n,
        seed=seed,
        class_mix=class_mix,
        response="builtin:acis-s"
        if response is default_response()
        else f"{response.arf.path if response.arf else ''} {response.rmf.path}".strip(),
        abundances=abundances,
        counts_range=list(counts_range),
        exposure_range_s=list(exposure_range_s),
        test_fraction=test_fraction,
        priors="default" if priors is None or priors is PRIORS else "custom",
        spec_id_prefix=f"sim-{prefix}-",
    )
    if writer is not None:
        writer.close()
    return out
