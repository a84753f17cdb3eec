"""The streaming skeleton shared by ``extract`` and ``apply``, and its chunk helpers.

:func:`stream` walks the output tensors in plan order, as row chunks or whole tensors,
reads each step's inputs (ahead, in a background thread, where that pays), begins a
tensor in the writer on its first chunk and, after its last, ends it, releases it in the
readers (closing shards that are done) and ticks the progress bar. The caller computes
and writes each chunk.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Optional, Sequence

import torch

from ..io.st_stream import ReadRequest, ShardedReader, ShardedWriter, TensorSpec, prefetch
from .config import ResidualError
from .methods import Mode

# Row chunks of about CHUNK_BYTES in float32: small enough that a chunk's inputs, its
# float32 sum and its output stay in the CPU cache between the read, the arithmetic and
# the write (1 MiB measured fastest on the 1.24B benchmark: 4 MiB and up fall out of
# cache, 256 KiB and below pay per-chunk overhead); peak memory does not depend on it
# beyond a few such buffers.
CHUNK_BYTES = 1 << 20
# Read the next chunks in a background thread while this one is computed and written.
# It pays only with a core to spare: on 2 cores (the compute thread plus the kernel's
# writeback) it measured no faster, and slower when other jobs load the machine.
READ_AHEAD = (os.cpu_count() or 1) >= 4


def row_chunks(spec: TensorSpec) -> list[tuple[int | None, int | None]]:
    """Row ranges of about CHUNK_BYTES in float32; ``(None, None)`` (the whole tensor) for
    0-d tensors."""
    if not spec.shape:
        return [(None, None)]
    rows = spec.shape[0]
    row = 4 * (spec.numel // rows if rows else 0)
    step = max(1, CHUNK_BYTES // max(row, 1))
    return [(i, min(i + step, rows)) for i in range(0, rows, step)] or [(0, 0)]


class Chunk(NamedTuple):
    """One step of :func:`stream`: rows ``start:stop`` of tensor ``name`` (both None: the
    whole tensor), the read requests of its inputs, and whether it is the tensor's first
    or last."""
    name: str
    start: int | None
    stop: int | None
    requests: tuple[ReadRequest | None, ...]
    first: bool
    last: bool


Requests = Callable[[str, Optional[int], Optional[int]], Sequence[Optional[ReadRequest]]]


@contextlib.contextmanager
def stream(specs: Sequence[TensorSpec], requests: Requests, writer: ShardedWriter,
           readers: Sequence[ShardedReader], desc: str, mode: Mode = "chunks"
           ) -> Iterator[Iterator[tuple[Chunk, list[torch.Tensor | None]]]]:
    """``with stream(...) as steps: for chunk, tensors in steps: ...`` over the output
    ``specs`` (the writer's plan, in order). ``requests(name, start, stop)`` says what to
    read for a step (one request or None per input); ``tensors`` are those inputs, views
    of reused buffers valid until the next step. ``mode`` ``"chunks"``: row chunks of
    about CHUNK_BYTES, read ahead where READ_AHEAD, one compute thread (chunks are
    cache-sized; the other core reads ahead); ``"tensors"``: whole tensors, all threads."""
    steps = _steps(specs, requests, writer, readers, desc, mode)
    threads = 1 if mode == "chunks" else torch.get_num_threads()
    with _torch_threads(threads), contextlib.closing(steps):
        yield steps


def _steps(specs, requests, writer, readers, desc, mode):
    from tqdm.auto import tqdm

    plan = [(spec, i, j) for spec in specs
            for i, j in (row_chunks(spec) if mode == "chunks" else [(None, None)])]
    reqs = [tuple(requests(spec.name, i, j)) for spec, i, j in plan]
    bar = tqdm(total=len(specs), desc=desc, unit="tensor", mininterval=1.0)
    tensors_of = prefetch(reqs, ahead=mode == "chunks" and READ_AHEAD)
    try:
        for (spec, i, j), req, tensors in zip(plan, reqs, tensors_of):
            chunk = Chunk(spec.name, i, j, req, first=i is None or i == 0,
                          last=j is None or j == spec.shape[0])
            if chunk.first:
                writer.begin(spec.name)
            yield chunk, tensors
            if chunk.last:
                writer.end()
                for reader in readers:
                    if spec.name in reader.specs:
                        reader.release(spec.name)
                bar.update(1)
    finally:  # also on an error in the caller's step: stop the read-ahead thread
        tensors_of.close()
        bar.close()


@contextlib.contextmanager
def _torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(min(n, old))
    try:
        yield
    finally:
        torch.set_num_threads(old)


class Scratch:
    """Reused flat buffers, grown on demand: ``get(key, dtype, shape)`` is a view."""

    def __init__(self):
        self.bufs: dict[str, torch.Tensor] = {}

    def get(self, key: str, dtype: torch.dtype, shape) -> torch.Tensor:
        n = TensorSpec(key, dtype, tuple(shape)).nbytes
        buf = self.bufs.get(key)
        if buf is None or buf.numel() < n:
            buf = self.bufs[key] = torch.empty(n, dtype=torch.uint8)
        return buf[:n].view(dtype).view(tuple(shape))

    def f32(self, key: str, t: torch.Tensor) -> torch.Tensor:
        """``t`` itself if float32 (read buffers may be modified in place), else a float32 copy."""
        return t if t.dtype == torch.float32 else self.get(key, torch.float32, t.shape).copy_(t)

    def cast(self, key: str, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return t if t.dtype == dtype else self.get(key, dtype, t.shape).copy_(t)


def all_finite(t: torch.Tensor) -> bool:
    # aminmax propagates NaN and exposes +-Inf, ~40x faster than isfinite(t).all()
    if t.is_floating_point() and t.numel():
        lo, hi = torch.aminmax(t)
        return bool(torch.isfinite(lo) and torch.isfinite(hi))
    return True


def check_finite(name: str, t: torch.Tensor, where: Path) -> None:
    if not all_finite(t):
        raise ResidualError(f"{where}: tensor {name} contains NaN or Inf")


def finite_sum(t: torch.Tensor) -> bool:
    """Cheap screen: a sum is finite unless an element is NaN/Inf (or the sum overflows,
    which the caller then tells apart with the exact check)."""
    return not t.is_floating_point() or t.numel() == 0 or math.isfinite(float(t.sum()))
