"""A 2-D map of the latent space coloured by class, N_H and hardness.

UMAP when ``umap-learn`` is installed, else t-SNE, else PCA (``method="auto"``). The
embedding is computed on a random subsample (``max_points``) because UMAP/t-SNE cost grows
super-linearly and the picture does not need every point.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from xlatent.analysis._common import Context, safe_log10, save_figure, subsample
from xlatent.core.vocabulary import CLASSES

#: tab10 without its grey (index 7), which would merge with the unlabelled points.
_PALETTE = [f"C{i}" for i in (0, 1, 2, 3, 4, 5, 6, 8)]


def embed(x: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str]:
    """2-D embedding of ``x`` and the method actually used."""
    if method == "auto":
        try:
            import umap  # noqa: F401

            method = "umap"
        except ImportError:
            method = "tsne"
    if method == "umap":
        import umap

        # A fixed seed keeps the report stable; UMAP then runs single-threaded and says so in a
        # UserWarning on every call, which is noise to the person running the demo.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            emb = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=seed).fit_transform(x)
        return emb, method
    if method == "tsne":
        from sklearn.manifold import TSNE

        perp = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
        return TSNE(2, perplexity=perp, init="pca", random_state=seed).fit_transform(x), method
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(2, random_state=seed).fit_transform(x), method
    raise ValueError(f"projection must be auto, umap, tsne or pca, not {method!r}")


def run(x: np.ndarray, ctx: Context, hardness: pd.DataFrame, method: str = "auto") -> dict:
    """Embed the (standardised) latents and draw the three coloured panels."""
    import matplotlib.pyplot as plt

    if len(x) < 5:
        ctx.skip("maps", "fewer than 5 spectra")
        return {}
    rows = subsample(np.arange(len(x)), ctx.max_points // 2 if method == "auto" else
                     ctx.max_points, ctx.rng(41))  # fmt: skip
    try:
        xy, used = embed(x[rows], method, ctx.seed)
    except Exception as exc:  # e.g. numba trouble in umap: fall back to PCA, say so
        ctx.skip("maps.embedding", f"{method} failed ({type(exc).__name__}: {exc}); used PCA")
        xy, used = embed(x[rows], "pca", ctx.seed)
    meta = ctx.meta.iloc[rows].reset_index(drop=True)
    labels = ctx.labels()[rows]
    panels: list[tuple[str, Any]] = [("class", labels)]
    if "truth_nh_1e22" in meta:
        panels.append(("log N_H (cm^-2)", safe_log10(meta["truth_nh_1e22"]) + 22.0))
    from xlatent.analysis.features import hardness_choice

    hcols, hsource = hardness_choice(hardness)
    hs_col = hcols[1]  # hard_hs (catalogue) or hr_counts_hs (counts)
    if hs_col in hardness:
        hs = hardness[hs_col].to_numpy(dtype=np.float64)[rows]
        panels.append((f"hardness HS ({hs_col}, {hsource})", hs))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    for ax, (title, c) in zip(axes[0], panels, strict=True):
        if title == "class":
            ax.scatter(xy[:, 0], xy[:, 1], s=2, c="0.85", rasterized=True)
            for k, cls in enumerate(CLASSES):
                m = labels == cls
                if m.any():
                    ax.scatter(xy[m, 0], xy[m, 1], s=3, color=_PALETTE[k], label=cls,
                               rasterized=True)  # fmt: skip
            if (labels != "").any():
                ax.legend(fontsize=7, markerscale=3, loc="best")
        else:
            sc = ax.scatter(xy[:, 0], xy[:, 1], s=2, c=c, cmap="viridis", rasterized=True)
            fig.colorbar(sc, ax=ax, shrink=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    save_figure(
        ctx, fig, "latent_map.png",
        f"{used.upper()} projection of the latents ({rows.size} random spectra) coloured by "
        "class (grey: unlabelled), true column density and the HS hardness ratio.",
        "maps",
    )  # fmt: skip
    return {"method": used, "n_points": int(rows.size)}
