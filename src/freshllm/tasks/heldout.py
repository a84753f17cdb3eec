"""Stage ``eval-text``: the two text sets every model's bits per byte is measured on.

* ``--fresh``: the crawled articles that no model trains on, chosen by THE held-out rule
  (:func:`freshllm.pack.is_heldout`, imported, never restated: url hash < ``pack.val_fraction``,
  after pack's own validation and duplicate removal, :func:`freshllm.pack.index_corpus`), in
  the order of their hash (a random order that no budget or seed changes), the first
  ``eval.text.docs``, each cut to ``eval.text.max_chars``: ``{"text", "url", "published"}`` lines.
* ``--world``: text the ancestor knew, generated from the top-level ``world``: d1-style text
  on a random stream the ancestor's pre-training did not draw
  (:func:`freshllm.synthetic.corpus.known_documents` for the news world,
  :func:`freshllm.synthetic.toyworld.known_documents` for the toy world). It is the known
  text wherever ``eval.text.known`` points at it (the local profiles); the paper profiles
  point ``eval.text.known`` at a JSONL of their own (text from before the models' cutoff).

Both are small (``eval.text.docs`` documents), so the eval stages depend on them rather than
on the whole crawl.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..common import setup_logging, user_errors, write_json
from ..config import WorldConfig, load_section
from ..pack import HELDOUT_RULE, CorpusError, PackConfig, index_corpus, read_records
from .text import TEXT_FIELD, TextConfig, TextDataError, cut, prepare, write_jsonl

log = logging.getLogger(__name__)


def fresh_rows(corpus: Path, pack_cfg: PackConfig, cfg: TextConfig) -> tuple[list[dict], dict]:
    """The held-out articles to score (see the module doc) and counts for the stage metrics."""
    if not corpus.is_file():
        raise FileNotFoundError(f"corpus not found: {corpus}")
    articles = index_corpus(corpus, pack_cfg.text_field, pack_cfg.val_fraction)
    val_idx, _ = articles.split()
    if len(val_idx) == 0:
        raise CorpusError(f"{corpus}: none of its {len(articles)} articles is held out "
                          f"(pack.val_fraction {pack_cfg.val_fraction}); the fresh-news bits per byte "
                          "needs some: set pack.val_fraction, e.g. 0.05")
    rows = []
    for rec in read_records(articles, val_idx):
        text = cut(rec[pack_cfg.text_field], cfg.max_chars)
        if text:
            rows.append({TEXT_FIELD: text, "url": rec.get("url"), "published": rec.get("published")})
        if len(rows) >= cfg.docs:
            break
    stats = {"rule": HELDOUT_RULE, "val_fraction": pack_cfg.val_fraction,
             "corpus_articles": int(len(articles)), "heldout_articles": int(len(val_idx))}
    return rows, stats


def world_texts(world: WorldConfig, cfg: TextConfig) -> list[str]:
    """Text the ancestor knew, generated from ``world`` (see the module doc)."""
    if world.kind == "toyworld":
        from ..synthetic import toyworld

        docs = toyworld.known_documents(toyworld.make_world(world.seed), cfg.docs)
    else:
        from ..synthetic.corpus import known_documents

        docs = known_documents(cfg.docs, world.seed)
    return prepare(docs, cfg.docs, cfg.max_chars)


def _summary(texts: list[str]) -> dict:
    return {"documents": len(texts), "chars": sum(len(t) for t in texts),
            "bytes": sum(len(t.encode("utf-8")) for t in texts)}


def run(corpus: Path, pack_cfg: PackConfig, cfg: TextConfig, world: WorldConfig,
        fresh_out: Path, world_out: Path) -> dict:
    rows, stats = fresh_rows(corpus, pack_cfg, cfg)
    known = world_texts(world, cfg)
    write_jsonl(fresh_out, rows)
    write_jsonl(world_out, [{TEXT_FIELD: t} for t in known])
    metrics = {"fresh": {**stats, **_summary([r[TEXT_FIELD] for r in rows])},
               "world": {"kind": world.kind, "seed": world.seed, **_summary(known)},
               "known_text": cfg.known, "docs": cfg.docs, "max_chars": cfg.max_chars}
    log.info("eval text: %d held-out fresh articles (of %d held out) -> %s, %d %s-world known documents -> %s",
             len(rows), stats["heldout_articles"], fresh_out, len(known), world.kind, world_out)
    return metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--corpus", required=True, type=Path, help="articles JSONL from the crawl stage")
    ap.add_argument("--fresh", required=True, type=Path, help="out: held-out fresh articles (JSONL)")
    ap.add_argument("--world", required=True, type=Path, help="out: known text generated from `world` (JSONL)")
    ap.add_argument("--metrics", required=True, type=Path)
    args = ap.parse_args(argv)
    setup_logging()
    with user_errors("eval-text", CorpusError, TextDataError):
        pack_cfg = load_section(PackConfig, "pack", args.params)
        cfg = load_section(TextConfig, "eval.text", args.params)
        world = load_section(WorldConfig, "world", args.params)
        metrics = run(args.corpus, pack_cfg, cfg, world, args.fresh, args.world)
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    main()
