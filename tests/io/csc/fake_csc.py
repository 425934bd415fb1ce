"""A local stand-in for the two CSC HTTP interfaces, on 127.0.0.1 only.

* TAP sync (``/tap/sync``, GET or POST ``REQUEST=doQuery&LANG=ADQL&QUERY=...``) answers a
  VOTable, honouring the thresholds and ``TOP`` of the ADQL that ``build_adql`` writes.
* Package retrieval (``/csccli/retrievePackage``, ``version`` + ``packageset``) answers a tar
  archive of the per-detection PHA/ARF/RMF files, built from the real CSC files in
  ``shared/data/real_spectra`` plus clones renamed to other region ids (headers rewritten).

Faults are queued per interface (``fail_retrieve``/``fail_tap``) and consumed one per request:
``500``, ``503``, ``timeout`` (answer after ``slow_s``), ``truncate`` (a well-formed response
holding half a tar), ``drop`` (connection closed mid-body), ``html`` (200 with an error page).
``corrupt`` holds (detection key, product) pairs served with damaged bytes until removed.

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
import re
import tarfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from astropy.io import fits
from astropy.table import Table

Key = tuple[int, int, int]
PRODUCT_OF_FILETYPE = {"spectrum": "pha3", "arf": "arf3", "rmf": "rmf3"}

#: Real CSC detections in shared/data/real_spectra: key -> file stem.
REAL = {
    (308, 0, 44): "acisf00308_000N001_r0044",
    (1575, 1, 85): "acisf01575_001N001_r0085",
    (1878, 0, 100): "acisf01878_000N001_r0100",
}
#: Clones: new key <- real key (files renamed, header keywords rewritten).
CLONES = {(308, 0, 45): (308, 0, 44), (1878, 0, 101): (1878, 0, 100), (1575, 1, 86): (1575, 1, 85)}


@dataclass
class FakeDetection:
    key: Key
    files: dict[str, tuple[str, bytes]]  # product -> (file name, bytes)
    row: dict


def _stem(key: Key) -> str:
    return f"acisf{key[0]:05d}_{key[1]:03d}N001_r{key[2]:04d}"


def _clone(src_dir: Path, real: Key, key: Key) -> dict[str, tuple[str, bytes]]:
    out = {}
    old, new = REAL[real], _stem(key)
    for product in ("pha3", "arf3", "rmf3"):
        path = next(src_dir.glob(f"{old}_{product}.fits*"))
        with fits.open(path) as hdul:
            for hdu in hdul:
                h = hdu.header
                for kw in ("BACKFILE", "ANCRFILE", "RESPFILE"):
                    if isinstance(h.get(kw), str):
                        h[kw] = h[kw].replace(old, new)
                if "REGIONID" in h:
                    h["REGIONID"] = f"{key[2]:04d}"
            buf = io.BytesIO()
            hdul.writeto(buf, checksum=True)
        out[product] = (f"{new}_{product}.fits", buf.getvalue())
    return out


def build_detections(src_dir: Path, names: list[str]) -> list[FakeDetection]:
    """Six servable detections (3 real, 3 clones) with catalogue rows named from ``names``."""
    rng = np.random.default_rng(6)
    dets = []
    keys = [*REAL, *CLONES]
    for i, key in enumerate(keys):
        if key in REAL:
            files = {}
            for product in ("pha3", "arf3", "rmf3"):
                path = next(src_dir.glob(f"{REAL[key]}_{product}.fits*"))
                files[product] = (path.name, path.read_bytes())
        else:
            files = _clone(src_dir, CLONES[key], key)
        row = {
            "name": names[i],
            "ra": float(rng.uniform(0, 360)),
            "dec": float(rng.uniform(-60, 60)),
            "obsid": key[0],
            "obi": key[1],
            "region_id": key[2],
            "instrument": "ACIS",
            "theta": float(1.0 + i),
            "livetime": 20000.0 + i,
            "src_cnts_aper_b": float(100 + 50 * i),
            "flux_significance_b": float(8 + i),
            "flux_aper_b": 1e-14 * (i + 1),
            "hard_hm": -0.1 * i,
            "hard_hs": 0.05 * i,
            "hard_ms": 0.1,
            "var_prob_b": 0.1 * i,
            "var_index_b": i % 3,
            "powlaw_gamma": 1.7,
            "powlaw_nh": np.nan if i == 1 else 0.1 * (i + 1),  # a catalogue NULL
        }
        dets.append(FakeDetection(key, files, row))
    return dets


#: Rows the query thresholds must exclude (never servable).
FILTERED_ROWS = [
    {
        "obsid": 999,
        "obi": 0,
        "region_id": 1,
        "src_cnts_aper_b": 10.0,
        "flux_significance_b": 9.0,
        "theta": 2.0,
    },
    {
        "obsid": 999,
        "obi": 0,
        "region_id": 2,
        "src_cnts_aper_b": 500.0,
        "flux_significance_b": 2.0,
        "theta": 2.0,
    },
    {
        "obsid": 999,
        "obi": 0,
        "region_id": 3,
        "src_cnts_aper_b": 500.0,
        "flux_significance_b": 9.0,
        "theta": 14.0,
    },
]


@dataclass
class FakeCSC:
    """The fake service; ``start()`` it, use ``tap_url`` / ``retrieve_url``, ``stop()`` it."""

    detections: list[FakeDetection]
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
        self.by_key = {d.key: d for d in self.detections}
        self.stalled = threading.Event()
        self.release = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeCSC:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._dispatch(parse_qs(urlsplit(self.path).query))

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode()
                params = parse_qs(urlsplit(self.path).query)
                params.update(parse_qs(body, keep_blank_values=True))
                self._dispatch(params)

            def _dispatch(self, params: dict[str, list[str]]) -> None:
                path = urlsplit(self.path).path.rstrip("/")
                p = {k: v[-1] for k, v in params.items()}
                try:
                    if path == "/tap/sync":
                        fake._tap(self, p)
                    elif path == "/csccli/retrievePackage":
                        fake._retrieve(self, p)
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
        return f"{self.base_url}/tap"

    @property
    def retrieve_url(self) -> str:
        return f"{self.base_url}/csccli/retrievePackage"

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
    def _tap(self, h: BaseHTTPRequestHandler, p: dict[str, str]) -> None:
        query = p.get("QUERY", "")
        with self._lock:
            self.tap_log.append(dict(p))
        if p.get("REQUEST") != "doQuery" or p.get("LANG", "").upper() != "ADQL" or not query:
            self._send(h, 400, b"bad TAP request", "text/plain")
            return
        body = self._votable(query)
        if not self._fault(h, self._next_fault(self.fail_tap), body, "application/x-votable+xml"):
            self._send(h, 200, body, "application/x-votable+xml")

    def catalog_rows(self) -> list[dict]:
        base = self.detections[0].row
        rows = [d.row for d in self.detections]
        for extra in FILTERED_ROWS:
            rows.append({**base, "name": f"2CXO J999999.{extra['region_id']}+000000", **extra})
        return rows

    def _votable(self, query: str) -> bytes:
        def num(pattern: str, default: float) -> float:
            m = re.search(pattern, query)
            return float(m.group(1)) if m else default

        min_counts = num(r"src_cnts_aper_b\s*>=\s*([-\d.eE+]+)", -np.inf)
        min_sig = num(r"flux_significance_b\s*>=\s*([-\d.eE+]+)", -np.inf)
        max_theta = num(r"theta\s*<=\s*([-\d.eE+]+)", np.inf)
        top = int(num(r"SELECT\s+TOP\s+(\d+)", 10**9))
        select = re.search(r"SELECT\s+(?:TOP\s+\d+\s+)?(.*?)\s+FROM\s", query, re.S | re.I)
        names = [
            re.split(r"\s+AS\s+|\.", item.strip(), flags=re.I)[-1]
            for item in (select.group(1) if select else "").split(",")
        ]
        rows = [
            r
            for r in self.catalog_rows()
            if r["src_cnts_aper_b"] >= min_counts
            and r["flux_significance_b"] >= min_sig
            and r["theta"] <= max_theta
        ][:top]
        table = Table()
        for name in names:
            values = [r[name] for r in rows]
            if values and isinstance(values[0], float):
                arr = np.ma.masked_invalid(np.array(values, dtype=float))
                table[name] = arr
            else:
                table[name] = values
        buf = io.BytesIO()
        table.write(buf, format="votable")
        return buf.getvalue()

    # ------------------------------------------------------------------- retrieval
    def _retrieve(self, h: BaseHTTPRequestHandler, p: dict[str, str]) -> None:
        entries = [e for e in re.split(r"[+\s,;]+", p.get("packageset", "")) if e]
        with self._lock:
            self.retrieve_log.append({"version": p.get("version"), "entries": entries})
        if not entries:
            self._send(h, 400, b"missing packageset", "text/plain")
            return
        body = self._archive(entries)
        if not self._fault(h, self._next_fault(self.fail_retrieve), body, "application/x-tar"):
            self._send(h, 200, body, "application/x-tar")

    def _archive(self, entries: list[str]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for entry in entries:
                m = re.match(r"^(\d+)\.(\d+)\.(\d+)/(\w+)/(\w*)$", entry)
                if not m:
                    continue
                key = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
                product = PRODUCT_OF_FILETYPE.get(m.group(4))
                det = self.by_key.get(key)
                if det is None or product is None or (key, product) in self.omit:
                    continue
                name, data = det.files[product]
                if (key, product) in self.corrupt:
                    data = _damage(data)
                info = tarfile.TarInfo(f"{key[0]:05d}/r{key[2]:04d}/{name}")
                info.size = len(data)
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
            for info, data in self.extra_members:
                tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
        return buf.getvalue()


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
