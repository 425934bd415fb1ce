"""Folding simulated sources through many responses: family members and real ARF/RMF pairs.

A simulated set is folded in *groups* of sources that share an RMF:

- :class:`ChipGroup`: members of the parameterised ACIS family of one chip type
  (:mod:`xlatent.instrument.family`). They share the chip's RMF and the built-in response's
  energy bins, but every source has its own effective area (chip, date, off-axis angle):
  ``(photon_flux x area_i) @ RMF`` per chunk, one dense x sparse product.
- :class:`ResponseGroup`: one fixed :class:`~xlatent.instrument.Response` (the ``response``
  option, or one real pair of ``responses``), folded with the per-response
  :class:`~xlatent.physics.spectra.Folder` on its own energy bins.

Both give, per source, the expected channel rate per unit model normalisation, the rate the
same source would give through the reference (built-in) response (which sets its flux), the
sky background through the source's own area, and its area folded through the RMF onto the
grid bins (:mod:`xlatent.instrument.folded_area`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from xlatent.core.errors import InputError
from xlatent.core.grid import EnergyGrid, overlap_matrix
from xlatent.instrument import Response, default_response
from xlatent.instrument.family import (
    BUILTIN_EPOCH_YEAR,
    chip_rmf,
    effective_area_cm2,
    response_id,
)
from xlatent.instrument.folded_area import fold_operator
from xlatent.io.response_context import response_context as read_response_context
from xlatent.physics.observation import date_obs
from xlatent.physics.spectra import (
    COUNTS_BAND_KEV,
    Folder,
    folder,
    model_spectra,
    particle_template,
    sky_photon_flux,
)


@dataclass
class Folded:
    """One group's sources of one chunk, folded (rates per unit model normalisation)."""

    rows: np.ndarray  # positions in the chunk
    res: dict[str, np.ndarray]  # model_spectra output: fluxes and component fractions
    chan_unit: np.ndarray  # (k, n_chan) expected counts/s per PI channel
    rate_ref: np.ndarray  # (k,) 0.5-7 keV counts/s through the reference response
    sky_chan: np.ndarray  # (k, n_chan) or (n_chan,): sky counts/s/arcsec^2 per unit SKY_RATE
    particle: np.ndarray  # (n_chan,) particle background shape, 1 count in 0.5-7 keV
    w_grid: sp.csr_matrix  # channel -> grid apportioning
    area_grid: np.ndarray  # (k, m) or (m,): effective area folded onto the grid bins
    arf_cm2: np.ndarray | None  # (k, n_e) per-source ARF (family members), else None


def _fold(x: np.ndarray, matrix: sp.csr_matrix) -> np.ndarray:
    """Rows of ``x`` (k, n_e) through a sparse (n_e, n_chan) matrix."""
    return np.asarray((matrix.T @ x.T).T)


class ResponseGroup:
    """Sources folded through one fixed response (its own energy bins and RMF)."""

    def __init__(self, response: Response, grid: EnergyGrid, n_sub: int, abundances: str) -> None:
        self.response = response
        self.f = folder(response, grid, n_sub, abundances)
        ref = folder(default_response(), grid, n_sub, abundances)
        rmf, ref_rmf = response.rmf, ref.response.rmf
        if rmf.energ_lo.size == ref_rmf.energ_lo.size and np.array_equal(
            rmf.energ_lo, ref_rmf.energ_lo
        ):
            self.broad_ref = ref.broad_per_photon
        else:  # counts per photon through the reference, at this response's bin centres
            c_ref = 0.5 * (ref_rmf.energ_lo + ref_rmf.energ_hi)
            c = 0.5 * (rmf.energ_lo + rmf.energ_hi)
            self.broad_ref = np.interp(c, c_ref, ref.broad_per_photon, left=0.0, right=0.0)
        self.sky_chan = np.asarray(self.f.resp.T @ sky_photon_flux(self.f, ref))
        self.n_channels = rmf.n_channels
        self.band = band_channels(rmf.e_min, rmf.e_max)
        self.resp_band = np.asarray(self.f.resp @ self.band.astype(np.float64)).ravel()
        self.resp_all = np.asarray(self.f.resp.sum(axis=1)).ravel()
        self.particle_b = float(self.f.bkg_particle[self.band].sum())
        self.sky_b = float(self.sky_chan[self.band].sum())

    def model(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return model_spectra(params, self.f)

    def area(self, epoch_year: np.ndarray, theta_arcmin: np.ndarray) -> None:
        return None  # one ARF for all

    def rates(self, res: dict[str, np.ndarray], area: None) -> dict[str, np.ndarray]:
        """Per unit normalisation: 0.5-7 keV PI-channel and all-channel source rates through
        this response, the reference rate, the 0.5-7 keV sky rate per unit ``SKY_RATE``."""
        photon = res["photon_flux"]
        k = photon.shape[0]
        return {"band": photon @ self.resp_band, "all": photon @ self.resp_all,
                "ref": photon @ self.broad_ref, "sky_band": np.full(k, self.sky_b)}  # fmt: skip

    def fold_model(self, rows: np.ndarray, res: dict[str, np.ndarray], area: None) -> Folded:
        photon = res["photon_flux"]
        return Folded(
            rows, res, _fold(photon, self.f.resp), photon @ self.broad_ref, self.sky_chan,
            self.f.bkg_particle, self.f.w_grid, self.f.area_grid, None,
        )  # fmt: skip

    def fold(self, rows: np.ndarray, params: dict[str, np.ndarray], **_: Any) -> Folded:
        return self.fold_model(rows, self.model(params), None)


class ChipGroup:
    """Family members of one chip type: the chip's RMF, each source's own effective area."""

    def __init__(self, chip_type: str, grid: EnergyGrid, n_sub: int, abundances: str) -> None:
        self.chip_type = chip_type
        self.ref: Folder = folder(default_response(), grid, n_sub, abundances)
        self.rmf = chip_rmf(chip_type)
        ref_rmf = self.ref.response.rmf
        if not np.array_equal(self.rmf.energ_lo, ref_rmf.energ_lo):
            raise ValueError(f"family RMF {chip_type} is not on the built-in energy bins")
        self.matrix = self.rmf.matrix.tocsr()
        self.w_grid = overlap_matrix(self.rmf.e_min, self.rmf.e_max, grid.edges_kev).tocsr()
        self.particle = particle_template(
            self.rmf.e_min, self.rmf.e_max, self.w_grid, self.ref.broad_grid
        )
        self.sky_photon = sky_photon_flux(self.ref, self.ref)
        self.fold_area = fold_operator(self.rmf, grid)
        self.n_channels = self.rmf.n_channels
        self.band = band_channels(self.rmf.e_min, self.rmf.e_max)
        self.r_band = np.asarray(self.matrix @ self.band.astype(np.float64)).ravel()
        self.r_all = np.asarray(self.matrix.sum(axis=1)).ravel()
        self.sky_r_band = self.sky_photon * self.r_band
        self.particle_b = float(self.particle[self.band].sum())

    def model(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return model_spectra(params, self.ref)

    def area(self, epoch_year: np.ndarray, theta_arcmin: np.ndarray) -> np.ndarray:
        """Each source's effective area (cm^2), float32-rounded like an OGIP ARF column so
        written ARFs reproduce the set exactly."""
        area = effective_area_cm2(self.chip_type, epoch_year, theta_arcmin)
        return area.astype(np.float32).astype(np.float64)

    def rates(self, res: dict[str, np.ndarray], area: np.ndarray) -> dict[str, np.ndarray]:
        """As :meth:`ResponseGroup.rates`, through each source's own area."""
        pa = res["photon_flux"] * area
        return {"band": pa @ self.r_band, "all": pa @ self.r_all,
                "ref": res["photon_flux"] @ self.ref.broad_per_photon,
                "sky_band": area @ self.sky_r_band}  # fmt: skip

    def fold_model(self, rows: np.ndarray, res: dict[str, np.ndarray], area: np.ndarray) -> Folded:
        return Folded(
            rows, res, _fold(res["photon_flux"] * area, self.matrix),
            res["photon_flux"] @ self.ref.broad_per_photon,
            _fold(area * self.sky_photon[None, :], self.matrix), self.particle, self.w_grid,
            _fold(area, self.fold_area), area,
        )  # fmt: skip

    def fold(
        self, rows: np.ndarray, params: dict[str, np.ndarray], *, epoch_year: np.ndarray,
        theta_arcmin: np.ndarray,
    ) -> Folded:  # fmt: skip
        return self.fold_model(rows, self.model(params), self.area(epoch_year, theta_arcmin))


def band_channels(e_min_kev: np.ndarray, e_max_kev: np.ndarray) -> np.ndarray:
    """PI channels whose centre lies in the broad band (0.5-7 keV): where ``snr_b`` is counted."""
    centre = 0.5 * (np.asarray(e_min_kev) + np.asarray(e_max_kev))
    return (centre >= COUNTS_BAND_KEV[0]) & (centre < COUNTS_BAND_KEV[1])


_CHIP_GROUPS: dict[tuple[str, int, int, str], ChipGroup] = {}


def chip_group(chip_type: str, grid: EnergyGrid, n_sub: int, abundances: str) -> ChipGroup:
    """The cached :class:`ChipGroup` of (chip type, grid, sub-samples, abundances)."""
    key = (chip_type, hash(grid), n_sub, abundances)
    g = _CHIP_GROUPS.get(key)
    if g is None or g.rmf is not chip_rmf(chip_type):
        g = _CHIP_GROUPS[key] = ChipGroup(chip_type, grid, n_sub, abundances)
    return g


UNKNOWN_CONTEXT: dict[str, Any] = {
    "detector": "", "ccd_id": -1, "chip_type": "", "epoch_year": float("nan"), "date_obs": "",
    "theta_arcmin": float("nan"),
}  # fmt: skip


def response_context(response: Response) -> dict[str, Any]:
    """Detector, CCD, chip type, date and off-axis angle of a response, where known.

    The built-in response is ObsID 1575's on-axis ACIS-S3 (2001.76). A real response's ARF
    headers, and those of its spectrum (``response.pha_path``) when known, are read by
    :func:`xlatent.io.response_context.response_context`: without the spectrum a multi-chip
    ARF leaves the chip unknown and the off-axis angle is NaN unless the ARF names the
    target; an unreadable file or one without keywords leaves the columns unknown."""
    if response is default_response():
        return {"detector": "ACIS-S", "ccd_id": 7, "chip_type": "BI",
                "epoch_year": BUILTIN_EPOCH_YEAR,
                "date_obs": str(date_obs(np.array([BUILTIN_EPOCH_YEAR]))[0]),
                "theta_arcmin": 0.0}  # fmt: skip
    out = dict(UNKNOWN_CONTEXT)
    path = Path(response.arf.path) if response.arf is not None else None
    if path is None or not path.is_file():
        return out
    try:
        pha = Path(response.pha_path) if response.pha_path else None
        ctx = read_response_context(path, pha if pha is not None and pha.is_file() else None)
    except (OSError, ValueError, InputError):
        return out
    out.update({k: ctx[k] for k in out if k in ctx})
    return out


def response_label(response: Response) -> str:
    """``response_id`` of a fixed response: ``builtin:acis-s`` or its ARF (else RMF) file name."""
    if response is default_response():
        return "builtin:acis-s"
    return Path(response.arf.path if response.arf is not None else response.rmf.path).name


def response_ids(
    cols: dict[str, np.ndarray], slot_group: np.ndarray, groups: list[Any],
    response: Response | None,
) -> np.ndarray:  # fmt: skip
    """``response_id`` per spectrum: the family member (chip, date, off-axis angle) where
    ``slot_group`` is -1, else the fixed response's path (``builtin:acis-s`` for the built-in
    one) or the real response's ARF file name."""
    family = slot_group < 0
    rid = np.array([str(v) for v in cols["chip_type"]], dtype=object)
    if family.any():
        rid[family] = response_id(
            rid[family].astype(str), cols["epoch_year"][family].astype(float),
            cols["theta_arcmin"][family].astype(float),
        )  # fmt: skip
    for gi in np.unique(slot_group[~family]):
        label = response_label(groups[gi].response)
        if response is not None and response is not default_response():
            label = str(response.arf.path if response.arf is not None else response.rmf.path)
        rid[slot_group == gi] = label
    return rid
