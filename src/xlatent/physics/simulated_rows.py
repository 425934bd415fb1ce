"""The per-row outputs of a block of simulated spectra
(:func:`xlatent.physics.simulator.simulate`): the meta table (identifiers, observation
columns, ``truth_*`` columns) and the OGIP PHA/ARF/RMF files of ``write_pha``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from xlatent.core.grid import EnergyGrid
from xlatent.instrument import ARF
from xlatent.instrument.family import core_fraction, energy_bins
from xlatent.physics.pileup import FRAME_TIME_S, pileup_fraction
from xlatent.physics.priors import COMPONENTS
from xlatent.physics.spectra import BAND_CODES

SOURCES_PER_OBSID = 20


def simulated_meta(
    spec_ids: np.ndarray, obs_index: np.ndarray, rows: np.ndarray, classes: np.ndarray,
    cols: dict[str, np.ndarray], src: dict[str, np.ndarray], params: dict[str, np.ndarray],
    arrays: dict[str, Any], intrinsic: Any, var_prob: np.ndarray, var_index: np.ndarray,
    grid: EnergyGrid, writer: Any,
) -> pd.DataFrame:  # fmt: skip
    """Meta of the spectra ``rows`` (their numbers in the whole set), every per-row input
    indexed like them; ``arrays`` holds ``expected``, ``fluxes`` and ``fracs``."""
    k = rows.size
    fluxes, fracs, expected = arrays["fluxes"], arrays["fracs"], arrays["expected"]
    meta = pd.DataFrame(
        {
            "spec_id": spec_ids,
            "obsid": 90000 + obs_index,
            "obi": np.zeros(k, dtype=np.int64),
            "region_id": rows % SOURCES_PER_OBSID + 1,
            "name": "",
            "object": spec_ids,
            "source_file": "" if writer is None else [str(writer.pha_path(s)) for s in spec_ids],
            "instrument": "ACIS",
            "detector": cols["detector"].astype(str),
            "ccd_id": cols["ccd_id"].astype(np.int64),
            "chip_type": cols["chip_type"].astype(str),
            "epoch_year": cols["epoch_year"].astype(np.float64),
            "date_obs": cols["date_obs"].astype(str),
            "theta_arcmin": cols["theta_arcmin"].astype(np.float64),
            "response_id": cols["response_id"].astype(str),
            "source_class": classes,
            "var_prob_b": var_prob,
            "var_index_b": var_index,
            "exposure_s": src["exposure_s"],
            "snr_b": src["snr_b"],
            "pileup_fraction": pileup_fraction(src["lam"]),
            "frame_time_s": np.full(k, FRAME_TIME_S),
            "psf_core_fraction": core_fraction(cols["theta_arcmin"]),
        }
    )
    truth = {
        "truth_nh_1e22": params["nh_1e22"],
        "truth_nh_gal_1e22": params["nh_gal_1e22"],
        "truth_nh_int_1e22": params["nh_int_1e22"],
    }
    for name in ("gamma", "kt_kev", "kt2_kev", "kt_in_kev", "kt_bb_kev", "abundance"):
        truth[f"truth_{name}"] = params[name]
    for name in ("fe_ka_ew_kev", "fe_ka_sigma_kev", "redshift", "pc_frac", "nh_pc_1e22"):
        truth[f"truth_{name}"] = params[name]
    for c in COMPONENTS:
        truth[f"truth_frac_{c}"] = fracs[c]
    for j, band in enumerate(BAND_CODES):
        truth[f"truth_flux_{band}"] = fluxes["flux_abs"][:, j]
    for j, band in enumerate(BAND_CODES):
        truth[f"truth_uflux_{band}"] = fluxes["flux_unabs"][:, j]
    truth["truth_counts_b"] = expected @ grid.band_mask(0.5, 7.0).astype(np.float64)
    truth["truth_counts_ref_b"] = src["counts_ref_b"]
    truth["truth_var_model"] = intrinsic.model.astype(str)
    truth["truth_var_amplitude"] = intrinsic.amplitude
    truth["truth_backscal_ratio"] = src["ratio"]
    truth["truth_src_area_arcsec2"] = src["area_arcsec2"]
    truth["truth_model"] = [
        "+".join(c for c in COMPONENTS if fracs[c][i] > 0)
        + ("+feka" if params["fe_ka_ew_kev"][i] > 0 else "")
        for i in range(k)
    ]
    return pd.concat([meta, pd.DataFrame(truth)], axis=1)


def write_pha_rows(
    writer: Any, r: np.ndarray, src_obs: np.ndarray, bkg_obs: np.ndarray, fd: Any, group: Any,
    names: tuple[str, str | None] | None, *, spec_ids: np.ndarray, exposure_s: np.ndarray,
    px2: np.ndarray, ratio: np.ndarray, obsid: np.ndarray, cols: dict[str, np.ndarray],
) -> None:  # fmt: skip
    """Write one group's spectra of a chunk: family members each with their own ARF, real
    responses with one shared ARF, one RMF per group (``names``; None: the writer's shared
    response). BACKSCAL in ACIS pixels^2 (``px2``)."""
    lo, hi = energy_bins()
    resp = getattr(group, "response", None)
    for i, row in enumerate(r):
        kwargs: dict[str, Any] = {}
        if names is not None:
            kwargs["rmf"] = resp.rmf if resp is not None else group.rmf
            kwargs["rmf_name"] = names[0]
            if fd.arf_cm2 is not None:
                kwargs["arf"] = ARF(lo, hi, fd.arf_cm2[i], f"{spec_ids[row]}.arf")
            elif resp is not None and resp.arf is not None:
                kwargs["arf"], kwargs["arf_name"] = resp.arf, names[1]
        extra = {"DETNAM": f"ACIS-{int(cols['ccd_id'][row])}"} if cols["ccd_id"][row] >= 0 else {}
        if cols["date_obs"][row]:
            extra["DATE-OBS"] = str(cols["date_obs"][row])
        writer.write(
            spec_ids[row], src_obs[i], bkg_obs[i], float(exposure_s[row]), float(px2[row]),
            float(px2[row] * ratio[row]), obsid=int(obsid[row]), extra=extra, **kwargs,
        )  # fmt: skip


__all__ = ["SOURCES_PER_OBSID", "simulated_meta", "write_pha_rows"]
