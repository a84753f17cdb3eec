"""Reusing another model's eval record when this model is the same model (``--reuse``).

A chained update's gate serves either its candidate or the incumbent as is (a copy with its
own model card), so the served model's eval (``u-eval-current``) would score, in the same
window, the same files on the same items as ``u-eval-cpt-base-res`` or ``u-eval-incumbent``
already did: for an 8B model on the paper's suite, a GPU-hours eval per month for nothing.

A record is reused only if everything that decides the scores is the same: the model files
but the card (``model_files_sha256``), the chat-template choice, the ``eval`` params, each text
file's content, the lm-eval version, backend and model arguments but the path; and its samples
file is the one it wrote (``samples.sha256``). The copy names this model (``model``,
``model_hash``, ``model_args.pretrained``), carries this run's ``runtime`` and says which
record it copies (``reused_from``); the samples are copied byte for byte. Anything else is
scored as usual, with the reason logged.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..common import MODEL_CARD, atomic_file, combine_hashes, sha256_file, write_json

log = logging.getLogger(__name__)


def model_files_hash(hashes: dict[str, str]) -> str:
    """The content hash of what scoring reads: every file of the model directory (``hashes``:
    :func:`freshllm.common.file_hashes`) but its card."""
    return combine_hashes(hashes, exclude=(MODEL_CARD,))


def samples_info(path: Path, lines: int) -> dict[str, Any]:
    return {"path": str(path), "lines": lines, "sha256": sha256_file(path)}


def _mismatch(rec: dict, cfg, chat: bool, files_hash: str, texts: dict[str, Path],
              model_args: dict[str, Any]) -> str | None:
    """Why ``rec`` cannot stand for this eval, or None."""
    conf = rec.get("config") or {}
    if rec.get("model_files_sha256") != files_hash:
        return "other model files"
    if rec.get("chat_template") is not chat:
        return "another chat-template choice"
    if conf.get("params") != json.loads(json.dumps(asdict(cfg), default=str)):  # as write_json wrote it
        return "other eval params"
    if conf.get("backend") != cfg.backend or {k: v for k, v in (conf.get("model_args") or {}).items()
                                               if k != "pretrained"} != model_args:
        return "another backend or model arguments"
    from importlib.metadata import version

    if conf.get("lm_eval_version") != version("lm_eval"):
        return "another lm-eval version"
    scored = conf.get("texts") or {}
    if set(scored) != set(texts) or any(scored[t].get("sha256") != sha256_file(p) for t, p in texts.items()):
        return "other texts"
    samples = rec.get("samples") or {}
    if not samples.get("path") or not Path(samples["path"]).is_file():
        return "its samples file is missing"
    if sha256_file(Path(samples["path"])) != samples.get("sha256"):
        return "its samples file is not the one it wrote"
    return None


def try_reuse(records: list[Path], cfg, model_dir: Path, hashes: dict[str, str], name: str, chat: bool,
              texts: dict[str, Path], model_args: dict[str, Any], out_path: Path, samples_path: Path,
              runtime: dict | None) -> dict | None:
    """Write ``out_path`` / ``samples_path`` as a copy of the first of ``records`` that stands
    for this eval of ``model_dir`` (its ``hashes``: :func:`freshllm.common.file_hashes`; see the
    module doc) and return the record; None if none does."""
    files_hash = model_files_hash(hashes)
    for path in records:
        if not path.is_file():
            log.info("not reusing %s: no such record", path)
            continue
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            why = _mismatch(rec, cfg, chat, files_hash, texts, model_args) if isinstance(rec, dict) else "not a record"
        except (OSError, ValueError, AttributeError, TypeError, KeyError) as exc:  # unreadable, or malformed
            why = f"unreadable ({type(exc).__name__}: {exc})"
        if why:
            log.info("not reusing %s: %s", path, why)
            continue
        new = copy.deepcopy(rec)
        source = rec.get("model")
        new.update(model=name, model_hash=combine_hashes(hashes), reused_from={"record": str(path), "model": source})
        new["config"]["model_args"]["pretrained"] = str(model_dir)
        new.pop("runtime", None)
        if runtime is not None:
            new["runtime"] = runtime
        with atomic_file(samples_path, "wb") as fh, open(rec["samples"]["path"], "rb") as src:
            shutil.copyfileobj(src, fh)
        new["samples"] = {**rec["samples"], "path": str(samples_path)}
        write_json(out_path, new)
        log.info("%s is %s's model (the same files but the card, the same eval): copied %s, not scored again",
                 name, source, path)
        return new
    return None
