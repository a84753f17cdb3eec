"""Packed-sequence storage shared by the pack stage, the model builder and training.

A packed split is a directory of three raw row-major arrays plus ``meta.json``::

    input_ids.bin     uint32 [n_seq, seq_len]
    position_ids.bin  uint32 [n_seq, seq_len]   reset to 0 at every document start
    loss_mask.bin     uint8  [n_seq, seq_len]   1 where the token is a training target

Documents are concatenated back to back. A document that does not fit in the rest of a
sequence is split: its tail starts the next sequence with *continuing* positions, so no
token is thrown away and no padding is needed except after the very last document.
Training passes ``attention_mask=None`` with these ``position_ids``; transformers then
builds a block-diagonal causal mask (one block per document), so there is no attention
across documents. The first token of every document has loss_mask 0: it must not be
predicted from the previous document.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

ARRAYS = {"input_ids": np.uint32, "position_ids": np.uint32, "loss_mask": np.uint8}


class PackWriter:
    """Streams documents into fixed-length rows appended to ``<dir>/*.bin``."""

    def __init__(self, out_dir: str | Path, seq_len: int, max_position: int | None = None,
                 pad_id: int = 0, max_rows: int | None = None):
        if seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {seq_len}")
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.seq_len = seq_len
        self.max_position = max_position
        self.pad_id = pad_id
        self.max_rows = max_rows
        self.files = {k: open(self.dir / f"{k}.bin", "wb") for k in ARRAYS}
        self._ids: list[int] = []
        self._pos: list[int] = []
        self._mask: list[int] = []
        self.rows = 0
        self.documents = 0
        self.doc_tokens = 0
        self.pad_tokens = 0

    @property
    def full(self) -> bool:
        return self.max_rows is not None and self.rows >= self.max_rows

    def add(self, ids: Sequence[int], mask: Sequence[int] | None = None) -> int:
        """Add one document; returns how many of its tokens were stored (all unless full)."""
        if not ids or self.full:
            return 0
        mask = list(mask) if mask is not None else [1] * len(ids)
        if len(mask) != len(ids):
            raise ValueError("mask and ids differ in length")
        mask[0] = 0  # never predict a document's first token from the previous one
        self.documents += 1
        stored = 0
        pos = 0
        i = 0
        while i < len(ids) and not self.full:
            room = self.seq_len - len(self._ids)
            take = min(room, len(ids) - i)
            positions = np.arange(pos, pos + take)
            if self.max_position:
                positions %= self.max_position
            self._ids.extend(ids[i:i + take])
            self._pos.extend(positions.tolist())
            self._mask.extend(mask[i:i + take])
            i += take
            pos += take
            stored += take
            if len(self._ids) == self.seq_len:
                self._flush_row()
        self.doc_tokens += stored
        return stored

    def _flush_row(self) -> None:
        for key, values in (("input_ids", self._ids), ("position_ids", self._pos),
                            ("loss_mask", self._mask)):
            self.files[key].write(np.asarray(values, dtype=ARRAYS[key]).tobytes())
        self._ids, self._pos, self._mask = [], [], []
        self.rows += 1

    def close(self, pad_last: bool = True) -> dict:
        """Pad and flush a partial last row (or drop it), write meta.json, return stats."""
        if self._ids and not self.full:
            if pad_last:
                n = self.seq_len - len(self._ids)
                self.pad_tokens += n
                self._ids.extend([self.pad_id] * n)
                self._pos.extend(range(n))  # a separate "document": attends to nothing real
                self._mask.extend([0] * n)
                self._flush_row()
            else:
                self.doc_tokens -= len(self._ids)
                self._ids, self._pos, self._mask = [], [], []
        for fh in self.files.values():
            fh.close()
        meta = {"n_seq": self.rows, "seq_len": self.seq_len, "documents": self.documents,
                "doc_tokens": self.doc_tokens, "pad_tokens": self.pad_tokens,
                "dtypes": {k: np.dtype(v).name for k, v in ARRAYS.items()}}
        with open(self.dir / "meta.json", "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2, sort_keys=True)
        return meta


@dataclass
class PackedData:
    """Read-only view of a packed split (memory-mapped, or in-memory for tests)."""

    input_ids: np.ndarray
    position_ids: np.ndarray
    loss_mask: np.ndarray

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def seq_len(self) -> int:
        return self.input_ids.shape[1]

    @classmethod
    def open(cls, path: str | Path) -> "PackedData":
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"not a packed split (no meta.json): {path}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        shape = (int(meta["n_seq"]), int(meta["seq_len"]))
        arrays = {}
        for key, dtype in ARRAYS.items():
            f = path / f"{key}.bin"
            expected = shape[0] * shape[1] * np.dtype(dtype).itemsize
            if not f.is_file() or os.path.getsize(f) != expected:
                raise ValueError(f"{f}: missing or wrong size (expected {expected} bytes for {shape})")
            arrays[key] = (np.memmap(f, dtype=dtype, mode="r", shape=shape) if shape[0]
                           else np.zeros(shape, dtype=dtype))
        return cls(**arrays)

    def batch(self, rows: Sequence[int] | np.ndarray):
        """Tensors for training: input_ids, position_ids and labels (-100 off the loss mask)."""
        import torch

        rows = np.asarray(rows)
        ids = torch.from_numpy(np.asarray(self.input_ids[rows], dtype=np.int64))
        pos = torch.from_numpy(np.asarray(self.position_ids[rows], dtype=np.int64))
        mask = torch.from_numpy(np.asarray(self.loss_mask[rows], dtype=np.bool_))
        labels = ids.masked_fill(~mask, -100)
        return {"input_ids": ids, "position_ids": pos, "labels": labels}


def pack_in_memory(docs: Iterable[tuple[Sequence[int], Sequence[int] | None]], seq_len: int,
                   tmp_dir: str | Path, pad_id: int = 0) -> PackedData:
    """Pack small document lists (model building, tests) through the same writer."""
    writer = PackWriter(tmp_dir, seq_len, pad_id=pad_id)
    for ids, mask in docs:
        writer.add(ids, mask)
    writer.close()
    data = PackedData.open(tmp_dir)
    return PackedData(*(np.array(a) for a in (data.input_ids, data.position_ids, data.loss_mask)))


NO_NEW_ARTICLES = "no_new_articles"  # info.json key: a chained update's window brought no article


def no_new_articles(packed_dir: str | Path) -> bool:
    """True when ``packed_dir`` (a pack stage's or a chain window's output) is marked as the data
    of a window with no article (:func:`freshllm.updates.window.empty_window`): nothing to train on."""
    info = Path(packed_dir) / "info.json"
    return info.is_file() and bool(json.loads(info.read_text(encoding="utf-8")).get(NO_NEW_ARTICLES))
