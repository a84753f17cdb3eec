"""Tensor-by-tensor streaming over (sharded) safetensors checkpoints.

:class:`ShardedReader` reads names, dtypes and shapes from the file headers alone (or the
``*.safetensors.index.json`` weight map) and loads one tensor at a time.
:class:`ShardedWriter` plans the output shards from the tensor specs up front, writes
each shard's header first and then streams tensors into place one at a time, so peak
memory is about one tensor, whatever the model size. Output follows HF's layout
(``model-0000i-of-0000N.safetensors`` + ``model.safetensors.index.json``).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

DTYPE_TO_ST = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
               torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
               torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
ST_TO_DTYPE = {v: k for k, v in DTYPE_TO_ST.items()}
INDEX_NAME = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * torch.empty((), dtype=self.dtype).element_size()


def read_header(path: Path) -> dict:
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw)
        if n > 100 * 2**20:
            raise ValueError(f"{path}: not a safetensors file (header of {n} bytes)")
        try:
            return json.loads(fh.read(n))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: corrupt safetensors header ({exc.msg})") from exc


class ShardedReader:
    """Lazy access to the tensors of an HF model directory (one or many shards)."""

    def __init__(self, model_dir: str | Path):
        self.dir = Path(model_dir)
        index = self.dir / INDEX_NAME
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(p.name for p in self.dir.glob("*.safetensors"))
            if not files:
                raise FileNotFoundError(f"no *.safetensors weights in {self.dir}")
            weight_map = None
        self.specs: dict[str, TensorSpec] = {}
        self.file_of: dict[str, Path] = {}
        for fname in files:
            path = self.dir / fname
            if not path.is_file():
                raise FileNotFoundError(f"{self.dir}: shard {fname} listed in the index is missing")
            for name, info in read_header(path).items():
                if name == "__metadata__":
                    continue
                if info["dtype"] not in ST_TO_DTYPE:
                    raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
                self.specs[name] = TensorSpec(name, ST_TO_DTYPE[info["dtype"]], tuple(info["shape"]))
                self.file_of[name] = path
        if weight_map is not None:
            missing = sorted(set(weight_map) - set(self.specs))
            if missing:
                raise ValueError(f"{self.dir}: tensors in the index but not in the shards: {missing[:5]}")
        self._handles: dict[Path, object] = {}
        self._left = {p: sum(1 for f in self.file_of.values() if f == p) for p in set(self.file_of.values())}

    def names(self) -> list[str]:
        return list(self.specs)

    def _handle(self, name: str):
        from safetensors import safe_open

        path = self.file_of[name]
        if path not in self._handles:
            self._handles[path] = safe_open(str(path), framework="pt")
        return self._handles[path]

    def get(self, name: str) -> torch.Tensor:
        return self._handle(name).get_tensor(name)

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of a tensor (dim 0), read without loading the rest."""
        return self._handle(name).get_slice(name)[start:stop]

    def release(self, name: str) -> None:
        """Mark ``name`` done; a shard whose tensors are all done is closed (unmapped),
        so memory-mapped pages of finished shards do not pile up."""
        path = self.file_of[name]
        self._left[path] -= 1
        if self._left[path] <= 0:
            self._handles.pop(path, None)

    def close(self) -> None:
        self._handles.clear()


def plan_shards(specs: Iterable[TensorSpec], max_shard_bytes: int) -> list[list[TensorSpec]]:
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        if shards[-1] and size + spec.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += spec.nbytes
    return shards


class ShardedWriter:
    """Writes planned shards; call :meth:`write` once per tensor in plan order."""

    def __init__(self, out_dir: str | Path, specs: list[TensorSpec], max_shard_bytes: int,
                 metadata: dict[str, str] | None = None):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shards = plan_shards(specs, max_shard_bytes)
        n = len(self.shards)
        self.names = (["model.safetensors"] if n == 1 else
                      [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)])
        self.metadata = {"format": "pt", **(metadata or {})}
        self._queue = [(i, spec) for i, shard in enumerate(self.shards) for spec in shard]
        self._pos = 0
        self._fh = None
        self._shard = -1
        self.total_bytes = sum(s.nbytes for s in specs)

    def _open_shard(self, i: int) -> None:
        if self._fh is not None:
            self._fh.close()
        header, offset = {"__metadata__": self.metadata}, 0
        for spec in self.shards[i]:
            header[spec.name] = {"dtype": DTYPE_TO_ST[spec.dtype], "shape": list(spec.shape),
                                 "data_offsets": [offset, offset + spec.nbytes]}
            offset += spec.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self._fh = open(self.dir / self.names[i], "wb")
        self._fh.write(struct.pack("<Q", len(raw)))
        self._fh.write(raw)
        self._shard = i

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Write a whole tensor (the next one in plan order)."""
        spec = self.begin(name)
        if tuple(tensor.shape) != spec.shape:
            raise ValueError(f"tensor {name} has shape {tuple(tensor.shape)}, the plan {spec.shape}")
        self.write_part(tensor)
        self.end()

    def begin(self, name: str) -> TensorSpec:
        """Start the next planned tensor; its data follows in row chunks (write_part)."""
        if self._pos >= len(self._queue):
            raise ValueError(f"unexpected tensor {name}: all planned tensors were written")
        i, spec = self._queue[self._pos]
        if name != spec.name:
            raise ValueError(f"tensor {name} written out of plan order (expected {spec.name})")
        if i != self._shard:
            self._open_shard(i)
        self._written = 0
        return spec

    def write_part(self, chunk: torch.Tensor) -> None:
        spec = self._queue[self._pos][1]
        if chunk.dtype != spec.dtype:
            raise ValueError(f"tensor {spec.name}: dtype {chunk.dtype}, the plan {spec.dtype}")
        t = chunk.detach().contiguous().cpu()
        if t.numel():
            self._fh.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
        self._written += t.numel() * t.element_size()

    def end(self) -> None:
        spec = self._queue[self._pos][1]
        if self._written != spec.nbytes:
            raise ValueError(f"tensor {spec.name}: wrote {self._written} bytes, the plan {spec.nbytes}")
        self._pos += 1

    def close(self) -> None:
        if self._pos != len(self._queue):
            missing = [s.name for _, s in self._queue[self._pos:]][:5]
            raise ValueError(f"not all tensors were written; missing e.g. {missing}")
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if len(self.names) > 1:
            weight_map = {spec.name: self.names[i] for i, shard in enumerate(self.shards) for spec in shard}
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
            tmp = self.dir / (INDEX_NAME + ".tmp")
            tmp.write_text(json.dumps(index, indent=2, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.dir / INDEX_NAME)
