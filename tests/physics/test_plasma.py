"""physics.plasma and the source models of physics.spectra: CIE lines, redshift, absorbers."""

from __future__ import annotations

import numpy as np
import pytest

from xlatent.core.grid import EnergyGrid
from xlatent.instrument import default_response
from xlatent.physics import models as m
from xlatent.physics import plasma
from xlatent.physics.absorption import cross_section_cm2
from xlatent.physics.priors import PARAMETERS, PRIORS, sample_parameters
from xlatent.physics.spectra import _line_transmission, folder, model_spectra

#: Line share of the 0.5-2 keV energy flux of a CIE plasma computed by
#: tools/build_plasma_lines.py directly from the CHIANTI v11.0.2 per-ion line, free-free and
#: free-bound powers and ion fractions (Dere et al. 1997; Del Zanna et al. 2021) with Anders
#: & Grevesse (1989) abundances; (kT keV, Z) -> fraction. The old log-normal EW model gave
#: 0.33 at (0.7, 1) and 0.17 at (0.7, 0.4).
REFERENCE = {
    (0.2, 1.0): 0.981, (0.5, 1.0): 0.927, (0.7, 1.0): 0.896, (1.0, 1.0): 0.819,
    (2.0, 1.0): 0.363, (4.0, 1.0): 0.130, (8.0, 1.0): 0.035,
    (0.2, 0.3): 0.947, (0.5, 0.3): 0.817, (0.7, 0.3): 0.750, (1.0, 0.3): 0.610,
    (2.0, 0.3): 0.165, (4.0, 0.3): 0.048, (8.0, 0.3): 0.012,
}  # fmt: skip
TOLERANCE = 0.05  # absolute


@pytest.fixture(scope="module")
def fold():  # noqa: ANN201
    return folder(default_response(), EnergyGrid.default(), 2, "angr")


def _params(n: int, **kw: float | np.ndarray) -> dict[str, np.ndarray]:
    p = {name: np.full(n, np.nan) for name in PARAMETERS}
    for c in ("powerlaw", "scatter", "bbody", "diskbb", "plasma", "plasma2"):
        p[f"rel_{c}"] = np.zeros(n)
    p.update(nh_gal_1e22=np.zeros(n), nh_int_1e22=np.zeros(n), fe_ka_ew_kev=np.zeros(n))
    for k, v in kw.items():
        p[k] = np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()
    p["nh_1e22"] = p["nh_gal_1e22"] + p["nh_int_1e22"]
    return p


def test_line_fraction_matches_chianti_reference(fold) -> None:  # noqa: ANN001
    # The simulator's path: bremsstrahlung continuum on the RMF's sub-sampled energies plus
    # the tabulated lines, both from plasma_emission, integrated over 0.5-2 keV.
    keys = list(REFERENCE)
    kt = np.array([k[0] for k in keys])
    z = np.array([k[1] for k in keys])
    norm, lines = plasma.plasma_emission(kt, z)
    e = fold.sub.energy_kev
    cont = (m.bremsstrahlung(e, kt, norm) * e) @ (fold.sub.band_weights(0.5, 2.0))
    le = plasma.line_energies_kev()
    line = lines @ np.where((le >= 0.5) & (le < 2.0), le, 0.0)
    frac = line / (line + cont)
    want = np.array([REFERENCE[k] for k in keys])
    assert np.all(np.abs(frac - want) < TOLERANCE), dict(zip(keys, frac.round(3), strict=True))
    # The table's own fine integration agrees too, and metals make the lines.
    for (t, zz), f in REFERENCE.items():
        assert abs(plasma.line_fraction_reference(t, zz) - f) < 0.005
    assert plasma.plasma_emission(np.array([0.7]), 0.0)[1].sum() == 0.0


def test_hot_plasma_has_fe_xxv_xxvi_and_cool_plasma_fe_l(fold) -> None:  # noqa: ANN001
    p = _params(2, rel_plasma=1.0, kt_kev=np.array([8.0, 0.7]), abundance=1.0)
    out = model_spectra(p, fold)
    e = fold.sub.centers_kev
    ph = out["photon_flux"] / np.diff(fold.sub.edges_kev)
    for e0 in (6.7004, 6.9658):  # hot: Fe XXV, Fe XXVI stand out of the continuum
        j = int(np.searchsorted(fold.sub.edges_kev, e0)) - 1
        side = np.median(ph[0, (np.abs(e - e0) > 0.15) & (np.abs(e - e0) < 0.4)])
        assert ph[0, j] > 3 * side
    # 0.7 keV: the Fe L / O / Ne lines carry most of the soft band.
    band = (e > 0.7) & (e < 1.2)
    assert out["flux_unabs"][1, 0] > 0
    assert ph[1, band].max() > 50 * np.median(ph[1, band])


def test_agn_redshift_moves_fe_ka_and_weakens_local_absorption(fold) -> None:  # noqa: ANN001
    p = _params(
        2, rel_powerlaw=1.0, gamma=1.9, fe_ka_ew_kev=0.2, fe_ka_sigma_kev=0.02,
        nh_int_1e22=2.0, redshift=np.array([0.0, 1.0]),
    )  # fmt: skip
    out = model_spectra(p, fold)
    e = fold.sub.centers_kev
    ph = out["photon_flux"] / np.diff(fold.sub.edges_kev)
    assert abs(e[np.argmax(ph[0] * (e > 2.5))] - 6.4) < 0.02
    assert abs(e[np.argmax(ph[1] * (e > 2.5))] - 3.2) < 0.02
    # Local column at the source: transmission at observed 1 keV is exp(-N_H sigma(1 keV))
    # at z = 0 and exp(-N_H sigma(2 keV)) at z = 1.
    q = _params(2, rel_powerlaw=1.0, gamma=1.9, redshift=np.array([0.0, 1.0]))
    bare = model_spectra(q, fold)["photon_flux"]
    j = int(np.argmin(np.abs(e - 1.0)))
    ratio = out["photon_flux"][:, j] / bare[:, j]
    want = np.exp(-2.0 * 1e22 * cross_section_cm2(np.array([e[j], 2.0 * e[j]])))
    assert np.allclose(ratio, want, rtol=0.02)


def test_partial_covering_and_line_absorption_use_the_chosen_table() -> None:
    f_w = folder(default_response(), EnergyGrid.default(), 2, "wilm")
    p = _params(2, rel_plasma=1.0, kt_kev=1.0, abundance=1.0, nh_int_1e22=1.0,
                pc_frac=np.array([np.nan, 0.8]), nh_pc_1e22=np.array([np.nan, 10.0]))  # fmt: skip
    t = _line_transmission(p, f_w)
    sig = cross_section_cm2(plasma.line_energies_kev(), "wilm") * 1e22
    assert np.allclose(t[0], np.exp(-sig))
    assert np.allclose(t[1], np.exp(-sig) * (0.2 + 0.8 * np.exp(-10.0 * sig)))


def test_priors_redshift_obscuration_and_covering() -> None:
    rng = np.random.default_rng(3)
    classes = np.array(["AGN"] * 4000 + ["CV"] * 1000 + ["HMXB"] * 1000)
    p = sample_parameters(classes, rng)
    z = p["redshift"][:4000]
    assert np.isnan(p["redshift"][4000:]).all()
    q05, q50, q95 = np.percentile(z, [5, 50, 95])
    assert 0.9 < q50 < 1.5 and 0.2 < q05 < 0.6 and 2.2 < q95 < 4.5
    obscured = np.mean(p["nh_int_1e22"][:4000] > 1.0)
    assert abs(obscured - PRIORS["AGN"]["p_obscured"]) < 0.03
    assert 0.2 <= PRIORS["AGN"]["p_obscured"] <= 0.4
    cv_pc = np.isfinite(p["pc_frac"][4000:5000])
    assert abs(cv_pc.mean() - PRIORS["CV"]["partial_cover"]["p"]) < 0.05
    assert np.all((p["pc_frac"][4000:5000][cv_pc] >= 0.5) & (p["pc_frac"][4000:5000][cv_pc] <= 0.9))


def test_simulated_set_records_redshift_and_partial_covering_truth() -> None:
    from xlatent import simulate

    meta = simulate(400, seed=1, progress=False).meta
    agn = (meta["source_class"] == "AGN").to_numpy()
    z = meta["truth_redshift"].to_numpy()
    assert np.isfinite(z[agn]).all() and np.isnan(z[~agn]).all()
    assert ((z[agn] >= 0.05) & (z[agn] <= 4.5)).all()
    covered = np.isfinite(meta["truth_pc_frac"].to_numpy())
    assert covered.any()
    assert set(meta.loc[covered, "source_class"]) <= {"CV", "HMXB"}
    assert np.isfinite(meta.loc[covered, "truth_nh_pc_1e22"]).all()
