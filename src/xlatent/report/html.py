"""Self-contained HTML report from an evaluation directory (``metrics.json`` + PNGs).

Everything is inline: figures as base64 ``data:`` URIs, tables as HTML, a small stylesheet;
the file can be mailed or archived and opens without network access.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
from pathlib import Path
from typing import Any

from xlatent.report.ood import errors_and_ood
from xlatent.report.sections import (
    _ci,
    _clustering,
    _esc,
    _fmt,
    _headline,
    _invariance,
    _kv_table,
    _skipped_note,
    _table,
    _variability,
)

#: Sections in reading order: (id, title). Every one is always rendered (possibly saying
#: that the analysis was skipped), so a reader always finds the same structure.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("headline", "Headline: latents against baselines"),
    ("data", "Data"),
    ("model", "Model"),
    ("features", "Feature sets"),
    ("reconstruction", "Reconstruction quality"),
    ("invariance", "Response invariance: the same sources through other responses"),
    ("errors", "Latent errors and out-of-distribution spectra"),
    ("clustering", "Clustering into source classes"),
    ("regression", "Physical parameters: regression and correlations"),
    ("interpretation", "What each latent dimension tracks"),
    ("variability", "Variability: mutual information"),
    ("maps", "Latent-space map"),
    ("unusual", "Unusual spectra and the interactive explorer"),
    ("skipped", "Skipped analyses, notes and run details"),
)

#: metrics.json versions this renderer reads (1: single protocol, no intervals; 2: issue 14;
#: 3: response invariance, issue 12).
SUPPORTED_FORMAT_VERSIONS = (1, 2, 3)
#: Sections that files older than a format version cannot have: left out of their report.
SECTION_SINCE_VERSION = {"invariance": 3}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
tr.ref td{background:#fff8e1;font-style:italic}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.88em;color:#555}.muted{color:#777;font-size:.9em}
nav a{margin-right:.8em}code{background:#f5f5f5;padding:0 .2em}
"""


def _figures(eval_dir: Path, figures: list[dict[str, str]], section: str) -> str:
    out = []
    for f in figures:
        if f.get("section") != section:
            continue
        path = eval_dir / f["file"]
        if not path.is_file():
            out.append(f'<p class="muted">Figure {_esc(f["file"])} is missing.</p>')
            continue
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        out.append(
            f'<figure><img alt="{_esc(f["file"])}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(f.get('caption', ''))}</figcaption></figure>"
        )
    return "".join(out)


# ------------------------------------------------------------------------------ sections


def _data(m: dict[str, Any]) -> str:
    d = m.get("data", {})
    if not d:
        return "<p>No data description.</p>"
    keys = ["n_spectra_in_set", "n_evaluated", "n_without_latents", "n_labelled", "n_train",
            "n_test", "split_source", "has_truth", "n_bins", "energy_range_kev",
            "median_exposure_s"]  # fmt: skip
    out = _kv_table({k: d.get(k) for k in keys if k in d})
    q = d.get("net_counts_b_quantiles", {})
    if q:
        out += "<p>Broad-band (0.5–7 keV) net counts:</p>" + _table(list(q), [list(q.values())])
    cls = d.get("classes", {})
    if cls:
        out += "<p>Labelled spectra per class:</p>" + _table(
            ["class", "spectra"], [[k, v] for k, v in cls.items()]
        )
    else:
        out += "<p>No class labels (source_class is empty).</p>"
    return out


def _model(m: dict[str, Any]) -> str:
    out = ""
    for key, title in (("model", "Latent model"), ("pca_model", "PCA baseline")):
        info = m.get(key) or {}
        if not info:
            out += f"<p>{title}: not given (reconstruction not evaluated for it).</p>"
            continue
        flat: dict[str, Any] = {}
        for k, v in info.items():
            if isinstance(v, dict):
                flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
            else:
                flat[k] = v
        out += f"<h3>{title}</h3>" + _kv_table(flat)
    return out


def _features(m: dict[str, Any]) -> str:
    f = m.get("features", {})
    rows = [[n, v.get("dim"), v.get("n_columns"), v.get("description")] for n, v in f.items()]
    return (
        "<p>All sets are standardised; missing values are median-imputed with an indicator "
        "column.</p>" + _table(["set", "dim", "columns used", "description"], rows)
    )


def _reconstruction(m: dict[str, Any], figs: str) -> str:
    r = m.get("reconstruction", {}) or {}
    models = {k: v for k, v in r.items() if isinstance(v, dict)}
    if not models:
        return "<p>Not evaluated (no model given).</p>" + _skipped_note(m, "reconstruction")
    rows = [[k, v.get("n"), v.get("mean_deviance_per_bin"),
             _ci(v.get("deviance_ratio"), v.get("deviance_ratio_ci95"))]
            for k, v in models.items()]  # fmt: skip
    out = f"<p>Spectra: {_esc(r.get('split', ''))}. Truth's own mean deviance per bin: " \
          f"{_fmt(r.get('truth_mean_deviance_per_bin'))}. Ratios with their 95% bootstrap " \
          "intervals.</p>"  # fmt: skip
    out += _table(["model", "spectra", "mean deviance per bin", "deviance ratio"], rows)

    def by(key: str, k: str, *path: str) -> str | None:
        """Model ``k``'s ``key`` at ``path`` (e.g. a class, or a column and its value) with
        the interval stored at the same path under ``key_ci95``."""
        value, ci = models[k].get(key) or {}, models[k].get(f"{key}_ci95") or {}
        for step in path:
            value, ci = (value or {}).get(step), (ci or {}).get(step)
        return _ci(value, ci)

    classes = sorted({c for v in models.values() for c in v.get("per_class", {})})
    if classes:
        out += "<p>Deviance ratio per class:</p>" + _table(
            ["class", *models], [[c, *[by("per_class", k, c) for k in models]] for c in classes]
        )
    # Every model is scored on the same rows and counts, so their deciles share edges.
    deciles = {k: v.get("per_counts_decile") or [] for k, v in models.items()}
    first = next((d for d in deciles.values() if d), [])
    if first:
        out += "<p>Deviance ratio per decile of broad-band net counts:</p>" + _table(
            ["net counts", *models],
            [[f"{d['counts_lo']:,.0f}–{d['counts_hi']:,.0f}",
              *[_ci(deciles[k][i]["ratio"], deciles[k][i].get("ratio_ci95"))
                if i < len(deciles[k]) else None for k in models]]
             for i, d in enumerate(first)],
        )  # fmt: skip
    # Deviance ratio per response type (chip_type, detector): a model that reconstructs one
    # instrument worse than another shows here.
    per_resp = [v.get("per_response") or {} for v in models.values()]
    keys = sorted({(col, val) for pr in per_resp for col in pr for val in pr[col]})
    if keys:
        out += "<p>Deviance ratio per response type:</p>" + _table(
            ["response", *models],
            [[f"{col} {val}", *[by("per_response", k, col, val) for k in models]]
             for col, val in keys],
        )  # fmt: skip
    return out + _skipped_note(m, "reconstruction") + figs


def _regression(m: dict[str, Any], figs: str) -> str:
    r = m.get("regression", {}) or {}
    lin = m.get("regression_linear", {}) or {}
    sets = [k for k, v in r.items() if v]
    if not sets:
        return "<p>Not evaluated.</p>" + _skipped_note(m, "regression")
    qs = list(dict.fromkeys(q for s in sets for q in r[s]))
    info = m.get("regression_info", {})
    targets = info.get("targets") or {}  # what each quantity is and where it comes from
    rows = []
    for q in qs:
        row: list[Any] = [q, targets.get(q, "")] if targets else [q]
        for s in sets:
            a, b = r[s].get(q), lin.get(s, {}).get(q)
            row.append(f"{_fmt(a)} ({_fmt(b)})" if a is not None else None)
        rows.append(row)
    out = (
        f"<p>5-fold cross-validated R² from each feature set: {_esc(info.get('nonlinear', ''))}"
        f" (linear ridge in parentheses), on {_fmt(info.get('subsample'))} spectra; rows where "
        "the quantity is undefined are left out. <code>hr_counts_*</code> are count hardness "
        "ratios of the spectra, <code>catalog_*</code> CSC catalogue columns.</p>"
    )
    head = ["quantity", "source"] if targets else ["quantity"]
    return out + _table([*head, *sets], rows) + _skipped_note(m, "regression") + figs


def _interpretation(m: dict[str, Any], figs: str) -> str:
    it = m.get("interpretation", {}) or {}
    top = it.get("top_expressions", {})
    if not top:
        return "<p>Not evaluated.</p>" + _skipped_note(m, "interpretation")
    rows = []
    for dim, exprs in top.items():
        for k, e in enumerate(exprs):
            rows.append([dim if k == 0 else "", e["expression"], e["rho"], e["complexity"]])
    out = (
        f"<p>Exhaustive search over <code>{_esc(it.get('grammar', ''))}</code> built from the "
        "soft (S, 0.5–1.2 keV), medium (M, 1.2–2), hard (H, 2–7) and broad (B, 0.5–7) band "
        "net counts (C) and true absorbed fluxes (F); ranked by |Spearman ρ| minus "
        f"{_fmt(it.get('parsimony_per_complexity'))} per unit complexity.</p>"
    )
    return out + _table(["latent", "expression", "Spearman ρ", "complexity"], rows) + figs


def _link(target: str | Path | None, report: Path) -> str | None:
    """``target`` as a link from ``report``: relative to the report's folder when possible."""
    if target is None:
        return None
    import os

    try:
        rel = os.path.relpath(Path(target).absolute(), report.absolute().parent)
    except ValueError:  # another drive (Windows)
        rel = str(Path(target).absolute())
    return Path(rel).as_posix()


def _cell(v: Any, column: str) -> Any:
    """Counts as whole numbers; everything else as it is."""
    if column == "net_counts_b" and isinstance(v, float) and v == v:
        return f"{v:,.0f}"
    return v


def _unusual(m: dict[str, Any], explorer: str | None) -> str:
    """A link to the explorer page (when one was made) and the most unusual spectra."""
    if explorer:
        out = (f'<p><a href="{_esc(explorer)}"><b>Open the interactive latent map</b></a> '
               f"(<code>{_esc(explorer)}</code>, made by <code>xlatent explore</code>): colour "
               "by class, hardness, N<sub>H</sub> or unusualness, hover and click points for "
               "their spectra, lasso a group and download its ids.</p>")  # fmt: skip
    else:
        out = ("<p class='muted'>No interactive map was made for this report; "
               "<code>xlatent explore LATENTS --set SET --out explore.html</code> makes one, "
               "<code>xlatent report --explorer explore.html</code> links it.</p>")  # fmt: skip
    u = m.get("unusual") or {}
    rows = u.get("rows") or []
    if not rows:
        return (
            out
            + "<p>No list of unusual spectra in this evaluation.</p>"
            + _skipped_note(m, "unusual")
        )
    cols = [c for c in ("spec_id", "name", "source_class", "net_counts_b")
            if any(str(r.get(c, "")).strip() for r in rows)]  # fmt: skip
    out += (f"<p>The {len(rows)} most unusual of {_fmt(u.get('n_scored'))} spectra, ranked by "
            f"{_esc(u.get('description', u.get('score', '')))}; <code>xlatent similar "
            "LATENTS ID</code> shows what each one resembles most.</p>")  # fmt: skip
    return out + _table(["rank", *cols, str(u.get("score", "score"))],
                        [[i + 1, *[_cell(r.get(c), c) for c in cols], r.get("score")]
                         for i, r in enumerate(rows)])  # fmt: skip


def _details(m: dict[str, Any]) -> str:
    sk = m.get("skipped", [])
    out = (
        _table(["analysis", "reason"], [[s["analysis"], s["reason"]] for s in sk])
        if sk
        else "<p>Nothing was skipped.</p>"
    )
    for note in m.get("notes", []):
        out += f"<p>{_esc(note)}</p>"
    sub = m.get("subsampling", {})
    if sub:
        out += f"<p>Subsampling (max_points = {_fmt(sub.get('max_points'))}): " \
               f"{_esc(sub.get('applies_to', ''))}.</p>"  # fmt: skip
    t = m.get("timings_s", {})
    if t:
        out += "<p>Run time (s):</p>" + _table(list(t), [list(t.values())])
    return out


def render_report(
    eval_dir: str | Path, out_html: str | Path, explorer: str | Path | None = None
) -> Path:
    """Write one self-contained HTML report of the evaluation in ``eval_dir``; returns its path.

    Reads ``eval_dir/metrics.json`` (from :func:`xlatent.analysis.evaluate`) and embeds the
    figures it lists. ``explorer``: the page of ``xlatent explore`` to link (relative to the
    report when it is a path on this machine). A file of another ``format`` or of a
    ``format_version`` not in ``SUPPORTED_FORMAT_VERSIONS`` is refused with an ``InputError``.
    The write is atomic.
    """
    from xlatent.core import InputError, atomic_write_text

    eval_dir = Path(eval_dir)
    mpath = eval_dir / "metrics.json"
    if not mpath.is_file():
        raise InputError(mpath, "no metrics.json; run `xlatent evaluate` first")
    try:
        m = json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(mpath, f"not valid JSON ({exc})") from None
    version = m.get("format_version") if isinstance(m, dict) else None
    if not isinstance(m, dict) or m.get("format") != "xlatent.metrics":
        raise InputError(mpath, "not an xlatent metrics file (format is not 'xlatent.metrics')")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise InputError(
            mpath,
            f"metrics format_version {version!r} is not one this xlatent can render "
            f"(supported: {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}); re-run "
            "`xlatent evaluate` with this version, or render with the xlatent that wrote it",
        )
    figures = m.get("figures", [])

    def fig(section: str) -> str:
        return _figures(eval_dir, figures, section)

    body = {
        "headline": _headline(m),
        "data": _data(m),
        "model": _model(m),
        "features": _features(m),
        "reconstruction": _reconstruction(m, fig("reconstruction")),
        "invariance": _invariance(m),
        "errors": errors_and_ood(m),
        "clustering": _clustering(m, fig("clustering")),
        "regression": _regression(m, fig("regression")),
        "interpretation": _interpretation(m, fig("interpretation")),
        "variability": _variability(m),
        "maps": (fig("maps") or "<p>No map.</p>") + _skipped_note(m, "maps"),
        "unusual": _unusual(m, _link(explorer, Path(out_html))),
        "skipped": _details(m),
    }
    known = {s for s, _ in SECTIONS}
    other = "".join(_figures(eval_dir, [f], f.get("section", "")) for f in figures
                    if f.get("section") not in known)  # fmt: skip
    if other:
        body["skipped"] += "<h3>Other figures</h3>" + other
    from xlatent._version import __version__

    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [(sid, title) for sid, title in SECTIONS
                if version >= SECTION_SINCE_VERSION.get(sid, 0)]  # fmt: skip
    nav = "".join(f'<a href="#{sid}">{_esc(title.split(":")[0])}</a>' for sid, title in sections)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>xlatent evaluation report</title><style>{_CSS}</style></head><body>",
        "<h1>xlatent: latent representations of X-ray spectra — evaluation report</h1>",
        f"<p class='muted'>Generated {stamp} by xlatent {_esc(__version__)} from "
        f"<code>{_esc(eval_dir)}</code>.</p><nav>{nav}</nav>",
    ]
    for sid, title in sections:
        parts.append(f'<section id="{sid}"><h2>{_esc(title)}</h2>{body[sid]}</section>')
    parts.append("</body></html>")
    out = Path(out_html)
    atomic_write_text(out, "\n".join(parts))
    return out
