"""Stage ``crawl``: fundus' real CCNewsCrawler against synthetic CC-NEWS archives on loopback.

Offline: every server here is on 127.0.0.1. Each test is bounded (a hang dumps the
stacks and exits after ``TEST_LIMIT_S``).
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from freshllm.config import ConfigError, build_config
from freshllm.crawl import CrawlConfig, main
from freshllm.synthetic.warc_archive import (KEEP, SITES, QuietHandler, Record, article_url, build_archive,
                                             render_page, serve_directory)

TEST_LIMIT_S = 60
MONTHS = ["2024-01", "2024-02", "2024-03"]
LEAD_SECTION = {  # the lead's params.yaml section (local profile)
    "source": "ccnews", "server_address": "local", "publishers": ["us", "uk", "de"],
    "published_from": "2024-01-01", "published_to": "2024-03-31", "max_articles": 400,
    "max_per_publisher": None, "languages": ["en", "de"], "min_chars": 200, "max_chars": 50000,
    "min_articles": 50, "processes": 0, "timeout_s": 20, "seed": 0,
}


@pytest.fixture(autouse=True)
def bounded():
    faulthandler.dump_traceback_later(TEST_LIMIT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def write_params(tmp_path: Path, **crawl) -> Path:
    section = {**LEAD_SECTION, **crawl}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"world": {"kind": "news", "seed": 0}, "crawl": section, "pack": {"seq_len": 256}}))
    return path


def run_stage(tmp_path: Path, params: Path, name: str = "run") -> tuple[int, Path, Path]:
    out, metrics = tmp_path / name / "articles.jsonl", tmp_path / name / "crawl.json"
    rc = main(["--params", str(params), "--out", str(out), "--metrics", str(metrics),
               "--work-dir", str(tmp_path / "work")])
    return rc, out, metrics


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def planted_record(domain: str, expect: str, published: datetime, site: str = "", month: str = "",
                   captured: datetime | None = None, section: str | None = None, **kw) -> Record:
    """A generated English article at ``domain`` (archived 2 hours after ``published`` unless told)."""
    from freshllm.synthetic.news import make_article

    article = make_article(random.Random(expect + domain), published, "en", 95_000 + published.day)
    article = replace(article, section=section) if section else article
    captured = captured or published + timedelta(hours=2)
    return Record(url=article_url(domain, article), site=site, month=month or f"{captured:%Y-%m}",
                  captured=captured, expect=expect, article=article, **kw)


def skipped_records() -> list[Record]:
    """Records fundus itself skips (publishers us, uk, de selected), among January's first file."""
    day = lambda d: datetime(2024, 1, d, 8, tzinfo=timezone.utc)  # noqa: E731
    nation, guardian = SITES[0], SITES[2]
    return [
        planted_record("https://thenation.com/", "www_mismatch", day(3), site=nation.publisher),
        planted_record("https://www.foxnews.com/", "publisher_url_filter", day(4), section="video"),
        planted_record("https://www.lemonde.fr/", "unselected_publisher", day(5)),
        planted_record(nation.domain, "no_warc_date", day(6), site=nation.publisher, with_warc_date=False),
        # mid-file: fundus (fastwarc's verify_digests) stops reading the file here
        planted_record(guardian.domain, "bad_digest", day(4), site=guardian.publisher, bad_digest=True),
    ]


def warc_uris(path: Path) -> list[str]:
    from fastwarc import ArchiveIterator, WarcRecordType

    with open(path, "rb") as fh:
        return [str(r.headers["WARC-Target-URI"]) for r in ArchiveIterator(fh, record_types=WarcRecordType.response)]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """3 months x 30 articles over 5 publishers (3 page formats, 3 countries) + planted bad records,
    records fundus skips and a bad digest in the middle of January's first file."""
    root = tmp_path_factory.mktemp("ccnews")
    manifest = build_archive(root, MONTHS, per_month=30, seed=7, plant_bad=True, missing_file=True,
                             extra=skipped_records())
    first = warc_uris(root / manifest.warc_paths[0])
    bad = next(r.url for r in manifest.records if r.expect == "bad_digest" and r.month == MONTHS[0] and
               r.captured.day == 4)
    assert 0 < first.index(bad) < len(first) - 5  # good records follow it in the same file
    return manifest


def fake_section(url: str, **over) -> dict:
    return {"server_address": url, "max_articles": 10_000, "min_articles": 1, "timeout_s": 10,
            "max_failed_files": 1, **over}


def test_sites_are_real_fundus_publishers_whose_parsers_read_the_pages():
    from fundus import PublisherCollection

    from freshllm.synthetic.news import generate_articles

    assert len(SITES) >= 3 and len({s.publisher.split(".")[0] for s in SITES}) >= 2
    assert len({s.body for s in SITES}) >= 3
    for site in SITES:
        country, name = site.publisher.split(".")
        publisher = getattr(PublisherCollection, country)[name]
        assert publisher.domain == site.domain
        article = generate_articles(1, datetime(2024, 2, 1).date(), datetime(2024, 2, 28).date(),
                                    language=site.language, seed=1)[0]
        parsed = publisher.parser(article.published).parse(render_page(site, article), "suppress")
        assert parsed["title"] == article.title
        assert parsed["body"].text() == article.text
        assert parsed["publishing_date"].timestamp() == article.published.timestamp()


def test_keeps_exactly_the_good_records_and_counts_failed_files(tmp_path, archive, caplog):
    with serve_directory(archive.root) as url:
        params = write_params(tmp_path, **fake_section(url))
        rc, out, metrics_path = run_stage(tmp_path, params)
        assert rc == 0
        first_bytes = out.read_bytes()
        rc_again, out_again, _ = run_stage(tmp_path, params, "again")
        params_strict = write_params(tmp_path, **fake_section(url, max_failed_files=0))
        rc_strict, out_strict, _ = run_stage(tmp_path, params_strict, "strict")

    kept = {r.url: r for r in archive.kept()}
    records = read_jsonl(out)
    assert [r["url"] for r in records] == sorted(
        kept, key=lambda u: (kept[u].article.published.strftime("%Y-%m-%dT%H:%M:%SZ"), u))
    for rec in records:
        want = kept[rec["url"]]
        assert list(rec) == ["url", "publisher", "title", "text", "published", "language"]
        assert (rec["title"], rec["text"], rec["language"]) == (want.article.title, want.text,
                                                                 want.article.language)
        assert rec["published"] == want.article.published.strftime("%Y-%m-%dT%H:%M:%SZ")
    metrics = json.loads(metrics_path.read_text())
    assert metrics["articles"] == len(kept)
    # every record not kept is counted by its reason, those fundus skips before parsing included
    assert metrics["drops"] == dict(Counter(r.expect for r in archive.records if r.expect != KEEP))
    assert {"www_mismatch", "publisher_url_filter", "unselected_publisher", "no_warc_date",
            "unknown_domain"} <= set(metrics["drops"]) and metrics["drops"]["bad_digest"] == 2
    assert metrics["failed_files"] == 1 == len(archive.missing_paths)
    assert metrics["partial_files"] == 1  # January's first file: two bad digests, read to its end
    assert metrics["warc"] == {"complete": len(archive.warc_paths) - 1, "partial": 1, "failed": 1,
                               "records": len(archive.records), "damaged_records": 2,
                               "gzip_members": len(archive.records) + len(archive.warc_paths),
                               "bytes": sum((archive.root / p).stat().st_size for p in archive.warc_paths),
                               "unfinished": 0}
    assert set(metrics["per_language"]) == {"en", "de"} and len(metrics["per_publisher"]) == len(SITES)
    assert metrics["tokens_estimate"] == sum(len(r["text"]) for r in records) // 4

    assert rc_again == 0 and out_again.read_bytes() == first_bytes  # same params: byte-identical
    assert rc_strict == 1 and not out_strict.exists()
    assert archive.missing_paths[0] in caplog.text and "crawl.max_failed_files" in caplog.text


def test_quota_balances_months_and_caps_publishers(tmp_path, archive):
    with serve_directory(archive.root) as url:
        rc, balanced_out, balanced = run_stage(tmp_path, write_params(
            tmp_path, **fake_section(url, max_articles=30, languages=["en"])), "balanced")
        assert rc == 0
        rc, _, capped = run_stage(tmp_path, write_params(
            tmp_path, **fake_section(url, max_per_publisher=4)), "capped")
        assert rc == 0
    balanced, capped = json.loads(balanced.read_text()), json.loads(capped.read_text())
    assert balanced["per_month"] == {"2024-01": 10, "2024-02": 10, "2024-03": 10}
    # each month's 10 come from 10 days over the whole month (fundus order: its last days only)
    per_day = Counter(r["published"][:10] for r in read_jsonl(balanced_out))
    for month in MONTHS:
        days = sorted(int(d[8:]) for d in per_day if d.startswith(month))
        assert len(days) == 10 and days[0] <= 10 and days[-1] >= 21, (month, days)
    assert balanced["per_day"] == dict(sorted(per_day.items())) and set(per_day.values()) == {1}
    assert balanced["day_spread"]["max"] == 1 and balanced["day_spread"]["days"] == 91
    assert balanced["drops"]["over_quota"] > 0
    assert balanced["per_language"] == {"en": 30} and balanced["drops"]["language"] > 0
    assert set(capped["per_publisher"].values()) == {4} and len(capped["per_publisher"]) == len(SITES)
    assert capped["drops"]["publisher_cap"] > 0


def silent_server() -> socket.socket:
    """Accepts TCP connections (kernel backlog) and never answers."""
    return socket.create_server(("127.0.0.1", 0), backlog=16)


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["silent", "refused"])
def test_unreachable_server_fails_fast_with_clear_error(tmp_path, caplog, kind):
    listener = silent_server() if kind == "silent" else None
    port = listener.getsockname()[1] if listener else closed_port()
    try:
        params = write_params(tmp_path, **fake_section(f"http://127.0.0.1:{port}/", timeout_s=3))
        began = time.monotonic()
        rc, out, _ = run_stage(tmp_path, params)
        elapsed = time.monotonic() - began
    finally:
        if listener:
            listener.close()
    assert rc == 1 and not out.exists()
    assert elapsed < 30
    assert "no network" in caplog.text and "crawl.server_address" in caplog.text
    assert f"127.0.0.1:{port}/crawl-data/CC-NEWS/2024/01/warc.paths.gz" in caplog.text


def test_http_guard_sets_timeouts_and_keeps_local_on_loopback():
    import requests

    from freshllm.crawl import guarded_requests

    listener = silent_server()
    try:
        with guarded_requests(1.0, only_host="127.0.0.1"):
            began = time.monotonic()
            with pytest.raises(requests.ReadTimeout):  # as fundus calls it: no timeout argument
                requests.Session().get(f"http://127.0.0.1:{listener.getsockname()[1]}/x")
            assert time.monotonic() - began < 30  # a hang guard: without the timeout it waits forever
            with pytest.raises(requests.ConnectionError, match="allows only 127.0.0.1"):
                requests.get("https://data.commoncrawl.org/crawl-data/CC-NEWS/2024/01/warc.paths.gz")
    finally:
        listener.close()
    assert requests.Session.request.__name__ == "request" and not hasattr(requests.Session.request, "__wrapped__")


def gated_handler(prefix: str, gate: threading.Event, entered: threading.Event):
    """Holds requests for paths under ``prefix`` until ``gate`` is set."""
    class Gated(QuietHandler):
        def do_GET(self):
            if self.path.startswith(prefix):
                entered.set()
                gate.wait(TEST_LIMIT_S / 2)
            super().do_GET()

    return Gated


def interrupt_when(entered: threading.Event) -> threading.Thread:
    """Send SIGINT to this process (like Ctrl-C) once fundus waits on a held request."""
    def watch():
        if entered.wait(TEST_LIMIT_S / 2):
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_interrupt_after_first_month_then_resume_gives_the_same_corpus(tmp_path, archive):
    with serve_directory(archive.root) as url:
        reference = tmp_path / "reference"
        reference.mkdir()
        rc, ref_out, ref_metrics = run_stage(reference, write_params(reference, **fake_section(url)))
        assert rc == 0

    gate, entered = threading.Event(), threading.Event()
    handler = gated_handler("/crawl-data/CC-NEWS/2024/02/CC-NEWS-", gate, entered)
    with serve_directory(archive.root, handler) as url:
        params = write_params(tmp_path, **fake_section(url))
        watcher = interrupt_when(entered)
        try:  # fundus blocks on February's first WARC file until Ctrl-C (which fundus swallows)
            rc, out, metrics = run_stage(tmp_path, params)
        finally:
            gate.set()
            watcher.join()
        assert rc == 130 and not out.exists()
        assert sorted(p.name for p in (tmp_path / "work").glob("part-*.json")) == ["part-2024-01.json"]

        rc, out, metrics = run_stage(tmp_path, params)
    assert rc == 0
    assert out.read_bytes() == ref_out.read_bytes()
    assert json.loads(metrics.read_text()) == json.loads(ref_metrics.read_text())
    assert not (tmp_path / "work").exists()


def test_config_reports_every_bad_key_at_once(tmp_path, caplog):
    bad = {"source": "ftp", "server_address": "ftp://mirror", "publishers": ["us", "atlantis", "uk.TheGuardian"],
           "published_from": "2024-13-01", "published_to": "2099-01-01", "max_articles": 0,
           "max_per_publisher": 0, "languages": [], "min_chars": 500, "max_chars": 100,
           "min_articles": "many", "timeout_s": 0, "file_deadline_s": 0, "min_bytes_per_s": -1,
           "archive_lag_days": 40, "bogus": 1}
    with pytest.raises(ConfigError) as err:
        build_config(CrawlConfig, bad, "crawl")
    problems = err.value.problems
    for key in ["source", "server_address", "publishers[1]", "published_from",
                "published_to", "max_articles", "max_per_publisher", "languages", "min_chars",
                "min_articles", "timeout_s", "file_deadline_s", "min_bytes_per_s", "archive_lag_days", "bogus"]:
        assert any(p.startswith(f"crawl.{key}:") for p in problems), (key, problems)

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"crawl": {**LEAD_SECTION, "published_from": "2024-04-01",
                                                "max_articles": -5}}))
    assert main(["--params", str(params), "--out", str(tmp_path / "a.jsonl"),
                 "--metrics", str(tmp_path / "m.json")]) == 1
    assert "crawl.published_from" in caplog.text and "crawl.max_articles" in caplog.text
    assert build_config(CrawlConfig, LEAD_SECTION, "crawl").months == MONTHS


def test_publishing_dates_are_normalised_to_utc():
    from datetime import timedelta, timezone

    from freshllm.crawl import to_utc

    assert to_utc(datetime(2024, 1, 31, 23, 30)) == datetime(2024, 1, 31, 23, 30, tzinfo=timezone.utc)
    cet = timezone(timedelta(hours=1))
    assert to_utc(datetime(2024, 2, 1, 0, 30, tzinfo=cet)) == datetime(2024, 1, 31, 23, 30, tzinfo=timezone.utc)


def test_local_default_profile_end_to_end(tmp_path):
    began = time.monotonic()
    rc, out, metrics_path = run_stage(tmp_path, write_params(tmp_path))
    assert rc == 0 and time.monotonic() - began < 300  # a hang guard, not a timing
    records = read_jsonl(out)
    metrics = json.loads(metrics_path.read_text())
    assert LEAD_SECTION["min_articles"] <= len(records) == metrics["articles"] <= 400
    assert metrics["tokens_estimate"] >= 40_000
    assert set(metrics["per_month"]) == set(MONTHS) and set(metrics["per_language"]) == {"en", "de"}
    assert metrics["missing_listings"] == ["2024-04"]  # the archive lag reads past the archive's end: no error
    assert metrics["day_spread"]["empty_days"] == 0 and metrics["day_spread"]["days"] == 91
    assert len({r["url"] for r in records}) == len(records) == len({r["text"] for r in records})
    assert all(LEAD_SECTION["published_from"] <= r["published"][:10] <= LEAD_SECTION["published_to"]
               for r in records)
    assert records == sorted(records, key=lambda r: (r["published"], r["url"]))


def test_sources_registry_names_every_source_and_rejects_others_by_name():
    import typing

    from freshllm.crawl import SOURCES

    assert set(SOURCES) == {"ccnews", "web"}
    assert typing.get_args(typing.get_type_hints(CrawlConfig)["source"]) == tuple(SOURCES)
    with pytest.raises(ConfigError) as err:
        build_config(CrawlConfig, {**LEAD_SECTION, "source": "rss"}, "crawl")
    assert err.value.problems == ["crawl.source: must be one of ['ccnews', 'web'], got 'rss'"]


def test_each_source_declares_what_it_reads_of_the_config():
    from freshllm.crawl import SOURCES

    assert SOURCES["ccnews"].uses_server_address and not SOURCES["web"].uses_server_address
    old = {"published_from": "2015-01-01", "published_to": "2015-01-31", "server_address": "ftp://mirror"}
    with pytest.raises(ConfigError) as err:
        build_config(CrawlConfig, {**LEAD_SECTION, **old}, "crawl")
    assert sorted(p.split(":")[0] for p in err.value.problems) == ["crawl.published_from", "crawl.server_address"]
    assert "CC-NEWS starts on 2016-08-01" in " ".join(err.value.problems)
    assert build_config(CrawlConfig, {**LEAD_SECTION, **old, "source": "web"}, "crawl").months == ["2015-01"]


def test_a_source_in_the_registry_is_what_the_stage_runs(tmp_path, monkeypatch, caplog):
    """The extension point: a source writes Articles into parts; filters downstream of it,
    sorting, metrics and the resume store are the stage's."""
    from freshllm.crawl import SOURCES, Article, Source
    from freshllm.crawl.store import part_stats

    def fake_crawl(cfg, parts, interrupts):
        with parts.writing("fake") as sink:
            for day in (3, 1, 2):
                sink(Article(url=f"https://example.org/{day}", publisher="Example", title=f"Day {day}",
                             text="x" * 300, published=f"2024-01-0{day}T00:00:00Z", language="en"))
        parts.finish(part_stats("fake", cfg.max_articles, 3, Counter({"too_short": 2})))

    monkeypatch.setitem(SOURCES, "web", Source(fake_crawl, label="a fake"))
    rc, out, metrics = run_stage(tmp_path, write_params(tmp_path, source="web", min_articles=3))
    assert rc == 0, caplog.text
    assert [r["url"] for r in read_jsonl(out)] == [f"https://example.org/{d}" for d in (1, 2, 3)]
    metrics = json.loads(metrics.read_text())
    assert (metrics["articles"], metrics["drops"], metrics["per_publisher"]) == (3, {"too_short": 2}, {"Example": 3})


def test_reads_the_archive_past_the_window_for_articles_archived_late(tmp_path):
    """Published on 2024-03-30, archived on 2024-04-02: found in April's archive (archive_lag_days),
    while the quota is still split over the window's months only."""
    nation = SITES[0]
    late = planted_record(nation.domain, KEEP, datetime(2024, 3, 30, 20, tzinfo=timezone.utc),
                          site=nation.publisher, captured=datetime(2024, 4, 2, 6, tzinfo=timezone.utc))
    manifest = build_archive(tmp_path / "ccnews", ["2024-02", "2024-03", "2024-04"], per_month=16, seed=5,
                             extra=[late])
    window = {"published_from": "2024-02-01", "published_to": "2024-03-31", "languages": ["en"]}
    with serve_directory(manifest.root) as url:
        runs = {lag: run_stage(tmp_path, write_params(tmp_path, **fake_section(url, archive_lag_days=lag, **window)),
                               f"lag{lag}") for lag in (7, 0)}
        rc, _, limited = run_stage(tmp_path, write_params(tmp_path, **fake_section(url, max_articles=20, **window)),
                                   "limited")
    assert [r[0] for r in runs.values()] == [0, 0] and rc == 0
    urls = {lag: {r["url"] for r in read_jsonl(out)} for lag, (_, out, _) in runs.items()}
    in_window = {r.url for r in manifest.kept() if r.article.published < datetime(2024, 4, 1, tzinfo=timezone.utc)
                 and r.article.language == "en"}
    assert late.url in urls[7] and urls[7] == in_window
    assert late.url not in urls[0] and urls[0] == in_window - {late.url}
    assert json.loads(limited.read_text())["per_month"] == {"2024-02": 10, "2024-03": 10}


def test_allow_empty_writes_an_empty_window_only_when_nothing_was_lost(tmp_path, archive):
    """A chained update's month with no article (every file read, every record dropped: here as
    too short): --allow-empty writes an empty corpus and says so in the metrics; without
    it, the stage fails as before; and a crawl that lost a file is never taken for an empty month."""
    local = write_params(tmp_path, min_chars=10**6, max_chars=10**6 + 1)  # the local archive, every article too short
    out, metrics = tmp_path / "e" / "articles.jsonl", tmp_path / "e" / "crawl.json"
    assert main(["--params", str(local), "--out", str(out), "--metrics", str(metrics), "--work-dir",
                 str(tmp_path / "w1"), "--allow-empty"]) == 0
    m = json.loads(metrics.read_text())
    assert out.read_bytes() == b"" and m["empty"] and m["articles"] == 0 and m["drops"]["too_short"] > 0
    assert m["failed_files"] == 0 and m["partial_files"] == 1  # a damaged record skipped: not a lost file
    assert run_stage(tmp_path, local, "strict")[0] == 1  # without --allow-empty: an error
    with serve_directory(archive.root) as url:  # this archive misses a file: not an empty month
        lossy = write_params(tmp_path, **fake_section(url, languages=["xx"]))
        out2 = tmp_path / "lossy" / "articles.jsonl"
        assert main(["--params", str(lossy), "--out", str(out2), "--metrics", str(tmp_path / "lossy.json"),
                     "--work-dir", str(tmp_path / "w2"), "--allow-empty"]) == 1
    assert not out2.exists()
