"""The safetensors file format, checked strictly: dtype tables, tensor specs, and the header
parser that validates names, dtypes, shapes and byte ranges before anything is read."""

from __future__ import annotations

import json
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPE_TO_ST = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
               torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
               torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
for _t, _s in (("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"), ("uint16", "U16"),
               ("uint32", "U32"), ("uint64", "U64")):
    if hasattr(torch, _t):
        DTYPE_TO_ST[getattr(torch, _t)] = _s
ST_TO_DTYPE = {v: k for k, v in DTYPE_TO_ST.items()}
INDEX_NAME = "model.safetensors.index.json"
MAX_HEADER_BYTES = 100 * 2**20  # the limit safetensors itself enforces

if sys.byteorder != "little":  # safetensors data is little-endian; we read it as is
    raise ImportError("freshllm.io.st_stream needs a little-endian machine")


class SafetensorsFormatError(ValueError):
    """A safetensors file or index that is malformed (the message names the file)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    @property
    def row_nbytes(self) -> int:
        """Bytes of one row (dim 0); 0 for 0-d tensors and tensors without rows."""
        return self.nbytes // self.shape[0] if self.shape and self.shape[0] else 0


@dataclass(frozen=True)
class TensorEntry:
    """Where a tensor's bytes lie: ``path`` at absolute ``offset``, ``spec.nbytes`` long."""
    spec: TensorSpec
    path: Path
    offset: int


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise SafetensorsFormatError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def parse_header(path: str | Path) -> tuple[dict[str, str], dict[str, TensorEntry]]:
    """Read and validate a safetensors header: ``(metadata, {name: TensorEntry})``.

    Checked like safetensors itself does: the header length fits the file, the header is a
    JSON object without duplicate keys, every tensor has a known dtype, a non-negative
    integer shape and ``data_offsets`` whose length is ``numel * itemsize``, and the
    tensors tile the data section exactly (no overlap, no gap, nothing past the end of the
    file). Any violation raises :class:`SafetensorsFormatError` naming the file (and the
    tensor)."""
    path = Path(path)

    def bad(msg: str) -> SafetensorsFormatError:
        return SafetensorsFormatError(f"{path}: not a valid safetensors file: {msg}")

    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        raw = fh.read(8)
        if len(raw) != 8:
            raise bad(f"{size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", raw)
        if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
            raise bad(f"header length {n} out of range (file of {size} bytes, limit {MAX_HEADER_BYTES})")
        raw = fh.read(n)
    if len(raw) != n:
        raise bad(f"header truncated ({len(raw)} of {n} bytes)")
    if not raw.startswith(b"{"):
        raise bad("header does not start with '{'")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as exc:
        raise bad(f"header is not UTF-8 ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise bad(f"corrupt JSON header ({exc.msg} at byte {exc.pos})") from exc
    except SafetensorsFormatError as exc:
        raise bad(f"header has a {exc}") from exc
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise bad("__metadata__ is not a string-to-string map")
    data_start, data_len = 8 + n, size - 8 - n
    entries: dict[str, TensorEntry] = {}
    ranges = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise bad(f"tensor {name}: entry is not an object")
        dt, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dt not in ST_TO_DTYPE:
            raise bad(f"tensor {name}: unsupported dtype {dt!r} (known: {', '.join(ST_TO_DTYPE)})")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise bad(f"tensor {name}: shape {shape!r} is not a list of non-negative integers")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(o) for o in offs)
                or not 0 <= offs[0] <= offs[1]):
            raise bad(f"tensor {name}: data_offsets {offs!r} are not [begin, end] with 0 <= begin <= end")
        spec = TensorSpec(name, ST_TO_DTYPE[dt], tuple(shape))
        if offs[1] - offs[0] != spec.nbytes:
            raise bad(f"tensor {name}: data_offsets {offs} span {offs[1] - offs[0]} bytes, but "
                      f"{dt} {list(shape)} needs {spec.nbytes}")
        if offs[1] > data_len:
            raise bad(f"tensor {name}: data_offsets {offs} run past the end of the file (data section "
                      f"of {data_len} bytes; truncated?)")
        entries[name] = TensorEntry(spec, path, data_start + offs[0])
        ranges.append((offs[0], offs[1], name))
    end = 0
    for b, e, name in sorted(ranges):
        if b != end:
            raise bad(f"tensor {name}: data_offsets [{b}, {e}] "
                      + ("overlap the previous tensor" if b < end
                         else "leave a gap after the previous tensor")
                      + f" (which ends at {end})")
        end = e
    if end != data_len:
        raise bad(f"{data_len - end} bytes after the last tensor's data")
    return metadata, entries
