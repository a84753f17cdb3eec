"""Stage ``crawl``: fresh news articles from CC-NEWS (or live sites) with fundus, as JSONL.

    python -m freshllm.crawl --params params.yaml --out data/articles.jsonl --metrics metrics/crawl.json

``crawl.source`` names a source of :data:`~freshllm.crawl.sources.SOURCES`: ``ccnews``
(CC-NEWS month by month with fundus' ``CCNewsCrawler``, from a mirror or, with
``server_address: local``, a generated archive on loopback; :mod:`.sources.ccnews`) or
``web`` (live RSS feeds and sitemaps with fundus' ``Crawler``, needs internet, no
resume; :mod:`.sources.web`). Every source yields :class:`~.articles.Article` records
through the same filters and dedup (:mod:`.articles`): ``max_per_publisher`` caps each
publisher.

Each finished unit (a CC-NEWS month) is saved as a part file in a work directory, so an
interrupted crawl resumes where it stopped (:mod:`.store`). The output is sorted by
(published, url): the same params and archive give a byte-identical file (with
``processes: 0``).

Safety (:mod:`.guards`): every ``requests`` call gets a timeout (fundus sets none); a
dead or silent CC-NEWS server fails within ``timeout_s`` (at most 25 s); Ctrl-C stops
the stage with exit code 130 (fundus swallows ``KeyboardInterrupt``, so the stage tracks
SIGINT itself); WARC files fundus fails to load are counted and fail the stage beyond
``max_failed_files``.

Layout: :mod:`.config` (``CrawlConfig``), :mod:`.publishers` (fundus publisher lookup),
:mod:`.guards`, :mod:`.articles`, :mod:`.store` (resume parts and the corpus writer),
:mod:`.sources` (one module per source and the registry), :mod:`.cli` (``main``).
"""

from .articles import Article, to_utc
from .cli import crawl, main
from .config import CrawlConfig
from .guards import CrawlError, guarded_requests
from .sources import SOURCES, Source

__all__ = ["SOURCES", "Article", "CrawlConfig", "CrawlError", "Source", "crawl", "guarded_requests", "main",
           "to_utc"]
