"""The report section on latent errors (their calibration) and out-of-distribution spectra."""

from __future__ import annotations

from typing import Any

from xlatent.report.sections import _esc, _fmt, _skipped_note, _table


def _quintile_rows(values: list[Any], ranges: list[Any]) -> list[list[Any]]:
    rows = []
    for i, v in enumerate(values):
        lo, hi = ranges[i] if i < len(ranges) and ranges[i] else (None, None)
        rng = "–" if lo is None or hi is None else f"{_fmt(round(lo))}–{_fmt(round(hi))}"
        rows.append([f"Q{i + 1}", rng, v])
    return rows


def errors_and_ood(m: dict[str, Any]) -> str:
    """Coverage of the latent errors and the spectra with the highest ``ood_score``."""
    e = m.get("latent_errors") or {}
    o = m.get("ood") or {}
    out = []
    if e:
        lo, hi = e.get("target", [0.60, 0.76])
        out.append(
            f"<p><b>Latent errors</b> (<code>latent_&lt;i&gt;_err</code>): the spread of "
            f"{_fmt(e.get('n_draws'))} Poisson redraws of each spectrum's reconstruction, "
            f"times the model's calibration scale {_fmt(e.get('error_scale'))} "
            f"({'fitted on its validation split' if e.get('calibrated') else 'uncalibrated'}). "
            f"On {_fmt(e.get('n_spectra'))} scored spectra and an independent Poisson redraw of "
            "the same sources, the share of latents whose difference lies within the combined "
            f"1σ error is <b>{_fmt(e.get('coverage_68'))}</b> (0.68 when the errors are right; "
            f"target {_fmt(lo, 2)}–{_fmt(hi, 2)}).</p>"
        )
        dims = e.get("per_dimension") or []
        med = e.get("median_error") or []
        head = ["", *[f"latent_{i}" for i in range(len(dims))]]
        out.append(_table(head, [["coverage", *dims], ["median error", *med]]))
        out.append(_table(["count quintile", "counts", "coverage"],
                          _quintile_rows(e.get("per_count_quintile") or [],
                                         e.get("count_quintile_ranges") or [])))  # fmt: skip
    out.append(_skipped_note(m, "latent_errors"))
    if o:
        if o.get("calibrated"):
            out.append(
                f"<p><b>Out-of-distribution score</b> (<code>ood_score</code>): the larger of "
                "the reconstruction deviance's z-score against what the spectrum's counts "
                "predict and the latent's negative log density under a Gaussian mixture of the "
                "training latents, each standardised against reference spectra of similar "
                f"counts. The threshold ({_fmt(o.get('threshold'))}) flags "
                f"{_fmt(100 * (o.get('target_flag_rate') or 0), 1)}% of the reference spectra "
                "(the validation split and the training rows left out of the mixture); "
                f"it flags <b>{_fmt(o.get('n_flagged'))}</b> of the {_fmt(o.get('n_scored'))} "
                f"scored spectra ({_fmt(100 * (o.get('flag_rate') or 0), 2)}%).</p>"
            )
            out.append(_table(["count quintile", "counts", "flag rate"],
                              _quintile_rows(o.get("flag_rate_per_count_quintile") or [],
                                             o.get("count_quintile_ranges") or [])))  # fmt: skip
        else:
            out.append(f"<p class='muted'>{_esc(o.get('note', 'No OOD threshold.'))}</p>")
        top = o.get("top") or []
        if top:
            out.append(f"<p>The {len(top)} scored spectra with the highest ood_score:</p>")
            rows = [[t["spec_id"], t.get("source_class", ""), round(t.get("counts") or 0),
                     t.get("ood_score"), t.get("ood_flag")] for t in top]  # fmt: skip
            out.append(_table(["spec_id", "class", "counts", "ood_score", "flagged"], rows))
    out.append(_skipped_note(m, "ood"))
    return "".join(out) or "<p>Not evaluated (no model given).</p>"
