"""A small CC-NEWS-style archive of synthetic news pages, and a loopback server for it.

Layout (the same as https://data.commoncrawl.org/)::

    crawl-data/CC-NEWS/YYYY/MM/warc.paths.gz                 gzip list of WARC paths
    crawl-data/CC-NEWS/YYYY/MM/CC-NEWS-YYYYMMDDHHMMSS-NNNNN.warc.gz

Each WARC file holds a ``warcinfo`` record and HTTP ``response`` records (one gzip
member per record, correct ``WARC-Block-Digest``) of HTML pages rendered in formats
that real fundus publisher parsers accept (checked by the tests). Pages belong to the
publishers in ``SITES``; their domains are exactly those of the fundus publishers.

``build_archive(..., plant_bad=True)`` adds records a crawler must not keep (unknown
domain, empty body, near-empty body, bad digest, missing or out-of-window date,
duplicate URL, duplicate text); the returned manifest says what each record is.
``world="toyworld"`` fills the months with the toy world's d2 news instead
(:func:`freshllm.synthetic.toyworld.d2_articles`, world ``world_seed``), on the English
publishers only; the planted bad records are toy-world d2 articles too, so whatever a
crawler keeps is d2 news.

Everything is deterministic in the arguments.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import json
import logging
import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from freshllm.synthetic.news import NewsArticle, generate_articles, make_article
from .archive_server import QuietHandler, serve_directory  # noqa: F401 (re-exported)

log = logging.getLogger("freshllm.synthetic.warc")

KEEP = "keep"


@dataclass(frozen=True)
class Site:
    """A real fundus publisher whose parser accepts the page format ``body``."""

    publisher: str  # fundus path: country group + attribute, e.g. "uk.TheGuardian"
    domain: str  # exactly fundus' ``Publisher.domain`` (``www.`` matters)
    language: str
    body: str  # "article" | "guardian" | "bigtext" | "article-body"
    weight: float  # share of the generated articles


SITES: tuple[Site, ...] = (
    Site("us.TheNation", "https://www.thenation.com/", "en", "article", 0.22),
    Site("us.WashingtonTimes", "https://www.washingtontimes.com/", "en", "bigtext", 0.22),
    Site("uk.TheGuardian", "https://www.theguardian.com/", "en", "guardian", 0.22),
    Site("uk.DailyStar", "https://www.dailystar.co.uk/", "en", "article-body", 0.22),
    Site("de.Tagesschau", "https://www.tagesschau.de/", "de", "article", 0.12),
)
UNKNOWN_DOMAIN = "https://www.example-gazette.test/"

# How each format wraps the paragraphs (what the publisher's parser selects).
_BODY_WRAPPERS = {
    "article": ("", ""),  # <main><article><p>... : TheNation, Tagesschau
    "guardian": ('<div class="article-body-commercial-selector article-body-viewer-selector">', "</div>"),
    "bigtext": ('<div class="bigtext">', "</div>"),
    "article-body": ('<div class="article-body">', "</div>"),  # DailyStar (parser V1, until 2026-04)
}


@dataclass(frozen=True)
class Record:
    """One response record of the archive and what a crawler should do with it."""

    url: str
    site: str  # Site.publisher, or "" for an unknown domain
    month: str  # archive month "YYYY-MM"
    captured: datetime  # WARC-Date (UTC)
    expect: str  # KEEP, or why a crawler must drop it
    article: NewsArticle
    with_date: bool = True
    bad_digest: bool = False
    with_warc_date: bool = True  # False: no WARC-Date header (fundus skips the record)
    paragraphs: tuple[str, ...] | None = None  # override the article's paragraphs

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs if self.paragraphs is not None else self.article.paragraphs)


@dataclass
class ArchiveManifest:
    root: Path
    months: list[str]
    records: list[Record] = field(default_factory=list)
    warc_paths: list[str] = field(default_factory=list)  # relative, as in warc.paths.gz
    missing_paths: list[str] = field(default_factory=list)  # listed but never written

    def kept(self) -> list[Record]:
        return [r for r in self.records if r.expect == KEEP]


# --- pages and WARC records ---------------------------------------------------------------

def article_url(site_domain: str, article: NewsArticle) -> str:
    p = article.published
    return f"{site_domain}{article.section}/{p:%Y}/{p:%m}/{p:%d}/{article.slug}"


def render_page(site: Site | None, article: NewsArticle, *, paragraphs: Sequence[str] | None = None,
                with_date: bool = True) -> str:
    """A news page: meta tags + JSON-LD NewsArticle + the body in the site's format."""
    body_format = site.body if site else "article"
    paragraphs = article.paragraphs if paragraphs is None else paragraphs
    esc = html.escape
    published = article.published.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    ld: dict = {"@context": "https://schema.org", "@type": "NewsArticle", "headline": article.title,
                "author": [{"@type": "Person", "name": article.author}], "inLanguage": article.language}
    meta = [f'<meta property="og:title" content="{esc(article.title)}">',
            f'<meta name="author" content="{esc(article.author)}">']
    if with_date:
        ld["datePublished"] = published
        meta.append(f'<meta property="article:published_time" content="{published}">')
    open_tag, close_tag = _BODY_WRAPPERS[body_format]
    ps = "".join(f"<p>{esc(p)}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html>\n<html lang="{article.language}"><head><meta charset="utf-8">'
        f"<title>{esc(article.title)}</title>{''.join(meta)}"
        f'<script type="application/ld+json">{json.dumps(ld, ensure_ascii=False)}</script></head>'
        f'<body><header><nav><a href="/">Home</a></nav></header>'
        f"<main><article><h1>{esc(article.title)}</h1>{open_tag}{ps}{close_tag}</article></main>"
        f"<footer>Synthetic page for offline tests.</footer></body></html>"
    )


def _digest(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def _warc_record(headers: list[tuple[str, str]], block: bytes, *, bad_digest: bool = False) -> bytes:
    """One gzip member holding a WARC/1.0 record with a (deliberately wrong, if asked) digest."""
    digest = _digest(block + b"tampered" if bad_digest else block)
    lines = [("WARC/1.0", None), *headers, ("WARC-Block-Digest", digest), ("Content-Length", str(len(block)))]
    head = "".join(f"{k}: {v}\r\n" if v is not None else f"{k}\r\n" for k, v in lines) + "\r\n"
    return gzip.compress(head.encode("utf-8") + block + b"\r\n\r\n", mtime=0)


def _record_id(*parts: object) -> str:
    return f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, '/'.join(map(str, parts)))}>"


def _warcinfo(filename: str, seed: int, created: datetime) -> bytes:
    block = b"software: freshllm embedded archive\r\nformat: WARC File Format 1.0\r\nisPartOf: CC-NEWS\r\n"
    headers = [("WARC-Type", "warcinfo"), ("WARC-Date", created.strftime("%Y-%m-%dT%H:%M:%SZ")),
               ("WARC-Filename", filename), ("WARC-Record-ID", _record_id(seed, filename)),
               ("Content-Type", "application/warc-fields")]
    return _warc_record(headers, block)


def _response(record: Record, seed: int) -> bytes:
    site = next((s for s in SITES if s.publisher == record.site), None)
    payload = render_page(site, record.article, paragraphs=record.paragraphs,
                          with_date=record.with_date).encode("utf-8")
    captured = record.captured.strftime("%Y-%m-%dT%H:%M:%SZ")
    http_head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                 f"Content-Length: {len(payload)}\r\n"
                 f"Date: {record.captured:%a, %d %b %Y %H:%M:%S} GMT\r\n\r\n").encode("ascii")
    headers = [("WARC-Type", "response"), *([("WARC-Date", captured)] if record.with_warc_date else []),
               ("WARC-Record-ID", _record_id(seed, record.url, captured, record.expect)),
               ("WARC-Target-URI", record.url),
               ("Content-Type", "application/http; msgtype=response"),
               ("WARC-Payload-Digest", _digest(payload))]
    return _warc_record(headers, http_head + payload, bad_digest=record.bad_digest)


# --- archive contents ---------------------------------------------------------------------

def _month_bounds(month: str) -> tuple[date, date]:
    first = datetime.strptime(month, "%Y-%m").date()
    nxt = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first, nxt - timedelta(days=1)


def _month_end(month: str) -> datetime:
    return datetime.combine(_month_bounds(month)[1], datetime.max.time(), tzinfo=timezone.utc).replace(microsecond=0)


def _captured(rng: random.Random, published: datetime, month: str) -> datetime:
    """Captured 20 minutes to 18 hours after publishing, within the archive month."""
    return min(published + timedelta(minutes=rng.randint(20, 18 * 60)), _month_end(month))


WORLDS = ("news", "toyworld")


def _month_records(month: str, per_month: int, seed: int, month_index: int, world: str = "news",
                   world_seed: int = 0, world_slices: int = 1) -> list[Record]:
    rng = random.Random(f"archive/{seed}/{month}")
    first, last = _month_bounds(month)
    if world == "toyworld":
        from freshllm.synthetic import toyworld

        english = [s for s in SITES if s.language == "en"]
        sites = rng.choices(english, weights=[s.weight for s in english], k=per_month)
        w = toyworld.make_world(world_seed)
        facts = None
        if world_slices > 1:  # the month's own events; article numbers unique across archives
            facts = toyworld.d2_slices(w, world_slices)[toyworld.d2_slice_of_month(month, world_slices)]
            month_index = toyworld.month_number(month) + 1200
        pools = {"en": toyworld.d2_articles(w, per_month, first, last, seed=seed,
                                            first_index=month_index * 10_000, facts=facts)}
    else:
        sites = rng.choices(SITES, weights=[s.weight for s in SITES], k=per_month)
        n_de = sum(s.language == "de" for s in sites)
        pools = {
            "en": generate_articles(per_month - n_de, first, last, language="en", seed=seed,
                                    first_index=month_index * 10_000),
            "de": generate_articles(n_de, first, last, language="de", seed=seed,
                                    first_index=month_index * 10_000 + 5_000),
        }
    records = []
    for site in sites:
        article = pools[site.language].pop(rng.randrange(len(pools[site.language])))
        records.append(Record(url=article_url(site.domain, article), site=site.publisher, month=month,
                              captured=_captured(rng, article.published, month), expect=KEEP,
                              article=article))
    return records


def _site(publisher: str) -> Site:
    return next(s for s in SITES if s.publisher == publisher)


def _article_maker(world: str, world_seed: int):
    """``make(rng, published, language, index)`` of the planted records: generic news, or
    a toy-world d2 article about a random d2 event."""
    if world != "toyworld":
        return make_article
    from freshllm.synthetic import toyworld

    w = toyworld.make_world(world_seed)
    facts = w.d2_facts()

    def make(rng: random.Random, published: datetime, language: str = "en", index: int = 0) -> NewsArticle:
        return toyworld.d2_article(rng, w, rng.choice(facts), published, index)

    return make


def _planted_first_month(month: str, seed: int, make_article=make_article) -> list[Record]:
    """Bad records in the first month (the bad-digest one is added separately)."""
    rng = random.Random(f"planted/{seed}/{month}")
    first, _ = _month_bounds(month)
    start = datetime.combine(first, datetime.min.time(), tzinfo=timezone.utc)

    def art(days: float, language: str = "en", index: int = 0) -> NewsArticle:
        return make_article(rng, start + timedelta(days=days), language, 90_000 + index)

    def rec(site: Site | None, article: NewsArticle, expect: str, captured_days: float, **kw) -> Record:
        domain = site.domain if site else UNKNOWN_DOMAIN
        return Record(url=article_url(domain, article), site=site.publisher if site else "", month=month,
                      captured=start + timedelta(days=captured_days), expect=expect, article=article, **kw)

    early = art(-3, index=1)  # published before the window, captured in its first month
    return [
        rec(_site("uk.TheGuardian"), early, "out_of_window", 1.5),
        rec(None, art(5, index=2), "unknown_domain", 5.5),
        rec(_site("us.TheNation"), art(7, index=3), "empty_body", 7.5, paragraphs=()),
        rec(_site("uk.DailyStar"), art(9, index=4), "too_short", 9.5,
            paragraphs=("Subscribe to continue reading.",)),
        rec(_site("us.WashingtonTimes"), art(11, index=5), "missing_date", 11.5, with_date=False),
    ]


def _planted_last_month(month: str, originals: list[Record], seed: int,
                        make_article=make_article) -> list[Record]:
    """Duplicates of earlier good records and an article dated after the window."""
    rng = random.Random(f"planted/{seed}/{month}")
    first, last = _month_bounds(month)
    start = datetime.combine(first, datetime.min.time(), tzinfo=timezone.utc)
    url_twin = originals[0]
    text_twin = next(r for r in originals[1:] if r.article.language == "en")
    other = next(s for s in SITES if s.publisher != text_twin.site and s.language == text_twin.article.language)
    renamed = replace(text_twin.article, slug=text_twin.article.slug + "-syndicated",
                      published=start + timedelta(days=3))
    late = make_article(rng, datetime.combine(last, datetime.min.time(), tzinfo=timezone.utc)
                        + timedelta(days=2), "en", 90_010)
    fresh = make_article(rng, start + timedelta(days=2), "en", 90_011)
    return [
        Record(url=url_twin.url, site=url_twin.site, month=month, captured=start + timedelta(days=2, hours=5),
               expect="duplicate_url", article=fresh),
        Record(url=article_url(other.domain, renamed), site=other.publisher, month=month,
               captured=start + timedelta(days=3, hours=5), expect="duplicate_text", article=renamed),
        Record(url=article_url(_site("uk.TheGuardian").domain, late), site="uk.TheGuardian", month=month,
               captured=_month_end(month) - timedelta(hours=2), expect="out_of_window", article=late),
    ]


def _bad_digest_record(month: str, seed: int, make_article=make_article) -> Record:
    rng = random.Random(f"bad-digest/{seed}/{month}")
    first, _ = _month_bounds(month)
    article = make_article(rng, datetime.combine(first, datetime.min.time(), tzinfo=timezone.utc)
                           + timedelta(days=4), "en", 90_020)
    site = _site("us.TheNation")
    return Record(url=article_url(site.domain, article), site=site.publisher, month=month,
                  captured=article.published + timedelta(hours=1), expect="bad_digest", article=article,
                  bad_digest=True)


# --- writing ------------------------------------------------------------------------------

def _write_month(root: Path, month: str, records: list[Record], files: int, serial: int, seed: int,
                 manifest: ArchiveManifest, trailing: Record | None, missing_file: bool) -> int:
    """Write one month's WARC files + warc.paths.gz; returns the next serial number."""
    month_dir = root / "crawl-data" / "CC-NEWS" / month.replace("-", "/")
    month_dir.mkdir(parents=True, exist_ok=True)
    records = sorted(records, key=lambda r: (r.captured, r.url))
    chunk = -(-len(records) // files)
    paths = []
    for i in range(files):
        part = records[i * chunk:(i + 1) * chunk]
        if not part:
            continue
        if trailing is not None and i == 0:  # fastwarc stops reading a file at a bad digest: put it last
            part = part + [trailing]
        stamp = part[0].captured.strftime("%Y%m%d%H%M%S")
        name = f"CC-NEWS-{stamp}-{serial:05d}.warc.gz"
        serial += 1
        data = _warcinfo(name, seed, part[0].captured) + b"".join(_response(r, seed) for r in part)
        (month_dir / name).write_bytes(data)
        paths.append(f"crawl-data/CC-NEWS/{month.replace('-', '/')}/{name}")
    if missing_file:
        last = records[-1].captured.strftime("%Y%m%d%H%M%S")
        missing = f"crawl-data/CC-NEWS/{month.replace('-', '/')}/CC-NEWS-{last}-{serial:05d}.warc.gz"
        serial += 1
        paths.append(missing)
        manifest.missing_paths.append(missing)
    listing = "".join(f"{p}\n" for p in paths).encode("ascii")
    (month_dir / "warc.paths.gz").write_bytes(gzip.compress(listing, mtime=0))
    manifest.warc_paths.extend(p for p in paths if p not in manifest.missing_paths)
    return serial


def build_archive(root: str | Path, months: Sequence[str], *, per_month: int = 160, seed: int = 0,
                  files_per_month: int = 3, plant_bad: bool = False,
                  missing_file: bool = False, world: str = "news",
                  world_seed: int = 0, extra: Sequence[Record] = (), world_slices: int = 1) -> ArchiveManifest:
    """Write a CC-NEWS-style archive for ``months`` ("YYYY-MM", ascending) under ``root``.

    ``per_month`` good articles per month, published within the month and spread over
    the publishers in ``SITES``. ``plant_bad`` adds the bad records (needs >= 2 months);
    ``missing_file`` lists one WARC file in the first month that does not exist (HTTP 404).
    ``world``: ``news`` (generic generated news) or ``toyworld`` (the d2 news of the toy
    world ``world_seed``, English publishers only; ``world_slices`` > 1: each month reports
    its own slice of the d2 events, see :func:`freshllm.synthetic.toyworld.d2_slices`). ``extra``: more records, each filed
    by its ``month`` and ``captured`` among that month's records (e.g. mid-file).
    """
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    months = list(months)
    if months != sorted(set(months)) or not months:
        raise ValueError(f"months must be distinct and ascending, got {months}")
    if plant_bad and (len(months) < 2 or per_month < 2):
        raise ValueError("plant_bad needs at least 2 months and per_month >= 2")
    root = Path(root)
    manifest = ArchiveManifest(root=root, months=months)
    per_month_records = [_month_records(m, per_month, seed, i, world, world_seed, world_slices)
                         for i, m in enumerate(months)]
    if plant_bad:
        maker = _article_maker(world, world_seed)
        per_month_records[0] += _planted_first_month(months[0], seed, maker)
        per_month_records[-1] += _planted_last_month(months[-1], per_month_records[0], seed, maker)
    for record in extra:
        per_month_records[months.index(record.month)].append(record)
    serial = 0
    for i, (month, records) in enumerate(zip(months, per_month_records)):
        trailing = _bad_digest_record(month, seed, maker) if plant_bad and i == 0 else None
        serial = _write_month(root, month, records, files_per_month, serial, seed, manifest,
                              trailing, missing_file and i == 0)
        manifest.records.extend(records + ([trailing] if trailing else []))
    return manifest


# --- loopback server -------------------------------------------------------------------------


