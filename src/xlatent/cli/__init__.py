"""The ``xlatent`` command line: thin Typer wrappers over the Python API.

Each command imports its implementation lazily so ``xlatent --help`` stays fast. Option values
are checked, and outputs probed for writability, before any work starts. The commands live by
stage: :mod:`~xlatent.cli.data` (ingest, simulate), :mod:`~xlatent.cli.model` (train, encode,
reconstruct), :mod:`~xlatent.cli.evaluation` (evaluate, evaluate-table, report, demo),
:mod:`~xlatent.cli.explore` (similar, explore) and
:mod:`xlatent.io.csc.cli` (the ``csc`` group); they are registered here, in ``--help`` order.

Exit status (see :mod:`xlatent.clitools`, which runs every command inside one error handler)
---------------------------------------------------------------------------------------------
- 0: success; ``ingest`` also when some files were skipped but at least one was ingested.
- 1: error: an unusable input, an unwritable output, nothing could be done, or an internal
  error; one line ``error: ...`` on stderr (``--debug`` / ``XLATENT_DEBUG=1``: the traceback).
- 2: usage error: unknown option, missing argument, option value out of range or choices.
- 130: interrupted (Ctrl-C), ``interrupted`` on stderr.
"""

from __future__ import annotations

from typing import Annotated

import typer

from xlatent.cli import data, evaluation, explore, model
from xlatent.clitools import (
    DEBUG_ENV,
    EXIT_CODES_HELP,
    configure_logging,
    debug_enabled,
    make_app,
    set_debug,
)
from xlatent.io.csc.cli import csc_app

app = make_app(
    "xlatent",
    "Latent representations of X-ray spectra (Chandra Source Catalog).\n\n"
    "Energies are in keV, exposures in seconds, N_H in 1e22 cm^-2, fluxes in erg cm^-2 s^-1.",
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
        from xlatent._version import __version__

        typer.echo(__version__)
        raise typer.Exit()


# The order here is the order of `xlatent --help`.
app.command()(data.ingest)
app.command()(data.simulate)
app.command()(model.train)
app.command()(model.encode)
app.command()(model.reconstruct)
app.command()(evaluation.evaluate)
app.command("evaluate-table")(evaluation.evaluate_table)
app.command()(evaluation.report)
app.command()(explore.similar)
app.command()(explore.explore)
app.command()(evaluation.demo)
app.add_typer(csc_app, name="csc")

__all__ = ["app"]
