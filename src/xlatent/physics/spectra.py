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
from xlatent.core.grid import EnergyGrid, bin_average, overlap_matrix
from xlatent.instrument import Response, acis_fwhm_kev
from xlatent.physics import models as m
from xlatent.physics.absorption import cross_section_cm2
from xlatent.physics.priors import COMPONENTS

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
        self.area_grid = bin_average(self.response.specresp, rmf.energ_lo, rmf.energ_hi, self.grid)
        broad = self.grid.band_mask(*COUNTS_BAND_KEV)
        self.broad_grid = broad.astype(np.float64)
        #: Expected 0.5-7 keV grid counts per photon in each energy bin (this response).
        self.broad_per_photon = self.resp_grid @ self.broad_grid
        self.bkg_particle = particle_template(rmf.e_min, rmf.e_max, self.w_grid, self.broad_grid)
        self.halo_bins, self.cxb_bins = self._sky_components()
        self.j_fe = int(np.argmin(np.abs(self.sub.energy_kev - FE_KA_KEV)))

    def _sky_components(self) -> tuple[np.ndarray, np.ndarray]:
        """Photon flux per energy bin of the sky background's two parts (arbitrary units):
        a 0.2 keV Galactic halo plasma and the CXB power law (Gamma 1.4), both behind a
        3e20 cm^-2 column. Folded through a response they give the sky's spectral shape."""
        e = self.sub.energy_kev
        halo = m.bremsstrahlung(e, np.array([0.2]))
        line_e = np.array([ln[1] for ln in m.PLASMA_LINES])
        halo_lines = m.narrow_lines_to_bins(
            self.sub.edges_kev,
            line_e,
            m.plasma_line_ew_kev(np.array([0.2])) * m.bremsstrahlung(line_e, np.array([0.2])),
        )
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


def model_spectra(params: dict[str, np.ndarray], f: Folder) -> dict[str, np.ndarray]:
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
