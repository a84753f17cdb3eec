"""Spreading a month's quota over its publishing days.

fundus reads a CC-NEWS month's WARC files newest first, so keeping the first articles
read keeps the month's last days. Instead every article of the month that passes the
filters and is no duplicate is spooled to disk (only its day and offset stay in memory)
and the quota is then picked round-robin over the publishing days: one article per day
and round, the days of each round in a seeded order, so days differ by at most one
article unless a day runs out. Reading can stop once each of the month's days has its
share (:meth:`DaySpread.full`); what the quota leaves is counted as ``over_quota``.
"""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from pathlib import Path
from typing import Any, Callable, Sequence

from .articles import Article, Selection


class DaySpread:
    """The candidates of one month (``with`` block: the spool file exists only inside it)."""

    def __init__(self, spool: Path, quota: int, days: Sequence[str], selection: Selection, seed: str) -> None:
        self.spool, self.quota, self.days = spool, quota, list(days)
        self.selection, self.seed = selection, seed
        self.share = math.ceil(quota / max(len(self.days), 1))
        self.pending = Selection(None)  # spooled, not kept yet: for dedup
        self.offsets: dict[str, list[int]] = {}
        self._fh: Any = None

    def __enter__(self) -> DaySpread:
        self._fh = open(self.spool, "w+b")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._fh.close()
        self.spool.unlink(missing_ok=True)

    def offer(self, article: Article) -> str | None:
        """Spool ``article`` (returns None) or say why not (a duplicate)."""
        reason = self.selection.duplicate(article) or self.pending.duplicate(article)
        if reason is None:
            self.pending.add(article)
            self._fh.seek(0, 2)
            self.offsets.setdefault(article.published[:10], []).append(self._fh.tell())
            self._fh.write(article.to_json().encode("utf-8") + b"\n")
        return reason

    def full(self) -> bool:
        """Each day of the month has its share of the quota."""
        return all(len(self.offsets.get(day, ())) >= self.share for day in self.days)

    def pick(self, sink: Callable[[Article], Any]) -> tuple[int, Counter]:
        """Keep up to ``quota`` articles round-robin over the days (into the selection and
        ``sink``); returns (kept, drops: publisher caps and ``over_quota``)."""
        rng = random.Random(self.seed)
        queues = {day: deque(self.offsets[day]) for day in sorted(self.offsets)}
        kept, drops = 0, Counter()
        while kept < self.quota and queues:
            days = list(queues)
            rng.shuffle(days)
            for day in days:
                if kept >= self.quota:
                    break
                queue = queues[day]
                while queue:
                    article = self._read(queue.popleft())
                    reason = self.selection.admit(article)
                    if reason is None:
                        sink(article)
                        kept += 1
                        break
                    drops[reason] += 1
                if not queue:
                    del queues[day]
        if left := sum(map(len, queues.values())):
            drops["over_quota"] += left
        return kept, drops

    def _read(self, offset: int) -> Article:
        self._fh.seek(offset)
        return Article.from_json(self._fh.readline())
