"""Which spectra are unlike everything else: an unusualness score per catalogue row.

The catalogue's own ``ood_score`` (the model's out-of-distribution score) when it has one;
otherwise the emptiness of the latent space around each spectrum: log10 of the distance to
its k-th nearest neighbour (k = 10, latents divided by each dimension's standard deviation)
among a fixed random reference sample of at most 5,000 rows. Against a sample rather than
the whole catalogue so that 400,000 rows cost seconds, not minutes (a k-d tree of 5,000
points answers a 10-neighbour query in microseconds); larger = lower latent density = more
unusual.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from xlatent.core.vocabulary import latent_columns

#: The model's out-of-distribution score column, used when present.
OOD_COLUMN = "ood_score"
#: Name of the fallback score.
DENSITY_SCORE = "latent_knn_distance"
#: Neighbours and reference rows of the density score.
K_NEIGHBOURS = 10
N_REFERENCE = 5000
#: Columns listed beside the score.
LISTED_COLUMNS = ("spec_id", "name", "source_class", "net_counts_b")


def density_score(
    z: np.ndarray, k: int = K_NEIGHBOURS, n_reference: int = N_REFERENCE, seed: int = 0
) -> np.ndarray:
    """log10 distance (in standard deviations) from each row of ``z`` to its k-th nearest
    reference row (a seeded sample of ``n_reference`` rows, each row not its own neighbour);
    NaN for rows with non-finite latents."""
    from sklearn.neighbors import KDTree

    z = np.asarray(z, dtype=np.float64)
    out = np.full(len(z), np.nan)
    ok = np.flatnonzero(np.isfinite(z).all(axis=1))
    if ok.size < 2:
        return out
    sd = z[ok].std(axis=0)
    x = z[ok] / np.where(sd > 0, sd, 1.0)
    rng = np.random.default_rng([seed, 0x0D])
    ref = np.sort(rng.choice(ok.size, size=min(n_reference, ok.size), replace=False))
    k = int(min(k, ref.size - 1))
    dist, idx = KDTree(x[ref]).query(x, k=k + 1)
    # A reference row finds itself first (distance 0): its k-th neighbour is the next one.
    in_ref = np.zeros(ok.size, dtype=bool)
    in_ref[ref] = True
    kth = np.where(in_ref, dist[:, k], dist[:, k - 1])
    with np.errstate(divide="ignore"):
        out[ok] = np.log10(np.maximum(kth, 1e-12))
    return out


def unusual_scores(
    catalog: pd.DataFrame, seed: int = 0, z: np.ndarray | None = None
) -> tuple[np.ndarray, str, str]:
    """``(score, name, description)`` per row of ``catalog``: ``ood_score`` when the
    catalogue has finite values of it, else :func:`density_score` of its latents (or of
    ``z``, rows aligned). Larger = more unusual."""
    if OOD_COLUMN in catalog:
        ood = pd.to_numeric(catalog[OOD_COLUMN], errors="coerce").to_numpy(dtype=np.float64)
        if np.isfinite(ood).any():
            return ood, OOD_COLUMN, "the model's out-of-distribution score (ood_score)"
    if z is None:
        z = catalog[latent_columns(catalog)].to_numpy(dtype=np.float64)
    ref = min(N_REFERENCE, len(z))
    return (
        density_score(z, seed=seed),
        DENSITY_SCORE,
        (
            f"latent density: log10 distance to the {K_NEIGHBOURS}th nearest of {ref} reference "
            "spectra (latents in standard deviations; larger = emptier neighbourhood)"
        ),
    )


def most_unusual(
    catalog: pd.DataFrame, n: int = 20, seed: int = 0, z: np.ndarray | None = None
) -> tuple[pd.DataFrame, str, str]:
    """The ``n`` most unusual rows (see :func:`unusual_scores`), most unusual first: the
    catalogue's identifying columns plus ``score``; with the score's name and description."""
    score, name, desc = unusual_scores(catalog, seed=seed, z=z)
    finite = np.flatnonzero(np.isfinite(score))
    top = finite[np.argsort(-score[finite], kind="stable")[:n]]
    cols = [c for c in LISTED_COLUMNS if c in catalog]
    table = catalog.iloc[top][cols].reset_index(drop=True)
    table["score"] = score[top]
    return table, name, desc


def unusual_summary(catalog: pd.DataFrame, n: int = 20, seed: int = 0,
                    z: np.ndarray | None = None) -> dict[str, Any]:  # fmt: skip
    """The ``unusual`` entry of metrics.json: the score used and the ``n`` top rows."""
    table, name, desc = most_unusual(catalog, n=n, seed=seed, z=z)
    rows = [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
            for r in table.to_dict(orient="records")]  # fmt: skip
    return {"score": name, "description": desc, "n_scored": int(len(catalog)), "rows": rows}


def evaluated_unusual(meta: pd.DataFrame, latents: pd.DataFrame, z: np.ndarray, seed: int = 0,
                      n: int = 20) -> dict[str, Any]:  # fmt: skip
    """:func:`unusual_summary` of the evaluated rows (``meta``, latents ``z`` aligned with it),
    taking ``ood_score`` from the catalogue ``latents`` (matched on ``spec_id``) when it has
    one; what ``evaluate`` writes as ``metrics["unusual"]``."""
    cat = meta[[c for c in LISTED_COLUMNS if c in meta]].reset_index(drop=True)
    if OOD_COLUMN in latents and "spec_id" in latents:
        ids = latents["spec_id"].astype(str)
        first = ~ids.duplicated().to_numpy()  # align() refuses repeats; be safe anyway
        ood = pd.Series(latents[OOD_COLUMN].to_numpy()[first], index=ids.to_numpy()[first])
        cat[OOD_COLUMN] = ood.reindex(cat["spec_id"].astype(str)).to_numpy()
    return unusual_summary(cat, n=n, seed=seed, z=z)


__all__ = ["DENSITY_SCORE", "OOD_COLUMN", "density_score", "evaluated_unusual", "most_unusual",
           "unusual_scores", "unusual_summary"]  # fmt: skip
