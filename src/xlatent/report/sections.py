"""HTML helpers and the report sections that show metrics with intervals (headline,
clustering protocols and probe, paired differences, mutual information)."""

from __future__ import annotations

import html
import json
from typing import Any


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.{nd}g}"
        return f"{v:.{nd}f}"
    return _esc(v)


def _ci(v: Any, ci: Any) -> str | None:
    """``0.385 [0.322, 0.440]``: a value with its 95% interval (None when there is no value)."""
    if v is None:
        return None
    if not ci or len(ci) != 2 or None in ci:
        return _fmt(v)
    return f"{_fmt(v)} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _label(name: str, m: dict[str, Any]) -> str:
    """Row label of a feature set, saying what the reference sets are."""
    role = (m.get("features", {}).get(name) or {}).get("role")
    if name == "oracle":
        return "oracle (model family revealed; not a ceiling)"
    if name == "noiseless":
        return "noiseless (ceiling: spectra without noise)"
    return f"{name} (reference, probe only)" if role == "reference" else name


def _table(header: list[str], rows: list[list[Any]], row_class: list[str] | None = None) -> str:
    out = ["<table><tr>", *[f"<th>{_esc(h)}</th>" for h in header], "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{row_class[i]}"' if row_class and row_class[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _kv_table(d: dict[str, Any]) -> str:
    return _table(["quantity", "value"], [[k, v if not isinstance(v, (dict, list)) else
                                           json.dumps(v)] for k, v in d.items()])  # fmt: skip


def _skipped_note(m: dict[str, Any], prefix: str) -> str:
    items = [s for s in m.get("skipped", []) if s.get("analysis", "").startswith(prefix)]
    if not items:
        return ""
    return "".join(f'<p class="muted">Skipped {_esc(s["analysis"])}: {_esc(s["reason"])}</p>'
                   for s in items)  # fmt: skip


def _headline(m: dict[str, Any]) -> str:
    rows, classes = [], []
    for r in m.get("headline", []):
        rows.append([
            _label(r["features"], m), r.get("dim"),
            _ci(r.get("k8_bacc_8class"), r.get("k8_bacc_8class_ci95")),
            _ci(r.get("tuned_bacc_8class", r.get("clustering_bacc_8class")),
                r.get("tuned_bacc_8class_ci95")),
            _ci(r.get("k8_bacc_agn_vs_compact"), r.get("k8_bacc_agn_vs_compact_ci95")),
            _ci(r.get("tuned_bacc_agn_vs_compact", r.get("clustering_bacc_agn_vs_compact")),
                r.get("tuned_bacc_agn_vs_compact_ci95")),
            _ci(r.get("probe_bacc_8class"), r.get("probe_bacc_8class_ci95")),
            _ci(r.get("probe_bacc_agn_vs_compact"), r.get("probe_bacc_agn_vs_compact_ci95")),
            _ci(r.get("deviance_ratio"), r.get("deviance_ratio_ci95")),
        ])  # fmt: skip
        classes.append("")
    ref = m.get("reference", {})
    if ref:
        rows.append([f"reference study ({ref.get('source', '')}; k = 8)", 8, ref.get("bacc_8class"),
                     None, ref.get("bacc_agn_vs_compact"), None, None, None, None])  # fmt: skip
        classes.append("ref")
    chance = m.get("clustering", {}).get("chance_8class")
    unc = m.get("uncertainty", {}) or {}
    text = (
        "<p>Balanced accuracy (mean recall over classes) on held-out spectra, with 95% "
        "intervals in brackets. <b>Clustering, k = 8</b>: k-means with as many clusters as "
        "classes and a prior-corrected cluster→class map learned on the training split, the "
        "reference study's protocol and the like-for-like comparison with it; <b>tuned</b>: "
        "xlatent's own protocol, which also chooses k (8–32) and the method on the training "
        "split — more freedom, so not comparable with the study. "
        f"Clustering figures are means over {_fmt(unc.get('n_repeats'))} repeats "
        f"(split: {_esc(unc.get('split', '?'))}); intervals from a class-stratified "
        "bootstrap of the test rows pooled over repeats. <b>Probe</b>: a supervised "
        "gradient-boosted classifier (5-fold CV; interval: bootstrap of the out-of-fold "
        "predictions), an upper reference for what the features contain; the reference "
        "rows are probed only: <b>spectrum</b> the uncompressed observed spectrum, "
        "<b>noiseless</b> the simulator's noiseless spectra binned alike — the ceiling for any "
        "representation of these spectra. The oracle's true parameters spell out the "
        "class-dependent model family, so its figures are no ceiling. "
        "<b>Deviance ratio</b>: mean Poisson deviance of the reconstruction over that of the "
        "noiseless truth (1 = as good as the truth). "
        + (f"Chance level for 8 classes: {_fmt(chance)}. " if chance else "")
        + "AGN vs compact: AGN against HMXB+LMXB+NS (chance 0.5).</p>"
    )
    if not rows:
        return text + "<p>No feature sets were evaluated.</p>"
    return text + _table(
        ["features", "dim", "clustering k=8: 8-class", "tuned: 8-class",
         "clustering k=8: AGN vs compact", "tuned: AGN vs compact", "probe 8-class",
         "probe AGN vs compact", "deviance ratio"], rows, classes,
    ) + _differences(m)  # fmt: skip


_DIFF_TITLES = {"k8": "clustering k = 8", "k8_majority": "k = 8, majority-vote map",
                "tuned": "tuned clustering", "probe": "probe"}  # fmt: skip


def _differences(m: dict[str, Any]) -> str:
    d = m.get("differences", {}) or {}
    rows = []
    for proto, title in _DIFF_TITLES.items():
        for pair, v in (d.get(proto) or {}).items():
            rows.append(
                [
                    title,
                    pair.replace("_minus_", " − "),
                    _ci(v.get("bacc_8class"), v.get("bacc_8class_ci95")),
                    _ci(v.get("bacc_agn_vs_compact"), v.get("bacc_agn_vs_compact_ci95")),
                ]
            )
    for name, v in (d.get("tuned_minus_k8") or {}).items():
        rows.append(
            [
                "tuned − k = 8 (protocol effect)",
                name,
                _ci(v.get("bacc_8class"), v.get("bacc_8class_ci95")),
                _ci(v.get("bacc_agn_vs_compact"), v.get("bacc_agn_vs_compact_ci95")),
            ]
        )
    if not rows:
        return ""
    like = ""
    if any("latent_flux_minus_hardness_flux" in (d.get(p) or {}) for p in _DIFF_TITLES):
        like = (
            " Like for like: <b>latent − hardness_ratios</b> (shape alone) and "
            "<b>latent_flux − hardness_flux</b> (shape and brightness; the latents describe "
            "the shape only). The <b>hardness</b> set's log net counts mix the flux with the "
            "exposure and the instrument; on the simulated sky that makes it the weakest "
            "baseline for clustering."
        )
    return (
        "<p>Paired differences of balanced accuracy (same repeats, splits and bootstrap rows "
        "for both; an interval that excludes 0 is a difference the test set resolves)."
        + like + "</p>"
        + _table(["protocol", "difference", "8-class", "AGN vs compact"], rows)
    )  # fmt: skip


def _clustering(m: dict[str, Any], figs: str) -> str:
    c = m.get("clustering", {}) or {}
    sets = {k: v for k, v in c.items() if isinstance(v, dict) and (v.get("methods") or
                                                                   v.get("protocols"))}  # fmt: skip
    if not sets:
        return "<p>Not evaluated.</p>" + _skipped_note(m, "clustering")
    out = f"<p>Protocols: {_esc(c.get('protocol', ''))}.</p>"
    prow = []
    for name, v in sets.items():
        for proto, title in (("k8", "k = 8, prior-corrected map"),
                             ("k8_majority", "k = 8, majority-vote map"),
                             ("tuned", "tuned (k, method chosen on train)")):  # fmt: skip
            r = (v.get("protocols") or {}).get(proto)
            if r:
                prow.append([_label(name, m), title,
                             _ci(r.get("bacc_8class"), r.get("bacc_8class_ci95")),
                             _ci(r.get("bacc_agn_vs_compact"),
                                 r.get("bacc_agn_vs_compact_ci95"))])  # fmt: skip
    if prow:
        out += (
            "<p>Both protocols and the majority-vote map (mean over repeats, 95% interval); "
            "the k = 8 majority-vote row shows how much of the figure the cluster→class map "
            "makes:</p>"
            + _table(["features", "protocol", "test bacc 8-class", "test AGN vs compact"], prow)
        )  # fmt: skip
    rows = []
    for name, v in sets.items():
        for method, r in (v.get("methods") or {}).items():
            rows.append([name + (" ★" if method == v.get("method") else ""), method,
                         f"{r.get('param_name')}={r.get('param')}", r.get("n_clusters"),
                         r.get("train_inner_bacc"), r.get("bacc_8class"),
                         r.get("bacc_8class_majority"), r.get("bacc_agn_vs_compact")])  # fmt: skip
    if rows:
        out += "<p>Tuned protocol, every method (first repeat):</p>" + _table(
            ["features (★ = chosen on train)", "method", "parameter", "clusters",
             "train inner bacc", "test bacc 8-class", "majority-vote map",
             "test AGN vs compact"], rows)  # fmt: skip
    p = m.get("probe", {}) or {}
    if p:
        out += "<p>Supervised probe (gradient boosting, 5-fold stratified CV):</p>" + _table(
            ["features", "spectra", "bacc 8-class", "bacc AGN vs compact"],
            [[_label(k, m), v.get("n"), _ci(v.get("bacc_8class"), v.get("bacc_8class_ci95")),
              _ci(v.get("bacc_agn_vs_compact"), v.get("bacc_agn_vs_compact_ci95"))]
             for k, v in p.items()],
        )  # fmt: skip
        out += _probe_by_counts(p)
    return out + _skipped_note(m, "clustering") + figs


def _probe_by_counts(p: dict[str, Any]) -> str:
    out = ""
    for key, task in (("bacc_8class", "8 classes"), ("bacc_agn_vs_compact", "AGN vs compact")):
        per = {k: v.get(f"{key}_by_counts") for k, v in p.items() if v.get(f"{key}_by_counts")}
        if not per:
            continue
        first = next(iter(per.values()))
        rows = [[f"{b['counts_lo']:.0f}–{b['counts_hi']:.0f}", b["n"],
                 *[v[i]["bacc"] if i < len(v) else None for v in per.values()]]
                for i, b in enumerate(first)]  # fmt: skip
        out += (f"<p>Probe balanced accuracy, {task}, by broad-band net counts (quintiles "
                "of the probed spectra; every feature set on the same rows):</p>")  # fmt: skip
        out += _table(["net counts", "spectra", *per], rows)
    return out


def _variability(m: dict[str, Any]) -> str:
    mi = m.get("mutual_information", {}) or {}
    sets = {k: v for k, v in mi.items() if isinstance(v, dict) and k not in
            ("n_rows", "target_type")}  # fmt: skip
    if not sets:
        return "<p>Not evaluated.</p>" + _skipped_note(m, "mutual_information")
    vars_ = [v for v in ("var_prob_b", "var_index_b") if any(v in s for s in sets.values())]
    kinds = mi.get("target_type", {}) or {}
    k = mi.get("k_equal")
    header = ["features"]
    for v in vars_:
        header += [f"{v}: best column (p)", f"{v}: mean of best {k} (p)", f"{v}: excess"]
    rows = []
    for name, s in sets.items():
        row: list[Any] = [name]
        for v in vars_:
            row += [f"{_fmt(s.get(v))} (p = {_fmt(s.get(v + '_p_value'))})",
                    f"{_fmt(s.get(v + '_topk'))} (p = {_fmt(s.get(v + '_topk_p_value'))})",
                    s.get(v + "_topk_excess")]  # fmt: skip
        rows.append(row)
    types = "; ".join(f"{_esc(v)}: {_esc(t)}" for v, t in kinds.items())
    return (
        f"<p>{_esc(mi.get('estimator', ''))}. Targets: {types}. "
        f"{_esc(mi.get('equal_dimension', ''))}. p-values are permutation p-values "
        "(the statistic recomputed on shuffled targets); <b>excess</b> is the mean of the best "
        f"{k} columns minus its mean under the null (nats): a bias-corrected value comparable "
        "across sets.</p>" + _table(header, rows) + _skipped_note(m, "mutual_info")
    )  # fmt: skip


def _invariance(m: dict[str, Any]) -> str:
    """The same fresh sources through several responses: probe, deviance, latent distance."""
    inv = m.get("response_invariance") or {}
    rows = inv.get("table") or []
    if not rows:
        return ("<p>Not evaluated (it needs the model and the same sources simulated through "
                "several responses: the demo, or <code>xlatent evaluate --model</code> on a "
                "simulated set).</p>" + _skipped_note(m, "response_invariance"))  # fmt: skip
    ref = inv.get("reference") or {}
    spread = inv.get("spread") or {}
    first = inv.get("first", "")
    out = (
        f"<p>{_fmt(inv.get('n_sources'))} fresh sources (never trained on), each folded "
        f"through every response below. The probe (gradient boosting) is fitted on the "
        f"latents of the evaluated set's training split and scores "
        f"{_ci(ref.get('probe_bacc_8class'), ref.get('probe_bacc_8class_ci95'))} "
        f"(8-class balanced accuracy) on its test split (mean counts "
        f"{_fmt(ref.get('mean_counts'), 0)}); <b>change</b> is each response's accuracy minus "
        "that. <b>Latent distance</b>: the median over sources of the distance between a "
        f"source's latents under <code>{_esc(first)}</code> and under the response, in units "
        f"of the within-class spread ({_esc(spread.get('definition', ''))}; spread "
        f"{_fmt(spread.get('total'))}). The <b>noise floor</b> is the same distance between "
        f"<code>{_esc(first)}</code> and an independent Poisson realisation of it "
        "(<code>noise_twin</code>): what photon noise alone gives. <b>Noiseless spectra</b>: "
        "the same distance between the sources' noiseless spectra (truth + background), the "
        "instrument's part alone.</p>"
    )  # fmt: skip
    table = [[r["response"], r.get("mean_counts"),
              _ci(r.get("probe_bacc_8class"), r.get("probe_bacc_8class_ci95")),
              r.get("probe_change"), r.get("deviance_ratio"), r.get("mean_deviance_per_bin"),
              r.get("distance_to_first"), r.get("noise_floor"), r.get("distance_noiseless")]
             for r in rows]  # fmt: skip
    out += _table(["response", "mean counts", "probe bacc 8-class", "change",
                   "deviance ratio", "deviance per bin", "latent distance / spread",
                   "noise floor", "noiseless spectra"], table)  # fmt: skip
    pairs = {**(inv.get("pairs") or {})}
    if inv.get("noise_floor"):
        pairs[f"{first} vs noise_twin (noise floor)"] = inv["noise_floor"]
    classes = sorted({c for p in pairs.values() for c in p.get("per_class", {})})
    if pairs and classes:
        out += "<p>Median latent distance / spread per class:</p>" + _table(
            ["class", *pairs], [[c, *[p.get("per_class", {}).get(c) for p in pairs.values()]]
                                for c in classes])  # fmt: skip
    terc = [p.get("per_counts_tercile") or [] for p in pairs.values()]
    if pairs and terc[0]:
        out += (f"<p>Median latent distance / spread per tercile of broad-band net counts "
                f"(of <code>{_esc(first)}</code>):</p>") + _table(
            ["net counts", *pairs],
            [[f"{b['counts_lo']:.0f}–{b['counts_hi']:.0f}",
              *[t[i]["median"] if i < len(t) else None for t in terc]]
             for i, b in enumerate(terc[0])])  # fmt: skip
    return out + _skipped_note(m, "response_invariance")
