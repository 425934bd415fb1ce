"""The effective area a grid bin of *counts* sees: the ARF folded through the RMF.

Counts are binned on the grid by their channel energies (EBOUNDS); the ARF is a function of
the photon's true energy. The plain average of the ARF over a grid bin is the right area only
where the RMF is a delta function. Where the area changes fast (the mirror's Ir M edges near
2 keV, the detector's Si K edge at 1.84 keV, the contaminant's C K and O K edges, the ends of
the band) or where the RMF has low-energy tails and centroid shifts (real ACIS RMFs, which
change with the chip and the epoch), the counts in a bin come from photons of other energies.

The folded area is the counts a reference spectrum (a power law of photon index
:data:`REFERENCE_GAMMA`) puts in each channel-energy grid bin, divided by the reference
photons whose true energy lies in that bin: ``A_g = sum_E ARF(E) f(E) R(E -> g) / sum_{E in g}
f(E)`` (cm^2). For a spectrum shaped like the reference it is exact: counts_g = exposure x
photon flux in g x A_g. This is the response the model multiplies into a photon shape, so
the redistribution the model is not told about is what the RMF does to a spectrum *unlike*
the reference, not the whole of it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from xlatent.core.grid import EnergyGrid, overlap_matrix
from xlatent.instrument.response import RMF

__all__ = [
    "REFERENCE_GAMMA",
    "fold_operator",
    "folded_area",
    "photons_per_grid_bin",
    "reference_photons",
]

#: Photon index of the reference power law (a typical CSC source, Chandra POG ch. 6).
REFERENCE_GAMMA = 1.7


def reference_photons(energ_lo: np.ndarray, energ_hi: np.ndarray) -> np.ndarray:
    """Reference power-law photons in each RMF energy bin (arbitrary normalisation)."""
    lo = np.asarray(energ_lo, dtype=np.float64)
    hi = np.asarray(energ_hi, dtype=np.float64)
    centre = np.maximum(0.5 * (lo + hi), 1e-3)  # some RMFs start at 0 keV
    return centre**-REFERENCE_GAMMA * (hi - lo)


def photons_per_grid_bin(
    energ_lo: np.ndarray, energ_hi: np.ndarray, grid: EnergyGrid
) -> np.ndarray:
    """Reference photons whose true energy lies in each grid bin (m,)."""
    photons = reference_photons(energ_lo, energ_hi)
    return np.asarray(overlap_matrix(energ_lo, energ_hi, grid.edges_kev).T @ photons).ravel()


def _inverse(x: np.ndarray) -> np.ndarray:
    return np.divide(1.0, x, out=np.zeros_like(x), where=x > 0)


def fold_operator(rmf: RMF, grid: EnergyGrid) -> sp.csr_matrix:
    """Sparse (n_energy, m): ``specresp @ op`` is the folded area (m,) on ``grid`` of an ARF
    on ``rmf``'s energy bins. Grid bins with no reference photons (outside the RMF's energy
    range) get 0. For many ARFs through one RMF (the simulator's chip groups)."""
    photons = reference_photons(rmf.energ_lo, rmf.energ_hi)
    to_grid = rmf.matrix.tocsr() @ overlap_matrix(rmf.e_min, rmf.e_max, grid.edges_kev)
    scale = _inverse(photons_per_grid_bin(rmf.energ_lo, rmf.energ_hi, grid))
    return (sp.diags(photons) @ to_grid @ sp.diags(scale)).tocsr()


def folded_area(
    specresp: np.ndarray,
    rmf: RMF,
    grid: EnergyGrid,
    *,
    channel_matrix: sp.spmatrix | None = None,
    in_bin: np.ndarray | None = None,
) -> np.ndarray:
    """Folded effective area (cm^2) on ``grid``: (m,) for one ARF, (n, m) for (n, n_energy)
    rows (each its own ARF on ``rmf``'s energy bins). ``channel_matrix`` (the RMF's channels
    onto the grid, :func:`~xlatent.core.grid.overlap_matrix` of its EBOUNDS) and ``in_bin``
    (:func:`photons_per_grid_bin`) may be passed when cached: a CSC archive has one RMF per
    detection but one set of EBOUNDS and energy bins for thousands."""
    a = np.asarray(specresp, dtype=np.float64)
    if channel_matrix is None:
        channel_matrix = overlap_matrix(rmf.e_min, rmf.e_max, grid.edges_kev)
    if in_bin is None:
        in_bin = photons_per_grid_bin(rmf.energ_lo, rmf.energ_hi, grid)
    counts = np.atleast_2d(a) * reference_photons(rmf.energ_lo, rmf.energ_hi)
    # Sparse products only: a dense BLAS product's rounding of a row depends on how many rows
    # it is given, so a block of sources would get other areas than the whole set.
    chan = (rmf.matrix.T @ counts.T).T
    out = np.asarray((channel_matrix.T @ np.asarray(chan).T).T) * _inverse(in_bin)
    return out[0] if a.ndim == 1 else out
