"""``xlatent similar`` and ``explore``: work with a latent catalogue day to day."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import typer

from xlatent.clitools import check_input, check_output_file

_LATENTS_HELP = "Latent catalogue (.parquet/.fits) from `xlatent encode`."


def similar(
    latents: Annotated[Path, typer.Argument(metavar="LATENTS", help=_LATENTS_HELP)],
    ident: Annotated[
        str,
        typer.Argument(metavar="ID", help="A spec_id, or a CSC source name (2CXO J...)."),
    ],
    k: Annotated[int, typer.Option("--k", min=1, help="Number of neighbours.")] = 10,
    set_path: Annotated[
        Path | None,
        typer.Option(
            "--set", help="SpectrumSet (.h5) the catalogue came from: draws the spectra overlaid."
        ),  # fmt: skip
    ] = None,
    figure: Annotated[
        Path | None,
        typer.Option(
            "--figure",
            help="Figure to write with --set (.png/.pdf/.svg; default similar_<spec_id>.png).",
        ),  # fmt: skip
    ] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Also write the table as CSV.")] = (
        None
    ),
) -> None:
    """The K spectra whose latents are nearest to ID's, as a table (rank 0: ID itself).

    Distances are Euclidean over the latents in units of each dimension's standard deviation;
    where the catalogue has latent_<i>_err columns, neighbours are ranked by the distance in
    units of the two spectra's combined errors (distance_sigma) and p_consistent gives the
    chance of so large a distance between two draws of the same latents.
    """
    check_input("LATENTS", latents)
    check_input("--set", set_path)
    if figure is not None:
        check_output_file("--figure", figure)
    if csv is not None:
        check_output_file("--csv", csv)
    from xlatent.analysis.similar import format_table
    from xlatent.analysis.similar import similar as _similar

    table = _similar(latents, ident, k)
    if table.attrs.get("note"):
        typer.echo(table.attrs["note"])
    typer.echo(format_table(table))
    typer.echo(table.attrs.get("metric", ""))
    if csv is not None:
        from xlatent.core import atomic_path

        with atomic_path(csv) as tmp:
            table.drop(columns=["catalog_row"]).to_csv(tmp, index=False)
        typer.echo(f"wrote {csv}")
    if set_path is not None:
        from xlatent.analysis.similar import plot_similar
        from xlatent.core import SpectrumSet

        query = table.attrs["query"]
        out = figure or Path(f"similar_{re.sub(r'[^A-Za-z0-9._+-]+', '_', query)}.png")
        check_output_file("--figure", out)
        path, missing = plot_similar(SpectrumSet.read(set_path), table, out)
        if missing:
            typer.echo(f"not in {set_path} (not drawn): {', '.join(missing)}")
        typer.echo(f"wrote {path}")


def explore(
    latents: Annotated[Path, typer.Argument(metavar="LATENTS", help=_LATENTS_HELP)],
    set_path: Annotated[
        Path | None,
        typer.Option(
            "--set",
            help="SpectrumSet (.h5) the catalogue came from: spectra on "
            "hover and click (without it, the map only).",
        ),  # fmt: skip
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="HTML page to write.")] = Path("explore.html"),
    model_dir: Annotated[
        Path | None,
        typer.Option("--model", help="Model directory: overlay its reconstruction."),
    ] = None,
    max_points: Annotated[
        int,
        typer.Option(
            "--max-points",
            min=10,
            help="Most points shown; larger catalogues are "
            "subsampled, the most unusual spectra kept.",
        ),  # fmt: skip
    ] = 100_000,
    projection: Annotated[
        Literal["auto", "umap", "tsne", "pca"],
        typer.Option(
            "--projection",
            help="auto (UMAP if installed, else t-SNE up to 2,000 "
            "points, else PCA) | umap | tsne | pca.",
        ),  # fmt: skip
    ] = "auto",
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed (same seed, same page).")] = 0,
) -> None:
    """Write one self-contained interactive page of the latent map (opens offline).

    Colour by class, hardness, N_H, variability or unusualness (whichever columns exist);
    hover a point for its id, class and counts, click it for its spectrum (with the model's
    reconstruction, or the set's own expected counts); lasso points and download their ids as
    CSV.
    """
    check_input("LATENTS", latents)
    check_input("--set", set_path)
    check_input("--model", model_dir, kind="dir")
    check_output_file("--out", out)
    from xlatent.analysis.explore import explore as _explore

    model = None
    if model_dir is not None:
        from xlatent.model import load_model

        model = load_model(model_dir)
    r = _explore(latents, out, set_path, model, max_points=max_points, projection=projection,
                 seed=seed)  # fmt: skip
    for note in r.notes:
        typer.echo(note)
    typer.echo(f"wrote {r.path}: {r.n_shown:,} of {r.n_total:,} spectra, {r.projection.upper()} "
               f"map, spectra: {r.spectra}, {r.size_bytes / 1e6:.1f} MB")  # fmt: skip


__all__ = ["explore", "similar"]
