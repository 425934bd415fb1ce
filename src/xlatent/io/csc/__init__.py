"""Chandra Source Catalog access: TAP query, spectrum download, catalogue/label join."""

from xlatent.io.csc.download import Detection, DownloadReport, download_spectra
from xlatent.io.csc.join import join_catalog, read_labels
from xlatent.io.csc.query import (
    CSCServiceError,
    QueryCriteria,
    build_adql,
    query_csc,
    read_catalog,
    write_catalog,
)

__all__ = [
    "CSCServiceError",
    "Detection",
    "DownloadReport",
    "QueryCriteria",
    "build_adql",
    "download_spectra",
    "join_catalog",
    "query_csc",
    "read_catalog",
    "read_labels",
    "write_catalog",
]
