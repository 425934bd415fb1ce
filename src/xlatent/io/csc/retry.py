"""Retries of CSC requests: which failures are transient, exponential backoff, one-line reasons.

Transient: timeouts, dropped connections, truncated transfers, HTTP 408/429/5xx (also inside
pyvo's ``DALServiceError``). Never transient: an error answer of the service (a VOTable with
``QUERY_STATUS`` ``ERROR``, pyvo's ``DALQueryError``), other HTTP 4xx, malformed answers.
"""

from __future__ import annotations

import html
import http.client
import time
from collections.abc import Callable
from typing import TypeVar

import requests
import urllib3

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


def _reason(exc: BaseException) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    text = " ".join(str(exc).split())
    if type(exc).__name__ == "DALQueryError":  # a VOTable QUERY_STATUS=ERROR answer
        return f"query rejected by the service: {html.unescape(text)[:300]}"
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


__all__ = ["TRANSIENT_STATUS", "TransientError", "is_transient", "with_retries"]
