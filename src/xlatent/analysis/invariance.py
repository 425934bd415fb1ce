"""Response invariance: do a model's latents survive a change of instrument?

The caller folds the *same* sources (same rows, same order: same class, same spectral
parameters) through several responses, e.g. ACIS-S (back-illuminated) in 2001 on-axis and
ACIS-I (front-illuminated) in 2020 on-axis, and passes the sets by response name; analysis
never simulates. For each response this reports what a user of the latents would notice:

- ``probe_bacc_8class``: the 8-class balanced accuracy of a probe (the gradient-boosted
  classifier of :mod:`xlatent.analysis.probe`) fitted on the *reference* set's training-split
  latents (the default sky the model was trained on) and applied to this response's latents;
  ``probe_change``: that minus the same probe's accuracy on the reference's test split;
- ``deviance_ratio``: the model's reconstruction deviance over the noiseless truth's
  (:mod:`xlatent.analysis.reconstruction`; needs ``expected_counts``), and
  ``mean_deviance_per_bin`` (the autoencoder's loss);
- ``mean_counts``: mean broad-band (0.5-7 keV) net counts.

Between the first response and every other one, per source, the latent distance in units of
the within-class spread::

    d_i = |z_a,i - z_b,i| / sqrt(sum_d sigma_d^2)

with |.| the Euclidean norm over the latent dimensions and sigma_d the pooled within-class
standard deviation of latent d on the reference set (labelled rows; the pooled variance is
sum over classes of sum (z_d - mean_class,d)^2 over (rows - classes)). ``d`` is a typical
per-dimension shift in within-class standard deviations times sqrt(2) for independent noise:
two draws from one class's spread give d of about sqrt(2). Reported: its median over sources,
per class and per tercile of the first response's broad-band net counts. The *noise floor*
is the same statistic between the first response and its *noise twin* (entry
:data:`NOISE_TWIN`: the same sources and response with an independent Poisson realisation),
so a reader sees how much of a distance is the instrument and how much photon noise.
Where the sets carry the noiseless truth, ``noiseless`` gives the same statistic for the
sources' noiseless spectra (expected counts + background, encoded as they are): the
instrument's part alone, which a distance between noisy spectra cannot go below the noise
floor to show.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xlatent.analysis._common import class_labels, make_split, single_thread, subsample
from xlatent.analysis.features import hardness_table
from xlatent.analysis.probe import probe_classifier
from xlatent.analysis.reconstruction import deviance_summary
from xlatent.analysis.uncertainty import N_BOOT, Scored, summarise, summarise_difference
from xlatent.core.vocabulary import CLASSES

#: Key of ``pairs`` holding the noise twin of the first response.
NOISE_TWIN = "noise_twin"
#: Truth columns that must agree row by row between the sets of one comparison.
_SAME_SOURCE_COLUMNS = ("source_class", "truth_nh_1e22", "truth_gamma", "truth_kt_kev")

DEFINITION = (
    "per source, Euclidean latent distance between the two sets divided by "
    "sqrt(sum_d sigma_d^2), sigma_d the pooled within-class standard deviation of latent d "
    "on the reference set's labelled rows; median over sources (two independent draws from "
    "one class's spread give about sqrt(2))"
)


def within_class_sd(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pooled within-class standard deviation of each column of ``z`` (labelled rows only)."""
    keep = labels != ""
    z, labels = z[keep], labels[keep]
    classes = np.unique(labels)
    if classes.size == 0 or z.shape[0] <= classes.size:
        raise ValueError("the reference set needs labelled rows of at least one class")
    ss = np.zeros(z.shape[1])
    for c in classes:
        zc = z[labels == c]
        ss += ((zc - zc.mean(axis=0)) ** 2).sum(axis=0)
    return np.sqrt(ss / (z.shape[0] - classes.size))


def _summary(dist: np.ndarray, labels: np.ndarray, counts_b: np.ndarray) -> dict[str, Any]:
    """Median distance overall, per class and per tercile of ``counts_b``."""
    out: dict[str, Any] = {"n": int(dist.size), "median": float(np.median(dist))}
    out["per_class"] = {c: float(np.median(dist[labels == c])) for c in CLASSES
                        if (labels == c).any()}  # fmt: skip
    ok = np.isfinite(counts_b)
    edges = np.unique(np.quantile(counts_b[ok], [0.0, 1 / 3, 2 / 3, 1.0])) if ok.any() else []
    terciles = []
    for i in range(len(edges) - 1):
        hi_ok = counts_b <= edges[i + 1] if i == len(edges) - 2 else counts_b < edges[i + 1]
        sel = ok & (counts_b >= edges[i]) & hi_ok
        if sel.any():
            lo, hi = float(edges[i]), float(edges[i + 1])
            terciles.append({"counts_lo": lo, "counts_hi": hi, "n": int(sel.sum()),
                             "median": float(np.median(dist[sel]))})  # fmt: skip
    out["per_counts_tercile"] = terciles
    return out


def _check_same_sources(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """Refuse two sets that are not the same sources in the same order."""
    if len(a) != len(b):
        raise ValueError(f"{name_a} has {len(a)} spectra and {name_b} {len(b)}: not the same "
                         "sources")  # fmt: skip
    if not np.array_equal(a.grid.edges_kev, b.grid.edges_kev):
        raise ValueError(f"{name_a} and {name_b} are on different energy grids")
    for col in _SAME_SOURCE_COLUMNS:
        if col in a.meta and col in b.meta:
            x, y = a.meta[col].to_numpy(), b.meta[col].to_numpy()
            same = (x == y) | (np.asarray(x != x) & np.asarray(y != y))  # NaN == NaN here
            if not same.all():
                row = int(np.flatnonzero(~same)[0])
                raise ValueError(f"{name_a} and {name_b} differ in {col} at row {row}: not the "
                                 "same sources in the same order")  # fmt: skip


def _deviance(model: Any, s: Any, labels: np.ndarray, counts_b: np.ndarray) -> dict[str, Any]:
    from xlatent.model import poisson_deviance

    rec = np.asarray(model.reconstruct(s), dtype=np.float64)
    dev = poisson_deviance(s.counts, rec + s.background)
    truth = None
    if s.expected_counts is not None:
        truth = poisson_deviance(s.counts, s.expected_counts + s.background)
    d = deviance_summary(dev, truth, labels, counts_b, s.grid.n_bins)
    out = {"deviance_ratio": d.get("deviance_ratio"),
           "mean_deviance_per_bin": d["mean_deviance_per_bin"],
           "deviance_ratio_per_class": d.get("per_class")}  # fmt: skip
    if truth is not None:
        out["truth_mean_deviance_per_bin"] = float(truth.mean() / s.grid.n_bins)
    return out


def noiseless_spectra(s: Any) -> Any:
    """``s`` with its counts replaced by their expectation (source truth + background)."""
    from xlatent.core import SpectrumSet

    return SpectrumSet(grid=s.grid, counts=s.expected_counts + np.clip(s.background, 0.0, None),
                       background=s.background, exposure_s=s.exposure_s,
                       effective_area_cm2=s.effective_area_cm2, meta=s.meta,
                       expected_counts=s.expected_counts)  # fmt: skip


def _reference_split(model: Any, reference: Any, is_train: np.ndarray | None, seed: int) -> Any:
    if is_train is None:
        is_train = make_split(reference.meta.reset_index(drop=True), seed)
    is_train = np.asarray(is_train, dtype=bool).copy()
    trained = getattr(model, "training_ids_", None)
    if trained:  # spectra the model was fitted on are never scored
        is_train |= reference.meta["spec_id"].astype(str).isin(set(trained)).to_numpy()
    return is_train


def response_invariance(
    model: Any,
    pairs: Mapping[str, Any],
    reference: Any,
    *,
    reference_latents: np.ndarray | None = None,
    is_train: np.ndarray | None = None,
    noise_twin: Any = None,
    seed: int = 0,
    max_points: int = 5000,
) -> dict[str, Any]:
    """Response invariance of ``model`` (``transform`` and ``reconstruct``), JSON-friendly.

    ``pairs`` maps response names to SpectrumSets of the same sources (rows aligned by
    index); the first is the one the others are compared with, and an entry named
    :data:`NOISE_TWIN` (or ``noise_twin``) is the first one's independent Poisson
    realisation. ``reference``: the default-sky set the probe is fitted on (its training
    split: ``is_train``, else its ``split`` column, plus every spectrum the model was fitted
    on) and whose test split gives the reference accuracy; ``reference_latents`` are its
    latents (else ``model.transform(reference)``). See the module docstring for every number.
    """
    sets = dict(pairs)
    twin = sets.pop(NOISE_TWIN, None) if noise_twin is None else noise_twin
    if not sets:
        raise ValueError("response_invariance needs at least one response set")
    names = list(sets)
    first = names[0]
    for name in names[1:]:
        _check_same_sources(sets[first], sets[name], first, name)
    if twin is not None:
        _check_same_sources(sets[first], twin, first, NOISE_TWIN)
        sets[NOISE_TWIN] = twin

    z_ref = np.asarray(
        model.transform(reference) if reference_latents is None else reference_latents,
        dtype=np.float64,
    )
    lab_ref = class_labels(reference.meta.reset_index(drop=True))
    train = _reference_split(model, reference, is_train, seed)
    sd = within_class_sd(z_ref, lab_ref)
    spread = float(np.sqrt((sd**2).sum()))

    fit_rows = subsample(np.flatnonzero(train & (lab_ref != "")), max_points,
                         np.random.default_rng([seed, 61]))  # fmt: skip
    test_rows = np.flatnonzero(~train & (lab_ref != ""))
    clf = probe_classifier(seed)
    with single_thread():
        clf.fit(z_ref[fit_rows], lab_ref[fit_rows])

    def scored(z: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> Scored:
        with single_thread():
            pred = clf.predict(z[rows])
        return Scored(labels[rows], (pred == labels[rows]).astype(float), rows)

    ref_scored = scored(z_ref, lab_ref, test_rows)
    ref_summary = summarise([ref_scored], N_BOOT, [seed, 61])
    ref_bacc = ref_summary["mean"]
    out: dict[str, Any] = {
        "responses": names,
        "first": first,
        "has_noise_twin": twin is not None,
        "n_sources": len(sets[first]),
        "reference": {
            "n_probe_train": int(fit_rows.size),
            "n_test": int(test_rows.size),
            "probe_bacc_8class": ref_bacc,
            "probe_bacc_8class_ci95": ref_summary["ci95"],
            "mean_counts": float(np.nanmean(hardness_table(reference)["net_counts_b"])),
        },
        "spread": {"within_class_sd": sd.tolist(), "total": spread, "definition": DEFINITION},
        "per_response": {},
        "pairs": {},
    }
    latents: dict[str, np.ndarray] = {}
    first_scored: Scored | None = None
    counts_first = hardness_table(sets[first])["net_counts_b"].to_numpy(np.float64)
    lab_first = class_labels(sets[first].meta.reset_index(drop=True))
    for name, s in sets.items():
        z = np.asarray(model.transform(s), dtype=np.float64)
        latents[name] = z
        labels = class_labels(s.meta.reset_index(drop=True))
        counts_b = hardness_table(s)["net_counts_b"].to_numpy(np.float64)
        rows = np.flatnonzero(labels != "")
        sc = scored(z, labels, rows)
        summ = summarise([sc], N_BOOT, [seed, 62])
        entry: dict[str, Any] = {
            "n": len(s),
            "mean_counts": float(np.nanmean(counts_b)),
            "probe_bacc_8class": summ["mean"],
            "probe_bacc_8class_ci95": summ["ci95"],
            "probe_change": None if summ["mean"] is None or ref_bacc is None
            else summ["mean"] - ref_bacc,
        }  # fmt: skip
        if first_scored is None:
            first_scored = sc
        elif np.array_equal(sc.rows, first_scored.rows):  # same sources: a paired difference
            d = summarise_difference([sc], [first_scored], N_BOOT, [seed, 63])
            entry["probe_change_vs_first"] = d["mean"]
            entry["probe_change_vs_first_ci95"] = d["ci95"]
        entry.update(_deviance(model, s, labels, counts_b))
        out["per_response"][name] = entry
    z_clean = {n: model.transform(noiseless_spectra(s)) for n, s in sets.items()
               if n != NOISE_TWIN and s.expected_counts is not None}  # fmt: skip
    for name in sets:
        if name == first:
            continue
        dist = np.linalg.norm(latents[name] - latents[first], axis=1) / spread
        out["pairs"][f"{first} vs {name}"] = pair = _summary(dist, lab_first, counts_first)
        if first in z_clean and name in z_clean:
            d0 = np.linalg.norm(np.asarray(z_clean[name]) - z_clean[first], axis=1) / spread
            pair["noiseless"] = _summary(d0, lab_first, counts_first)
    if twin is not None:
        out["noise_floor"] = out["pairs"].pop(f"{first} vs {NOISE_TWIN}")
    out["table"] = invariance_rows(out)
    return out


def invariance_rows(inv: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per response: counts, probe, deviance and distance to the first (with floor)."""
    floor = (inv.get("noise_floor") or {}).get("median")
    rows = []
    for name, r in (inv.get("per_response") or {}).items():
        pair = (inv.get("pairs") or {}).get(f"{inv.get('first')} vs {name}") or {}
        rows.append({
            "response": name,
            "mean_counts": r.get("mean_counts"),
            "probe_bacc_8class": r.get("probe_bacc_8class"),
            "probe_bacc_8class_ci95": r.get("probe_bacc_8class_ci95"),
            "probe_change": r.get("probe_change"),
            "deviance_ratio": r.get("deviance_ratio"),
            "mean_deviance_per_bin": r.get("mean_deviance_per_bin"),
            "distance_to_first": pair.get("median") if name != NOISE_TWIN else floor,
            "noise_floor": floor,
            "distance_noiseless": (pair.get("noiseless") or {}).get("median"),
        })  # fmt: skip
    return rows
