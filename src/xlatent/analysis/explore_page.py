"""The explorer page itself: Bokeh models and the JavaScript that links them.

Built by :func:`xlatent.analysis.explore.explore`. Named models, so a test (or a curious
user in the browser console) finds them with ``Bokeh.documents[0].get_model_by_name(...)``:
``points`` (the map's data: ``x``, ``y``, ``spec_id``, ``cls``, ``counts``, ``c`` = the
colour values), ``values`` (one column per colour option), ``spectra`` (the per-point coarse
spectra, uint8 codes, ``obs`` and ``rec``), ``spectrum`` (the curves drawn), ``info`` (what
was clicked), ``hovered``, ``selection`` (how many are selected), ``colour`` (the selector)
and ``export`` (the CSV button).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlatent.core.vocabulary import CLASSES

#: Class colours: tab10 without its grey, as the report's static map (maps._PALETTE).
CLASS_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#bcbd22"]  # fmt: skip
NAN_COLOUR = "#cfcfcf"

_DECODE_JS = """
function decode(arr, i, nb, lo, hi) {
  const y = new Array(2 * nb);
  for (let j = 0; j < nb; j++) {
    const c = arr[i * nb + j];
    const v = c > 0 ? Math.pow(10, lo + (c - 1) / 254 * (hi - lo)) : NaN;
    y[2 * j] = v; y[2 * j + 1] = v;
  }
  return y;
}
"""

_SHOW_JS = (
    _DECODE_JS
    + """
const idx = points.selected.indices;
selection.text = idx.length + " selected";
if (idx.length === 0) { return; }
const i = idx[0];
const d = points.data;
const nb = meta.nb;
const upd = Object.assign({}, spectrum.data);
upd.obs = spectra ? decode(spectra.data.obs, i, nb, meta.lo, meta.hi) : upd.obs;
if (spectra && meta.has_rec) { upd.rec = decode(spectra.data.rec, i, nb, meta.lo, meta.hi); }
spectrum.data = upd;
const name = d.name ? " (" + d.name[i] + ")" : "";
info.text = "<b>" + d.spec_id[i] + "</b>" + name + ": class " + d.cls[i] + ", " +
  Math.round(d.counts[i]) + " net counts" +
  (spectra ? "" : " (no spectra: run xlatent explore with --set)") +
  (idx.length > 1 ? " &mdash; first of " + idx.length + " selected" : "");
"""
)

_HOVER_JS = (
    _DECODE_JS
    + """
const hit = cb_data.index.indices;
if (!hit.length) { return; }
const i = hit[0];
hovered.text = "hovered: " + points.data.spec_id[i];
if (!spectra) { return; }
const upd = Object.assign({}, spectrum.data);
upd.hov = decode(spectra.data.obs, i, meta.nb, meta.lo, meta.hi);
spectrum.data = upd;
"""
)

_COLOUR_JS = """
const k = options.indexOf(colour.value);
const opt = meta.options[k];
const upd = Object.assign({}, points.data);
upd.c = values.data["v" + k];
cmap.low = opt.low; cmap.high = opt.high; cmap.palette = opt.palette;
points.data = upd;
bar.visible = opt.kind !== "class";
bar.title = opt.label;
legend.text = opt.legend;
"""

_EXPORT_JS = """
const idx = points.selected.indices;
if (!idx.length) { selection.text = "nothing selected: draw a lasso around points first"; return; }
const d = points.data;
const q = (s) => /[",\\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
const lines = ["spec_id,name,source_class,net_counts_b"];
for (const i of idx) {
  lines.push([q(String(d.spec_id[i])), q(d.name ? String(d.name[i]) : ""), q(String(d.cls[i])),
              String(Number(d.counts[i].toPrecision(6)))].join(","));
}
const blob = new Blob([lines.join("\\n") + "\\n"], {type: "text/csv"});
const a = document.createElement("a");
a.href = URL.createObjectURL(blob);
a.download = "xlatent_selection.csv";
document.body.appendChild(a); a.click(); a.remove();
selection.text = idx.length + " selected; saved xlatent_selection.csv";
"""


def _option_meta(opt: Any) -> dict[str, Any]:
    """Colour range, palette and legend of one selector entry."""
    from bokeh.palettes import Viridis256

    if opt.kind == "class":
        present = [c for k, c in enumerate(CLASSES) if (opt.values == k).any()]
        legend = (
            " ".join(
                f'<span style="color:{CLASS_PALETTE[CLASSES.index(c)]}">&#9679;</span> {c}'
                for c in present
            )
            + f' <span style="color:{NAN_COLOUR}">&#9679;</span> unlabelled'
        )
        return {"kind": "class", "label": opt.label, "low": -0.5, "high": len(CLASSES) - 0.5,
                "palette": CLASS_PALETTE, "legend": legend}  # fmt: skip
    v = opt.values[np.isfinite(opt.values)]
    lo, hi = np.percentile(v, [1, 99]) if v.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    legend = f"colour: {html.escape(opt.label)} ({html.escape(opt.description)}); grey: no value"
    return {"kind": "linear", "label": opt.label, "low": float(lo), "high": float(hi),
            "palette": list(Viridis256), "legend": legend}  # fmt: skip


def _header(info: dict[str, Any], n_shown: int, payload: dict | None) -> str:
    e = html.escape
    spectra = ("no SpectrumSet given (<code>--set</code>): the map only" if payload is None
               else "spectra: net counts over effective area x exposure on 32 coarse bins, "
               "unit integral" + (f"; dashed: {e(payload['rec_label'])}" if payload["rec"]
                                  is not None else ""))  # fmt: skip
    notes = "".join(f"<br>{e(n)}" for n in info.get("notes", []))
    return (
        "<h2 style='margin:0.2em 0'>xlatent explorer</h2>"
        f"<div style='font-size:90%;color:#444'>Catalogue <code>{e(info['source'])}</code>: "
        f"<b>{n_shown:,}</b> points shown ({e(info['sampling'])}). "
        f"Map: <b>{e(info['projection'].upper())}</b> of the standardised latents "
        f"({e(info['projection_why'])}). Unusualness: {e(info['score'])}. {spectra}."
        f"<br>Hover a point to preview its spectrum (grey), click to show it; drag a lasso to "
        "select points (the toolbar switches to pan or box select) and download their ids."
        f"{notes}</div>"
    )


def write_page(
    out: Path,
    sub: pd.DataFrame,
    xy: np.ndarray,
    options: list[Any],
    payload: dict[str, Any] | None,
    info: dict[str, Any],
) -> Path:
    """Build the page for the shown rows ``sub`` at map positions ``xy``; write it atomically."""
    from bokeh.embed import file_html
    from bokeh.layouts import column, row
    from bokeh.models import (
        Button,
        ColorBar,
        ColumnDataSource,
        CustomJS,
        Div,
        HoverTool,
        LassoSelectTool,
        LinearColorMapper,
        Range1d,
        Select,
        TapTool,
    )
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    from xlatent.core import atomic_write_text

    n = len(sub)
    metas = [_option_meta(o) for o in options]
    labels = [o.label for o in options]
    cls = sub["source_class"].fillna("").astype(str) if "source_class" in sub else None
    counts = (pd.to_numeric(sub["net_counts_b"], errors="coerce") if "net_counts_b" in sub
              else pd.Series(np.full(n, np.nan)))  # fmt: skip
    data: dict[str, Any] = {
        "x": xy[:, 0], "y": xy[:, 1], "spec_id": sub["spec_id"].astype(str).tolist(),
        "cls": (cls.where(cls != "", "unlabelled").tolist() if cls is not None
                else ["unlabelled"] * n),
        "counts": counts.to_numpy(dtype=np.float32), "c": options[0].values.astype(np.float32),
    }  # fmt: skip
    if "name" in sub and (sub["name"].fillna("").astype(str) != "").any():
        data["name"] = sub["name"].fillna("").astype(str).tolist()
    points = ColumnDataSource(data, name="points")
    values = ColumnDataSource({f"v{k}": o.values.astype(np.float32) for k, o in
                               enumerate(options)}, name="values")  # fmt: skip
    cmap = LinearColorMapper(palette=metas[0]["palette"], low=metas[0]["low"],
                             high=metas[0]["high"], nan_color=NAN_COLOUR)  # fmt: skip
    lasso = LassoSelectTool()
    tips = [("id", "@spec_id"), ("class", "@cls"), ("net counts", "@counts{0}")]
    if "name" in data:
        tips.insert(1, ("name", "@name"))
    fig = figure(width=720, height=620, output_backend="webgl", title="latent map",
                 tools=["pan", "wheel_zoom", "box_select", "reset", "save"],
                 x_axis_label=f"{info['projection'].upper()} 1",
                 y_axis_label=f"{info['projection'].upper()} 2")  # fmt: skip
    renderer = fig.scatter("x", "y", source=points, size=4, line_color=None, alpha=0.75,
                           fill_color={"field": "c", "transform": cmap}, name="map",
                           nonselection_alpha=0.25, selection_alpha=0.95)  # fmt: skip
    fig.add_tools(lasso, TapTool(renderers=[renderer]))
    fig.toolbar.active_drag = lasso
    bar = ColorBar(color_mapper=cmap, title=labels[0], visible=metas[0]["kind"] != "class",
                   width=12)  # fmt: skip
    fig.add_layout(bar, "right")
    legend = Div(text=metas[0]["legend"], name="legend", width=720)
    colour = Select(title="colour by", value=labels[0], options=labels, name="colour")
    colour.js_on_change("value", CustomJS(args=dict(points=points, values=values, cmap=cmap,
        bar=bar, legend=legend, colour=colour, options=labels, meta={"options": metas}),
        code=_COLOUR_JS))  # fmt: skip

    nb = 0 if payload is None else payload["edges_kev"].size - 1
    edges = np.array([0.5, 8.0]) if payload is None else payload["edges_kev"]
    step_x = np.repeat(edges, 2)[1:-1]  # (e0, e1, e1, e2, ...): one flat step per bin
    blank = np.full(step_x.size, np.nan)
    spectrum = ColumnDataSource({"x": step_x, "obs": blank, "rec": blank, "hov": blank},
                                name="spectrum")  # fmt: skip
    spectra = None
    if payload is not None:
        cols = {"obs": payload["obs"]}
        if payload["rec"] is not None:
            cols["rec"] = payload["rec"]
        spectra = ColumnDataSource(cols, name="spectra")
    lo, hi = (-3.0, 1.0) if payload is None else (payload["lo"], payload["hi"])
    view = (lo, hi) if payload is None else payload["view"]
    sfig = figure(width=500, height=380, x_axis_type="log", y_axis_type="log",
                  x_range=Range1d(edges[0], edges[-1]),
                  y_range=Range1d(10 ** view[0], 10 ** view[1]),
                  title="spectrum", x_axis_label="energy (keV)", tools="pan,wheel_zoom,reset",
                  y_axis_label="normalised photon flux density (1/keV)")  # fmt: skip
    sfig.line("x", "hov", source=spectrum, color="#999999", line_width=1, legend_label="hovered")
    sfig.line("x", "obs", source=spectrum, color="black", line_width=2, legend_label="clicked")
    if payload is not None and payload["rec"] is not None:
        sfig.line("x", "rec", source=spectrum, color="#d62728", line_width=2, line_dash="dashed",
                  legend_label=payload["rec_label"])  # fmt: skip
    # Above the plot, in a row: inside it would hide the soft end of an absorbed spectrum.
    sfig.legend.orientation = "horizontal"
    sfig.legend.label_text_font_size = "8pt"
    sfig.add_layout(sfig.legend[0], "above")
    info_div = Div(text="click a point to show its spectrum", name="info", width=500)
    hovered = Div(text="", name="hovered", width=500)
    selection = Div(text="0 selected", name="selection", width=500)
    meta = {"nb": nb, "lo": lo, "hi": hi, "has_rec": bool(payload and payload["rec"] is not None)}
    args = dict(points=points, spectra=spectra, spectrum=spectrum, info=info_div,
                selection=selection, meta=meta)  # fmt: skip
    points.selected.js_on_change("indices", CustomJS(args=args, code=_SHOW_JS))
    fig.add_tools(HoverTool(renderers=[renderer], tooltips=tips, callback=CustomJS(
        args=dict(points=points, spectra=spectra, spectrum=spectrum, hovered=hovered,
                  meta=meta), code=_HOVER_JS)))  # fmt: skip
    export = Button(label="Download selected ids (CSV)", name="export", width=260)
    export.js_on_click(CustomJS(args=dict(points=points, selection=selection), code=_EXPORT_JS))
    layout = column(
        Div(text=_header(info, n, payload), width=1240),
        row(column(colour, fig, legend), column(sfig, info_div, hovered, export, selection)),
    )
    text = file_html(layout, INLINE, title="xlatent explorer")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    return out


__all__ = ["CLASS_PALETTE", "write_page"]
