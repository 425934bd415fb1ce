"""Population simulator: CSC-like sources of eight classes folded through Chandra responses.

Pipeline (all vectorised, in batches of whole slot blocks):

1. class labels (realistic CSC mix or balanced) of the ``n`` slots, and per synthetic
   observation (:mod:`observation`) a detector and date, or one fixed response, or real
   ARF/RMF pairs;
2. a source per slot, drawn until it is detected (:mod:`detect`): model parameters
   (:mod:`priors`), absorbed flux and exposure per class (:mod:`brightness`), off-axis angle
   and chip; photon fluxes (:mod:`models`, :mod:`absorption`) folded through the source's
   own response (:mod:`responses`) with pile-up for bright sources (:mod:`pileup`); the
   0.5-7 keV source- and background-region counts give ``snr_b``, kept when >= ``snr_min``.
   ``brightness="counts"`` instead sets the expected counts through the reference response
   (log-uniform ``counts_range``) and keeps every source;
3. ACIS-like particle (unvignetted) + sky (through the source's own area) background in an
   aperture that grows with the PSF and a region ``backscal_ratio`` times larger, Poisson
   counts per PI channel (the 0.5-7 keV channels share out the totals drawn at detection),
   and count-conserving regridding onto the SpectrumSet grid exactly as ingest does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlatent.core.area_kind import AREA_DEFINITION
from xlatent.core.grid import EnergyGrid
from xlatent.core.spectrumset import SpectrumSet
from xlatent.core.split import split_column
from xlatent.instrument import Response
from xlatent.physics import models as m
from xlatent.physics import variability as pv
from xlatent.physics.absorption import DEFAULT_ABUNDANCES
from xlatent.physics.brightness import SNR_MIN, brightness_model
from xlatent.physics.detect import (
    SLOT_BLOCK,
    Plan,
    fill,
    in_band_draws,
    plan_observations,
    source_channels,
)
from xlatent.physics.digest import response_digest, simulation_digest
from xlatent.physics.observation import check_instrument, date_obs
from xlatent.physics.priors import (
    CLASSES,
    COMPONENTS,
    PRIORS,
    TD_CLASS_COUNTS,
)
from xlatent.physics.responses import response_ids, response_label
from xlatent.physics.simulated_rows import SOURCES_PER_OBSID, simulated_meta, write_pha_rows
from xlatent.physics.spectra import PARTICLE_RATE, SKY_RATE

#: ACIS pixel size (arcsec); BACKSCAL is written in pixels^2 like CIAO region areas.
ACIS_PIXEL_ARCSEC = 0.492
INSTRUMENT_COLUMNS = ("detector", "ccd_id", "chip_type", "epoch_year", "theta_arcmin")
#: Exposure range (s, log-uniform per observation) of ``brightness="counts"``.
COUNTS_MODE_EXPOSURE_S = (1.0e4, 1.5e5)


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


def simulate(
    n: int,
    seed: int = 0,
    class_mix: str = "realistic",
    response: Response | None = None,
    grid: EnergyGrid | None = None,
    *,
    brightness: str = "flux",
    snr_min: float = SNR_MIN,
    pileup: bool = True,
    counts_range: tuple[float, float] = (50.0, 20000.0),
    exposure_range_s: tuple[float, float] | None = None,
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
    ``brightness="flux"`` (default): per-class absorbed 0.5-7 keV fluxes and exposures
    (:mod:`xlatent.physics.brightness`, from ``td_path`` when given), folded through each
    source's response, and only detections with ``snr_b >= snr_min`` kept (sources are
    redrawn until one is detected). ``brightness="counts"``: no selection; expected 0.5-7 keV
    counts *through the reference (built-in on-axis ACIS-S) response* log-uniform in
    ``counts_range``, exposures log-uniform in ``exposure_range_s`` (default 10-150 ks) per
    observation. ``exposure_range_s`` given with ``"flux"``: log-uniform per source.
    ``pileup``: bright sources are piled up (:mod:`xlatent.physics.pileup`;
    ``meta["pileup_fraction"]``); False leaves every spectrum as incident.
    ``src_area_arcsec2``: log-uniform source-region areas instead of the PSF-sized aperture.
    ``write_pha``: also write OGIP PHA/ARF/RMF files there (ingesting them gives this set).
    ``test_fraction``: the share of each class in ``meta["split"] == "test"`` (drawn from
    ``seed``). The same ``seed`` gives the same set, whatever ``chunk_size``.
    """
    # Every argument, in one block (simulate_blocks gives the same rows in several).
    blocks = list(_blocks(**locals(), block_rows=None))
    return blocks[0]


def simulate_blocks(
    n: int, *args: Any, block_rows: int = 20_000, **kwargs: Any
) -> Iterator[SpectrumSet]:
    """:func:`simulate`'s set (same arguments) as SpectrumSets of ``block_rows`` rows
    (rounded up to a multiple of 500, the simulator's slot block): concatenated, they are exactly
    ``simulate(n, ...)`` (every random stream is drawn row by row in order; the split is drawn
    from the classes up front), and each carries the set's provenance. Memory is flat in ``n``
    (apart from a few numbers per spectrum): write the blocks with a
    :class:`~xlatent.core.SpectrumSetWriter` (``xlatent simulate`` does)."""
    return _blocks(n, *args, block_rows=block_rows, **kwargs)


def _blocks(
    n: int,
    seed: int = 0,
    class_mix: str = "realistic",
    response: Response | None = None,
    grid: EnergyGrid | None = None,
    *,
    brightness: str = "flux",
    snr_min: float = SNR_MIN,
    pileup: bool = True,
    counts_range: tuple[float, float] = (50.0, 20000.0),
    exposure_range_s: tuple[float, float] | None = None,
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
    block_rows: int | None = None,
) -> Iterator[SpectrumSet]:
    if n < 1:
        raise ValueError("n must be at least 1")
    if brightness not in ("flux", "counts"):
        raise ValueError(f"brightness must be 'flux' or 'counts', not {brightness!r}")
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
    streams = ss.spawn(10)
    rng_pop, rng_src, rng_bkg, rng_obs, _, rng_src_in, rng_bkg_in, rng_var = (
        np.random.default_rng(s) for s in streams[:8]
    )
    rng_src_many, rng_bkg_many = (np.random.default_rng(s) for s in streams[8:])
    frac = class_fractions(class_mix, td_path)
    classes = rng_pop.choice(np.array(CLASSES), size=n, p=[frac[c] for c in CLASSES])
    n_obs = -(-n // SOURCES_PER_OBSID)
    obs_index = np.arange(n) // SOURCES_PER_OBSID
    obs_exposure = None
    if brightness == "counts":
        lo_hi = np.log(exposure_range_s or COUNTS_MODE_EXPOSURE_S)
        obs_exposure = np.exp(rng_pop.uniform(*lo_hi, n_obs))[obs_index]
    groups, slot_group, context, acis_i, epoch, pha_names = plan_observations(
        obs_index, rng_obs, response, responses, real_fraction, fixed, grid, n_sub, abundances
    )
    plan = Plan(
        classes, acis_i, epoch, slot_group, context, obs_exposure, groups, brightness, priors,
        brightness_model(td_path), counts_range, exposure_range_s, backscal_ratio,
        src_area_arcsec2, fixed, snr_min, pileup, streams[4].spawn(-(-n // SLOT_BLOCK)),
    )  # fmt: skip
    prefix = simulation_digest(
        entropy=ss.entropy, n=n, fractions=frac, response=response, grid=grid,
        counts_range=counts_range if brightness == "counts" else None,
        exposure_range_s=exposure_range_s, brightness=brightness,
        snr_min=snr_min if brightness == "flux" else None, pileup=pileup,
        flux_model=plan.flux_model if brightness == "flux" else None,
        backscal_ratio=backscal_ratio, src_area_arcsec2=src_area_arcsec2,
        abundances=abundances, priors=priors, n_sub=n_sub, instrument=fixed,
        responses=None if responses is None else [response_digest(r) for r in responses],
        real_fraction=real_fraction if responses else None,
    )  # fmt: skip
    spec_ids = np.array([f"sim-{prefix}-{i + 1:06d}" for i in range(n)])
    # Every simulated spectrum is its own source, so the split depends on the classes only
    # (split_column of the whole meta gives the same): known before any block is drawn.
    split = split_column(pd.DataFrame({"source_class": classes}), test_fraction, seed)
    writer = None
    if write_pha is not None:
        from xlatent.io.ogip_write import PhaDirWriter

        writer = PhaDirWriter(write_pha, response)
    provenance = {
        "n": n, "seed": seed, "class_mix": class_mix, "instrument": fixed,
        "responses": [] if responses is None else [response_label(r) for r in responses],
        "real_fraction": real_fraction if responses else 0.0, "abundances": abundances,
        "brightness": brightness, "snr_min": snr_min if brightness == "flux" else None,
        "pileup": pileup, "counts_range": list(counts_range) if brightness == "counts" else None,
        "exposure_range_s": None if exposure_range_s is None else list(exposure_range_s),
        "test_fraction": test_fraction,
        "priors": "default" if priors is None or priors is PRIORS else "custom",
        "spec_id_prefix": f"sim-{prefix}-",
    }  # fmt: skip
    step = max(1, round(chunk_size / SLOT_BLOCK)) * SLOT_BLOCK  # whole blocks per batch
    # Blocks of whole slot blocks: batches may end at a block's end (batching changes no draw).
    rows = n if block_rows is None else max(1, -(-block_rows // SLOT_BLOCK)) * SLOT_BLOCK
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="simulate", unit="spectrum")
    for b0 in range(0, n, rows):
        b1 = min(b0 + rows, n)
        block = _block(plan, groups, grid, range(b0, b1, step), b0, b1, step, spec_ids, obs_index,
                       writer, pha_names, rng_src, rng_bkg, rng_src_in, rng_bkg_in,
                       rng_src_many, rng_bkg_many, bar)  # fmt: skip
        src, params, cols, var, arrays = block
        cols["response_id"] = response_ids(cols, slot_group[b0:b1], groups, response)
        # The detected sources' photons spread over their intrinsic light curves (drawn, and
        # applied to their spectra, with each candidate): CSC Gregory-Loredo var_prob_b/index.
        intrinsic = pv.IntrinsicVariability(**var)
        broad = grid.band_mask(0.5, 7.0)
        counts, background, expected, eff_area = arrays["counts"], arrays["background"], \
            arrays["expected"], arrays["eff_area"]  # fmt: skip
        var_prob, var_index = pv.observe(intrinsic, counts, expected, background, broad, rng_var)
        meta = simulated_meta(
            spec_ids[b0:b1], obs_index[b0:b1], np.arange(b0, b1), classes[b0:b1], cols, src,
            params, arrays, intrinsic, var_prob, var_index, grid, writer,
        )  # fmt: skip
        meta["split"] = split[b0:b1]
        out = SpectrumSet(
            grid=grid,
            counts=counts,
            background=background,
            exposure_s=src["exposure_s"],
            effective_area_cm2=eff_area,
            meta=meta,
            expected_counts=expected,
        )
        out.update_band_columns()
        if b0 == 0:  # the first spectrum's response names a fixed one
            response_name = "family:acis" if response is None else str(cols["response_id"][0])
        out.add_provenance(
            "simulate", **{**provenance, "response": response_name, "area": AREA_DEFINITION}
        )
        if b1 == n and writer is not None:
            writer.close()
        yield out
        # Drop this block's arrays before the next is drawn: one block in memory at a time.
        del out, block, arrays, counts, background, expected, eff_area, intrinsic, meta, var, src
    if bar is not None:
        bar.close()


def _block(
    plan: Plan, groups: list[Any], grid: EnergyGrid, starts: range, b0: int, b1: int, step: int,
    spec_ids: np.ndarray, obs_index: np.ndarray, writer: Any, pha_names: Any,
    rng_src: Any, rng_bkg: Any, rng_src_in: Any, rng_bkg_in: Any, rng_src_many: Any,
    rng_bkg_many: Any, bar: Any,
) -> tuple[dict[str, np.ndarray], ...]:  # fmt: skip
    """Slots ``b0:b1`` in batches of ``step``: the per-row parts (source, parameters,
    columns, light curves) and the (rows, m) arrays, all indexed from ``b0``."""
    size, m_bins = b1 - b0, grid.n_bins
    arrays = {key: np.empty((size, m_bins)) for key in ("counts", "background", "expected",
                                                     "eff_area")}  # fmt: skip
    fluxes = {key: np.empty((size, 4)) for key in ("flux_abs", "flux_unabs")}
    fracs = {c: np.empty(size) for c in COMPONENTS}
    n_chan = np.array([g.n_channels for g in groups])
    # One width for every response (the usual case): rows of a 2-D view, cheaper to index.
    width = int(n_chan[0]) if np.all(n_chan == n_chan[0]) else 0
    kept: dict[str, dict[str, np.ndarray]] = {"params": {}, "src": {}, "cols": {}, "var": {}}
    for a in starts:
        f = fill(plan, a, min(a + step, b1))
        f.cols["date_obs"] = date_obs(f.cols["epoch_year"].astype(np.float64))
        for part in kept:
            for key, v in getattr(f, part).items():
                if key not in kept[part]:  # (size,), or (size, N_FINE) for light curves
                    kept[part][key] = np.empty((size, *v.shape[1:]), dtype=v.dtype)
                kept[part][key][f.slots - b0] = v
        sv = f.src
        g_chunk = sv["gidx"]
        # Out-of-band channels of every source one after the other: one Poisson call per
        # batch draws the same numbers whatever the batching; the 0.5-7 keV channels share
        # out the band totals drawn at detection (multinomial).
        off = np.concatenate([[0], np.cumsum(n_chan[g_chunk])])
        lam_src, lam_bkg = (np.empty(off[-1]).reshape(-1, width or off[-1]) for _ in "sb")
        parts: list[Any] = []
        n_band = sorted({int(g.band.sum()) for g in groups})  # one width: 2-D, else lists
        band_src, band_bkg = (
            (np.zeros((f.slots.size, n_band[0])) for _ in "sb")
            if len(n_band) == 1
            else ([None] * f.slots.size for _ in "sb")
        )
        for gi, (pos, res, area) in sorted(f.models.items()):
            g, r = groups[gi], a - b0 + pos
            fd = g.fold_model(pos, res, area)
            theta = np.nan_to_num(f.cols["theta_arcmin"][pos].astype(float), nan=0.0)
            known = [f.piled.get(p) for p in pos]  # piled at detection
            exp_chan = source_channels(g, fd, sv["scale"][pos], sv["exposure_s"][pos],
                                       sv["lam"][pos], theta, known)  # fmt: skip
            bkg_chan = (sv["area_arcsec2"][pos] * sv["exposure_s"][pos])[:, None] * (
                PARTICLE_RATE * fd.particle[None, :]
                + SKY_RATE * sv["sky_scale"][pos, None] * np.atleast_2d(fd.sky_chan)
            )
            idx = pos if width else (0, off[pos][:, None] + np.arange(n_chan[gi]))
            out_band = ~g.band
            lam_src[idx] = (exp_chan + bkg_chan) * out_band
            lam_bkg[idx] = bkg_chan * sv["ratio"][pos, None] * out_band
            for j, p in enumerate(pos) if isinstance(band_src, list) else [(slice(None), pos)]:
                band_src[p] = (exp_chan[j] + bkg_chan[j])[..., g.band]
                band_bkg[p] = bkg_chan[j][..., g.band]
            parts.append((gi, pos, r, idx, fd, exp_chan))
        src_flat, bkg_flat = rng_src.poisson(lam_src), rng_bkg.poisson(lam_bkg)
        in_src = in_band_draws(rng_src_in, rng_src_many, sv["n_src_b"], band_src)
        in_bkg = in_band_draws(rng_bkg_in, rng_bkg_many, sv["n_bkg_b"], band_bkg)
        for gi, pos, r, idx, fd, exp_chan in parts:
            src_obs, bkg_obs = src_flat[idx], bkg_flat[idx]
            src_obs[:, groups[gi].band] = (
                in_src[pos]
                if isinstance(in_src, np.ndarray)
                else np.stack([in_src[p] for p in pos])
            )
            bkg_obs[:, groups[gi].band] = (
                in_bkg[pos]
                if isinstance(in_bkg, np.ndarray)
                else np.stack([in_bkg[p] for p in pos])
            )
            ratio = sv["ratio"][pos, None]
            arrays["counts"][r] = src_obs @ fd.w_grid
            arrays["background"][r] = (bkg_obs @ fd.w_grid) / ratio
            arrays["expected"][r] = exp_chan @ fd.w_grid
            arrays["eff_area"][r] = fd.area_grid
            for k in fluxes:
                fluxes[k][r] = fd.res[k] * sv["scale"][pos, None] * m.KEV_TO_ERG
            for c in COMPONENTS:
                fracs[c][r] = fd.res[f"frac_{c}"]
            if writer is not None:
                write_pha_rows(
                    writer, r, src_obs, bkg_obs, fd, groups[gi],
                    pha_names[gi] if pha_names else None, spec_ids=spec_ids[b0:b1],
                    exposure_s=kept["src"]["exposure_s"],
                    px2=kept["src"]["area_arcsec2"] / ACIS_PIXEL_ARCSEC**2,
                    ratio=kept["src"]["ratio"], obsid=90000 + obs_index[b0:b1], cols=kept["cols"],
                )  # fmt: skip

        if bar is not None:
            bar.update(f.slots.size)
    arrays["fluxes"], arrays["fracs"] = fluxes, fracs  # type: ignore[assignment]
    return kept["src"], kept["params"], kept["cols"], kept["var"], arrays
