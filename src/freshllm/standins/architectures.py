"""Hub ``config.json`` facts for the LLaMA 3.x and Qwen2/2.5 models the pipeline targets.

Written from the published ``config.json`` files of the model repositories named in each entry
(huggingface.co/<model id>/blob/main/config.json).  Only the standard library is used, so a cost
planner can import this without torch/transformers.

``get_arch(model_id).config()`` returns the exact hub config.json as a fresh dict (legacy keys:
``rope_theta``/``rope_scaling``/``torch_dtype``, as the hub files have them; transformers 5 reads
them).  ``param_count(arch)`` computes the parameter total from the config.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Arch", "ARCHS", "ALIASES", "get_arch", "list_models", "param_count", "shard_files",
           "shrink_config"]

# --- LLaMA 3.x -----------------------------------------------------------------------------------

_LLAMA_COMMON: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "model_type": "llama",
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 128256,
}
_LLAMA_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
             "num_hidden_layers": 32, "num_key_value_heads": 8, "tie_word_embeddings": False}


def _llama31_rope(factor: float) -> dict[str, Any]:
    return {"factor": factor, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3"}


# meta-llama/Meta-Llama-3-8B (config.json): 8k context, no rope scaling, 4 safetensors shards.
_LLAMA3_8B = {**_LLAMA_COMMON, **_LLAMA_8B, "max_position_embeddings": 8192,
              "rope_scaling": None, "transformers_version": "4.40.0.dev0"}
# meta-llama/Llama-3.1-8B (formerly Meta-Llama-3.1-8B): llama3 rope scaling, 128k context.
_LLAMA31_8B = {**_LLAMA_COMMON, **_LLAMA_8B, "max_position_embeddings": 131072, "mlp_bias": False,
               "rope_scaling": _llama31_rope(8.0), "transformers_version": "4.43.0.dev0"}
# meta-llama/Llama-3.2-1B: tied embeddings, explicit head_dim 64, rope factor 32, single file.
_LLAMA32_1B = {**_LLAMA_COMMON, "head_dim": 64, "hidden_size": 2048, "intermediate_size": 8192,
               "max_position_embeddings": 131072, "mlp_bias": False, "num_attention_heads": 32,
               "num_hidden_layers": 16, "num_key_value_heads": 8, "rope_scaling": _llama31_rope(32.0),
               "tie_word_embeddings": True, "transformers_version": "4.45.0.dev0"}
# meta-llama/Llama-3.2-3B: tied, head_dim 128, rope factor 32, 2 shards.
_LLAMA32_3B = {**_LLAMA32_1B, "head_dim": 128, "hidden_size": 3072, "intermediate_size": 8192,
               "num_attention_heads": 24, "num_hidden_layers": 28, "num_key_value_heads": 8}

_LLAMA31_INSTRUCT_EOS = [128001, 128008, 128009]

# --- Qwen2 / Qwen2.5 -----------------------------------------------------------------------------

_QWEN_COMMON: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "model_type": "qwen2",
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
}
_Q05 = {"hidden_size": 896, "intermediate_size": 4864, "num_attention_heads": 14,
        "num_hidden_layers": 24, "num_key_value_heads": 2, "tie_word_embeddings": True,
        "vocab_size": 151936}
_Q15 = {"hidden_size": 1536, "intermediate_size": 8960, "num_attention_heads": 12,
        "num_hidden_layers": 28, "num_key_value_heads": 2, "tie_word_embeddings": True,
        "vocab_size": 151936}
_Q7 = {"hidden_size": 3584, "intermediate_size": 18944, "num_attention_heads": 28,
       "num_hidden_layers": 28, "num_key_value_heads": 4, "tie_word_embeddings": False,
       "vocab_size": 152064}


def _qwen(shape: dict, max_pos: int, window: int, window_layers: int, tv: str, **extra) -> dict:
    return {**_QWEN_COMMON, **shape, "max_position_embeddings": max_pos,
            "max_window_layers": window_layers, "sliding_window": window,
            "transformers_version": tv, **extra}


_INSTRUCT = {"eos_token_id": 151645}

_CONFIGS: dict[str, dict[str, Any]] = {
    # meta-llama/Meta-Llama-3-8B, meta-llama/Meta-Llama-3-8B-Instruct (eos <|eot_id|>)
    "meta-llama/Meta-Llama-3-8B": _LLAMA3_8B,
    "meta-llama/Meta-Llama-3-8B-Instruct": {**_LLAMA3_8B, "eos_token_id": 128009},
    # meta-llama/Llama-3.1-8B, meta-llama/Llama-3.1-8B-Instruct
    "meta-llama/Llama-3.1-8B": _LLAMA31_8B,
    "meta-llama/Llama-3.1-8B-Instruct": {**_LLAMA31_8B, "eos_token_id": _LLAMA31_INSTRUCT_EOS,
                                         "transformers_version": "4.42.3"},
    # meta-llama/Llama-3.2-1B(-Instruct), meta-llama/Llama-3.2-3B(-Instruct)
    "meta-llama/Llama-3.2-1B": _LLAMA32_1B,
    "meta-llama/Llama-3.2-1B-Instruct": {**_LLAMA32_1B, "eos_token_id": _LLAMA31_INSTRUCT_EOS},
    "meta-llama/Llama-3.2-3B": _LLAMA32_3B,
    "meta-llama/Llama-3.2-3B-Instruct": {**_LLAMA32_3B, "eos_token_id": _LLAMA31_INSTRUCT_EOS},
    # Qwen/Qwen2-{0.5B,1.5B,7B}: base 128k positions/windows, instruct 32k
    "Qwen/Qwen2-0.5B": _qwen(_Q05, 131072, 131072, 24, "4.40.1"),
    "Qwen/Qwen2-0.5B-Instruct": _qwen(_Q05, 32768, 32768, 24, "4.40.1", **_INSTRUCT),
    "Qwen/Qwen2-1.5B": _qwen(_Q15, 131072, 131072, 28, "4.40.1"),
    "Qwen/Qwen2-1.5B-Instruct": _qwen(_Q15, 32768, 32768, 28, "4.40.1", **_INSTRUCT),
    "Qwen/Qwen2-7B": _qwen(_Q7, 131072, 131072, 28, "4.41.2"),
    "Qwen/Qwen2-7B-Instruct": _qwen(_Q7, 32768, 131072, 28, "4.41.2", **_INSTRUCT),
    # Qwen/Qwen2.5-{0.5B,1.5B,7B}(-Instruct)
    "Qwen/Qwen2.5-0.5B": _qwen(_Q05, 32768, 32768, 24, "4.40.1", use_mrope=False),
    "Qwen/Qwen2.5-0.5B-Instruct": _qwen(_Q05, 32768, 32768, 21, "4.43.1", **_INSTRUCT),
    "Qwen/Qwen2.5-1.5B": _qwen(_Q15, 131072, 131072, 28, "4.40.1", use_mrope=False),
    "Qwen/Qwen2.5-1.5B-Instruct": _qwen(_Q15, 32768, 32768, 21, "4.43.1", **_INSTRUCT),
    "Qwen/Qwen2.5-7B": _qwen(_Q7, 131072, 131072, 28, "4.43.1", use_mrope=False),
    "Qwen/Qwen2.5-7B-Instruct": _qwen(_Q7, 32768, 131072, 28, "4.43.1", **_INSTRUCT),
}

# safetensors files on the hub: 1 = a single ``model.safetensors``
_SHARDS = {
    "meta-llama/Meta-Llama-3-8B": 4, "meta-llama/Meta-Llama-3-8B-Instruct": 4,
    "meta-llama/Llama-3.1-8B": 4, "meta-llama/Llama-3.1-8B-Instruct": 4,
    "meta-llama/Llama-3.2-1B": 1, "meta-llama/Llama-3.2-1B-Instruct": 1,
    "meta-llama/Llama-3.2-3B": 2, "meta-llama/Llama-3.2-3B-Instruct": 2,
    "Qwen/Qwen2-0.5B": 1, "Qwen/Qwen2-0.5B-Instruct": 1,
    "Qwen/Qwen2-1.5B": 1, "Qwen/Qwen2-1.5B-Instruct": 1,
    "Qwen/Qwen2-7B": 4, "Qwen/Qwen2-7B-Instruct": 4,
    "Qwen/Qwen2.5-0.5B": 1, "Qwen/Qwen2.5-0.5B-Instruct": 1,
    "Qwen/Qwen2.5-1.5B": 1, "Qwen/Qwen2.5-1.5B-Instruct": 1,
    "Qwen/Qwen2.5-7B": 4, "Qwen/Qwen2.5-7B-Instruct": 4,
}

# renamed repositories (meta-llama dropped the "Meta-" prefix from 3.1 on)
ALIASES = {
    "meta-llama/Meta-Llama-3.1-8B": "meta-llama/Llama-3.1-8B",
    "meta-llama/Meta-Llama-3.1-8B-Instruct": "meta-llama/Llama-3.1-8B-Instruct",
}


@dataclass(frozen=True)
class Arch:
    """One hub model: its config.json (read-only view) and hub file layout."""

    model_id: str
    _config: Mapping[str, Any] = field(repr=False)
    n_shards: int = 1

    # --- identity ---
    @property
    def family(self) -> str:
        """``llama3`` or ``qwen2`` (tokenizer / architecture family)."""
        return "llama3" if self._config["model_type"] == "llama" else "qwen2"

    @property
    def version(self) -> str:
        """Release line: ``llama3``, ``llama3.1``, ``llama3.2``, ``qwen2``, ``qwen2.5``."""
        name = self.model_id.split("/", 1)[1]
        for tag, version in (("Llama-3.2", "llama3.2"), ("Llama-3.1", "llama3.1"),
                             ("Llama-3-", "llama3"), ("Qwen2.5", "qwen2.5"), ("Qwen2-", "qwen2")):
            if tag in name:
                return version
        raise ValueError(self.model_id)

    @property
    def is_instruct(self) -> bool:
        return self.model_id.endswith("-Instruct")

    @property
    def base_model_id(self) -> str:
        return self.model_id.removesuffix("-Instruct")

    @property
    def instruct_model_id(self) -> str:
        return self.base_model_id + "-Instruct"

    # --- config facts ---
    def config(self) -> dict[str, Any]:
        """The hub config.json as a fresh, mutable dict."""
        return copy.deepcopy(dict(self._config))

    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self._config[key])

    def get(self, key: str, default: Any = None) -> Any:
        return copy.deepcopy(self._config.get(key, default))

    @property
    def vocab_size(self) -> int:
        return self._config["vocab_size"]

    @property
    def hidden_size(self) -> int:
        return self._config["hidden_size"]

    @property
    def num_layers(self) -> int:
        return self._config["num_hidden_layers"]

    @property
    def intermediate_size(self) -> int:
        return self._config["intermediate_size"]

    @property
    def num_heads(self) -> int:
        return self._config["num_attention_heads"]

    @property
    def num_kv_heads(self) -> int:
        return self._config["num_key_value_heads"]

    @property
    def head_dim(self) -> int:
        return _head_dim(self._config)

    @property
    def tied(self) -> bool:
        return bool(self._config["tie_word_embeddings"])

    @property
    def qkv_bias(self) -> bool:
        return _qkv_bias(self._config)

    @property
    def max_position_embeddings(self) -> int:
        return self._config["max_position_embeddings"]

    @property
    def params(self) -> int:
        return param_count(self)

    def shard_files(self) -> list[str]:
        return shard_files(self.n_shards)


def _head_dim(cfg: Mapping[str, Any]) -> int:
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def _qkv_bias(cfg: Mapping[str, Any]) -> bool:
    # Qwen2 always has q/k/v biases (no o_proj bias); LLaMA only with attention_bias.
    return cfg["model_type"] == "qwen2" or bool(cfg.get("attention_bias", False))


ARCHS: dict[str, Arch] = {mid: Arch(mid, cfg, _SHARDS[mid]) for mid, cfg in _CONFIGS.items()}


def get_arch(model_id: str) -> Arch:
    mid = ALIASES.get(model_id, model_id)
    try:
        return ARCHS[mid]
    except KeyError:
        raise KeyError(f"unknown model {model_id!r}; known: {', '.join(sorted(ARCHS))}") from None


def list_models() -> list[str]:
    return sorted(ARCHS)


def shard_files(n: int) -> list[str]:
    """The hub's safetensors file names for ``n`` shards."""
    if n <= 1:
        return ["model.safetensors"]
    return [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]


def param_count(arch: Arch | Mapping[str, Any]) -> int:
    """Parameters of a LLaMA / Qwen2 decoder from its config: embedding, lm_head when untied,
    attention (q/k/v/o, q/k/v biases for Qwen2), gated MLP (gate/up/down, no bias), two RMSNorms
    per layer and the final norm."""
    cfg = arch._config if isinstance(arch, Arch) else arch
    v, h, i = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
    hd = _head_dim(cfg)
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    attn = h * q + 2 * h * kv + q * h
    if _qkv_bias(cfg):
        attn += q + 2 * kv
    if cfg["model_type"] == "llama" and cfg.get("attention_bias"):
        attn += h  # o_proj bias
    mlp = 3 * h * i + (2 * i + h if cfg.get("mlp_bias") else 0)
    layer = attn + mlp + 2 * h
    emb = v * h * (1 if cfg["tie_word_embeddings"] else 2)
    return emb + cfg["num_hidden_layers"] * layer + h


SHRINK_KEYS = {"hidden": "hidden_size", "layers": "num_hidden_layers",
               "intermediate": "intermediate_size", "heads": "num_attention_heads",
               "kv_heads": "num_key_value_heads", "head_dim": "head_dim"}


def shrink_config(config: Mapping[str, Any], shrink: Mapping[str, int] | None) -> dict[str, Any]:
    """Shrink a hub config in depth/width only (``hidden``, ``layers``, ``intermediate``,
    ``heads``, ``kv_heads``, optional ``head_dim``); vocab, tying, biases, rope scaling, dtype and
    token ids stay real.  ``max_window_layers`` is clipped to the new depth."""
    cfg = copy.deepcopy(dict(config))
    if not shrink:
        return cfg
    unknown = set(shrink) - set(SHRINK_KEYS) - set(SHRINK_KEYS.values())
    if unknown:
        raise ValueError(f"unknown shrink keys {sorted(unknown)}; use {sorted(SHRINK_KEYS)}")
    for k, v in shrink.items():
        cfg[SHRINK_KEYS.get(k, k)] = int(v)
    h, heads, kvh = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    if heads % kvh:
        raise ValueError(f"heads ({heads}) must be a multiple of kv_heads ({kvh})")
    if not any(SHRINK_KEYS.get(k, k) == "head_dim" for k in shrink):
        if h % heads:
            raise ValueError(f"hidden ({h}) must be a multiple of heads ({heads})")
        if "head_dim" in cfg:  # LLaMA 3.2 states it explicitly: keep it consistent
            cfg["head_dim"] = h // heads
    if _head_dim(cfg) % 2:
        raise ValueError("head_dim must be even (rotary embeddings)")
    if "max_window_layers" in cfg:
        cfg["max_window_layers"] = min(cfg["max_window_layers"], cfg["num_hidden_layers"])
    return cfg


# The GPU benchmark (freshllm.bench.gpu) runs on a machine with torch and transformers only and
# imports nothing from the project: it reads these configs as data, from its models.json.
BENCH_GPU_MODELS = Path(__file__).resolve().parents[1] / "bench" / "gpu" / "models.json"


def bench_gpu_models(spec: Mapping[str, Any]) -> dict[str, Any]:
    """models.json of the GPU benchmark from its ``tiny_shrink`` and each model's ``hub_id`` (in
    priority order): the exact hub config and its tiny shrink (``--tiny``, the CPU smoke run)."""
    shrink = dict(spec["tiny_shrink"])
    models = {}
    for key, m in spec["models"].items():
        cfg = get_arch(m["hub_id"]).config()
        models[key] = {"hub_id": m["hub_id"], "config": cfg, "tiny": shrink_config(cfg, shrink)}
    return {"tiny_shrink": shrink, "models": models}
