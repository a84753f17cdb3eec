"""Source ``ccnews``: CC-NEWS month by month, parsed by fundus.

Each publishing month of the window is a unit (a part, so an interrupted crawl resumes
at the month it stopped in) that reads that month's archive; the last one reads on
``archive_lag_days`` past ``published_to`` (into the next month's listing), so an article
published on the window's last days and archived after it is still found; a listing past
the archive's end (HTTP 404) is skipped. CC-NEWS dates are *archive* dates: the
publishing-date filter drops what lies outside the window.

``max_articles`` is split evenly over the months (what a month leaves unused goes to the
later ones) and each month's share over its publishing days (:mod:`..spread`); a month's
WARC files are read in a seeded order (fundus: newest first), by fundus' worker processes
(:class:`~.warc.WarcCrawler`, which accounts for every record and bounds every download).

``server_address: local`` generates a synthetic CC-NEWS archive (seeded, see
:mod:`freshllm.synthetic.warc_archive`), serves it on a loopback port for the duration
of the stage and allows HTTP only to that port; with the top-level ``world: {kind: toyworld}`` the
archive holds the toy world's d2 news (:mod:`freshllm.synthetic.toyworld`, world
``world.seed``) on the English publishers, still parsed by fundus. Any other value is a
CC-NEWS mirror, e.g. ``https://data.commoncrawl.org/``.

The first month's listing is fetched first so a dead, silent or trickling server fails
within 25 s; WARC files that cannot be read to their end are counted and fail the stage
beyond ``max_failed_files``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Iterator

from ..articles import Selection, extract
from ..guards import CrawlError, Interrupts, guarded_requests, progress
from ..publishers import resolve_publishers
from ..spread import DaySpread
from ..store import Parts, part_stats
from ..transfer import Limits
from .base import LOCAL, Source
from .ccnews_archive import PREFLIGHT_MAX_S, Listings, Unit, units
from .warc import FAILED, LOST, FileReport, WarcCrawler, publisher_domains

if TYPE_CHECKING:
    from ..config import CrawlConfig

log = logging.getLogger(__name__)

CCNEWS_FIRST_DAY = date(2016, 8, 1)


def month_quota(max_articles: int, kept: int, months_left: int) -> int:
    """Even share of what is left of ``max_articles`` (unused shares roll forward)."""
    return max(0, math.ceil((max_articles - kept) / max(months_left, 1)))


@dataclass
class Run:
    """What every month of one crawl shares."""

    cfg: CrawlConfig
    listings: Listings
    publishers: list[Any]
    known_hosts: dict[str, str] = field(default_factory=publisher_domains)
    failed: list[str] = field(default_factory=list)  # "url (reason)" of every failed file so far

    @property
    def limits(self) -> Limits:
        return self.listings.limits

    def file_done(self, month: str, report: FileReport) -> None:
        """Log a failed or partial file; fail the stage on a lost server or too many failed files."""
        if report.status == LOST:
            raise CrawlError(f"lost the CC-NEWS server while crawling {month} ({report.line()}); "
                             f"finished months are kept, rerun to resume")
        if report.status == FAILED:
            log.warning("%s: WARC file failed to load: %s", month, report.line())
            self.failed.append(report.line())
            if len(self.failed) > self.cfg.max_failed_files:
                raise CrawlError(f"{len(self.failed)} WARC files failed to load (crawl.max_failed_files: "
                                 f"{self.cfg.max_failed_files}): {', '.join(self.failed)}")
        elif report.damaged:
            log.warning("%s: WARC file partly damaged: %s", month, report.line())


def crawl_unit(run: Run, unit: Unit, quota: int, selection: Selection, parts: Parts, interrupts: Interrupts,
               bar: Any) -> dict:
    """Crawl one month into its part; returns its counts."""
    cfg = run.cfg
    urls, missing = run.listings.warc_urls(unit)
    random.Random(f"{cfg.seed}/{unit.month}").shuffle(urls)
    reports: list[FileReport] = []
    drops: Counter = Counter()
    began = time.monotonic()
    with DaySpread(parts.spool_path(unit.month), quota, unit.days, selection, f"{cfg.seed}/{unit.month}") as spread:
        if quota > 0 and urls:
            crawler = WarcCrawler(*run.publishers, warc_urls=urls, limits=run.limits, retries=cfg.retries,
                                  processes=cfg.processes, known_hosts=run.known_hosts)
            items = crawler.crawl(only_complete=False, only_unique=False, error_handling="catch")
            with contextlib.closing(items):
                for item in items:
                    if isinstance(item, FileReport):
                        reports.append(item)
                        drops.update(item.drops)
                        run.file_done(unit.month, item)
                        continue
                    article, reason = extract(item, cfg)
                    reason = reason or spread.offer(article)
                    if reason:
                        drops[reason] += 1
                    elif spread.full():
                        break
            interrupts.check()  # fundus returns normally after swallowing Ctrl-C
        with parts.writing(unit.month) as sink:
            kept, picked = spread.pick(sink)
    drops.update(picked)
    bar.update(kept)
    seconds = time.monotonic() - began
    log.info("%s: kept %d/%d articles from %d of %d WARC files in %.1fs (%.1f articles/s), dropped %s",
             unit.month, kept, quota, len(reports), len(urls), seconds, kept / max(seconds, 1e-9),
             dict(sorted(drops.items())) or "none")
    return part_stats(unit.month, quota, kept, drops, warc_files=len(urls), reports=reports,
                      missing_listings=missing)


def crawl_months(cfg: CrawlConfig, server: str, parts: Parts, interrupts: Interrupts) -> None:
    """Crawl every month not finished yet; each finished month becomes a part."""
    limits = Limits(cfg.timeout_s, cfg.file_deadline_s, cfg.min_bytes_per_s)
    run = Run(cfg, Listings(server, limits), resolve_publishers(cfg.publishers))
    todo = units(cfg)
    run.listings.preflight(todo[0].listings[0], limits.tighter(PREFLIGHT_MAX_S))
    selection = Selection(cfg.max_per_publisher)
    with progress(cfg.max_articles, "crawl") as bar:
        for i, unit in enumerate(todo):
            stats = parts.stats(unit.month)
            if stats is None:
                bar.set_postfix_str(unit.month)
                quota = month_quota(cfg.max_articles, selection.total, len(todo) - i)
                stats = crawl_unit(run, unit, quota, selection, parts, interrupts, bar)
                parts.finish(stats)
            else:
                log.info("%s: already crawled (%d articles), resuming after it", unit.month, stats["articles"])
                for article in parts.articles(unit.month):
                    selection.add(article)
                bar.update(stats["articles"])
                run.failed += stats["failed_files"]


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
                                 world=cfg.world.kind, world_seed=cfg.world.seed,
                                 world_slices=cfg.world.d2_slices)
        log.info("local: generated a CC-NEWS archive of %d WARC files (%d records, months %s..%s)",
                 len(manifest.warc_paths), len(manifest.records), cfg.months[0], cfg.months[-1])
        with serve_directory(tmp) as url:
            yield url, "127.0.0.1"


def crawl(cfg: CrawlConfig, parts: Parts, interrupts: Interrupts) -> None:
    with archive_server(cfg) as (server, only_host), guarded_requests(cfg.timeout_s, only_host):
        crawl_months(cfg, server, parts, interrupts)


SOURCE = Source(crawl, label="CC-NEWS", uses_server_address=True, first_day=CCNEWS_FIRST_DAY)
