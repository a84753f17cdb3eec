"""Source ``ccnews``: CC-NEWS month by month with fundus' ``CCNewsCrawler``.

fundus' start/end are *archive* dates, so each call covers one whole archive month;
``max_articles`` is spread evenly over the months (what a month leaves unused goes to
the later ones). Each finished month is a part, so an interrupted crawl resumes at the
month it stopped in.

``server_address: local`` generates a synthetic CC-NEWS archive (seeded, see
:mod:`freshllm.synthetic.warc_archive`), serves it on a loopback port for the duration
of the stage and allows HTTP only to that port; with the top-level ``world: {kind: toyworld}`` the
archive holds the toy world's d2 news (:mod:`freshllm.synthetic.toyworld`, world
``world.seed``) on the English publishers, still parsed by fundus. Any other value is a
CC-NEWS mirror, e.g. ``https://data.commoncrawl.org/``.

The first month's listing is fetched first so a dead or silent server fails within
``timeout_s`` (at most 25 s); WARC files fundus fails to load are counted and fail the
stage beyond ``max_failed_files``.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import math
import tempfile
import time
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterator

from ..articles import Selection, keep_articles
from ..guards import CrawlError, FailedWarcLog, Interrupts, guarded_requests, progress
from ..publishers import resolve_publishers
from ..store import Parts, part_stats
from .base import LOCAL, Source

if TYPE_CHECKING:
    from ..config import CrawlConfig

log = logging.getLogger(__name__)

CCNEWS_FIRST_DAY = date(2016, 8, 1)
PREFLIGHT_MAX_S = 25.0
NO_NETWORK_HINT = ("no network: use the local profile (crawl.server_address: local) "
                   "or set crawl.server_address to a reachable CC-NEWS mirror")


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
            kept, drops = keep_articles(
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
    return part_stats(month, quota, kept, drops, warc_files=len(warc_files), failed_files=failed.paths())


def crawl_months(cfg: CrawlConfig, server: str, parts: Parts, interrupts: Interrupts) -> None:
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
                for article in parts.articles(month):
                    selection.add(article)
                bar.update(stats["articles"])
            failed += stats["failed_files"]


def _check_failed(cfg: CrawlConfig, month: str, failed_before: list[str], failed_now: list[str]) -> None:
    if failed_now:
        log.warning("%s: %d WARC file(s) failed to load: %s", month, len(failed_now), ", ".join(failed_now))
    failed = failed_before + failed_now
    if len(failed) > cfg.max_failed_files:
        raise CrawlError(f"{len(failed)} WARC files failed to load (crawl.max_failed_files: "
                         f"{cfg.max_failed_files}): {', '.join(failed)}")


@contextlib.contextmanager
def archive_server(cfg: CrawlConfig) -> Iterator[tuple[str, str | None]]:
    """(server address ending in '/', only allowed host or None)."""
    if cfg.server_address != LOCAL:
        yield cfg.server_address.rstrip("/") + "/", None
        return
    from ...synthetic.warc_archive import build_archive, serve_directory

    with tempfile.TemporaryDirectory(prefix="ccnews-local-") as tmp:
        manifest = build_archive(tmp, cfg.months, per_month=cfg.local_per_month, seed=cfg.seed,
                                 plant_bad=len(cfg.months) >= 2 and cfg.local_per_month >= 2,
                                 world=cfg.world.kind, world_seed=cfg.world.seed)
        log.info("local: generated a CC-NEWS archive of %d WARC files (%d records, months %s..%s)",
                 len(manifest.warc_paths), len(manifest.records), cfg.months[0], cfg.months[-1])
        with serve_directory(tmp) as url:
            yield url, "127.0.0.1"


def crawl(cfg: CrawlConfig, parts: Parts, interrupts: Interrupts) -> None:
    with archive_server(cfg) as (server, only_host), guarded_requests(cfg.timeout_s, only_host):
        crawl_months(cfg, server, parts, interrupts)


SOURCE = Source(crawl, label="CC-NEWS", uses_server_address=True, first_day=CCNEWS_FIRST_DAY)
