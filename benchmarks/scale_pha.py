"""Fast OGIP PHA files for benchmarks/scale.py: the simulator's own PHA output, written ~20x
faster than through astropy.

``xlatent simulate --write-pha`` writes each spectrum with astropy (``PhaDirWriter``: ~22 ms a
spectrum, 2.4 h for 400,000). :class:`FastPhaDirWriter` writes the same two files per spectrum
(``<id>.pha``, ``<id>_bkg.pha``; one shared ``response.arf``/``response.rmf`` per folder) from a
header template made once by :func:`xlatent.io.ogip_write.pha_hdu`: only the cards that change
(EXPOSURE, BACKSCAL, BACKFILE, OBJECT, OBS_ID, ...) are formatted per file (by astropy's
``Card``, cached) and the COUNTS column is packed with numpy. The bytes are astropy's, less the
optional CHECKSUM/DATASUM cards (tests/test_scale_bench.py checks both, and that ingest reads
the same spectra). Optionally gzipped (level 1; ingest finds ``<id>_bkg.pha.gz`` by BACKFILE).

    python benchmarks/scale_pha.py DIR --n 1000 [--seed 0] [--gzip]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from xlatent.io import ogip_write
from xlatent.io.ogip_write import PhaDirWriter, pha_hdu

BLOCK = 2880
_END = "END".ljust(80)


@functools.lru_cache(maxsize=65536)
def _card(key: str, value: Any, comment: str) -> str:
    """One 80-character header card exactly as astropy writes it (values repeat: cached)."""
    return fits.Card(key, value, comment).image


def _pad(raw: bytes, fill: bytes) -> bytes:
    return raw + fill * (-len(raw) % BLOCK)


class _Template:
    """The header of one kind of PHA HDU (source or background) with its varying cards."""

    VARYING = ("EXPOSURE", "BACKSCAL", "BACKFILE")

    def __init__(self, n_chan: int, first_channel: int, background: bool, arf: str, rmf: str):
        hdu = pha_hdu(
            np.zeros(n_chan, np.int64), 1.0, 1.0, background=background,
            backfile="none", respfile=rmf, ancrfile=arf, first_channel=first_channel,
        )  # fmt: skip
        self.cards = [c.image for c in hdu.header.cards]
        self.slot = {k: i for i, c in enumerate(hdu.header.cards) if (k := c.keyword) in
                     self.VARYING}  # fmt: skip
        self.comment = {k: hdu.header.comments[k] for k in self.VARYING}
        self.channel = np.arange(first_channel, first_channel + n_chan, dtype=">i4")

    def header(self, values: dict[str, Any], extra: dict[str, Any]) -> bytes:
        cards = list(self.cards)
        for key, value in values.items():
            cards[self.slot[key]] = _card(key, value, self.comment[key])
        cards += [_card(k, v, "") for k, v in extra.items()]
        return _pad(("".join(cards) + _END).encode("ascii"), b" ")

    def data(self, counts: np.ndarray) -> bytes:
        rows = np.empty((self.channel.size, 2), dtype=">i4")
        rows[:, 0] = self.channel
        rows[:, 1] = counts
        return _pad(rows.tobytes(), b"\0")


class FastPhaDirWriter(PhaDirWriter):
    """:class:`~xlatent.io.ogip_write.PhaDirWriter` for one shared response, fast (see the
    module docstring); the response files themselves go through astropy once."""

    gzip = False

    def __init__(self, directory: str | Path, response: Any = None) -> None:
        if response is None:
            raise ValueError("FastPhaDirWriter writes one shared response only")
        super().__init__(directory, response)
        rmf = response.rmf
        args = (rmf.n_channels, int(rmf.first_channel))
        self._src = _Template(*args, False, self.arf_name, self.rmf_name)
        self._bkg = _Template(*args, True, self.arf_name, self.rmf_name)
        self._primary = _pad(fits.PrimaryHDU().header.tostring().encode("ascii"), b" ")
        self._suffix = ".gz" if self.gzip else ""

    def pha_path(self, spec_id: str) -> Path:
        return self.dir / f"{spec_id}.pha{self._suffix}"

    def write(
        self, spec_id: str, src_counts: np.ndarray, bkg_counts: np.ndarray, exposure_s: float,
        backscal_src: float, backscal_bkg: float, obsid: int = -1, *,
        extra: dict[str, object] | None = None, **per_spectrum: Any,
    ) -> None:  # fmt: skip
        """Write ``<spec_id>.pha`` and ``<spec_id>_bkg.pha`` (as the parent class does)."""
        if any(v is not None for v in per_spectrum.values()):
            raise ValueError("FastPhaDirWriter writes one shared response only")
        for c in (src_counts, bkg_counts):
            if np.any(c < 0) or not np.all(np.equal(np.mod(c, 1), 0)):
                raise ValueError("PHA COUNTS must be non-negative integers")
        bkg_name = f"{spec_id}_bkg.pha"
        extra = {"OBJECT": spec_id, "OBS_ID": str(obsid), **(extra or {})}
        exp = float(exposure_s)
        for path, tpl, counts, values in (
            (self.dir / (bkg_name + self._suffix), self._bkg, bkg_counts,
             {"EXPOSURE": exp, "BACKSCAL": float(backscal_bkg)}),
            (self.pha_path(spec_id), self._src, src_counts,
             {"EXPOSURE": exp, "BACKSCAL": float(backscal_src), "BACKFILE": bkg_name}),
        ):  # fmt: skip
            raw = self._primary + tpl.header(values, extra) + tpl.data(counts)
            path.write_bytes(gzip.compress(raw, 1, mtime=0) if self.gzip else raw)


@contextlib.contextmanager
def fast_writer(use_gzip: bool = False) -> Iterator[None]:
    """Within this block the simulator's ``write_pha`` goes through :class:`FastPhaDirWriter`
    (the simulator imports ``PhaDirWriter`` from :mod:`xlatent.io.ogip_write` at call time)."""
    cls = type("FastPhaDirWriterGz" if use_gzip else "FastPhaDirWriter",
               (FastPhaDirWriter,), {"gzip": use_gzip})  # fmt: skip
    saved = ogip_write.PhaDirWriter
    ogip_write.PhaDirWriter = cls  # type: ignore[misc]
    try:
        yield
    finally:
        ogip_write.PhaDirWriter = saved  # type: ignore[misc]


def write_block(directory: Path, n: int, seed: int, use_gzip: bool = False) -> float:
    """Simulate ``n`` spectra (``seed``) through the built-in ACIS-S response and write them as
    PHA files into ``directory`` (made through ``<directory>.tmp``, renamed when complete, so
    a folder that exists is whole). Returns the seconds taken."""
    from xlatent.instrument import default_response
    from xlatent.physics.simulator import simulate

    t0 = time.perf_counter()
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with fast_writer(use_gzip):
        simulate(n, seed=seed, response=default_response(), write_pha=tmp)
    os.replace(tmp, directory)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gzip", action="store_true")
    args = ap.parse_args()
    if args.dir.exists():
        raise SystemExit(f"error: {args.dir} exists")
    dt = write_block(args.dir, args.n, args.seed, args.gzip)
    print(f"wrote {args.n} spectra to {args.dir} in {dt:.1f} s ({dt / args.n * 1e3:.2f} ms each)")


if __name__ == "__main__":
    main()
