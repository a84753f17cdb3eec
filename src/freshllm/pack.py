"""Stage ``pack``: tokenize the crawled articles with the model's tokenizer and pack them
into fixed-length sequences with per-article attention, cut to an exact token budget.

Each article becomes ``[BOS] + text + [EOS]`` (BOS only if the tokenizer adds one, as
Llama's does and Qwen's does not). Articles are shuffled with a seed, then packed back
to back; ``position_ids`` restart at 0 at every article, which makes transformers build a
block-diagonal causal mask when training with ``attention_mask=None``. An article that
overflows a sequence continues in the next one with continuing positions (not truncated).
The packed set holds ``ceil(tokens / seq_len)`` sequences, i.e. the budget to within one
sequence. Output is streamed to disk (see :mod:`freshllm.io.packed`), never held in RAM.

Held-out articles (``val_fraction``): :func:`is_heldout` is THE rule, imported by every user
(this stage's ``val`` split, the eval stage's fresh-news bits-per-byte task via
:mod:`freshllm.tasks.heldout`): an article is held out when the blake2b hash of its url
(of its text where it has no url), read as a number in [0, 1), is below ``val_fraction``.
So the held-out set depends on nothing but the corpus and the fraction: not on the budget,
not on ``pack.seed``; no model trains on it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .common import atomic_dir, jsonl_records, set_offline, setup_logging, user_errors, write_json
from .config import ConfigError, load_section, parse_count
from .io.packed import PackWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackConfig:
    seq_len: int = 4096
    tokens: str | None = None         # the budget; dvc.yaml passes it per branch (--tokens)
    allow_short: bool = False
    seed: int = 0
    val_fraction: float = 0.0
    batch_articles: int = 512
    text_field: str = "text"
    # tokenizer threads (the Rust tokenizer's batch call): auto = the cores this process may
    # use; 1 = this thread only. The packed bytes are the same whatever the count.
    workers: int | str = "auto"

    @property
    def token_budget(self) -> int:
        return parse_count(self.tokens)

    def validate(self) -> list[str]:
        errs = []
        if self.seq_len < 16:
            errs.append(f"seq_len: must be >= 16, got {self.seq_len}")
        try:
            if self.tokens is not None and parse_count(self.tokens) <= 0:
                errs.append("tokens: must be > 0")
        except ValueError as exc:
            errs.append(f"tokens: {exc}")
        if not 0.0 <= self.val_fraction < 1.0:
            errs.append(f"val_fraction: must be in [0, 1), got {self.val_fraction}")
        if self.batch_articles <= 0:
            errs.append("batch_articles: must be > 0")
        if not (self.workers == "auto" or (isinstance(self.workers, int) and self.workers >= 1)):
            errs.append(f"workers: must be auto or a positive integer, got {self.workers!r}")
        return errs

    def worker_count(self) -> int:
        from .common import usable_cores

        return usable_cores() if self.workers == "auto" else int(self.workers)


class CorpusError(ValueError):
    pass


HELDOUT_RULE = ("held out iff blake2b-64(url, or the text where there is no url) / 2^64 < "
                "pack.val_fraction")


def heldout_key(url: object, text: str) -> float:
    """The article's place in [0, 1), uniform: blake2b (8 bytes) of its url, stripped, or
    of its text where it has no (non-empty string) url."""
    if isinstance(url, str) and url.strip():
        key = b"url:" + url.strip().encode("utf-8")
    else:
        key = b"text:" + text.encode("utf-8")
    digest = hashlib.blake2b(key, digest_size=8, person=b"freshllm-heldout").digest()
    return int.from_bytes(digest, "big") / 2.0**64


def text_digest(text: str) -> bytes:
    """THE duplicate rule for article texts (blake2b-64 of the UTF-8 text): equal texts are one
    article, within a corpus (:func:`index_corpus`) and across a chain's windows
    (:mod:`freshllm.updates`)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def is_heldout(url: object, text: str, fraction: float) -> bool:
    """THE held-out rule (``pack.val_fraction``): no model trains on an article for which this
    is true, and the eval stage scores every model on them. Deterministic in the url (text)
    alone, so the same whatever the budget or ``pack.seed``; a larger fraction holds out a
    superset."""
    return heldout_key(url, text) < fraction


@dataclass
class Corpus:
    """Every article line of a JSONL corpus, validated once: byte offsets of the usable
    articles (8 bytes per article), their :func:`heldout_key` and :func:`is_heldout` flag,
    and what was skipped."""

    path: Path
    offsets: np.ndarray
    skipped: dict
    keys: np.ndarray | None = None
    heldout: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.offsets)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(held-out indices by ascending key, train indices in corpus order)."""
        held = self.heldout if self.heldout is not None else np.zeros(len(self), dtype=bool)
        val = np.flatnonzero(held)
        if self.keys is not None:
            val = val[np.argsort(self.keys[val], kind="stable")]
        return val, np.flatnonzero(~held)


def index_corpus(path: Path, field: str, val_fraction: float = 0.0) -> Corpus:
    """Read and validate EVERY line of ``path`` (whatever the budget: a corrupt line is an
    error naming its line number, never found or missed depending on how far packing gets).
    Blank lines are ignored, empty texts and exact duplicate texts are skipped and counted
    (so no text can be in both the train and the validation split: the first occurrence,
    with its url, decides). Each kept article is held out by :func:`is_heldout`."""
    offsets = []
    keys: list[float] = []
    held: list[bool] = []
    seen: set[bytes] = set()
    skipped: dict[str, int] = {}
    for lineno, start, rec in jsonl_records(path, CorpusError):
        where = f"{path}, line {lineno}"
        if not isinstance(rec, dict) or field not in rec:
            raise CorpusError(f"{where}: record has no {field!r} field")
        text = rec[field]
        if not isinstance(text, str):
            raise CorpusError(f"{where}: {field!r} is {type(text).__name__}, not a string")
        if not text.strip():
            skipped["empty_text"] = skipped.get("empty_text", 0) + 1
            continue
        digest = text_digest(text)
        if digest in seen:
            skipped["duplicate_text"] = skipped.get("duplicate_text", 0) + 1
            continue
        seen.add(digest)
        offsets.append(start)
        keys.append(heldout_key(rec.get("url"), text))
        held.append(is_heldout(rec.get("url"), text, val_fraction))
    return Corpus(path, np.asarray(offsets, dtype=np.int64), skipped,
                  np.asarray(keys, dtype=np.float64), np.asarray(held, dtype=bool))


def read_records(corpus: Corpus, idx: np.ndarray) -> Iterator[dict]:
    """The (already validated) article records ``idx`` of ``corpus``, in that order."""
    with open(corpus.path, "rb") as fh:
        for i in idx:
            fh.seek(int(corpus.offsets[i]))
            yield json.loads(fh.readline().decode("utf-8"))


def read_articles(corpus: Corpus, idx: np.ndarray, field: str) -> Iterator[str]:
    """Texts of the (already validated) articles ``idx`` of ``corpus``, in that order."""
    for rec in read_records(corpus, idx):
        yield rec[field]


@dataclass(frozen=True)
class Framing:
    """How articles are delimited: BOS (only where the tokenizer itself adds one, e.g.
    LLaMA 3's ``<|begin_of_text|>``; Qwen adds none) and EOS, both added by id."""

    bos_id: int | None
    eos_id: int
    bos_token: str | None
    eos_token: str

    @classmethod
    def of(cls, tokenizer) -> "Framing":
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError("tokenizer has no eos_token; cannot separate articles")
        bos = tokenizer.bos_token_id
        probe = tokenizer("a", add_special_tokens=True)["input_ids"]
        adds_bos = bos is not None and bool(probe) and probe[0] == bos
        if bos is not None and bos != eos and not adds_bos:
            log.warning("tokenizer has a BOS token %r (id %d) that it does not add: articles are "
                        "packed without BOS, as the tokenizer encodes text", tokenizer.bos_token, bos)
        return cls(bos if adds_bos else None, eos, tokenizer.bos_token if adds_bos else None,
                   tokenizer.eos_token)

    def metrics(self) -> dict:
        return {"bos_added": self.bos_id is not None, "bos_token": self.bos_token, "bos_id": self.bos_id,
                "eos_added": True, "eos_token": self.eos_token, "eos_id": self.eos_id}


def encode_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """THE encoding of article texts: plain text (``split_special_tokens``: a literal
    ``<|endoftext|>`` in an article stays text, never a real special token mid-article), no
    special tokens added (the framing adds BOS / EOS by id)."""
    return tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def fast_encoder(tokenizer, probe: list[str]):
    """The Rust tokenizer's own batch call (``encode_batch_fast``: no offsets, no Python
    objects per token; parallel over the batch when ``TOKENIZERS_PARALLELISM`` allows), where
    it gives exactly :func:`encode_texts`'s ids: a fast tokenizer with no truncation or padding
    set, checked on ``probe`` (the first batch). Else None (pack then makes the transformers call)."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    if backend.truncation is not None or backend.padding is not None:
        return None

    def encode(texts: list[str]) -> list[list[int]]:
        backend.encode_special_tokens = True  # what split_special_tokens=True sets
        return [enc.ids for enc in backend.encode_batch_fast(texts, add_special_tokens=False)]

    if probe and encode(probe) != encode_texts(tokenizer, probe):
        log.warning("the tokenizer's batch call gives other ids than the transformers call on the first "
                    "batch: packing with the transformers call")
        return None
    return encode


def encode_documents(tokenizer, texts: Iterator[str], batch: int,
                     framing: Framing | None = None) -> Iterator[list[int]]:
    """Batched fast-tokenizer encoding (:func:`encode_texts`): ``[BOS?] + text + [EOS]`` per
    article, in order. The next batch is read and encoded in a second thread while this one's
    ids are consumed (the Rust tokenizer runs without the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    framing = framing or Framing.of(tokenizer)
    head = [framing.bos_id] if framing.bos_id is not None else []
    tail = [framing.eos_id]
    batches = _batches(texts, batch)
    first = next(batches, None)
    if first is None:
        return
    encode = fast_encoder(tokenizer, first) or (lambda b: encode_texts(tokenizer, b))

    def read_and_encode(b):
        return encode(b) if b is not None else None

    with ThreadPoolExecutor(1, thread_name_prefix="pack-encode") as pool:
        pending = pool.submit(read_and_encode, first)
        while True:
            ids_batch = pending.result()
            if ids_batch is None:
                return
            pending = pool.submit(lambda: read_and_encode(next(batches, None)))
            for ids in ids_batch:
                yield head + ids + tail


def _batches(texts: Iterator[str], batch: int) -> Iterator[list[str]]:
    buf: list[str] = []
    for text in texts:
        buf.append(text)
        if len(buf) >= batch:
            yield buf
            buf = []
    if buf:
        yield buf


def pack_corpus(corpus: Path, tokenizer, cfg: PackConfig, out: Path) -> dict:
    """Pack ``corpus`` into ``out/train`` (and ``out/val``); returns the stage metrics."""
    from tqdm.auto import tqdm

    if not corpus.is_file():
        raise FileNotFoundError(f"corpus not found: {corpus}")
    articles = index_corpus(corpus, cfg.text_field, cfg.val_fraction)
    skipped = articles.skipped
    if len(articles) == 0:
        why = f" (skipped: {skipped})" if skipped else ""
        raise CorpusError(f"{corpus}: corpus is empty: no usable articles{why}")
    framing = Framing.of(tokenizer)
    val_idx, train_idx = articles.split()  # the held-out set: by url hash, not by seed or budget
    if len(train_idx) == 0:
        raise CorpusError(f"{corpus}: every one of its {len(articles)} articles is held out "
                          f"(pack.val_fraction {cfg.val_fraction}): nothing to train on")
    order = train_idx[np.random.default_rng(cfg.seed).permutation(len(train_idx))]
    n_val = len(val_idx)
    if cfg.val_fraction > 0 and not n_val:
        log.warning("pack.val_fraction %s holds out none of the %d articles", cfg.val_fraction, len(articles))
    budget = cfg.token_budget
    n_seq = math.ceil(budget / cfg.seq_len)
    max_pos = getattr(tokenizer, "model_max_length", None)
    max_pos = max_pos if isinstance(max_pos, int) and 0 < max_pos < 10**7 else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stats = {}
    workers = cfg.worker_count()
    with atomic_dir(out) as tmp, tokenizer_threads(workers):
        splits = [("val", val_idx, None), ("train", order, n_seq)] if n_val \
            else [("train", order, n_seq)]
        for name, idx, rows in splits:
            writer = PackWriter(tmp / name, cfg.seq_len, max_position=max_pos, pad_id=pad_id,
                                max_rows=rows)
            total = rows * cfg.seq_len if rows else None
            with tqdm(total=total, desc=f"pack {name}", unit="tok", unit_scale=True,
                      mininterval=1.0) as bar:
                for ids in encode_documents(tokenizer, read_articles(articles, idx, cfg.text_field),
                                            cfg.batch_articles, framing):
                    bar.update(writer.add(ids))
                    if writer.full:
                        break
            short = rows is not None and not writer.full
            meta = writer.close(pad_last=True)
            if short:
                have = meta["doc_tokens"]
                msg = (f"token budget {cfg.tokens} ({budget:,} tokens, rounded up to whole rows: "
                       f"{n_seq:,} sequences of {cfg.seq_len} = {n_seq * cfg.seq_len:,} tokens) exceeds "
                       f"the corpus: {corpus} holds only {have:,} tokens in {meta['documents']:,} articles")
                if not cfg.allow_short:
                    raise CorpusError(msg + " (set pack.allow_short: true to pack what there is)")
                log.warning("%s; packing %d tokens (allow_short)", msg, have)
            total_tok = meta["n_seq"] * cfg.seq_len
            stats[name] = {
                "sequences": meta["n_seq"],
                "tokens": total_tok,
                "articles": meta["documents"],
                "article_tokens": meta["doc_tokens"],
                "padding_fraction": meta["pad_tokens"] / total_tok if total_tok else 0.0,
                "mean_tokens_per_article": meta["doc_tokens"] / max(1, meta["documents"]),
                "short": short,
            }
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        heldout = {"rule": HELDOUT_RULE, "val_fraction": cfg.val_fraction, "articles": int(n_val)}
        # the packed bytes do not depend on the tokenizer threads: info.json leaves them out
        config = {k: v for k, v in asdict(cfg).items() if k != "workers"}
        info = {"seq_len": cfg.seq_len, "token_budget": budget, "config": config,
                "corpus_articles": int(len(articles)), "skipped": skipped, "heldout": heldout,
                **framing.metrics(), **stats}
        (tmp / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
    return {"token_budget": budget, "seq_len": cfg.seq_len, "corpus_articles": int(len(articles)),
            "skipped": skipped, "heldout": heldout, **framing.metrics(), **stats, "workers": workers}


@contextlib.contextmanager
def tokenizer_threads(workers: int) -> Iterator[None]:
    """Let the Rust tokenizer's batch call run on ``workers`` threads (its pool's size is fixed by
    ``RAYON_NUM_THREADS`` when the process first uses it: :func:`main` sets it), or on this thread
    alone for 1; the variable it reads at each call is restored after."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if workers > 1 else "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--corpus", required=True, type=Path, help="articles JSONL from the crawl stage")
    ap.add_argument("--tokenizer", required=True, type=Path, help="model directory whose tokenizer to use")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--metrics", required=True, type=Path)
    ap.add_argument("--tokens", default=None, help="token budget, e.g. 100M (default: pack.tokens)")
    args = ap.parse_args(argv)
    setup_logging()
    set_offline()
    overrides = {"tokens": args.tokens} if args.tokens is not None else {}
    with user_errors("pack", CorpusError):
        cfg = load_section(PackConfig, "pack", args.params, overrides)
        if cfg.tokens is None:
            raise ConfigError(args.params, ["pack.tokens: no token budget (pass --tokens, as dvc.yaml does "
                                            "from `budgets`, or set pack.tokens)"])
        from .io.hf import load_tokenizer

        os.environ.setdefault("RAYON_NUM_THREADS", str(cfg.worker_count()))  # before the pool exists
        tokenizer = load_tokenizer(args.tokenizer)
        metrics = pack_corpus(args.corpus, tokenizer, cfg, args.out)
    write_json(args.metrics, metrics)
    log.info("packed %s", json.dumps(metrics.get("train", {})))


if __name__ == "__main__":
    main()
