"""The work directory (one part per finished month, for resuming) and the corpus writer.

Each finished month is saved as a part file in a work directory, so an interrupted
crawl resumes at the month it stopped in. The output is sorted by (published, url):
the same params and archive give a byte-identical file (with ``processes: 0``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ..common import atomic_file, write_json
from .articles import Article
from .guards import CrawlError

if TYPE_CHECKING:
    from .config import CrawlConfig

log = logging.getLogger(__name__)

# keys that do not change which articles are kept: changing them keeps finished months
OPERATIONAL_KEYS = ("timeout_s", "file_deadline_s", "min_bytes_per_s", "retries", "max_failed_files",
                    "min_articles")


class Parts:
    """Finished months under ``root``: ``part-M.jsonl`` (kept articles, streamed as crawled)
    and ``part-M.json`` (the month's counts; written last, it marks the month done).
    Everything is discarded when the params that select articles change."""

    def __init__(self, root: Path, cfg: CrawlConfig) -> None:
        self.root = root
        fingerprint = {k: v for k, v in asdict(cfg).items() if k not in OPERATIONAL_KEYS}
        stamp = root / "params.json"
        if root.exists() and (not stamp.exists() or json.loads(stamp.read_text()) != fingerprint):
            log.info("crawl params changed: discarding finished months in %s", root)
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        if not stamp.exists():
            write_json(stamp, fingerprint)

    def articles_path(self, month: str) -> Path:
        return self.root / f"part-{month}.jsonl"

    def stats(self, month: str) -> dict | None:
        path = self.root / f"part-{month}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def articles(self, month: str) -> Iterator[Article]:
        with open(self.articles_path(month), encoding="utf-8") as fh:
            yield from map(Article.from_json, fh)

    def spool_path(self, month: str) -> Path:
        """Where a month's candidates wait while it is crawled (see :mod:`.spread`)."""
        return self.root / f"part-{month}.spool.tmp"

    @contextlib.contextmanager
    def writing(self, month: str) -> Iterator[Callable[[Article], object]]:
        """Yields ``sink(article)``; the month's article file appears only if the block succeeds."""
        tmp = self.root / f"part-{month}.jsonl.tmp"
        try:
            with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
                yield lambda article: fh.write(article.to_json() + "\n")
            os.replace(tmp, self.articles_path(month))
        finally:
            tmp.unlink(missing_ok=True)

    def finish(self, stats: dict) -> None:
        write_json(self.root / f"part-{stats['month']}.json", stats)

    def finished(self) -> list[dict]:
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.root.glob("part-*.json"))]


WARC_COUNTS = ("complete", "partial", "failed", "records", "damaged_records", "gzip_members", "bytes")


def part_stats(month: str, quota: int, kept: int, drops: Counter, warc_files: int = 0,
               reports: Iterable[Any] = (), missing_listings: Iterable[str] = ()) -> dict:
    """The counts of one finished part, as :meth:`Parts.finish` saves them; ``reports``: the
    :class:`~.sources.warc.FileReport` of each WARC file read to its end or given up."""
    reports = list(reports)
    warc = dict.fromkeys(WARC_COUNTS, 0)
    for r in reports:
        warc[r.status if r.status in warc else "failed"] += 1
        warc["records"] += r.records
        warc["damaged_records"] += r.damaged
        warc["gzip_members"] += r.members
        warc["bytes"] += r.bytes
    warc["unfinished"] = max(0, warc_files - len(reports))  # left when the month's quota was met
    return {"month": month, "quota": quota, "articles": kept, "warc_files": warc_files,
            "failed_files": [r.line() for r in reports if r.status not in ("complete", "partial")],
            "partial_files": [r.line() for r in reports if r.status == "partial"],
            "missing_listings": list(missing_listings), "warc": warc, "drops": dict(sorted(drops.items()))}


def day_spread(per_day: Counter, cfg: CrawlConfig) -> dict:
    """How evenly the articles spread over the window's days (empty days included)."""
    first, last = (d.date() for d in cfg.window)
    counts = [per_day.get((first + timedelta(days=i)).isoformat(), 0) for i in range((last - first).days + 1)]
    mean = sum(counts) / len(counts)
    std = (sum((c - mean) ** 2 for c in counts) / len(counts)) ** 0.5
    return {"days": len(counts), "empty_days": counts.count(0), "min": min(counts), "max": max(counts),
            "cv": round(std / mean, 3) if mean else None}


def write_corpus(parts: Parts, cfg: CrawlConfig, out: Path, allow_empty: bool = False) -> dict:
    """Write every kept article to ``out`` sorted by (published, url); returns the stage metrics.

    Only sort keys and file offsets are held in memory, never the texts.
    """
    months = parts.finished()
    keys: list[tuple[str, str, int, int]] = []
    per: dict[str, Counter] = {"publisher": Counter(), "month": Counter(), "day": Counter(),
                               "language": Counter()}
    chars = 0
    for i, stats in enumerate(months):
        with open(parts.articles_path(stats["month"]), "rb") as fh:
            offset = 0
            for line in fh:
                article = Article.from_json(line)
                keys.append((article.published, article.url, i, offset))
                offset += len(line)
                chars += len(article.text)
                per["publisher"][article.publisher] += 1
                per["month"][article.published[:7]] += 1
                per["day"][article.published[:10]] += 1
                per["language"][article.language] += 1
    drops = sum((Counter(m["drops"]) for m in months), Counter())
    metrics = {
        "articles": len(keys), "chars": chars, "tokens_estimate": chars // 4,
        **{f"per_{name}": dict(sorted(counts.items())) for name, counts in per.items()},
        "drops": dict(sorted(drops.items())),
        "day_spread": day_spread(per["day"], cfg),
        "warc_files": sum(m["warc_files"] for m in months),
        "failed_files": sum(len(m["failed_files"]) for m in months),
        "partial_files": sum(len(m.get("partial_files", ())) for m in months),
        "warc": {key: sum(m.get("warc", {}).get(key, 0) for m in months) for key in (*WARC_COUNTS, "unfinished")},
        "missing_listings": sorted({x for m in months for x in m.get("missing_listings", ())}),
        "max_articles": cfg.max_articles,
    }
    if not keys and allow_empty and not metrics["failed_files"]:
        log.warning("no article in the window (every file read; none failed): writing an empty corpus")
        metrics["empty"] = True
    elif len(keys) < max(cfg.min_articles, 1):
        raise CrawlError(f"only {len(keys)} articles kept (crawl.min_articles: {cfg.min_articles}); "
                         f"drops: {metrics['drops'] or 'none'}. Widen crawl.published_from/published_to or "
                         f"crawl.publishers/languages, or check crawl.server_address")
    keys.sort()
    with contextlib.ExitStack() as stack, atomic_file(out, "wb") as dst:
        sources = [stack.enter_context(open(parts.articles_path(m["month"]), "rb")) for m in months]
        for _, _, i, offset in keys:
            sources[i].seek(offset)
            dst.write(sources[i].readline())
    return metrics


def default_work_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.parts"


def remove_if_nothing_finished(work_dir: Path) -> None:
    if work_dir.is_dir() and not any(work_dir.glob("part-*.json")):
        shutil.rmtree(work_dir, ignore_errors=True)
