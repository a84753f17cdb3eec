"""The residual artifact on disk: ``manifest.json``, the instruct tokenizer under
``tokenizer/``, and what ``apply`` copies from it into a merged model."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from ..common import sha256_file
from ..io.st_stream import TensorSpec
from .config import ResidualError

MANIFEST = "manifest.json"
FORMAT = "freshllm-instruction-residual/1"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "chat_template.json", "tokenizer.model",
                   "generation_config.json")


def weights_hash(model_dir: Path) -> str:
    """Content hash of a model's weights: sha256 over its safetensors files (and index)."""
    h = hashlib.sha256()
    files = sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.safetensors.index.json"))
    for f in files:
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def write_manifest(tmp: Path, base_dir: Path, instruct_dir: Path, dtype: str,
                   specs: list[TensorSpec], norms: dict[str, float]) -> None:
    """The instruct tokenizer under ``tmp/tokenizer`` and ``tmp/manifest.json``: where the
    residual came from (paths, weight hashes, the instruct config's identity) and what it
    holds."""
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
        "dtype": dtype,
        "tensors": {s.name: {"shape": list(s.shape), "dtype": str(s.dtype).replace("torch.", "")}
                    for s in specs},
        "norms": norms,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")


def read_manifest(residual_dir: Path) -> dict:
    manifest_path = residual_dir / MANIFEST
    if not manifest_path.is_file():
        raise ResidualError(f"not a residual artifact (no {MANIFEST}): {residual_dir}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ResidualError(f"{manifest_path}: unknown format {manifest.get('format')!r}")
    return manifest


def write_config_and_tokenizer(tmp: Path, target_dir: Path, residual_dir: Path, manifest: dict) -> None:
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
