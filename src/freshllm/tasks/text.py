"""Bits-per-byte tasks: does the update do what it is for?

Every model is scored, besides its suite, on two local text sets through lm-eval's
``loglikelihood_rolling`` (task YAMLs in ``bpb/``, shaped like lm-eval's stock ``wikitext``:
``bits_per_byte``, ``byte_perplexity``, ``word_perplexity``):

* ``fresh_bpb``: fresh news no model trained on, the crawled articles the pack stage holds
  out (:func:`freshllm.pack.is_heldout`, by url hash: the same set whatever the budget or
  ``pack.seed``), written by the ``eval-text`` stage (:mod:`freshllm.tasks.heldout`) to
  ``data/eval_text/fresh.jsonl``. Lower after cpt: the model learned the news.
* ``known_bpb``: older text the ancestor knew, ``eval.text.known``: for the local worlds
  ``data/eval_text/world.jsonl``, which the ``eval-text`` stage generates from the world
  (d1-style text on a random stream the ancestor's pre-training did not use); for the paper
  profiles a JSONL of pre-cutoff text you provide. Higher after cpt: the model forgot.

Both sets are cut to ``eval.text.docs`` documents of at most ``eval.text.max_chars``
characters (``eval.limit`` applies on top), so eval stays cheap. Lower is better; the report
shows them in their own block, never in an average.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

from ..common import jsonl_records, sha256_file

TEMPLATES_DIR = Path(__file__).resolve().parent / "bpb"
TEXT_TASKS = ("fresh_bpb", "known_bpb")
TEXT_FIELD = "text"  # the field of every text JSONL (as in the crawl's articles)


class TextDataError(ValueError):
    """A text file the bits-per-byte tasks cannot use; the message names file and line."""


@dataclass(frozen=True)
class TextConfig:
    """``eval.text``: the two bits-per-byte sets (read by the eval-text and eval stages)."""

    docs: int = 64  # documents per set (held-out articles by url hash order; the file's first)
    max_chars: int = 4000  # each document cut to at most this many characters (at a space)
    known: str = "data/eval_text/world.jsonl"  # text the ancestor knew: the world's (eval-text stage) | your JSONL

    def validate(self) -> list[str]:
        errs = []
        if self.docs <= 0:
            errs.append(f"docs: must be > 0, got {self.docs}")
        if self.max_chars < 64:
            errs.append(f"max_chars: must be >= 64, got {self.max_chars}")
        if not self.known.strip():
            errs.append("known: must be a path to a JSONL file (one object per line with a 'text')")
        return errs


def cut(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, at the last whitespace of the second
    half where there is one (no half words); idempotent."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    space = max(head.rfind(" "), head.rfind("\n"))
    return (head[:space] if space >= max_chars // 2 else head).rstrip()


def prepare(texts, docs: int, max_chars: int) -> list[str]:
    """The first ``docs`` non-empty texts, each :func:`cut` (idempotent: a prepared list
    prepares to itself)."""
    out = []
    for text in texts:
        text = cut(text, max_chars)
        if text:
            out.append(text)
        if len(out) >= docs:
            break
    return out


WINDOW_FIELD = "window"  # a chained update's publishing window (freshllm.updates): scored per window too
# a chained update's held-out news is split in two (freshllm.updates.window.is_validation): lines
# marked ``"split": "validation"`` are the promotion gate's and no eval stage scores them; every
# other line (``"split": "test"``, or no split: every other text set) is the eval's
SPLIT_FIELD = "split"
SPLITS = ("test", "validation")


def read_rows(path: Path, field: str = TEXT_FIELD, split: str = "test") -> list[tuple[str, str | None]]:
    """(text, window or None) of every line of a JSONL file (one object per line with a string
    ``field``, an optional string ``window`` and an optional ``split``; blank lines skipped)
    that belongs to ``split`` (see ``SPLIT_FIELD``), every line validated; errors name the
    file and line."""
    path = Path(path)
    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {list(SPLITS)}")
    if not path.is_file():
        raise TextDataError(f"text file not found: {path}")
    rows = []
    for lineno, _, rec in jsonl_records(path, TextDataError):
        if not isinstance(rec, dict) or not isinstance(rec.get(field), str):
            raise TextDataError(f"{path}, line {lineno}: no string {field!r} field")
        window = rec.get(WINDOW_FIELD)
        if window is not None and not isinstance(window, str):
            raise TextDataError(f"{path}, line {lineno}: {WINDOW_FIELD!r} is not a string")
        line_split = rec.get(SPLIT_FIELD, "test")
        if line_split not in SPLITS:
            raise TextDataError(f"{path}, line {lineno}: {SPLIT_FIELD!r} must be one of {list(SPLITS)}, "
                                f"got {line_split!r}")
        if line_split == split:
            rows.append((rec[field], window))
    return rows


def read_texts(path: Path, field: str = TEXT_FIELD) -> list[str]:
    """Texts of a JSONL file (see :func:`read_rows`)."""
    return [text for text, _ in read_rows(path, field)]


def load_windows(path: Path, cfg: TextConfig, split: str = "test") -> list[tuple[str, str | None]]:
    """The prepared documents of one set with their window: ``eval.text.docs`` documents of
    the set, or of each window where its lines name one (a chained update's held-out news of
    every window so far, windows in the order they first appear); the lines of ``split`` only."""
    rows = read_rows(path, split=split)
    windows = list(dict.fromkeys(w for _, w in rows))
    out: list[tuple[str, str | None]] = []
    for window in windows:
        texts = prepare((t for t, w in rows if w == window), cfg.docs, cfg.max_chars)
        out += [(t, window) for t in texts]
    if not out:
        raise TextDataError(f"{path}: no non-empty text to score" + (f" in its {split} split" if split != "test" else ""))
    return out


def load(path: Path, cfg: TextConfig) -> list[str]:
    """The prepared documents of one set (see :func:`load_windows`); an error when none is left."""
    return [text for text, _ in load_windows(path, cfg)]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    from ..common import atomic_file

    with atomic_file(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def materialize(dest: str | Path, files: dict[str, Path], cfg: TextConfig) -> dict[str, dict]:
    """Write the data (prepared from ``files``: ``{task: source JSONL}``) and task YAMLs of the
    bits-per-byte tasks under ``dest``; returns ``{task: {source, sha256, documents, chars,
    bytes}}`` for the eval record."""
    dest = Path(dest)
    data_dir = (dest / "text_data").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    info = {}
    for task, source in files.items():
        if task not in TEXT_TASKS:
            raise ValueError(f"unknown text task {task!r}; known: {list(TEXT_TASKS)}")
        texts = load(Path(source), cfg)
        with open(data_dir / f"{task}.jsonl", "w", encoding="utf-8") as fh:
            for text in texts:
                fh.write(json.dumps({TEXT_FIELD: text}, ensure_ascii=False) + "\n")
        yaml_text = string.Template((TEMPLATES_DIR / f"{task}.yaml").read_text(encoding="utf-8"))
        out = dest / "twins" / "text" / f"{task}.yaml"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml_text.substitute({"data": str(data_dir)}), encoding="utf-8")
        info[task] = {"source": str(source), "sha256": sha256_file(Path(source)), "documents": len(texts),
                      "chars": sum(len(t) for t in texts),
                      "bytes": sum(len(t.encode("utf-8")) for t in texts)}
    return info
