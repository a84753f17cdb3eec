"""Stand-in hub snapshots: a directory laid out as ``huggingface_hub.snapshot_download`` leaves
it, with the exact hub ``config.json`` (shrunk in depth/width only when asked), the hub
``generation_config.json``, the real tokenizer files (:mod:`.tokenizers`) and seeded random bf16
safetensors weights, sharded with ``model.safetensors.index.json`` when the hub model is.

Weights (all seeded per tensor, so any tensor can be regenerated on its own):

* a base model: ``N(0, initializer_range)`` for embeddings, projections and (Qwen2) q/k/v
  biases, ones for RMSNorm weights;  the stream of each tensor is keyed by
  ``(base model id, seed, tensor name)``, so LLaMA 3 vs 3.1 (or Qwen2 vs 2.5) stand-ins are
  *different* bases with the same shapes even at the same seed;
* an instruct model (or any model built ``perturb_of`` a directory): ``bf16(base + delta)`` with
  ``delta = eps * scale * N(0, 1)`` keyed by ``(instruct model id, perturb_seed, name)``, where
  ``scale`` is 1 for norm weights and ``initializer_range`` otherwise.  :func:`expected_perturbation`
  regenerates ``delta``, so ``instruct - base`` can be checked exactly.

The recipe is written to ``freshllm_standin.json`` next to the weights; building the same recipe
into an existing directory returns at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..common import atomic_dir, write_json
from .architectures import SHRINK_KEYS, get_arch, param_count, shard_files, shrink_config
from .tokenizers import CACHE_KEY, save_tokenizer, write_generation_config

log = logging.getLogger("freshllm.standins")

__all__ = ["MANIFEST", "DEFAULT_EPS", "parse_shrink", "tensor_shapes", "build_standin",
           "build_family_pair", "expected_perturbation", "base_tensor", "read_manifest",
           "load_state_dict"]

MANIFEST = "freshllm_standin.json"
STANDIN_REV = 1  # bump when the weight recipe changes
DEFAULT_EPS = 0.1
# what the examples use: a few MB of layers next to the real-size vocab matrices
EXAMPLE_SHRINK = {"hidden": 64, "layers": 2, "intermediate": 128, "heads": 4, "kv_heads": 2}


def parse_shrink(spec: str | Mapping[str, int] | None) -> dict[str, int] | None:
    """``"hidden=64,layers=2,intermediate=128,heads=4,kv_heads=2"`` -> dict (None stays None)."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, Mapping):
        out = {str(k): int(v) for k, v in spec.items()}
    else:
        out = {}
        for part in spec.split(","):
            key, sep, val = part.strip().partition("=")
            if not sep:
                raise ValueError(f"bad shrink item {part!r}; expected key=value")
            out[key.strip()] = int(val)
    bad = set(out) - set(SHRINK_KEYS)
    if bad:
        raise ValueError(f"unknown shrink keys {sorted(bad)}; use {sorted(SHRINK_KEYS)}")
    return out


def tensor_shapes(config: Mapping[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every stored tensor, in the model's state-dict order (the order the hub
    shards follow).  Tied models store no ``lm_head.weight``."""
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    hd = config.get("head_dim") or h // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd
    qwen = config["model_type"] == "qwen2"
    attn_bias = qwen or bool(config.get("attention_bias"))
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (v, h))]
    for n in range(config["num_hidden_layers"]):
        p = f"model.layers.{n}."
        for proj, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
            out.append((f"{p}self_attn.{proj}.weight", (rows, h)))
            if attn_bias:
                out.append((f"{p}self_attn.{proj}.bias", (rows,)))
        out.append((f"{p}self_attn.o_proj.weight", (h, q)))
        if not qwen and config.get("attention_bias"):
            out.append((f"{p}self_attn.o_proj.bias", (h,)))
        out += [(f"{p}mlp.gate_proj.weight", (i, h)), (f"{p}mlp.up_proj.weight", (i, h)),
                (f"{p}mlp.down_proj.weight", (h, i))]
        if config.get("mlp_bias"):
            out += [(f"{p}mlp.gate_proj.bias", (i,)), (f"{p}mlp.up_proj.bias", (i,)),
                    (f"{p}mlp.down_proj.bias", (h,))]
        out += [(f"{p}input_layernorm.weight", (h,)),
                (f"{p}post_attention_layernorm.weight", (h,))]
    out.append(("model.norm.weight", (h,)))
    if not config["tie_word_embeddings"]:
        out.append(("lm_head.weight", (v, h)))
    return out


def _is_norm(name: str) -> bool:
    return name.endswith("norm.weight")


def _stream_seed(*parts: Any) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _randn(shape: tuple[int, ...], seed: int):
    import torch
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32)


def base_tensor(base_model_id: str, seed: int, name: str, shape: tuple[int, ...],
                init_std: float = 0.02):
    """A base stand-in tensor in fp32 (before the bf16 cast)."""
    import torch
    if _is_norm(name):
        return torch.ones(shape, dtype=torch.float32)
    return _randn(shape, _stream_seed("base", base_model_id, seed, name)).mul_(init_std)


def expected_perturbation(model_id: str, name: str, shape: tuple[int, ...], *,
                          perturb_seed: int = 0, eps: float = DEFAULT_EPS,
                          init_std: float = 0.02):
    """The fp32 ``delta`` added to the base tensor ``name`` for ``model_id``; the stored
    tensor is ``(base.float() + delta).to(bfloat16)``."""
    scale = 1.0 if _is_norm(name) else init_std
    return _randn(shape, _stream_seed("perturb", model_id, perturb_seed, name)).mul_(eps * scale)


def _plan_shards(sizes: list[int], n: int) -> list[int]:
    """Contiguous assignment of tensors to at most ``n`` shards by byte position (each tensor
    goes to the shard holding its midpoint); empty shards are dropped.  With n >= 2 the first
    and last tensors always land in different shards."""
    total = sum(sizes)
    if n <= 1 or total == 0:
        return [0] * len(sizes)
    raw, pos = [], 0
    for s in sizes:
        raw.append(min(n - 1, int((pos + s / 2) / total * n)))
        pos += s
    renum = {k: j for j, k in enumerate(sorted(set(raw)))}
    return [renum[k] for k in raw]


def _greedy_shards(sizes: list[int], max_bytes: int) -> list[int]:
    """transformers-style: start a new shard when the next tensor would overflow it."""
    out, cur, used = [], 0, 0
    for s in sizes:
        if used and used + s > max_bytes:
            cur, used = cur + 1, 0
        out.append(cur)
        used += s
    return out


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    p = Path(path) / MANIFEST
    return json.loads(p.read_text()) if p.is_file() else None


def _weight_files(d: Path) -> dict[str, Path]:
    """tensor name -> file, for a single-file or sharded safetensors directory."""
    index = d / "model.safetensors.index.json"
    if index.is_file():
        wm = json.loads(index.read_text())["weight_map"]
        return {k: d / v for k, v in wm.items()}
    from safetensors import safe_open
    single = d / "model.safetensors"
    with safe_open(str(single), framework="pt") as f:
        return {k: single for k in f.keys()}


def load_state_dict(path: str | Path, names: Iterable[str] | None = None) -> dict[str, Any]:
    """Tensors of a stand-in (or any safetensors snapshot) directory, as stored (bf16)."""
    from safetensors import safe_open
    files = _weight_files(Path(path))
    wanted = list(files) if names is None else list(names)
    by_file: dict[Path, list[str]] = {}
    for n in wanted:
        by_file.setdefault(files[n], []).append(n)
    out = {}
    for f, ns in by_file.items():
        with safe_open(str(f), framework="pt") as fh:
            for n in ns:
                out[n] = fh.get_tensor(n)
    return out


class _BaseSource:
    """Base tensors: generated from a recipe, or read from an existing directory."""

    def __init__(self, base_model_id: str, seed: int, init_std: float, directory: Path | None):
        self.base_model_id, self.seed, self.init_std = base_model_id, seed, init_std
        self.directory = directory
        self._files = _weight_files(directory) if directory is not None else None

    def get(self, name: str, shape: tuple[int, ...]):
        if self._files is None:
            import torch
            return base_tensor(self.base_model_id, self.seed, name, shape,
                               self.init_std).to(torch.bfloat16)
        from safetensors import safe_open
        with safe_open(str(self._files[name]), framework="pt") as fh:
            t = fh.get_tensor(name)
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{self.directory}: {name} has shape {tuple(t.shape)}, "
                             f"expected {tuple(shape)}")
        return t


def build_standin(model_id: str, out: str | Path, *, shrink: str | Mapping[str, int] | None = None,
                  seed: int = 0, perturb_of: str | Path | None = None, eps: float = DEFAULT_EPS,
                  perturb_seed: int = 0, shards: int | None = None,
                  max_shard_size: int | None = None) -> Path:
    """Write a stand-in snapshot of ``model_id`` into ``out`` and return it.

    shrink: depth/width overrides (``parse_shrink`` syntax); None = the real size.
    seed: seed of the base weights (a base model's own, or an instruct model's base when
        ``perturb_of`` is None).
    perturb_of: a stand-in directory whose weights are perturbed (shapes must match).  An
        instruct model without it perturbs its base generated from ``seed`` — the same tensors
        ``build_standin(base_model_id, ..., seed=seed)`` writes.  Its ``shrink`` is taken from
        that directory's manifest when not given.
    eps, perturb_seed: the perturbation ``delta = eps * scale * N(0,1)``.
    shards / max_shard_size: override the layout.  By default the hub's shard count is kept
        (1 -> ``model.safetensors``; n -> ``model-0000k-of-0000n.safetensors`` + index; a
        shrunken model may end up with fewer, but at least 2, shards).
    """
    import torch
    from safetensors.torch import save_file

    arch = get_arch(model_id)
    out = Path(out)
    base_dir = Path(perturb_of) if perturb_of is not None else None
    base_manifest = read_manifest(base_dir) if base_dir is not None else None
    if base_dir is not None and not (base_dir / "config.json").is_file():
        raise FileNotFoundError(f"perturb_of={base_dir}: no config.json there")
    shrink_d = parse_shrink(shrink)
    if shrink_d is None and base_manifest is not None:
        shrink_d = base_manifest.get("shrink")
    config = shrink_config(arch.config(), shrink_d)
    init_std = float(config.get("initializer_range", 0.02))
    perturbed = arch.is_instruct or base_dir is not None
    if base_dir is not None:
        base_cfg = json.loads((base_dir / "config.json").read_text())
        if tensor_shapes(base_cfg) != tensor_shapes(config):
            raise ValueError(f"perturb_of={base_dir}: its tensor shapes differ from {model_id}'s "
                             f"(shrink {shrink_d})")
    recipe: dict[str, Any] = {
        "freshllm_standin_rev": STANDIN_REV, "tokenizer": CACHE_KEY, "model_id": arch.model_id,
        "shrink": shrink_d, "params": param_count(config), "dtype": "bfloat16",
        "init": {"kind": "normal", "std": init_std, "norms": "ones",
                 "base_model_id": arch.base_model_id, "seed": seed},
        "perturbation": None, "shards": shards, "max_shard_size": max_shard_size,
    }
    if base_dir is not None:
        recipe["init"] = {"from": str(base_dir.resolve()),
                          "manifest": base_manifest or None}
    if perturbed:
        recipe["perturbation"] = {"kind": "eps * scale * N(0,1)", "eps": eps,
                                  "seed": perturb_seed, "key": arch.model_id,
                                  "scale": {"norm weights": 1.0, "other": init_std}}
    if read_manifest(out) == recipe and (out / "config.json").is_file():
        log.info("stand-in %s already at %s", arch.model_id, out)
        return out

    shapes = tensor_shapes(config)
    sizes = [math.prod(s) * 2 for _, s in shapes]
    if max_shard_size is not None:
        assign = _greedy_shards(sizes, max_shard_size)
    else:
        assign = _plan_shards(sizes, arch.n_shards if shards is None else shards)
    n_files = max(assign) + 1
    files = shard_files(n_files)
    src = _BaseSource(arch.base_model_id, seed, init_std, base_dir)
    log.info("building stand-in %s (%s params, %d file(s)) in %s", arch.model_id,
             f"{recipe['params']:,}", n_files, out)

    with atomic_dir(out) as tmp:
        write_json(tmp / "config.json", config)
        write_generation_config(arch.model_id, tmp)
        save_tokenizer(arch.model_id, tmp)
        weight_map: dict[str, str] = {}
        for k, fname in enumerate(files):
            tensors = {}
            for (name, shape), a in zip(shapes, assign):
                if a != k:
                    continue
                t = src.get(name, shape)
                if perturbed:
                    delta = expected_perturbation(arch.model_id, name, shape,
                                                  perturb_seed=perturb_seed, eps=eps,
                                                  init_std=init_std)
                    t = (t.float() + delta).to(torch.bfloat16)
                tensors[name] = t.contiguous()
                weight_map[name] = fname
            save_file(tensors, str(tmp / fname), metadata={"format": "pt"})
            del tensors
        if n_files > 1:
            write_json(tmp / "model.safetensors.index.json",
                       {"metadata": {"total_size": sum(sizes)},
                        "weight_map": dict(sorted(weight_map.items()))})
        write_json(tmp / MANIFEST, recipe)
    return out


def build_family_pair(base_model_id: str, out_root: str | Path, *,
                      shrink: str | Mapping[str, int] | None = None, seed: int = 0,
                      eps: float = DEFAULT_EPS, perturb_seed: int = 0,
                      shards: int | None = None) -> dict[str, Path]:
    """Build ``<out_root>/<org>--<name>`` for a base model and its ``-Instruct`` (the instruct
    = that base + the seeded perturbation).  Returns ``{"base": dir, "instruct": dir}``."""
    arch = get_arch(base_model_id)
    if arch.is_instruct:
        raise ValueError(f"{base_model_id} is an instruct model; pass its base")
    root = Path(out_root)
    base = build_standin(arch.model_id, root / arch.model_id.replace("/", "--"), shrink=shrink,
                         seed=seed, shards=shards)
    inst_id = arch.instruct_model_id
    inst = build_standin(inst_id, root / inst_id.replace("/", "--"), shrink=shrink, seed=seed,
                         perturb_of=base, eps=eps, perturb_seed=perturb_seed, shards=shards)
    return {"base": base, "instruct": inst}
