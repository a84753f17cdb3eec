"""Stage ``crawl``: fresh news articles from CC-NEWS (or live sites) with fundus, as JSONL.

    python -m freshllm.crawl --params params.yaml --out data/articles.jsonl --metrics metrics/crawl.json

CC-NEWS is crawled month by month with fundus' ``CCNewsCrawler`` (whose start/end are
*archive* dates, so each call covers one whole archive month). Articles are kept when
their ``publishing_date`` lies in ``[published_from, published_to]`` (naive dates are
taken as UTC, missing ones are dropped), they pass the quality filters (title, body
length, language) and are neither a duplicate URL nor a duplicate text of an article
already kept. ``max_articles`` is spread evenly over the months (what a month leaves
unused goes to the later ones); ``max_per_publisher`` caps each publisher.

Each finished month is saved as a part file in a work directory, so an interrupted
crawl resumes at the month it stopped in. The output is sorted by (published, url):
the same params and archive give a byte-identical file (with ``processes: 0``).

``server_address: local`` generates a synthetic CC-NEWS archive (seeded, see
:mod:`freshllm.synthetic.warc_archive`), serves it on a loopback port for the duration
of the stage and allows HTTP only to that port; with the top-level ``world: {kind: toyworld}`` the
archive holds the toy world's d2 news (:mod:`freshllm.synthetic.toyworld`, world
``world.seed``) on the English publishers, still parsed by fundus. Any other value is a
CC-NEWS mirror, e.g. ``https://data.commoncrawl.org/``. ``source: web`` crawls live RSS
feeds and sitemaps with fundus' ``Crawler`` instead (needs internet; no resume).

Safety: every ``requests`` call gets a timeout (fundus sets none); the first month's
listing is fetched first so a dead or silent server fails within ``timeout_s`` (at
most 25 s); Ctrl-C stops the stage with exit code 130 (fundus swallows
``KeyboardInterrupt``, so the stage tracks SIGINT itself); WARC files fundus fails to
load are counted and fail the stage beyond ``max_failed_files``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Literal
from urllib.parse import urlsplit

from .common import atomic_file, setup_logging, write_json
from .config import ConfigError, WorldConfig, load_section

log = logging.getLogger("freshllm.crawl")

LOCAL = "local"
CCNEWS_FIRST_DAY = date(2016, 8, 1)
PREFLIGHT_MAX_S = 25.0
NO_NETWORK_HINT = ("no network: use the local profile (crawl.server_address: local) "
                   "or set crawl.server_address to a reachable CC-NEWS mirror")
FIELDS = ("url", "publisher", "title", "text", "published", "language")
# keys that do not change which articles are kept: changing them keeps finished months
OPERATIONAL_KEYS = ("timeout_s", "retries", "max_failed_files", "min_articles")


class CrawlError(RuntimeError):
    """The crawl cannot produce a valid corpus; the message says why and what to change."""


# --- config ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class CrawlConfig:
    source: Literal["ccnews", "web"] = "ccnews"
    server_address: str = LOCAL  # "local" (generated archive on loopback) or a CC-NEWS mirror URL
    publishers: list[str] = field(default_factory=lambda: ["us", "uk", "de"])
    published_from: str = "2024-01-01"
    published_to: str = "2024-03-31"
    max_articles: int = 400
    max_per_publisher: int | None = None
    languages: list[str] = field(default_factory=lambda: ["en", "de"])
    min_chars: int = 200
    max_chars: int = 50_000
    min_articles: int = 50
    processes: int = 0  # fundus worker processes for CC-NEWS (0: in-process, deterministic)
    timeout_s: float = 20.0  # per HTTP connect/read
    retries: int = 0  # fundus retries per failed WARC file (it sleeps 30 s x attempt)
    max_failed_files: int = 2  # fail the stage when more WARC files than this fail
    local_per_month: int = 160  # articles per month in the generated archive
    seed: int = 0  # seed of the generated archive
    world: WorldConfig = WorldConfig()  # the top-level `world`: what the generated archive reports

    def validate(self) -> list[str]:
        errs: list[str] = []
        dates = {}
        for key in ("published_from", "published_to"):
            value = getattr(self, key)
            try:
                dates[key] = date.fromisoformat(str(value))
            except ValueError:
                errs.append(f"{key}: expected a date YYYY-MM-DD, got {value!r}")
        first, last = dates.get("published_from"), dates.get("published_to")
        if first and last and first > last:
            errs.append(f"published_from: {first} is after published_to {last}")
        if last and last > datetime.now(timezone.utc).date():
            errs.append(f"published_to: {last} is in the future")
        if first and self.source == "ccnews" and first < CCNEWS_FIRST_DAY:
            errs.append(f"published_from: CC-NEWS starts on {CCNEWS_FIRST_DAY}, got {first}")
        errs += _check_server(self.server_address, self.source)
        if isinstance(self.publishers, list):
            if not self.publishers:
                errs.append("publishers: must list at least one country code or publisher")
            errs += [f"publishers[{i}]: {msg}" for i, msg in _publisher_problems(self.publishers)]
        if isinstance(self.languages, list) and (
                not self.languages
                or not all(isinstance(x, str) and re.fullmatch(r"[a-z]{2,3}", x) for x in self.languages)):
            errs.append(f"languages: expected a non-empty list of language codes like 'en', got {self.languages!r}")
        errs += _check_ints(self)
        return errs

    @property
    def window(self) -> tuple[datetime, datetime]:
        """[first, last] publishing instant, UTC."""
        first = datetime.combine(date.fromisoformat(self.published_from), datetime.min.time(), timezone.utc)
        last = datetime.combine(date.fromisoformat(self.published_to), datetime.max.time(), timezone.utc)
        return first, last

    @property
    def months(self) -> list[str]:
        """Archive months "YYYY-MM" covering the publishing window."""
        first, last = (d.date() for d in self.window)
        months, y, m = [], first.year, first.month
        while (y, m) <= (last.year, last.month):
            months.append(f"{y:04d}-{m:02d}")
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return months


def _check_server(address: Any, source: str) -> list[str]:
    if not isinstance(address, str) or source == "web" or address == LOCAL:
        return []
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return [f"server_address: expected '{LOCAL}' or an http(s) URL of a CC-NEWS mirror, got {address!r}"]
    return []


def _check_ints(cfg: CrawlConfig) -> list[str]:
    errs = []
    minimum = {"max_articles": 1, "min_chars": 0, "max_chars": 1, "min_articles": 0, "processes": 0,
               "retries": 0, "max_failed_files": 0, "local_per_month": 1}
    for key, low in minimum.items():
        value = getattr(cfg, key)
        if isinstance(value, int) and value < low:
            errs.append(f"{key}: must be >= {low}, got {value}")
    if isinstance(cfg.max_per_publisher, int) and cfg.max_per_publisher < 1:
        errs.append(f"max_per_publisher: must be >= 1 or null, got {cfg.max_per_publisher}")
    if isinstance(cfg.timeout_s, (int, float)) and not cfg.timeout_s > 0:
        errs.append(f"timeout_s: must be > 0, got {cfg.timeout_s}")
    if all(isinstance(v, int) for v in (cfg.min_chars, cfg.max_chars)) and cfg.min_chars >= cfg.max_chars:
        errs.append(f"min_chars: must be < max_chars ({cfg.max_chars}), got {cfg.min_chars}")
    if all(isinstance(v, int) for v in (cfg.min_articles, cfg.max_articles)) and cfg.min_articles > cfg.max_articles:
        errs.append(f"min_articles: must be <= max_articles ({cfg.max_articles}), got {cfg.min_articles}")
    return errs


# --- publishers -----------------------------------------------------------------------------

def _publisher_index() -> tuple[dict[str, Any], dict[str, Any]]:
    """(country code -> fundus PublisherGroup, lowercased name -> Publisher)."""
    from fundus import PublisherCollection

    groups = {code.lower(): group for code, group in PublisherCollection.get_subgroup_mapping().items()}
    names: dict[str, Any] = {}
    for code, group in groups.items():
        for publisher in group:
            for key in (publisher.__name__, f"{code}.{publisher.__name__}", publisher.name):
                names.setdefault(key.lower(), publisher)
    return groups, names


def _publisher_problems(entries: list) -> list[tuple[int, str]]:
    groups, names = _publisher_index()
    problems = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, str):
            problems.append((i, f"expected a string, got {entry!r}"))
        elif entry.lower() not in groups and entry.lower() not in names:
            problems.append((i, f"unknown country code or fundus publisher {entry!r} "
                                f"(country codes: {', '.join(sorted(groups))}; or names like 'TheGuardian', "
                                f"'uk.TheGuardian')"))
    return problems


def resolve_publishers(entries: list[str]) -> list[Any]:
    """Country codes -> fundus PublisherGroups; publisher names -> Publishers."""
    groups, names = _publisher_index()
    return [groups.get(e.lower()) or names[e.lower()] for e in entries]


# --- HTTP guard, interrupts, fundus logs ----------------------------------------------------------

@contextlib.contextmanager
def guarded_requests(timeout: float, only_host: str | None = None) -> Iterator[None]:
    """Within the block every ``requests`` call gets ``timeout`` (unless it sets one);
    with ``only_host``, requests to any other host are refused (local: loopback only)."""
    import requests

    original = requests.Session.request

    @functools.wraps(original)
    def request(self, method, url, *args, **kwargs):
        if only_host is not None and urlsplit(str(url)).hostname != only_host:
            raise requests.ConnectionError(f"the local archive allows only {only_host}: refused {url}")
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = timeout
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = request
    try:
        yield
    finally:
        requests.Session.request = original


class Interrupts:
    """Remembers SIGINT/SIGTERM: fundus swallows the KeyboardInterrupt, the stage must not."""

    def __init__(self) -> None:
        self.hit = False
        self._pid = os.getpid()
        self._previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked fundus worker: behave as before the stage
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, frame)
                return
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.hit = True
        raise KeyboardInterrupt(f"signal {signum}")

    def check(self) -> None:
        if self.hit:
            raise KeyboardInterrupt("interrupted")

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        if threading.current_thread() is not threading.main_thread():  # signals go to the main thread
            yield self
            return
        self._previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)


class FailedWarcLog(logging.Handler):
    """Appends each WARC file fundus gives up on to a file (works from fundus' worker processes)."""

    PATTERN = re.compile(r"Failed to load WARC file '([^']+)'")

    def __init__(self, path: Path) -> None:
        super().__init__(logging.ERROR)
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        if match := self.PATTERN.search(record.getMessage()):
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(match.group(1) + "\n")

    def paths(self) -> list[str]:
        return sorted(set(self.path.read_text(encoding="utf-8").split())) if self.path.exists() else []

    @contextlib.contextmanager
    def attached(self) -> Iterator[FailedWarcLog]:
        self.path.unlink(missing_ok=True)
        logger = logging.getLogger("fundus.scraping.crawler")
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)


@contextlib.contextmanager
def quiet_fundus(verbose: bool = False) -> Iterator[None]:
    """fundus loggers log DEBUG to the root handlers and ERROR to their own stderr handler:
    keep WARNING and up (DEBUG with ``verbose``), shown once through the root handlers."""
    from fundus import logging as fundus_logging

    own = list(fundus_logging.handlers.values())
    levels = {name: lg.level for name, lg in fundus_logging.loggers.items()}
    for lg in fundus_logging.loggers.values():
        lg.setLevel(logging.DEBUG if verbose else logging.WARNING)
        for handler in own:
            lg.removeHandler(handler)
    try:
        yield
    finally:
        for name, level in levels.items():
            fundus_logging.loggers[name].setLevel(level)
            for handler in own:
                fundus_logging.loggers[name].addHandler(handler)


@contextlib.contextmanager
def progress(total: int, desc: str) -> Iterator[Any]:
    """A tqdm bar (articles/s); log lines are printed above it instead of through it."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(), tqdm(total=total, unit="article", desc=desc, mininterval=1.0) as bar:
        yield bar


# --- articles -------------------------------------------------------------------------------

def _value(v: Any) -> Any:
    """fundus with error_handling='catch' stores a failed attribute as its exception."""
    return None if isinstance(v, Exception) else v


def to_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def detect_language(text: str) -> str | None:
    from langdetect import DetectorFactory, LangDetectException, detect

    DetectorFactory.seed = 0
    try:
        return detect(text[:2000])
    except LangDetectException:
        return None


def extract(article: Any, cfg: CrawlConfig) -> tuple[dict | None, str | None]:
    """(record, None) for a usable fundus article, else (None, drop reason)."""
    from fundus.parser.data import remove_query_parameters_from_url

    if article.exception is not None:
        return None, "parse_error"
    title = (_value(article.title) or "").strip()
    body = _value(article.body)
    text = body.text().strip() if body is not None else ""
    published = _value(article.publishing_date)
    first, last = cfg.window
    if not title:
        return None, "missing_title"
    if not text:
        return None, "empty_body"
    if not isinstance(published, datetime):
        return None, "missing_date"
    published = to_utc(published)
    if not first <= published <= last:
        return None, "out_of_window"
    if len(text) < cfg.min_chars:
        return None, "too_short"
    if len(text) > cfg.max_chars:
        return None, "too_long"
    language = detect_language(text)
    if language not in cfg.languages:
        return None, "language"
    return {
        "url": remove_query_parameters_from_url(article.html.requested_url),
        "publisher": article.publisher,
        "title": title,
        "text": text,
        "published": published.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "language": language,
    }, None


def text_key(text: str) -> bytes:
    return hashlib.sha1(" ".join(text.lower().split()).encode("utf-8")).digest()


@dataclass
class Selection:
    """The articles kept so far: dedupe by URL and text, cap per publisher."""

    max_per_publisher: int | None
    urls: set[str] = field(default_factory=set)
    texts: set[bytes] = field(default_factory=set)
    per_publisher: Counter = field(default_factory=Counter)
    total: int = 0

    def admit(self, record: dict) -> str | None:
        """Keep ``record`` (returns None) or say why not."""
        if record["url"] in self.urls:
            return "duplicate_url"
        if text_key(record["text"]) in self.texts:
            return "duplicate_text"
        if self.max_per_publisher and self.per_publisher[record["publisher"]] >= self.max_per_publisher:
            return "publisher_cap"
        self.add(record)
        return None

    def add(self, record: dict) -> None:
        self.urls.add(record["url"])
        self.texts.add(text_key(record["text"]))
        self.per_publisher[record["publisher"]] += 1
        self.total += 1


# --- work dir: one part per finished month ------------------------------------------------------

class Parts:
    """Finished months under ``root``: ``part-M.jsonl`` (kept articles, streamed as crawled)
    and ``part-M.json`` (the month's counts; written last, it marks the month done).
    Everything is discarded when the params that select articles change."""

    def __init__(self, root: Path, cfg: CrawlConfig) -> None:
        self.root = root
        fingerprint = {k: v for k, v in asdict(cfg).items() if k not in OPERATIONAL_KEYS}
        stamp = root / "params.json"
        if root.exists() and (not stamp.exists() or json.loads(stamp.read_text()) != fingerprint):
            log.info("crawl params changed: discarding finished months in %s", root)
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        if not stamp.exists():
            write_json(stamp, fingerprint)

    def articles_path(self, month: str) -> Path:
        return self.root / f"part-{month}.jsonl"

    def stats(self, month: str) -> dict | None:
        path = self.root / f"part-{month}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def articles(self, month: str) -> Iterator[dict]:
        with open(self.articles_path(month), encoding="utf-8") as fh:
            yield from map(json.loads, fh)

    @contextlib.contextmanager
    def writing(self, month: str) -> Iterator[Any]:
        """Yields ``sink(record)``; the month's article file appears only if the block succeeds."""
        tmp = self.root / f"part-{month}.jsonl.tmp"
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            yield lambda record: fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, self.articles_path(month))

    def finish(self, stats: dict) -> None:
        write_json(self.root / f"part-{stats['month']}.json", stats)

    def finished(self) -> list[dict]:
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.root.glob("part-*.json"))]


# --- CC-NEWS --------------------------------------------------------------------------------

def listing_url(server: str, month: str) -> str:
    return f"{server}crawl-data/CC-NEWS/{month.replace('-', '/')}/warc.paths.gz"


def fetch_listing(server: str, month: str, timeout: float) -> list[str]:
    """The WARC paths of one CC-NEWS month; CrawlError (naming the URL) if unavailable."""
    import requests

    url = listing_url(server, month)
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise CrawlError(f"cannot fetch {url} ({type(exc).__name__} within {timeout:g}s): {NO_NETWORK_HINT}") from exc
    if response.status_code == 404:
        raise CrawlError(f"CC-NEWS listing for {month} not found: {url} (HTTP 404); "
                         f"check crawl.published_from/published_to and crawl.server_address")
    if response.status_code != 200:
        raise CrawlError(f"cannot fetch {url}: HTTP {response.status_code}")
    try:
        paths = gzip.decompress(response.content).decode("utf-8").split()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise CrawlError(f"{url} is not a gzip list of WARC paths ({exc}); "
                         f"is crawl.server_address a CC-NEWS mirror?") from exc
    return paths


def month_range(month: str) -> tuple[datetime, datetime]:
    """Naive [first second, last second] of an archive month, as fundus compares them."""
    start = datetime.strptime(month, "%Y-%m")
    end = (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(seconds=1)
    return start, min(end, datetime.now() - timedelta(seconds=1))


def month_quota(max_articles: int, kept: int, months_left: int) -> int:
    """Even share of what is left of ``max_articles`` (unused shares roll forward)."""
    return max(0, math.ceil((max_articles - kept) / max(months_left, 1)))


def crawl_articles(articles: Iterator[Any], cfg: CrawlConfig, selection: Selection, quota: int,
                   sink: Any, bar: Any) -> tuple[int, Counter]:
    """Filter fundus articles into ``selection`` and ``sink`` until ``quota`` are kept."""
    kept, drops = 0, Counter()
    if quota <= 0:
        return kept, drops
    with contextlib.closing(articles):
        for article in articles:
            record, reason = extract(article, cfg)
            reason = reason or selection.admit(record)
            if reason:
                drops[reason] += 1
                continue
            sink(record)
            kept += 1
            bar.update(1)
            if kept >= quota:
                break
    return kept, drops


def crawl_month(cfg: CrawlConfig, server: str, publishers: list[Any], month: str, quota: int,
                selection: Selection, parts: Parts, interrupts: Interrupts, bar: Any) -> dict:
    """Crawl one archive month with fundus' CCNewsCrawler into its part; returns its counts."""
    import requests
    from fundus import CCNewsCrawler

    warc_files = fetch_listing(server, month, cfg.timeout_s)
    start, end = month_range(month)
    crawler = CCNewsCrawler(*publishers, start=start, end=end, processes=cfg.processes,
                            retries=cfg.retries, disable_tqdm=True, server_address=server)
    began = time.monotonic()
    with FailedWarcLog(parts.root / "failed-warcs.txt").attached() as failed, parts.writing(month) as sink:
        try:
            kept, drops = crawl_articles(
                crawler.crawl(only_complete=False, only_unique=False, error_handling="catch"),
                cfg, selection, quota, sink, bar)
        except requests.RequestException as exc:
            interrupts.check()
            raise CrawlError(f"lost the CC-NEWS server while crawling {month} ({exc}); "
                             f"finished months are kept, rerun to resume") from exc
        interrupts.check()  # fundus returns normally after swallowing Ctrl-C
    seconds = time.monotonic() - began
    log.info("%s: kept %d/%d articles from %d WARC files in %.1fs (%.1f articles/s), dropped %s",
             month, kept, quota, len(warc_files), seconds, kept / max(seconds, 1e-9),
             dict(sorted(drops.items())) or "none")
    return {"month": month, "quota": quota, "articles": kept, "warc_files": len(warc_files),
            "failed_files": failed.paths(), "drops": dict(sorted(drops.items()))}


def crawl_ccnews(cfg: CrawlConfig, server: str, parts: Parts, interrupts: Interrupts) -> None:
    """Crawl every month not finished yet; each finished month becomes a part."""
    publishers = resolve_publishers(cfg.publishers)
    months = cfg.months
    fetch_listing(server, months[0], min(cfg.timeout_s, PREFLIGHT_MAX_S))  # preflight
    selection = Selection(cfg.max_per_publisher)
    failed: list[str] = []
    with progress(cfg.max_articles, "crawl") as bar:
        for i, month in enumerate(months):
            stats = parts.stats(month)
            if stats is None:
                bar.set_postfix_str(month)
                quota = month_quota(cfg.max_articles, selection.total, len(months) - i)
                stats = crawl_month(cfg, server, publishers, month, quota, selection, parts, interrupts, bar)
                _check_failed(cfg, month, failed, stats["failed_files"])
                parts.finish(stats)
            else:
                log.info("%s: already crawled (%d articles), resuming after it", month, stats["articles"])
                for record in parts.articles(month):
                    selection.add(record)
                bar.update(stats["articles"])
            failed += stats["failed_files"]


def _check_failed(cfg: CrawlConfig, month: str, failed_before: list[str], failed_now: list[str]) -> None:
    if failed_now:
        log.warning("%s: %d WARC file(s) failed to load: %s", month, len(failed_now), ", ".join(failed_now))
    failed = failed_before + failed_now
    if len(failed) > cfg.max_failed_files:
        raise CrawlError(f"{len(failed)} WARC files failed to load (crawl.max_failed_files: "
                         f"{cfg.max_failed_files}): {', '.join(failed)}")


# --- live web -------------------------------------------------------------------------------

def crawl_web(cfg: CrawlConfig, parts: Parts, interrupts: Interrupts) -> None:
    """One pass over live RSS feeds / sitemaps with fundus' Crawler (needs internet)."""
    from fundus import Crawler
    from fundus.scraping.session import session_handler

    crawler = Crawler(*resolve_publishers(cfg.publishers))
    selection = Selection(cfg.max_per_publisher)
    with session_handler.context(timeout=cfg.timeout_s), progress(cfg.max_articles, "crawl web") as bar, \
            parts.writing("web") as sink:
        kept, drops = crawl_articles(
            crawler.crawl(only_complete=False, only_unique=False, error_handling="catch"),
            cfg, selection, cfg.max_articles, sink, bar)
        interrupts.check()
    parts.finish({"month": "web", "quota": cfg.max_articles, "articles": kept, "warc_files": 0,
                  "failed_files": [], "drops": dict(sorted(drops.items()))})


# --- stage ----------------------------------------------------------------------------------

@contextlib.contextmanager
def archive_server(cfg: CrawlConfig) -> Iterator[tuple[str, str | None]]:
    """(server address ending in '/', only allowed host or None)."""
    if cfg.server_address != LOCAL:
        yield cfg.server_address.rstrip("/") + "/", None
        return
    from .synthetic.warc_archive import build_archive, serve_directory

    with tempfile.TemporaryDirectory(prefix="ccnews-local-") as tmp:
        manifest = build_archive(tmp, cfg.months, per_month=cfg.local_per_month, seed=cfg.seed,
                                 plant_bad=len(cfg.months) >= 2 and cfg.local_per_month >= 2,
                                 world=cfg.world.kind, world_seed=cfg.world.seed)
        log.info("local: generated a CC-NEWS archive of %d WARC files (%d records, months %s..%s)",
                 len(manifest.warc_paths), len(manifest.records), cfg.months[0], cfg.months[-1])
        with serve_directory(tmp) as url:
            yield url, "127.0.0.1"


def crawl(cfg: CrawlConfig, work_dir: Path, interrupts: Interrupts, verbose: bool = False) -> Parts:
    """Crawl every month not finished in ``work_dir`` yet; returns the finished parts."""
    parts = Parts(work_dir, cfg)
    with quiet_fundus(verbose):
        if cfg.source == "web":
            with guarded_requests(cfg.timeout_s):
                crawl_web(cfg, parts, interrupts)
        else:
            with archive_server(cfg) as (server, only_host), guarded_requests(cfg.timeout_s, only_host):
                crawl_ccnews(cfg, server, parts, interrupts)
    return parts


def write_corpus(parts: Parts, cfg: CrawlConfig, out: Path) -> dict:
    """Write every kept article to ``out`` sorted by (published, url); returns the stage metrics.

    Only sort keys and file offsets are held in memory, never the texts.
    """
    months = parts.finished()
    keys: list[tuple[str, str, int, int]] = []
    per: dict[str, Counter] = {"publisher": Counter(), "month": Counter(), "language": Counter()}
    chars = 0
    for i, stats in enumerate(months):
        with open(parts.articles_path(stats["month"]), "rb") as fh:
            offset = 0
            for line in fh:
                record = json.loads(line)
                keys.append((record["published"], record["url"], i, offset))
                offset += len(line)
                chars += len(record["text"])
                per["publisher"][record["publisher"]] += 1
                per["month"][record["published"][:7]] += 1
                per["language"][record["language"]] += 1
    drops = sum((Counter(m["drops"]) for m in months), Counter())
    metrics = {
        "articles": len(keys), "chars": chars, "tokens_estimate": chars // 4,
        **{f"per_{name}": dict(sorted(counts.items())) for name, counts in per.items()},
        "drops": dict(sorted(drops.items())),
        "warc_files": sum(m["warc_files"] for m in months),
        "failed_files": sum(len(m["failed_files"]) for m in months),
        "max_articles": cfg.max_articles,
    }
    if len(keys) < max(cfg.min_articles, 1):
        raise CrawlError(f"only {len(keys)} articles kept (crawl.min_articles: {cfg.min_articles}); "
                         f"drops: {metrics['drops'] or 'none'}. Widen crawl.published_from/published_to or "
                         f"crawl.publishers/languages, or check crawl.server_address")
    keys.sort()
    with contextlib.ExitStack() as stack, atomic_file(out, "wb") as dst:
        sources = [stack.enter_context(open(parts.articles_path(m["month"]), "rb")) for m in months]
        for _, _, i, offset in keys:
            sources[i].seek(offset)
            dst.write(sources[i].readline())
    return metrics


def default_work_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.parts"


def _remove_if_nothing_finished(work_dir: Path) -> None:
    if work_dir.is_dir() and not any(work_dir.glob("part-*.json")):
        shutil.rmtree(work_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", type=Path, default=Path("data/articles.jsonl"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics/crawl.json"))
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="finished months, for resuming (default: .<out name>.parts next to --out)")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logs, fundus' included")
    args = ap.parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    work_dir = args.work_dir or default_work_dir(args.out)
    try:
        cfg = load_section(CrawlConfig, "crawl", args.params)
        with Interrupts().installed() as interrupts:
            parts = crawl(cfg, work_dir, interrupts, args.verbose)
            metrics = write_corpus(parts, cfg, args.out)
    except (ConfigError, FileNotFoundError, CrawlError) as exc:
        log.error("crawl failed: %s", exc)
        _remove_if_nothing_finished(work_dir)
        return 1
    except KeyboardInterrupt:
        log.error("crawl interrupted: finished months are kept in %s; rerun to resume", work_dir)
        _remove_if_nothing_finished(work_dir)
        return 130
    write_json(args.metrics, metrics)
    shutil.rmtree(work_dir, ignore_errors=True)
    log.info("wrote %d articles (~%d tokens) to %s: %s", metrics["articles"], metrics["tokens_estimate"],
             args.out, metrics["per_publisher"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
