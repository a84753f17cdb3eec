"""The one article type of the crawl, the filters a fundus article must pass, and dedup.

A fundus article becomes an :class:`Article` when its ``publishing_date`` lies in
``[published_from, published_to]`` (naive dates are taken as UTC, missing ones are
dropped) and it passes the quality filters (title, body length, language); it is kept
when it is neither a duplicate URL nor a duplicate text of an article already kept, and
its publisher is under ``max_per_publisher``. Every drop is counted by its reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from .config import CrawlConfig


@dataclass(frozen=True)
class Article:
    """One kept article: a line of ``data/articles.jsonl`` (keys in this order)."""

    url: str
    publisher: str
    title: str
    text: str
    published: str  # UTC, "YYYY-MM-DDTHH:MM:SSZ"
    language: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str | bytes) -> Article:
        return cls(**json.loads(line))


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


def extract(article: Any, cfg: CrawlConfig) -> tuple[Article | None, str | None]:
    """(Article, None) for a usable fundus article, else (None, drop reason)."""
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
    return Article(
        url=remove_query_parameters_from_url(article.html.requested_url),
        publisher=article.publisher,
        title=title,
        text=text,
        published=published.strftime("%Y-%m-%dT%H:%M:%SZ"),
        language=language,
    ), None


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

    def admit(self, article: Article) -> str | None:
        """Keep ``article`` (returns None) or say why not."""
        reason = self.duplicate(article)
        if reason is None and self.max_per_publisher and \
                self.per_publisher[article.publisher] >= self.max_per_publisher:
            reason = "publisher_cap"
        if reason is None:
            self.add(article)
        return reason

    def duplicate(self, article: Article) -> str | None:
        """Why ``article`` duplicates one kept already (None if it does not)."""
        if article.url in self.urls:
            return "duplicate_url"
        if text_key(article.text) in self.texts:
            return "duplicate_text"
        return None

    def add(self, article: Article) -> None:
        self.urls.add(article.url)
        self.texts.add(text_key(article.text))
        self.per_publisher[article.publisher] += 1
        self.total += 1


def keep_articles(articles: Iterator[Any], cfg: CrawlConfig, selection: Selection, quota: int,
                  sink: Callable[[Article], Any], bar: Any) -> tuple[int, Counter]:
    """Filter fundus articles into ``selection`` and ``sink`` until ``quota`` are kept;
    returns (kept, drops by reason)."""
    kept, drops = 0, Counter()
    if quota <= 0:
        return kept, drops
    with contextlib.closing(articles):
        for fundus_article in articles:
            article, reason = extract(fundus_article, cfg)
            reason = reason or selection.admit(article)
            if reason:
                drops[reason] += 1
                continue
            sink(article)
            kept += 1
            bar.update(1)
            if kept >= quota:
                break
    return kept, drops
