"""The ``xlatent`` command line: thin Typer wrappers over the Python API.

Each command imports its implementation lazily so ``xlatent --help`` stays fast. Option values
are checked, and outputs probed for writability, before any work starts.

Exit status (see :mod:`xlatent.clitools`, which runs every command inside one error handler)
---------------------------------------------------------------------------------------------
- 0: success; ``ingest`` also when some files were skipped but at least one was ingested.
- 1: error: an unusable input, an unwritable output, nothing could be done, or an internal
  error; one line ``error: ...`` on stderr (``--debug`` / ``XLATENT_DEBUG=1``: the traceback).
- 2: usage error: unknown option, missing argument, option value out of range or choices.
- 130: interrupted (Ctrl-C), ``interrupted`` on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from xlatent.clitools import (
    DEBUG_ENV,
    EXIT_CODES_HELP,
    GuardedGroup,
    check_input,
    check_output_dir,
    check_output_file,
    check_positive,
    configure_logging,
    debug_enabled,
    fail,
    removed_if_empty_on_error,
    set_debug,
    usage_error,
)

#: Fewest spectra ``demo`` accepts (= ``xlatent.pipeline.DEMO_MIN_N``, not imported: slow).
DEMO_MIN_N = 50

app = typer.Typer(
    name="xlatent",
    help="Latent representations of X-ray spectra (Chandra Source Catalog).\n\n"
    "Energies are in keV, exposures in seconds, N_H in 1e22 cm^-2, fluxes in erg cm^-2 s^-1.",
    epilog=EXIT_CODES_HELP,
    cls=GuardedGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    # Docstrings are wrapped at 100 columns: re-flow their paragraphs to the terminal width.
    rich_markup_mode=None,
)


@app.callback(invoke_without_command=True, epilog=EXIT_CODES_HELP)
def _main(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", help="Print the xlatent version and exit.")
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar=DEBUG_ENV,
            help="Show the full traceback of an error instead of one 'error:' line.",
        ),
    ] = False,
) -> None:
    """Latent representations of X-ray spectra (Chandra Source Catalog)."""
    # An explicit callback keeps every command a named subcommand, whatever their number.
    set_debug(ctx, debug)
    configure_logging(debug_enabled(ctx))
    if version:
        from xlatent import __version__

        typer.echo(__version__)
        raise typer.Exit()


# ------------------------------------------------------------------------ ingest
@app.command()
def ingest(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH...",
            help="PHA files (CSC *_pha3.fits[.gz], *.pi, *.pha), directories (searched "
            "recursively), globs, Multimodal Universe HDF5 or SpectrumSet files.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="SpectrumSet to write (.h5).")],
    emin: Annotated[float, typer.Option("--emin", help="Grid lower edge, keV.")] = 0.5,
    emax: Annotated[float, typer.Option("--emax", help="Grid upper edge, keV.")] = 8.0,
    bins: Annotated[
        int,
        typer.Option(
            "--bins", min=1, help="Log-spaced grid bins (CSC band edges 1.2/2/7 keV kept)."
        ),
    ] = 128,
    catalog: Annotated[
        Path | None,
        typer.Option(
            "--catalog",
            help="CSC catalogue (`xlatent csc query`) joined by (obsid, obi, region_id).",
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="Class labels CSV joined by CSC name (TD.csv: CSCv2_name, True_Class).",
        ),
    ] = None,
) -> None:
    """Read spectra with their background, ARF and RMF onto one energy grid.

    Counts are apportioned from PI channels onto the grid through the RMF's EBOUNDS; the
    background is scaled to the source region (EXPOSURE x BACKSCAL x AREASCAL); the ARF is
    averaged on each bin. Files that cannot be used are skipped with a one-line reason; the
    exit status is non-zero only when nothing could be ingested.
    """
    check_positive("--emin", emin)
    if not emax > emin:
        usage_error("--emax", f"must be above --emin ({emin:g} keV), not {emax:g}")
    check_input("--catalog", catalog)
    check_input("--labels", labels)
    check_output_file("--out", out)
    from xlatent.core import EnergyGrid
    from xlatent.io.ingest import ingest_paths

    result = ingest_paths(paths, grid=EnergyGrid.log(emin, emax, bins))
    for path, reason in result.skipped:
        typer.secho(f"skipped {path}: {reason}", fg=typer.colors.YELLOW, err=True)
    if result.spectrum_set is None:
        fail(f"nothing could be ingested from {len(result.skipped)} file(s)")
    if catalog is not None or labels is not None:
        from xlatent.io.csc.join import join_files

        result.spectrum_set = join_files(result.spectrum_set, catalog, labels)
    result.spectrum_set.write(out)
    typer.echo(result.spectrum_set.summary())
    typer.echo(f"ingested {result.n_ingested} spectra, skipped {len(result.skipped)}; wrote {out}")


@app.command()
def simulate(
    n: Annotated[int, typer.Option("--n", min=1, help="Number of spectra.")] = 20000,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Random seed (same seed, same set).")
    ] = 0,
    out: Annotated[Path, typer.Option("--out", help="Output SpectrumSet (.h5).")] = Path("sim.h5"),
    arf: Annotated[Path | None, typer.Option("--arf", help="Real ARF (default built-in).")] = None,
    rmf: Annotated[Path | None, typer.Option("--rmf", help="Real RMF (default built-in).")] = None,
    write_pha: Annotated[
        Path | None,
        typer.Option("--write-pha", help="Also write OGIP PHA/ARF/RMF files into this directory."),
    ] = None,
    class_mix: Annotated[
        Literal["realistic", "balanced"], typer.Option("--class-mix", help="realistic | balanced")
    ] = "realistic",
    compare_td: Annotated[
        Path | None,
        typer.Option("--compare-td", help="TD.csv: class mix from it; print sim vs real colours."),
    ] = None,
    counts_min: Annotated[
        float, typer.Option("--counts-min", help="Lowest expected 0.5-7 keV source counts.")
    ] = 50.0,
    counts_max: Annotated[
        float, typer.Option("--counts-max", help="Highest expected 0.5-7 keV source counts.")
    ] = 20000.0,
) -> None:
    """Simulate a CSC-like population of 8 source classes folded through an ACIS response."""
    check_positive("--counts-min", counts_min)
    check_positive("--counts-max", counts_max)
    if counts_max < counts_min:
        usage_error("--counts-max", f"must be >= --counts-min ({counts_min:g}), not {counts_max:g}")
    if arf is not None and rmf is None:
        usage_error("--arf", "needs --rmf")
    check_input("--arf", arf)
    check_input("--rmf", rmf)
    check_input("--compare-td", compare_td)
    check_output_file("--out", out)
    if write_pha is not None:
        check_output_dir("--write-pha", write_pha)
    from xlatent.io.response import Response, read_arf, read_rmf
    from xlatent.physics.simulator import simulate as _simulate

    response = None
    if rmf is not None:
        response = Response(read_arf(arf) if arf is not None else None, read_rmf(rmf))
    with removed_if_empty_on_error(write_pha):
        s = _simulate(
            n, seed=seed, class_mix=class_mix, response=response,
            counts_range=(counts_min, counts_max), td_path=compare_td,
            write_pha=write_pha, progress=True,
        )  # fmt: skip
    s.write(out)
    typer.echo(s.summary())
    typer.echo(f"wrote {out}")
    if compare_td is not None:
        from xlatent.physics.realism import compare_to_td, format_table

        table = compare_to_td(s, compare_td)
        typer.echo(format_table(table))
        checked = table[table["checked"]]
        typer.echo(
            f"realism: {int(checked['pass'].sum())}/{len(checked)} checked classes within "
            "0.25 dex (median) and x2 (IQR)"
        )


# --------------------------------------------------------------------------- model
@app.command()
def train(
    set_path: Annotated[Path, typer.Argument(metavar="SET", help="Training SpectrumSet (.h5).")],
    out: Annotated[
        Path, typer.Option("--out", help="Model directory to write (checkpoints go there too).")
    ],
    model: Annotated[
        Literal["autoencoder", "pca"],
        typer.Option("--model", help="autoencoder (transformer) | pca (baseline)."),
    ] = "autoencoder",
    latent_dim: Annotated[
        int, typer.Option("--latent-dim", min=1, help="Latent dimensions (PCA: components).")
    ] = 8,
    epochs: Annotated[
        int,
        typer.Option("--epochs", min=1, help="Maximum epochs; early stopping may end sooner."),
    ] = 40,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Random seed (same seed, same model).")
    ] = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run in --out (same options).")
    ] = False,
    loss: Annotated[
        Literal["poisson", "mse"],
        typer.Option(
            "--loss",
            help="poisson: deviance of source-region counts given model + known background | "
            "mse: on normalised spectra.",
        ),
    ] = "poisson",
    device: Annotated[
        Literal["auto", "cpu", "cuda"],
        typer.Option("--device", help="auto (CUDA + bf16 when present, else CPU) | cpu | cuda."),
    ] = "auto",
    max_time: Annotated[
        float | None,
        typer.Option("--max-time", help="Stop after the epoch that passes this many seconds."),
    ] = None,
) -> None:
    """Fit a latent model of spectral SHAPE (amplitude = observed net counts, normalised away)."""
    check_positive("--max-time", max_time)
    check_output_dir("--out", out)
    if model == "autoencoder" and device == "cuda":
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: no CUDA device is available here; use --device auto or cpu")
    from xlatent.core import SpectrumSet

    s = SpectrumSet.read(set_path)
    with removed_if_empty_on_error(out):
        if model == "pca":
            from xlatent.model import PCABaseline

            fitted = PCABaseline(n_components=latent_dim, seed=seed).fit(s)
            fitted.save(out)
        else:
            from xlatent.model import SpectralAutoencoder

            fitted = SpectralAutoencoder(
                latent_dim, epochs=epochs, seed=seed, loss=loss, device=device,
                max_time_s=max_time,
            ).fit(s, checkpoint_dir=out, resume=resume)  # fmt: skip
    dev = fitted.deviance(s)
    typer.echo(
        f"{model}: {len(s)} spectra, mean Poisson deviance {dev.mean():.4g} "
        f"({dev.mean() / s.grid.n_bins:.4g} per bin)"
    )
    typer.echo(f"wrote {out}")


@app.command()
def encode(
    set_path: Annotated[Path, typer.Argument(metavar="SET", help="SpectrumSet (.h5) to encode.")],
    model_dir: Annotated[
        Path, typer.Option("--model", help="Model directory from `xlatent train`.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Latent catalogue to write.")] = Path(
        "latents.parquet"
    ),
    fmt: Annotated[
        Literal["parquet", "fits"] | None,
        typer.Option("--format", help="parquet | fits (default: from the --out suffix)."),
    ] = None,
) -> None:
    """Write the latent catalogue: spec_id, the set's meta columns, latent_0..latent_{d-1}."""
    check_input("--model", model_dir, kind="dir")
    check_output_file("--out", out)
    from xlatent.core import SpectrumSet
    from xlatent.model import load_model
    from xlatent.model.catalog import latent_catalog, write_latents

    fitted = load_model(model_dir)
    s = SpectrumSet.read(set_path)
    write_latents(latent_catalog(s, fitted.transform(s)), out, fmt=fmt)
    typer.echo(f"wrote {len(s)} x {fitted.latent_dim} latents to {out}")


@app.command()
def reconstruct(
    set_path: Annotated[
        Path, typer.Argument(metavar="SET", help="SpectrumSet (.h5) to reconstruct.")
    ],
    model_dir: Annotated[
        Path, typer.Option("--model", help="Model directory from `xlatent train`.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output SpectrumSet (.h5).")] = Path(
        "recon.h5"
    ),
) -> None:
    """Write SET again with expected_counts = reconstructed expected SOURCE counts per bin.

    counts, background, exposure and meta are copied; the input's own expected_counts
    (simulator truth), if any, are replaced (they stay in the input file). A `recon_deviance`
    meta column holds each spectrum's Poisson deviance given reconstruction + background.
    """
    check_input("--model", model_dir, kind="dir")
    check_output_file("--out", out)
    from xlatent.core import SpectrumSet
    from xlatent.model import load_model, poisson_deviance

    fitted = load_model(model_dir)
    s = SpectrumSet.read(set_path)
    rec = fitted.reconstruct(s)
    s.expected_counts = rec
    s.meta["recon_deviance"] = poisson_deviance(s.counts, rec + s.background)
    s.add_provenance("reconstruct", model=str(model_dir), kind=type(fitted).__name__)
    s.write(out)
    typer.echo(
        f"wrote {out}: mean Poisson deviance {s.meta['recon_deviance'].mean():.4g} "
        f"over {s.grid.n_bins} bins"
    )


# ------------------------------------------------------------------ evaluation
@app.command()
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
) -> None:
    """Compare latents with hardness ratios, PCA and true parameters; write metrics.json."""
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
        )  # fmt: skip
    _echo_headline(metrics)
    for item in metrics.get("skipped", []):
        typer.echo(f"skipped {item['analysis']}: {item['reason']}")
    typer.echo(f"wrote {out / 'metrics.json'} and {len(metrics.get('figures', []))} figures")


@app.command("evaluate-table")
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


@app.command()
def report(
    eval_dir: Annotated[
        Path, typer.Argument(metavar="EVAL_DIR", help="Directory written by `xlatent evaluate`.")
    ],
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("report.html"),
) -> None:
    """Write one self-contained HTML report (figures embedded) of an evaluation."""
    check_output_file("--out", out)
    from xlatent.report import render_report

    path = render_report(eval_dir, out)
    typer.echo(f"wrote {path}")


def _echo_headline(metrics: dict) -> None:
    def f(v: float | None) -> str:
        return "  -  " if v is None else f"{v:.3f}"

    for row in metrics.get("headline", []):
        typer.echo(
            f"{row['features']:>9}: clustering bacc 8-class {f(row['clustering_bacc_8class'])}, "
            f"AGN vs compact {f(row['clustering_bacc_agn_vs_compact'])}; "
            f"probe {f(row['probe_bacc_8class'])}"
        )


# ------------------------------------------------------------------------ demo
@app.command()
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
    """simulate -> train -> encode -> evaluate -> report on the embedded default simulator.

    Writes sim.h5, model/, pca/, latents.parquet, eval/ and report.html into --out, then prints
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


# ------------------------------------------------------------------------ csc
from xlatent.io.csc.cli import csc_app  # noqa: E402

app.add_typer(csc_app, name="csc")


if __name__ == "__main__":  # pragma: no cover
    app()
