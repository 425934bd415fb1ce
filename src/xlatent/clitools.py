"""Command-line plumbing shared by every ``xlatent`` command: one error policy, early checks.

Exit status of every command
----------------------------
- ``0``: success (``ingest`` and ``csc download`` also when some inputs were skipped or failed,
  as long as at least one was used).
- ``1``: error: an input that cannot be used, an output that cannot be written, a missing
  device, or nothing could be done. One line ``error: <message>`` on stderr. An unexpected
  exception (a bug) also exits 1, with ``error: internal error: <Type>: <message> (run with
  --debug for the traceback)``.
- ``2``: usage error: an unknown option, a missing argument or an option value out of its
  range or choices (the usual ``Usage:`` block, then ``Error: ...``).
- ``130``: interrupted (Ctrl-C): ``interrupted`` on stderr, no traceback.

``xlatent --debug`` (or ``XLATENT_DEBUG=1``) lets any error propagate with its traceback.

Every command runs inside :func:`cli_errors`: the groups are built with ``cls=GuardedGroup``,
whose ``invoke`` wraps the callback and the subcommand in it, so no command can forget it.
Only :mod:`typer` and the standard library are imported here, to keep ``xlatent --help`` fast.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Environment variable that turns on ``--debug`` (tracebacks instead of one-line errors).
DEBUG_ENV = "XLATENT_DEBUG"
_DEBUG_KEY = "xlatent.debug"

#: The exit-status table, for the main ``--help`` epilog.
EXIT_CODES_HELP = (
    "Exit status: 0 success (ingest and csc download: at least one input used); 1 error (an "
    "unusable input, an unwritable output, nothing could be done; one 'error:' line on "
    "stderr); 2 usage error (unknown option, value out of range); 130 interrupted. "
    f"--debug or {DEBUG_ENV}=1 shows the traceback of an error."
)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``error: <message>`` (one line) on stderr and exit with ``code``."""
    typer.secho(f"error: {_one_line(message)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def usage_error(option: str, message: str) -> NoReturn:
    """Refuse an option value as a usage error (exit 2), like Typer's own range checks."""
    raise typer.BadParameter(message, param_hint=f"'{option}'")


def set_debug(ctx: typer.Context, on: bool) -> None:
    """Record ``--debug`` for :func:`cli_errors` (``ctx.meta`` is shared by subcommands)."""
    if on:
        ctx.meta[_DEBUG_KEY] = True


def debug_enabled(ctx: Any = None) -> bool:
    """True when ``--debug`` was given or ``XLATENT_DEBUG`` is set to a true value."""
    if ctx is not None and ctx.meta.get(_DEBUG_KEY):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


class _CliLogHandler(logging.Handler):
    """``xlatent`` log records on the current stderr as ``warning: <one line>``.

    Library code logs the traceback of a step it recovered from (``evaluate`` skips a failed
    analysis); a user sees the message and the exception's last line, not the traceback,
    unless ``--debug``.
    """

    def __init__(self, debug: bool) -> None:
        super().__init__(logging.DEBUG if debug else logging.WARNING)
        self.debug = debug

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if self.debug:
                if record.exc_info:
                    text += "\n" + logging.Formatter().formatException(record.exc_info)
                typer.echo(f"{record.levelname.lower()}: {text}", err=True)
                return
            if "Traceback (most recent call last)" in text:
                head, _, tb = text.partition("Traceback (most recent call last)")
                last = [ln for ln in tb.splitlines() if ln.strip() and not ln.startswith(" ")]
                text = " ".join([head.strip(), *last[-1:]])
            level = "warning" if record.levelno < logging.ERROR else "error"
            typer.echo(f"{level}: {_one_line(text)}", err=True)
        except Exception:  # noqa: BLE001 - logging must never break a command
            self.handleError(record)


def configure_logging(debug: bool) -> None:
    """Route the ``xlatent`` loggers to stderr, one line per record unless ``debug``."""
    logger = logging.getLogger("xlatent")
    for handler in [h for h in logger.handlers if isinstance(h, _CliLogHandler)]:
        logger.removeHandler(handler)
    logger.addHandler(_CliLogHandler(debug))
    if logger.level == logging.NOTSET or logger.level > logging.WARNING:
        logger.setLevel(logging.DEBUG if debug else logging.WARNING)


def _one_line(message: str) -> str:
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return "; ".join(lines)


def _passthrough() -> tuple[type[BaseException], ...]:
    """Exceptions that belong to Typer/Click: exits, aborts and usage errors (exit 2)."""
    kinds: list[type[BaseException]] = [typer.Exit, typer.Abort, typer.TyperException]
    try:  # typer < 0.2x runs on click itself, whose exceptions are not TyperExceptions
        import click

        kinds += [click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort]
    except ImportError:
        pass
    return tuple(kinds)


def error_message(exc: BaseException) -> str:
    """The one line shown for ``exc``; unexpected exception types are called internal errors."""
    try:
        from xlatent.core.errors import XlatentError
    except Exception:  # noqa: BLE001 - a broken install still gets a one-line message
        XlatentError = ()  # type: ignore[assignment,misc]  # noqa: N806

    if isinstance(exc, OSError) and not isinstance(exc, XlatentError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        if exc.filename is not None and exc.filename2 is not None:
            return _one_line(f"{exc.filename} -> {exc.filename2}: {reason}")
        if exc.filename is not None:
            return _one_line(f"{exc.filename}: {reason}")
        return _one_line(reason)
    if isinstance(exc, ValueError) or isinstance(exc, XlatentError):
        return _one_line(str(exc) or type(exc).__name__)
    detail = _one_line(str(exc))
    return (
        f"internal error: {type(exc).__name__}{': ' + detail if detail else ''} "
        "(run with --debug for the traceback)"
    )


@contextlib.contextmanager
def cli_errors(ctx: Any = None) -> Iterator[None]:
    """Turn any exception of a command into one ``error:`` line and an exit status.

    ``XlatentError`` (``InputError``, ``SchemaError``, ``CheckpointError`` ...), ``ValueError``
    and ``OSError`` (named with their path) -> ``error: <message>``, exit 1;
    ``KeyboardInterrupt`` -> ``interrupted``, exit 130; any other exception ->
    ``error: internal error: <Type>: <message> (run with --debug for the traceback)``, exit 1.
    ``typer.Exit``, ``typer.Abort`` and Click usage errors pass through unchanged, as does a
    broken stdout pipe (``xlatent ... | head``), which Typer ends quietly. With ``--debug`` or
    ``XLATENT_DEBUG=1`` (see :func:`debug_enabled`) every exception propagates with its
    traceback. Usable as a context manager or a decorator.
    """
    try:
        yield
    except _passthrough():
        raise
    except KeyboardInterrupt:
        if debug_enabled(ctx):
            raise
        typer.secho("interrupted", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        if debug_enabled(ctx) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
            raise
        fail(error_message(exc))


def make_app(name: str, help: str) -> typer.Typer:
    """A Typer app under the one error policy, with the exit codes in its help."""
    return typer.Typer(
        name=name,
        help=help,
        epilog=EXIT_CODES_HELP,
        cls=GuardedGroup,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
        # Docstrings are wrapped at 100 columns: re-flow their paragraphs to the terminal width.
        rich_markup_mode=None,
    )


class GuardedGroup(TyperGroup):
    """A Typer group whose callback and subcommands all run inside :func:`cli_errors`."""

    def invoke(self, ctx: Any) -> Any:
        with cli_errors(ctx):
            return super().invoke(ctx)


# ---------------------------------------------------------------- early checks of options
def check_positive(option: str, value: float | None) -> None:
    """Usage error unless ``value`` is None or > 0 (Typer's ``min=`` cannot exclude 0)."""
    if value is not None and not value > 0:
        usage_error(option, f"must be > 0, not {value:g}")


def check_input(option: str, path: Path | None, kind: str = "file") -> None:
    """Error (exit 1) unless ``path`` is None or an existing ``kind`` ("file" or "dir")."""
    if path is None:
        return
    if not path.exists():
        fail(f"{option} {path}: no such {'directory' if kind == 'dir' else 'file'}")
    if kind == "dir" and not path.is_dir():
        fail(f"{option} {path}: not a directory")
    if kind == "file" and path.is_dir():
        fail(f"{option} {path}: is a directory, not a file")


def _probe_writable(option: str, path: Path, directory: Path) -> None:
    """Fail unless a file can be created in ``directory`` or its first existing ancestor."""
    anc = directory
    try:
        while not anc.exists():
            anc = anc.parent
    except OSError as exc:
        fail(f"{option} {path}: cannot use {anc}: {exc.strerror or exc}")
    if not anc.is_dir():
        fail(f"{option} {path}: {anc} is not a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".xlatent-write-test.", dir=anc)
    except OSError as exc:
        fail(f"{option} {path}: cannot write in {anc}: {exc.strerror or exc}")
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def check_output_file(option: str, path: Path) -> None:
    """Before any work: ``path`` can be written as a file (parents are created later).

    Refused: an existing directory or other non-regular file (device, FIFO), a parent that is
    a regular file, a location where no file can be created (read-only, /proc ...).
    """
    path = Path(path)
    if path.is_dir():
        fail(f"{option} {path}: is a directory; give a file name")
    if path.exists() and not path.is_file():
        fail(f"{option} {path}: exists and is not a regular file")
    _probe_writable(option, path, path.absolute().parent)


def check_output_dir(option: str, path: Path) -> None:
    """Before any work: ``path`` is a writable directory, or one that can be created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        fail(f"{option} {path}: exists and is not a directory")
    _probe_writable(option, path, path.absolute())


@contextlib.contextmanager
def removed_if_empty_on_error(path: Path | None) -> Iterator[None]:
    """On any error, remove the output directory ``path`` if this command created it and left
    it empty (a failed run leaves no empty ``--out`` behind; partial work is kept)."""
    existed = path is None or Path(path).exists()
    try:
        yield
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):
                Path(path).rmdir()  # type: ignore[arg-type]  # only succeeds when empty
        raise


__all__ = [
    "DEBUG_ENV",
    "EXIT_CODES_HELP",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "GuardedGroup",
    "check_input",
    "check_output_dir",
    "check_output_file",
    "check_positive",
    "cli_errors",
    "configure_logging",
    "debug_enabled",
    "error_message",
    "fail",
    "removed_if_empty_on_error",
    "set_debug",
    "usage_error",
]
