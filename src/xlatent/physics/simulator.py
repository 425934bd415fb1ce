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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from xlatent.core.bands import CSC_BANDS_KEV
from xlatent.core.grid import EnergyGrid, bin_average, overlap_matrix
from xlatent.core.spectrumset import SpectrumSet
from xlatent.instrument import Response, acis_fwhm_kev, default_response
from xlatent.physics import models as m
from xlatent.physics.absorption import DEFAULT_ABUNDANCES, cross_section_cm2
from xlatent.physics.priors import (
    CLASSES,
    COMPONENTS,
    PRIORS,
    TD_CLASS_COUNTS,
    sample_parameters,
    sample_variability,
)

BAND_CODES = ("s", "m", "h", "b")
#: Broad band (keV) in which ``counts_range`` is defined (the CSC broad band).
COUNTS_BAND_KEV = CSC_BANDS_KEV["b"]
FE_KA_KEV = 6.4
#: ACIS-S quiescent background surface brightness in 0.5-7 keV (counts s^-1 arcsec^-2):
#: particle ~1.0e-6 and sky (Galactic halo + unresolved CXB) ~0.5e-6, i.e. ~0.4 counts/s on S3.
PARTICLE_RATE = 1.0e-6
SKY_RATE = 0.5e-6
#: Size of one ACIS pixel (arcsec); BACKSCAL is written in pixels^2 like CIAO region areas.
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
        vc = pd.read_csv(td_path, usecols=["True_Class"])["True_Class"].value_counts()
        counts = {c: float(vc.get(c, 0)) for c in CLASSES}
    total = sum(counts.values())
    return {c: counts[c] / total for c in CLASSES}


@dataclass(eq=False)
class _Folder:
    """Everything that depends only on (response, grid): cached across chunks and calls."""

    response: Response
    grid: EnergyGrid
    n_sub: int
    abundances: str

    def __post_init__(self) -> None:
        rmf = self.response.rmf
        self.sub = m.SubGrid.from_bins(rmf.energ_lo, rmf.energ_hi, self.n_sub)
        e_pts = np.clip(self.sub.energy_kev, 0.1, 20.0)
        self.sigma_pts_1e22 = cross_section_cm2(e_pts, self.abundances) * 1e22
        # Energy-flux weights (keV per photon x keV width) of each band on the sub-samples.
        self.band_w = np.stack(
            [self.sub.band_weights(*CSC_BANDS_KEV[b]) * self.sub.energy_kev for b in BAND_CODES],
            axis=1,
        )
        self.resp = (sp.diags(self.response.specresp) @ rmf.matrix).tocsr()
        self.w_grid = overlap_matrix(rmf.e_min, rmf.e_max, self.grid.edges_kev).tocsr()
        self.resp_grid = np.asarray((self.resp @ self.w_grid).todense())
        self.area_grid = bin_average(self.response.specresp, rmf.energ_lo, rmf.energ_hi, self.grid)
        broad = self.grid.band_mask(*COUNTS_BAND_KEV)
        self.broad_grid = broad.astype(np.float64)
        self.bkg_particle, self.bkg_sky = self._background_templates()
        self.j_fe = int(np.argmin(np.abs(self.sub.energy_kev - FE_KA_KEV)))

    def _background_templates(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel background shapes, each normalised to 1 count in 0.5-7 keV on the grid."""
        rmf = self.response.rmf
        e_chan = 0.5 * (rmf.e_min + rmf.e_max)
        # Particle: flat in counts/keV, rising above ~7 keV, with the ACIS Au M (2.1 keV),
        # Ni K (7.47 keV) and Au L (9.7 keV) fluorescence lines; not focused by the mirrors.
        width = np.maximum(rmf.e_max - rmf.e_min, 1e-6)
        shape = 1.0 + np.exp((e_chan - 9.0) / 1.2)
        for e0, amp in ((2.12, 0.4), (7.47, 1.0), (9.71, 1.5)):
            sig = float(acis_fwhm_kev(e0)) / 2.3548
            shape = shape + amp * np.exp(-0.5 * ((e_chan - e0) / sig) ** 2)
        particle = np.where((e_chan > 0.2) & (e_chan < 13.0), shape * width, 0.0)
        # Sky: 0.2 keV Galactic halo plasma + CXB power law (Gamma 1.4), folded like a source.
        e = self.sub.energy_kev
        halo = m.bremsstrahlung(e, np.array([0.2]))
        halo_lines = m.narrow_lines_to_bins(
            self.sub.edges_kev,
            np.array([ln[1] for ln in m.PLASMA_LINES]),
            m.plasma_line_ew_kev(np.array([0.2]))
            * m.bremsstrahlung(np.array([ln[1] for ln in m.PLASMA_LINES]), np.array([0.2])),
        )
        cxb = m.powerlaw(e, np.array([1.4]))
        t_gal = np.exp(-0.03 * self.sigma_pts_1e22)[None, :]
        halo_bins = self.sub.integrate(halo * t_gal) + halo_lines
        cxb_bins = self.sub.integrate(cxb * t_gal)
        sky = []
        for comp in (halo_bins, cxb_bins):
            chan = np.asarray(self.resp.T @ comp[0])
            sky.append(chan / (chan @ self.w_grid @ self.broad_grid))
        sky_chan = 0.5 * sky[0] + 0.5 * sky[1]
        particle = particle / (particle @ self.w_grid @ self.broad_grid)
        return particle, sky_chan / (sky_chan @ self.w_grid @ self.broad_grid)


_FOLDERS: dict[tuple[int, int, int, str], _Folder] = {}


def _folder(response: Response, grid: EnergyGrid, n_sub: int, abundances: str) -> _Folder:
    key = (id(response), hash(grid), n_sub, abundances)
    f = _FOLDERS.get(key)
    if f is None or f.response is not response:
        f = _Folder(response, grid, n_sub, abundances)
        _FOLDERS[key] = f
    return f


def _unit_energy_flux(density: np.ndarray, f: _Folder) -> np.ndarray:
    """Unabsorbed 0.5-7 keV energy flux (keV cm^-2 s^-1) of densities (n, n_pts)."""
    return density @ f.band_w[:, 3]


def model_spectra(params: dict[str, np.ndarray], f: _Folder) -> dict[str, np.ndarray]:
    """Photon flux per RMF energy bin (absorbed) and band energy fluxes for parameter arrays.

    Normalised so that the primary component's unabsorbed 0.5-7 keV energy flux is 1 keV
    cm^-2 s^-1 (the caller rescales to the drawn counts). Returns ``photon_flux`` (n, n_e),
    ``flux_abs`` and ``flux_unabs`` (n, 4) in keV cm^-2 s^-1 for bands s, m, h, b, and
    ``frac_<component>`` (fractions of the unabsorbed 0.5-7 keV flux).
    """
    n = params["nh_1e22"].size
    e = f.sub.energy_kev
    n_pts = e.size
    cont_tot = np.zeros((n, n_pts))  # absorbed by the total column
    cont_gal = np.zeros((n, n_pts))  # absorbed by the Galactic column only
    line_e = np.array([ln[1] for ln in m.PLASMA_LINES])
    narrow = np.array([ln[2] == 0.0 for ln in m.PLASMA_LINES])
    line_flux = np.zeros((n, int(narrow.sum())))
    comp_flux: dict[str, np.ndarray] = {}

    def add(rows: np.ndarray, dens: np.ndarray, rel: np.ndarray, lines: np.ndarray | None,
            target: np.ndarray, name: str) -> None:  # fmt: skip
        unit = _unit_energy_flux(dens, f)
        if lines is not None:
            unit = unit + lines @ np.where(
                (line_e[narrow] >= COUNTS_BAND_KEV[0]) & (line_e[narrow] < COUNTS_BAND_KEV[1]),
                line_e[narrow],
                0.0,
            )
        scale = rel / unit
        target[rows] += dens * scale[:, None]
        if lines is not None:
            line_flux[rows] += lines * scale[:, None]
        comp_flux[name] = np.zeros(n)
        comp_flux[name][rows] = rel

    for comp in COMPONENTS:
        rel_all = params[f"rel_{comp}"]
        rows = np.flatnonzero(rel_all > 0)
        if rows.size == 0:
            continue
        rel = rel_all[rows]
        lines = None
        if comp in ("powerlaw", "scatter"):
            dens = m.powerlaw(e, params["gamma"][rows])
        elif comp == "bbody":
            dens = m.blackbody(e, params["kt_bb_kev"][rows])
        elif comp == "diskbb":
            dens = m.diskbb(e, params["kt_in_kev"][rows])
        else:  # plasma / plasma2: bremsstrahlung continuum + temperature-dependent lines
            kt = params["kt_kev" if comp == "plasma" else "kt2_kev"][rows]
            abund = params["abundance"][rows]
            dens = m.bremsstrahlung(e, kt)
            ew = m.plasma_line_ew_kev(kt, abund)
            cont_at_line = m.bremsstrahlung(line_e, kt)
            fl = ew * cont_at_line
            for j in np.flatnonzero(~narrow):
                dens = dens + m.gaussian_line(e, line_e[j], m.PLASMA_LINES[j][2], fl[:, j])
            lines = fl[:, narrow]
        add(rows, dens, rel, lines, cont_gal if comp == "scatter" else cont_tot, comp)

    # Fe Kα: EW against the unabsorbed continuum at 6.4 keV, absorbed by the total column.
    ew = params["fe_ka_ew_kev"]
    rows = np.flatnonzero(ew > 0)
    if rows.size:
        cont64 = cont_tot[rows, f.j_fe] + cont_gal[rows, f.j_fe]
        cont_tot[rows] += m.gaussian_line(
            e, FE_KA_KEV, params["fe_ka_sigma_kev"][rows], ew[rows] * cont64
        )

    t_tot = np.exp(-params["nh_1e22"][:, None] * f.sigma_pts_1e22[None, :])
    absorbed = cont_tot * t_tot
    gal_rows = np.flatnonzero(params["rel_scatter"] > 0)
    if gal_rows.size:
        t_gal = np.exp(-params["nh_gal_1e22"][gal_rows, None] * f.sigma_pts_1e22[None, :])
        absorbed[gal_rows] += cont_gal[gal_rows] * t_gal
    photon = f.sub.integrate(absorbed)
    flux_abs = absorbed @ f.band_w
    flux_unabs = (cont_tot + cont_gal) @ f.band_w
    if line_flux.size:
        le = line_e[narrow]
        sig = cross_section_cm2(le) * 1e22
        t_line = np.exp(-params["nh_1e22"][:, None] * sig[None, :])
        photon += m.narrow_lines_to_bins(f.sub.edges_kev, le, line_flux * t_line)
        in_band = np.stack(
            [((le >= CSC_BANDS_KEV[b][0]) & (le < CSC_BANDS_KEV[b][1])) * le for b in BAND_CODES],
            axis=1,
        )
        flux_abs += (line_flux * t_line) @ in_band
        flux_unabs += line_flux @ in_band
    total_rel = sum(comp_flux.values())
    out = {"photon_flux": photon, "flux_abs": flux_abs, "flux_unabs": flux_unabs}
    for comp in COMPONENTS:
        out[f"frac_{comp}"] = comp_flux.get(comp, np.zeros(n)) / total_rel
    return out


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
    progress: bool = False,
) -> SpectrumSet:
    """Simulate ``n`` CSC-like spectra (a :class:`SpectrumSet` with ``truth_*`` columns).

    ``class_mix``: ``"realistic"`` (CSC labelled-set proportions, from ``td_path`` if given)
    or ``"balanced"``. ``response``: an ``xlatent.instrument.Response`` (default: built-in
    on-axis ACIS-S). ``counts_range``: log-uniform expected 0.5-7 keV source counts.
    ``write_pha``: also write OGIP PHA/ARF/RMF files there (ingesting them gives this set).
    The same ``seed`` gives the same set, whatever ``chunk_size``.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    response = default_response() if response is None else response
    grid = EnergyGrid.default() if grid is None else grid
    f = _folder(response, grid, n_sub, abundances)
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
        priors="default" if priors is None or priors is PRIORS else "custom",
        spec_id_prefix=f"sim-{prefix}-",
    )
    if writer is not None:
        writer.close()
    return out
