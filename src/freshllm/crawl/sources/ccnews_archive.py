"""The CC-NEWS archive layout: which listings and WARC files each month of the window reads.

A month's listing is ``crawl-data/CC-NEWS/YYYY/MM/warc.paths.gz`` (a gzip list of paths);
each WARC path carries the archive time its file starts at (``CC-NEWS-YYYYMMDDHHMMSS-``).
A :class:`Unit` is one publishing month of the window; the last one reads the archive
on to ``archive_lag_days`` past ``published_to``. A listing needed only for that lag may
be missing (past the archive's end: skipped); any other missing listing is an error.
"""

from __future__ import annotations

import gzip
import logging
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import TYPE_CHECKING

from ..guards import CrawlError
from ..transfer import Limits, TransferError, opened

if TYPE_CHECKING:
    from ..config import CrawlConfig

log = logging.getLogger(__name__)

PREFLIGHT_MAX_S = 25.0
STAMP = re.compile(r"CC-NEWS-(\d{14})-")
NO_NETWORK_HINT = ("no network: use the local profile (crawl.server_address: local) "
                   "or set crawl.server_address to a reachable CC-NEWS mirror")
SLOW_HINT = ("the server at crawl.server_address is too slow or broken "
             "(limits: crawl.timeout_s, crawl.file_deadline_s, crawl.min_bytes_per_s)")


def listing_url(server: str, month: str) -> str:
    return f"{server}crawl-data/CC-NEWS/{month.replace('-', '/')}/warc.paths.gz"


def month_range(month: str) -> tuple[datetime, datetime]:
    """Naive [first second, last second] of an archive month, as CC-NEWS stamps read (UTC)."""
    start = datetime.strptime(month, "%Y-%m")
    end = (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(seconds=1)
    return start, end


@dataclass(frozen=True)
class Unit:
    """One publishing month: the archive span it reads and the days its quota is spread over."""

    month: str  # "YYYY-MM": the part's name
    start: datetime  # naive UTC archive times, compared with the WARC paths' stamps
    end: datetime
    listings: tuple[str, ...]  # archive months to list; past the first only for the lag
    days: tuple[str, ...]  # "YYYY-MM-DD" of the window in this month


def units(cfg: CrawlConfig) -> list[Unit]:
    from ..config import months_between  # ..config imports the sources

    first, last = (d.date() for d in cfg.window)
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0) - timedelta(seconds=1)
    out = []
    for i, month in enumerate(cfg.months):
        start, end = month_range(month)
        days = [start.date() + timedelta(days=k) for k in range((end.date() - start.date()).days + 1)]
        if i == len(cfg.months) - 1:
            end = datetime.combine(last + timedelta(days=cfg.archive_lag_days), time(23, 59, 59))
        end = min(end, now)
        out.append(Unit(month, start, end, tuple(months_between(start, end)),
                        tuple(d.isoformat() for d in days if first <= d <= last)))
    return out


class Listings:
    """The listings of one server, each fetched once (within ``limits``)."""

    def __init__(self, server: str, limits: Limits) -> None:
        self.server, self.limits = server, limits
        self._paths: dict[str, list[str] | None] = {}

    def preflight(self, month: str, limits: Limits) -> None:
        """Fetch ``month``'s listing first, within tighter limits: a dead server fails fast."""
        self._paths[month] = self._fetch(month, limits, optional=False)

    def warc_urls(self, unit: Unit) -> tuple[list[str], list[str]]:
        """(sorted URLs of the WARC files in the unit's archive span, lag months not in the archive)."""
        urls, missing = [], []
        for k, month in enumerate(unit.listings):
            if month not in self._paths:
                self._paths[month] = self._fetch(month, self.limits, optional=k > 0)
            paths = self._paths[month]
            if paths is None:
                missing.append(month)
                continue
            lo, hi = (t.strftime("%Y%m%d%H%M%S") for t in (unit.start, unit.end))
            for n, path in enumerate(paths, 1):
                stamp = STAMP.search(path)
                if stamp is None:
                    raise CrawlError(f"{listing_url(self.server, month)}: line {n}: not a CC-NEWS WARC path: "
                                     f"{path[:200]!r}")
                if lo <= stamp.group(1) <= hi:
                    urls.append(self.server + path)
        return sorted(urls), missing

    def _fetch(self, month: str, limits: Limits, optional: bool) -> list[str] | None:
        import requests

        url = listing_url(self.server, month)
        try:
            with opened(url, limits) as transfer:
                if optional and transfer.status in (403, 404):
                    log.info("no CC-NEWS listing for %s (HTTP %d): the archive ends before it", month,
                             transfer.status)
                    return None
                if transfer.status == 404:
                    raise CrawlError(f"CC-NEWS listing for {month} not found: {url} (HTTP 404); "
                                     f"check crawl.published_from/published_to and crawl.server_address")
                if transfer.status != 200:
                    raise CrawlError(f"cannot fetch {url}: HTTP {transfer.status}")
                data = transfer.read_all()
        except requests.RequestException as exc:
            raise CrawlError(f"cannot fetch {url} ({type(exc).__name__} within {limits.timeout_s:g}s): "
                             f"{NO_NETWORK_HINT}") from exc
        except TransferError as exc:
            raise CrawlError(f"cannot fetch {url} ({exc}): "
                             f"{NO_NETWORK_HINT if exc.no_response else SLOW_HINT}") from exc
        try:
            return gzip.decompress(data).decode("utf-8").split()
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise CrawlError(f"{url} is not a gzip list of WARC paths ({exc}); "
                             f"is crawl.server_address a CC-NEWS mirror?") from exc
