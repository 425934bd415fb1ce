"""``xlatent evaluate``, ``evaluate-table``, ``report`` and ``demo``: measure and show."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from xlatent.clitools import (
    check_input,
    check_output_dir,
    check_output_file,
    removed_if_empty_on_error,
)

#: Fewest spectra ``demo`` accepts (= ``xlatent.pipeline.DEMO_MIN_N``, not imported: slow).
DEMO_MIN_N = 50


def evaluate(
    set_path: Annotated[
        Path, typer.Argument(metavar="SET", help="SpectrumSet (.h5) the latents came from.")
    ],
    latents: Annotated[
        Path, typer.Option("--latents", help="Latent catalogue (.parquet/.fits) from encode.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output directory (metrics + figures).")] = (
        Path("eval")
    ),
    model_dir: Annotated[
        Path | None,
        typer.Option("--model", help="Model directory: adds reconstruction quality."),
    ] = None,
    pca_dir: Annotated[
        Path | None,
        typer.Option(
            "--pca", help="Fitted PCA baseline directory (else fitted on the train split)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed for splits and estimators.")] = 0,
    projection: Annotated[
        Literal["auto", "umap", "tsne", "pca"],
        typer.Option(
            "--projection", help="Latent map: auto (UMAP, else t-SNE) | umap | tsne | pca."
        ),
    ] = "auto",
    max_points: Annotated[
        int,
        typer.Option(
            "--max-points", min=10, help="Row cap for the expensive analyses (at least 10)."
        ),
    ] = 5000,
    invariance: Annotated[
        bool,
        typer.Option(
            "--invariance/--no-invariance",
            help="On a simulated set, with --model: fold fresh sources through several "
            "responses and measure response invariance.",
        ),
    ] = True,
    invariance_n: Annotated[
        int,
        typer.Option(
            "--invariance-n",
            min=10,
            help="Fresh sources drawn (those the first response detects are kept).",
        ),
    ] = 2000,
) -> None:
    """Compare latents with hardness ratios, PCA and true parameters; write metrics.json.

    On a simulated set (one with the noiseless truth) and with --model, also response
    invariance: --invariance-n fresh sources (a seed the set was not simulated from) folded
    through several fixed Chandra responses and encoded by the model (metrics
    response_invariance). With --model: the share of scored spectra the model's OOD threshold
    flags (metrics ood) and, on a simulated set, the coverage of the latent errors on a Poisson
    twin of up to 1000 scored spectra (metrics latent_errors).
    """
    check_input("--latents", latents)
    check_input("--model", model_dir, kind="dir")
    check_input("--pca", pca_dir, kind="dir")
    check_output_dir("--out", out)
    from xlatent.analysis import evaluate as _evaluate

    model = pca = None
    if model_dir is not None or pca_dir is not None:
        from xlatent.model import load_model

        model = load_model(model_dir) if model_dir is not None else None
        pca = load_model(pca_dir) if pca_dir is not None else None
    with removed_if_empty_on_error(out):
        metrics = _evaluate(
            set_path, latents, out, model=model, seed=seed, pca=pca,
            projection=projection, max_points=max_points,
            invariance_pairs=_simulated_pairs(invariance_n) if invariance else None,
            noise_twin=_simulated_twin(seed),
        )  # fmt: skip
    _echo_headline(metrics)
    for item in metrics.get("skipped", []):
        typer.echo(f"skipped {item['analysis']}: {item['reason']}")
    typer.echo(f"wrote {out / 'metrics.json'} and {len(metrics.get('figures', []))} figures")


def _simulated_pairs(n: int) -> Callable[[Any], dict[str, Any] | None]:
    """For evaluate: the invariance sets of a simulated set (None for any other set)."""

    def pairs(s: Any) -> dict[str, Any] | None:
        if s.expected_counts is None:  # not simulated: nothing to fold the same sources of
            return None
        from xlatent.pipeline import fresh_seed, invariance_pairs

        return invariance_pairs(n, fresh_seed(s), s.grid)

    return pairs


def _simulated_twin(seed: int) -> Callable[[Any], Any]:
    """For evaluate: a Poisson twin of a simulated set (None for any other set)."""

    def twin(s: Any) -> Any:
        if s.expected_counts is None:
            return None
        from xlatent.pipeline import poisson_twin

        return poisson_twin(s, seed + 7)

    return twin


def evaluate_table(
    table: Annotated[
        Path,
        typer.Argument(
            metavar="TABLE",
            help="Labelled catalogue (CSV/TSV/Parquet/FITS/VOTable): TD.csv (Fs, Fm, Fh, Fb in "
            "erg cm^-2 s^-1; True_Class) or a CSC table (hard_hm, hard_hs, hard_ms, "
            "flux_aper_b; source_class).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output directory (metrics + figures).")] = (
        Path("eval_table")
    ),
    class_column: Annotated[
        str | None,
        typer.Option("--class-column", help="Label column (default: True_Class, source_class)."),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Seed for the split and estimators.")
    ] = 0,
) -> None:
    """The clustering protocol on a labelled table's hardness ratios: the real-sky reference.

    Runs the same clustering and probe as `evaluate` on the table's hardness ratios and log
    broad-band flux (no spectra needed), on a stratified 70/30 split, and writes metrics.json
    and the confusion matrix; `xlatent report` renders it.
    """
    check_output_dir("--out", out)
    from xlatent.analysis import evaluate_table as _evaluate_table

    with removed_if_empty_on_error(out):
        metrics = _evaluate_table(table, out, seed=seed, class_column=class_column)
    typer.echo(f"{metrics['data']['n_labelled']} labelled rows of {table}; "
               f"features: {metrics['features']['hardness']['description']}")  # fmt: skip
    _echo_headline(metrics)
    typer.echo(f"wrote {out / 'metrics.json'}")


def report(
    eval_dir: Annotated[
        Path, typer.Argument(metavar="EVAL_DIR", help="Directory written by `xlatent evaluate`.")
    ],
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("report.html"),
    explorer: Annotated[
        Path | None,
        typer.Option("--explorer", help="Page from `xlatent explore` to link from the report."),
    ] = None,
) -> None:
    """Write one self-contained HTML report (figures embedded) of an evaluation."""
    check_output_file("--out", out)
    check_input("--explorer", explorer)
    from xlatent.report import render_report

    path = render_report(eval_dir, out, explorer=explorer)
    typer.echo(f"wrote {path}")


def _echo_headline(metrics: dict) -> None:
    """One line per feature set: clustering (k = 8 and tuned) and probe, with 95% intervals."""

    def f(row: dict, key: str) -> str:
        v, ci = row.get(key), row.get(f"{key}_ci95")
        if v is None:
            return "  -  "
        return f"{v:.3f}" if not ci else f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"

    for r in metrics.get("headline", []):
        probe = f"probe {f(r, 'probe_bacc_8class')}"
        if r.get("role") == "reference":
            typer.echo(f"{r['features']:>15}: {probe}")
            continue
        typer.echo(
            f"{r['features']:>15}: 8-class k=8 {f(r, 'k8_bacc_8class')}, "
            f"tuned {f(r, 'tuned_bacc_8class')}; AGN vs compact k=8 "
            f"{f(r, 'k8_bacc_agn_vs_compact')}, tuned {f(r, 'tuned_bacc_agn_vs_compact')}; {probe}"
        )


def demo(
    out: Annotated[Path, typer.Option("--out", help="Directory for every output.")] = Path(
        "demo_out"
    ),
    n: Annotated[
        int, typer.Option("--n", min=DEMO_MIN_N, help="Number of simulated spectra.")
    ] = 20000,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the whole run.")] = 0,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", min=1, help="Maximum training epochs (default: model's)."),
    ] = None,
) -> None:
    """simulate -> train -> encode -> evaluate -> explore -> report on the embedded simulator.

    Writes sim.h5, model/, pca/, latents.parquet, eval/, explore.html (the interactive latent
    map) and report.html into --out, then prints
    the headline table (balanced accuracies of latents vs hardness ratios vs PCA vs the true
    parameters, beside the reference study's 0.40 / 0.69).
    """
    check_output_dir("--out", out)
    from xlatent.core import vocabulary as voc
    from xlatent.pipeline import run_demo

    with removed_if_empty_on_error(out):
        result = run_demo(out, n=n, seed=seed, epochs=epochs, log=typer.echo)
    typer.echo("")
    typer.echo("reference study (CSC, 8 latents, clustering): "
               f"8-class {voc.REFERENCE_BACC_8CLASS:.2f}, "
               f"AGN vs compact {voc.REFERENCE_BACC_AGN_VS_COMPACT:.2f}")  # fmt: skip
    _echo_headline(result.metrics)
    timings = ", ".join(f"{k.split()[0]} {v:.0f} s" for k, v in result.timings_s.items())
    typer.echo(f"stage times: {timings}")
    typer.echo(f"report: {result.report_path}")


__all__ = ["DEMO_MIN_N", "demo", "evaluate", "evaluate_table", "report"]
