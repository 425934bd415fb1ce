"""CSC download against hostile servers, hostile archives, junk in the directory, Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from xlatent.io.csc import archive
from xlatent.io.csc.download import REPORT_NAME, download_spectra
from xlatent.io.csc.products import DEFAULT_MAX_MEMBER_BYTES, Detection, complete_files
from xlatent.io.csc.verify import CorruptFileError, verify_fits

from .fake_csc import gzip_bomb, member

FAST = {"retries": 0, "backoff_s": 0.01, "timeout_s": 5.0, "progress": False}


def all_dets(fake) -> list[Detection]:
    return [Detection(*d.key) for d in fake.detections]


def file_name(fake, det: Detection, product: str) -> str:
    return fake.by_key[(det.obsid, det.obi, det.region_id)].files[product][0]


def leftovers(directory: Path) -> list[str]:
    """Temporary files of the download or of the report."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def product_files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if "_r0" in p.name}


# ------------------------------------------------------------------------- deadline
@pytest.mark.timeout(30)
@pytest.mark.parametrize("fault", ["drip", "drip_headers"])
def test_slow_drip_server_is_cut_at_the_deadline(fake_csc, tmp_path: Path, fault: str) -> None:
    """One byte every 0.2 s never trips a per-read timeout; the total deadline cuts it."""
    fake_csc.fail_retrieve = [fault] * 4
    dets = all_dets(fake_csc)[:2]
    t0 = time.monotonic()
    report = download_spectra(
        dets, tmp_path, url=fake_csc.retrieve_url, **{**FAST, "timeout_s": 1.0, "retries": 1}
    )
    elapsed = time.monotonic() - t0
    assert 2.0 <= elapsed < 2.0 + 1.5  # two attempts of 1 s each, and a little slack
    assert set(report.failed) == set(dets) and report.retries == 1
    for why in report.failed.values():
        assert "DeadlineExceeded" in why and "within 1 s" in why and "after 1 retries" in why
    assert len(fake_csc.retrieve_log) == 2
    assert leftovers(tmp_path) == [] and product_files(tmp_path) == set()


# ------------------------------------------------------------------------- size caps
@pytest.mark.parametrize("fault", ["ok", "nolength"])
def test_oversized_archive_is_refused(fake_csc, tmp_path: Path, fault: str) -> None:
    """Announced (Content-Length) or not, an answer over the cap is not read on."""
    fake_csc.fail_retrieve = [fault]
    dets = all_dets(fake_csc)[:2]
    report = download_spectra(
        dets, tmp_path, url=fake_csc.retrieve_url, max_archive_bytes=100_000, **FAST
    )
    assert set(report.failed) == set(dets)
    for why in report.failed.values():
        assert "ArchiveRefused" in why and "answer too large" in why and "100000 B" in why
    assert ("announced" in why) == (fault == "ok")
    assert len(fake_csc.retrieve_log) == 1  # refused, not retried
    assert leftovers(tmp_path) == [] and product_files(tmp_path) == set()


def test_gzip_bomb_member_is_refused_in_bounded_memory(fake_csc, tmp_path: Path) -> None:
    """A 64 MB (decompressed) pha3 of 64 kB with a 4 MB cap: refused, the others installed."""
    dets = all_dets(fake_csc)
    bomb_det = Detection(1575, 1, 85)  # its real files are gzip-compressed
    name = file_name(fake_csc, bomb_det, "pha3")
    fake_csc.omit = {((1575, 1, 85), "pha3")}
    fake_csc.extra_members = [member(f"01575/r0085/{name}", gzip_bomb(64 << 20))]
    tracemalloc.start()
    try:
        report = download_spectra(
            dets, tmp_path, url=fake_csc.retrieve_url, max_member_bytes=4 << 20, **FAST
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20  # the bomb was never inflated whole
    assert set(report.failed) == {bomb_det}
    assert "decompresses to more than the cap of 4194304 B" in report.failed[bomb_det]
    assert sorted(report.downloaded) == sorted(set(dets) - {bomb_det})
    assert complete_files(tmp_path, bomb_det) is None and leftovers(tmp_path) == []


def test_verify_fits_bounds_decompression(real_spectra_dir: Path, tmp_path: Path) -> None:
    good = real_spectra_dir / "acisf01575_001N001_r0085_pha3.fits.gz"
    verify_fits(good)
    assert 1000 < good.stat().st_size < 30_000
    with pytest.raises(CorruptFileError, match="decompresses to more than the cap of 30000 B"):
        verify_fits(good, max_bytes=30_000)
    with pytest.raises(CorruptFileError, match="^larger than the cap of 1000 B"):
        verify_fits(good, max_bytes=1000)
    bomb = tmp_path / "bomb.fits.gz"
    bomb.write_bytes(gzip_bomb(16 << 20))
    with pytest.raises(CorruptFileError, match="decompresses to more than"):
        verify_fits(bomb, max_bytes=1 << 20)
    multi = tmp_path / "multi.fits.gz"  # two gzip members in one file are one stream
    raw = (real_spectra_dir / "acisf00308_000N001_r0044_arf3.fits").read_bytes()
    import gzip

    multi.write_bytes(gzip.compress(raw[:2880]) + gzip.compress(raw[2880:]))
    verify_fits(multi)


@pytest.mark.parametrize("kind", ["gzip_bomb", "pax_bomb"])
def test_compressed_archive_bomb_is_refused(fake_csc, tmp_path: Path, kind: str) -> None:
    """A gzip-compressed tar inflating past the cap, or a huge pax header: refused."""
    dets = all_dets(fake_csc)[:1]
    if kind == "gzip_bomb":
        fake_csc.fail_retrieve = ["gzip"]
        fake_csc.extra_members = [member("zeros.bin", bytes(48 << 20))]
        expected, cap = "decompressed archive larger than 16777216 B", 16 << 20
    else:
        info, data = member("padded.txt", b"x")
        info.pax_headers = {"comment": "x" * (20 << 20)}
        fake_csc.extra_members = [(info, data)]
        expected, cap = "a tar record larger than 16777216 B", 64 << 20
    report = download_spectra(
        dets, tmp_path, url=fake_csc.retrieve_url, max_archive_bytes=cap, **FAST
    )
    (why,) = report.failed.values()
    assert "ArchiveRefused" in why and expected in why
    assert leftovers(tmp_path) == [] and product_files(tmp_path) == set()


# ------------------------------------------------------------------- hostile members
def test_hostile_members_are_refused_one_by_one(fake_csc, tmp_path: Path) -> None:
    directory = tmp_path / "spectra"
    outside = tmp_path / "outside"
    outside.mkdir()
    dets = all_dets(fake_csc)
    trav, absolute, link, big = dets[:4]
    good = set(dets[4:])
    fake_csc.extra_members = [
        member(f"../../{file_name(fake_csc, trav, 'pha3')}", b"SIMPLE  = T"),
        member(str(outside / file_name(fake_csc, absolute, "arf3")), b"SIMPLE  = T"),
        member(file_name(fake_csc, link, "rmf3"), kind=tarfile.SYMTYPE, link="/etc/passwd"),
        member(file_name(fake_csc, big, "pha3"), bytes(9 << 20)),
        member("../escape.txt", b"owned"),
        member("README.txt", b"hello"),
        member("passwd_pha3.fits", kind=tarfile.LNKTYPE, link="/etc/passwd"),
        member("acisf00308_000N001_r0044_evil", kind=tarfile.CHRTYPE),
        member("acisf09999_000N001_r0001_pha3.fits", b"not requested"),
    ]
    report = download_spectra(
        dets, directory, url=fake_csc.retrieve_url, max_member_bytes=8 << 20, **FAST
    )
    assert sorted(report.downloaded) == sorted(good)
    assert set(report.failed) == {trav, absolute, link, big}
    assert "unsafe path" in report.failed[trav] and "unsafe path" in report.failed[absolute]
    assert "symbolic link" in report.failed[link]
    assert "larger than the cap of 8388608 B per member" in report.failed[big]
    refused = dict(report.refused_members)
    assert refused == {
        "../escape.txt": "unsafe path (absolute or with '..')",
        "README.txt": "not a CSC product file name",
        "passwd_pha3.fits": "hard link",
        "acisf00308_000N001_r0044_evil": "device file",
        "acisf09999_000N001_r0001_pha3.fits": "not a requested detection",
    }
    saved = json.loads((directory / REPORT_NAME).read_text())
    assert saved["n_refused_members"] == 5 and saved["n_failed"] == 4
    # nothing outside the directory, no links, only the good detections' files inside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "spectra"]
    assert list(outside.iterdir()) == []
    assert not any(p.is_symlink() for p in directory.iterdir())
    assert product_files(directory) == {
        file_name(fake_csc, d, p) for d in good for p in ("pha3", "arf3", "rmf3")
    }
    assert leftovers(directory) == []


# ------------------------------------------------------------------- junk in --dir
def test_junk_in_directory_is_tolerated(fake_csc, tmp_path: Path) -> None:
    dets = all_dets(fake_csc)[:4]
    dangling, blocked, fifo, garbage = dets
    (tmp_path / file_name(fake_csc, dangling, "pha3")).symlink_to(tmp_path / "nowhere")
    (tmp_path / file_name(fake_csc, blocked, "rmf3")).mkdir()
    os.mkfifo(tmp_path / file_name(fake_csc, fifo, "arf3"))
    (tmp_path / file_name(fake_csc, garbage, "pha3")).write_bytes(b"<html>oops</html>")
    # a directory named like another version of a product, and a complete-looking set made
    # only of junk: neither counts as present
    (tmp_path / "acisf00308_000N009_r0044_arf3.fits").mkdir()
    (tmp_path / ".csc_download_report.json.abc.tmp").write_text("{")
    report = download_spectra(dets, tmp_path, url=fake_csc.retrieve_url, **FAST)
    assert not report.already_complete
    assert sorted(report.downloaded) == sorted([dangling, fifo, garbage])
    assert report.failed == {
        blocked: f"a directory is in the way: {file_name(fake_csc, blocked, 'rmf3')}"
    }
    for det in (dangling, fifo, garbage):
        files = complete_files(tmp_path, det)
        assert files is not None
        for path in files.values():
            assert path.is_file() and not path.is_symlink()
            verify_fits(path)
    assert leftovers(tmp_path) == []
    again = download_spectra(dets, tmp_path, url=fake_csc.retrieve_url, **FAST)
    assert sorted(again.already_complete) == sorted([dangling, fifo, garbage])


# ------------------------------------------------------------------------- Ctrl-C
@pytest.mark.timeout(30)
def test_ctrl_c_mid_transfer_stops_cleanly_and_a_rerun_completes(fake_csc, tmp_path: Path) -> None:
    """SIGINT to the main thread while the second batch is half received."""
    dets = sorted(all_dets(fake_csc))[:4]  # batches of 2 in sorted order
    fake_csc.fail_retrieve = ["ok", "stall"]
    main = threading.main_thread().ident
    assert main == threading.get_ident()

    def interrupt() -> None:
        if fake_csc.stalled.wait(15):
            signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        download_spectra(
            dets,
            tmp_path,
            url=fake_csc.retrieve_url,
            batch_size=2,
            workers=1,
            **{**FAST, "timeout_s": 20.0},
        )
    assert time.monotonic() - t0 < 8  # not held until the server gives up
    fake_csc.release.set()
    assert leftovers(tmp_path) == []
    done = {d for d in dets if complete_files(tmp_path, d)}
    assert done == set(dets[:2])
    assert product_files(tmp_path) == {
        file_name(fake_csc, d, p) for d in dets[:2] for p in ("pha3", "arf3", "rmf3")
    }
    saved = json.loads((tmp_path / REPORT_NAME).read_text())
    assert saved["interrupted"] is True and saved["n_downloaded"] == 2
    assert [f["reason"] for f in saved["failed"]] == ["interrupted", "interrupted"]
    rerun = download_spectra(dets, tmp_path, url=fake_csc.retrieve_url, **FAST)
    assert sorted(rerun.already_complete) == dets[:2] and sorted(rerun.downloaded) == dets[2:]
    assert leftovers(tmp_path) == []


def test_interrupt_while_installing_leaves_no_partial_detection(
    fake_csc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KeyboardInterrupt raised inside a worker, between verified members of a batch."""
    dets = sorted(all_dets(fake_csc))  # batches of 2 in sorted order
    calls = []
    real_verify = archive.verify_fits

    def verify(path: Path, max_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> None:
        calls.append(path)
        if len(calls) == 8:  # batch 2 (3 files each): its second detection's second file
            raise KeyboardInterrupt
        real_verify(path, max_bytes)

    monkeypatch.setattr(archive, "verify_fits", verify)
    with pytest.raises(KeyboardInterrupt):
        download_spectra(dets, tmp_path, url=fake_csc.retrieve_url, batch_size=2, workers=1, **FAST)
    assert leftovers(tmp_path) == []
    assert {d for d in dets if complete_files(tmp_path, d)} == set(dets[:2])
    assert product_files(tmp_path) == {
        file_name(fake_csc, d, p) for d in dets[:2] for p in ("pha3", "arf3", "rmf3")
    }
    saved = json.loads((tmp_path / REPORT_NAME).read_text())
    assert saved["interrupted"] is True and saved["n_failed"] == 4
    assert len(fake_csc.retrieve_log) == 2  # the third batch was never requested
    monkeypatch.setattr(archive, "verify_fits", real_verify)
    rerun = download_spectra(dets, tmp_path, url=fake_csc.retrieve_url, **FAST)
    assert sorted(rerun.downloaded) == sorted(dets[2:]) and not rerun.failed


@pytest.mark.timeout(30)
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for a test cert")
@pytest.mark.parametrize("stage", ["body", "handshake"])
def test_https_drip_is_cut_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """Over TLS too: a stalled handshake or a dripping body ends at the deadline."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key)]
        + ["-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=20,
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    port = server.getsockname()[1]

    def serve() -> None:  # one connection, at most about 5 s
        with server:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                if stage == "handshake":
                    time.sleep(4)
                    return
                conn.settimeout(5)
                try:
                    with ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(65536)
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                        for _ in range(40):
                            tls.sendall(b"x")
                            time.sleep(0.1)
                except OSError:
                    return

    threading.Thread(target=serve, daemon=True).start()
    t0 = time.monotonic()
    report = download_spectra(
        [Detection(1, 0, 1)],
        tmp_path / "out",
        url=f"https://127.0.0.1:{port}/csccli/retrieve",
        **{**FAST, "timeout_s": 1.0},
    )
    assert time.monotonic() - t0 < 2.5
    (why,) = report.failed.values()
    assert "DeadlineExceeded" in why
