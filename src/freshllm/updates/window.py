"""Stage ``u-window@<window>``: one update's data, from its crawl and its parent's state.

* ``--dedup-out``: ``corpus.jsonl``, the window's articles that no earlier window (nor an
  earlier line of this one) has, by url or by text (:func:`freshllm.pack.text_digest`, the
  rule pack's own duplicate removal uses); ``seen.json``, the url and text keys of every
  window so far (the parent's plus this one's: the next window deduplicates against it, so
  each update depends on its parent alone); ``history.jsonl``, every earlier and this
  window's articles that are not held out (the next window's replay pool).
* ``--heldout-out``: the parent's held-out news plus this window's, each line tagged with its
  ``window``: THE held-out rule (:func:`freshllm.pack.is_heldout`, via
  :func:`freshllm.tasks.heldout.fresh_rows`), split in two by :func:`is_validation` (a salted
  hash of the url, independent of the held-out rule's: stable, about half each), each line
  tagged ``split: validation | test``, at most ``eval.text.docs`` per window and half. The eval
  stages score every model on the test half, per window (``freshllm.eval.windows``); the
  promotion gate (:mod:`.gate`) decides on the validation half.
* ``--packed-out``: the window's corpus packed to ``chain.tokens`` (:func:`freshllm.pack.pack_corpus`;
  pack holds the same articles out); ``--replay-out``: the parent's history packed to
  ``chain.replay_tokens`` (as much as there is), the pool ``cpt --replay-data`` draws
  ``chain.cpt.train.replay_fraction`` of each micro-batch from; empty for the first update.

Re-rooted chains (``chain.cpt_from: ancestor``): every update trains the ancestor again, on
every window so far, so ``--packed-out`` is the union: the parent's packed data (``--prev-packed``,
the union of the earlier windows; the ancestor node's is empty) followed by this window's own
packed data, each window's rows exactly as its own update packed them (:func:`union_pack`;
none of them held out). ``info.json``'s ``union`` lists the rows per window. In the default
mode (``previous``) ``--prev-packed`` is not read and every output is as before.

The stage checks its command line against the params' chain (``--window`` is an update whose
parent is ``--prev``), but its outputs depend on its own window and its parent's outputs only:
appending a window re-runs nothing of the earlier ones.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

from ..common import atomic_dir, atomic_file, jsonl_records, write_json
from ..io.packed import NO_NEW_ARTICLES
from ..pack import CorpusError, PackConfig, is_heldout, pack_corpus, text_digest
from ..tasks.heldout import fresh_rows
from ..tasks.text import SPLIT_FIELD, WINDOW_FIELD, TextConfig
from .config import ChainConfig, ChainError, Update

log = logging.getLogger(__name__)

SEEN, CORPUS, HISTORY = "seen.json", "corpus.jsonl", "history.jsonl"


def url_key(url: object) -> str | None:
    return text_digest("url:" + url.strip()).hex() if isinstance(url, str) and url.strip() else None


VALIDATION_RULE = ("validation iff blake2b-64(url, or the text where there is no url; person "
                   "freshllm-valsplt) / 2^64 < 0.5, among the held-out articles")


def is_validation(url: object, text: str) -> bool:
    """The held-out articles' split (see ``VALIDATION_RULE``): True for the promotion gate's
    half, False for the eval's (test) half. Deterministic in the url (text) alone and
    independent of :func:`freshllm.pack.heldout_key`, so the halves do not depend on
    ``pack.val_fraction`` either."""
    import hashlib

    key = (b"url:" + url.strip().encode("utf-8") if isinstance(url, str) and url.strip()
           else b"text:" + text.encode("utf-8"))
    digest = hashlib.blake2b(key, digest_size=8, person=b"freshllm-valsplt").digest()
    return int.from_bytes(digest, "big") / 2.0**64 < 0.5


def split_heldout(rows: list[dict], docs: int, where: str) -> list[dict]:
    """``rows`` (held-out articles, each with ``text`` and ``url``) tagged with their split,
    at most ``docs`` of each half in their order. A half may be empty (a window with few
    articles): that window's bits per byte is then left out of the gate's checks (validation)
    or of the eval's per-window scores (test), and the window's metrics say so."""
    halves: dict[str, list[dict]] = {"validation": [], "test": []}
    for row in rows:
        half = halves["validation" if is_validation(row.get("url"), row["text"]) else "test"]
        if len(half) < docs:
            half.append(row)
    empty = [k for k, v in halves.items() if not v]
    if empty:
        log.warning("%s: none of its %d held-out articles falls in the %s half (by url hash): its bits per "
                    "byte there is left out (a larger pack.val_fraction holds out more)", where, len(rows),
                    " and the ".join(empty))
    return [{**row, SPLIT_FIELD: split} for row in rows for split in ("validation", "test")
            if any(r is row for r in halves[split])]


def read_seen(dedup_dir: Path) -> tuple[set[str], set[str]]:
    path = Path(dedup_dir) / SEEN
    if not path.is_file():
        raise FileNotFoundError(f"the parent's dedup index is missing: {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    return set(data["urls"]), set(data["texts"])


def dedup(articles: Path, seen_urls: set[str], seen_texts: set[str], field: str,
          out: Path) -> dict:
    """Write the lines of ``articles`` new by url and text to ``out``; ``seen_*`` gain their
    keys. Returns the counts."""
    counts = {"articles": 0, "kept": 0, "earlier_url": 0, "earlier_text": 0, "repeated": 0}
    earlier_urls, earlier_texts = set(seen_urls), set(seen_texts)
    with atomic_file(out, "w", encoding="utf-8") as fh:
        for lineno, _, rec in jsonl_records(articles, CorpusError):
            if not isinstance(rec, dict) or not isinstance(rec.get(field), str):
                raise CorpusError(f"{articles}, line {lineno}: no string {field!r} field")
            counts["articles"] += 1
            u, t = url_key(rec.get("url")), text_digest(rec[field]).hex()
            if (u is not None and u in earlier_urls) or t in earlier_texts:
                counts["earlier_url" if u is not None and u in earlier_urls else "earlier_text"] += 1
                continue
            if (u is not None and u in seen_urls) or t in seen_texts:
                counts["repeated"] += 1  # within this window (pack would drop a repeated text too)
                continue
            if u is not None:
                seen_urls.add(u)
            seen_texts.add(t)
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            counts["kept"] += 1
    return counts


def _empty_pack(out: Path, seq_len: int, extra: dict | None = None) -> None:
    from ..io.packed import PackWriter

    with atomic_dir(out) as tmp:
        PackWriter(tmp / "train", seq_len, max_rows=0).close()
        (tmp / "info.json").write_text(json.dumps({"empty": True, "seq_len": seq_len, **(extra or {})}) + "\n",
                                       encoding="utf-8")


def _read_info(packed: Path) -> dict:
    path = Path(packed) / "info.json"
    if not path.is_file():
        raise FileNotFoundError(f"not a packed directory (no info.json): {packed}")
    return json.loads(path.read_text(encoding="utf-8"))


def union_pack(prev_packed: Path, own: Path, window: str, out: Path) -> dict:
    """Fill the (new) directory ``out``: ``train`` = the rows of ``prev_packed/train`` (the union
    of the earlier windows, or an empty pack) then those of ``own/train`` (this window's own
    packed data); ``val``, ``tokenizer`` and ``info.json`` from ``own``, the info with ``union``:
    ``{"windows": {window: sequences}, "sequences": total}``. Returns ``union``."""
    from ..io.packed import ARRAYS, PackedData

    prev_info = _read_info(prev_packed)
    if prev_info.get("empty"):
        before: dict[str, int] = {}
    elif "union" in prev_info:
        before = dict(prev_info["union"]["windows"])
    else:
        raise CorpusError(f"{prev_packed}: is one window's packed data, not the union of the earlier windows "
                          f"(was it made with chain.cpt_from: previous? every window re-runs when it changes)")
    prev, mine = PackedData.open(Path(prev_packed) / "train"), PackedData.open(Path(own) / "train")
    if len(prev) and prev.seq_len != mine.seq_len:
        raise CorpusError(f"{prev_packed}: sequences of {prev.seq_len} tokens, this window's have {mine.seq_len} "
                          f"(pack.seq_len changed without re-running the earlier windows)")
    if sum(before.values()) != len(prev):
        raise CorpusError(f"{prev_packed}: info.json lists {sum(before.values())} sequences, train holds {len(prev)}")
    train = Path(out) / "train"
    train.mkdir(parents=True)
    for key in ARRAYS:
        with open(train / f"{key}.bin", "wb") as dst:
            for src_dir in (Path(prev_packed) / "train", Path(own) / "train"):
                with open(src_dir / f"{key}.bin", "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
    metas = [json.loads((d / "train" / "meta.json").read_text(encoding="utf-8")) for d in (Path(prev_packed), Path(own))]
    meta = {**metas[1], "n_seq": len(prev) + len(mine),
            **{k: sum(int(m.get(k, 0)) for m in metas) for k in ("documents", "doc_tokens", "pad_tokens")}}
    (train / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    for name in ("val", "tokenizer"):
        if (Path(own) / name).exists():
            shutil.copytree(Path(own) / name, Path(out) / name)
    union = {"windows": {**before, window: len(mine)}, "sequences": len(prev) + len(mine),
             "tokens": (len(prev) + len(mine)) * mine.seq_len}
    info = {**_read_info(own), "union": union}
    (Path(out) / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
    return union


def crawl_losses(crawl_metrics: Path | None) -> dict | None:
    """What the window's crawl lost (its metrics): ``lost_files``, the files that could not be
    read (failed); files read to their end past damaged records (partial), months with no
    listing, and the articles dropped and why, as counted."""
    if crawl_metrics is None:
        return None
    path = Path(crawl_metrics)
    if not path.is_file():
        raise FileNotFoundError(f"the window's crawl metrics are missing: {path}")
    m = json.loads(path.read_text(encoding="utf-8"))
    failed, partial = int(m.get("failed_files") or 0), int(m.get("partial_files") or 0)
    return {"lost_files": failed, "failed_files": failed, "partial_files": partial,
            "missing_listings": list(m.get("missing_listings") or []), "drops": dict(m.get("drops") or {}),
            "articles": m.get("articles"), "source": str(path)}


def empty_window(update: Update, chain_cfg: ChainConfig, pack_cfg: PackConfig, prev_dedup: Path,
                 prev_heldout: Path, prev_packed: Path | None, dedup_out: Path, heldout_out: Path,
                 packed_out: Path, replay_out: Path, crawl: dict | None, n_before: tuple[int, int]) -> dict:
    """A window whose crawl found no article: the parent's dedup index, history and held-out news
    carried over unchanged, packed data marked ``no_new_articles`` (empty; re-rooted: the
    parent's union, so the next window's union still holds every earlier one) and an empty
    replay pool. The chain's next stages see the mark: no cpt (``updates.start`` starts from, and
    cpt copies, the parent's model), and the gate keeps the incumbent, saying why."""
    reason = f"window {update.window}: the crawl found no article ({update.published_from} .. {update.published_to})"
    log.warning("%s: no cpt, the incumbent stays", reason)
    with atomic_dir(dedup_out) as tmp:
        for name in (SEEN, HISTORY):
            shutil.copyfile(Path(prev_dedup) / name, tmp / name)
        (tmp / CORPUS).write_text("", encoding="utf-8")
    if not Path(prev_heldout).is_file():
        raise FileNotFoundError(f"the parent's held-out news is missing: {prev_heldout}")
    with atomic_file(heldout_out, "wb") as fh, open(prev_heldout, "rb") as src:
        shutil.copyfileobj(src, fh)
    if chain_cfg.cpt_from == "ancestor" and prev_packed is not None and not _read_info(prev_packed).get("empty"):
        with atomic_dir(packed_out) as tmp:
            shutil.copytree(prev_packed, tmp, dirs_exist_ok=True)
            info = {**_read_info(tmp), NO_NEW_ARTICLES: True, "window": update.window}
            (tmp / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
    else:
        _empty_pack(packed_out, pack_cfg.seq_len, {NO_NEW_ARTICLES: True, "window": update.window})
    _empty_pack(replay_out, pack_cfg.seq_len)
    return {"window": update.window, "prev": update.prev, "published_from": update.published_from,
            "published_to": update.published_to, NO_NEW_ARTICLES: True, "reason": reason,
            "dedup": {"articles": 0, "kept": 0, "earlier_url": 0, "earlier_text": 0, "repeated": 0},
            "seen_before": {"urls": n_before[0], "texts": n_before[1]},
            "seen_after": {"urls": n_before[0], "texts": n_before[1]}, "history_added": 0,
            "heldout": {"scored": 0, "validation": 0, "test": 0, "left_out": ["validation", "test"]},
            "packed": {"empty": True}, "replay": {"empty": True}, **({"crawl": crawl} if crawl is not None else {})}


def run(update: Update, chain_cfg: ChainConfig, pack_cfg: PackConfig, text_cfg: TextConfig,
        articles: Path, prev_dedup: Path, prev_heldout: Path, tokenizer_dir: Path,
        dedup_out: Path, heldout_out: Path, packed_out: Path, replay_out: Path,
        prev_packed: Path | None = None, crawl_metrics: Path | None = None) -> dict:
    crawl = crawl_losses(crawl_metrics)
    if crawl and crawl["lost_files"]:
        log.warning("window %s: its crawl lost %d files (could not be read): the update sees fewer articles",
                    update.window, crawl["lost_files"])
    if chain_cfg.cpt_from == "ancestor" and prev_packed is None:
        raise ChainError("chain.cpt_from: ancestor needs the parent's packed data (window --prev-packed)")
    if not articles.is_file():
        raise FileNotFoundError(f"the window's crawl is missing: {articles}")
    seen_urls, seen_texts = read_seen(prev_dedup)
    n_before = (len(seen_urls), len(seen_texts))
    with open(articles, "rb") as fh:
        crawled = any(line.strip() for line in fh)
    if not crawled:
        return empty_window(update, chain_cfg, pack_cfg, prev_dedup, prev_heldout, prev_packed, dedup_out,
                            heldout_out, packed_out, replay_out, crawl, n_before)
    with atomic_dir(dedup_out) as tmp:
        counts = dedup(articles, seen_urls, seen_texts, pack_cfg.text_field, tmp / CORPUS)
        if not counts["kept"]:
            raise CorpusError(f"{articles}: none of its {counts['articles']} articles is new "
                              f"(every one was in an earlier window: {counts})")
        write_json(tmp / SEEN, {"urls": sorted(seen_urls), "texts": sorted(seen_texts)})
        with open(tmp / HISTORY, "w", encoding="utf-8") as dst:
            prev_history = Path(prev_dedup) / HISTORY
            with open(prev_history, encoding="utf-8") as src:
                for line in src:
                    dst.write(line)
            new_train = 0
            for _, _, rec in jsonl_records(tmp / CORPUS, CorpusError):
                if not is_heldout(rec.get("url"), rec[pack_cfg.text_field], pack_cfg.val_fraction):
                    dst.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    new_train += 1
        rows, held_stats = fresh_rows(tmp / CORPUS, pack_cfg, replace(text_cfg, docs=1 << 62))
        rows = split_heldout(rows, text_cfg.docs, f"window {update.window} ({articles})")
        held_stats["validation"] = sum(r[SPLIT_FIELD] == "validation" for r in rows)
        held_stats["test"] = sum(r[SPLIT_FIELD] == "test" for r in rows)
        held_stats["split_rule"] = VALIDATION_RULE
        held_stats["left_out"] = [h for h in ("validation", "test") if not held_stats[h]]
        corpus = tmp / CORPUS
        with atomic_file(heldout_out, "w", encoding="utf-8") as fh:
            if Path(prev_heldout).is_file():
                for _, _, rec in jsonl_records(prev_heldout, CorpusError):
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            else:
                raise FileNotFoundError(f"the parent's held-out news is missing: {prev_heldout}")
            for row in rows:
                fh.write(json.dumps({**row, WINDOW_FIELD: update.window}, ensure_ascii=False) + "\n")
        from ..io.hf import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_dir)
        own_cfg = replace(pack_cfg, tokens=chain_cfg.tokens)
        union = None
        if chain_cfg.cpt_from == "ancestor":
            with atomic_dir(packed_out) as union_dir:
                packed = pack_corpus(corpus, tokenizer, own_cfg, union_dir / ".own")
                union = union_pack(prev_packed, union_dir / ".own", update.window, union_dir)
                shutil.rmtree(union_dir / ".own")
        else:
            packed = pack_corpus(corpus, tokenizer, own_cfg, packed_out)
    with open(Path(prev_dedup) / HISTORY, "rb") as fh:
        has_history = any(line.strip() for line in fh)
    if has_history:
        replay = pack_corpus(Path(prev_dedup) / HISTORY, tokenizer,
                             replace(pack_cfg, tokens=chain_cfg.replay_budget, allow_short=True, val_fraction=0.0),
                             replay_out)
    else:
        _empty_pack(replay_out, pack_cfg.seq_len)
        replay = {"empty": True}
    log.info("window %s: %d of %d crawled articles are new (%s); %d held out for eval; packed %s new tokens",
             update.window, counts["kept"], counts["articles"], counts, len(rows),
             packed.get("train", {}).get("tokens"))
    return {"window": update.window, "prev": update.prev, "published_from": update.published_from,
            "published_to": update.published_to, "dedup": counts,
            "seen_before": {"urls": n_before[0], "texts": n_before[1]},
            "seen_after": {"urls": len(seen_urls), "texts": len(seen_texts)},
            "history_added": new_train, "heldout": {**held_stats, "scored": len(rows)},
            "packed": packed, "replay": replay, **({"union": union} if union is not None else {}),
            **({"crawl": crawl} if crawl is not None else {})}
