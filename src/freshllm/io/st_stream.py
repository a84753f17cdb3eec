"""Tensor-by-tensor streaming over (sharded) safetensors checkpoints, with plain file I/O.

:class:`ShardedReader` parses and validates the safetensors headers itself (names,
dtypes, shapes, byte ranges) and reads tensors or row ranges of tensors with ``preadv``
(``seek`` + ``readinto`` where that is missing) into caller-owned buffers: nothing is
memory-mapped, so the process's resident memory is the buffers it holds, not the mapped
pages of the shards it touched. :func:`prefetch` reads the next chunk in a background
thread while the caller works on the current one.

:class:`ShardedWriter` plans the output shards from the tensor specs up front, writes
each shard's header first and then streams tensors into place with plain writes, one
chunk at a time, so peak memory is about one chunk, whatever the model size. Output
follows HF's layout (``model-0000i-of-0000N.safetensors`` +
``model.safetensors.index.json``) and loads with ``safe_open`` and ``from_pretrained``.
"""

from __future__ import annotations

import json
import os
import queue
import struct
import threading
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch

from .st_format import (  # re-exported: the format lives in st_format
    DTYPE_TO_ST,
    INDEX_NAME,
    SafetensorsFormatError,
    TensorEntry,
    TensorSpec,
    parse_header,
)


def _readinto_at(fd: int, view: memoryview, offset: int, path: Path, name: str) -> None:
    """Fill ``view`` from ``fd`` at ``offset`` (plain reads; loops over short reads)."""
    done, n = 0, len(view)
    while done < n:
        if hasattr(os, "preadv"):
            got = os.preadv(fd, [view[done:]], offset + done)
        else:  # pragma: no cover - non-POSIX
            os.lseek(fd, offset + done, os.SEEK_SET)
            got = os.readv(fd, [view[done:]])
        if got <= 0:
            raise SafetensorsFormatError(f"{path}: tensor {name}: file ended after {done} of {n} bytes "
                                         "(changed since its header was read?)")
        done += got


def byte_view(t: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, without a copy."""
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())


class ShardedReader:
    """Access to the tensors of an HF model directory (one or many shards) by plain reads.

    Tensors and row ranges are read into fresh tensors or into a caller's ``out`` buffer
    (a flat ``uint8`` tensor of at least the chunk's size): the result is then a view of
    that buffer. Reads are thread-safe (``preadv`` at an offset; no shared file position).
    """

    def __init__(self, model_dir: str | Path):
        self.dir = Path(model_dir)
        index = self.dir / INDEX_NAME
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                files = sorted(set(weight_map.values()))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise SafetensorsFormatError(f"{index}: not a valid safetensors index "
                                             f"(no weight_map of tensor -> file; {exc})") from exc
        else:
            files = sorted(p.name for p in self.dir.glob("*.safetensors"))
            if not files:
                raise FileNotFoundError(f"no *.safetensors weights in {self.dir}")
            if len(files) > 1:  # transformers loads one file or what an index lists, never a guess
                shown = ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")
                raise SafetensorsFormatError(f"{self.dir}: {len(files)} *.safetensors files ({shown}) "
                                             f"but no {INDEX_NAME} to say which form the model")
            weight_map = None
        self.entries: dict[str, TensorEntry] = {}
        self.specs: dict[str, TensorSpec] = {}
        self.file_of: dict[str, Path] = {}
        for fname in files:
            path = self.dir / fname
            if not path.is_file():
                raise FileNotFoundError(f"{self.dir}: shard {fname} listed in the index is missing")
            for name, entry in parse_header(path)[1].items():
                if name in self.entries:
                    raise SafetensorsFormatError(f"{path}: tensor {name} is also in {self.file_of[name]}")
                self.entries[name] = entry
                self.specs[name] = entry.spec
                self.file_of[name] = path
        if weight_map is not None:
            missing = sorted(set(weight_map) - set(self.specs))
            if missing:
                raise SafetensorsFormatError(f"{self.dir}: tensors in the index but not in the shards: "
                                             f"{missing[:5]}")
        self._fds: dict[Path, int] = {}
        self._lock = threading.Lock()
        self._left = {p: sum(1 for f in self.file_of.values() if f == p) for p in set(self.file_of.values())}

    def names(self) -> list[str]:
        return list(self.specs)

    def _fd(self, path: Path) -> int:
        with self._lock:
            fd = self._fds.get(path)
            if fd is None:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                if hasattr(os, "posix_fadvise"):  # sequential: larger readahead on a cold cache
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
                self._fds[path] = fd
            return fd

    def chunk_nbytes(self, name: str, start: int | None = None, stop: int | None = None) -> int:
        """Bytes of rows ``start:stop`` of ``name`` (the whole tensor when they are None)."""
        spec = self.specs[name]
        return spec.nbytes if start is None else (stop - start) * spec.row_nbytes

    def read(self, name: str, start: int | None = None, stop: int | None = None,
             out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``start:stop`` (dim 0) of ``name``, or the whole tensor when they are None,
        read without touching the rest; into ``out`` (a flat uint8 buffer) when given."""
        entry = self.entries[name]
        spec = entry.spec
        if start is None:
            shape = spec.shape
        else:
            if not spec.shape:
                raise ValueError(f"{entry.path}: tensor {name} is 0-d: it has no rows")
            if not 0 <= start <= stop <= spec.shape[0]:
                raise ValueError(f"{entry.path}: tensor {name}: rows {start}:{stop} out of range "
                                 f"(shape {spec.shape})")
            shape = (stop - start, *spec.shape[1:])
        nbytes = self.chunk_nbytes(name, start, stop)
        if out is None:
            buf = torch.empty(nbytes, dtype=torch.uint8)
        else:
            if out.dtype != torch.uint8 or out.dim() != 1 or not out.is_contiguous() or out.numel() < nbytes:
                raise ValueError(f"tensor {name}: out must be a contiguous 1-d uint8 tensor of at least "
                                 f"{nbytes} bytes")
            buf = out[:nbytes]
        if nbytes:
            _readinto_at(self._fd(entry.path), memoryview(buf.numpy()),
                         entry.offset + (start or 0) * spec.row_nbytes, entry.path, name)
        return buf.view(spec.dtype).view(shape)

    def get(self, name: str) -> torch.Tensor:
        return self.read(name)

    def rows(self, name: str, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``start:stop`` of a tensor (dim 0), read without loading the rest."""
        return self.read(name, start, stop, out=out)

    def release(self, name: str) -> None:
        """Mark ``name`` done; a shard whose tensors are all done is closed."""
        path = self.file_of[name]
        with self._lock:
            self._left[path] -= 1
            if self._left[path] <= 0 and path in self._fds:
                os.close(self._fds.pop(path))

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def __enter__(self) -> "ShardedReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


# A read request: (reader, tensor name, start row, stop row); start/stop None: whole tensor.
ReadRequest = tuple[ShardedReader, str, "int | None", "int | None"]


def prefetch(steps: Sequence[Sequence[ReadRequest | None]], ahead: bool = True, slots: int = 3
             ) -> Iterator[list[torch.Tensor | None]]:
    """Yield the tensors of each step (``None`` stays ``None``). With ``ahead``, a background
    thread reads up to ``slots - 1`` steps ahead while the caller works on the current one
    (reads release the GIL). Tensors are views of reused buffers (one per position and
    slot, sized for the largest request): they are valid, and may be modified in place,
    until the next step is asked for."""
    if not steps:
        return
    width = max(len(s) for s in steps)
    need = [0] * width
    for step in steps:
        for p, req in enumerate(step):
            if req is not None:
                need[p] = max(need[p], req[0].chunk_nbytes(*req[1:]))
    nslots = max(2, slots) if ahead else 1
    bufs = [[torch.empty(n, dtype=torch.uint8) for n in need] for _ in range(nslots)]

    def load(k: int, slot: int) -> list[torch.Tensor | None]:
        return [None if req is None else req[0].read(*req[1:], out=bufs[slot][p])
                for p, req in enumerate(steps[k])]

    if not ahead:
        for k in range(len(steps)):
            yield load(k, 0)
        return
    free: queue.SimpleQueue = queue.SimpleQueue()
    filled: queue.SimpleQueue = queue.SimpleQueue()
    for slot in range(nslots):
        free.put(slot)
    stop = threading.Event()

    def reader() -> None:
        try:
            for k in range(len(steps)):
                slot = free.get()
                if stop.is_set():
                    return
                filled.put((slot, load(k, slot), None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            filled.put((None, None, exc))

    thread = threading.Thread(target=reader, name="st-prefetch", daemon=True)
    thread.start()
    try:
        held = None
        for _ in range(len(steps)):
            if held is not None:
                free.put(held)
            held, tensors, exc = filled.get()
            if exc is not None:
                raise exc
            yield tensors
    finally:
        stop.set()
        free.put(-1)  # wakes the reader if it waits for a slot
        thread.join()


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
    """Writes planned shards with plain (unbuffered) writes; call :meth:`write` once per
    tensor in plan order, or :meth:`begin`, :meth:`write_part` per row chunk, :meth:`end`.
    Write into a temporary directory (e.g. ``common.atomic_dir``) for an atomic result."""

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

    def _close_shard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _open_shard(self, i: int) -> None:
        self._close_shard()
        header, offset = {"__metadata__": self.metadata}, 0
        for spec in self.shards[i]:
            header[spec.name] = {"dtype": DTYPE_TO_ST[spec.dtype], "shape": list(spec.shape),
                                 "data_offsets": [offset, offset + spec.nbytes]}
            offset += spec.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self._fh = open(self.dir / self.names[i], "wb", buffering=0)
        self._write(struct.pack("<Q", len(raw)) + raw)
        self._shard = i

    def _write(self, data) -> None:
        view = memoryview(data)
        while view.nbytes:
            n = self._fh.write(view)
            view = view[n:]

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
        t = chunk.detach().cpu().contiguous()
        nbytes = t.numel() * t.element_size()
        if self._written + nbytes > spec.nbytes:
            raise ValueError(f"tensor {spec.name}: {self._written + nbytes} bytes written, the plan "
                             f"{spec.nbytes}")
        if nbytes:
            self._write(byte_view(t))
        self._written += nbytes

    def end(self) -> None:
        spec = self._queue[self._pos][1]
        if self._written != spec.nbytes:
            raise ValueError(f"tensor {spec.name}: wrote {self._written} bytes, the plan {spec.nbytes}")
        self._pos += 1

    def close(self) -> None:
        if self._pos != len(self._queue):
            missing = [s.name for _, s in self._queue[self._pos:]][:5]
            raise ValueError(f"not all tensors were written; missing e.g. {missing}")
        self._close_shard()
        if len(self.names) > 1:
            weight_map = {spec.name: self.names[i] for i, shard in enumerate(self.shards) for spec in shard}
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
            tmp = self.dir / (INDEX_NAME + ".tmp")
            tmp.write_text(json.dumps(index, indent=2, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.dir / INDEX_NAME)
