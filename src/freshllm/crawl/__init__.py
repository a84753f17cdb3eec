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

CC-NEWS specifics (:mod:`.sources.ccnews`): the last month reads the archive on to
``archive_lag_days`` past ``published_to`` (late-archived articles; a listing past the
archive's end is skipped); each month's quota is spread over its publishing days
(:mod:`.spread`; metrics ``per_day`` and ``day_spread``); every WARC record is accounted
for (:mod:`.sources.warc`): what fundus would skip unparsed is counted in ``drops`` by
reason (``unknown_domain``, ``unselected_publisher``, ``www_mismatch``,
``publisher_url_filter``, ``no_warc_date``, ``bad_digest``, ``undecodable``), a bad digest
no longer ends the file, and each file is complete, partial (damaged records) or failed
(metrics ``warc``, ``failed_files``, ``partial_files``).

Safety (:mod:`.guards`, :mod:`.transfer`): every ``requests`` call gets a timeout (fundus
sets none) and every listing and WARC download a total deadline (``file_deadline_s``)
and a minimum rate (``min_bytes_per_s``); a dead, silent or trickling CC-NEWS server
fails within 25 s; a transfer cut short (with or without ``Content-Length``) is a failed
file; Ctrl-C stops the stage with exit code 130 (fundus swallows ``KeyboardInterrupt``,
so the stage tracks SIGINT itself); failed WARC files fail the stage beyond
``max_failed_files``.

Layout: :mod:`.config` (``CrawlConfig``), :mod:`.publishers` (fundus publisher lookup),
:mod:`.guards`, :mod:`.transfer`, :mod:`.articles`, :mod:`.spread`, :mod:`.store` (resume
parts and the corpus writer), :mod:`.sources` (one module per source and the registry;
``ccnews`` with ``ccnews_archive`` and ``warc``), :mod:`.cli` (``main``).
"""

from .articles import Article, to_utc
from .cli import crawl, main
from .config import CrawlConfig
from .guards import CrawlError, guarded_requests
from .sources import SOURCES, Source

__all__ = ["SOURCES", "Article", "CrawlConfig", "CrawlError", "Source", "crawl", "guarded_requests", "main",
           "to_utc"]
