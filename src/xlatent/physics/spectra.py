"""Source spectra of the simulated population, through one response onto one grid.

:class:`Folder` holds everything that depends only on (response, grid): sub-sampled energies,
cross-sections, the folded response on the grid and the ACIS-like background shapes;
:func:`model_spectra` turns arrays of model parameters (from :mod:`xlatent.physics.priors`)
into absorbed photon fluxes per response energy bin and band energy fluxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from xlatent.core.bands import CSC_BANDS_KEV
from xlatent.core.grid import EnergyGrid, overlap_matrix
from xlatent.instrument import Response, acis_fwhm_kev
from xlatent.instrument.folded_area import folded_area
from xlatent.physics import models as m
from xlatent.physics import plasma
from xlatent.physics.absorption import cross_section_cm2
from xlatent.physics.priors import COMPONENTS, REDSHIFT_LOG1PZ_STEP

BAND_CODES = ("s", "m", "h", "b")
#: Broad band (keV) in which ``counts_range`` is defined (the CSC broad band).
COUNTS_BAND_KEV = CSC_BANDS_KEV["b"]
FE_KA_KEV = 6.4
#: ACIS-S quiescent background surface brightness in 0.5-7 keV (counts s^-1 arcsec^-2):
#: particle ~1.0e-6 and sky (Galactic halo + unresolved CXB) ~0.5e-6, i.e. ~0.4 counts/s on S3.
PARTICLE_RATE = 1.0e-6
SKY_RATE = 0.5e-6


@dataclass(eq=False)
class Folder:
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
        self.area_grid = folded_area(self.response.specresp, rmf, self.grid)
        broad = self.grid.band_mask(*COUNTS_BAND_KEV)
        self.broad_grid = broad.astype(np.float64)
        #: Expected 0.5-7 keV grid counts per photon in each energy bin (this response).
        self.broad_per_photon = self.resp_grid @ self.broad_grid
        self.bkg_particle = particle_template(rmf.e_min, rmf.e_max, self.w_grid, self.broad_grid)
        line_e = plasma.line_energies_kev()
        self.sigma_lines_1e22 = cross_section_cm2(line_e, self.abundances) * 1e22
        #: Energy-flux weights (n_lines, 4) of the plasma lines in each band.
        self.line_band_w = np.stack(
            [((line_e >= CSC_BANDS_KEV[b][0]) & (line_e < CSC_BANDS_KEV[b][1])) * line_e
             for b in BAND_CODES],
            axis=1,
        )  # fmt: skip
        idx = np.searchsorted(self.sub.edges_kev, line_e, side="right") - 1
        inside = (idx >= 0) & (idx < self.sub.n_bins)
        #: Sparse deposit of line photon fluxes into their energy bins (n_lines, n_bins).
        self.line_deposit = sp.csr_matrix(
            (np.ones(int(inside.sum())), (np.flatnonzero(inside), idx[inside])),
            shape=(line_e.size, self.sub.n_bins),
        )
        self.sigma_z: dict[int, np.ndarray] = {}
        self.halo_bins, self.cxb_bins = self._sky_components()

    def line_matrix(self, line_flux: np.ndarray) -> np.ndarray:
        """Photons per energy bin (n, n_bins) of plasma line fluxes (n, n_lines)."""
        return np.asarray((self.line_deposit.T @ line_flux.T).T)

    def _sky_components(self) -> tuple[np.ndarray, np.ndarray]:
        """Photon flux per energy bin of the sky background's two parts (arbitrary units):
        a 0.2 keV Galactic halo plasma and the CXB power law (Gamma 1.4), both behind a
        3e20 cm^-2 column. Folded through a response they give the sky's spectral shape."""
        e = self.sub.energy_kev
        norm, lines = plasma.plasma_emission(np.array([0.2]), 1.0)
        halo = m.bremsstrahlung(e, np.array([0.2]), norm)
        halo_lines = self.line_matrix(lines * np.exp(-0.03 * self.sigma_lines_1e22))
        cxb = m.powerlaw(e, np.array([1.4]))
        t_gal = np.exp(-0.03 * self.sigma_pts_1e22)[None, :]
        halo_bins = self.sub.integrate(halo * t_gal) + halo_lines
        cxb_bins = self.sub.integrate(cxb * t_gal)
        return halo_bins[0], cxb_bins[0]


def particle_template(
    e_min_kev: np.ndarray, e_max_kev: np.ndarray, w_grid: sp.csr_matrix, broad_grid: np.ndarray
) -> np.ndarray:
    """Per-channel particle background shape, normalised to 1 count in 0.5-7 keV on the grid.

    Flat in counts/keV, rising above ~7 keV, with the ACIS Au M (2.1 keV), Ni K (7.47 keV)
    and Au L (9.7 keV) fluorescence lines; not focused by the mirrors, hence not vignetted."""
    e_chan = 0.5 * (e_min_kev + e_max_kev)
    width = np.maximum(e_max_kev - e_min_kev, 1e-6)
    shape = 1.0 + np.exp((e_chan - 9.0) / 1.2)
    for e0, amp in ((2.12, 0.4), (7.47, 1.0), (9.71, 1.5)):
        sig = float(acis_fwhm_kev(e0)) / 2.3548
        shape = shape + amp * np.exp(-0.5 * ((e_chan - e0) / sig) ** 2)
    particle = np.where((e_chan > 0.2) & (e_chan < 13.0), shape * width, 0.0)
    return particle / (particle @ w_grid @ broad_grid)


def sky_photon_flux(f: Folder, ref: Folder) -> np.ndarray:
    """Sky background photon flux per energy bin of ``f`` (half halo, half CXB in counts
    through the reference response ``ref``), scaled so that the reference response gives
    1 count s^-1 in 0.5-7 keV: folded through any area it gives that area's sky rate per unit
    of ``SKY_RATE``. Real responses on other energy bins share the normalisation."""
    halo_ref = float(ref.halo_bins @ ref.broad_per_photon)
    cxb_ref = float(ref.cxb_bins @ ref.broad_per_photon)
    return 0.5 * f.halo_bins / halo_ref + 0.5 * f.cxb_bins / cxb_ref


_FOLDERS: dict[tuple[int, int, int, str], Folder] = {}


def folder(response: Response, grid: EnergyGrid, n_sub: int, abundances: str) -> Folder:
    """The cached :class:`Folder` of (response, grid, sub-samples, abundances)."""
    key = (id(response), hash(grid), n_sub, abundances)
    f = _FOLDERS.get(key)
    if f is None or f.response is not response:
        f = Folder(response, grid, n_sub, abundances)
        _FOLDERS[key] = f
    return f


def _unit_energy_flux(density: np.ndarray, f: Folder) -> np.ndarray:
    """Unabsorbed 0.5-7 keV energy flux (keV cm^-2 s^-1) of densities (n, n_pts)."""
    return density @ f.band_w[:, 3]


#: Redshifts come quantised to this step in log10(1 + z) (priors), so the intrinsic
#: cross-section at E·(1 + z) is interpolated once per step and cached in the Folder.
LOG1PZ_STEP = REDSHIFT_LOG1PZ_STEP


def _sigma_redshifted(f: Folder, log1pz_idx: np.ndarray) -> np.ndarray:
    """Cross-sections (n, n_pts) in 1e-22 cm^2 at E·(1 + z) for quantised redshifts."""
    cache = f.sigma_z
    for k in np.unique(log1pz_idx):
        if k not in cache:
            e_rest = np.clip(f.sub.energy_kev * 10 ** (k * LOG1PZ_STEP), 0.1, 20.0)
            cache[int(k)] = cross_section_cm2(e_rest, f.abundances) * 1e22
    return (
        np.stack([cache[int(k)] for k in log1pz_idx])
        if log1pz_idx.size
        else np.zeros((0, f.sub.energy_kev.size))
    )


def _transmission(params: dict[str, np.ndarray], f: Folder) -> np.ndarray:
    """Absorption (n, n_pts) of the source emission: Galactic column at z = 0, the local
    column at the source redshift, and partial covering (fraction ``pc_frac`` behind
    ``nh_pc_1e22`` more, at the source)."""
    z = np.nan_to_num(params["redshift"], nan=0.0)
    tau = params["nh_gal_1e22"][:, None] * f.sigma_pts_1e22[None, :]
    rest = z <= 0
    tau[rest] += params["nh_int_1e22"][rest, None] * f.sigma_pts_1e22[None, :]
    rows = np.flatnonzero(~rest)
    if rows.size:
        k = np.rint(np.log10(1.0 + z[rows]) / LOG1PZ_STEP).astype(np.int64)
        tau[rows] += params["nh_int_1e22"][rows, None] * _sigma_redshifted(f, k)
    t = np.exp(-tau)
    pc = np.nan_to_num(params["pc_frac"], nan=0.0)
    rows = np.flatnonzero(pc > 0)
    if rows.size:  # partial coverers are Galactic sources (z = 0)
        t_pc = np.exp(-params["nh_pc_1e22"][rows, None] * f.sigma_pts_1e22[None, :])
        t[rows] *= 1.0 - pc[rows, None] * (1.0 - t_pc)
    return t


def _line_transmission(params: dict[str, np.ndarray], f: Folder) -> np.ndarray:
    """Absorption (n, n_lines) of the plasma lines (plasma sources are at z = 0), with the
    caller's abundance table."""
    sig = f.sigma_lines_1e22
    t = np.exp(-params["nh_1e22"][:, None] * sig[None, :])
    pc = np.nan_to_num(params["pc_frac"], nan=0.0)
    rows = np.flatnonzero(pc > 0)
    if rows.size:
        t_pc = np.exp(-params["nh_pc_1e22"][rows, None] * sig[None, :])
        t[rows] *= 1.0 - pc[rows, None] * (1.0 - t_pc)
    return t


def model_spectra(params: dict[str, np.ndarray], f: Folder) -> dict[str, np.ndarray]:
    """Photon flux per RMF energy bin (absorbed) and band energy fluxes for parameter arrays.

    Normalised so that the primary component's unabsorbed 0.5-7 keV energy flux is 1 keV
    cm^-2 s^-1 (the caller rescales to the drawn counts). Returns ``photon_flux`` (n, n_e),
    ``flux_abs`` and ``flux_unabs`` (n, 4) in keV cm^-2 s^-1 for bands s, m, h, b, and
    ``frac_<component>`` (fractions of the unabsorbed 0.5-7 keV flux).

    Sources with a ``redshift`` (AGN) are evaluated in their rest frame: observed energies
    E map to E·(1 + z) for the soft excess (its temperature appears divided by 1 + z), Fe Kα
    lies at 6.4/(1 + z) keV and the local column absorbs with σ(E·(1 + z)); the power law
    keeps its shape. The Galactic column absorbs at z = 0.
    """
    n = params["nh_1e22"].size
    e = f.sub.energy_kev
    n_pts = e.size
    z1 = 1.0 + np.nan_to_num(params["redshift"], nan=0.0)
    cont_src = np.zeros((n, n_pts))  # absorbed by the source's absorbers
    cont_gal = np.zeros((n, n_pts))  # absorbed by the Galactic column only
    line_e = plasma.line_energies_kev()
    line_flux = np.zeros((n, line_e.size))
    b_lines = (line_e >= COUNTS_BAND_KEV[0]) & (line_e < COUNTS_BAND_KEV[1])
    comp_flux: dict[str, np.ndarray] = {}

    def add(rows: np.ndarray, dens: np.ndarray, rel: np.ndarray, lines: np.ndarray | None,
            target: np.ndarray, name: str) -> None:  # fmt: skip
        unit = _unit_energy_flux(dens, f)
        if lines is not None:
            unit = unit + lines @ np.where(b_lines, line_e, 0.0)
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
            dens = m.blackbody(e, params["kt_bb_kev"][rows] / z1[rows])
        elif comp == "diskbb":
            dens = m.diskbb(e, params["kt_in_kev"][rows])
        else:  # plasma / plasma2: CIE continuum + lines from the CHIANTI-based table
            kt = params["kt_kev" if comp == "plasma" else "kt2_kev"][rows]
            norm, lines = plasma.plasma_emission(kt, params["abundance"][rows])
            dens = m.bremsstrahlung(e, kt, norm)
        add(rows, dens, rel, lines, cont_gal if comp == "scatter" else cont_src, comp)

    # Fe Kα: EW (rest frame) against the unabsorbed continuum at 6.4/(1 + z) keV.
    ew = params["fe_ka_ew_kev"]
    rows = np.flatnonzero(ew > 0)
    if rows.size:
        center = FE_KA_KEV / z1[rows]
        j = np.clip(np.searchsorted(e, center), 0, n_pts - 1)
        cont64 = cont_src[rows, j] + cont_gal[rows, j]
        # EW_obs = EW_rest / (1 + z), sigma likewise.
        cont_src[rows] += m.gaussian_line(
            e,
            center,
            params["fe_ka_sigma_kev"][rows] / z1[rows],
            ew[rows] / z1[rows] * cont64,
        )

    absorbed = cont_src * _transmission(params, f)
    gal_rows = np.flatnonzero(params["rel_scatter"] > 0)
    if gal_rows.size:
        t_gal = np.exp(-params["nh_gal_1e22"][gal_rows, None] * f.sigma_pts_1e22[None, :])
        absorbed[gal_rows] += cont_gal[gal_rows] * t_gal
    photon = f.sub.integrate(absorbed)
    flux_abs = absorbed @ f.band_w
    flux_unabs = (cont_src + cont_gal) @ f.band_w
    rows = np.flatnonzero(line_flux.any(axis=1))
    if rows.size:
        sub = {k: v[rows] for k, v in params.items() if isinstance(v, np.ndarray)}
        lf = line_flux[rows]
        lf_abs = lf * _line_transmission(sub, f)
        photon[rows] += f.line_matrix(lf_abs)
        flux_abs[rows] += lf_abs @ f.line_band_w
        flux_unabs[rows] += lf @ f.line_band_w
    total_rel = sum(comp_flux.values())
    out = {"photon_flux": photon, "flux_abs": flux_abs, "flux_unabs": flux_unabs}
    for comp in COMPONENTS:
        out[f"frac_{comp}"] = comp_flux.get(comp, np.zeros(n)) / total_rel
    return out
