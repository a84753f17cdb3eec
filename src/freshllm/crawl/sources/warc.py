"""Reading CC-NEWS WARC files for fundus, with every record accounted for.

fundus 0.5.7's ``CCNewsCrawler`` loses records silently: fastwarc stops reading a file
at the first bad ``WARC-Block-Digest`` (the good records after it are lost), a transfer
cut short without a ``Content-Length`` looks like the end of the file, and the records it
skips (foreign domains, ``www.`` mismatches, a publisher's URL filter, no ``WARC-Date``,
undecodable pages) are counted nowhere; its downloads have no deadline.

:class:`WarcCrawler` keeps fundus' crawler (its parsers, error handling and worker
processes) but reads each file itself: one bounded download per attempt
(:mod:`..transfer`), decompressed once by :class:`~..transfer.GzipMembers`, each record's
digest checked on its own (a bad record is skipped, reading goes on), and the same
acceptance rules as fundus' ``CCNewsSource.fetch`` with a drop reason for each record it
skips. After each file it yields a :class:`FileReport` (through fundus' pipeline, so it
also comes back from worker processes): complete, partial (read to the end, some records
damaged) or failed (not read to the end, after ``retries``).
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import urlparse

from fundus import CCNewsCrawler
from fundus.scraping.html import HTML, CCNewsSource, WarcSourceInfo
from fundus.scraping.scraper import CCNewsScraper

from ..transfer import GzipMembers, Limits, TransferError, opened

log = logging.getLogger(__name__)

USER_AGENT = {"user-agent": "Fundus/2.0 (contact: github.com/flairnlp/fundus)"}  # what fundus sends
COMPLETE, PARTIAL, FAILED, LOST = "complete", "partial", "failed", "lost_server"


@dataclass
class FileReport:
    """What reading one WARC file gave. fundus' ``crawl()`` reads ``.publisher`` and
    ``.html.responded_url`` of every item it passes on, so a report carries both."""

    path: str
    status: str = COMPLETE
    reason: str = ""
    records: int = 0  # response records read
    damaged: int = 0  # of them, unusable (bad or missing digest, cut off)
    members: int = 0  # complete gzip members received
    bytes: int = 0
    attempts: int = 0
    drops: Counter = field(default_factory=Counter)  # records fundus would skip, by reason
    publisher: str = ""

    @property
    def html(self) -> Any:
        return _ReportURL(self.path)

    def line(self) -> str:
        return f"{self.path} ({self.reason})" if self.reason else self.path


@dataclass(frozen=True)
class _ReportURL:
    responded_url: str


def publisher_domains() -> dict[str, str]:
    """Host -> name of every fundus publisher (to tell an unselected publisher from an unknown domain)."""
    from fundus import PublisherCollection

    hosts: dict[str, str] = {}
    for group in PublisherCollection.get_subgroup_mapping().values():
        for publisher in group:
            for domain in [publisher.domain, *publisher.deprecated_domains]:
                hosts.setdefault(urlparse(domain).netloc, publisher.name)
    return hosts


class WarcSource(CCNewsSource):
    """``CCNewsSource`` whose ``fetch`` reads the file within ``limits``, checks each record's
    digest itself and counts what it skips in ``report`` (fundus 0.5.7's rules otherwise)."""

    def __init__(self, *publishers: Any, warc_path: str, limits: Limits, known_hosts: dict[str, str],
                 report: FileReport, skip: int = 0) -> None:
        super().__init__(*publishers, warc_path=warc_path, headers=USER_AGENT)
        self.limits, self.known_hosts, self.report, self.skip = limits, known_hosts, report, skip

    def fetch(self, url_filter: Any = None) -> Iterator[HTML]:
        from fastwarc import ArchiveIterator, WarcRecordType

        report = self.report
        with opened(self.warc_path, self.limits, self.headers) as transfer:
            if transfer.status != 200:
                raise TransferError(f"HTTP {transfer.status}")
            stream = GzipMembers(transfer)
            try:
                total = 0  # records of any type (CC-NEWS: one per gzip member)
                response = 0
                for record in ArchiveIterator(stream, parse_http=False):
                    total += 1
                    if record.record_type != WarcRecordType.response:
                        continue
                    response += 1
                    if response <= self.skip:  # handed over by an earlier attempt
                        continue
                    report.records += 1
                    html = self._accept(record, url_filter)
                    if html is not None:
                        yield html
                if not stream.drained():
                    raise TransferError(f"WARC reading stopped after record {total} with data left")
                if stream.is_gzip and stream.members > total:  # fastwarc skipped records
                    raise TransferError(f"read {total} WARC records from {stream.members} gzip members")
            finally:
                report.bytes, report.members = transfer.received, stream.members

    def _accept(self, record: Any, url_filter: Any) -> HTML | None:
        if not record.verify_block_digest(consume=False):
            return self._drop("bad_digest", damaged=True)
        record.parse_http()
        if not record.record_date:
            return self._drop("no_warc_date")
        target_url = str(record.headers.get("WARC-Target-URI", ""))
        if url_filter is not None and url_filter(target_url):
            return self._drop("url_filter")
        host = urlparse(target_url).netloc
        publisher = self._publisher_mapping.get(host)
        if publisher is None:
            return self._drop(self._foreign(host))
        if publisher.url_filter is not None and publisher.url_filter(target_url):
            return self._drop("publisher_url_filter")
        content = self._decode(record)
        if content is None:
            return self._drop("undecodable")
        return HTML(requested_url=target_url, responded_url=target_url, content=content,
                    crawl_date=record.record_date,
                    source_info=WarcSourceInfo(publisher=publisher.name, warc_path=self.warc_path,
                                               warc_headers=dict(record.headers),
                                               http_headers=dict(record.http_headers or {})))

    def _foreign(self, host: str) -> str:
        twin = host[4:] if host.startswith("www.") else f"www.{host}"
        if twin in self._publisher_mapping:
            return "www_mismatch"
        return "unselected_publisher" if host in self.known_hosts else "unknown_domain"

    def _drop(self, reason: str, damaged: bool = False) -> None:
        self.report.drops[reason] += 1
        self.report.damaged += damaged
        return None

    @staticmethod
    def _decode(record: Any) -> str | None:
        """The page as fundus decodes it: the HTTP charset, else chardet's guess."""
        import chardet

        body: bytes = record.reader.read()
        try:
            return str(body, encoding=record.http_charset)
        except (UnicodeDecodeError, TypeError, LookupError):
            encoding = chardet.detect(body)["encoding"]
            if encoding is None:
                return None
            try:
                return str(body, encoding=encoding)
            except (UnicodeDecodeError, LookupError):
                return None


class WarcCrawler(CCNewsCrawler):
    """fundus' ``CCNewsCrawler`` over a given list of WARC URLs (in that order), read by
    :class:`WarcSource`; yields fundus articles and one :class:`FileReport` per file read
    to its end or given up (a file left when the caller stops reports nothing)."""

    def __init__(self, *publishers: Any, warc_urls: list[str], limits: Limits, retries: int, processes: int,
                 known_hosts: dict[str, str]) -> None:
        super().__init__(*publishers, processes=processes, retries=retries, disable_tqdm=True)
        self.warc_urls, self.limits, self.known_hosts = list(warc_urls), limits, known_hosts

    def _get_warc_paths(self) -> list[str]:  # fundus: fetches the listings itself, newest first
        return self.warc_urls

    def _fetch_articles(self, warc_path: str, publishers: tuple, error_handling: Any,
                        extraction_filter: Any = None, url_filter: Any = None, language_filter: Any = None,
                        bar: Any = None) -> Iterator[Any]:
        import requests

        report = FileReport(warc_path)
        while True:
            report.attempts += 1
            report.bytes = 0
            source = WarcSource(*publishers, warc_path=warc_path, limits=self.limits,
                                known_hosts=self.known_hosts, report=report, skip=report.records)
            try:
                yield from CCNewsScraper(source).scrape(error_handling, extraction_filter, url_filter,
                                                        language_filter)
                report.status = PARTIAL if report.damaged else COMPLETE
                report.reason = f"{report.damaged} damaged record(s) skipped" if report.damaged else ""
                break
            except Exception as exc:  # noqa: BLE001 (whatever breaks a file fails that file)
                lost = isinstance(exc, requests.ConnectionError) and not report.bytes
                report.status = LOST if lost else FAILED
                report.reason = str(exc) if isinstance(exc, TransferError) else f"{type(exc).__name__}: {exc}"
                if report.attempts > self.retries:
                    break
                pause = 30 * report.attempts + random.uniform(-2, 2)
                log.warning("could not read %s (%s); retrying in %.0fs", warc_path, report.reason, pause)
                time.sleep(pause)
        if bar is not None:
            bar.update()
        yield report
