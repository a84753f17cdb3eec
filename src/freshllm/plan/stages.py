"""The plan itself: the params and the launch read once, then one estimate per DVC stage and
the total, as plain JSON-able dicts (``make_plan``)."""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..config import parse_count, read_params
from . import formulas as F
from .arch import ModelInfo
from .commands import Call, norm
from .dvcfiles import Stage
from .evalcost import suite_tokens
from .hardware import Gpu
from .inputs import Inputs, load_inputs  # noqa: F401 (re-exported)

# Assumptions, printed with every plan (the JSON repeats them under total.assumptions).
ASSUMPTIONS: dict[str, Any] = {
    "mfu": 0.4,                      # model FLOPs utilisation, when --tokens-per-s is not given
    "overhead_bytes": 2 * F.GiB,     # per GPU process: CUDA context, NCCL, allocator fragmentation
    "article_tokens": 650,           # paper 3.1.1: mean article length in LLaMA tokens
    "text_bytes_per_token": 4.2,     # UTF-8 bytes of English news text per token
    "article_json_bytes": 300,       # metadata of one JSONL article line (url, title, dates, ...)
    "disk_bytes_per_s": 1.0e9,       # streamed safetensors read + write (residual stages)
    "eval_batch_auto": 16,           # sequences per generation batch when eval.batch_size is auto
    "eval_sample_bytes_per_token": 4.5,  # per-sample log: prompt and response text + JSON
}

# paper Appendix A.2-A.3: LLaMA 3 instruction tuning, "25M samples x 8192 = 204,800M tokens",
# 5 epochs, vs continued pre-training on 100M tokens for 5 epochs: ratio ~2048
IFT_SAMPLES = 25_000_000
IFT_TOKENS_PER_SAMPLE = 8192
IFT_EPOCHS = 5
PAPER_CPT_TOKENS, PAPER_CPT_EPOCHS = 100_000_000, 5


# --- helpers ---------------------------------------------------------------------------------

def _model(info: ModelInfo, dtype: str | None = None) -> dict:
    s = info.shape
    return {"ref": info.ref, "config_source": info.config_source, "dtype": dtype or info.dtype,
            "parameters": s.params, "non_embedding_parameters": s.non_embedding_params,
            "embedding_parameters": s.embedding_params, "tied_embeddings": s.tied,
            "layers": s.layers, "hidden": s.hidden, "vocab": s.vocab}


def _weights(info: ModelInfo, dtype: str) -> int:
    return info.params * F.dtype_bytes(dtype)


def _time(inp: Inputs, flops: float, tokens: float, gpus: int) -> dict | None:
    """Wall time and GPU-hours of a GPU stage: from --tokens-per-s (per GPU) when given, else
    from the assumed MFU x the GPU's bf16 peak."""
    if inp.launch.device != "gpu" and inp.tokens_per_s is None:
        return None
    if inp.tokens_per_s is not None:
        sec = F.seconds_from_throughput(tokens, gpus, inp.tokens_per_s)
        basis = f"{inp.tokens_per_s:g} tokens/s per {'GPU' if inp.launch.device == 'gpu' else 'process'}"
    else:
        sec = F.seconds_from_mfu(flops, gpus, inp.gpu.peak_flops, inp.mfu)
        basis = f"MFU {inp.mfu:g} x {inp.gpu.bf16_tflops:g} TFLOP/s ({inp.gpu.name}) x {gpus}"
    return {"seconds": sec, "gpu_hours": sec * gpus / 3600 if inp.launch.device == "gpu" else 0.0,
            "basis": basis}


def _row(stage: Stage, kind: str, device: str, **kw) -> dict:
    return {"stage": stage.name, "kind": kind, "device": device, **kw}


# --- what a stage runs -------------------------------------------------------------------------
#
# The cost models are keyed by the module a stage's command runs (``python -m freshllm.X``,
# ``accelerate launch ... -m freshllm.X``; with its subcommand where the module has several),
# not by the stage's name: each builder reads the paths and settings it needs from that
# command's own arguments (--model, --data, --out, --tokens, --section, --variant, ...) and the
# params, so a stage under any name that runs a known module is sized. Where a builder needs to
# know what a path holds (the tokens of a packed set, the model in a directory), it follows the
# path to the stage of this dvc.yaml that lists it as an output and reads that stage's command.


class Unsized(Exception):
    """A known module whose arguments do not say enough to size the stage (the row says why)."""


def _main(inp: Inputs, stage: Stage) -> Call | None:
    """The call a stage's row sizes: the first that runs a cost-modelled module other than the
    small steps chained around the main work (else the first small step)."""
    known = [c for c in inp.calls.get(stage.name, []) if _builder(c) is not None]
    heavy = [c for c in known if c.module not in SMALL_STEPS]
    return (heavy or known or [None])[0]


def _made(inp: Inputs, path: str | None) -> Call | None:
    """The main call of the stage that lists ``path`` as an output (None: no stage does)."""
    stage = inp.made_by.get(norm(path)) if path else None
    return _main(inp, stage) if stage is not None else None


def _origin(inp: Inputs, path: str | None) -> tuple[str, str] | None:
    """(family, variant) when ``path`` holds an ancestor model: the ``--base-out`` /
    ``--instruct-out`` of a freshllm.models stage, or, made by no stage here,
    ``models/<family>/<base|instruct>`` of a family of the params."""
    if not path:
        return None
    path = norm(path)
    if path in inp.made_by:
        call = _made(inp, path)
        if call is not None and call.module == "freshllm.models" and call.get("--family") in inp.families:
            for variant in ("base", "instruct"):
                if call.path(f"--{variant}-out") == path:
                    return call.get("--family"), variant
        return None
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "models" and parts[1] in inp.families and parts[2] in ("base", "instruct"):
        return parts[1], parts[2]
    return None


def _variant(inp: Inputs, path: str | None, depth: int = 0) -> str | None:
    """base / instruct: the model a derived model started from (cpt's --variant; a residual
    apply's --target; a gate's --candidate), followed through the stages that make them."""
    origin = _origin(inp, path)
    if origin:
        return origin[1]
    call = _made(inp, path)
    if call is None or depth > 32:
        return None
    if call.get("--variant") in ("base", "instruct"):
        return call.get("--variant")
    for opt in ("--model", "--target", "--candidate"):
        if call.path(opt):
            return _variant(inp, call.path(opt), depth + 1)
    return None


def _budget(inp: Inputs, call: Call) -> str | None:
    """A freshllm.pack call's token budget: ``--tokens``, else ``pack.tokens``."""
    budget = call.get("--tokens") or inp.pack.tokens
    if isinstance(budget, int) and not isinstance(budget, bool):
        return str(budget)
    return budget if isinstance(budget, str) else None


def _data(inp: Inputs, path: str | None) -> tuple[str, str | None]:
    """(token budget, note) of the packed set at ``path``: the ``--tokens`` of the freshllm.pack
    stage that makes it, an update window's (``chain.tokens``, re-rooted: x the windows so far),
    or a directory named by its budget (``data/packed/100M``)."""
    call = _made(inp, path)
    if call is not None and call.module == "freshllm.pack":
        budget = _budget(inp, call)
        if budget is not None:
            return budget, None
    if call is not None and call.name == "freshllm.updates window" and isinstance(call.get("--window"), str):
        chain, w = _chain(inp), call.get("--window")
        k = _windows_so_far(inp, w) if chain.cpt_from == "ancestor" else 1
        note = (f"window {w}: chain.tokens {chain.tokens}"
                + (f" x {k} windows (cpt_from: ancestor)" if k > 1 else ""))
        return str(k * parse_count(chain.tokens)), note
    if path:
        try:
            return str(parse_count(Path(path).name)), None
        except ValueError:
            pass
    raise Unsized(f"--data {path}: no stage here packs it (freshllm.pack, an update window) and its "
                  "name is no token count")


def _label(inp: Inputs, path: str | None) -> str:
    """A model's name in the grammar of freshllm.names (``cpt-base@20K``, ``instruct+tiny``)
    where the stage making it says, else its path."""
    origin = _origin(inp, path)
    if origin:
        return f"{origin[1]}+{origin[0]}"
    call = _made(inp, path)
    if call is not None and call.module == "freshllm.cpt" and call.get("--variant") in ("base", "instruct"):
        try:
            budget, _ = _data(inp, call.path("--data"))
        except Unsized:
            return str(path)
        made = _made(inp, call.path("--data"))
        at = made.get("--window") if made is not None and made.name == "freshllm.updates window" else budget
        return f"cpt-{call.get('--variant')}@{at}"
    return str(path)


def _family_of_residual(inp: Inputs, call: Call) -> str:
    """The family whose residual a call applies: from the extract that makes ``--residual``
    (its --base), else ``--base`` / ``--residual-base``, else ``models/<family>/residual``."""
    res = call.path("--residual")
    made = _made(inp, res)
    if made is not None and made.name == "freshllm.residual extract":
        origin = _origin(inp, made.path("--base"))
        if origin:
            return origin[0]
    for opt in ("--base", "--residual-base"):
        origin = _origin(inp, call.path(opt))
        if origin:
            return origin[0]
    parts = (res or "").split("/")
    if len(parts) == 3 and parts[0] == "models" and parts[1] in inp.families:
        return parts[1]
    raise Unsized(f"--residual {res}: no residual extract here makes it, and no --base names a family")


def _outputs(**paths: tuple[str | None, int]) -> dict[str, int]:
    return {path: size for path, size in paths.values() if path}


# --- stages ----------------------------------------------------------------------------------

def models_row(inp: Inputs, stage: Stage, call: Call) -> dict:
    fam = call.get("--family")
    if fam not in inp.families:
        raise Unsized(f"--family {fam}: not one of the params' families")
    infos, cfg = inp.families[fam], inp.family_cfgs[fam]
    outputs = _outputs(base=(call.path("--base-out"), _weights(infos["base"], infos["base"].dtype)),
                       instruct=(call.path("--instruct-out"), _weights(infos["instruct"], infos["instruct"].dtype)))
    if cfg.source == "hub":
        return _row(stage, "models", "network", model=_model(infos["base"]),
                    bytes_moved=sum(outputs.values()), outputs=outputs,
                    notes=["downloads both models (weights only; tokenizer and config files are MBs)"])
    real = cfg.source == "real"
    loops = ([] if real else [cfg.pretrain]) + [cfg.sft]  # a real model is only fine-tuned
    tokens = sum(loop.steps * loop.sequences_per_step(1) for loop in loops) * cfg.seq_len
    flops = F.train_flops(infos["base"].params, tokens)
    note = (f"converts the real model {cfg.real_model} (once per machine, cached), then SFT on the CPU"
            if real else "builds the tiny local pair: pre-training + SFT on the CPU")
    return _row(stage, "models", "cpu", model=_model(infos["base"]), tokens=tokens, flops={"train_6ND": flops},
                outputs=outputs, time=_time(inp, flops, tokens, 1), notes=[note])


def crawl_row(inp: Inputs, stage: Stage, call: Call) -> dict:
    """The crawl (``--out``, default data/articles.jsonl); with ``--published-from/-to``, an
    update's window of it (crawl.max_articles per window)."""
    a = ASSUMPTIONS
    per_article = a["article_tokens"] * a["text_bytes_per_token"] + a["article_json_bytes"]
    windowed = call.get("--published-from") is not None or call.get("--published-to") is not None
    what = "crawl.max_articles (per window)" if windowed else "crawl.max_articles"
    return _row(stage, "crawl", "network", tokens=inp.max_articles * a["article_tokens"], estimate=True,
                outputs={call.path("--out") or "data/articles.jsonl": int(inp.max_articles * per_article)},
                notes=[f"estimate: {what} {inp.max_articles:,} x ~{a['article_tokens']} tokens "
                       f"(paper 3.1.1 mean) x {a['text_bytes_per_token']} B/token + metadata"])


def pack_row(inp: Inputs, stage: Stage, call: Call) -> dict:
    budget = _budget(inp, call)
    if budget is None:
        raise Unsized("no --tokens and no pack.tokens")
    seq = inp.pack.seq_len
    rows = math.ceil(parse_count(budget) / seq)
    tokens = rows * seq
    size = tokens * F.PACKED_BYTES_PER_TOKEN
    notes = [f"{rows:,} rows x {seq} tokens x {F.PACKED_BYTES_PER_TOKEN} B "
             "(uint32 input_ids + uint32 position_ids + uint8 loss_mask, io/packed.py)"]
    if inp.pack.val_fraction:
        val = inp.pack.val_fraction * inp.max_articles * ASSUMPTIONS["article_tokens"]
        size += int(val * F.PACKED_BYTES_PER_TOKEN)
        notes.append(f"+ val split: ~{val:,.0f} tokens (estimate: val_fraction of crawl.max_articles)")
    return _row(stage, "pack", "cpu", tokens=tokens, outputs=_outputs(out=(call.path("--out"), size)), notes=notes)


def cpt_plan(inp: Inputs, info: ModelInfo, budget: str) -> dict:
    """Steps, tokens, FLOPs, memory and checkpoints of one cpt run of ``info`` on ``budget``."""
    tc = inp.cpt.train
    launch, seq = inp.launch, inp.pack.seq_len
    world = launch.processes
    rows = math.ceil(parse_count(budget) / seq)
    run = tc.resolve(rows, world)
    tokens = run.steps * run.sequences_per_step(world) * seq
    new_tokens = run.steps * run.sequences_per_step(world, new_only=True) * seq
    ckpt = tc.gradient_checkpointing or (launch.distributed_type == "FSDP" and launch.fsdp_activation_checkpointing)
    shape, n = info.shape, info.params
    par = launch.parallel()
    overhead = ASSUMPTIONS["overhead_bytes"] if launch.device == "gpu" else 0  # host RAM on a CPU run
    mem = F.train_memory(shape, seq, tc.batch_size, par, tc.mixed_precision, ckpt, overhead)
    rg = F.regime(tc.mixed_precision, bf16_params=par.kind == "fsdp")
    attn_tok = F.attention_train_flops_per_token(shape, seq)
    flops = {"train_6ND": F.train_flops(n, tokens),
             "attention_12Ldseq": attn_tok * tokens,
             "refined": F.train_flops(shape.compute_params, tokens) + attn_tok * tokens,
             "hardware_with_recompute": F.train_flops(n, tokens) + (F.forward_flops(n, tokens) if ckpt else 0)}
    n_ckpt = F.checkpoints_on_disk(run.steps, tc.save_every, tc.keep_last)
    memory = {
        "per_process": {k: v for k, v in mem.items() if k != "peak"},
        "peak": mem["peak"],
        "activations_checkpointed": F.activation_bytes(shape, seq, tc.batch_size, True, rg),
        "activations_full": F.activation_bytes(shape, seq, tc.batch_size, False, rg),
        "activation_regime": rg.name,
        "activation_checkpointing": ckpt,
        "logits_fp32": F.logits_bytes(shape, seq, tc.batch_size),
        "weights_grads_adam_unsharded": 16 * n,
        "accelerate_estimate_memory": F.accelerate_estimate_memory(shape),
        "parallel": {"kind": par.kind, "processes": par.processes, "shard": par.shard},
        "micro_batch": tc.batch_size, "seq_len": seq, "mixed_precision": tc.mixed_precision,
    }
    if launch.device == "gpu":
        memory["gpu"] = inp.gpu.name
        memory["gpu_memory"] = inp.gpu.memory
        memory["fits"] = mem["peak"] <= inp.gpu.memory
        memory["headroom"] = inp.gpu.memory - mem["peak"]
    return {"steps": run.steps, "tokens": tokens, "new_tokens": new_tokens, "flops": flops,
            "memory": memory, "checkpoints": {"kept_at_once": n_ckpt, "each": F.checkpoint_bytes(n),
                                              "bytes": n_ckpt * F.checkpoint_bytes(n)}}




def _cpt_section(inp: Inputs, section: str):
    """The CptConfig ``python -m freshllm.cpt --section <section>`` reads, read as it reads it
    (``chain.cpt``: an overlay of ``cpt``; ``cpt``: the one the inputs validated)."""
    if section == "cpt":
        return inp.cpt
    from ..config import load_section
    from ..cpt import CptConfig

    return load_section(CptConfig, section, inp.params_path)


def cpt_row(inp: Inputs, stage: Stage, call: Call) -> dict:
    """One freshllm.cpt run: the model at ``--model`` (an ancestor model; else, e.g. a chain's
    ``$START``, the target family's ``--variant``), on the packed set at ``--data``, on the
    schedule of ``--section`` (cpt; a chain of updates: chain.cpt)."""
    from dataclasses import replace

    section = call.get("--section") if isinstance(call.get("--section"), str) else "cpt"
    ccpt = _cpt_section(inp, section)
    tc = ccpt.train
    origin = _origin(inp, call.path("--model"))
    variant = call.get("--variant")
    if variant not in ("base", "instruct"):  # cpt requires it; read the model's where missing
        variant = _variant(inp, call.path("--model")) or "base"
    info = inp.families[origin[0]][origin[1]] if origin else inp.families[inp.grid.target][variant]
    budget, data_note = _data(inp, call.path("--data"))
    sub = replace(inp, cpt=ccpt)
    save = info.dtype if tc.save_dtype == "auto" else tc.save_dtype
    p = cpt_plan(sub, info, budget)
    notes = []
    if data_note or call.get("--replay-data"):
        notes.append("; ".join(n for n in (data_note, f"{section}.train.replay_fraction {tc.replay_fraction} of "
                                           "each step from the replay pool" if call.get("--replay-data") else None)
                               if n))
    if inp.launch.mixed_precision != tc.mixed_precision and inp.launch.device == "gpu":
        notes.append(f"{section}.train.mixed_precision {tc.mixed_precision!r} is what runs (the accelerate "
                     f"config says {inp.launch.mixed_precision!r})")
    if inp.launch.device == "gpu" and not p["memory"]["fits"]:
        notes.append(f"does NOT fit {inp.gpu.name}: needs {p['memory']['peak'] / F.GiB:.1f} GiB per process")
    return _row(stage, "cpt", inp.launch.device, processes=inp.launch.processes, model=_model(info, save),
                section=section, variant=variant, **p,
                outputs=_outputs(out=(call.path("--out"), _weights(info, save))),
                transient=p["checkpoints"]["bytes"],
                time=_time(sub, p["flops"]["train_6ND"], p["tokens"], inp.launch.processes), notes=notes)


def _eval_dtype(inp: Inputs, stored: str) -> str:
    return stored if inp.eval.dtype == "auto" else inp.eval.dtype


def eval_plan(inp: Inputs, info: ModelInfo, stored_dtype: str) -> dict:
    dtype = _eval_dtype(inp, stored_dtype)
    tasks = suite_tokens(inp.eval)
    prompt = sum(t["prompt_tokens"] for t in tasks.values())
    gen = sum(t["gen_tokens"] for t in tasks.values())
    n = info.params
    flops = F.forward_flops(n, prompt + gen)
    weights = _weights(info, dtype)
    batch = inp.eval.batch_size if isinstance(inp.eval.batch_size, int) else ASSUMPTIONS["eval_batch_auto"]
    longest = max((t["prompt_tokens"] / max(1, t["requests"]) + t["gen_tokens"] / max(1, t["docs"])
                   for t in tasks.values()), default=0)
    kv = int(batch * longest * F.kv_cache_bytes_per_token(info.shape, F.dtype_bytes(dtype)))
    overhead = ASSUMPTIONS["overhead_bytes"] if inp.launch.device == "gpu" else 0
    peak = weights + kv + overhead
    memory = {"per_process": {"weights": weights, "kv_cache": kv, "overhead": overhead},
              "peak": peak, "batch": batch}
    device = "gpu" if inp.launch.device == "gpu" else "cpu"
    time = None
    if device == "gpu":
        memory.update(gpu=inp.gpu.name, gpu_memory=inp.gpu.memory, fits=peak <= inp.gpu.memory,
                      headroom=inp.gpu.memory - peak)
        prefill = F.forward_flops(n, prompt) / (inp.gpu.peak_flops * inp.mfu)
        decode = gen / batch * weights / (inp.gpu.hbm_gb_s * 1e9)  # one weight read per decode step
        time = {"seconds": prefill + decode, "gpu_hours": (prefill + decode) / 3600,
                "basis": f"prefill at MFU {inp.mfu:g}; decode reads the weights once per step of "
                         f"{batch} sequences at {inp.gpu.hbm_gb_s:g} GB/s"}
    samples = int((prompt + gen) * ASSUMPTIONS["eval_sample_bytes_per_token"])
    return {"device": device, "tokens": int(prompt + gen), "estimate": True,
            "eval_tokens": {"prompt": int(prompt), "generated_upper_bound": int(gen),
                            "per_task": tasks},
            "flops": {"forward_2N": flops}, "memory": memory, "time": time, "samples_bytes": samples,
            "dtype": dtype}




def _cpt_dtype(inp: Inputs, info: ModelInfo) -> str:
    return info.dtype if inp.cpt.train.save_dtype == "auto" else inp.cpt.train.save_dtype


def _model_at(inp: Inputs, path: str | None, kind: str | None = None) -> tuple[ModelInfo, str]:
    """(model, stored dtype) of the model at ``path``: an ancestor model in its own dtype, else a
    model derived from the target family's (cpt, merged, promoted: the cpt save dtype) -- its
    instruct when ``kind`` (a freshllm.names kind) or the stages making it say so, else its base."""
    origin = _origin(inp, path)
    if origin:
        info = inp.families[origin[0]][origin[1]]
        return info, info.dtype
    if kind:
        variant = "instruct" if kind in ("instruct", "cpt-instruct") else "base"
    else:
        variant = _variant(inp, path) or "base"
    info = inp.families[inp.grid.target][variant]
    return info, _cpt_dtype(inp, info)


def eval_row(inp: Inputs, stage: Stage, call: Call) -> dict:
    """One freshllm.eval run of the model at ``--model`` (its kind from ``--kind`` or ``--name``);
    the per-sample log at ``--samples``."""
    from ..names import model_kind

    name = call.get("--name")
    kind = call.get("--kind") if isinstance(call.get("--kind"), str) else (
        model_kind(name) if isinstance(name, str) else None)
    info, stored = _model_at(inp, call.path("--model"), kind)
    p = eval_plan(inp, info, stored)
    device = p.pop("device")
    return _row(stage, "eval", device, processes=1, model=_model(info, p.pop("dtype")), **p,
                outputs=_outputs(samples=(call.path("--samples"), p["samples_bytes"])),
                notes=["estimate: tokens per task from split sizes and typical prompt lengths, "
                       "generation counted to its limit (freshllm.plan.evalcost)"])


def _io_time(nbytes: int) -> dict:
    sec = nbytes / ASSUMPTIONS["disk_bytes_per_s"]
    return {"seconds": sec, "gpu_hours": 0.0,
            "basis": f"{ASSUMPTIONS['disk_bytes_per_s'] / 1e9:g} GB/s of streamed safetensors I/O"}


def residual_extract_row(inp: Inputs, stage: Stage, call: Call) -> dict:
    """R = ``--instruct`` - ``--base`` (ancestor models), written to ``--out``."""
    b, i = _origin(inp, call.path("--base")), _origin(inp, call.path("--instruct"))
    if not (b and i):
        raise Unsized(f"--base {call.get('--base')} / --instruct {call.get('--instruct')}: not a family's models")
    base, inst = inp.families[b[0]][b[1]], inp.families[i[0]][i[1]]
    out = _weights(inst, inp.residual_dtype)
    moved = {"read": _weights(base, base.dtype) + _weights(inst, inst.dtype), "written": out}
    notes = [f"R = instruct - base in float32, stored as {inp.residual_dtype}"]
    if base.shape != inst.shape:
        notes.append("base and instruct shapes differ: extract will refuse")
    return _row(stage, "residual-extract", "cpu", model=_model(inst, inp.residual_dtype),
                flops={"elementwise": inst.params}, bytes_moved=sum(moved.values()), io=moved,
                outputs=_outputs(out=(call.path("--out"), out)), time=_io_time(sum(moved.values())), notes=notes)


def residual_apply_row(inp: Inputs, stage: Stage, call: Call) -> dict:
    """``--target`` + alpha x R(``--residual``) -> ``--out``; with ``--merge <name>``, the
    setting ``merges.<name>`` (TIES / DARE / MagMax: a few passes over the same bytes)."""
    src = _family_of_residual(inp, call)
    target, tdtype = _model_at(inp, call.path("--target"))
    res_base = inp.families[src]["base"]
    out = _weights(target, tdtype)
    moved = {"read": _weights(res_base, inp.residual_dtype) + out + _weights(res_base, res_base.dtype),
             "written": out}
    label = _label(inp, call.path("--target"))
    merge = call.get("--merge")
    if isinstance(merge, str):
        notes = [f"{label} merged by merges.{merge} {(inp.params.get('merges') or {}).get(merge)}"]
    else:
        notes = [f"{label} + {inp.params.get('residual', {}).get('alpha', 1.0)} x R({src}), written in the "
                 f"target dtype {tdtype}" + ("; reads --base for the per-layer cosine report"
                                              if call.get("--base") else "")]
    if res_base.shape != target.shape:
        notes.append(f"the residual of {src} and the target differ in shape: apply will refuse "
                     "(vocabulary only: residual.vocab: shared_rows)")
    return _row(stage, "residual-apply", "cpu", model=_model(target, tdtype),
                flops={"elementwise": 2 * target.params}, bytes_moved=sum(moved.values()), io=moved,
                outputs=_outputs(out=(call.path("--out"), out)), time=_io_time(sum(moved.values())), notes=notes)


# --- chained updates (freshllm.updates): the promotion gate, the chain's own steps ---------------

def _promote_section(inp: Inputs):
    from ..config import build_config
    from ..updates.config import PromoteConfig

    return build_config(PromoteConfig, inp.params.get("promote") or {}, "promote")


def gate_row(inp: Inputs, stage: Stage, call: Call) -> dict:
    """freshllm.updates.gating (``gate@<w>``), the worst case: the incumbent and the candidate
    scored on the validation split, then every ``promote.retry`` entry applied (as a
    residual-apply row) and scored: ``2 + len(retry)`` validation evals and ``len(retry)``
    applies; the validation eval is the eval row with the instruction tasks only, on
    ``promote.val_ifeval_prompts`` prompts; the residual's family from ``--residual-base``."""
    from dataclasses import replace

    from ..tasks import ALL_BENCHMARKS

    cfg = _promote_section(inp)
    retries = len(cfg.retry)
    target = inp.families[inp.grid.target]["base"]
    origin = _origin(inp, call.path("--residual-base"))
    res_fam = origin[0] if origin else (inp.params.get("chain", {}).get("residual_source") or inp.grid.target)
    res_base = inp.families[res_fam]["base"]
    tdtype = _cpt_dtype(inp, target)
    val_eval = replace(inp.eval, tasks=[t for t in inp.eval.tasks if t in ALL_BENCHMARKS
                                        and ALL_BENCHMARKS[t].ifeval_scoring] or inp.eval.tasks,
                       toy_ifeval_prompts=cfg.val_ifeval_prompts)
    one = eval_plan(replace(inp, eval=val_eval), target, tdtype)
    n_evals = 2 + retries
    merged = _weights(target, tdtype)
    apply_io = {"read": _weights(res_base, inp.residual_dtype) + merged + _weights(res_base, res_base.dtype),
                "written": merged}
    apply_bytes = retries * sum(apply_io.values())
    time = None
    if one["time"] is not None:
        sec = n_evals * one["time"]["seconds"] + _io_time(apply_bytes)["seconds"]
        time = {"seconds": sec, "gpu_hours": sec / 3600,
                "basis": f"{n_evals} validation evals ({one['time']['basis']}) + {retries} applies at "
                         f"{ASSUMPTIONS['disk_bytes_per_s'] / 1e9:g} GB/s"}
    memory = dict(one["memory"])
    return _row(stage, "eval", one["device"], processes=1, model=_model(target, one["dtype"]),
                tokens=n_evals * one["tokens"], estimate=True,
                eval_tokens={"per_eval": one["eval_tokens"], "evals": n_evals},
                flops={"forward_2N": n_evals * one["flops"]["forward_2N"], "elementwise": retries * 2 * target.params},
                memory=memory, time=time, bytes_moved=apply_bytes, io={"per_apply": apply_io, "applies": retries},
                outputs=_outputs(out=(call.path("--out"), merged)),
                transient=(merged if retries else 0) + 2 * int(one["samples_bytes"]),
                notes=[f"worst case: the candidate fails, so every one of the {retries} promote.retry entries is "
                       f"applied and scored: {n_evals} validation evals (incumbent, candidate, each retry: "
                       f"{', '.join(val_eval.tasks)} on {cfg.val_ifeval_prompts} validation prompts + the "
                       f"validation news) and {retries} residual applies",
                       "transient: the best passing retry's model (the others are deleted as scored) and the "
                       "evals' sample logs, in a temporary directory next to the output"])




def _chain(inp: Inputs):
    from ..config import build_config
    from ..updates.config import ChainConfig

    return build_config(ChainConfig, inp.params.get("chain") or {}, "chain")


def _windows_so_far(inp: Inputs, window: str) -> int:
    """1 for the chain's first window, 2 for the second, ... (the order of ``updates``)."""
    keys = list(inp.params.get("updates") or {})
    return keys.index(window) + 1 if window in keys else 1


def _pack_bytes(inp: Inputs, tokens: int) -> int:
    return math.ceil(tokens / inp.pack.seq_len) * inp.pack.seq_len * F.PACKED_BYTES_PER_TOKEN


def chain_root_row(inp: Inputs, stage: Stage, call: Call) -> dict:
    """``freshllm.updates root`` (``chain-root``): the ancestor node under ``--models-out``,
    copies of ``--base`` (as cpt-base) and ``--instruct`` (as cpt-instruct and current); empty
    dedup / held-out / packed data."""
    b, i = _origin(inp, call.path("--base")), _origin(inp, call.path("--instruct"))
    if not (b and i):
        raise Unsized(f"--base {call.get('--base')} / --instruct {call.get('--instruct')}: not a family's models")
    base_info, inst_info = inp.families[b[0]][b[1]], inp.families[i[0]][i[1]]
    base, inst = _weights(base_info, base_info.dtype), _weights(inst_info, inst_info.dtype)
    root = call.path("--models-out")
    outs = {f"{root}/cpt-base": base, f"{root}/cpt-instruct": inst, f"{root}/current": inst} if root else {}
    moved = 2 * (base + 2 * inst)
    return _row(stage, "chain-root", "cpu", bytes_moved=moved, outputs=outs, time=_io_time(moved),
                notes=["copies: the ancestor models under the chain's names (read + written)"])


def chain_window_row(inp: Inputs, stage: Stage, call: Call) -> dict:
    """``freshllm.updates window`` (``u-window``): dedup, held-out split, the window packed to
    ``chain.tokens`` (re-rooted: the union of every window so far) and the replay pool
    (``chain.replay_tokens``)."""
    w = call.get("--window")
    if not isinstance(w, str):
        raise Unsized("no --window")
    chain = _chain(inp)
    k = _windows_so_far(inp, w) if chain.cpt_from == "ancestor" else 1
    own, replay = parse_count(chain.tokens), parse_count(chain.replay_budget)
    a = ASSUMPTIONS
    corpus = int(inp.max_articles * (a["article_tokens"] * a["text_bytes_per_token"] + a["article_json_bytes"]))
    outs = _outputs(packed=(call.path("--packed-out"), _pack_bytes(inp, k * own)),
                    replay=(call.path("--replay-out"), _pack_bytes(inp, replay) if _windows_so_far(inp, w) > 1 else 0),
                    dedup=(call.path("--dedup-out"), corpus * _windows_so_far(inp, w)))
    notes = [f"packed: chain.tokens {chain.tokens}" + (f" x {k} windows (cpt_from: ancestor: the union)" if k > 1 else ""),
             f"replay pool: chain.replay_tokens {chain.replay_budget} (as much as the earlier windows hold; "
             "none for the first)",
             "dedup: this window's new articles plus every earlier window's history (estimate: crawl.max_articles "
             "per window)"]
    return _row(stage, "u-window", "cpu", tokens=k * own, estimate=True, outputs=outs, notes=notes)


def promote_row(inp: Inputs, stage: Stage, call: Call) -> dict:
    """``freshllm.updates promote``: a copy of the last window's current model to ``--out``."""
    info = inp.families[inp.grid.target]["base"]
    out = _weights(info, _cpt_dtype(inp, info))
    return _row(stage, "promote", "cpu", bytes_moved=2 * out, outputs=_outputs(out=(call.path("--out"), out)),
                time=_io_time(2 * out), notes=["a copy of the last window's current model"])


def small_row(inp: Inputs, stage: Stage, call: Call | None = None) -> dict:
    return _row(stage, stage.base, "cpu", outputs={}, notes=["JSON, markdown and plots: a few MB at most"])


Builder = Callable[[Inputs, Stage, Call], dict]

# module (with its subcommand, where it has several) -> the cost model of one run of it
BUILDERS: dict[str, Builder] = {
    "freshllm.models": models_row, "freshllm.crawl": crawl_row, "freshllm.pack": pack_row,
    "freshllm.cpt": cpt_row, "freshllm.eval": eval_row,
    "freshllm.residual extract": residual_extract_row, "freshllm.residual apply": residual_apply_row,
    "freshllm.updates root": chain_root_row, "freshllm.updates window": chain_window_row,
    "freshllm.updates.gating": gate_row, "freshllm.updates promote": promote_row,
    "freshllm.updates report": small_row, "freshllm.report": small_row, "freshllm.report.methods": small_row,
    "freshllm.figures": small_row, "freshllm.tasks.heldout": small_row,
    # the small steps chained around the main work (SMALL_STEPS): the row sizes the main work
    "freshllm.updates.start": small_row, "freshllm.cards": small_row, "freshllm.updates.drift": small_row,
}
# print a path (start), write a model card and lineage JSON (cards), a per-layer drift JSON (drift)
SMALL_STEPS = frozenset({"freshllm.updates.start", "freshllm.cards", "freshllm.updates.drift"})


def _builder(call: Call) -> Builder | None:
    return BUILDERS.get(call.name) or (BUILDERS.get(call.module) if call.subcommand else None)


def stage_row(inp: Inputs, stage: Stage) -> dict:
    """The row of one stage: the cost model of the main module its command runs, plus notes on
    what else it runs that no model sizes."""
    run = inp.calls.get(stage.name, [])
    main = _main(inp, stage)
    unknown = [c.name for c in run if _builder(c) is None]
    if main is None:
        why = (f"no cost model for module {', '.join(dict.fromkeys(unknown))}" if unknown
               else "no cost model for this stage: its cmd runs no python -m module")
        row = _row(stage, stage.base, "?", outputs={}, notes=[why])
    else:
        try:
            row = _builder(main)(inp, stage, main)
        except Unsized as exc:
            row = _row(stage, stage.base, "?", outputs={}, notes=[f"not sized: {main.name}: {exc}"])
        others = [c.name for c in run if c is not main and _builder(c) is not None and c.module not in SMALL_STEPS]
        if others:
            row.setdefault("notes", []).append(
                f"also runs {', '.join(others)}: not sized (the row sizes {main.name})")
        if unknown:
            row.setdefault("notes", []).append(
                f"no cost model for module {', '.join(dict.fromkeys(unknown))} (also run here): not sized")
    row["modules"] = [c.name for c in run]
    return row


# --- the whole plan ------------------------------------------------------------------------

def _disk(row: dict, stage: Stage) -> dict:
    """The stage's outputs as dvc.yaml lists them, sized by the builder (unsized outs are
    metrics and plots: small)."""
    sizes = row.pop("outputs", {})
    outs = {path: {"bytes": sizes.get(path, 0), "dvc_cached": cached} for path, cached in stage.outs}
    unknown = sorted(set(sizes) - set(outs))
    if unknown:  # the builder's paths drifted from dvc.yaml
        row.setdefault("notes", []).append(f"sized outputs not in dvc.yaml: {unknown}")
    return {"outputs": outs, "bytes": sum(o["bytes"] for o in outs.values()),
            "dvc_cached_bytes": sum(o["bytes"] for o in outs.values() if o["dvc_cached"]),
            "transient_bytes": row.pop("transient", 0)}


def instruction_ft(inp: Inputs, cpt_rows: dict[str, dict]) -> dict:
    """Paper Appendix A.2-A.3: the FLOPs of the instruction fine-tuning the residual avoids."""
    n = inp.families[inp.grid.target]["base"].params
    tokens = IFT_SAMPLES * IFT_TOKENS_PER_SAMPLE
    flops = F.train_flops(n, tokens) * IFT_EPOCHS
    paper_ratio = (tokens * IFT_EPOCHS) / (PAPER_CPT_TOKENS * PAPER_CPT_EPOCHS)
    return {
        "source": "paper Appendix A.2-A.3",
        "samples": IFT_SAMPLES, "tokens_per_sample": IFT_TOKENS_PER_SAMPLE, "tokens": tokens,
        "epochs": IFT_EPOCHS, "parameters": n, "flops": flops,
        "paper_ratio": paper_ratio,
        "ratio_vs_cpt": {name: flops / r["flops"]["train_6ND"] for name, r in cpt_rows.items()
                         if r.get("section") == "cpt" and r.get("variant") == "base"},
        "notes": ["the paper's A.2 counts 25M samples x 8192 tokens (its footnote 1 says 10M "
                  "hand-annotated examples for LLaMA 3 Instruct); its ratio 2048 assumes 5 cpt epochs, "
                  "the ratios here use this plan's cpt tokens",
                  "instruction residuals instead cost one subtraction and one scaled addition per "
                  "parameter (residual-extract / residual-apply: bytes moved, no training)"],
    }


@contextlib.contextmanager
def expanded(params_path: str | Path):
    """``params_path`` as the stages would read it: a profile overlay (``include:``, e.g.
    profiles/updates-toyworld.yaml) expanded into a temporary params file first."""
    path = Path(params_path)
    if not (path.is_file() and "include" in (read_params(path) or {})):
        yield path
        return
    from ..profile import use

    with tempfile.TemporaryDirectory() as tmp:
        yield use(path.stem, Path(tmp) / "params.yaml", path.parent)


def make_plan(params_path: str | Path = "params.yaml", dvc_yaml: str | Path = "dvc.yaml",
              gpu: Gpu | None = None, mfu: float | None = None, tokens_per_s: float | None = None) -> dict:
    """``{stage name: estimate, ..., "total": ...}`` for ``dvc repro`` with these params."""
    from .hardware import DEFAULT_GPU, GPUS

    gpu = gpu or GPUS[DEFAULT_GPU]
    mfu = ASSUMPTIONS["mfu"] if mfu is None else mfu
    given = Path(params_path)
    with expanded(params_path) as params_path:  # builders read sections from it (load_section)
        inp = load_inputs(params_path, dvc_yaml, gpu, mfu, tokens_per_s)
        plan: dict[str, Any] = {}
        for stage in inp.stages:
            row = stage_row(inp, stage)
            row["disk"] = _disk(row, stage)
            row.setdefault("notes", [])
            plan[stage.name] = row
        plan["total"] = total(inp, plan)
    if Path(params_path) != given:
        plan["total"]["params_file"] = f"{given} (expanded)"
    return plan


def total(inp: Inputs, plan: dict) -> dict:
    rows = list(plan.values())
    out_bytes = sum(r["disk"]["bytes"] for r in rows)
    cached = sum(r["disk"]["dvc_cached_bytes"] for r in rows)
    extra = cached if inp.cache.second_copy else 0
    transient = max((r["disk"]["transient_bytes"] for r in rows), default=0)
    gpu_rows = [r for r in rows if r.get("memory") and "fits" in r["memory"]]
    times = [r["time"] for r in rows if r.get("time")]
    cpt_rows = {r["stage"]: r for r in rows if r["kind"] == "cpt"}
    flops = sum(r.get("flops", {}).get("train_6ND", 0) + r.get("flops", {}).get("forward_2N", 0)
                for r in rows if r["kind"] in ("cpt", "eval"))
    return {
        "stages": len(rows),
        "tokens": {"cpt": sum(r["tokens"] for r in cpt_rows.values()),
                   "eval_estimate": sum(r.get("tokens", 0) for r in rows if r["kind"] == "eval")},
        "flops": flops,
        "disk": {"outputs": out_bytes, "dvc_cached": cached, "dvc_cache_extra": extra,
                 "cache": inp.cache.describe(), "transient_checkpoints_peak": transient,
                 "total": out_bytes + extra + transient},
        "memory": {"peak_per_process": max((r["memory"]["peak"] for r in gpu_rows), default=None),
                   "fits": all(r["memory"]["fits"] for r in gpu_rows) if gpu_rows else None,
                   "not_fitting": [r["stage"] for r in gpu_rows if not r["memory"]["fits"]]},
        "time": {"seconds": sum(t["seconds"] for t in times),
                 "gpu_hours": sum(t["gpu_hours"] for t in times),
                 "note": "stages run one after another (dvc repro); network-bound stages (models "
                         "download, crawl) and CPU packing are not timed"},
        "instruction_ft_avoided": instruction_ft(inp, cpt_rows) if cpt_rows else None,
        "launch": {"config": inp.launch.path, "describe": inp.launch.describe(),
                   "distributed_type": inp.launch.distributed_type, "processes": inp.launch.processes,
                   "device": inp.launch.device},
        "gpu": {"name": inp.gpu.name, "memory": inp.gpu.memory, "bf16_tflops": inp.gpu.bf16_tflops,
                "hbm_gb_s": inp.gpu.hbm_gb_s},
        "throughput": ({"tokens_per_s_per_gpu": inp.tokens_per_s} if inp.tokens_per_s is not None
                       else {"mfu": inp.mfu}),
        "assumptions": dict(ASSUMPTIONS, mfu=inp.mfu),
        "params_file": str(inp.params_path),
        "notes": inp.notes,
    }
