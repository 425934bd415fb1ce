"""``xlatent train``, ``encode`` and ``reconstruct``: fit a latent model, apply it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from xlatent.clitools import (
    check_input,
    check_output_dir,
    check_output_file,
    check_positive,
    fail,
    removed_if_empty_on_error,
    usage_error,
)


def _recipes_help() -> str:
    from xlatent.recipes import RECIPES

    listed = "; ".join(f"{r.name}: {r.description}" for r in RECIPES.values())
    return (
        "Train by a named, reproducible recipe that simulates its own training set (give no "
        f"SET, and none of the options it fixes). Recipes: {listed}."
    )


def train(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", help="Model directory to write (checkpoints go there too).")
    ],
    set_path: Annotated[
        Path | None,
        typer.Argument(metavar="[SET]", help="Training SpectrumSet (.h5); not with --recipe."),
    ] = None,
    recipe: Annotated[str | None, typer.Option("--recipe", help=_recipes_help())] = None,
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
    all_rows: Annotated[
        bool,
        typer.Option(
            "--all-rows",
            help="Fit every spectrum, also those the set's 'split' column marks 'test'.",
        ),
    ] = False,
) -> None:
    """Fit a latent model of spectral SHAPE (amplitude = observed net counts, normalised away).

    When the set has a 'split' column (`xlatent simulate` and `xlatent ingest` write one), only
    its 'train' rows are fitted, so `evaluate` can score spectra the model never saw; the model
    directory records every spectrum it was fitted on (training_ids.txt).

    `xlatent train --recipe default --out DIR` rebuilds the pretrained model that ships with
    xlatent (docs/model_card.md).
    """
    check_positive("--max-time", max_time)
    check_output_dir("--out", out)
    if recipe is not None:
        return _train_recipe(ctx, recipe, out)
    if set_path is None:
        usage_error("SET", "give the training SET, or --recipe NAME to simulate a recipe's set")
    if model == "autoencoder" and device == "cuda":
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: no CUDA device is available here; use --device auto or cpu")
    from xlatent.core import SpectrumSet

    s = train_rows(SpectrumSet.read(set_path), all_rows)
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
        f"{model}: fitted on {len(s)} spectra, mean Poisson deviance {dev.mean():.4g} "
        f"({dev.mean() / s.grid.n_bins:.4g} per bin)"
    )
    cal = getattr(fitted, "calibration_", None)
    if cal is not None:
        typer.echo(
            f"calibration ({cal.n_validation} validation spectra): latent error scale "
            f"{cal.error_scale:.3f}, OOD threshold {cal.threshold:.3f} (flags 1% of "
            f"{cal.n_reference or cal.n_validation} reference spectra)"
        )
    typer.echo(f"wrote {out}")


def _train_recipe(ctx: typer.Context, name: str, out: Path) -> None:
    """``xlatent train --recipe NAME``: refuse the options the recipe fixes, then run it."""
    from xlatent.recipes import FIXED_BY_RECIPE, get_recipe, run_recipe

    # Given on the command line, even at its default value (Typer's ParameterSource, by name).
    sources = {p: getattr(ctx.get_parameter_source(p), "name", None) for p in FIXED_BY_RECIPE}
    given = [FIXED_BY_RECIPE[p] for p, src in sources.items() if src not in (None, "DEFAULT")]
    if given:
        usage_error("--recipe", f"{name} fixes {', '.join(given)}; give --recipe and --out only")
    try:
        chosen = get_recipe(name)
    except ValueError as exc:
        usage_error("--recipe", str(exc))
    with removed_if_empty_on_error(out):
        run_recipe(chosen, out, log=typer.echo)
    typer.echo(f"wrote {out} (recipe {chosen.name!r})")


def train_rows(s: Any, all_rows: bool) -> Any:
    """The rows ``xlatent train`` fits: the 'train' rows of a set with a 'split' column."""
    if all_rows or "split" not in s.meta:
        return s
    from xlatent.core.split import train_indices

    train = train_indices(s.meta)
    if train.size == 0:
        fail("the set's 'split' column marks no row 'train'; use --all-rows to fit every row")
    typer.echo(f"fitting the {train.size} 'train' rows of {len(s)} (the set's split column)")
    return s[train]


#: ``--model`` of encode and reconstruct.
MODEL_HELP = (
    "Model directory from `xlatent train` (default: the pretrained model shipped with "
    "xlatent, made by `xlatent train --recipe default`; see docs/model_card.md)."
)


def _load(model_dir: Path | None) -> Any:
    """The model in ``model_dir``, else the shipped pretrained one (named in one line)."""
    from xlatent.model import load_model

    if model_dir is None:
        from xlatent.model.pretrained import pretrained_summary

        typer.echo(pretrained_summary())
    return load_model(model_dir)


def encode(
    set_path: Annotated[Path, typer.Argument(metavar="SET", help="SpectrumSet (.h5) to encode.")],
    model_dir: Annotated[Path | None, typer.Option("--model", help=MODEL_HELP)] = None,
    out: Annotated[Path, typer.Option("--out", help="Latent catalogue to write.")] = Path(
        "latents.parquet"
    ),
    fmt: Annotated[
        Literal["parquet", "fits"] | None,
        typer.Option("--format", help="parquet | fits (default: from the --out suffix)."),
    ] = None,
    error_draws: Annotated[
        int,
        typer.Option(
            "--error-draws",
            min=0,
            help="Poisson redraws per spectrum for the latent_<i>_err columns (each redraw is "
            "encoded: K draws cost ~K times a plain encode); 0: no error columns.",
        ),
    ] = 16,  # xlatent.model.uncertainty.DEFAULT_N_DRAWS (not imported: it loads torch)
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Seed of the redraws (same seed, same errors).")
    ] = 0,
) -> None:
    """Write the latent catalogue: spec_id, the set's meta columns, latent_0..latent_{d-1},
    their errors latent_<i>_err, ood_score and ood_flag.

    latent_<i>_err: the spread of the latents of --error-draws Poisson redraws of the model's
    reconstruction of each spectrum, times the model's calibration scale. ood_score: how unlike
    the training spectra a spectrum is (reconstruction deviance against what its counts
    predict, and latent density); ood_flag: above the model's threshold, which flags 1% of
    in-distribution spectra. A model trained before calibration existed writes no ood_flag and
    uncalibrated errors.

    Without --model, the pretrained model shipped with xlatent encodes (docs/model_card.md).
    """
    check_input("--model", model_dir, kind="dir")
    check_output_file("--out", out)
    if error_draws == 1:
        fail("--error-draws 1 gives no spread; use 0 (no errors) or at least 2")
    from xlatent.core import SpectrumSet
    from xlatent.model.catalog import write_latents

    fitted = _load(model_dir)
    s = SpectrumSet.read(set_path)
    catalog = fitted.encode_catalog(s, n_draws=error_draws, seed=seed)
    write_latents(catalog, out, fmt=fmt)
    if getattr(fitted, "calibration_", None) is None:
        typer.echo(
            f"note: {model_dir or 'the pretrained model'} has no calibration.json (a PCA model, "
            "or one trained before "
            "calibration existed): errors are uncalibrated, ood_score is the bare deviance "
            "z-score and there is no ood_flag"
        )
    elif len(catalog):
        typer.echo(f"ood_flag: {int(catalog['ood_flag'].sum())} of {len(s)} spectra flagged")
    typer.echo(f"wrote {len(s)} x {fitted.latent_dim} latents to {out}")


def reconstruct(
    set_path: Annotated[
        Path, typer.Argument(metavar="SET", help="SpectrumSet (.h5) to reconstruct.")
    ],
    model_dir: Annotated[Path | None, typer.Option("--model", help=MODEL_HELP)] = None,
    out: Annotated[Path, typer.Option("--out", help="Output SpectrumSet (.h5).")] = Path(
        "recon.h5"
    ),
) -> None:
    """Write SET again with expected_counts = reconstructed expected SOURCE counts per bin.

    counts, background, exposure and meta are copied; the input's own expected_counts
    (simulator truth), if any, are replaced (they stay in the input file). A `recon_deviance`
    meta column holds each spectrum's Poisson deviance given reconstruction + background.
    Without --model, the pretrained model shipped with xlatent reconstructs.
    """
    check_input("--model", model_dir, kind="dir")
    check_output_file("--out", out)
    from xlatent.core import SpectrumSet
    from xlatent.model import poisson_deviance

    fitted = _load(model_dir)
    s = SpectrumSet.read(set_path)
    rec = fitted.reconstruct(s)
    s.expected_counts = rec
    s.meta["recon_deviance"] = poisson_deviance(s.counts, rec + s.background)
    s.add_provenance(
        "reconstruct", model=str(model_dir or "pretrained"), kind=type(fitted).__name__
    )
    s.write(out)
    typer.echo(
        f"wrote {out}: mean Poisson deviance {s.meta['recon_deviance'].mean():.4g} "
        f"over {s.grid.n_bins} bins"
    )


__all__ = ["encode", "reconstruct", "train"]
