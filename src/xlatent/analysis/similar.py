"""Nearest neighbours in latent space: "show me spectra whose latents are like this one's".

``similar(catalog, ident, k)`` (``xlatent similar``) finds the ``k`` spectra of a latent
catalogue nearest to the one named ``ident`` (a ``spec_id`` or a CSC ``name``);
:class:`LatentIndex` is the index behind it, built once (a k-d tree: about 2 s for 400,000
8-d latents, then ~1 ms a query; ``benchmarks/similar.py``) and queried many times.

Distances
---------
- Without uncertainties: Euclidean distance between latents each divided by that dimension's
  standard deviation over the catalogue (``distance``), so no dimension dominates by scale.
- With ``latent_<i>_err`` columns (one per latent, 1-sigma): also ``distance_sigma``, the
  distance in units of the two spectra's combined errors,
  ``sqrt(sum_i (z_i - z'_i)^2 / (err_i^2 + err'_i^2))``, and ``p_consistent``, the chance of a
  distance at least that large between two draws of the same latents (chi-square with d
  degrees of freedom). Neighbours are ranked by ``distance_sigma``. The k-d tree cannot hold a
  per-pair metric, so it proposes candidates (Euclidean on latents divided by each
  dimension's median error: ``distance_sigma`` itself when errors are alike) and the
  candidates are re-ranked exactly; with ``max(100, 10 (k + 1))`` candidates the k nearest are
  missed only where errors differ by large factors between neighbours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlatent.core import InputError
from xlatent.core.vocabulary import latent_columns

#: Suffix of a latent's 1-sigma uncertainty column: ``latent_3`` -> ``latent_3_err``.
ERR_SUFFIX = "_err"
#: Fewest candidates the tree proposes for the error-weighted re-ranking.
MIN_CANDIDATES = 100
#: Columns shown beside the distances when the catalogue has them.
SHOWN_COLUMNS = ("spec_id", "name", "source_class", "net_counts_b", "obsid")
#: CSC source names start with this; ``ident`` may leave it out.
CSC_PREFIX = "2CXO "


def error_columns(df: pd.DataFrame, cols: list[str]) -> list[str] | None:
    """``latent_<i>_err`` for every latent column, or None unless all are present."""
    errs = [c + ERR_SUFFIX for c in cols]
    return errs if cols and all(c in df.columns for c in errs) else None


class LatentIndex:
    """A latent catalogue indexed for nearest-neighbour queries.

    ``catalog``: a table with ``spec_id`` and ``latent_<i>`` columns (optionally
    ``latent_<i>_err``, ``name``, ``source_class`` ...), e.g. from
    :func:`xlatent.model.catalog.read_latents`; ``source`` names it in error messages.
    Rows with a non-finite latent are left out of the index (``n_unindexed``).
    """

    def __init__(self, catalog: pd.DataFrame, source: str | Path = "<latent catalogue>") -> None:
        from sklearn.neighbors import KDTree

        self.source = str(source)
        self.catalog = catalog.reset_index(drop=True)
        self.columns = latent_columns(self.catalog)
        if not self.columns:
            raise InputError(self.source, "no latent_<i> columns: not a latent catalogue")
        if "spec_id" not in self.catalog:
            raise InputError(self.source, "no spec_id column: not a latent catalogue")
        z = self.catalog[self.columns].to_numpy(dtype=np.float64)
        ok = np.isfinite(z).all(axis=1)
        if not ok.any():
            raise InputError(self.source, "no row has finite latents")
        self.rows = np.flatnonzero(ok)  # index position -> catalogue row
        self.n_unindexed = int((~ok).sum())
        self.z = z
        sd = z[ok].std(axis=0)
        self.scale_sd = np.where(sd > 0, sd, 1.0)
        self.err = self._errors()
        # The tree's metric: error units when there are errors, else standard deviations.
        self.tree_scale = np.nanmedian(self.err[ok], axis=0) if self.err is not None else (
            self.scale_sd)  # fmt: skip
        self.tree = KDTree(z[ok] / self.tree_scale)
        self._by_id: dict[str, int] | None = None
        self._by_name: dict[str, list[int]] | None = None
        self._shown: dict[str, np.ndarray] | None = None

    def _errors(self) -> np.ndarray | None:
        """The 1-sigma latent errors (n, d), or None; unusable entries get their column's
        median (a row without errors is then treated as a typical one, not a perfect one)."""
        cols = error_columns(self.catalog, self.columns)
        if cols is None:
            return None
        e = self.catalog[cols].to_numpy(dtype=np.float64)
        good = np.isfinite(e) & (e > 0)
        if not good.any(axis=0).all():
            return None  # some dimension has no usable error at all
        med = np.array([np.median(e[good[:, j], j]) for j in range(e.shape[1])])
        return np.where(good, e, med[None, :])

    @property
    def has_errors(self) -> bool:
        return self.err is not None

    def locate(self, ident: str) -> tuple[int, str]:
        """Catalogue row of ``ident`` (a ``spec_id``, else a CSC ``name``, with or without the
        ``2CXO`` prefix, any case) and a note ("" or which of several rows was taken)."""
        ident = str(ident).strip()
        if self._by_id is None:  # built on the first query, then each lookup is a dict's
            ids = self.catalog["spec_id"].astype(str).str.strip().to_numpy()
            self._by_id = {}
            for row, sid in enumerate(ids):
                self._by_id.setdefault(sid, row)
        if ident in self._by_id:
            return self._by_id[ident], ""
        hit = self._rows_named(ident)
        if not hit.size:
            raise InputError(self.source, f"no spectrum with spec_id or name {ident!r}")
        if hit.size == 1:
            return int(hit[0]), ""
        # Several observations of one source: the one with the most counts speaks best for it.
        counts = self._column("net_counts_b", hit)
        pick = int(hit[np.nanargmax(counts)]) if np.isfinite(counts).any() else int(hit[0])
        return pick, (
            f"{ident} has {hit.size} spectra; using {self.catalog['spec_id'].iloc[pick]}"
            + (" (the most broad-band net counts)" if np.isfinite(counts).any() else "")
        )

    def _rows_named(self, ident: str) -> np.ndarray:
        """Rows whose CSC ``name`` is ``ident`` (any case, the ``2CXO`` prefix optional)."""
        if "name" not in self.catalog or not ident:
            return np.array([], dtype=np.int64)
        if self._by_name is None:
            names = self.catalog["name"].fillna("").astype(str).str.strip().str.upper()
            self._by_name = {}
            for row, name in enumerate(names.to_numpy()):
                if name:
                    self._by_name.setdefault(name, []).append(row)
        want = ident.upper()
        want = want if want.startswith(CSC_PREFIX) else CSC_PREFIX + want
        rows = self._by_name.get(ident.upper()) or self._by_name.get(want) or []
        return np.asarray(rows, dtype=np.int64)

    def _column(self, name: str, rows: np.ndarray) -> np.ndarray:
        if name not in self.catalog:
            return np.full(rows.size, np.nan)
        return pd.to_numeric(self.catalog[name].iloc[rows], errors="coerce").to_numpy(float)

    def query(self, row: int, k: int = 10) -> pd.DataFrame:
        """The ``k`` nearest neighbours of catalogue row ``row``, nearest first.

        One table row per spectrum: ``rank`` (0 = the query itself, then 1..k), the
        catalogue's identifying columns, ``distance`` and, with errors, ``distance_sigma`` and
        ``p_consistent`` (see the module docstring).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        q = self.z[row]
        if not np.isfinite(q).all():
            spec = self.catalog["spec_id"].iloc[row]
            raise InputError(self.source, f"spectrum {spec} has non-finite latents")
        n_idx = self.rows.size
        want = min(k + 1, n_idx)  # +1: the query itself is in the index
        if self.err is None:
            _, pos = self.tree.query((q / self.tree_scale)[None, :], k=want)
            cand = self.rows[pos[0]]
            cand = cand[cand != row][:k]
            order_key = None
        else:
            n_cand = min(n_idx, max(MIN_CANDIDATES, 10 * (k + 1)))
            _, pos = self.tree.query((q / self.tree_scale)[None, :], k=n_cand)
            cand = self.rows[pos[0]]
            cand = cand[cand != row]
            order_key = self._sigma_distance(row, cand)
            keep = np.argsort(order_key, kind="stable")[:k]
            cand, order_key = cand[keep], order_key[keep]
        return self._table(row, cand, order_key)

    def _sigma_distance(self, row: int, cand: np.ndarray) -> np.ndarray:
        var = self.err[row][None, :] ** 2 + self.err[cand] ** 2  # type: ignore[index]
        return np.sqrt((((self.z[cand] - self.z[row][None, :]) ** 2) / var).sum(axis=1))

    def _table(self, row: int, cand: np.ndarray, sigma: np.ndarray | None) -> pd.DataFrame:
        rows = np.concatenate([[row], cand]).astype(np.int64)
        if self._shown is None:
            # Once: the identifying columns as arrays (less those empty everywhere), so a
            # query costs the same on 400,000 rows as on 400 (pandas row picks cost ~1 ms).
            cat = self.catalog
            self._shown = {
                c: cat[c].to_numpy()
                for c in SHOWN_COLUMNS
                if c in cat and (c == "spec_id" or cat[c].astype(str).str.strip().ne("").any())
            }
        cols: dict[str, Any] = {"rank": np.arange(rows.size)}
        cols.update({c: v[rows] for c, v in self._shown.items()})
        diff = (self.z[rows] - self.z[row][None, :]) / self.scale_sd
        cols["distance"] = np.sqrt((diff**2).sum(axis=1))
        if sigma is not None:
            from scipy.stats import chi2

            d_sig = np.concatenate([[0.0], sigma])
            cols["distance_sigma"] = d_sig
            cols["p_consistent"] = chi2.sf(d_sig**2, df=len(self.columns))
        name = self._shown.get("name")
        if name is not None and str(name[row]).strip():
            names = np.array([str(x).strip() for x in name[rows]])
            cols["same_source"] = names == names[0]
        cols["catalog_row"] = rows
        return pd.DataFrame(cols)


def similar(
    catalog: pd.DataFrame | str | Path,
    ident: str,
    k: int = 10,
    *,
    index: LatentIndex | None = None,
) -> pd.DataFrame:
    """The ``k`` spectra whose latents are nearest to those of ``ident``.

    ``catalog``: a latent catalogue (DataFrame, or a parquet/FITS path); ``ident``: a
    ``spec_id`` or a CSC source ``name``; ``index``: a :class:`LatentIndex` of the same
    catalogue to reuse (building one is the slow part). Returns the table of
    :meth:`LatentIndex.query` (rank 0 is the query itself); ``table.attrs`` holds ``query``
    (its spec_id), ``note`` (which of a source's spectra was taken) and ``metric`` (what the
    distances mean).
    """
    if index is None:
        if not isinstance(catalog, pd.DataFrame):
            from xlatent.model.catalog import read_latents

            index = LatentIndex(read_latents(catalog), source=catalog)
        else:
            index = LatentIndex(catalog)
    row, note = index.locate(ident)
    table = index.query(row, k)
    table.attrs.update(query=str(index.catalog["spec_id"].iloc[row]), note=note,
                       metric=describe_metric(index))  # fmt: skip
    return table


def describe_metric(index: LatentIndex) -> str:
    """One sentence saying what the distance columns mean for this index."""
    base = (f"distance: Euclidean over {len(index.columns)} latents, each divided by its "
            "standard deviation over the catalogue")  # fmt: skip
    if not index.has_errors:
        return base + " (no latent_<i>_err columns: uncertainties not used)"
    return (base + "; ranked by distance_sigma: the distance in units of the two spectra's "
            "combined latent errors; p_consistent: chi-square probability of so large a "
            "distance between two draws of the same latents")  # fmt: skip


def format_table(table: pd.DataFrame) -> str:
    """The table as ``xlatent similar`` prints it (no internal row numbers)."""
    shown = table.drop(columns=["catalog_row"], errors="ignore")
    fmt: dict[str, Any] = {
        "distance": "{:.3f}".format,
        "distance_sigma": "{:.2f}".format,
        "p_consistent": "{:.3g}".format,
        "net_counts_b": "{:.0f}".format,
    }
    return shown.to_string(index=False, formatters={k: v for k, v in fmt.items() if k in shown})


def plot_similar(s: Any, table: pd.DataFrame, out: str | Path) -> tuple[Path, list[str]]:
    """Draw the query's and its neighbours' normalised spectra overlaid (atomically; the
    format from the suffix: .png, .pdf, .svg).

    ``s``: the SpectrumSet the catalogue was encoded from; ``table``: from :func:`similar`.
    Spectra are shown as :func:`xlatent.analysis.shapes.coarse_shapes` makes them (net counts
    over effective area x exposure, 32 bins, unit integral). Returns the path and the
    ``spec_id`` values of the table that the set lacks (not drawn).
    """
    import matplotlib.pyplot as plt

    from xlatent.analysis.shapes import coarse_shapes
    from xlatent.core import atomic_path

    where = {sid: i for i, sid in enumerate(s.meta["spec_id"].astype(str))}
    ids = table["spec_id"].astype(str).tolist()
    missing = [sid for sid in ids if sid not in where]
    drawn = [sid for sid in ids if sid in where]
    edges, shape, _ = coarse_shapes(s, np.array([where[sid] for sid in drawn], dtype=np.int64))
    centers = np.sqrt(edges[:-1] * edges[1:])
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    cmap = plt.get_cmap("viridis")
    rank = dict(zip(ids, table["rank"].tolist(), strict=True))
    # Legend entries say what each spectrum is, where the table knows: class, counts.
    extra = {sid: ", ".join(x for x in (
        str(table["source_class"].iloc[k]) if "source_class" in table else "",
        f"{table['net_counts_b'].iloc[k]:.0f} counts" if "net_counts_b" in table else "",
    ) if x.strip()) for k, sid in enumerate(ids)}  # fmt: skip
    n_nb = max(1, len(ids) - 1)
    for sid, y in zip(drawn, shape, strict=True):
        r = rank[sid]
        y = np.where(y > 0, y, np.nan)
        if r == 0:
            ax.step(centers, y, where="mid", color="black", lw=2.2, zorder=3,
                    label=f"{sid} (query{'; ' + extra[sid] if extra[sid] else ''})")  # fmt: skip
        else:
            ax.step(centers, y, where="mid", color=cmap((r - 1) / n_nb), lw=1.0, alpha=0.8,
                    label=f"{r}: {sid}" + (f" ({extra[sid]})" if extra[sid] else ""))  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [e for e in (0.5, 1.0, 2.0, 5.0, 8.0, 10.0) if edges[0] <= e <= edges[-1]]
    ax.set_xticks(ticks, [f"{e:g}" for e in ticks])
    ax.minorticks_off()
    ax.set_xlabel("energy (keV)")
    ax.set_ylabel("normalised photon flux density (keV$^{-1}$)")
    ax.set_title(f"{ids[0]} and its {len(ids) - 1} nearest neighbours in latent space",
                 fontsize=10)  # fmt: skip
    ax.legend(fontsize=6.5, ncol=2, loc="best")
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".").lower() or "png", dpi=110)
    plt.close(fig)
    return out, missing


__all__ = ["ERR_SUFFIX", "LatentIndex", "describe_metric", "error_columns", "format_table",
           "plot_similar", "similar"]  # fmt: skip
