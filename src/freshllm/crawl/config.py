"""``crawl`` params: :class:`CrawlConfig`, checked against the sources' declarations."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Literal
from urllib.parse import urlsplit

from ..config import WorldConfig
from .publishers import publisher_problems
from .sources import LOCAL, SOURCES

SourceName = Literal[tuple(SOURCES)]  # the registry's names: an unknown one is reported with them


@dataclass(frozen=True)
class CrawlConfig:
    source: SourceName = "ccnews"
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
    file_deadline_s: float = 3600.0  # per listing/WARC download, start to last byte
    min_bytes_per_s: float = 10_000.0  # per download, over each timeout_s (0: no minimum)
    archive_lag_days: int = 7  # read the archive this many days past published_to
    retries: int = 0  # retries per failed WARC file (sleeping 30 s x attempt, as fundus)
    max_failed_files: int = 2  # fail the stage when more WARC files than this fail
    local_per_month: int = 160  # articles per month in the generated archive
    seed: int = 0  # seed of the generated archive
    world: WorldConfig = WorldConfig()  # the top-level `world`: what the generated archive reports

    def validate(self) -> list[str]:
        errs: list[str] = []
        source = SOURCES[self.source]
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
        if first and source.first_day and first < source.first_day:
            errs.append(f"published_from: {source.label} starts on {source.first_day}, got {first}")
        if source.uses_server_address:
            errs += _check_server(self.server_address)
        if isinstance(self.publishers, list):
            if not self.publishers:
                errs.append("publishers: must list at least one country code or publisher")
            errs += [f"publishers[{i}]: {msg}" for i, msg in publisher_problems(self.publishers)]
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
        """Months "YYYY-MM" covering the publishing window."""
        return months_between(*self.window)


def months_between(first: date, last: date) -> list[str]:
    """The months "YYYY-MM" from ``first``'s to ``last``'s (dates or datetimes)."""
    months, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        months.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return months


def _check_server(address: Any) -> list[str]:
    if not isinstance(address, str) or address == LOCAL:
        return []
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return [f"server_address: expected '{LOCAL}' or an http(s) URL of a CC-NEWS mirror, got {address!r}"]
    return []


def _check_ints(cfg: CrawlConfig) -> list[str]:
    errs = []
    minimum = {"max_articles": 1, "min_chars": 0, "max_chars": 1, "min_articles": 0, "processes": 0,
               "retries": 0, "max_failed_files": 0, "local_per_month": 1, "archive_lag_days": 0}
    for key, low in minimum.items():
        value = getattr(cfg, key)
        if isinstance(value, int) and value < low:
            errs.append(f"{key}: must be >= {low}, got {value}")
    if isinstance(cfg.archive_lag_days, int) and cfg.archive_lag_days > 31:
        errs.append(f"archive_lag_days: must be <= 31, got {cfg.archive_lag_days}")
    if isinstance(cfg.max_per_publisher, int) and cfg.max_per_publisher < 1:
        errs.append(f"max_per_publisher: must be >= 1 or null, got {cfg.max_per_publisher}")
    for key in ("timeout_s", "file_deadline_s"):
        if isinstance(getattr(cfg, key), (int, float)) and not getattr(cfg, key) > 0:
            errs.append(f"{key}: must be > 0, got {getattr(cfg, key)}")
    if isinstance(cfg.min_bytes_per_s, (int, float)) and cfg.min_bytes_per_s < 0:
        errs.append(f"min_bytes_per_s: must be >= 0, got {cfg.min_bytes_per_s}")
    if all(isinstance(v, int) for v in (cfg.min_chars, cfg.max_chars)) and cfg.min_chars >= cfg.max_chars:
        errs.append(f"min_chars: must be < max_chars ({cfg.max_chars}), got {cfg.min_chars}")
    if all(isinstance(v, int) for v in (cfg.min_articles, cfg.max_articles)) and cfg.min_articles > cfg.max_articles:
        errs.append(f"min_articles: must be <= max_articles ({cfg.max_articles}), got {cfg.min_articles}")
    return errs
