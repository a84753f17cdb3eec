"""Stage ``crawl``: fresh news articles from CC-NEWS (or live sites) with fundus, as JSONL.

The command line (``python -m freshllm.crawl``) and :func:`crawl`, which runs the
configured source; the stage is described in :mod:`freshllm.crawl`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from ..common import setup_logging, write_json
from ..config import ConfigError, load_section
from .config import CrawlConfig
from .guards import CrawlError, Interrupts, quiet_fundus
from .sources import SOURCES
from .store import Parts, default_work_dir, remove_if_nothing_finished, write_corpus

log = logging.getLogger(__name__)


def crawl(cfg: CrawlConfig, work_dir: Path, interrupts: Interrupts, verbose: bool = False) -> Parts:
    """Crawl with the source ``cfg.source`` every unit not finished in ``work_dir`` yet;
    returns the finished parts."""
    parts = Parts(work_dir, cfg)
    with quiet_fundus(verbose):
        SOURCES[cfg.source].crawl(cfg, parts, interrupts)
    return parts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m freshllm.crawl", description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", type=Path, default=Path("data/articles.jsonl"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics/crawl.json"))
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="finished months, for resuming (default: .<out name>.parts next to --out)")
    ap.add_argument("--published-from", default=None,
                    help="publishing window start YYYY-MM-DD (default: crawl.published_from; a chained "
                         "update's window, from dvc.yaml)")
    ap.add_argument("--published-to", default=None, help="publishing window end (default: crawl.published_to)")
    ap.add_argument("--allow-empty", action="store_true",
                    help="a window with no article at all (every file read: none failed) writes an empty corpus "
                         "(metrics: empty) instead of failing: a chained update's month (the chain keeps its model)")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logs, fundus' included")
    args = ap.parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    work_dir = args.work_dir or default_work_dir(args.out)
    overrides = {k: v for k, v in (("published_from", args.published_from),
                                   ("published_to", args.published_to)) if v is not None}
    try:
        cfg = load_section(CrawlConfig, "crawl", args.params, overrides)
        with Interrupts().installed() as interrupts:
            parts = crawl(cfg, work_dir, interrupts, args.verbose)
            metrics = write_corpus(parts, cfg, args.out, allow_empty=args.allow_empty)
    except (ConfigError, FileNotFoundError, CrawlError) as exc:
        log.error("crawl failed: %s", exc)
        remove_if_nothing_finished(work_dir)
        return 1
    except KeyboardInterrupt:
        log.error("crawl interrupted: finished months are kept in %s; rerun to resume", work_dir)
        remove_if_nothing_finished(work_dir)
        return 130
    write_json(args.metrics, metrics)
    shutil.rmtree(work_dir, ignore_errors=True)
    log.info("wrote %d articles (~%d tokens) to %s: %s", metrics["articles"], metrics["tokens_estimate"],
             args.out, metrics["per_publisher"])
    return 0
