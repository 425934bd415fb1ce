"""physics.variability and physics.gregory_loredo: the CSC-style GL test on light curves,
detectability rising with counts, and the simulator's variability columns."""

from __future__ import annotations

import numpy as np

from xlatent.physics.gregory_loredo import gl_index, gl_variability
from xlatent.physics.simulator import simulate
from xlatent.physics.variability import (
    N_FINE,
    IntrinsicVariability,
    apply_to_parameters,
    draw_variability,
    observe,
    red_noise,
)


def _light_curves(shape: np.ndarray, counts: int, rng: np.random.Generator) -> np.ndarray:
    p = shape / shape.sum(axis=1, keepdims=True)
    return rng.multinomial(np.full(len(shape), counts), p)


def test_gl_step_and_constant() -> None:
    rng = np.random.default_rng(0)
    step = np.r_[np.ones(N_FINE // 2), 2.0 * np.ones(N_FINE // 2)][None, :].repeat(50, 0)
    prob, index = gl_variability(_light_curves(step, 2000, rng))
    assert prob.min() > 0.999 and (index >= 8).all()
    flat = np.ones((2000, N_FINE))
    for n in (50, 300):
        prob, index = gl_variability(_light_curves(flat, n, rng))
        assert np.mean(prob > 0.9) < 0.03 and np.median(prob) < 0.5
        assert np.mean(index >= 6) < 0.03


def test_gl_index_consistent_with_probability() -> None:
    rng = np.random.default_rng(1)
    rms = np.exp(rng.uniform(np.log(0.02), np.log(1.0), 3000))
    lc = _light_curves(red_noise(3000, 2.0, rms, rng), 150, rng)
    prob, index = gl_variability(lc)
    assert index.dtype.kind == "i" and index.min() >= 0 and index.max() <= 10
    assert ((index == 0) == (prob <= 0.5)).all()
    assert ((index >= 6) == (prob >= 0.9)).all()
    assert np.isin(index[(prob > 0.5) & (prob < 0.9)], [1, 2, 3, 4, 5]).all()
    assert len(np.unique(index)) >= 6
    # The index follows the CSC thresholds on the log10 odds above P = 0.9.
    assert gl_index(
        np.array([0.95, 1.0]), np.array([1.5, 40.0]), np.ones(2), np.ones(2)
    ).tolist() == [6, 10]
    assert gl_index(
        np.array([0.7, 0.7]), np.zeros(2), np.array([1.0, 0.9]), np.ones(2)
    ).tolist() == [2, 5]


def test_detectability_rises_with_counts() -> None:
    """The same intrinsic variability (one set of light-curve shapes) with more photons is
    detected more often."""
    rng = np.random.default_rng(2)
    shape = red_noise(600, 2.0, np.full(600, 0.25), rng)
    med = [np.median(gl_variability(_light_curves(shape, c, rng))[0]) for c in (30, 300, 3000)]
    assert med[0] < med[1] < med[2] and med[2] > 0.9 and med[0] < 0.5


def test_observe_uses_the_background_and_counts() -> None:
    rng = np.random.default_rng(3)
    var = draw_variability(np.array(["YSO"] * 400), np.full(400, 5e4), rng)
    spectra = np.full((400, 1), 500.0)
    band = np.ones(1)
    p_clean, _ = observe(var, spectra, spectra, np.zeros((400, 1)), band, np.random.default_rng(4))
    # Nine tenths of the same counts from a steady background dilute the variability.
    p_diluted, _ = observe(
        var, spectra, spectra / 10, spectra * 0.9, band, np.random.default_rng(4)
    )
    assert np.mean(p_clean > 0.9) > np.mean(p_diluted > 0.9) + 0.1


def test_flares_heat_the_plasma() -> None:
    n = 3
    var = IntrinsicVariability(
        shape=np.ones((n, N_FINE), np.float32), model=np.array(["flare"] * n, dtype=object),
        amplitude=np.zeros(n), flare_fraction=np.array([0.5, 0.5, 0.0]),
        kt_flare_kev=np.array([4.0, 4.0, np.nan]), nh_dip_eff_1e22=np.array([0.0, 0.0, 0.5]),
    )  # fmt: skip
    params = {
        "kt_kev": np.array([0.5, 3.0, 0.5]), "kt2_kev": np.array([np.nan, 0.5, 2.0]),
        "rel_plasma": np.ones(n), "rel_plasma2": np.array([0.0, 0.5, 0.3]),
        "nh_gal_1e22": np.full(n, 0.01), "nh_int_1e22": np.full(n, 0.1),
        "nh_1e22": np.full(n, 0.11),
    }  # fmt: skip
    apply_to_parameters(params, var)
    assert params["kt2_kev"][0] == 4.0 and params["rel_plasma2"][0] == 1.0  # a new hot component
    assert 3.0 < params["kt_kev"][1] < 4.0 and params["rel_plasma2"][1] < 0.5  # hotter primary
    assert params["kt2_kev"][2] == 2.0 and params["nh_int_1e22"][2] == 0.6  # no flare; a dip
    assert np.allclose(params["nh_1e22"], params["nh_gal_1e22"] + params["nh_int_1e22"])


def test_simulator_variability_columns() -> None:
    a = simulate(240, seed=11, chunk_size=50, counts_range=(20, 2000))
    b = simulate(240, seed=11, chunk_size=1000, counts_range=(20, 2000))
    m = a.meta
    assert m["var_prob_b"].equals(b.meta["var_prob_b"])
    assert m["var_index_b"].equals(b.meta["var_index_b"])
    assert m["var_index_b"].dtype.kind == "i" and m["var_index_b"].between(0, 10).all()
    assert ((m["var_index_b"] >= 6) == (m["var_prob_b"] >= 0.9)).all()
    parts = {p for label in m["truth_var_model"] for p in label.split("+")}
    assert parts <= {"steady", "flare", "red_noise", "dips"}
    steady = m["truth_var_model"] == "steady"
    assert (m.loc[steady, "truth_var_amplitude"] == 0).all()
    assert (m.loc[~steady, "truth_var_amplitude"] > 0).all()
    # Stars are the flaring classes; AGN vary by red noise.
    assert (m.loc[m["source_class"] == "AGN", "truth_var_model"] == "red_noise").all()
    assert m.loc[m["truth_var_model"].str.contains("flare"), "source_class"].isin(
        ["LM-STAR", "HM-STAR", "YSO"]).all()  # fmt: skip
