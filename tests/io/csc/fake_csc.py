"""A stand-in for the two CSC HTTP interfaces, modelled on the real ones, on 127.0.0.1 only.

API::

    archive = MockArchive(directory)            # any directory of CSC products (mock_archive)
    fake = FakeCSC(archive, catalog_rows).start()  # rows: mock_archive.synthetic_catalog(...)
    fake.tap_url, fake.tap2_url, fake.retrieve_url, fake.base_url
    ...
    fake.stop()

``fake.detections`` / ``fake.by_key`` are the archive's detections (``.key``, ``.files``:
product -> (file name, path)). ``tap_log`` / ``retrieve_log`` record every request.

TAP (``/csc21tap`` serves schema ``csc21``, ``/csc2tap`` schema ``csc2``), as TAP 1.x does:

* ``/sync`` takes GET or POST with ``REQUEST=doQuery``, ``LANG=ADQL``, ``QUERY``, optional
  ``MAXREC`` (parameter names case-insensitive). With ``sync_redirect`` (default) it answers
  ``303 See Other`` to ``/sync/<job>/results/result``, which answers the VOTable.
* The ADQL is checked against :data:`mock_archive.SCHEMAS`: every table (schema-qualified)
  and ``alias.column`` must exist, else a VOTable error (``QUERY_STATUS`` ``ERROR``, HTTP
  ``error_status``, default 400) naming it, as a TAP service answers. The stand-in evaluates
  only what ``build_adql`` writes (comma joins with the full stack join in ``WHERE``,
  ``AND``-ed comparisons with literals, ``IS NOT NULL``, ``ORDER BY``, ``TOP``): anything
  else is answered with an error saying the stand-in does not support it.
* More rows than ``row_limit`` (or ``MAXREC``) are cut there, with ``QUERY_STATUS``
  ``OVERFLOW`` after the table. FIELDs carry the schema's units.

Retrieval (``/csccli/retrieve``): GET only (any other method: 405), ``version`` in
``VERSIONS`` and ``packageset`` of ``,``-separated entries ``OBSID.OBI.REGION/<spectrum|arf|
rmf>/b``. A missing parameter, an unknown version or a malformed entry (a ``+``-joined list is
one malformed entry): HTTP 400 with a one-line text reason (a choice: the service's answer to
malformed requests is not documented). Well-formed entries for products the archive lacks
add nothing; the answer is a tar (uncompressed) of every matching file, one folder deep
(``<obsid>/<file>``; the real folder name is not documented), all versions and cycles.
Any other path: 404 (``/csccli/retrievePackage`` does not exist).

Faults are queued per interface (``fail_retrieve``/``fail_tap``) and consumed one per request:
``500``, ``503``, ``timeout`` (answer after ``slow_s``), ``truncate`` (a well-formed response
holding half the body), ``drop`` (connection closed mid-body), ``html`` (200 with an error
page). ``corrupt`` holds (key, product) pairs served with damaged bytes until removed.
Hostile modes (retrieval): ``drip`` (headers, then one body byte every ``drip_s``),
``drip_headers`` (the status line, then one header byte every ``drip_s``), both for at most
``hostile_max_s``; ``stall`` (half the body, then ``stalled`` is set and the answer waits for
``release``, at most ``hostile_max_s``); ``nolength`` (no Content-Length, the connection
closes after the body); ``gzip`` (the tar answered gzip-compressed). ``extra_members``
((TarInfo, bytes) pairs) are added to every archive, ``omit`` ((key, product) pairs) left out.
"""

from __future__ import annotations

import gzip
import io
import itertools
import re
import tarfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

import numpy as np
from astropy.io.votable.tree import Info, VOTableFile
from astropy.table import MaskedColumn, Table

from .mock_archive import (
    ALIASES,
    PRODUCT_OF_FILETYPE,
    REQUIRED_JOIN,
    SCHEMAS,
    ArchiveDetection,
    Key,
    MockArchive,
)

VERSIONS = ("rel2.1", "rel2.0", "cur")
_ENTRY = re.compile(r"^(\d+)\.(\d+)\.(\d+)/(spectrum|arf|rmf)/b$")
_SERVICES = {"csc21tap": "csc21", "csc2tap": "csc2"}


class QueryError(Exception):
    """An ADQL query the service refuses (its message goes into the VOTable error)."""


@dataclass
class FakeCSC:
    """The stand-in service; ``start()`` it, use ``tap_url`` / ``retrieve_url``, ``stop()``."""

    archive: MockArchive
    catalog: list[dict]
    row_limit: int = 100_000
    sync_redirect: bool = True
    error_status: int = 400
    fail_retrieve: list[str] = field(default_factory=list)
    fail_tap: list[str] = field(default_factory=list)
    corrupt: set[tuple[Key, str]] = field(default_factory=set)
    slow_s: float = 1.0
    drip_s: float = 0.2
    hostile_max_s: float = 10.0
    extra_members: list[tuple[tarfile.TarInfo, bytes]] = field(default_factory=list)
    omit: set[tuple[Key, str]] = field(default_factory=set)
    retrieve_log: list[dict] = field(default_factory=list)
    tap_log: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._jobs: dict[str, bytes] = {}
        self._job_ids = itertools.count(1)
        self.stalled = threading.Event()
        self.release = threading.Event()

    @property
    def by_key(self) -> dict[Key, ArchiveDetection]:
        return self.archive.by_key

    @property
    def detections(self) -> list[ArchiveDetection]:
        return [self.archive.by_key[k] for k in self.archive.keys]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeCSC:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._dispatch("GET", parse_qs(urlsplit(self.path).query))

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode()
                params = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
                params.update(parse_qs(body, keep_blank_values=True))
                self._dispatch("POST", params)

            def do_PUT(self) -> None:
                self._dispatch("PUT", {})

            def _dispatch(self, method: str, params: dict[str, list[str]]) -> None:
                path = urlsplit(self.path).path.rstrip("/")
                p = {k: v[-1] for k, v in params.items()}
                parts = path.strip("/").split("/")
                try:
                    if parts[0] in _SERVICES and len(parts) > 1 and parts[1] == "sync":
                        fake._tap(self, _SERVICES[parts[0]], parts[2:], p)
                    elif path == "/csccli/retrieve":
                        fake._retrieve(self, method, p)
                    else:
                        fake._send(self, 404, b"not found", "text/plain")
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def tap_url(self) -> str:
        return f"{self.base_url}/csc21tap"

    @property
    def tap2_url(self) -> str:
        return f"{self.base_url}/csc2tap"

    @property
    def retrieve_url(self) -> str:
        return f"{self.base_url}/csccli/retrieve"

    # -------------------------------------------------------------------- helpers
    def _next_fault(self, queue: list[str]) -> str:
        with self._lock:
            return queue.pop(0) if queue else "ok"

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str) -> None:
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _fault(self, h: BaseHTTPRequestHandler, fault: str, body: bytes, ctype: str) -> bool:
        """Apply ``fault``; True when the request has been answered by it."""
        if fault in ("500", "503"):
            self._send(h, int(fault), b"<html>Service Unavailable</html>", "text/html")
            return True
        if fault == "timeout":
            time.sleep(self.slow_s)
            return False
        if fault == "truncate":
            self._send(h, 200, body[: len(body) // 2], ctype)
            return True
        if fault == "drop":
            h.send_response(200)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 3])
            h.wfile.flush()
            h.close_connection = True
            return True
        if fault in ("drip", "drip_headers"):
            self._drip(h, body, ctype, headers=fault == "drip_headers")
            return True
        if fault == "stall":
            h.send_response(200)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            self.stalled.set()
            self.release.wait(self.hostile_max_s)
            h.close_connection = True
            return True
        if fault == "nolength":
            h.send_response(200)
            h.send_header("Content-Type", ctype)
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(body)
            h.close_connection = True
            return True
        if fault == "gzip":
            self._send(h, 200, gzip.compress(body, compresslevel=1), ctype)
            return True
        if fault == "html":
            self._send(h, 200, b"<html><body>Error: the archive is busy</body></html>", "text/html")
            return True
        return False

    def _drip(self, h: BaseHTTPRequestHandler, body: bytes, ctype: str, headers: bool) -> None:
        """Answer one byte every ``drip_s`` (the headers too when ``headers``), for at most
        ``hostile_max_s``; a client that hangs up ends it."""
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        h.close_connection = True
        if headers:
            h.wfile.write(head[:17])  # the status line
            stream = head[17:] + body
        else:
            h.wfile.write(head)
            stream = body
        h.wfile.flush()
        end = time.monotonic() + self.hostile_max_s
        for i in range(len(stream)):
            if time.monotonic() > end:
                return
            time.sleep(self.drip_s)
            h.wfile.write(stream[i : i + 1])
            h.wfile.flush()

    # ------------------------------------------------------------------------ TAP
    def _tap(self, h: BaseHTTPRequestHandler, schema: str, rest: list[str], p: dict) -> None:
        votable = "application/x-votable+xml"
        if rest:  # /sync/<job>/results/result after the redirect
            with self._lock:
                body = self._jobs.pop(rest[0], None) if rest[1:] == ["results", "result"] else None
            if body is None:
                self._send(h, 404, b"no such job", "text/plain")
            else:
                self._send(h, 200, body, votable)
            return
        p = {k.upper(): v for k, v in p.items()}
        with self._lock:
            self.tap_log.append(dict(p))
        query = p.get("QUERY", "")
        if p.get("REQUEST") != "doQuery" or p.get("LANG", "").upper() != "ADQL" or not query:
            self._send(h, 400, error_votable("REQUEST=doQuery, LANG=ADQL, QUERY needed"), votable)
            return
        try:
            maxrec = int(p["MAXREC"]) if "MAXREC" in p else None
            body, status = self._votable(schema, query, maxrec), 200
        except QueryError as exc:
            body, status = error_votable(str(exc)), self.error_status
        if self._fault(h, self._next_fault(self.fail_tap), body, votable):
            return
        if status == 200 and self.sync_redirect:
            job = str(next(self._job_ids))
            with self._lock:
                self._jobs[job] = body
            h.send_response(303)
            where = f"{self.base_url}{urlsplit(h.path).path}/{job}/results/result"
            h.send_header("Location", where)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        self._send(h, status, body, votable)

    def _votable(self, schema: str, query: str, maxrec: int | None) -> bytes:
        q = " ".join(query.split())
        m = re.fullmatch(
            r"SELECT (?:TOP (\d+) )?(.+?) FROM (.+?) WHERE (.+?)(?: ORDER BY (.+))?", q, re.I
        )
        if not m:
            raise QueryError(f"stand-in: unsupported query form: {q[:80]}")
        top, select, tables, where, order = m.groups()
        if re.search(r"\bJOIN\b", tables, re.I):
            raise QueryError("stand-in: only comma joins are supported")
        aliases = {}
        for item in tables.split(","):
            parts = item.split()
            if len(parts) != 2 or "." not in parts[0]:
                raise QueryError(f"stand-in: write tables as schema.table alias: {item.strip()!r}")
            sch, table = parts[0].split(".", 1)
            if sch != schema or table not in SCHEMAS[schema]:
                raise QueryError(f"Table '{parts[0]}' does not exist")
            aliases[parts[1]] = table
        tables_of = dict(aliases)

        def column(ref: str) -> tuple[str, str]:
            alias, _, col = ref.strip().partition(".")
            if alias not in tables_of:
                raise QueryError(f"unknown table alias {alias!r} in {ref.strip()!r}")
            if col not in SCHEMAS[schema][tables_of[alias]]:
                raise QueryError(f"Column '{col}' does not exist in table {tables_of[alias]}")
            return tables_of[alias], col

        out = []
        for item in select.split(","):
            parts = re.split(r"\s+AS\s+", item.strip(), flags=re.I)
            table, col = column(parts[0])
            out.append((parts[-1] if len(parts) == 2 else col, table, col))
        joins, filters = set(), []
        for cond in re.split(r"\s+AND\s+", where, flags=re.I):
            cond = cond.strip().strip("()").strip()
            j = re.fullmatch(r"(\w+\.\w+)\s*=\s*(\w+\.\w+)", cond)
            if j:
                column(j.group(1)), column(j.group(2))
                pair = frozenset(
                    f"{ALIASES[tables_of[r.split('.')[0]]]}.{r.split('.')[1]}" for r in j.groups()
                )
                joins.add(pair)
                continue
            c = re.fullmatch(r"(\w+\.\w+)\s*(>=|<=|=|<|>)\s*('[^']*'|[-+\d.eE]+)", cond)
            n = re.fullmatch(r"(\w+\.\w+)\s+IS\s+NOT\s+NULL", cond, re.I)
            if c:
                filters.append((column(c.group(1)), c.group(2), _literal(c.group(3))))
            elif n:
                filters.append((column(n.group(1)), "notnull", None))
            else:
                raise QueryError(f"stand-in: unsupported condition {cond!r}")
        if joins != REQUIRED_JOIN:
            raise QueryError("stand-in: the query must state the whole stack join in WHERE")
        rows = [r for r in self.catalog if all(_passes(r, *f) for f in filters)]
        if order:
            keys = [column(k.split()[0]) for k in order.split(",")]
            rows.sort(key=lambda r: tuple(r[t][c] for t, c in keys))
        limits = [x for x in (self.row_limit, maxrec) if x is not None]
        status = "OK"
        if top is not None:
            rows = rows[: int(top)]
        if len(rows) > min(limits):
            rows, status = rows[: min(limits)], "OVERFLOW"
        return result_votable(schema, out, rows, status)

    # ------------------------------------------------------------------- retrieval
    def _retrieve(self, h: BaseHTTPRequestHandler, method: str, p: dict[str, str]) -> None:
        with self._lock:
            self.retrieve_log.append({"method": method, **p})
        if method != "GET":
            h.send_response(405)
            h.send_header("Allow", "GET")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        entries = p.get("packageset", "").split(",")
        with self._lock:
            self.retrieve_log[-1]["entries"] = entries
        problem = None
        if p.get("version") not in VERSIONS:
            problem = f"unknown or missing version {p.get('version')!r}"
        elif not p.get("packageset"):
            problem = "missing packageset"
        else:
            bad = [e for e in entries if not _ENTRY.match(e)]
            if bad:
                problem = f"malformed packageset entry {bad[0][:80]!r}"
        if problem is not None:
            self._send(h, 400, f"Error: {problem}".encode(), "text/plain")
            return
        body = self._archive(entries)
        if not self._fault(h, self._next_fault(self.fail_retrieve), body, "application/x-tar"):
            self._send(h, 200, body, "application/x-tar")

    def _archive(self, entries: list[str]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for entry in entries:
                m = _ENTRY.match(entry)
                key = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
                product = PRODUCT_OF_FILETYPE[m.group(4)]
                if (key, product) in self.omit:
                    continue
                for name, path in self.archive.files_of(key, product):
                    data = path.read_bytes()
                    if (key, product) in self.corrupt:
                        data = _damage(data)
                    info = tarfile.TarInfo(f"{key[0]}/{name}")
                    info.size = len(data)
                    info.mtime = 0
                    tar.addfile(info, io.BytesIO(data))
            for info, data in self.extra_members:
                tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
        return buf.getvalue()


def _literal(text: str) -> object:
    return text[1:-1] if text.startswith("'") else float(text)


def _passes(row: dict, ref: tuple[str, str], op: str, value: object) -> bool:
    v = row[ref[0]][ref[1]]
    if op == "notnull":
        return v is not None
    if v is None:
        return False
    if isinstance(value, str):
        return op == "=" and str(v).strip() == value
    v = float(v)
    return {">=": v >= value, "<=": v <= value, "=": v == value, "<": v < value,
            ">": v > value}[op]  # fmt: skip


def result_votable(schema: str, out: list[tuple[str, str, str]], rows: list, status: str) -> bytes:
    """A TAP result: one FIELD per output column (with the schema's unit), QUERY_STATUS."""
    table = Table()
    for name, t, col in out:
        values = [r[t][col] for r in rows]
        unit = SCHEMAS[schema][t][col] or None
        sample = next((v for v in values if v is not None), 0.0)
        if isinstance(sample, str):
            table[name] = np.array([v or "" for v in values], dtype=str)
        else:
            kind = int if isinstance(sample, (int, np.integer)) else float
            data = np.array([kind(v) if v is not None else kind(0) for v in values])
            mask = np.array([v is None for v in values], dtype=bool)
            table[name] = MaskedColumn(data, mask=mask, unit=unit)
    vot = VOTableFile.from_table(table)
    resource = vot.resources[0]
    resource.type = "results"
    resource.infos.append(Info(name="QUERY_STATUS", value=status))
    buf = io.BytesIO()
    vot.to_xml(buf)
    return buf.getvalue()


def error_votable(message: str) -> bytes:
    """A TAP error document: a VOTable whose QUERY_STATUS INFO is ERROR, with the message."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
        '<RESOURCE type="results">\n'
        f'<INFO name="QUERY_STATUS" value="ERROR">{escape(message)}</INFO>\n'
        "</RESOURCE>\n</VOTABLE>\n"
    ).encode()


def _damage(data: bytes) -> bytes:
    """Flip bytes in the middle of the file (a gzip file is damaged inside its stream)."""
    raw = bytearray(data)
    mid = len(raw) // 2
    for i in range(mid, min(mid + 64, len(raw))):
        raw[i] ^= 0xFF
    if data[:2] == b"\x1f\x8b":  # keep it a gzip file whose content is broken
        return gzip.compress(bytes(gzip.decompress(data)[:5000]) + b"\x00" * 7)
    return bytes(raw)


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    """An ``extra_members`` entry: a tar member ``name`` of type ``kind``."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = link
    info.mtime = 0
    return info, data


def gzip_bomb(n_bytes: int) -> bytes:
    """A gzip file of ``n_bytes`` zeros (about 1000 times smaller), built in bounded memory."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [z.compress(block) for _ in range(n_bytes // len(block))]
    parts.append(z.compress(bytes(n_bytes % len(block))))
    parts.append(z.flush())
    return b"".join(parts)
