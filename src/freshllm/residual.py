"""Stages ``residual-extract`` and ``residual-apply``: instruction residuals.

* ``extract``: ``R = instruct - base`` over every weight, stored as a versioned artifact
  (safetensors shards + ``manifest.json`` + the instruct model's tokenizer and chat
  template under ``tokenizer/``).
* ``apply``: ``new = target + alpha * R`` on a continued-pretrained base, another version
  of the family, or a model derived from the same base.

Both stream tensor by tensor (never a whole model in memory); arithmetic is float32 and
the result is cast to the target's dtype. ``apply`` checks every tensor name and shape
before writing anything and refuses on a mismatch, naming the tensor and both shapes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .common import atomic_dir, set_offline, setup_logging, sha256_file, write_json
from .config import load_section, parse_bytes
from .io.st_stream import ShardedReader, ShardedWriter, TensorSpec, prefetch

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "freshllm-instruction-residual/1"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "chat_template.json", "tokenizer.model",
                   "generation_config.json")
VOCAB_TENSORS = ("embed_tokens.weight", "lm_head.weight", "wte.weight", "embed_out.weight")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ResidualConfig:
    alpha: float = 1.0
    dtype: str = "float32"            # storage dtype of the residual artifact
    shard_size: str = "2GB"
    method: str = "plain"             # plain | ties | dare
    density: float = 1.0              # ties/dare: fraction of residual entries kept
    seed: int = 0                     # dare: drop mask seed
    vocab: str = "error"              # error | shared_rows
    check_finite: bool = True

    @property
    def shard_bytes(self) -> int:
        return parse_bytes(self.shard_size)

    def validate(self) -> list[str]:
        errs = []
        if self.dtype not in ("float32", "bfloat16", "float16"):
            errs.append(f"dtype: must be float32, bfloat16 or float16, got {self.dtype!r}")
        if self.method not in ("plain", "ties", "dare"):
            errs.append(f"method: must be plain, ties or dare, got {self.method!r}")
        if not 0.0 < self.density <= 1.0:
            errs.append(f"density: must be in (0, 1], got {self.density}")
        if self.vocab not in ("error", "shared_rows"):
            errs.append(f"vocab: must be error or shared_rows, got {self.vocab!r}")
        try:
            if self.shard_bytes <= 0:
                errs.append("shard_size: must be > 0")
        except ValueError as exc:
            errs.append(f"shard_size: {exc}")
        return errs


class ResidualError(ValueError):
    pass


def weights_hash(model_dir: Path) -> str:
    """Content hash of a model's weights: sha256 over its safetensors files (and index)."""
    h = hashlib.sha256()
    files = sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.safetensors.index.json"))
    for f in files:
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()


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


def _all_finite(t: torch.Tensor) -> bool:
    # aminmax propagates NaN and exposes +-Inf, ~40x faster than isfinite(t).all()
    if t.is_floating_point() and t.numel():
        lo, hi = torch.aminmax(t)
        return bool(torch.isfinite(lo) and torch.isfinite(hi))
    return True


def _check_finite(name: str, t: torch.Tensor, where: Path) -> None:
    if not _all_finite(t):
        raise ResidualError(f"{where}: tensor {name} contains NaN or Inf")


def _finite_sum(t: torch.Tensor) -> bool:
    """Cheap screen: a sum is finite unless an element is NaN/Inf (or the sum overflows,
    which the caller then tells apart with the exact check)."""
    return not t.is_floating_point() or t.numel() == 0 or math.isfinite(float(t.sum()))


def row_chunks(shape: tuple[int, ...]) -> list[tuple[int | None, int | None]]:
    """Row ranges of about CHUNK_BYTES in float32; ``(None, None)`` (the whole tensor) for
    0-d tensors."""
    if not shape:
        return [(None, None)]
    row = 4 * _numel(shape[1:])
    step = max(1, CHUNK_BYTES // max(row, 1))
    return [(i, min(i + step, shape[0])) for i in range(0, shape[0], step)] or [(0, 0)]


class _Scratch:
    """Reused flat buffers, grown on demand: ``get(key, dtype, shape)`` is a view."""

    def __init__(self):
        self.bufs: dict[str, torch.Tensor] = {}

    def get(self, key: str, dtype: torch.dtype, shape) -> torch.Tensor:
        n = _numel(shape) * dtype.itemsize
        buf = self.bufs.get(key)
        if buf is None or buf.numel() < n:
            buf = self.bufs[key] = torch.empty(n, dtype=torch.uint8)
        return buf[:n].view(dtype).view(tuple(shape))

    def f32(self, key: str, t: torch.Tensor) -> torch.Tensor:
        """``t`` itself if float32 (read buffers may be modified in place), else a float32 copy."""
        return t if t.dtype == torch.float32 else self.get(key, torch.float32, t.shape).copy_(t)

    def cast(self, key: str, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return t if t.dtype == dtype else self.get(key, dtype, t.shape).copy_(t)


@contextlib.contextmanager
def _torch_threads(n: int):
    """Chunks are cache-sized: one compute thread beats two (the other core reads ahead)."""
    old = torch.get_num_threads()
    torch.set_num_threads(min(n, old))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _is_vocab(name: str) -> bool:
    return name.endswith(VOCAB_TENSORS)


def extract(base_dir: Path, instruct_dir: Path, out: Path, cfg: ResidualConfig) -> dict:
    """Write ``R = instruct - base`` (float32 math, stored as ``cfg.dtype``) to ``out``."""
    from tqdm.auto import tqdm

    base, inst = ShardedReader(base_dir), ShardedReader(instruct_dir)
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
        raise ResidualError("base and instruct models are not the same architecture:\n  "
                            + "\n  ".join(problems))
    store = DTYPES[cfg.dtype]
    names = list(inst.specs)
    specs = [TensorSpec(n, store if inst.specs[n].dtype.is_floating_point else inst.specs[n].dtype,
                        inst.specs[n].shape) for n in names]
    norms = {}
    with atomic_dir(out) as tmp:
        writer = ShardedWriter(tmp, specs, cfg.shard_bytes, metadata={"freshllm": FORMAT})
        plan = [(name, i, j) for name in names for i, j in row_chunks(inst.specs[name].shape)]
        steps = [((base, name, i, j), (inst, name, i, j)) for name, i, j in plan]
        scratch = _Scratch()
        bar = tqdm(total=len(names), desc="extract residual", unit="tensor", mininterval=1.0)
        with _torch_threads(1):
            for (name, i, j), (b, ins) in zip(plan, prefetch(steps, ahead=READ_AHEAD)):
                if i is None or i == 0:
                    writer.begin(name)
                    norms[name] = 0.0
                if ins.is_floating_point():
                    r = scratch.f32("r", ins).sub_(b)  # float32 math, in the read buffer if f32
                    flat = r.reshape(-1)
                    # the squared norm doubles as the NaN/Inf screen of both inputs
                    sq = float(torch.dot(flat, flat)) if flat.numel() else 0.0
                    if not math.isfinite(sq):
                        if cfg.check_finite and not _all_finite(r):
                            _check_finite(name, b, base_dir)
                            # re-read: a float32 instruct chunk was overwritten by the difference
                            _check_finite(name, inst.read(name, i, j), instruct_dir)
                            raise ResidualError(f"tensor {name}: instruct - base overflows float32")
                        sq = float(flat.double().square().sum())  # finite, but the squares overflow
                    norms[name] += sq
                    writer.write_part(scratch.cast("store", r, store))
                else:
                    writer.write_part(ins)
                if j is None or j == inst.specs[name].shape[0]:
                    writer.end()
                    norms[name] **= 0.5
                    base.release(name)
                    inst.release(name)
                    bar.update(1)
        bar.close()
        writer.close()
        tok_dir = tmp / "tokenizer"
        tok_dir.mkdir()
        for fname in TOKENIZER_FILES:
            if (instruct_dir / fname).is_file():
                shutil.copy2(instruct_dir / fname, tok_dir / fname)
        inst_config = json.loads((instruct_dir / "config.json").read_text(encoding="utf-8"))
        manifest = {
            "format": FORMAT,
            "base": {"path": str(base_dir), "weights_sha256": weights_hash(base_dir)},
            "instruct": {"path": str(instruct_dir), "weights_sha256": weights_hash(instruct_dir),
                         "model_type": inst_config.get("model_type"),
                         "architectures": inst_config.get("architectures"),
                         "tie_word_embeddings": inst_config.get("tie_word_embeddings"),
                         "special_token_ids": {k: inst_config.get(k) for k in
                                               ("bos_token_id", "eos_token_id", "pad_token_id")}},
            "dtype": cfg.dtype,
            "tensors": {s.name: {"shape": list(s.shape), "dtype": str(s.dtype).replace("torch.", "")}
                        for s in specs},
            "norms": norms,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    base.close()
    inst.close()
    return {"tensors": len(names), "parameters": sum(_numel(s.shape) for s in specs),
            "bytes": sum(s.nbytes for s in specs), "dtype": cfg.dtype,
            "residual_norm": float(sum(v * v for v in norms.values()) ** 0.5)}


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def check_compatible(residual: ShardedReader, target: ShardedReader, cfg: ResidualConfig,
                     residual_dir: Path, target_dir: Path) -> None:
    """Every residual tensor must exist in the target with the same shape (vocab rows may
    differ under ``vocab: shared_rows``), and every floating target tensor must have a
    residual: nothing is skipped silently."""
    problems = []
    for name in sorted(set(residual.specs) | set(target.specs)):
        if name not in target.specs:
            problems.append(f"tensor {name}: in the residual {residual_dir} but not in the target {target_dir}")
            continue
        if name not in residual.specs:
            if target.specs[name].dtype.is_floating_point:
                problems.append(f"tensor {name}: in the target {target_dir} but not in the residual "
                                f"{residual_dir} (e.g. tied vs untied embeddings)")
            continue
        rs, ts = residual.specs[name].shape, target.specs[name].shape
        if rs == ts:
            continue
        if (_is_vocab(name) and cfg.vocab == "shared_rows" and len(rs) == len(ts)
                and rs[1:] == ts[1:]):
            continue
        hint = " (vocabulary sizes differ: set residual.vocab: shared_rows to apply to the shared rows)" \
            if _is_vocab(name) and rs[1:] == ts[1:] else ""
        problems.append(f"tensor {name}: residual shape {tuple(rs)} != target shape {tuple(ts)}{hint}")
    if problems:
        raise ResidualError(f"residual {residual_dir} does not fit target {target_dir}:\n  "
                            + "\n  ".join(problems))


def sparsify(r: torch.Tensor, name: str, cfg: ResidualConfig) -> torch.Tensor:
    """``ties``: keep the ``density`` largest-magnitude entries (TIES trim; with a single
    residual, sign election is a no-op). ``dare``: drop entries at random with p = 1 -
    density and rescale the rest by 1 / density."""
    if cfg.method == "plain" or cfg.density >= 1.0 or r.numel() == 0:
        return r
    if cfg.method == "ties":
        k = max(1, int(round(cfg.density * r.numel())))
        thresh = r.abs().flatten().kthvalue(r.numel() - k + 1).values
        return torch.where(r.abs() >= thresh, r, torch.zeros_like(r))
    seed = int.from_bytes(hashlib.sha256(f"{cfg.seed}:{name}".encode()).digest()[:8], "little") >> 1
    gen = torch.Generator().manual_seed(seed)
    keep = torch.rand(r.shape, generator=gen) < cfg.density
    return torch.where(keep, r / cfg.density, torch.zeros_like(r))


def _layer_of(name: str) -> str:
    parts = name.split(".")
    if "layers" in parts:
        i = parts.index("layers")
        return ".".join(parts[: i + 2])
    return name


def apply(residual_dir: Path, target_dir: Path, out: Path, cfg: ResidualConfig,
          base_dir: Path | None = None) -> dict:
    """Write ``target + alpha * R`` to ``out`` (target dtype), with the instruct tokenizer."""
    from tqdm.auto import tqdm

    manifest_path = residual_dir / MANIFEST
    if not manifest_path.is_file():
        raise ResidualError(f"not a residual artifact (no {MANIFEST}): {residual_dir}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ResidualError(f"{manifest_path}: unknown format {manifest.get('format')!r}")
    residual, target = ShardedReader(residual_dir), ShardedReader(target_dir)
    check_compatible(residual, target, cfg, residual_dir, target_dir)
    base = ShardedReader(base_dir) if base_dir is not None else None
    names = list(target.specs)
    cosines: dict[str, list[float]] = {}
    with atomic_dir(out) as tmp:
        writer = ShardedWriter(tmp, [target.specs[n] for n in names], cfg.shard_bytes)
        plain = cfg.method == "plain"  # ties/dare need whole residual tensors (top-k, one mask)
        plan, steps = [], []
        for name in names:
            spec = target.specs[name]
            has_r = name in residual.specs and spec.dtype.is_floating_point
            with_base = (has_r and base is not None and name in base.specs
                         and base.specs[name].shape == spec.shape)
            r_rows = residual.specs[name].shape[0] if has_r and spec.shape else 0
            for i, j in row_chunks(spec.shape) if plain else [(None, None)]:
                r_req = None
                if has_r:
                    if i is None:  # whole tensor; vocab: shared_rows reads the shared rows only
                        r_req = ((residual, name, None, None) if not spec.shape or r_rows == spec.shape[0]
                                 else (residual, name, 0, min(r_rows, spec.shape[0])))
                    elif i < min(j, r_rows):
                        r_req = (residual, name, i, min(j, r_rows))
                plan.append((name, i, j, has_r, with_base, r_req))
                steps.append(((target, name, i, j), r_req, (base, name, i, j) if with_base else None))
        scratch = _Scratch()
        bar = tqdm(total=len(names), desc="apply residual", unit="tensor", mininterval=1.0)
        chunks = prefetch(steps, ahead=plain and READ_AHEAD)
        with _torch_threads(1 if plain else torch.get_num_threads()):
            for (name, i, j, has_r, with_base, r_req), (t, r, b) in zip(plan, chunks):
                spec = target.specs[name]
                if i is None or i == 0:
                    writer.begin(name)
                    dot = nt = nb = 0.0
                if with_base:
                    tf, bf = t.float(), b.float()
                    dot += float((tf * bf).sum())
                    nt += float(tf.square().sum())
                    nb += float(bf.square().sum())
                    del tf, bf
                if has_r and r is not None and plain and r.dtype == torch.float32 and r.shape == t.shape:
                    new = torch.add(t, r, alpha=cfg.alpha, out=r)  # float32, in r's read buffer
                elif has_r:
                    new = scratch.get("new", torch.float32, t.shape).copy_(t)
                    if r is not None:
                        if not plain:
                            r = sparsify(r.float(), name, cfg)
                        new[: r.shape[0]].add_(r, alpha=cfg.alpha)
                else:
                    new = t
                out_t = scratch.cast("out", new, spec.dtype)
                # one cheap pass over what is written screens target and residual (NaN/Inf
                # propagate through t + alpha * R); alpha = 0 would hide a residual's NaN
                if cfg.check_finite and (not _finite_sum(out_t) or (r_req is not None and cfg.alpha == 0)):
                    _check_finite(name, t, target_dir)
                    if r_req is not None:  # re-read: the fast path summed into r's buffer
                        _check_finite(name, residual.read(*r_req[1:]), residual_dir)
                    if not _all_finite(out_t):
                        raise ResidualError(f"tensor {name}: target + alpha * residual overflows "
                                            f"{spec.dtype}")
                writer.write_part(out_t)
                del t, r, b, new, out_t
                if j is None or j == spec.shape[0]:
                    writer.end()
                    if with_base:
                        d = (nt ** 0.5) * (nb ** 0.5)
                        cosines.setdefault(_layer_of(name), []).append(dot / d if d > 0 else 1.0)
                    for reader in (target, residual, base):
                        if reader is not None and name in reader.specs:
                            reader.release(name)
                    bar.update(1)
        bar.close()
        writer.close()
        _write_config_and_tokenizer(tmp, target_dir, residual_dir, manifest)
    residual.close()
    target.close()
    report = {"alpha": cfg.alpha, "method": cfg.method, "density": cfg.density,
              "tensors": len(names), "residual_dtype": manifest["dtype"],
              "residual_base_sha256": manifest["base"]["weights_sha256"]}
    if cosines:
        per_layer = {k: sum(v) / len(v) for k, v in cosines.items()}
        report["target_vs_base_cosine"] = {"min": min(per_layer.values()),
                                           "mean": sum(per_layer.values()) / len(per_layer),
                                           "per_layer": per_layer}
    return report


def _write_config_and_tokenizer(tmp: Path, target_dir: Path, residual_dir: Path, manifest: dict) -> None:
    """Target config + the instruct model's tokenizer, chat template, special token ids."""
    config = json.loads((target_dir / "config.json").read_text(encoding="utf-8"))
    for key, value in manifest["instruct"]["special_token_ids"].items():
        if value is not None:
            config[key] = value
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    tok_dir = residual_dir / "tokenizer"
    for f in sorted(tok_dir.iterdir()) if tok_dir.is_dir() else []:
        shutil.copy2(f, tmp / f.name)
    for f in TOKENIZER_FILES:  # fall back to the target's own files if the residual lacks them
        if not (tmp / f).exists() and (target_dir / f).is_file():
            shutil.copy2(target_dir / f, tmp / f)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("extract", help="R = instruct - base")
    ex.add_argument("--base", required=True, type=Path)
    ex.add_argument("--instruct", required=True, type=Path)
    ex.add_argument("--out", required=True, type=Path)
    ex.add_argument("--metrics", type=Path, default=None)
    apx = sub.add_parser("apply", help="new = target + alpha * R")
    apx.add_argument("--residual", required=True, type=Path)
    apx.add_argument("--target", required=True, type=Path)
    apx.add_argument("--out", required=True, type=Path)
    apx.add_argument("--base", type=Path, default=None,
                     help="the residual's base model, for the target-vs-base cosine report")
    apx.add_argument("--metrics", type=Path, default=None)
    for p in (ex, apx):
        p.add_argument("--params", dest="params_sub", default=None)
    args = ap.parse_args(argv)
    setup_logging()
    set_offline()
    cfg = load_section(ResidualConfig, "residual", args.params_sub or args.params)
    start = time.perf_counter()
    if args.cmd == "extract":
        stats = extract(args.base, args.instruct, args.out, cfg)
    else:
        stats = apply(args.residual, args.target, args.out, cfg, base_dir=args.base)
    stats["seconds"] = round(time.perf_counter() - start, 3)  # the work, without start-up and imports
    stats["config"] = asdict(cfg)
    if args.metrics:
        write_json(args.metrics, stats)
    log.info("%s done: %s", args.cmd, {k: v for k, v in stats.items() if k != "config"})


if __name__ == "__main__":
    main()
