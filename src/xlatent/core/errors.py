"""Exceptions with messages a person can act on."""

from __future__ import annotations

from pathlib import Path


class XlatentError(Exception):
    """Base class of every error xlatent raises on purpose."""


class InputError(XlatentError):
    """A file that cannot be used, with the file named in the one-line message."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SchemaError(XlatentError):
    """A container written by an incompatible version, or with missing parts."""
