"""The ``xlatent`` command line: thin Typer wrappers over the Python API.

Each command imports its implementation lazily so ``xlatent --help`` stays fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="xlatent",
    help="Latent representations of X-ray spectra (Chandra Source Catalog).\n\n"
    "Energies are in keV, exposures in seconds, N_H in 1e22 cm^-2, fluxes in erg cm^-2 s^-1.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


if __name__ == "__main__":  # pragma: no cover
    app()
