"""Population simulator: CSC-like sources of eight classes folded through Chandra responses.

Pipeline for a batch of sources (all vectorised, in chunks):

1. class labels (realistic CSC mix or balanced) and model parameters from :mod:`priors`;
2. where each source was observed (:mod:`observation`): per synthetic ObsID a detector and
   date, per source an off-axis angle and chip; or one fixed response, or real ARF/RMF pairs;
3. photon flux densities on sub-samples of the RMF true-energy bins (:mod:`models`),
   photoelectric absorption (:mod:`absorption`), integration over the bins;
4. normalisation so that the expected 0.5-7 keV source counts *through the reference
   (built-in on-axis ACIS-S) response* follow a log-uniform distribution; the source is then
   folded through its own response (:mod:`responses`), so the same source gives fewer counts
   late in the mission or off-axis;
5. ACIS-like particle (unvignetted) + sky (through the source's own area) background in an
   aperture that grows with the PSF and a region ``backscal_ratio`` times larger, Poisson
   sampling per PI channel, and count-conserving regridding onto the SpectrumSet grid exactly
   as ingest does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlatent.core.grid import EnergyGrid
from xlatent.core.spectrumset import SpectrumSet
from xlatent.core.split import split_column
from xlatent.instrument import ARF, Response, default_response
from xlatent.instrument.family import energy_bins, response_id
from xlatent.physics import models as m
from xlatent.physics import variability as pv
from xlatent.physics.absorption import DEFAULT_ABUNDANCES
from xlatent.physics.digest import response_digest, simulation_digest
from xlatent.physics.observation import (
    aperture_area_arcsec2,
    check_instrument,
    date_obs,
    draw_instrument,
)
from xlatent.physics.priors import (
    CLASSES,
    COMPONENTS,
    PRIORS,
    TD_CLASS_COUNTS,
    sample_parameters,
)
from xlatent.physics.responses import (
    ResponseGroup,
    chip_group,
    response_context,
    response_label,
)
from xlatent.physics.spectra import BAND_CODES, PARTICLE_RATE, SKY_RATE

#: ACIS pixel size (arcsec); BACKSCAL is written in pixels^2 like CIAO region areas.
ACIS_PIXEL_ARCSEC = 0.492
SOURCES_PER_OBSID = 20
INSTRUMENT_COLUMNS = ("detector", "ccd_id", "chip_type", "epoch_year", "theta_arcmin")


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


def _assign_responses(
    obs_index: np.ndarray,
    rng_obs: np.random.Generator,
    response: Response | None,
    responses: Sequence[Response] | None,
    real_fraction: float,
    instrument: dict[str, Any] | None,
    grid: EnergyGrid,
    n_sub: int,
    abundances: str,
) -> tuple[list[Any], np.ndarray, dict[str, np.ndarray], list[tuple[str, str | None]]]:
    """Folding groups, each source's group, its instrument columns (``detector``, ``ccd_id``,
    ``chip_type``, ``epoch_year``, ``theta_arcmin``, ``date_obs``, ``response_id``) and each
    group's PHA file names (RMF, and a shared ARF or None for one ARF per spectrum)."""
    n = obs_index.size
    cols = draw_instrument(obs_index, rng_obs, instrument)
    cols = {k: v.astype(object) if v.dtype.kind == "U" else v for k, v in cols.items()}
    cols["date_obs"] = date_obs(cols["epoch_year"])
    if response is not None:
        ctx = response_context(response)
        cols = {k: np.array([ctx[k]] * n, dtype=object if isinstance(ctx[k], str) else None)
                for k in (*INSTRUMENT_COLUMNS, "date_obs")}  # fmt: skip
        label = (
            "builtin:acis-s"
            if response is default_response()
            else str(response.arf.path if response.arf is not None else response.rmf.path)
        )
        cols["response_id"] = np.array([label] * n, dtype=object)
        return [ResponseGroup(response, grid, n_sub, abundances)], np.zeros(n, np.int64), cols, []
    groups: list[Any] = [chip_group(c, grid, n_sub, abundances) for c in ("FI", "BI")]
    names: list[tuple[str, str | None]] = [("acis-FI.rmf", None), ("acis-BI.rmf", None)]
    gidx = np.where(cols["chip_type"] == "BI", 1, 0)
    rid = response_id(cols["chip_type"].astype(str), cols["epoch_year"], cols["theta_arcmin"])
    cols["response_id"] = rid.astype(object)
    if responses:
        n_obs = int(obs_index.max()) + 1
        real = (rng_obs.random(n_obs) < real_fraction)[obs_index]
        pick = rng_obs.integers(len(responses), size=n_obs)[obs_index]
        for j, resp in enumerate(responses):
            rows = real & (pick == j)
            if not rows.any():
                continue
            groups.append(ResponseGroup(resp, grid, n_sub, abundances))
            names.append((f"real{j}.rmf", f"real{j}.arf"))
            gidx[rows] = len(groups) - 1
            ctx = response_context(resp)
            for k in (*INSTRUMENT_COLUMNS, "date_obs"):
                cols[k][rows] = ctx[k]
            cols["response_id"][rows] = response_label(resp)
    return groups, gidx, cols, names


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
    src_area_arcsec2: tuple[float, float] | None = None,
    instrument: dict[str, Any] | None = None,
    responses: Sequence[Response] | None = None,
    real_fraction: float = 1.0,
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
    or ``"balanced"``. Responses: by default every source draws its own member of the ACIS
    response family (chip type, date, off-axis angle; ``instrument`` fixes any of
    ``chip_type`` / ``epoch_year`` / ``theta_arcmin`` for every source); ``responses`` (real
    ARF/RMF pairs) replace the family for a share ``real_fraction`` of the observations, each
    drawing one pair uniformly; ``response`` folds every source through that one response.
    ``counts_range``: log-uniform expected 0.5-7 keV source counts *through the reference
    (built-in on-axis ACIS-S) response* in the source's exposure; the flux follows, and the
    counts through the source's own response are ``truth_counts_b``.
    ``src_area_arcsec2``: log-uniform source-region areas instead of the PSF-sized aperture.
    ``write_pha``: also write OGIP PHA/ARF/RMF files there (ingesting them gives this set).
    ``test_fraction``: the share of each class in ``meta["split"] == "test"`` (the rest
    ``"train"``, drawn from ``seed``): ``xlatent train`` fits only the train rows and
    ``evaluate`` scores on the test rows, so every command-line run is held out by construction.
    The same ``seed`` gives the same set, whatever ``chunk_size``; the same ``seed`` with
    another ``instrument`` gives the same sources (``truth_*`` parameters and fluxes).
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), not {test_fraction}")
    if response is not None and (instrument or responses):
        raise ValueError("response folds every source through one response; instrument and "
                         "responses apply to the response-diverse sky (response=None)")  # fmt: skip
    if responses is not None and len(responses) == 0:
        raise ValueError("responses is empty; give None for the response family alone")
    if not 0.0 <= real_fraction <= 1.0:
        raise ValueError(f"real_fraction must be in [0, 1], not {real_fraction}")
    fixed = check_instrument(instrument)
    grid = EnergyGrid.default() if grid is None else grid
    ss = np.random.SeedSequence(seed)
    # Stream 4 (observations) is new: streams 1-3, hence every source, are as they were.
    rng_pop, rng_src, rng_bkg, rng_obs = (np.random.default_rng(s) for s in ss.spawn(4))

    frac = class_fractions(class_mix, td_path)
    classes = rng_pop.choice(np.array(CLASSES), size=n, p=[frac[c] for c in CLASSES])
    params = sample_parameters(classes, rng_pop, priors)
    n_obs = -(-n // SOURCES_PER_OBSID)
    obs_exposure = np.exp(rng_pop.uniform(*np.log(exposure_range_s), n_obs))
    obs_index = np.arange(n) // SOURCES_PER_OBSID
    exposure_s = obs_exposure[obs_index]
    # Variability (own stream): intrinsic light curves first, as flares heat and dips absorb
    rng_var_src, rng_var_lc = pv.variability_rngs(ss.entropy)  # the spectra (then its photons)
    intrinsic = pv.draw_variability(classes, exposure_s, rng_var_src)
    pv.apply_to_parameters(params, intrinsic)
    target_counts = np.exp(rng_pop.uniform(*np.log(counts_range), n))
    ratio = rng_pop.uniform(*backscal_ratio, n)
    u_area = rng_pop.random(n)  # drawn whether used or not, so the draws after it keep values
    sky_scale = np.exp(rng_pop.normal(0.0, 0.3, n))  # field-to-field sky brightness
    groups, gidx, cols, pha_names = _assign_responses(
        obs_index, rng_obs, response, responses, real_fraction, fixed, grid, n_sub, abundances
    )
    if src_area_arcsec2 is None:
        area = aperture_area_arcsec2(np.nan_to_num(cols["theta_arcmin"].astype(float), nan=0.0))
    else:
        lo, hi = np.log(src_area_arcsec2)
        area = np.exp(lo + (hi - lo) * u_area)

    m_bins = grid.n_bins
    counts, background, expected, eff_area = (np.empty((n, m_bins)) for _ in range(4))
    fluxes = {k: np.empty((n, 4)) for k in ("flux_abs", "flux_unabs")}
    fracs = {c: np.empty(n) for c in COMPONENTS}
    prefix = simulation_digest(
        entropy=ss.entropy, n=n, fractions=frac, response=response, grid=grid,
        counts_range=counts_range, exposure_range_s=exposure_range_s,
        backscal_ratio=backscal_ratio, src_area_arcsec2=src_area_arcsec2,
        abundances=abundances, priors=priors, n_sub=n_sub, instrument=fixed,
        responses=None if responses is None else [response_digest(r) for r in responses],
        real_fraction=real_fraction if responses else None,
    )  # fmt: skip
    spec_ids = np.array([f"sim-{prefix}-{i + 1:06d}" for i in range(n)])
    writer = None
    if write_pha is not None:
        from xlatent.io.ogip_write import PhaDirWriter

        writer = PhaDirWriter(write_pha, response)

    n_chan = np.array([g.n_channels for g in groups])
    # One width for every response (the usual case): rows of a 2-D view, cheaper to index.
    width = int(n_chan[0]) if np.all(n_chan == n_chan[0]) else 0
    starts = range(0, n, chunk_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, total=-(-n // chunk_size), desc="simulate", unit="chunk")
    for a in starts:
        g_chunk = gidx[a : min(a + chunk_size, n)]
        # Channels of every source one after the other: one Poisson call per chunk draws the
        # same numbers whatever the chunking, and responses may differ in channel count
        # (then one row holds them all, indexed element by element).
        off = np.concatenate([[0], np.cumsum(n_chan[g_chunk])])
        lam_src, lam_bkg = (np.empty(off[-1]).reshape(-1, width or off[-1]) for _ in "sb")
        parts = []
        for gi in np.unique(g_chunk):
            rows = np.flatnonzero(g_chunk == gi)
            r = a + rows
            fd = groups[gi].fold(
                rows, {k: v[r] for k, v in params.items()},
                epoch_year=cols["epoch_year"][r], theta_arcmin=cols["theta_arcmin"][r],
            )  # fmt: skip
            scale = target_counts[r] / (exposure_s[r] * fd.rate_ref)
            exp_chan = fd.chan_unit * (scale * exposure_s[r])[:, None]
            bkg_chan = (area[r] * exposure_s[r])[:, None] * (
                PARTICLE_RATE * fd.particle[None, :]
                + SKY_RATE * sky_scale[r, None] * np.atleast_2d(fd.sky_chan)
            )
            idx = rows if width else (0, off[rows][:, None] + np.arange(n_chan[gi]))
            lam_src[idx] = exp_chan + bkg_chan
            lam_bkg[idx] = bkg_chan * ratio[r, None]
            parts.append((gi, r, idx, fd, exp_chan, scale))
        src_flat, bkg_flat = rng_src.poisson(lam_src), rng_bkg.poisson(lam_bkg)
        for gi, r, idx, fd, exp_chan, scale in parts:
            src_obs, bkg_obs = src_flat[idx], bkg_flat[idx]
            counts[r] = src_obs @ fd.w_grid
            background[r] = (bkg_obs @ fd.w_grid) / ratio[r, None]
            expected[r] = exp_chan @ fd.w_grid
            eff_area[r] = fd.area_grid
            for k in fluxes:
                fluxes[k][r] = fd.res[k] * scale[:, None] * m.KEV_TO_ERG
            for c in COMPONENTS:
                fracs[c][r] = fd.res[f"frac_{c}"]
            if writer is not None:
                _write_rows(
                    writer, r, src_obs, bkg_obs, fd, groups[gi],
                    pha_names[gi] if pha_names else None, spec_ids=spec_ids,
                    exposure_s=exposure_s, px2=area / ACIS_PIXEL_ARCSEC**2, ratio=ratio,
                    obsid=90000 + obs_index, cols=cols,
                )  # fmt: skip

    broad = grid.band_mask(0.5, 7.0)
    var_prob, var_index = pv.observe(intrinsic, counts, expected, background, broad, rng_var_lc)
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
            "detector": cols["detector"].astype(str),
            "ccd_id": cols["ccd_id"].astype(np.int64),
            "chip_type": cols["chip_type"].astype(str),
            "epoch_year": cols["epoch_year"].astype(np.float64),
            "date_obs": cols["date_obs"].astype(str),
            "theta_arcmin": cols["theta_arcmin"].astype(np.float64),
            "response_id": cols["response_id"].astype(str),
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
    for name in ("gamma", "kt_kev", "kt2_kev", "kt_in_kev", "kt_bb_kev", "abundance", "redshift",
                 "pc_frac", "nh_pc_1e22"):  # fmt: skip
        truth[f"truth_{name}"] = params[name]
    truth["truth_fe_ka_ew_kev"] = params["fe_ka_ew_kev"]
    truth["truth_fe_ka_sigma_kev"] = params["fe_ka_sigma_kev"]
    for c in COMPONENTS:
        truth[f"truth_frac_{c}"] = fracs[c]
    for j, band in enumerate(BAND_CODES):
        truth[f"truth_flux_{band}"] = fluxes["flux_abs"][:, j]
    for j, band in enumerate(BAND_CODES):
        truth[f"truth_uflux_{band}"] = fluxes["flux_unabs"][:, j]
    truth["truth_counts_b"] = expected @ grid.band_mask(0.5, 7.0).astype(np.float64)
    truth["truth_counts_ref_b"] = target_counts
    truth["truth_var_model"] = intrinsic.model.astype(str)
    truth["truth_var_amplitude"] = intrinsic.amplitude
    truth["truth_backscal_ratio"] = ratio
    truth["truth_src_area_arcsec2"] = area
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
        effective_area_cm2=eff_area,
        meta=meta,
        expected_counts=expected,
    )
    out.update_band_columns()
    out.add_provenance(
        "simulate",
        n=n,
        seed=seed,
        class_mix=class_mix,
        response="family:acis" if response is None else str(cols["response_id"][0]),
        instrument=fixed,
        responses=[] if responses is None else [response_label(r) for r in responses],
        real_fraction=real_fraction if responses else 0.0,
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


def _write_rows(
    writer: Any, r: np.ndarray, src_obs: np.ndarray, bkg_obs: np.ndarray, fd: Any, group: Any,
    names: tuple[str, str | None] | None, *, spec_ids: np.ndarray, exposure_s: np.ndarray,
    px2: np.ndarray, ratio: np.ndarray, obsid: np.ndarray, cols: dict[str, np.ndarray],
) -> None:  # fmt: skip
    """Write one group's spectra of a chunk: family members each with their own ARF, real
    responses with one shared ARF, one RMF per group (``names``; None: the writer's shared
    response). BACKSCAL in ACIS pixels^2 (``px2``)."""
    lo, hi = energy_bins()
    resp = getattr(group, "response", None)
    for i, row in enumerate(r):
        kwargs: dict[str, Any] = {}
        if names is not None:
            kwargs["rmf"] = resp.rmf if resp is not None else group.rmf
            kwargs["rmf_name"] = names[0]
            if fd.arf_cm2 is not None:
                kwargs["arf"] = ARF(lo, hi, fd.arf_cm2[i], f"{spec_ids[row]}.arf")
            elif resp is not None and resp.arf is not None:
                kwargs["arf"], kwargs["arf_name"] = resp.arf, names[1]
        extra = {"DETNAM": f"ACIS-{int(cols['ccd_id'][row])}"} if cols["ccd_id"][row] >= 0 else {}
        if cols["date_obs"][row]:
            extra["DATE-OBS"] = str(cols["date_obs"][row])
        writer.write(
            spec_ids[row], src_obs[i], bkg_obs[i], float(exposure_s[row]), float(px2[row]),
            float(px2[row] * ratio[row]), obsid=int(obsid[row]), extra=extra, **kwargs,
        )  # fmt: skip
