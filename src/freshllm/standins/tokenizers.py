"""Real LLaMA 3 / Qwen2 tokenizers, offline, from llama.cpp's vocab files.

The PyPI sdist of ``llama-cpp-python`` vendors llama.cpp's ``models/ggml-vocab-llama-bpe.gguf``
(LLaMA 3 BPE: 128,000 merges-ranked tokens + 256 specials, 280,147 merges) and
``ggml-vocab-qwen2.gguf`` (Qwen2 BPE: 151,643 tokens + 3 specials + 290 ``[PAD…]`` fillers, 151,387
merges), each with test strings (``.inp``) and the ids the hub tokenizer gives them (``.out``).

We download that sdist once with pip, pull out only those six files (tarfile, member by member),
and write ``tokenizer.json`` ourselves from the GGUF tokens/merges with the hub's exact pipeline
(pre-tokenizer regex, byte-level, NFC for Qwen, ``ignore_merges`` for LLaMA 3, BOS
post-processor for LLaMA 3), the specials of each release line, and the hub's
``tokenizer_config.json`` (chat template, bos/eos/pad) — see :mod:`.templates`.  We do not use
transformers' GGUF converter (``AutoTokenizer.from_pretrained(dir, gguf_file=…)``): it appends an
extra ``<|endoftext|>`` (id 128256) to the LLaMA 3 vocab, keeps Qwen's 290 ``[PAD…]`` fillers as
added tokens, drops ``ignore_merges`` (one of the 46 llama.cpp test strings then differs) and
drops the BOS post-processor.

Nothing here is committed to the repository: everything lives in the cache (``cache_root()``:
``$FRESHLLM_CACHE`` or ``~/.cache/freshllm``), keyed by the sdist version and ``TOKENIZER_REV``.
``$FRESHLLM_LLAMACPP_SDIST`` may point at an already downloaded sdist tarball.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ..common import atomic_dir, write_json
from .architectures import get_arch
from .templates import chat_template, generation_config
from .llamacpp import (GGUF_NAMES, LLAMA_CPP_PYTHON, LLAMA_CPP_PYTHON_VERSION,  # noqa: F401 (re-exported)
                       _download_sdist, _extract, _lock, _vocab_dir, cache_root, vocab_files)

log = logging.getLogger("freshllm.standins")

__all__ = ["LLAMA_CPP_PYTHON", "LLAMA_CPP_PYTHON_VERSION", "TOKENIZER_REV", "cache_root",
           "vocab_files", "tokenizer_dir", "save_tokenizer", "load_tokenizer", "token_table",
           "check_against_llamacpp", "generation_config", "expected_len"]

TOKENIZER_REV = "1"  # bump when the files written here change
CACHE_KEY = f"llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}-r{TOKENIZER_REV}"

TEST_SEPARATOR = "\n__ggml_vocab_test__\n"

# families -> the model whose tokenizer is checked against llama.cpp's expected ids
_CHECK_MODEL = {"llama3": "meta-llama/Meta-Llama-3-8B", "qwen2": "Qwen/Qwen2-1.5B"}

# --- token tables ----------------------------------------------------------------------------

N_BPE = {"llama3": 128000, "qwen2": 151643}

# Qwen/Qwen2.5-*/tokenizer_config.json added_tokens_decoder (151643..151664); Qwen2 has the
# first three.  Tool-call / FIM / repo tokens are *not* special on the hub (``special: false``).
_QWEN25_EXTRA = [("<|object_ref_start|>", True), ("<|object_ref_end|>", True),
                 ("<|box_start|>", True), ("<|box_end|>", True), ("<|quad_start|>", True),
                 ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True),
                 ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
                 ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False),
                 ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
                 ("<|repo_name|>", False), ("<|file_sep|>", False)]


def _llama_specials(version: str) -> list[str]:
    """The 256 specials at 128000..128255.  meta-llama/Meta-Llama-3-8B names 128002..128005,
    128008 and 128010.. ``<|reserved_special_token_0..250|>``; meta-llama/Llama-3.1-8B (and 3.2)
    turn 128004 into ``<|finetune_right_pad_id|>``, 128008 ``<|eom_id|>``, 128010
    ``<|python_tag|>`` and renumber the rest (..247)."""
    fixed = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 6: "<|start_header_id|>",
             7: "<|end_header_id|>", 9: "<|eot_id|>"}
    if version != "llama3":
        fixed.update({4: "<|finetune_right_pad_id|>", 8: "<|eom_id|>", 10: "<|python_tag|>"})
    out, k = [], 0
    for i in range(256):
        if i in fixed:
            out.append(fixed[i])
        else:
            out.append(f"<|reserved_special_token_{k}|>")
            k += 1
    return out


def token_table(version: str) -> list[tuple[int, str, bool]]:
    """``(id, content, special)`` of the added tokens of a release line, as on the hub."""
    if version.startswith("llama"):
        return [(128000 + i, t, True) for i, t in enumerate(_llama_specials(version))]
    base = [(151643, "<|endoftext|>", True), (151644, "<|im_start|>", True),
            (151645, "<|im_end|>", True)]
    if version == "qwen2":
        return base
    if version == "qwen2.5":
        return base + [(151646 + i, t, s) for i, (t, s) in enumerate(_QWEN25_EXTRA)]
    raise ValueError(version)


def expected_len(version: str) -> int:
    """``len(tokenizer)`` on the hub: 128,256 (LLaMA 3.x), 151,646 (Qwen2), 151,665 (Qwen2.5)."""
    fam = "llama3" if version.startswith("llama") else "qwen2"
    return N_BPE[fam] + len(token_table(version))


# --- cache / download ------------------------------------------------------------------------


# --- tokenizer.json ----------------------------------------------------------------------------

_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _read_gguf(path: Path) -> tuple[list[str], list[int], list[str]]:
    try:
        from gguf import GGUFReader
    except ImportError:
        raise RuntimeError("reading llama.cpp's vocab files needs the gguf package: "
                           "pip install gguf==0.19.0") from None
    r = GGUFReader(str(path))
    f = r.fields
    return (f["tokenizer.ggml.tokens"].contents(), f["tokenizer.ggml.token_type"].contents(),
            f["tokenizer.ggml.merges"].contents())


def _added(table: list[tuple[int, str, bool]]) -> list[dict[str, Any]]:
    return [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": s} for i, t, s in table]


def _tokenizer_json(version: str, tokens: list[str], merges: list[str]) -> dict[str, Any]:
    """The hub tokenizer.json of a release line (meta-llama/Meta-Llama-3-8B,
    Qwen/Qwen2-1.5B, Qwen/Qwen2.5-1.5B: same pipeline within a family)."""
    llama = version.startswith("llama")
    n = N_BPE["llama3" if llama else "qwen2"]
    vocab = {t: i for i, t in enumerate(tokens[:n])}
    if len(vocab) != n:
        raise ValueError("duplicate tokens in the GGUF vocab")
    if llama:
        bos = "<|begin_of_text|>"
        return {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": _added(token_table(version)),
            "normalizer": None,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": _LLAMA3_SPLIT}, "behavior": "Isolated",
                 "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                 "use_regex": False}]},
            "post_processor": {"type": "Sequence", "processors": [
                {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                 "use_regex": True},
                {"type": "TemplateProcessing",
                 "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                            {"Sequence": {"id": "A", "type_id": 0}}],
                 "pair": [{"SpecialToken": {"id": bos, "type_id": 0}},
                          {"Sequence": {"id": "A", "type_id": 0}},
                          {"SpecialToken": {"id": bos, "type_id": 1}},
                          {"Sequence": {"id": "B", "type_id": 1}}],
                 "special_tokens": {bos: {"id": bos, "ids": [128000], "tokens": [bos]}}}]},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                      "vocab": vocab, "merges": merges},
        }
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": _added(token_table(version)),
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": _QWEN2_SPLIT}, "behavior": "Isolated",
             "invert": False}, dict(bl)]},
        "post_processor": dict(bl),
        "decoder": dict(bl),
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": False, "vocab": vocab,
                  "merges": merges},
    }


def _family(version: str) -> str:
    return "llama3" if version.startswith("llama") else "qwen2"


def _json_dir(version: str) -> Path:
    """Cached tokenizer.json (+ vocab.json/merges.txt for Qwen) of a release line."""
    d = cache_root() / "tokenizers" / CACHE_KEY / f"_{version}"
    if (d / "tokenizer.json").is_file():
        return d
    fam = _family(version)
    files = vocab_files(fam)
    with _lock(f"tok-{version}"):
        if (d / "tokenizer.json").is_file():
            return d
        log.info("building the %s tokenizer.json from %s", version, files["gguf"].name)
        tokens, types, merges = _read_gguf(files["gguf"])
        n = N_BPE[fam]
        if any(t != 1 for t in types[:n]):
            raise ValueError(f"{files['gguf'].name}: non-normal token types below id {n}")
        spec = _tokenizer_json(version, tokens, merges)
        # the GGUF's own specials must agree with ours where the release line keeps them
        if version in ("llama3", "qwen2", "qwen2.5"):
            for i, t, _ in token_table(version):
                if i < len(tokens) and not tokens[i].startswith("[PAD") and tokens[i] != t:
                    raise ValueError(f"{files['gguf'].name}: id {i} is {tokens[i]!r}, not {t!r}")
        from tokenizers import Tokenizer  # validate before caching
        Tokenizer.from_str(json.dumps(spec))
        with atomic_dir(d) as tmp:
            with open(tmp / "tokenizer.json", "w", encoding="utf-8") as fh:
                json.dump(spec, fh, ensure_ascii=False)
            if fam == "qwen2":  # Qwen repos also ship the slow-tokenizer files
                with open(tmp / "vocab.json", "w", encoding="utf-8") as fh:
                    json.dump(spec["model"]["vocab"], fh, ensure_ascii=False)
                with open(tmp / "merges.txt", "w", encoding="utf-8") as fh:
                    fh.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return d


# --- tokenizer_config.json ------------------------------------------------------------------------

def _token_obj(content: str) -> dict[str, Any]:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False}


def _tokenizer_config(model_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tokenizer_config.json, special_tokens_map.json) as in ``model_id``'s hub repo."""
    arch = get_arch(model_id)
    version, instruct = arch.version, arch.is_instruct
    decoder = {str(i): {**_token_obj(t), "special": s} for i, t, s in token_table(version)}
    template = chat_template(version, instruct)
    if version.startswith("llama"):
        # meta-llama/Meta-Llama-3-8B(-Instruct), Llama-3.1-8B(-Instruct), Llama-3.2-*: BOS via the
        # tokenizer.json post-processor, no pad token, eos <|eot_id|> for instruct.
        eos = "<|eot_id|>" if instruct else "<|end_of_text|>"
        cfg: dict[str, Any] = {
            "added_tokens_decoder": decoder, "bos_token": "<|begin_of_text|>",
            "clean_up_tokenization_spaces": True, "eos_token": eos,
            "model_input_names": ["input_ids", "attention_mask"],
            "model_max_length": 1000000000000000019884624838656 if version == "llama3" else 131072,
            "tokenizer_class": "PreTrainedTokenizerFast",
        }
        stm = {"bos_token": _token_obj("<|begin_of_text|>"), "eos_token": _token_obj(eos)}
    else:
        # Qwen/Qwen2-*(-Instruct), Qwen/Qwen2.5-*(-Instruct): no BOS, pad <|endoftext|>,
        # eos <|im_end|> for instruct.
        eos = "<|im_end|>" if instruct else "<|endoftext|>"
        extra = ["<|im_start|>", "<|im_end|>"]
        if version == "qwen2.5":
            extra += [t for t, s in _QWEN25_EXTRA if s]
        cfg = {
            "add_prefix_space": False, "added_tokens_decoder": decoder,
            "additional_special_tokens": extra, "bos_token": None,
            "clean_up_tokenization_spaces": False, "eos_token": eos, "errors": "replace",
            "model_max_length": 32768 if version == "qwen2" else 131072,
            "pad_token": "<|endoftext|>", "split_special_tokens": False,
            "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
        }
        if version == "qwen2.5":
            cfg = {"add_bos_token": False, **cfg}
        stm = {"additional_special_tokens": extra, "eos_token": _token_obj(eos),
               "pad_token": _token_obj("<|endoftext|>")}
    if template is not None:
        cfg["chat_template"] = template
    return dict(sorted(cfg.items())), stm


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "vocab.json", "merges.txt")


def tokenizer_dir(model_id: str) -> Path:
    """A cached directory with ``model_id``'s tokenizer files as the hub repo has them
    (tokenizer.json, tokenizer_config.json, special_tokens_map.json; vocab.json + merges.txt
    for Qwen).  Built on first use; instant afterwards."""
    arch = get_arch(model_id)
    d = cache_root() / "tokenizers" / CACHE_KEY / arch.model_id.replace("/", "--")
    if (d / "tokenizer_config.json").is_file():
        return d
    src = _json_dir(arch.version)
    cfg, stm = _tokenizer_config(arch.model_id)
    with atomic_dir(d) as tmp:
        for name in ("tokenizer.json", "vocab.json", "merges.txt"):
            if (src / name).is_file():  # hard links: the cache holds each tokenizer.json once
                try:
                    os.link(src / name, tmp / name)
                except OSError:
                    shutil.copyfile(src / name, tmp / name)
        write_json(tmp / "special_tokens_map.json", stm)
        write_json(tmp / "tokenizer_config.json", cfg)  # last: marks the directory complete
    return d


def save_tokenizer(model_id: str, out: str | Path) -> list[Path]:
    """Copy ``model_id``'s tokenizer files into ``out``; returns the written paths."""
    src, out = tokenizer_dir(model_id), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in _TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
            written.append(out / name)
    return written


def load_tokenizer(model_id: str):
    """``AutoTokenizer.from_pretrained`` of the cached tokenizer directory."""
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(tokenizer_dir(model_id)))


# --- llama.cpp's expected ids -------------------------------------------------------------------

def llamacpp_tests(family: str) -> list[tuple[str, list[int]]]:
    """The (text, expected ids) pairs of llama.cpp's tokenizer test for ``family``."""
    files = vocab_files(family)
    texts = files["inp"].read_text(encoding="utf-8").split(TEST_SEPARATOR)
    lines = files["out"].read_text(encoding="utf-8").split("\n")
    if texts and texts[-1] == "":  # the file ends with a separator
        texts.pop()
    lines = lines[:len(texts)]
    if len(lines) != len(texts):
        raise ValueError(f"{files['inp'].name}: {len(texts)} texts, {len(lines)} id lines")
    return [(t, [int(x) for x in ln.split()]) for t, ln in zip(texts, lines)]


def check_against_llamacpp(family: str, tokenizer=None) -> tuple[int, int, list[dict[str, Any]]]:
    """Tokenize each llama.cpp test string without special tokens (no BOS; specials in the
    text are not parsed, as llama.cpp's test does) and compare with the expected ids.

    ``family`` is ``llama3``/``qwen2`` or a model id.  Returns ``(matched, total, mismatches)``,
    each mismatch ``{"text", "expected", "got"}``."""
    if family in GGUF_NAMES:
        fam, model_id = family, _CHECK_MODEL[family]
    else:
        model_id, fam = family, get_arch(family).family
    tok = tokenizer if tokenizer is not None else load_tokenizer(model_id)
    tests = llamacpp_tests(fam)
    mismatches = []
    for text, expected in tests:
        got = tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        if got != expected:
            mismatches.append({"text": text, "expected": expected, "got": got})
    return len(tests) - len(mismatches), len(tests), mismatches


def write_generation_config(model_id: str, out: str | Path) -> Path:
    path = Path(out) / "generation_config.json"
    write_json(path, generation_config(model_id))
    return path
