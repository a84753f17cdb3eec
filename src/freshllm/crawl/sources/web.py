"""Source ``web``: one pass over live RSS feeds and sitemaps with fundus' ``Crawler``.

Needs internet; ignores ``server_address``; no resume (the pass is one part, ``web``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..articles import Selection, keep_articles
from ..guards import Interrupts, guarded_requests, progress
from ..publishers import resolve_publishers
from ..store import Parts, part_stats
from .base import Source

if TYPE_CHECKING:
    from ..config import CrawlConfig


def crawl(cfg: CrawlConfig, parts: Parts, interrupts: Interrupts) -> None:
    from fundus import Crawler
    from fundus.scraping.session import session_handler

    with guarded_requests(cfg.timeout_s):
        crawler = Crawler(*resolve_publishers(cfg.publishers))
        selection = Selection(cfg.max_per_publisher)
        with session_handler.context(timeout=cfg.timeout_s), progress(cfg.max_articles, "crawl web") as bar, \
                parts.writing("web") as sink:
            kept, drops = keep_articles(
                crawler.crawl(only_complete=False, only_unique=False, error_handling="catch"),
                cfg, selection, cfg.max_articles, sink, bar)
            interrupts.check()
        parts.finish(part_stats("web", cfg.max_articles, kept, drops))


SOURCE = Source(crawl, label="the live web")
