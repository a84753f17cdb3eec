"""``extract``: ``R = instruct - base`` over every weight, as a residual artifact."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..common import atomic_dir
from ..io.st_stream import ShardedReader, ShardedWriter, TensorSpec
from .artifact import FORMAT, dtypes, write_manifest
from .checks import check_out_path, one_line
from .chunks import Scratch, all_finite, check_finite, stream
from .config import DTYPES, ResidualConfig, ResidualError


def check_same_architecture(base: ShardedReader, inst: ShardedReader, base_dir: Path,
                            instruct_dir: Path) -> None:
    problems = []
    for name in sorted(set(base.specs) | set(inst.specs)):
        if name not in base.specs:
            problems.append(f"{name}: only in instruct {instruct_dir}")
        elif name not in inst.specs:
            problems.append(f"{name}: only in base {base_dir}")
        elif base.specs[name].shape != inst.specs[name].shape:
            problems.append(f"{name}: base shape {base.specs[name].shape} != instruct shape "
                            f"{inst.specs[name].shape}")
    if problems:
        raise ResidualError(one_line(f"base {base_dir} and instruct {instruct_dir} are not the same "
                                     "architecture", problems))


def extract(base_dir: Path, instruct_dir: Path, out: Path, cfg: ResidualConfig) -> dict:
    """Write ``R = instruct - base`` (float32 math, stored as ``cfg.dtype``) to ``out``."""
    check_out_path(out, {"base": base_dir, "instruct": instruct_dir})
    base, inst = ShardedReader(base_dir), ShardedReader(instruct_dir)
    check_same_architecture(base, inst, base_dir, instruct_dir)
    store = DTYPES[cfg.dtype]
    names = list(inst.specs)
    specs = [TensorSpec(n, store if inst.specs[n].dtype.is_floating_point else inst.specs[n].dtype,
                        inst.specs[n].shape) for n in names]
    norms = {}
    with atomic_dir(out) as tmp:
        writer = ShardedWriter(tmp, specs, cfg.shard_bytes, metadata={"freshllm": FORMAT})
        scratch = Scratch()
        with stream(specs, lambda name, i, j: ((base, name, i, j), (inst, name, i, j)), writer,
                    (base, inst), desc="extract residual") as steps:
            for chunk, (b, ins) in steps:
                name = chunk.name
                if chunk.first:
                    norms[name] = 0.0
                if ins.is_floating_point():
                    r = scratch.f32("r", ins).sub_(b)  # float32 math, in the read buffer if f32
                    flat = r.reshape(-1)
                    # the squared norm doubles as the NaN/Inf screen of both inputs
                    sq = float(torch.dot(flat, flat)) if flat.numel() else 0.0
                    if not math.isfinite(sq):
                        if cfg.check_finite and not all_finite(r):
                            check_finite(name, b, base_dir)
                            # re-read: a float32 instruct chunk was overwritten by the difference
                            check_finite(name, inst.read(name, chunk.start, chunk.stop), instruct_dir)
                            raise ResidualError(f"tensor {name}: instruct - base overflows float32")
                        sq = float(flat.double().square().sum())  # finite, but the squares overflow
                    norms[name] += sq
                    writer.write_part(scratch.cast("store", r, store))
                else:
                    writer.write_part(ins)
                if chunk.last:
                    norms[name] **= 0.5
        writer.close()
        write_manifest(tmp, base_dir, instruct_dir, cfg.dtype, specs, norms)
    base.close()
    inst.close()
    return {"tensors": len(names), "parameters": sum(s.numel for s in specs),
            "bytes": sum(s.nbytes for s in specs), "dtype": cfg.dtype,
            "base_dtype": dtypes(base.specs.values()), "instruct_dtype": dtypes(inst.specs.values()),
            "residual_norm": float(sum(v * v for v in norms.values()) ** 0.5)}
