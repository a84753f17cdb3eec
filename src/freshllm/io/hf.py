"""Loading and saving Hugging Face model directories (safetensors only)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ..common import atomic_dir

log = logging.getLogger(__name__)

HUB_PATTERNS = ["*.safetensors", "*.safetensors.index.json", "*.json", "tokenizer*", "*.jinja",
                "*.model", "*.tiktoken", "*.txt"]


WEIGHT_FILES = ("*.safetensors", "*.safetensors.index.json", "config.json")


class OfflineError(RuntimeError):
    pass


class ModelDirError(FileNotFoundError):
    """A model directory that cannot be used; the message names the directory and file."""


def has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    tok_cfg = path / "tokenizer_config.json"
    if tok_cfg.is_file():
        return bool(json.loads(tok_cfg.read_text(encoding="utf-8")).get("chat_template"))
    return False


TOKENIZER_VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model")


def check_model_dir(path: str | Path, chat_template: bool = False, tokenizer: bool = False,
                    headers: bool = False) -> Path:
    """Fail fast (before any heavy import) on a missing directory, config, safetensors
    weights, (``tokenizer``) tokenizer files, (``headers``) a truncated or corrupt
    safetensors file, or (``chat_template``) chat template; returns the path. Each error
    names the directory and the file."""
    path = Path(path)
    if not path.is_dir():
        raise ModelDirError(f"model directory not found: {path}")
    if not (path / "config.json").is_file():
        raise ModelDirError(f"not a Hugging Face model directory (no config.json): {path}")
    shards = sorted(path.glob("*.safetensors"))
    if not shards:
        raise ModelDirError(f"no *.safetensors weights in {path} (pickle checkpoints are not loaded)")
    if tokenizer and not any((path / f).is_file() for f in TOKENIZER_VOCAB_FILES):
        raise ModelDirError(f"no tokenizer files in {path} (expected one of {', '.join(TOKENIZER_VOCAB_FILES)})")
    if headers:
        from .st_stream import SafetensorsFormatError, parse_header

        for shard in shards:
            try:
                parse_header(shard)
            except (SafetensorsFormatError, OSError) as exc:
                raise ModelDirError(f"broken safetensors file {shard}: {exc}") from None
    if chat_template and not has_chat_template(path):
        raise ModelDirError(f"chat template requested but the tokenizer in {path} has none "
                            "(set eval.chat_template / chat_models, or pass --no-chat)")
    return path


def load_causal_lm(path: str | Path, dtype=None, trust_remote_code: bool = False):
    """Load an HF causal LM from a local directory, safetensors only."""
    from transformers import AutoModelForCausalLM

    path = check_model_dir(path)
    kwargs = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = dtype
    return AutoModelForCausalLM.from_pretrained(str(path), **kwargs)


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def save_model_dir(model, tokenizer, out: str | Path, max_shard_size: str = "2GB") -> None:
    """Save model (safetensors) + tokenizer to ``out`` atomically (temp dir, rename)."""
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True, max_shard_size=max_shard_size)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))


def hub_snapshot(repo_id: str, out: str | Path, revision: str | None = None) -> Path:
    """Download a model snapshot by id from the Hugging Face hub into ``out``.

    Raises :class:`OfflineError` with a clear message when the hub cannot be reached
    (``HF_HUB_OFFLINE`` set, or no network).
    """
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise OfflineError(
            f"cannot download {repo_id!r}: HF_HUB_OFFLINE is set (no network). "
            "Use the local profile (models.source: local) or pre-download the model "
            "and point models.hub_base / models.hub_instruct at local directories.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    with atomic_dir(out) as tmp:
        try:
            snapshot_download(repo_id=repo_id, revision=revision, local_dir=str(tmp),
                              allow_patterns=HUB_PATTERNS, etag_timeout=30)
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
            raise OfflineError(f"cannot download {repo_id!r} from the Hugging Face hub: {exc}. "
                               "Check network access and HF_TOKEN for gated models, or use "
                               "the local profile.") from exc
        for junk in (tmp / ".cache",):
            if junk.exists():
                import shutil

                shutil.rmtree(junk)
        check_model_dir(tmp)
    return Path(out)


def cast_floats(state: dict, dtype) -> dict:
    """``state`` with its floating tensors cast to ``dtype``, in place (each source tensor is
    freed as soon as it is cast). Tensors that share storage (tied embeddings) still share
    it afterwards, so ``save_pretrained`` drops the tied copy as before."""
    import torch

    cast: dict[tuple, torch.Tensor] = {}
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != dtype:
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride())
            if key not in cast:
                cast[key] = t.to(dtype)
            state[name] = cast[key]
    return state


def save_final(accelerator, model, src_dir: Path, out: Path, dtype: str) -> None:
    """HF directory: weights (safetensors, floating tensors in ``dtype``, which config.json
    states) + every non-weight file of the source model (tokenizer, chat template,
    generation config) copied unchanged."""
    import torch

    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return
    state = cast_floats(state, getattr(torch, dtype))
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.config.use_cache = True
    with atomic_dir(out) as tmp:
        unwrapped.save_pretrained(str(tmp), state_dict=state, safe_serialization=True)
        # save_pretrained writes the dtype of the model's (float32 master) parameters into
        # config.json; state the dtype the weights were saved in instead
        unwrapped.config.dtype = getattr(torch, dtype)
        unwrapped.config.save_pretrained(str(tmp))
        for f in src_dir.iterdir():
            if f.is_file() and not any(f.match(p) for p in WEIGHT_FILES):
                shutil.copy2(f, tmp / f.name)
