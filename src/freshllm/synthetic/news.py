"""Deterministic synthetic news articles for the offline local profile.

Every article is assembled by code from invented places, people, organisations and
events using sentence templates: nothing is copied from anywhere. The same seed gives
the same articles. Most articles are English; ``language="de"`` gives German ones
(used for the German publisher of the local archive).

    >>> arts = generate_articles(10, date(2024, 1, 1), date(2024, 3, 31), seed=0)
    >>> 150 <= arts[0].word_count <= 600
    True
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

MIN_WORDS = 150
MAX_WORDS = 600

from .news_words import (  # the word tables
    _CLOSING_DE,
    _CLOSING_EN,
    _CO_HEADS,
    _CO_KINDS,
    _CO_TAILS,
    _DE_TOPICS,
    _EN_TOPICS,
    _FIRST,
    _GENERAL_DE,
    _GENERAL_EN,
    _LAST_HEADS,
    _LAST_TAILS,
    _MONTHS_DE,
    _MONTHS_EN,
    _ORG_KINDS_DE,
    _ORG_KINDS_EN,
    _PLACE_HEADS,
    _PLACE_TAILS,
    _RIVERS,
    _WEEKDAYS_DE,
    _WEEKDAYS_EN,
)


@dataclass(frozen=True)
class NewsArticle:
    """One synthetic article (content only; rendering to HTML is the archive's job)."""

    slug: str
    section: str
    title: str
    paragraphs: tuple[str, ...]
    author: str
    published: datetime  # timezone-aware, UTC
    language: str  # "en" | "de"

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs)

    @property
    def word_count(self) -> int:
        return len(self.text.split())


def _place(rng: random.Random) -> str:
    return rng.choice(_PLACE_HEADS) + rng.choice(_PLACE_TAILS)


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST_HEADS)}{rng.choice(_LAST_TAILS)}"


def _company(rng: random.Random) -> str:
    return f"{rng.choice(_CO_HEADS)}{rng.choice(_CO_TAILS)} {rng.choice(_CO_KINDS)}"


def _money(rng: random.Random, language: str) -> str:
    amount = rng.choice([rng.randint(2, 95) * 100_000, rng.randint(1, 40) * 1_000_000])
    if language == "de":
        return f"{amount / 1e6:.1f} Millionen Euro".replace(".", ",")
    return f"{amount / 1e6:.1f} million pounds" if rng.random() < 0.5 else f"${amount:,}"


def _cast(rng: random.Random, topic: dict[str, list[str]], language: str,
          published: datetime) -> dict[str, str]:
    """The fixed cast of one article: its places, people, organisation and subject."""
    place, place2 = _place(rng), _place(rng)
    while place2 == place:
        place2 = _place(rng)
    months = _MONTHS_DE if language == "de" else _MONTHS_EN
    weekdays = _WEEKDAYS_DE if language == "de" else _WEEKDAYS_EN
    org_kinds = _ORG_KINDS_DE if language == "de" else _ORG_KINDS_EN
    org = f"{rng.choice(org_kinds)} {place}" if language == "de" else f"{place} {rng.choice(org_kinds)}"
    return {
        "place": place,
        "place2": place2,
        "river": rng.choice(_RIVERS),
        "person": _person(rng),
        "person2": _person(rng),
        "role": rng.choice(topic["roles"]),
        "role2": rng.choice(topic["roles"]),
        "org": org,
        "company": _company(rng),
        "thing": rng.choice(topic["things"]),
        "weekday": weekdays[(published.weekday() - rng.randint(0, 2)) % 7],
        "month": months[(published.month + rng.randint(0, 4)) % 12],
        "month0": months[(published.month - rng.randint(2, 9)) % 12],
        "year0": str(published.year - rng.randint(2, 12)),
        "decade": str(rng.randint(196, 199) * 10),
    }


def _fill(rng: random.Random, template: str, cast: dict[str, str], language: str) -> str:
    """Fill one sentence: the cast stays fixed, numbers are drawn fresh."""
    numbers = {
        "num": str(rng.randint(40, 9000)),
        "num2": str(rng.randint(2, 30)),
        "num3": str(rng.randint(31, 120)),
        "pct": str(rng.randint(2, 64)),
        "pct2": f"{rng.randint(20, 120) / 10:.1f}",
        "money": _money(rng, language),
    }
    text = template.format(**cast, **numbers)
    return text[0].upper() + text[1:]


def _body(rng: random.Random, topic: dict[str, list[str]], cast: dict[str, str],
          language: str, target_words: int) -> list[str]:
    """Lead, then paragraphs of 2-4 sentences (quotes mixed in), then a closing line.

    No sentence template is used twice in one article; the article ends when the
    target length is reached or the templates run out.
    """
    general = _GENERAL_DE if language == "de" else _GENERAL_EN
    closing = _CLOSING_DE if language == "de" else _CLOSING_EN
    pool = list(topic["body"]) + rng.sample(general, k=len(general) // 2)
    rng.shuffle(pool)
    quotes = rng.sample(topic["quotes"], k=len(topic["quotes"]))
    paragraphs = [_fill(rng, rng.choice(topic["lead"]), cast, language)]
    words = len(paragraphs[0].split())
    while words < target_words and pool:
        sentences = [_fill(rng, pool.pop(), cast, language)
                     for _ in range(min(len(pool), rng.randint(2, 4)))]
        if quotes and rng.random() < 0.4:
            sentences.insert(rng.randint(0, len(sentences)), _fill(rng, quotes.pop(), cast, language))
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        words += len(paragraph.split())
    paragraphs.append(_fill(rng, rng.choice(closing), cast, language))
    return paragraphs


def _slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower().replace("ä", "ae").replace("ö", "oe")
                  .replace("ü", "ue").replace("ß", "ss")).strip("-")


def make_article(rng: random.Random, published: datetime, language: str = "en",
                 index: int = 0) -> NewsArticle:
    """One article published at ``published`` (UTC) drawn from ``rng``."""
    topics = _DE_TOPICS if language == "de" else _EN_TOPICS
    section = rng.choice(sorted(topics))
    topic = topics[section]
    cast = _cast(rng, topic, language, published)
    title = _fill(rng, rng.choice(topic["headlines"]), cast, language)
    target = rng.randint(MIN_WORDS + 30, MAX_WORDS - 60)
    paragraphs = _body(rng, topic, cast, language, target)
    return NewsArticle(
        slug=f"{_slugify(title)[:70].rstrip('-')}-{index:05d}",
        section=section,
        title=title,
        paragraphs=tuple(paragraphs),
        author=_person(rng),
        published=published,
        language=language,
    )


def _day_range(start: date, end: date) -> tuple[datetime, float]:
    begin = datetime.combine(start, time(0, 0), tzinfo=timezone.utc)
    stop = datetime.combine(end, time(23, 59), tzinfo=timezone.utc)
    return begin, (stop - begin).total_seconds()


def generate_articles(count: int, start: date, end: date, *, language: str = "en",
                      seed: int = 0, first_index: int = 0) -> list[NewsArticle]:
    """``count`` distinct articles with publishing dates spread over ``start``..``end``.

    Deterministic in (count, start, end, language, seed, first_index); sorted by date.
    """
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    rng = random.Random(f"news/{language}/{seed}/{start}/{end}/{first_index}")
    begin, span = _day_range(start, end)
    seen: set[str] = set()
    articles: list[NewsArticle] = []
    while len(articles) < count:
        published = begin + timedelta(seconds=int(rng.random() * span))
        article = make_article(rng, published, language, first_index + len(articles))
        digest = hashlib.sha1(article.text.encode()).hexdigest()
        if digest in seen:  # vanishingly rare; keeps every text unique
            continue
        seen.add(digest)
        articles.append(article)
    return sorted(articles, key=lambda a: (a.published, a.slug))
