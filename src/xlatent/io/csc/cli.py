"""``xlatent csc``: query the Chandra Source Catalog and download per-detection spectra.

Thin Typer wrappers over :mod:`xlatent.io.csc`; heavy imports happen inside the commands.
Errors follow :mod:`xlatent.clitools` (one ``error:`` line; exit 1 error, 2 usage, 130 Ctrl-C).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xlatent.clitools import (
    check_output_dir,
    check_output_file,
    check_positive,
    fail,
    make_app,
    usage_error,
)
from xlatent.io.csc.products import DEFAULT_MAX_ARCHIVE_BYTES, DEFAULT_MAX_MEMBER_BYTES

csc_app = make_app(
    "csc",
    "Chandra Source Catalog 2.1 access: `query` the TAP service for detections, then "
    "`download` their spectra (PHA, ARF, RMF); `xlatent ingest DIR --catalog CAT` builds a set.",
)

_TAP_ENV = "XLATENT_CSC_TAP_URL"
_RETRIEVE_ENV = "XLATENT_CSC_RETRIEVE_URL"
_MIB = 1024**2


@csc_app.command("query")
def query(
    out: Annotated[
        Path, typer.Option("--out", help="Catalogue to write: .fits, .parquet or .csv.")
    ],
    min_counts: Annotated[
        float,
        typer.Option(
            "--min-counts",
            min=0,
            help="Lowest aperture net source counts, 0.5-7 keV (src_cnts_aper_b), per detection.",
        ),
    ] = 40.0,
    min_significance: Annotated[
        float,
        typer.Option(
            "--min-significance",
            min=0,
            help="Lowest broad-band flux significance (flux_significance_b).",
        ),
    ] = 5.0,
    max_theta: Annotated[
        float, typer.Option("--max-theta", help="Largest off-axis angle theta, arcmin.")
    ] = 10.0,
    top: Annotated[
        int | None,
        typer.Option("--top", min=1, help="Return at most this many detections."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar=_TAP_ENV,
            help="TAP service base URL (queries go to URL/sync). Default "
            "https://cda.cfa.harvard.edu/csc21tap (csc2tap with --schema csc2).",
        ),
    ] = None,
    schema: Annotated[
        str,
        typer.Option(
            "--schema",
            help="Release: csc21 (CSC 2.1) or csc2 (CSC 2.0: its own service and column names; "
            "the counts cut is on cnts_aper_b there).",
        ),
    ] = "csc21",
    include_ambiguous: Annotated[
        bool,
        typer.Option(
            "--include-ambiguous",
            help="Also ambiguous source-detection matches (match_type 'a': one row per "
            "candidate master source). Default: unique matches only (match_type 'u').",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the service to answer.")
    ] = 300.0,
    retries: Annotated[
        int,
        typer.Option(
            "--retries", min=0, help="Retries of timeouts, HTTP 5xx, dropped connections."
        ),
    ] = 4,
    backoff: Annotated[
        float,
        typer.Option("--backoff", min=0, help="First retry wait, seconds; doubled on each retry."),
    ] = 2.0,
    show_adql: Annotated[
        bool, typer.Option("--show-adql", help="Print the ADQL query and exit (no network).")
    ] = False,
) -> None:
    """Query CSC 2.1 for per-observation ACIS detections and write them as a catalogue.

    One row per detection (obsid, obi, region_id) with its master source name, match_type,
    ra/dec, counts, significance, flux, theta (arcmin), hardness ratios, variability and the
    absorbed power-law fit (powlaw_gamma, powlaw_nh). Units are those the service declares
    in its answer; a FITS catalogue keeps them (TUNITn). A result the service truncated at its
    row limit is an error: narrow the query.
    """
    check_positive("--max-theta", max_theta)
    check_positive("--timeout", timeout)
    from xlatent.io.csc.query import QueryCriteria, build_adql, query_csc, tap_url, write_catalog

    if schema not in ("csc21", "csc2"):
        usage_error("--schema", f"use csc21 or csc2, not {schema!r}")
    criteria = QueryCriteria(
        min_counts, min_significance, max_theta, top=top, unique_only=not include_ambiguous
    )
    adql = build_adql(criteria, schema=schema)
    if show_adql:
        typer.echo(adql)
        return
    check_output_file("--out", out)
    typer.echo(f"querying {tap_url(url, schema)} ...", err=True)
    frame = query_csc(
        criteria, url=url, schema=schema, timeout_s=timeout, retries=retries, backoff_s=backoff
    )
    write_catalog(frame, out)
    n_src = frame["name"].nunique() if "name" in frame else 0
    typer.echo(f"{len(frame)} detections of {n_src} sources; wrote {out}")


@csc_app.command("download")
def download(
    catalog: Annotated[
        Path,
        typer.Argument(help="Catalogue with obsid, obi, region_id (from `xlatent csc query`)."),
    ],
    directory: Annotated[
        Path, typer.Option("--dir", help="Directory for the spectra (created; resumable).")
    ] = Path("data"),
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar=_RETRIEVE_ENV,
            help="CSC batch retrieval URL (GET version, packageset). "
            "Default https://cda.cfa.harvard.edu/csccli/retrieve.",
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=1, help="Detections per request (one tar archive each)."),
    ] = 50,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Requests in flight at once.")
    ] = 4,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            min=0,
            help="Retries of timeouts, HTTP 5xx, dropped or truncated transfers.",
        ),
    ] = 4,
    backoff: Annotated[
        float,
        typer.Option("--backoff", min=0, help="First retry wait, seconds; doubled on each retry."),
    ] = 2.0,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            help="Seconds allowed for one request (one batch archive): connect and the whole "
            "transfer; lower --batch-size on slow links.",
        ),
    ] = 300.0,
    max_archive_mb: Annotated[
        int,
        typer.Option(
            "--max-archive-mb",
            min=1,
            help="Largest answer (one batch archive), MiB, also of its decompressed content; "
            "a larger one fails its batch.",
        ),
    ] = DEFAULT_MAX_ARCHIVE_BYTES // _MIB,
    max_member_mb: Annotated[
        int,
        typer.Option(
            "--max-member-mb",
            min=1,
            help="Largest file in an archive, MiB, as stored and decompressed; a larger one "
            "fails its detection.",
        ),
    ] = DEFAULT_MAX_MEMBER_BYTES // _MIB,
    version: Annotated[
        str,
        typer.Option(
            "--release",
            help="Catalogue release as the retrieval interface names it (rel2.1, rel2.0, cur).",
        ),
    ] = "rel2.1",
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
) -> None:
    """Download the spectrum, ARF and RMF of every detection in CATALOG into --dir.

    Files are verified (FITS readable, DATASUM/CHECKSUM) before they are kept; detections
    already complete are skipped, so rerunning completes an interrupted or failed run. A JSON
    report (csc_download_report.json) lists what failed and why. The exit status is non-zero
    only when no detection could be downloaded.
    """
    check_positive("--timeout", timeout)
    check_output_dir("--dir", directory)
    from xlatent.io.csc.download import REPORT_NAME, download_spectra
    from xlatent.io.csc.query import read_catalog

    frame = read_catalog(catalog)
    report = download_spectra(
        frame,
        directory,
        url=url,
        batch_size=batch_size,
        workers=workers,
        retries=retries,
        backoff_s=backoff,
        timeout_s=timeout,
        version=version,
        progress=progress,
        max_archive_bytes=max_archive_mb * _MIB,
        max_member_bytes=max_member_mb * _MIB,
    )
    for det, why in sorted(report.failed.items()):
        typer.secho(f"failed {det}: {why}", fg=typer.colors.YELLOW, err=True)
    refused = len(report.refused_members)
    typer.echo(
        report.summary().splitlines()[0]
        + (f"; {refused} archive member(s) refused" if refused else "")
        + f"; report {directory / REPORT_NAME}"
    )
    if report.nothing_downloaded:
        fail(f"{report.url}: nothing could be downloaded ({len(report.failed)} failed)")


__all__ = ["csc_app"]
