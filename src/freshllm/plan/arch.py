"""The architecture of every model of the grid, offline: the plan needs config.json facts only.

``models.<family>`` with ``source: hub`` names each model by ``hub_base`` / ``hub_instruct``:

1. a directory holding a ``config.json`` (a pre-downloaded snapshot) is read directly (its dtype
   as :func:`freshllm.cpt.source_dtype` reads it);
2. a hub id among the architectures shipped in :mod:`freshllm.standins.architectures` (the
   published config.json files of the LLaMA 3.x and Qwen2/2.5 models) needs nothing else, so
   the paper profiles plan offline;
3. any other id: its config.json from the hub (or the local HF cache) through
   ``huggingface_hub`` -- optional, never required; offline it is an error naming the model.

``source: local`` builds a tiny Llama from the section's own sizes (``freshllm.models``), saved
in float32. ``source: real`` is the architecture recorded with the real model
(:data:`freshllm.standins.real.REAL_MODELS`), saved in bf16: no download, no conversion.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, load_section
from .formulas import Shape


class PlanError(ValueError):
    """A model or input the plan cannot size; the message names it."""


@dataclass(frozen=True)
class ModelInfo:
    ref: str                    # hub id, directory, or "local (models.<family>)"
    config_source: str          # local-dir | standins | hub | params
    dtype: str                  # stored dtype of the weights
    shape: Shape
    config: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def params(self) -> int:
        return self.shape.params


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def _config_dtype(config: dict, default: str = "float32") -> str:
    name = config.get("dtype") or config.get("torch_dtype")
    return name.removeprefix("torch.") if isinstance(name, str) and name != "auto" else default


def _check_decoder(config: dict, ref: str) -> Shape:
    need = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    missing = [k for k in need if k not in config]
    if missing:
        raise PlanError(f"{ref}: config.json lacks {missing}: the plan sizes LLaMA/Qwen2-style "
                        "decoders (hidden_size, intermediate_size, num_hidden_layers, ...)")
    return Shape.from_config(config)


def hub_model(ref: str, revision: str | None = None) -> ModelInfo:
    """One ``hub_base`` / ``hub_instruct`` value, resolved as the module docstring says."""
    path = Path(ref)
    if (path / "config.json").is_file():
        from ..cpt import source_dtype

        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        return ModelInfo(ref, "local-dir", source_dtype(path), _check_decoder(config, ref), config)
    if path.is_dir():
        raise PlanError(f"{ref}: a directory without config.json")
    from ..standins.architectures import get_arch, param_count

    try:
        arch = get_arch(ref)
    except KeyError:
        arch = None
    if arch is not None:
        config = arch.config()
        shape = _check_decoder(config, ref)
        if shape.params != param_count(arch):  # the shape's breakdown must add up to the same total
            raise AssertionError(f"{ref}: parameter count {shape.params} != {param_count(arch)}")
        return ModelInfo(ref, "standins", _config_dtype(config, "bfloat16"), shape, config)
    try:
        from huggingface_hub import hf_hub_download

        file = hf_hub_download(ref, "config.json", revision=revision, etag_timeout=10)
    except Exception as exc:  # offline, unknown id, gated, no network
        how = "HF_HUB_OFFLINE is set" if _offline() else f"{type(exc).__name__}: {exc}"
        raise PlanError(
            f"no config.json for model {ref!r}: not a local snapshot directory, not among the "
            f"architectures shipped in freshllm.standins.architectures, and the hub gave none "
            f"({how}). Point models.<family>.hub_base/hub_instruct at a snapshot directory.") from None
    config = json.loads(Path(file).read_text(encoding="utf-8"))
    return ModelInfo(ref, "hub", _config_dtype(config), _check_decoder(config, ref), config)


def local_model(params_path: str | Path, family: str, cfg) -> ModelInfo:
    config = {"model_type": "llama", "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
              "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_layers,
              "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads,
              "tie_word_embeddings": cfg.tie_word_embeddings}
    # vocab_size is the BPE trainer's target; the trained tokenizer may come out a little smaller
    return ModelInfo(f"local (models.{family})", "params", "float32", Shape.from_config(config), config)


def family_models(params_path: str | Path, family: str) -> dict[str, ModelInfo]:
    """``{"base": ..., "instruct": ...}`` of ``models.<family>`` (the section validated as the
    models stage validates it)."""
    from ..models import ModelsConfig

    cfg = load_section(ModelsConfig, f"models.{family}", params_path)
    if cfg.source == "local":
        info = local_model(params_path, family, cfg)
        return {"base": info, "instruct": info}
    if cfg.source == "real":
        from ..standins.real import get_real

        config = get_real(cfg.real_model).config
        info = ModelInfo(f"real ({cfg.real_model})", "real", config["dtype"], Shape.from_config(config), config)
        return {"base": info, "instruct": info}
    out, problems = {}, []
    for variant, ref in (("base", cfg.hub_base), ("instruct", cfg.hub_instruct)):
        try:
            out[variant] = hub_model(ref, cfg.hub_revision)
        except PlanError as exc:
            problems.append(f"models.{family}.hub_{variant}: {exc}")
    if problems:
        raise ConfigError(f"models.{family}", problems)
    return out
