"""Collisional-ionisation-equilibrium plasma: continuum and line emissivities versus kT.

The table ``data/plasma_lines.npz`` is built by ``tools/build_plasma_lines.py`` from the
CHIANTI v11.0.2 per-ion line (bound-bound), free-free and free-bound powers and CIE ion
fractions (see that script for the inputs, the line recipe and the citations). Per unit
emission measure n_e n_H it holds, on a log-T grid (kT 0.054-86 keV):

- photon emissivities of ~60 X-ray lines and line complexes of C, N, O, Ne, Mg, Si, S, Ar,
  Ca and Fe at solar (Anders & Grevesse 1989) abundance: they scale with the metal
  abundance Z;
- the bolometric continuum power of H + He (independent of Z) and of the metals (∝ Z), given
  the shape of thermal bremsstrahlung with the Born Gaunt factor (:func:`models.bremsstrahlung`).

Lines are unresolved at ACIS resolution (the Fe L complex is a handful of lines per 0.1 keV
that the RMF blends), so the simulator deposits them into energy bins.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
from scipy.special import k0e

#: ∫_0^∞ g_ff(u) e^{-u} du with the Born Gaunt factor = 2√3/π (∫_0^∞ e^{-x} K0(x) dx = 1):
#: the bolometric power of ``bremsstrahlung(e, kT, norm)`` is norm · G · sqrt(kT).
GAUNT_INTEGRAL = 2.0 * np.sqrt(3.0) / np.pi


@lru_cache(maxsize=1)
def table() -> dict[str, np.ndarray]:
    """The shipped plasma table (read once, arrays read-only)."""
    ref = resources.files("xlatent.physics") / "data" / "plasma_lines.npz"
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    for v in out.values():
        v.setflags(write=False)
    return out


def line_energies_kev() -> np.ndarray:
    """Energies (n_lines,) of the tabulated lines (keV, increasing)."""
    return table()["line_energy_kev"]


def _interp_log(kt_kev: np.ndarray, values: np.ndarray, tab: dict[str, np.ndarray]) -> np.ndarray:
    """Log-log interpolation of ``values`` (n_t, ...) at ``kt_kev`` (clipped to the grid)."""
    log_kt = np.log(np.clip(np.asarray(kt_kev, dtype=np.float64), *tab["kt_kev"][[0, -1]]))
    grid = np.log(tab["kt_kev"])
    i = np.clip(np.searchsorted(grid, log_kt) - 1, 0, grid.size - 2)
    w = (log_kt - grid[i]) / (grid[i + 1] - grid[i])
    logv = np.log(np.maximum(values, 1e-300))
    w = w.reshape(w.shape + (1,) * (values.ndim - 1))
    return np.exp((1.0 - w) * logv[i] + w * logv[i + 1])


def plasma_emission(
    kt_kev: np.ndarray, abundance: np.ndarray | float, tab: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per unit emission measure: bremsstrahlung norm (n,) and line photon emissivities
    (n, n_lines) for temperatures ``kt_kev`` and metal abundances ``abundance`` (solar = 1).

    ``models.bremsstrahlung(e, kt, norm)`` with this norm gives the continuum photon density.
    """
    tab = table() if tab is None else tab
    kt = np.atleast_1d(np.asarray(kt_kev, dtype=np.float64))
    z = np.broadcast_to(np.asarray(abundance, dtype=np.float64), kt.shape)
    cont = _interp_log(kt, tab["cont_hhe"], tab) + z * _interp_log(kt, tab["cont_metal"], tab)
    norm = cont / (GAUNT_INTEGRAL * np.sqrt(kt))
    lines = z[:, None] * _interp_log(kt, tab["line_emissivity"], tab)
    return norm, lines


def line_fraction_reference(
    kt_kev: float,
    abundance: float,
    tab: dict[str, np.ndarray] | None = None,
    band_kev: tuple[float, float] = (0.5, 2.0),
) -> float:
    """Share of the band's energy flux carried by lines, from the table alone (a fine
    analytic integration of the continuum, independent of any response grid)."""
    tab = table() if tab is None else tab
    norm, lines = plasma_emission(np.array([kt_kev]), abundance, tab)
    e = np.linspace(*band_kev, 20001)
    u = e / kt_kev
    cont_energy = norm[0] * np.sqrt(3.0) / np.pi * k0e(0.5 * u) * np.exp(-u) / np.sqrt(kt_kev)
    cont = float(np.sum(0.5 * (cont_energy[1:] + cont_energy[:-1]) * np.diff(e)))
    le = tab["line_energy_kev"]
    inside = (le >= band_kev[0]) & (le < band_kev[1])
    line = float(lines[0, inside] @ le[inside])
    return line / (line + cont)
