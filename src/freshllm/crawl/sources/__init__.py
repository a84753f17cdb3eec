"""The crawl sources by name: ``crawl.source`` is one of the keys of :data:`SOURCES`.

A new source is one module in this package that defines ``SOURCE = Source(...)``
(:class:`~freshllm.crawl.sources.base.Source`: how it crawls, what it reads of the
config), plus its line in ``SOURCES`` below (and its name in the import).
"""

from __future__ import annotations

from . import ccnews, web
from .base import LOCAL, Source

SOURCES: dict[str, Source] = {
    "ccnews": ccnews.SOURCE,
    "web": web.SOURCE,
}

__all__ = ["LOCAL", "SOURCES", "Source"]
