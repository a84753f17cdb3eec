"""Stage ``crawl`` against misbehaving servers: listings and WARC files sent byte by byte,
cut short, or unreadable to their end, are bounded in time and counted as failed files."""

from __future__ import annotations

import gzip
import json
import re
import time
import zlib
from pathlib import Path

import pytest

from test_crawl import (archive, bounded, fake_section, read_jsonl, run_stage,  # noqa: F401 (fixtures)
                        warc_uris, write_params)
from freshllm.synthetic.warc_archive import QuietHandler, serve_directory


def special_handler(path: str, send):
    """Serves ``path`` by ``send(wfile, data)`` (its bytes, HTTP status line and headers
    included), everything else as files; closes the connection after it."""
    class Special(QuietHandler):
        def do_GET(self):
            if self.path != path:
                return super().do_GET()
            try:
                send(self.wfile, Path(self.directory, path.lstrip("/")).read_bytes())
            except OSError:  # the crawler gave up on it
                pass
            self.close_connection = True

    return Special


def slow_handler(path: str, mode: str):
    """Serves ``path`` at 1 byte/s: ``body`` after its headers (with Content-Length),
    ``headers`` from the status line on."""
    def send(wfile, data):
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        if mode == "body":
            wfile.write(head)
        for byte in (head if mode == "headers" else data)[:30]:
            wfile.write(bytes([byte]))
            wfile.flush()
            time.sleep(1)

    return special_handler(path, send)


@pytest.mark.parametrize("mode,limits,reason", [
    ("body", {"min_bytes_per_s": 1000}, "too slow"),
    ("body", {"min_bytes_per_s": 0, "file_deadline_s": 2}, "crawl.file_deadline_s=2s"),
    ("headers", {"min_bytes_per_s": 1000, "file_deadline_s": 2}, "crawl.file_deadline_s=2s"),
])
def test_a_listing_sent_byte_by_byte_fails_within_the_limits(tmp_path, archive, caplog, mode, limits, reason):
    listing = "/crawl-data/CC-NEWS/2024/01/warc.paths.gz"
    with serve_directory(archive.root, slow_handler(listing, mode)) as url:
        began = time.monotonic()
        # 1 byte/s never trips the 3 s read timeout: only the new limits stop it
        rc, out, _ = run_stage(tmp_path, write_params(tmp_path, **fake_section(url, timeout_s=3, **limits)))
        elapsed = time.monotonic() - began
    assert rc == 1 and not out.exists() and elapsed < 60  # a hang guard (the old code hung > 3 min), not a timing
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and url.rstrip("/") + listing in errors[0] and reason in errors[0], errors
    assert "\n" not in errors[0] and "Traceback" not in caplog.text
    assert not (tmp_path / "work").exists()


def test_a_warc_file_sent_byte_by_byte_is_a_failed_file(tmp_path, archive, caplog):
    slow = archive.warc_paths[3]  # February's first file
    with serve_directory(archive.root, slow_handler("/" + slow, "body")) as url:
        began = time.monotonic()
        rc, out, metrics = run_stage(tmp_path, write_params(tmp_path, **fake_section(
            url, timeout_s=3, min_bytes_per_s=1000, max_failed_files=2)))
        elapsed = time.monotonic() - began
        rc_strict, out_strict, _ = run_stage(tmp_path, write_params(tmp_path, **fake_section(
            url, timeout_s=3, min_bytes_per_s=1000, max_failed_files=1)), "strict")
    assert rc == 0 and elapsed < 120  # a hang guard, not a timing
    metrics = json.loads(metrics.read_text())
    assert metrics["failed_files"] == 2 and metrics["warc"]["failed"] == 2
    lost = set(warc_uris(archive.root / slow))
    assert lost and not lost & {r["url"] for r in read_jsonl(out)}
    assert rc_strict == 1 and not out_strict.exists()
    assert f"{slow} (too slow: " in caplog.text and "crawl.max_failed_files: 1" in caplog.text


def damaged_handler(path: str, damage: str):
    """Serves ``path`` damaged: ``cut``/``cut-length``: its first half, then closes, with no
    Content-Length / the full one; ``junk``: a gzip member that is no WARC record in the middle."""
    def send(wfile, data):
        if damage == "junk":
            member = zlib.decompressobj(wbits=31)
            member.decompress(data)  # the warcinfo member
            middle = len(data) - len(member.unused_data)
            data = data[:middle] + gzip.compress(b"not a WARC record\r\n\r\n") + data[middle:]
        length = f"Content-Length: {len(data)}\r\n" if damage != "cut" else ""
        wfile.write(f"HTTP/1.1 200 OK\r\nConnection: close\r\n{length}\r\n".encode()
                    + (data if damage == "junk" else data[:len(data) // 2]))

    return special_handler(path, send)


@pytest.mark.parametrize("damage,reason", [("cut", "cut short inside gzip member"),
                                           ("cut-length", "cut short: "),
                                           ("junk", "WARC (reading stopped after record|records from)")])
def test_a_file_cut_short_or_unreadable_to_its_end_is_a_failed_file(tmp_path, archive, caplog, damage, reason):
    """fastwarc ends such files early without an error: the records after the damage were lost unseen."""
    damaged = archive.warc_paths[4]  # February's second file
    with serve_directory(archive.root, damaged_handler("/" + damaged, damage)) as url:
        rc, out, metrics = run_stage(tmp_path, write_params(tmp_path, **fake_section(url, max_failed_files=2)))
    assert rc == 0
    metrics = json.loads(metrics.read_text())
    assert metrics["failed_files"] == 2 and metrics["warc"]["failed"] == 2
    in_file = warc_uris(archive.root / damaged)
    kept = {r["url"] for r in read_jsonl(out)}
    assert in_file[-1] not in kept and (damage == "junk" or in_file[0] in kept)  # what came before is used
    assert re.search(re.escape(f"{damaged} (") + reason, caplog.text), caplog.text
