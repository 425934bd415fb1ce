"""``explore``: one self-contained interactive page of a latent catalogue (``xlatent explore``).

A 2-D map of the latents (UMAP when ``umap-learn`` is installed; else t-SNE up to
:data:`TSNE_MAX_POINTS` points, PCA above: sklearn's t-SNE takes minutes on 10,000 points),
coloured by a selector (class, hardness, N_H, variability, unusualness, counts: whichever
columns the catalogue has); hovering a point shows its id, class and counts and previews its
spectrum; clicking shows the spectrum (with the model's reconstruction, the set's own
reconstruction or its noiseless truth where there is one); a lasso selection is downloaded
as CSV. The page (:mod:`xlatent.analysis.explore_page`, Bokeh standalone with WebGL) needs no
server or network. Catalogues above ``max_points`` rows are subsampled keeping the most
unusual spectra (:mod:`xlatent.analysis.outliers`), and the page says so. Per-point spectra
are 32 coarse bins of one byte each (:mod:`xlatent.analysis.shapes`), so 100,000 points stay
within tens of MB.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlatent.analysis._common import safe_log10, single_thread
from xlatent.analysis.outliers import unusual_scores
from xlatent.core import InputError
from xlatent.core.vocabulary import CLASSES, latent_columns

#: Most points a page shows; larger catalogues are subsampled (outliers kept).
DEFAULT_MAX_POINTS = 100_000
#: ``projection="auto"`` without UMAP uses t-SNE up to this many points, PCA above.
TSNE_MAX_POINTS = 2000
#: Share of the shown points reserved for the most unusual spectra when subsampling.
OUTLIER_SHARE = 0.05


@dataclass
class Colouring:
    """One entry of the page's colour selector: a label, per-point values, their kind."""

    label: str
    values: np.ndarray  # float (n,): class codes 0..7 (NaN unlabelled) or a quantity
    kind: str  # "class" or "linear"
    description: str = ""


@dataclass
class ExploreResult:
    """What :func:`explore` wrote and how."""

    path: Path
    n_total: int
    n_shown: int
    projection: str
    spectra: str  # "none", "observed" or "observed + <what the second curve is>"
    size_bytes: int
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


def pick_rows(score: np.ndarray, max_points: int, seed: int) -> tuple[np.ndarray, int]:
    """Rows shown (sorted) and how many of them were kept as the most unusual.

    All rows when there are at most ``max_points``; else the ``OUTLIER_SHARE`` most unusual
    (largest ``score``) and a seeded uniform draw of the rest.
    """
    n = score.size
    if n <= max_points:
        return np.arange(n), 0
    finite = np.flatnonzero(np.isfinite(score))
    n_out = min(int(OUTLIER_SHARE * max_points), finite.size)
    top = finite[np.argsort(-score[finite], kind="stable")[:n_out]]
    rest = np.setdiff1d(np.arange(n), top, assume_unique=True)
    rng = np.random.default_rng([seed, 0xE7])
    drawn = rng.choice(rest, size=max_points - n_out, replace=False)
    return np.sort(np.concatenate([top, drawn])), n_out


def resolve_projection(projection: str, n: int) -> tuple[str, str]:
    """The embedding ``projection`` means for ``n`` points, and why (for the page)."""
    if projection != "auto":
        return projection, "as requested"
    try:
        import umap  # noqa: F401

        return "umap", "umap-learn is installed"
    except ImportError:
        if n <= TSNE_MAX_POINTS:
            return "tsne", "umap-learn is not installed"
        return "pca", (f"umap-learn is not installed and t-SNE is too slow above "
                       f"{TSNE_MAX_POINTS:,} points")  # fmt: skip


def colourings(cat: pd.DataFrame, score: np.ndarray, score_name: str) -> list[Colouring]:
    """The selector's entries, for the columns ``cat`` has (class first when labelled)."""
    out: list[Colouring] = []

    def num(col: str) -> np.ndarray:
        return pd.to_numeric(cat[col], errors="coerce").to_numpy(dtype=np.float64)

    if "source_class" in cat:
        lab = cat["source_class"].fillna("").astype(str).to_numpy()
        code = np.array([CLASSES.index(c) if c in CLASSES else np.nan for c in lab], float)
        if np.isfinite(code).any():
            out.append(Colouring("class", code, "class", "source_class"))
    for ratio in ("hs", "hm", "ms"):
        for col, src in ((f"hard_{ratio}", "CSC photon-flux ratio"),
                         (f"hr_counts_{ratio}", "from the band net counts")):  # fmt: skip
            if col in cat and np.isfinite(num(col)).any():
                out.append(Colouring(f"hardness {ratio.upper()}", num(col), "linear",
                                     f"{col} ({src})"))  # fmt: skip
                break
    for col, label in (("truth_nh_1e22", "log N_H (true)"),
                       ("powlaw_nh_1e22", "log N_H (CSC power-law fit)")):  # fmt: skip
        if col in cat and np.isfinite(safe_log10(num(col))).any():
            out.append(Colouring(label, safe_log10(num(col)) + 22.0, "linear", f"{col}, cm^-2"))
            break
    if "var_prob_b" in cat and np.isfinite(num("var_prob_b")).any():
        out.append(Colouring("variability probability", num("var_prob_b"), "linear",
                             "var_prob_b (Gregory-Loredo)"))  # fmt: skip
    label = "ood_score" if score_name == "ood_score" else "unusualness (latent density)"
    out.append(Colouring(label, score, "linear", score_name))
    if "net_counts_b" in cat and np.isfinite(safe_log10(num("net_counts_b"))).any():
        out.append(Colouring("log net counts", safe_log10(num("net_counts_b")), "linear",
                             "log10 net_counts_b (0.5-7 keV)"))  # fmt: skip
    return out


def _second_curve(s: Any, model: Any, rows: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Expected source counts to overlay (rows of ``s``) and what they are."""
    if model is not None:
        return np.asarray(model.reconstruct(s[rows]), dtype=np.float64), "model reconstruction"
    if s.expected_counts is None:
        return None, ""
    steps = [p.get("step") for p in getattr(s, "provenance", [])]
    what = "reconstruction" if "reconstruct" in steps else "noiseless truth (simulator)"
    return np.asarray(s.expected_counts)[rows], what


def spectra_payload(s: Any, ids: np.ndarray, model: Any = None) -> dict[str, Any] | None:
    """Encoded coarse spectra of the shown points (``ids``: their spec_id) found in ``s``."""
    from xlatent.analysis.shapes import coarse_groups, coarse_shapes, encode_log, log_range

    where = pd.Series(np.arange(len(s)), index=s.meta["spec_id"].astype(str).to_numpy())
    where = where[~where.index.duplicated()]
    pos = where.reindex(ids.astype(str)).to_numpy()
    have = np.flatnonzero(np.isfinite(pos))
    if have.size == 0:
        return None
    rows = pos[have].astype(np.int64)
    expected, what = _second_curve(s, model, rows)
    edges, obs, rec = coarse_shapes(s, rows, expected)
    lo, hi = log_range(obs, rec)  # what the codes span; the plot shows the observed range
    view = log_range(obs, lo_q=2.0, hi_q=99.9)
    nb = len(coarse_groups(s.grid.n_bins))
    codes_obs = np.zeros((len(ids), nb), np.uint8)
    codes_obs[have] = encode_log(obs, lo, hi)
    codes_rec = None
    if rec is not None:
        codes_rec = np.zeros((len(ids), nb), np.uint8)
        codes_rec[have] = encode_log(rec, lo, hi)
    return {"edges_kev": edges, "obs": codes_obs.ravel(), "rec": None if codes_rec is None
            else codes_rec.ravel(), "rec_label": what, "lo": lo, "hi": hi,
            "view": (max(view[0], lo), min(view[1], hi)),
            "n_with_spectrum": int(have.size)}  # fmt: skip


def explore(
    latents: pd.DataFrame | str | Path,
    out: str | Path,
    spectrum_set: Any = None,
    model: Any = None,
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    projection: str = "auto",
    seed: int = 0,
) -> ExploreResult:
    """Write the interactive latent map of ``latents`` to ``out`` (one HTML file).

    ``spectrum_set``: the SpectrumSet (or its path) the catalogue was encoded from, for the
    spectra shown on hover and click (matched on ``spec_id``); ``model``: a fitted model whose
    reconstruction is overlaid (else the set's own ``expected_counts``, when it has them);
    ``projection``: auto | umap | tsne | pca. Same seed, same page.
    """
    from xlatent.analysis.explore_page import write_page
    from xlatent.analysis.maps import embed

    t0, timings = time.perf_counter(), {}
    if isinstance(latents, pd.DataFrame):
        cat, source = latents.reset_index(drop=True), "<latent catalogue>"
    else:
        from xlatent.model.catalog import read_latents

        cat, source = read_latents(latents), str(latents)
    cols = latent_columns(cat)
    if not cols or "spec_id" not in cat:
        raise InputError(source, "not a latent catalogue (needs spec_id and latent_<i>)")
    if max_points < 10:
        raise ValueError(f"max_points must be at least 10, not {max_points}")
    notes = []
    z = cat[cols].to_numpy(dtype=np.float64)
    ok = np.isfinite(z).all(axis=1)
    if not ok.any():
        raise InputError(source, "no row has finite latents")
    if not ok.all():
        notes.append(f"{int((~ok).sum()):,} rows with non-finite latents left out")
        cat, z = cat[ok].reset_index(drop=True), z[ok]
    # One thread: on busy cores OpenMP spin-waits cost more than it saves (t-SNE of 240
    # points: 19 s with two threads, 2.5 s with one, on the 2-core development machine).
    with single_thread():
        score, score_name, score_desc = unusual_scores(cat, seed=seed, z=z)
        rows, n_out = pick_rows(score, max_points, seed)
        timings["score"] = time.perf_counter() - t0
        sub, zs = cat.iloc[rows].reset_index(drop=True), z[rows]
        method, why = resolve_projection(projection, len(rows))
        sd = zs.std(axis=0)
        if len(rows) < 3:  # nothing to project: the first two latents as they are
            xy = np.zeros((len(rows), 2))
            xy[:, : min(2, zs.shape[1])] = zs[:, :2]
            method, why = "latents", "fewer than 3 spectra: latent_0 and latent_1"
        else:
            try:
                xy, method = embed(zs / np.where(sd > 0, sd, 1.0), method, seed)
            except Exception as exc:  # noqa: BLE001 - e.g. numba trouble in umap: PCA, say so
                why = f"{method} failed ({type(exc).__name__}); fell back to PCA"
                xy, method = embed(zs / np.where(sd > 0, sd, 1.0), "pca", seed)
    timings["embed"] = time.perf_counter() - t0 - timings["score"]
    payload = None
    if spectrum_set is not None:
        if isinstance(spectrum_set, (str, Path)):
            from xlatent.core import SpectrumSet

            spectrum_set = SpectrumSet.read(spectrum_set)
        payload = spectra_payload(spectrum_set, sub["spec_id"].to_numpy(), model)
        if payload is None:
            notes.append("no shown spectrum is in the SpectrumSet (spec_id): spectra not shown")
        elif payload["n_with_spectrum"] < len(rows):
            notes.append(f"{len(rows) - payload['n_with_spectrum']:,} shown points have no "
                         "spectrum in the set")  # fmt: skip
    elif model is not None:
        notes.append("a model was given without its SpectrumSet: no spectra to reconstruct")
    timings["spectra"] = time.perf_counter() - t0 - sum(timings.values())
    sampling = "all spectra" if len(rows) == len(cat) else (
        f"{len(rows):,} of {len(cat):,} spectra: the {n_out:,} most unusual (by {score_name}) "
        f"and {len(rows) - n_out:,} drawn at random")  # fmt: skip
    path = write_page(
        Path(out), sub, xy.astype(np.float32), colourings(sub, score[rows], score_name),
        payload, info={"source": source, "projection": method, "projection_why": why,
                       "sampling": sampling, "n_total": len(cat), "score": score_desc,
                       "notes": notes},
    )  # fmt: skip
    timings["page"] = time.perf_counter() - t0 - sum(timings.values())
    spectra = "none" if payload is None else "observed" + (
        f" + {payload['rec_label']}" if payload["rec"] is not None else "")  # fmt: skip
    return ExploreResult(path, len(cat), len(rows), method, spectra, path.stat().st_size, notes,
                         {k: round(v, 2) for k, v in timings.items()})  # fmt: skip


__all__ = ["DEFAULT_MAX_POINTS", "ExploreResult", "explore", "pick_rows", "resolve_projection"]
