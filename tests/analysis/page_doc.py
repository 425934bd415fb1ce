"""Read an explorer page's Bokeh document without a browser (tests only)."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path
from typing import Any

import numpy as np


def _named(obj: Any, found: dict[str, dict[str, Any]]) -> None:
    if isinstance(obj, dict):
        attrs = obj.get("attributes")
        if obj.get("type") == "object" and isinstance(attrs, dict) and attrs.get("name"):
            found.setdefault(attrs["name"], attrs)
        for v in obj.values():
            _named(v, found)
    elif isinstance(obj, list):
        for v in obj:
            _named(v, found)


def page_models(path: Path) -> dict[str, dict[str, Any]]:
    """The attributes of every named model in the page's (single) Bokeh document."""
    text = Path(path).read_text(encoding="utf-8")
    docs = re.findall(r'<script type="application/json" id="[^"]+">\s*(.*?)\s*</script>',
                      text, re.S)  # fmt: skip
    assert len(docs) == 1, "one Bokeh document expected"
    found: dict[str, dict[str, Any]] = {}
    _named(json.loads(docs[0]), found)
    return found


def column(data: dict[str, Any], name: str) -> Any:
    """One column of a serialised ColumnDataSource: a list, or a decoded ndarray."""
    entries = dict(data["entries"]) if data.get("type") == "map" else data
    col = entries[name]
    if isinstance(col, dict) and col.get("type") == "ndarray":
        raw = base64.b64decode(col["array"]["data"])
        if raw[:2] == b"\x1f\x8b":  # Bokeh gzips large buffers
            raw = gzip.decompress(raw)
        return np.frombuffer(raw, dtype=col["dtype"]).reshape(col["shape"])
    return col
