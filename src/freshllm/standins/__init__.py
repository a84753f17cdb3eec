"""Stand-ins for hub snapshots: real tokenizers (from llama.cpp's vocab files), exact hub
configs, and small seeded random weights laid out as ``snapshot_download`` leaves them.

``architectures`` needs only the standard library; ``tokenizers`` and ``snapshots`` import
transformers/torch lazily (attribute access on this package loads them on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

from .architectures import ARCHS, Arch, get_arch, list_models, param_count, shrink_config

_LAZY = {
    **dict.fromkeys(("cache_root", "vocab_files", "tokenizer_dir", "save_tokenizer",
                     "load_tokenizer", "check_against_llamacpp", "generation_config",
                     "expected_len"), "tokenizers"),
    **dict.fromkeys(("build_standin", "build_family_pair", "expected_perturbation",
                     "load_state_dict", "parse_shrink", "tensor_shapes"), "snapshots"),
}

__all__ = ["ARCHS", "Arch", "get_arch", "list_models", "param_count", "shrink_config", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
