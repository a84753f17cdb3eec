"""The residual benchmark's inputs and checks: a LLaMA-shaped bf16 (base, instruct, cpt-base)
triple written shard by shard with plain file I/O, byte counts, page-cache warming, and the
comparison of every tool's output with the reference."""

from __future__ import annotations

import json
import os
from pathlib import Path

MiB = 2**20


def llama_specs(a) -> list:
    """Tensor specs of a LlamaForCausalLM in HF's state-dict order (bf16): tied embeddings,
    or with ``a.untied`` a separate ``lm_head.weight`` (LLaMA 3 8B)."""
    import torch

    from freshllm.io.st_stream import TensorSpec

    head = a.hidden // a.heads
    kv = a.kv_heads * head
    bf = torch.bfloat16
    specs = [TensorSpec("model.embed_tokens.weight", bf, (a.vocab, a.hidden))]
    for i in range(a.layers):
        p = f"model.layers.{i}."
        specs += [TensorSpec(p + "self_attn.q_proj.weight", bf, (a.hidden, a.hidden)),
                  TensorSpec(p + "self_attn.k_proj.weight", bf, (kv, a.hidden)),
                  TensorSpec(p + "self_attn.v_proj.weight", bf, (kv, a.hidden)),
                  TensorSpec(p + "self_attn.o_proj.weight", bf, (a.hidden, a.hidden)),
                  TensorSpec(p + "mlp.gate_proj.weight", bf, (a.intermediate, a.hidden)),
                  TensorSpec(p + "mlp.up_proj.weight", bf, (a.intermediate, a.hidden)),
                  TensorSpec(p + "mlp.down_proj.weight", bf, (a.hidden, a.intermediate)),
                  TensorSpec(p + "input_layernorm.weight", bf, (a.hidden,)),
                  TensorSpec(p + "post_attention_layernorm.weight", bf, (a.hidden,))]
    specs.append(TensorSpec("model.norm.weight", bf, (a.hidden,)))
    if getattr(a, "untied", False):
        specs.append(TensorSpec("lm_head.weight", bf, (a.vocab, a.hidden)))
    return specs


def write_config_and_tokenizer(out: Path, a) -> None:
    """config.json + a word-level tokenizer with exactly ``vocab`` entries (so that the
    ``residuals`` package, which resizes embeddings to its tokenizer, changes nothing)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
                      num_hidden_layers=a.layers, num_attention_heads=a.heads,
                      num_key_value_heads=a.kv_heads, max_position_embeddings=4096,
                      tie_word_embeddings=not getattr(a, "untied", False), bos_token_id=1, eos_token_id=2, pad_token_id=3,
                      rope_theta=500000.0)
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.dtype = "bfloat16"
    cfg.save_pretrained(str(out))
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab = {t: i for i, t in enumerate(specials + [f"w{i}" for i in range(len(specials), a.vocab)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            pad_token="<pad>").save_pretrained(str(out))


def build_triple(root: Path, a, seed: int = 0) -> dict[str, Path]:
    """base, instruct = base + d_i, cpt = base + d_c; one tensor in memory at a time."""
    import torch

    from freshllm.config import parse_bytes
    from freshllm.io.st_stream import ShardedWriter

    specs = llama_specs(a)
    dirs = {k: root / k for k in ("base", "instruct", "cpt")}
    writers = {k: ShardedWriter(d, specs, parse_bytes(a.shard_size)) for k, d in dirs.items()}
    gen = torch.Generator().manual_seed(seed)
    bf = torch.bfloat16
    for spec in specs:
        base = torch.empty(spec.shape, dtype=bf).uniform_(-0.035, 0.035, generator=gen)
        if len(spec.shape) == 1:
            base += 1.0
        writers["base"].write(spec.name, base)
        for k in ("instruct", "cpt"):
            t = torch.empty(spec.shape, dtype=bf).uniform_(-0.003, 0.003, generator=gen)
            t += base
            writers[k].write(spec.name, t)
            del t
        del base
    for k, w in writers.items():
        w.close()
        write_config_and_tokenizer(dirs[k], a)
    return dirs


def shards(d: Path) -> list[Path]:
    return sorted(d.glob("*.safetensors"))


def nbytes(paths) -> int:
    return sum(p.stat().st_size for p in paths)


def dir_bytes(d: Path) -> int:
    return nbytes(shards(d))


def warm(paths) -> None:
    """Read files once so the timed run finds them in the page cache (like every other run)."""
    buf = bytearray(16 * MiB)
    for p in paths:
        with open(p, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


def compare(dirs: dict[str, Path], outputs: dict[str, Path]) -> dict[str, dict]:
    """Max abs diff of each output vs the float32 reference cpt + instruct - base, and of
    each pair of outputs, all rounded to bf16 (the models' dtype; the `residuals` package
    writes float32). Streams tensor by tensor."""
    import torch

    from freshllm.io.st_stream import ShardedReader

    rd = {k: ShardedReader(v) for k, v in dirs.items()}
    outs = {k: ShardedReader(v) for k, v in outputs.items()}
    keys = list(outs)
    diff = {f"{k} vs reference": 0.0 for k in keys}
    diff.update({f"{a} vs {b}": 0.0 for i, a in enumerate(keys) for b in keys[i + 1:]})
    missing = {k: [] for k in keys}
    for name in rd["base"].specs:
        ref = (rd["cpt"].get(name).float() + rd["instruct"].get(name).float()
               - rd["base"].get(name).float()).to(torch.bfloat16).float()
        got = {}
        for k, r in outs.items():
            if name not in r.specs:
                missing[k].append(name)
                continue
            got[k] = r.get(name).to(torch.bfloat16).float()  # the models' dtype
            diff[f"{k} vs reference"] = max(diff[f"{k} vs reference"], float((got[k] - ref).abs().max()))
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                if a in got and b in got:
                    diff[f"{a} vs {b}"] = max(diff[f"{a} vs {b}"], float((got[a] - got[b]).abs().max()))
        del ref, got
    return {"max_abs_diff": diff, "missing": {k: v for k, v in missing.items() if v}}
