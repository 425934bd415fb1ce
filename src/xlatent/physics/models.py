"""Vectorised X-ray spectral models.

Every model evaluates a photon flux *density* dN/dE (photons cm^-2 s^-1 keV^-1) for ``n``
sources at once: parameters are arrays of shape (n,), energies (n_pts,), results (n, n_pts).
:class:`SubGrid` integrates densities over energy bins by sub-sampling each bin (midpoint rule
on ``n_sub`` equal sub-bins), giving photons cm^-2 s^-1 per bin. Lines much narrower than the
bins (all thermal lines, narrow Fe K) are deposited exactly into the bin containing them.
The collisional plasma's continuum and line emissivities are in :mod:`xlatent.physics.plasma`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import k0e

KEV_TO_ERG = 1.602176634e-9


def _col(x: np.ndarray | float) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=np.float64))[:, None]


@dataclass(frozen=True, eq=False)
class SubGrid:
    """Sub-sampling points inside contiguous energy bins (edges in keV)."""

    edges_kev: np.ndarray
    n_sub: int = 2

    @classmethod
    def from_bins(cls, lo_kev: np.ndarray, hi_kev: np.ndarray, n_sub: int = 2) -> SubGrid:
        """From an RMF's ENERG_LO/ENERG_HI (must be contiguous)."""
        lo = np.asarray(lo_kev, dtype=np.float64)
        hi = np.asarray(hi_kev, dtype=np.float64)
        if not np.allclose(lo[1:], hi[:-1], rtol=1e-6, atol=0):
            raise ValueError("energy bins are not contiguous")
        return cls(np.append(lo, hi[-1]), n_sub)

    def __post_init__(self) -> None:
        edges = np.asarray(self.edges_kev, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("bin edges must be increasing")
        object.__setattr__(self, "edges_kev", edges)
        frac = (np.arange(self.n_sub) + 0.5) / self.n_sub
        lo, width = edges[:-1], np.diff(edges)
        energy = (lo[:, None] + width[:, None] * frac[None, :]).ravel()
        object.__setattr__(self, "energy_kev", energy)
        object.__setattr__(self, "sub_width_kev", np.repeat(width / self.n_sub, self.n_sub))

    energy_kev: np.ndarray = None  # type: ignore[assignment]
    sub_width_kev: np.ndarray = None  # type: ignore[assignment]

    @property
    def n_bins(self) -> int:
        return self.edges_kev.size - 1

    @property
    def centers_kev(self) -> np.ndarray:
        return 0.5 * (self.edges_kev[:-1] + self.edges_kev[1:])

    def integrate(self, density: np.ndarray) -> np.ndarray:
        """Photons per bin from a density (n, n_bins * n_sub) at :attr:`energy_kev`."""
        d = np.asarray(density) * self.sub_width_kev
        return d.reshape(d.shape[0], self.n_bins, self.n_sub).sum(axis=2)

    def band_weights(self, lo_kev: float, hi_kev: float) -> np.ndarray:
        """Weights (n_bins * n_sub,) of sub-samples inside [lo, hi) for band sums."""
        e = self.energy_kev
        return ((e >= lo_kev) & (e < hi_kev)).astype(np.float64) * self.sub_width_kev


# --------------------------------------------------------------------------- continua
def powerlaw(
    energy_kev: np.ndarray, gamma: np.ndarray, norm: np.ndarray | float = 1.0
) -> np.ndarray:
    """norm * E^-gamma (norm: photons cm^-2 s^-1 keV^-1 at 1 keV)."""
    log_e = np.log(np.asarray(energy_kev, dtype=np.float64))[None, :]
    return _col(norm) * np.exp(-_col(gamma) * log_e)


def powerlaw_bin_integral(
    edges_kev: np.ndarray, gamma: np.ndarray, norm: np.ndarray | float = 1.0
) -> np.ndarray:
    """Exact integral of :func:`powerlaw` over bins (photons cm^-2 s^-1 per bin)."""
    e = np.asarray(edges_kev, dtype=np.float64)[None, :]
    g = _col(gamma)
    one_minus = 1.0 - g
    with np.errstate(divide="ignore", invalid="ignore"):
        prim = np.where(
            np.abs(one_minus) > 1e-12,
            e**one_minus / np.where(one_minus == 0, 1, one_minus),
            np.log(e),
        )
    return _col(norm) * np.diff(prim, axis=1)


def blackbody(
    energy_kev: np.ndarray, kt_kev: np.ndarray, norm: np.ndarray | float = 1.0
) -> np.ndarray:
    """Planck photon spectrum norm * E^2 / (exp(E/kT) - 1) (XSPEC ``bbodyrad`` shape)."""
    e = np.asarray(energy_kev, dtype=np.float64)[None, :]
    x = np.minimum(e / _col(kt_kev), 700.0)
    return _col(norm) * e**2 / np.expm1(x)


def _diskbb_table() -> tuple[np.ndarray, np.ndarray]:
    # Multicolour disk: T(r) ∝ r^-3/4 gives dN/dE ∝ ∫_0^1 t^(-11/3) E^2/(exp(E/(t kT_in))-1) dt
    # (Mitsuda et al. 1984), a function of x = E/kT_in only; tabulate it once in log-log.
    x = np.geomspace(1e-4, 80.0, 1500)
    t = np.geomspace(1e-4, 1.0, 4000)
    xt = np.minimum(x[:, None] / t[None, :], 700.0)
    integrand = t[None, :] ** (-11.0 / 3.0) * x[:, None] ** 2 / np.expm1(xt)
    f = np.trapezoid(integrand, t, axis=1)
    return np.log(x), np.log(np.maximum(f, 1e-300))


_DISKBB = _diskbb_table()


def diskbb(
    energy_kev: np.ndarray, kt_in_kev: np.ndarray, norm: np.ndarray | float = 1.0
) -> np.ndarray:
    """Multicolour accretion-disk blackbody (``diskbb`` shape), inner temperature ``kt_in_kev``."""
    e = np.asarray(energy_kev, dtype=np.float64)[None, :]
    kt = _col(kt_in_kev)
    x = np.clip(e / kt, 1.0001e-4, 80.0)
    shape = np.exp(np.interp(np.log(x), *_DISKBB))
    # Beyond the table the Wien tail of the innermost annulus dominates.
    tail = e / kt > 80.0
    if np.any(tail):
        shape = np.where(tail, 0.0, shape)
    return _col(norm) * kt**2 * shape


#: ln(u) grid of the tabulated Gaunt factor (u = E/kT from 1e-7 to 2e3; beyond, clamped).
_GAUNT_LN_U = np.linspace(np.log(1e-7), np.log(2e3), 20001)
_GAUNT_TABLE = np.sqrt(3.0) / np.pi * k0e(0.5 * np.exp(_GAUNT_LN_U))


def gaunt_ff(energy_kev: np.ndarray, kt_kev: np.ndarray) -> np.ndarray:
    """Maxwell-averaged free-free Gaunt factor in the Born approximation.

    g = sqrt(3)/pi * exp(u/2) K0(u/2), u = E/kT (Rybicki & Lightman 1979, eq. 5.17 averaged),
    interpolated linearly in ln u on a table (relative error < 1e-7): Bessel functions on
    every (source, energy) point cost a fifth of the whole simulator.
    """
    lo, step = _GAUNT_LN_U[0], _GAUNT_LN_U[1] - _GAUNT_LN_U[0]
    ln_e = np.log(np.asarray(energy_kev, dtype=np.float64))[None, :]
    x = (ln_e - np.log(_col(kt_kev)) - lo) / step
    np.clip(x, 0.0, _GAUNT_LN_U.size - 1.0001, out=x)
    i = x.astype(np.intp)
    x -= i
    g0 = _GAUNT_TABLE[i]
    return g0 + (_GAUNT_TABLE[i + 1] - g0) * x


def bremsstrahlung(
    energy_kev: np.ndarray, kt_kev: np.ndarray, norm: np.ndarray | float = 1.0
) -> np.ndarray:
    """Thermal bremsstrahlung photon spectrum norm * g(E,T) kT^-1/2 E^-1 exp(-E/kT)."""
    e = np.asarray(energy_kev, dtype=np.float64)[None, :]
    kt = _col(kt_kev)
    u = np.minimum(e / kt, 700.0)
    return _col(norm) * gaunt_ff(energy_kev, kt_kev) * np.exp(-u) / (e * np.sqrt(kt))


def gaussian_line(
    energy_kev: np.ndarray,
    center_kev: np.ndarray | float,
    sigma_kev: np.ndarray | float,
    flux: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Gaussian line density with total photon flux ``flux`` (photons cm^-2 s^-1)."""
    e = np.asarray(energy_kev, dtype=np.float64)[None, :]
    s = _col(sigma_kev)
    z = (e - _col(center_kev)) / s
    return _col(flux) * np.exp(-0.5 * z * z) / (np.sqrt(2.0 * np.pi) * s)


def narrow_lines_to_bins(
    edges_kev: np.ndarray, line_energy_kev: np.ndarray, line_flux: np.ndarray
) -> np.ndarray:
    """Deposit lines of zero width into bins: (n, n_lines) fluxes -> (n, n_bins) photons/bin."""
    edges = np.asarray(edges_kev, dtype=np.float64)
    flux = np.atleast_2d(np.asarray(line_flux, dtype=np.float64))
    idx = np.searchsorted(edges, np.asarray(line_energy_kev, dtype=np.float64), side="right") - 1
    out = np.zeros((flux.shape[0], edges.size - 1))
    inside = (idx >= 0) & (idx < edges.size - 1)
    np.add.at(out, (slice(None), idx[inside]), flux[:, inside])
    return out
