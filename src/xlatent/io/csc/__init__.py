"""Chandra Source Catalog access: TAP query, spectrum download, catalogue/label join.

Names load on first use, so that importing the command line stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "CSCServiceError": "query",
    "QueryCriteria": "query",
    "build_adql": "query",
    "query_csc": "query",
    "read_catalog": "query",
    "read_table": "query",
    "write_catalog": "query",
    "Detection": "products",
    "DownloadReport": "download",
    "download_spectra": "download",
    "join_catalog": "join",
    "join_files": "join",
    "read_labels": "join",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"xlatent.io.csc.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'xlatent.io.csc' has no attribute {name!r}")
