"""Drawing simulated sources until each is detected: the selection step of the simulator.

The simulated set has ``n`` *slots*; a slot's class and observation (detector, date, a real
response if any) are fixed first. A slot is then filled by drawing a source for it (model
parameters, brightness, exposure, off-axis angle and chip, background) until one is
detected: its 0.5-7 keV source- and background-region counts, drawn from Poisson
distributions, give ``snr_b >= snr_min`` (:func:`xlatent.physics.brightness.snr`). With
``brightness="counts"`` every first draw is kept (no selection).

Slots are handled in blocks of ``SLOT_BLOCK``, each with its own random stream, and draws
for a slot never depend on other blocks, so the set is the same whatever the batch
(``chunk_size``) in which blocks are evaluated. Every unfilled slot draws one candidate per
round for ``SINGLE_ROUNDS`` rounds, then 2, 4, ... (at most ``MAX_CANDIDATES_PER_ROUND``),
and keeps its first detection: few evaluations are wasted, and slots whose sources are
rarely detected still fill in a few rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from xlatent.core.grid import EnergyGrid
from xlatent.instrument import Response
from xlatent.physics import models as m
from xlatent.physics import variability as pv
from xlatent.physics.brightness import draw_flux_exposure, snr
from xlatent.physics.observation import aperture_area_arcsec2, draw_observations, place_sources
from xlatent.physics.pileup import MIN_LAM, channel_shift, core_fraction, counts_per_frame, pile
from xlatent.physics.priors import sample_parameters
from xlatent.physics.responses import ResponseGroup, chip_group, response_context
from xlatent.physics.spectra import PARTICLE_RATE, SKY_RATE

SLOT_BLOCK = 500
MAX_ROUNDS = 100
#: Rounds with one candidate per slot (a wasted candidate costs a model evaluation), then
#: 2, 4, ... up to MAX_CANDIDATES_PER_ROUND for slots whose sources are rarely detected.
SINGLE_ROUNDS = 6
MAX_CANDIDATES_PER_ROUND = 16
#: Spectra with at most this many 0.5-7 keV counts share them out by inverse-CDF sampling.
FEW_COUNTS = 2000
#: Per-source quantities drawn for a candidate and kept for its slot.
SOURCE_KEYS = ("scale", "exposure_s", "ratio", "area_arcsec2", "sky_scale", "gidx", "lam",
               "n_src_b", "n_bkg_b", "snr_b", "counts_ref_b")  # fmt: skip
COL_KEYS = INSTRUMENT_COLUMNS = ("detector", "ccd_id", "chip_type", "epoch_year", "theta_arcmin")


@dataclass
class Plan:
    """What is fixed before any source is drawn: per slot its class and observation."""

    classes: np.ndarray  # (n,)
    acis_i: np.ndarray  # (n,) bool
    epoch_year: np.ndarray  # (n,)
    slot_group: np.ndarray  # (n,) group of a fixed/real response, -1: family by chip type
    context: dict[str, np.ndarray]  # instrument columns where slot_group >= 0
    obs_exposure_s: np.ndarray | None  # (n,) counts mode: the observation's exposure
    groups: list[Any]
    brightness: str  # "flux" or "counts"
    priors: dict[str, Any] | None
    flux_model: dict[str, Any]
    counts_range: tuple[float, float]
    exposure_range_s: tuple[float, float] | None
    backscal_ratio: tuple[float, float]
    src_area_arcsec2: tuple[float, float] | None
    instrument: dict[str, Any]
    snr_min: float
    pileup: bool
    block_seeds: list[np.random.SeedSequence] = field(default_factory=list)


@dataclass
class Filled:
    """A batch of slots, each holding its detected source."""

    slots: np.ndarray  # global slot indices, in order
    params: dict[str, np.ndarray]
    src: dict[str, np.ndarray]  # SOURCE_KEYS
    cols: dict[str, np.ndarray]  # COL_KEYS
    models: dict[int, tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]]
    piled: dict[int, np.ndarray]  # batch position -> piled expected source channel counts
    var: dict[str, np.ndarray]  # fields of variability.IntrinsicVariability


def _draw(plan: Plan, slots: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """One candidate source for each of ``slots`` (global indices), from ``rng``."""
    k = slots.size
    cls = plan.classes[slots]
    params = sample_parameters(cls, rng, plan.priors)
    if plan.brightness == "flux":
        flux, exposure = draw_flux_exposure(cls, rng, plan.flux_model)
        target = np.full(k, np.nan)
        if plan.exposure_range_s is not None:
            exposure = np.exp(rng.uniform(*np.log(plan.exposure_range_s), k))
    else:
        target = np.exp(rng.uniform(*np.log(plan.counts_range), k))
        flux = np.full(k, np.nan)
        exposure = plan.obs_exposure_s[slots]
    # Flares heat and dips absorb: the light curve is drawn before the spectrum is made.
    var = pv.draw_variability(cls, exposure, rng)
    pv.apply_to_parameters(params, var)
    ratio = rng.uniform(*plan.backscal_ratio, k)
    u_area = rng.random(k)
    sky_scale = np.exp(rng.normal(0.0, 0.3, k))  # field-to-field sky brightness
    cols = place_sources(plan.acis_i[slots], plan.epoch_year[slots], rng, plan.instrument)
    gidx = np.where(cols["chip_type"] == "BI", 1, 0)
    fixed = plan.slot_group[slots] >= 0
    if fixed.any():
        gidx = np.where(fixed, plan.slot_group[slots], gidx)
        cols = {c: v.astype(object) if v.dtype.kind == "U" else v for c, v in cols.items()}
        for c in COL_KEYS:
            cols[c][fixed] = plan.context[c][slots[fixed]]
    theta = np.nan_to_num(cols["theta_arcmin"].astype(np.float64), nan=0.0)
    if plan.src_area_arcsec2 is None:
        area = aperture_area_arcsec2(theta)
    else:
        lo, hi = np.log(plan.src_area_arcsec2)
        area = np.exp(lo + (hi - lo) * u_area)
    return {"slots": slots, "params": params, "flux": flux, "target": target,
            "exposure_s": exposure, "ratio": ratio, "area_arcsec2": area,
            "sky_scale": sky_scale, "gidx": gidx, "cols": cols, "theta": theta,
            "var": var}  # fmt: skip


def source_channels(
    group: Any, fd: Any, scale: np.ndarray, exposure_s: np.ndarray, lam: np.ndarray,
    theta_arcmin: np.ndarray, known: list[np.ndarray | None] | None = None,
) -> np.ndarray:  # fmt: skip
    """Expected source counts per PI channel, piled up where ``lam >= MIN_LAM`` (``known``:
    piled rows already computed, None where not)."""
    chan = fd.chan_unit * (scale * exposure_s)[:, None]
    piled = lam >= MIN_LAM
    if known is not None:
        for j in np.flatnonzero(piled):
            if known[j] is not None:
                chan[j], piled[j] = known[j], False
    if piled.any():
        rmf = group.rmf if hasattr(group, "rmf") else group.response.rmf
        chan[piled] = pile(
            chan[piled], lam[piled], channel_shift(rmf.e_min, rmf.e_max),
            core=core_fraction(theta_arcmin[piled]),
        )  # fmt: skip
    return chan


def _evaluate(plan: Plan, c: dict[str, Any]) -> dict[str, Any]:
    """Scale, pile-up and expected 0.5-7 keV counts of candidates ``c`` (all blocks)."""
    k = c["slots"].size
    out = {key: np.zeros(k) for key in ("scale", "lam", "lam_src", "lam_bkg", "counts_ref_b")}
    out["res"], out["area"], out["piled"] = {}, {}, {}
    for gi in np.unique(c["gidx"]):
        rows = np.flatnonzero(c["gidx"] == gi)
        g = plan.groups[gi]
        p = {key: v[rows] for key, v in c["params"].items()}
        res = g.model(p)
        area = g.area(c["cols"]["epoch_year"][rows].astype(np.float64), c["theta"][rows])
        rates = g.rates(res, area)
        exposure = c["exposure_s"][rows]
        if plan.brightness == "flux":
            scale = c["flux"][rows] / (res["flux_abs"][:, 3] * m.KEV_TO_ERG)
        else:
            scale = c["target"][rows] / (exposure * rates["ref"])
        lam = counts_per_frame(scale * rates["all"], c["theta"][rows]) * plan.pileup
        lam_src = scale * rates["band"] * exposure
        piled = np.flatnonzero(lam >= MIN_LAM)
        if piled.size:
            sub = {key: v[piled] for key, v in res.items()}
            fd = g.fold_model(piled, sub, None if area is None else area[piled])
            chan = source_channels(g, fd, scale[piled], exposure[piled], lam[piled],
                                   c["theta"][rows][piled])  # fmt: skip
            lam_src[piled] = chan[:, g.band].sum(axis=1)
            out["piled"].update(zip(rows[piled].tolist(), chan, strict=True))
        sky = SKY_RATE * c["sky_scale"][rows] * rates["sky_band"]
        bkg_rate = PARTICLE_RATE * g.particle_b + sky
        out["scale"][rows], out["lam"][rows], out["lam_src"][rows] = scale, lam, lam_src
        out["lam_bkg"][rows] = c["area_arcsec2"][rows] * exposure * bkg_rate
        out["counts_ref_b"][rows] = scale * rates["ref"] * exposure
        out["res"][gi], out["area"][gi] = (rows, res), area
    return out


def fill(plan: Plan, lo: int, hi: int) -> Filled:
    """Slots ``lo:hi`` (whole blocks, or up to the end) filled with detected sources."""
    slots = np.arange(lo, hi)
    n = slots.size
    blocks = [(b, np.arange(max(lo, b * SLOT_BLOCK), min(hi, (b + 1) * SLOT_BLOCK)))
              for b in range(lo // SLOT_BLOCK, -(-hi // SLOT_BLOCK))]  # fmt: skip
    rngs = {b: np.random.default_rng(plan.block_seeds[b]) for b, _ in blocks}
    done = np.zeros(n, dtype=bool)
    params: dict[str, np.ndarray] = {}
    src = {key: np.zeros(n) for key in SOURCE_KEYS}
    cols: dict[str, np.ndarray] = {}
    stored: dict[int, list[tuple[np.ndarray, dict[str, np.ndarray], Any]]] = {}
    piled: dict[int, np.ndarray] = {}
    var: dict[str, np.ndarray] = {}
    for rnd in range(MAX_ROUNDS):
        if done.all():
            break
        per = min(2 ** max(rnd - SINGLE_ROUNDS + 1, 0), MAX_CANDIDATES_PER_ROUND)
        for b, bs in blocks:
            todo = bs[~done[bs - lo]]
            if not todo.size:
                continue
            # Drawn and evaluated block by block: a block's numbers never depend on which
            # other blocks share its batch (not even in the last bits of a matrix product).
            c = _draw(plan, np.repeat(todo, per), rngs[b])
            ev = _evaluate(plan, c)
            n_src = rngs[b].poisson(ev["lam_src"] + ev["lam_bkg"])
            n_bkg = rngs[b].poisson(c["ratio"] * ev["lam_bkg"])
            _keep(plan, c, ev, n_src, n_bkg, lo, done, params, src, cols, stored, piled, var)
    if not done.all():
        raise ValueError(f"{int((~done).sum())} slot(s) found no source with snr_b >= "
                         f"{plan.snr_min:g} in {MAX_ROUNDS} rounds; lower snr_min")  # fmt: skip
    src["gidx"] = src["gidx"].astype(np.int64)
    models = {}
    for gi, parts in stored.items():
        sl = np.concatenate([p[0] for p in parts])
        order = np.argsort(sl, kind="stable")
        res = {key: np.concatenate([p[1][key] for p in parts])[order] for key in parts[0][1]}
        area = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])[order]
        models[gi] = (sl[order] - lo, res, area)
    return Filled(slots, params, src, cols, models, piled, var)


def plan_observations(
    obs_index: np.ndarray,
    rng_obs: np.random.Generator,
    response: Response | None,
    responses: Sequence[Response] | None,
    real_fraction: float,
    instrument: dict[str, Any],
    grid: EnergyGrid,
    n_sub: int,
    abundances: str,
) -> tuple[list[Any], np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray, list[Any]]:
    """Folding groups (FI and BI family members first, then fixed/real responses), each
    slot's fixed group (-1: family, by the chip its source lands on) and that group's
    instrument columns, the observation's ACIS-I flag and date per slot, and each group's PHA
    file names (RMF, and a shared ARF or None for one ARF per spectrum)."""
    n = obs_index.size
    acis_i, epoch = (v[obs_index] for v in draw_observations(int(obs_index.max()) + 1, rng_obs,
                                                            instrument))  # fmt: skip
    context = {k: np.empty(n, dtype=object) for k in INSTRUMENT_COLUMNS}
    if response is not None:
        ctx = response_context(response)
        for k in INSTRUMENT_COLUMNS:
            context[k][:] = ctx[k]
        group = ResponseGroup(response, grid, n_sub, abundances)
        return [group], np.zeros(n, np.int64), context, acis_i, epoch, []
    groups: list[Any] = [chip_group(c, grid, n_sub, abundances) for c in ("FI", "BI")]
    names: list[tuple[str, str | None]] = [("acis-FI.rmf", None), ("acis-BI.rmf", None)]
    slot_group = np.full(n, -1, dtype=np.int64)
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
            slot_group[rows] = len(groups) - 1
            ctx = response_context(resp)
            for k in INSTRUMENT_COLUMNS:
                context[k][rows] = ctx[k]
    return groups, slot_group, context, acis_i, epoch, names


def in_band_draws(
    rng_few: np.random.Generator,
    rng_many: np.random.Generator,
    totals: np.ndarray,
    rates: np.ndarray | list[np.ndarray],
) -> np.ndarray | list[np.ndarray]:
    """Counts per 0.5-7 keV channel given each spectrum's band total: the Poisson channels
    conditioned on their sum, i.e. multinomial, spectra in order. Spectra of at most
    ``FEW_COUNTS`` counts place each count by inverse-CDF sampling (``rng_few``, one uniform
    per count), brighter ones by ``rng_many.multinomial``; ``rates`` a list (responses with
    different channel counts): every spectrum by the multinomial."""
    totals = np.asarray(totals).astype(np.int64)
    if not isinstance(rates, np.ndarray):
        return [
            rng_many.multinomial(int(t), r / r.sum()) for t, r in zip(totals, rates, strict=True)
        ]
    k, n_chan = rates.shape
    out = np.zeros((k, n_chan), dtype=np.int64)
    few = totals <= FEW_COUNTS
    rows = np.flatnonzero(few & (totals > 0))
    if rows.size:
        cum = np.cumsum(rates[rows], axis=1)
        cum /= cum[:, -1:]
        # One sorted array for all spectra: spectrum j's CDF shifted to (j, j + 1].
        flat = (cum + np.arange(rows.size)[:, None]).ravel()
        owner = np.repeat(np.arange(rows.size), totals[rows])
        # Sorted keys: the order of the counts does not matter, and sorted look-ups are
        # several times faster.
        keys = np.sort(rng_few.random(owner.size) + owner)
        chan = np.minimum(np.searchsorted(flat, keys, side="right") - owner * n_chan,
                          n_chan - 1)  # fmt: skip
        out[rows] = np.bincount(owner * n_chan + chan, minlength=rows.size * n_chan).reshape(
            rows.size, n_chan
        )
    many = np.flatnonzero(~few)
    if many.size:
        p = rates[many]
        out[many] = rng_many.multinomial(totals[many], p / p.sum(axis=1, keepdims=True))
    return out


def _put(
    dst: dict[str, np.ndarray], key: str, v: np.ndarray, pos: np.ndarray, take: np.ndarray, n: int
) -> None:
    """``dst[key][pos] = v[take]``, allocating ``dst[key]`` for ``n`` slots on first use (rows
    of ``v``'s trailing shape; strings as objects, as their lengths differ between draws)."""
    if key not in dst:
        dst[key] = np.empty((n, *v.shape[1:]), dtype=object if v.dtype.kind == "U" else v.dtype)
    dst[key][pos] = v[take]


def _keep(
    plan: Plan, c: dict[str, Any], ev: dict[str, Any], n_src: np.ndarray, n_bkg: np.ndarray,
    lo: int, done: np.ndarray, params: dict[str, np.ndarray], src: dict[str, np.ndarray],
    cols: dict[str, np.ndarray], stored: dict[int, list[Any]], piled: dict[int, np.ndarray],
    var: dict[str, np.ndarray],
) -> None:  # fmt: skip
    """Fill each slot of candidates ``c`` with its first detection (in place)."""
    n = done.size
    sig = snr(n_src, n_bkg, c["ratio"])
    ok = np.ones(sig.size, bool) if plan.brightness == "counts" else sig >= plan.snr_min
    # The first detected candidate of each slot (candidates of a slot are adjacent).
    first = np.flatnonzero(ok)
    _, pick = np.unique(c["slots"][first], return_index=True)
    take = first[pick]
    pos = c["slots"][take] - lo
    done[pos] = True
    values = {"scale": ev["scale"], "exposure_s": c["exposure_s"], "ratio": c["ratio"],
              "area_arcsec2": c["area_arcsec2"], "sky_scale": c["sky_scale"],
              "gidx": c["gidx"], "lam": ev["lam"], "n_src_b": n_src, "n_bkg_b": n_bkg,
              "snr_b": sig, "counts_ref_b": ev["counts_ref_b"]}  # fmt: skip
    for key, v in values.items():
        src[key][pos] = v[take]
    for key, v in c["params"].items():
        params.setdefault(key, np.full(n, np.nan))[pos] = v[take]
    for key, v in c["cols"].items():
        _put(cols, key, v, pos, take, n)
    for f in fields(c["var"]):
        _put(var, f.name, getattr(c["var"], f.name), pos, take, n)
    for j in take:
        if int(j) in ev["piled"]:
            piled[int(c["slots"][j]) - lo] = ev["piled"][int(j)]
    for gi, (rows, res) in ev["res"].items():
        sel = np.flatnonzero(np.isin(rows, take))
        if sel.size:
            area = ev["area"][gi]
            stored.setdefault(gi, []).append((
                c["slots"][rows[sel]], {key: v[sel] for key, v in res.items()},
                None if area is None else area[sel],
            ))  # fmt: skip
