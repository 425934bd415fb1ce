"""Query the Chandra Source Catalog (CSC 2.x) TAP service for per-detection properties.

One row per (master source, ACIS observation detection): master-source identity and
position joined to the per-observation detection (``observation_source``) through the stack
associations, exactly as CIAO's ``search_csc`` joins them::

    master_source m -- master_stack_assoc a      (m.name = a.name)
    a -- stack_observation_assoc b               (detect_stack_id, region_id)
    b -- observation_source o                    (obsid, obi, region_id)
"""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import requests
import urllib3

from xlatent.core.atomic import atomic_path
from xlatent.core.errors import InputError, XlatentError

#: The CSC 2.1 TAP service (synchronous queries go to ``<url>/sync``).
DEFAULT_TAP_URL = "https://cda.cfa.harvard.edu/csc21tap"
TAP_URL_ENV = "XLATENT_CSC_TAP_URL"
#: ADQL schema of the catalogue release (``csc21`` for CSC 2.1, ``csc2`` for CSC 2.0).
DEFAULT_SCHEMA = "csc21"

#: (select expression, output column). Per-detection quantities come from the observation
#: detection ``o``; identity, position and the spectral fit from the master source ``m``.
DEFAULT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("m.name", "name"),
    ("m.ra", "ra"),
    ("m.dec", "dec"),
    ("o.obsid", "obsid"),
    ("o.obi", "obi"),
    ("o.region_id", "region_id"),
    ("o.instrument", "instrument"),
    ("o.theta", "theta"),
    ("o.livetime", "livetime"),
    ("o.src_cnts_aper_b", "src_cnts_aper_b"),
    ("o.flux_significance_b", "flux_significance_b"),
    ("o.flux_aper_b", "flux_aper_b"),
    ("o.hard_hm", "hard_hm"),
    ("o.hard_hs", "hard_hs"),
    ("o.hard_ms", "hard_ms"),
    ("o.var_prob_b", "var_prob_b"),
    ("o.var_index_b", "var_index_b"),
    ("m.powlaw_gamma", "powlaw_gamma"),
    ("m.powlaw_nh", "powlaw_nh"),
)


class CSCServiceError(XlatentError):
    """A CSC web service could not be used (after retries); the message names the URL."""


@dataclass(frozen=True)
class QueryCriteria:
    """Selection of per-observation ACIS detections.

    ``min_counts``: aperture-corrected net source counts (0.5-7 keV, ``src_cnts_aper_b``);
    ``min_significance``: broad-band flux significance (``flux_significance_b``);
    ``max_theta_arcmin``: off-axis angle (``theta``, arcmin); ``top``: at most this many rows.
    """

    min_counts: float = 40.0
    min_significance: float = 5.0
    max_theta_arcmin: float = 10.0
    instrument: str = "ACIS"
    top: int | None = None


def build_adql(
    criteria: QueryCriteria | None = None,
    schema: str = DEFAULT_SCHEMA,
    columns: Sequence[tuple[str, str]] = DEFAULT_COLUMNS,
) -> str:
    """The ADQL query for ``criteria`` (pure; no network).

    ``schema`` prefixes every table (``csc21.master_source``); pass ``""`` for none.
    """
    c = criteria or QueryCriteria()
    for value, label in (
        (c.min_counts, "min_counts"),
        (c.min_significance, "min_significance"),
        (c.max_theta_arcmin, "max_theta_arcmin"),
    ):
        if not np.isfinite(value):
            raise ValueError(f"{label} must be a finite number, not {value!r}")
    if c.top is not None and c.top <= 0:
        raise ValueError(f"top must be positive, not {c.top}")
    if not c.instrument.isalnum():
        raise ValueError(f"instrument must be alphanumeric, not {c.instrument!r}")
    if schema and not schema.replace("_", "").isalnum():
        raise ValueError(f"schema must be an identifier, not {schema!r}")
    p = f"{schema}." if schema else ""
    select = ",\n  ".join(
        expr if expr.endswith(f".{out}") else f"{expr} AS {out}" for expr, out in columns
    )
    top = f" TOP {int(c.top)}" if c.top else ""
    return (
        f"SELECT{top}\n  {select}\n"
        f"FROM {p}master_source m\n"
        f"  JOIN {p}master_stack_assoc a ON m.name = a.name\n"
        f"  JOIN {p}stack_observation_assoc b\n"
        f"    ON a.detect_stack_id = b.detect_stack_id AND a.region_id = b.region_id\n"
        f"  JOIN {p}observation_source o\n"
        f"    ON o.obsid = b.obsid AND o.obi = b.obi AND o.region_id = b.region_id\n"
        f"WHERE o.instrument = '{c.instrument}'\n"
        f"  AND o.src_cnts_aper_b >= {float(c.min_counts)!r}\n"
        f"  AND o.flux_significance_b >= {float(c.min_significance)!r}\n"
        f"  AND o.theta <= {float(c.max_theta_arcmin)!r}\n"
        f"ORDER BY m.name, o.obsid, o.obi, o.region_id"
    )


def tap_url(url: str | None = None) -> str:
    """``url``, else ``$XLATENT_CSC_TAP_URL``, else the public CSC 2.1 service."""
    return (url or os.environ.get(TAP_URL_ENV) or DEFAULT_TAP_URL).rstrip("/")


# ------------------------------------------------------------------------------ retries
T = TypeVar("T")

#: HTTP status codes worth retrying.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class TransientError(Exception):
    """A failure that may go away on retry (timeout, 5xx, dropped connection)."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
        return True
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, (urllib3.exceptions.ProtocolError, http.client.IncompleteRead)):
        return True
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code in TRANSIENT_STATUS
    # pyvo wraps HTTP failures in DALServiceError with the underlying cause attached
    cause = getattr(exc, "cause", None) or exc.__cause__
    if cause is not None and cause is not exc and isinstance(cause, BaseException):
        return is_transient(cause)
    code = getattr(exc, "code", None)
    return isinstance(code, int) and code in TRANSIENT_STATUS


def with_retries(
    func: Callable[[], T],
    retries: int = 4,
    backoff_s: float = 1.0,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Call ``func``; on a transient failure retry up to ``retries`` times.

    The wait before retry k (1-based) is ``backoff_s * 2**(k-1)`` seconds.
    """
    attempt = 0
    while True:
        try:
            return func()
        except Exception as exc:
            if attempt >= retries or not is_transient(exc):
                raise
            attempt += 1
            if on_retry is not None:
                on_retry(attempt, exc)
            time.sleep(backoff_s * 2 ** (attempt - 1))


class _TimeoutSession(requests.Session):
    """A session that applies a default timeout (pyvo sets none)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self._timeout_s = timeout_s
        self.headers["User-Agent"] = "xlatent-csc/1 (+pyvo)"

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self._timeout_s)
        return super().request(method, url, *args, **kwargs)


# ------------------------------------------------------------------------------- query
def query_csc(
    criteria: QueryCriteria | None = None,
    url: str | None = None,
    schema: str = DEFAULT_SCHEMA,
    timeout_s: float = 300.0,
    retries: int = 4,
    backoff_s: float = 2.0,
    adql: str | None = None,
) -> pd.DataFrame:
    """Run the detection query synchronously against the TAP service; one row per detection.

    Transient failures (timeouts, 5xx, dropped connections) are retried with exponential
    backoff; anything else raises :class:`CSCServiceError` with a one-line reason.
    """
    import pyvo

    service_url = tap_url(url)
    query = adql or build_adql(criteria, schema=schema)
    service = pyvo.dal.TAPService(service_url, session=_TimeoutSession(timeout_s))
    maxrec = criteria.top if criteria is not None and criteria.top else None

    def run() -> Any:
        return service.run_sync(query, maxrec=maxrec).to_table()

    try:
        table = with_retries(run, retries=retries, backoff_s=backoff_s)
    except Exception as exc:
        raise CSCServiceError(f"{service_url}: {_reason(exc)}") from None
    return table_to_frame(table)


def table_to_frame(table: Any) -> pd.DataFrame:
    """An astropy Table (masked values -> NaN / "" / -1) as a DataFrame with clean dtypes."""
    cols = {}
    for name in table.colnames:
        col = table[name]
        mask = np.asarray(getattr(col, "mask", np.zeros(len(col), bool)), dtype=bool)
        values = np.asarray(col.filled() if hasattr(col, "filled") else col)
        if values.dtype.kind in "SUO":
            out = np.array([_as_text(v) for v in values], dtype=object)
            out[mask] = ""
        elif values.dtype.kind in "iu":
            out = values.astype(np.int64)
            if mask.any():
                out = out.copy()
                out[mask] = -1
        elif values.dtype.kind == "b":
            out = values.astype(bool)
        else:
            out = values.astype(np.float64)
            out[mask] = np.nan
        cols[name.lower()] = out
    frame = pd.DataFrame(cols)
    for key in ("obsid", "obi", "region_id"):
        if key in frame:
            frame[key] = pd.to_numeric(frame[key], errors="coerce").fillna(-1).astype(np.int64)
    return frame


def _as_text(v: Any) -> str:
    return v.decode("utf-8", "replace").strip() if isinstance(v, bytes) else str(v).strip()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


# ---------------------------------------------------------------------------- catalogue I/O
_FORMATS = {".fits": "fits", ".fit": "fits", ".parquet": "parquet", ".csv": "csv"}


def write_catalog(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` atomically as FITS, Parquet or CSV (chosen by the extension)."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(path, "unknown catalogue format (use .fits, .parquet or .csv)")
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        elif fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            from astropy.table import Table

            table = Table.from_pandas(frame)
            for name in table.colnames:
                if table[name].dtype.kind == "O":
                    table[name] = np.asarray(table[name], dtype=str)
            table.meta["ORIGIN"] = "xlatent csc query"
            table.write(tmp, format="fits", overwrite=True)
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Any catalogue table by extension: Parquet, CSV/TSV, VOTable or FITS; lower-case columns."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv"):
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", comment=None)
        else:
            from astropy.table import Table

            fmt = "votable" if suffix in (".vot", ".xml", ".votable") else None
            frame = table_to_frame(Table.read(path, format=fmt) if fmt else Table.read(path))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a readable catalogue ({_reason(exc)})") from None
    frame.columns = [str(c).lower() for c in frame.columns]
    return frame


def read_catalog(path: str | Path) -> pd.DataFrame:
    """Read a catalogue written by :func:`write_catalog` (or a VOTable / TSV from the CSC)."""
    path = Path(path)
    frame = read_table(path)
    missing = [c for c in ("obsid", "obi", "region_id") if c not in frame]
    if missing:
        raise InputError(path, f"catalogue lacks column(s) {', '.join(missing)}")
    for key in ("obsid", "obi", "region_id"):
        frame[key] = pd.to_numeric(frame[key], errors="coerce").fillna(-1).astype(np.int64)
    if "name" in frame:
        frame["name"] = frame["name"].fillna("").astype(str).str.strip()
    return frame


__all__ = [
    "DEFAULT_COLUMNS",
    "DEFAULT_SCHEMA",
    "DEFAULT_TAP_URL",
    "TAP_URL_ENV",
    "CSCServiceError",
    "QueryCriteria",
    "TransientError",
    "build_adql",
    "is_transient",
    "query_csc",
    "read_catalog",
    "read_table",
    "table_to_frame",
    "tap_url",
    "with_retries",
    "write_catalog",
]
