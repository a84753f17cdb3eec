"""What a crawl source is: what it reads of the config, and how it crawls into the parts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ..config import CrawlConfig
    from ..guards import Interrupts
    from ..store import Parts

# ``crawl.server_address: local``: a generated archive, served on loopback for the stage
LOCAL = "local"


@dataclass(frozen=True)
class Source:
    """A source of ``crawl.source``, in :data:`freshllm.crawl.sources.SOURCES`.

    ``crawl(cfg, parts, interrupts)`` crawls every unit not finished in ``parts`` yet:
    each kept :class:`~freshllm.crawl.articles.Article` goes to a part (``parts.writing``),
    whose counts are saved last (``parts.finish``); it raises ``CrawlError`` when it
    cannot go on and checks ``interrupts`` after fundus returns.
    """

    crawl: Callable[[CrawlConfig, Parts, Interrupts], None]
    label: str  # in messages, e.g. "CC-NEWS"
    uses_server_address: bool = False  # reads crawl.server_address: LOCAL or an http(s) mirror URL
    first_day: date | None = None  # the earliest publishing date it can have
