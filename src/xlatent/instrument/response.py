"""The instrument as data: ARF, RMF and a Response that folds photon fluxes into counts.

Neither I/O nor physics: :mod:`xlatent.io.ogip_response` reads OGIP files into these objects,
:mod:`xlatent.instrument.acis` builds the built-in ACIS-S response, and the simulator folds
model spectra through either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from xlatent.core.errors import InputError


@dataclass(frozen=True, eq=False)
class ARF:
    """Ancillary response: effective area (cm^2) on true-energy bins (keV)."""

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    specresp: np.ndarray
    path: str = ""


@dataclass(frozen=True, eq=False)
class RMF:
    """Redistribution matrix: P(channel | true energy), with channel energy bounds.

    ``matrix`` is a sparse (n_energy, n_channel) CSR matrix; column ``j`` is channel
    ``first_channel + j``. ``e_min``/``e_max`` are the EBOUNDS nominal channel energies (keV).
    """

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    matrix: sp.csr_matrix
    e_min: np.ndarray
    e_max: np.ndarray
    first_channel: int = 1
    path: str = ""

    @property
    def n_channels(self) -> int:
        return self.e_min.size


@dataclass(frozen=True, eq=False)
class Response:
    """An ARF on an RMF's energy grid: folds photon fluxes into expected channel counts.

    ``pha_path``: the spectrum the response was made for, when known (its headers say which
    CCD the source fell on and where, which a multi-chip ARF does not).
    """

    arf: ARF | None
    rmf: RMF
    pha_path: str = ""

    def __post_init__(self) -> None:
        if self.arf is not None and self.arf.specresp.size != self.rmf.energ_lo.size:
            raise InputError(
                self.arf.path,
                f"ARF has {self.arf.specresp.size} energy bins but RMF {self.rmf.path} has "
                f"{self.rmf.energ_lo.size}",
            )

    @property
    def specresp(self) -> np.ndarray:
        """Effective area per RMF energy bin (1 when the RMF already includes it)."""
        if self.arf is None:
            return np.ones(self.rmf.energ_lo.size)
        return self.arf.specresp

    def fold(self, photon_flux: np.ndarray, exposure_s: np.ndarray | float) -> np.ndarray:
        """Expected counts per channel.

        ``photon_flux`` is photons cm^-2 s^-1 integrated over each RMF energy bin, shape
        (n_energy,) or (n_sources, n_energy); ``exposure_s`` scalar or (n_sources,).
        """
        flux = np.atleast_2d(np.asarray(photon_flux, dtype=np.float64))
        exp = np.asarray(exposure_s, dtype=np.float64).reshape(-1, 1)
        rate = flux * self.specresp[None, :] * exp
        out = np.asarray((self.rmf.matrix.T @ rate.T).T)
        return out[0] if np.ndim(photon_flux) == 1 else out


def specresp_on(arf: ARF, rmf: RMF) -> np.ndarray:
    """``arf``'s area on ``rmf``'s energy bins: its own where the bins are the same, else
    interpolated at the RMF's bin centres (0 outside the ARF's range)."""
    if arf.energ_lo.size == rmf.energ_lo.size and np.allclose(arf.energ_lo, rmf.energ_lo):
        return arf.specresp
    mid = 0.5 * (rmf.energ_lo + rmf.energ_hi)
    own = 0.5 * (arf.energ_lo + arf.energ_hi)
    return np.interp(mid, own, arf.specresp, left=0.0, right=0.0)


def line_core(rmf: RMF, energy_kev: float) -> tuple[float, float]:
    """(centroid, FWHM) in keV of the RMF's row nearest ``energy_kev``: the half-maximum
    crossings about the peak, each interpolated linearly between channels; the centroid is
    their midpoint (a line's core, not its mean: low-energy tails do not move it)."""
    centre = 0.5 * (rmf.energ_lo + rmf.energ_hi)
    chan = 0.5 * (rmf.e_min + rmf.e_max)
    row = rmf.matrix.getrow(int(np.argmin(np.abs(centre - energy_kev)))).toarray()[0]
    pk, half = int(row.argmax()), row.max() / 2
    lo, hi = pk, pk
    while lo > 0 and row[lo] > half:
        lo -= 1
    while hi < row.size - 1 and row[hi] > half:
        hi += 1
    left = float(np.interp(half, [row[lo], row[lo + 1]], [chan[lo], chan[lo + 1]]))
    right = float(np.interp(half, [row[hi], row[hi - 1]], [chan[hi], chan[hi - 1]]))
    return 0.5 * (left + right), right - left
