"""``xlatent train``, ``encode`` and ``reconstruct``: fit a latent model, apply it."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from xlatent.cli.parallel_options import Scheduler, Workers, encode_pool
from xlatent.cli.train_support import parse_options, refit_ood, say_calibration, say_deviance
from xlatent.clitools import (
    check_input,
    check_output_dir,
    check_output_file,
    check_positive,
    fail,
    removed_if_empty_on_error,
    usage_error,
)

#: A set file larger than this is trained on block by block (``--stream``) by default.
STREAM_BYTES = 256 * 2**20


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
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="Read the set block by block while training (memory flat in its size); "
            f"automatic for a set file over {STREAM_BYTES // 2**20} MiB.",
        ),
    ] = False,
    distributed: Annotated[
        bool,
        typer.Option(
            "--distributed",
            help="One rank of a PyTorch DDP run: torchrun --nproc_per_node N -m xlatent.cli "
            "train ... --distributed (gloo on CPU, NCCL on GPUs; rank 0 writes --out).",
        ),
    ] = False,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help="KEY=VALUE: any other option of the autoencoder (SpectralAutoencoder's keyword "
            "arguments), repeatable, e.g. --option latent_noise=0 --option consistency=0 for a "
            "plain autoencoder (defaults: latent_noise=0.3 batch spreads, shrinking above "
            "latent_noise_counts=300 net counts; consistency=0.3 with augment=thin).",
        ),
    ] = None,
    ood_reference: Annotated[
        Path | None,
        typer.Option(
            "--ood-reference",
            help="A SpectrumSet (.h5, >= 1,000 spectra) the model is not fitted on, drawn like "
            "the spectra it should not flag: the OOD threshold (flags 1%) is refitted on it. "
            "Default: the validation and unused training rows, which flag a little more.",
        ),
    ] = None,
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

    options = parse_options(option or [])
    if options and model == "pca":
        usage_error("--option", "the PCA baseline has no options beyond --latent-dim and --seed")
    main = not distributed or os.environ.get("RANK", "0") == "0"
    if model == "pca" and ood_reference is not None:
        usage_error("--ood-reference", "the PCA baseline has no OOD threshold")
    if ood_reference is not None and not ood_reference.is_file():
        usage_error("--ood-reference", f"{ood_reference}: no such file")
    if model == "pca" and (stream or distributed):
        usage_error("--stream", "the PCA baseline fits in memory; drop --stream/--distributed")
    stream = model == "autoencoder" and (
        stream or distributed or (set_path.suffix in (".h5", ".hdf5") and set_path.is_file()
                                   and set_path.stat().st_size > STREAM_BYTES)
    )  # fmt: skip
    s = train_rows(open_set(set_path) if stream else SpectrumSet.read(set_path), all_rows, main)
    with removed_if_empty_on_error(out):
        if model == "pca":
            from xlatent.model import PCABaseline

            fitted = PCABaseline(n_components=latent_dim, seed=seed).fit(s)
            fitted.save(out)
        else:
            from xlatent.model import SpectralAutoencoder

            fitted = SpectralAutoencoder(
                latent_dim, epochs=epochs, seed=seed, loss=loss, device=device,
                max_time_s=max_time, progress=main, **options,
            ).fit(s, checkpoint_dir=out, resume=resume, streaming=stream,
                  distributed=distributed)  # fmt: skip
    if not main:
        return
    if ood_reference is not None:
        refit_ood(fitted, ood_reference, out)
    if stream:  # the whole set's deviance would be another pass over it
        best = min(h["val_deviance_per_bin"] for h in fitted.history_)
        typer.echo(f"{model}: fitted on {len(s)} spectra (streamed), best validation deviance "
                   f"{best:.4g} per bin")  # fmt: skip
    else:
        say_deviance(model, fitted, s)
    say_calibration(fitted)
    typer.echo(f"wrote {out}")


def open_set(path: Path) -> Any:
    """A lazy view of the set file ``path`` (``SpectrumSet.open``) to stream training from."""
    from xlatent.core import SpectrumSet

    opener = getattr(SpectrumSet, "open", None)
    # Until SpectrumSet.open lands (issue 17), the whole set; training still streams from it.
    return opener(path) if opener is not None else SpectrumSet.read_hdf5(path)


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


def train_rows(s: Any, all_rows: bool, say: bool = True) -> Any:
    """The rows ``xlatent train`` fits: the 'train' rows of a set with a 'split' column (of a
    lazy view: a lazy subset of it)."""
    from xlatent.core.spectrumset_view import meta_names_of, meta_of

    if all_rows or "split" not in meta_names_of(s):
        return s
    from xlatent.core.split import train_indices

    train = train_indices(meta_of(s, ["split"]))  # a lazy view reads this column only
    if train.size == 0:
        fail("the set's 'split' column marks no row 'train'; use --all-rows to fit every row")
    if say:
        typer.echo(f"fitting the {train.size} 'train' rows of {len(s)} (the set's split column)")
    from xlatent.core import SpectrumSet

    if isinstance(s, SpectrumSet):
        return s[train]
    from xlatent.model.streaming import Rows

    return Rows(s, train)


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
    workers: Workers = None,
    scheduler: Scheduler = None,
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

    A SpectrumSet file is encoded in blocks of 8192 spectra by --workers local processes
    (--workers - 1 processes and this one; each loads the model once and runs torch on one
    thread) or by the Dask cluster at
    --scheduler, and the catalogue is written block by block (memory stays flat). The
    catalogue is the same for any number of workers: each block draws its error redraws
    from its own seed (the first block from --seed itself). A set of one block or less, or
    --workers 1, is encoded in this process on --workers torch threads.
    """
    check_input("--model", model_dir, kind="dir")
    check_output_file("--out", out)
    if error_draws == 1:
        fail("--error-draws 1 gives no spread; use 0 (no errors) or at least 2")
    sealed = _sealed(set_path)
    pool = encode_pool(set_path, workers, scheduler) if sealed else None
    with pool or nullcontext():  # the workers start while torch and the model load here
        fitted = _load(model_dir)
        if sealed:
            from xlatent.model.parallel_encode import encode_to_file

            done = encode_to_file(set_path, out, model_dir, n_draws=error_draws, seed=seed,
                                  fmt=fmt, workers=workers, scheduler=scheduler,
                                  pool=pool)  # fmt: skip
            n, n_flagged = done.n, done.n_flagged
        else:  # another format (PHA, Multimodal Universe): read whole, encode here
            from xlatent.core import SpectrumSet
            from xlatent.model.catalog import write_latents

            s = SpectrumSet.read(set_path)
            catalog = fitted.encode_catalog(s, n_draws=error_draws, seed=seed)
            write_latents(catalog, out, fmt=fmt)
            n = len(s)
            n_flagged = int(catalog["ood_flag"].sum()) if "ood_flag" in catalog else None
    if getattr(fitted, "calibration_", None) is None:
        typer.echo(
            f"note: {model_dir or 'the pretrained model'} has no calibration.json (a PCA model, "
            "or one trained before "
            "calibration existed): errors are uncalibrated, ood_score is the bare deviance "
            "z-score and there is no ood_flag"
        )
    elif n:
        typer.echo(f"ood_flag: {n_flagged} of {n} spectra flagged")
    typer.echo(f"wrote {n} x {fitted.latent_dim} latents to {out}")


def _sealed(path: Path) -> bool:
    """Whether ``path`` is a SpectrumSet file xlatent wrote (sealed): those stream in blocks."""
    from xlatent.core.seal import USERBLOCK_BYTES, is_sealed

    try:
        with open(path, "rb") as fh:
            return is_sealed(fh.read(USERBLOCK_BYTES))
    except OSError:
        return False  # SpectrumSet.read names the problem


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
