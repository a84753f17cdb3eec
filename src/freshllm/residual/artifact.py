"""The residual artifact on disk: ``manifest.json``, the instruct tokenizer under
``tokenizer/``, and what ``apply`` copies from it into a merged model."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ..common import RESIDUAL_MANIFEST, weights_hash  # noqa: F401 -- weights_hash: re-exported
from ..io.st_stream import TensorSpec
from .config import ResidualError

log = logging.getLogger(__name__)

MANIFEST = RESIDUAL_MANIFEST
FORMAT = "freshllm-instruction-residual/1"
# What the instruct model's tokenizer, chat template and generation defaults (its stop
# tokens: LLaMA 3 Instruct stops on <|eot_id|> too) consist of; fast (tokenizer.json),
# slow (vocab/merges, sentencepiece, tiktoken) and both places a chat template can live.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt",
                   "chat_template.jinja", "chat_template.json", "generation_config.json")
TOKENIZER_SUFFIXES = (".model", ".tiktoken")  # tokenizer.model, spiece.model, tokenizer.tiktoken


def tokenizer_files(model_dir: Path) -> list[Path]:
    """The tokenizer, chat template and generation config files of a model directory."""
    return sorted(f for f in model_dir.iterdir() if f.is_file() and (
        f.name in TOKENIZER_FILES or f.suffix in TOKENIZER_SUFFIXES)) if model_dir.is_dir() else []


def write_manifest(tmp: Path, base_dir: Path, instruct_dir: Path, dtype: str,
                   specs: list[TensorSpec], norms: dict[str, float]) -> None:
    """The instruct tokenizer under ``tmp/tokenizer`` and ``tmp/manifest.json``: where the
    residual came from (paths, weight hashes, the instruct config's identity) and what it
    holds."""
    tok_dir = tmp / "tokenizer"
    tok_dir.mkdir()
    for f in tokenizer_files(instruct_dir):
        shutil.copy2(f, tok_dir / f.name)
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


def write_config_and_tokenizer(tmp: Path, target_dir: Path, residual_dir: Path, manifest: dict) -> str:
    """Target config with the instruct model's special token ids (eos: its stop tokens),
    and the instruct model's tokenizer, chat template and generation config, all of them
    and nothing of the target's: a file the instruct model lacks (a chat_template.jinja,
    a generation_config.json) would override or contradict it. Only a residual without any
    tokenizer falls back to the target's, with a warning. Returns whose tokenizer it is."""
    config = json.loads((target_dir / "config.json").read_text(encoding="utf-8"))
    for key, value in manifest["instruct"]["special_token_ids"].items():
        if value is not None:
            config[key] = value
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    files, source = tokenizer_files(residual_dir / "tokenizer"), "residual"
    if not files:
        files, source = tokenizer_files(target_dir), "target"
        log.warning("the residual %s carries no tokenizer: the merged model gets the target's (%s), "
                    "without the instruct chat template", residual_dir, target_dir)
    for f in files:
        shutil.copy2(f, tmp / f.name)
    return source


def dtypes(specs) -> str | dict[str, int]:
    """The floating dtype of a model's tensors, or ``{dtype: tensor count}`` if mixed."""
    counts: dict[str, int] = {}
    for s in specs:
        if s.dtype.is_floating_point:
            key = str(s.dtype).replace("torch.", "")
            counts[key] = counts.get(key, 0) + 1
    return next(iter(counts)) if len(counts) == 1 else counts
