"""The plan itself: the params and the launch read once, then one estimate per DVC stage and
the total, as plain JSON-able dicts (``make_plan``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from ..config import parse_count
from . import formulas as F
from .arch import ModelInfo
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


# --- stages ----------------------------------------------------------------------------------

def models_row(inp: Inputs, stage: Stage) -> dict:
    fam = stage.item
    infos, cfg = inp.families[fam], inp.family_cfgs[fam]
    outputs = {f"models/{fam}/{v}": _weights(infos[v], infos[v].dtype) for v in ("base", "instruct")}
    if cfg.source == "hub":
        return _row(stage, "models", "network", model=_model(infos["base"]),
                    bytes_moved=sum(outputs.values()), outputs=outputs,
                    notes=["downloads both models (weights only; tokenizer and config files are MBs)"])
    real = cfg.source == "real"
    tokens = ((0 if real else cfg.pretrain_steps) + cfg.sft_steps) * cfg.batch_size * cfg.seq_len
    flops = F.train_flops(infos["base"].params, tokens)
    note = (f"converts the real model {cfg.real_model} (once per machine, cached), then SFT on the CPU"
            if real else "builds the tiny local pair: pre-training + SFT on the CPU")
    return _row(stage, "models", "cpu", model=_model(infos["base"]), tokens=tokens, flops={"train_6ND": flops},
                outputs=outputs, time=_time(inp, flops, tokens, 1), notes=[note])


def crawl_row(inp: Inputs, stage: Stage) -> dict:
    a = ASSUMPTIONS
    per_article = a["article_tokens"] * a["text_bytes_per_token"] + a["article_json_bytes"]
    return _row(stage, "crawl", "network", tokens=inp.max_articles * a["article_tokens"], estimate=True,
                outputs={"data/articles.jsonl": int(inp.max_articles * per_article)},
                notes=[f"estimate: crawl.max_articles {inp.max_articles:,} x ~{a['article_tokens']} tokens "
                       f"(paper 3.1.1 mean) x {a['text_bytes_per_token']} B/token + metadata"])


def pack_row(inp: Inputs, stage: Stage) -> dict:
    budget = stage.item
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
    return _row(stage, "pack", "cpu", tokens=tokens, outputs={f"data/packed/{budget}": size}, notes=notes)


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


def cpt_row(inp: Inputs, stage: Stage) -> dict:
    variant, budget = stage.item["variant"], stage.item["budget"]
    info = inp.families[inp.grid.target][variant]
    tc = inp.cpt.train
    save = info.dtype if tc.save_dtype == "auto" else tc.save_dtype
    p = cpt_plan(inp, info, budget)
    notes = []
    if inp.launch.mixed_precision != tc.mixed_precision and inp.launch.device == "gpu":
        notes.append(f"cpt.train.mixed_precision {tc.mixed_precision!r} is what runs (the accelerate "
                     f"config says {inp.launch.mixed_precision!r})")
    if inp.launch.device == "gpu" and not p["memory"]["fits"]:
        notes.append(f"does NOT fit {inp.gpu.name}: needs {p['memory']['peak'] / F.GiB:.1f} GiB per process")
    return _row(stage, "cpt", inp.launch.device, processes=inp.launch.processes, model=_model(info, save),
                **p, outputs={f"models/cpt/{variant}-{budget}": _weights(info, save)},
                transient=p["checkpoints"]["bytes"], time=_time(inp, p["flops"]["train_6ND"], p["tokens"],
                                                               inp.launch.processes),
                notes=notes)


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


def _eval_row(inp: Inputs, stage: Stage, info: ModelInfo, stored: str, samples_path: str) -> dict:
    p = eval_plan(inp, info, stored)
    device = p.pop("device")
    return _row(stage, "eval", device, processes=1, model=_model(info, p.pop("dtype")), **p,
                outputs={samples_path: p["samples_bytes"]},
                notes=["estimate: tokens per task from split sizes and typical prompt lengths, "
                       "generation counted to its limit (freshllm.plan.evalcost)"])


def _cpt_dtype(inp: Inputs, info: ModelInfo) -> str:
    return info.dtype if inp.cpt.train.save_dtype == "auto" else inp.cpt.train.save_dtype


def eval_orig_row(inp: Inputs, stage: Stage) -> dict:
    fam, variant = stage.item["family"], stage.item["variant"]
    info = inp.families[fam][variant]
    return _eval_row(inp, stage, info, info.dtype, f"data/eval_samples/{variant}-{fam}.jsonl")


def eval_cpt_row(inp: Inputs, stage: Stage) -> dict:
    variant, budget = stage.item["variant"], stage.item["budget"]
    info = inp.families[inp.grid.target][variant]
    return _eval_row(inp, stage, info, _cpt_dtype(inp, info), f"data/eval_samples/cpt-{variant}-{budget}.jsonl")


def eval_res_row(inp: Inputs, stage: Stage) -> dict:
    src, budget = stage.item["source"], stage.item["budget"]
    info = inp.families[inp.grid.target]["base"]
    return _eval_row(inp, stage, info, _cpt_dtype(inp, info), f"data/eval_samples/res-{src}-{budget}.jsonl")


def eval_merge_row(inp: Inputs, stage: Stage) -> dict:
    info = inp.families[inp.grid.target]["base"]
    return _eval_row(inp, stage, info, _cpt_dtype(inp, info),
                     f"data/eval_samples/merges/{stage.name.split('@', 1)[1]}.jsonl")


def _io_time(nbytes: int) -> dict:
    sec = nbytes / ASSUMPTIONS["disk_bytes_per_s"]
    return {"seconds": sec, "gpu_hours": 0.0,
            "basis": f"{ASSUMPTIONS['disk_bytes_per_s'] / 1e9:g} GB/s of streamed safetensors I/O"}


def residual_extract_row(inp: Inputs, stage: Stage) -> dict:
    fam = stage.item
    base, inst = inp.families[fam]["base"], inp.families[fam]["instruct"]
    out = _weights(inst, inp.residual_dtype)
    moved = {"read": _weights(base, base.dtype) + _weights(inst, inst.dtype), "written": out}
    notes = [f"R = instruct - base in float32, stored as {inp.residual_dtype}"]
    if base.shape != inst.shape:
        notes.append("base and instruct shapes differ: extract will refuse")
    return _row(stage, "residual-extract", "cpu", model=_model(inst, inp.residual_dtype),
                flops={"elementwise": inst.params}, bytes_moved=sum(moved.values()), io=moved,
                outputs={f"models/{fam}/residual": out}, time=_io_time(sum(moved.values())), notes=notes)


def residual_apply_row(inp: Inputs, stage: Stage) -> dict:
    src, budget = stage.item["source"], stage.item["budget"]
    target = inp.families[inp.grid.target]["base"]
    res_base = inp.families[src]["base"]
    tdtype = _cpt_dtype(inp, target)
    out = _weights(target, tdtype)
    moved = {"read": _weights(res_base, inp.residual_dtype) + out + _weights(res_base, res_base.dtype),
             "written": out}
    notes = [f"cpt-base + {inp.params.get('residual', {}).get('alpha', 1.0)} x R({src}), written in the "
             f"target dtype {tdtype}; reads --base for the per-layer cosine report"]
    if res_base.shape != target.shape:
        notes.append(f"the residual of {src} and the target differ in shape: apply will refuse "
                     "(vocabulary only: residual.vocab: shared_rows)")
    return _row(stage, "residual-apply", "cpu", model=_model(target, tdtype),
                flops={"elementwise": 2 * target.params}, bytes_moved=sum(moved.values()), io=moved,
                outputs={f"models/merged/{src}-{budget}": out}, time=_io_time(sum(moved.values())), notes=notes)


# --- chained updates (freshllm.updates): the evals of an update and its promotion gate ----------

def chain_eval_row(inp: Inputs, stage: Stage) -> dict:
    """``u-eval-<model>@<w>``: one eval of a model of the target's shape (cpt-instruct: the
    instruct's), as the single update's eval rows."""
    model = stage.base.removeprefix("u-eval-")
    info = inp.families[inp.grid.target]["instruct" if model == "cpt-instruct" else "base"]
    return _eval_row(inp, stage, info, _cpt_dtype(inp, info), f"data/updates/{stage.name.split('@', 1)[1]}"
                     f"/eval_samples/{model}.jsonl")


def _promote_section(inp: Inputs):
    from ..config import build_config
    from ..updates.config import PromoteConfig

    return build_config(PromoteConfig, inp.params.get("promote") or {}, "promote")


def gate_row(inp: Inputs, stage: Stage) -> dict:
    """``gate@<w>``, the worst case: the incumbent and the candidate scored on the validation
    split, then every ``promote.retry`` entry applied (as a residual-apply row) and scored:
    ``2 + len(retry)`` validation evals and ``len(retry)`` applies; the validation eval is the
    eval row with the instruction tasks only, on ``promote.val_ifeval_prompts`` prompts."""
    from dataclasses import replace

    from ..tasks import ALL_BENCHMARKS

    cfg = _promote_section(inp)
    retries = len(cfg.retry)
    target = inp.families[inp.grid.target]["base"]
    res_base = inp.families[inp.params.get("chain", {}).get("residual_source") or inp.grid.target]["base"]
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
                outputs={f"models/updates/{stage.name.split('@', 1)[1]}/current": merged},
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


def _window(stage: Stage) -> str:
    return stage.name.split("@", 1)[1]


def _windows_so_far(inp: Inputs, window: str) -> int:
    """1 for the chain's first window, 2 for the second, ... (the order of ``updates``)."""
    keys = list(inp.params.get("updates") or {})
    return keys.index(window) + 1 if window in keys else 1


def _pack_bytes(inp: Inputs, tokens: int) -> int:
    return math.ceil(tokens / inp.pack.seq_len) * inp.pack.seq_len * F.PACKED_BYTES_PER_TOKEN


def chain_root_row(inp: Inputs, stage: Stage) -> dict:
    """``chain-root``: the ancestor node, copies of the target's base (as cpt-base) and instruct
    (as cpt-instruct and current); empty dedup / held-out / packed data."""
    fam = inp.families[inp.grid.target]
    base, inst = _weights(fam["base"], fam["base"].dtype), _weights(fam["instruct"], fam["instruct"].dtype)
    outs = {"models/updates/ancestor/cpt-base": base, "models/updates/ancestor/cpt-instruct": inst,
            "models/updates/ancestor/current": inst}
    moved = 2 * sum(outs.values())
    return _row(stage, "chain-root", "cpu", bytes_moved=moved, outputs=outs, time=_io_time(moved),
                notes=["copies: the ancestor models under the chain's names (read + written)"])


def chain_crawl_row(inp: Inputs, stage: Stage) -> dict:
    row = crawl_row(inp, stage)
    row["outputs"] = {f"data/updates/{_window(stage)}/articles.jsonl": row["outputs"]["data/articles.jsonl"]}
    row["notes"] = [n.replace("crawl.max_articles", "crawl.max_articles (per window)") for n in row["notes"]]
    return row


def chain_window_row(inp: Inputs, stage: Stage) -> dict:
    """``u-window``: dedup, held-out split, the window packed to ``chain.tokens`` (re-rooted:
    the union of every window so far) and the replay pool (``chain.replay_tokens``)."""
    chain, w = _chain(inp), _window(stage)
    k = _windows_so_far(inp, w) if chain.cpt_from == "ancestor" else 1
    own, replay = parse_count(chain.tokens), parse_count(chain.replay_budget)
    a = ASSUMPTIONS
    corpus = int(inp.max_articles * (a["article_tokens"] * a["text_bytes_per_token"] + a["article_json_bytes"]))
    outs = {f"data/updates/{w}/packed": _pack_bytes(inp, k * own),
            f"data/updates/{w}/replay": _pack_bytes(inp, replay) if _windows_so_far(inp, w) > 1 else 0,
            f"data/updates/{w}/dedup": corpus * _windows_so_far(inp, w)}
    notes = [f"packed: chain.tokens {chain.tokens}" + (f" x {k} windows (cpt_from: ancestor: the union)" if k > 1 else ""),
             f"replay pool: chain.replay_tokens {chain.replay_budget} (as much as the earlier windows hold; "
             "none for the first)",
             "dedup: this window's new articles plus every earlier window's history (estimate: crawl.max_articles "
             "per window)"]
    return _row(stage, "u-window", "cpu", tokens=k * own, estimate=True, outputs=outs, notes=notes)


def chain_cpt_row(inp: Inputs, stage: Stage) -> dict:
    """``u-cpt-base`` / ``u-cpt-instruct``: one cpt of the target's model on the window
    (``chain.cpt``'s schedule; re-rooted: the union of every window so far)."""
    from dataclasses import replace

    from ..config import build_config
    from ..cpt import CptConfig

    chain, w = _chain(inp), _window(stage)
    variant = "base" if stage.base == "u-cpt-base" else "instruct"
    k = _windows_so_far(inp, w) if chain.cpt_from == "ancestor" else 1
    budget = str(k * parse_count(chain.tokens))
    ccpt = build_config(CptConfig, chain.cpt, "chain.cpt")
    sub = replace(inp, cpt=ccpt)
    info = inp.families[inp.grid.target][variant]
    save = info.dtype if ccpt.train.save_dtype == "auto" else ccpt.train.save_dtype
    p = cpt_plan(sub, info, budget)
    notes = [f"window {w}: chain.tokens {chain.tokens}" + (f" x {k} windows (cpt_from: ancestor)" if k > 1 else "")
             + f"; chain.cpt.train.replay_fraction {ccpt.train.replay_fraction} of each step from the replay pool"]
    return _row(stage, "cpt", inp.launch.device, processes=inp.launch.processes, model=_model(info, save),
                **p, outputs={f"models/updates/{w}/cpt-{variant}": _weights(info, save)},
                transient=p["checkpoints"]["bytes"],
                time=_time(sub, p["flops"]["train_6ND"], p["tokens"], inp.launch.processes), notes=notes)


def _apply_row(inp: Inputs, stage: Stage, source: str, out_path: str, note: str) -> dict:
    """A residual apply onto a cpt-base of the target's shape (``u-merge``, ``merge``)."""
    target = inp.families[inp.grid.target]["base"]
    res_base = inp.families[source]["base"] if source in inp.families else target
    tdtype = _cpt_dtype(inp, target)
    out = _weights(target, tdtype)
    moved = {"read": _weights(res_base, inp.residual_dtype) + out + _weights(res_base, res_base.dtype), "written": out}
    return _row(stage, "residual-apply", "cpu", model=_model(target, tdtype), flops={"elementwise": 2 * target.params},
                bytes_moved=sum(moved.values()), io=moved, outputs={out_path: out},
                time=_io_time(sum(moved.values())), notes=[note])


def chain_merge_row(inp: Inputs, stage: Stage) -> dict:
    """``u-merge``: the window's cpt-base + the residual of ``chain.residual_source``."""
    chain, w = _chain(inp), _window(stage)
    return _apply_row(inp, stage, chain.residual_source, f"models/updates/{w}/cpt-base-res",
                      f"cpt-base@{w} + R({chain.residual_source}) (the residual section's setting)")


def merge_row(inp: Inputs, stage: Stage) -> dict:
    """``merge@<name>``: cpt-base at ``merge_budget`` merged with the target's residual by the
    setting ``merges.<name>`` (TIES / DARE / MagMax: a few passes over the same bytes)."""
    name = stage.name.split("@", 1)[1]
    return _apply_row(inp, stage, inp.grid.target, f"models/merges/{name}",
                      f"cpt-base@{inp.params.get('merge_budget')} merged by merges.{name} {stage.item}")


def promote_row(inp: Inputs, stage: Stage) -> dict:
    info = inp.families[inp.grid.target]["base"]
    out = _weights(info, _cpt_dtype(inp, info))
    return _row(stage, "promote", "cpu", bytes_moved=2 * out, outputs={"models/current": out},
                time=_io_time(2 * out), notes=["a copy of the last window's current model"])


def small_row(inp: Inputs, stage: Stage) -> dict:
    return _row(stage, stage.base, "cpu", outputs={}, notes=["JSON, markdown and plots: a few MB at most"])


BUILDERS: dict[str, Callable[[Inputs, Stage], dict]] = {
    "models": models_row, "crawl": crawl_row, "pack": pack_row, "cpt": cpt_row,
    "residual-extract": residual_extract_row, "residual-apply": residual_apply_row,
    "eval-orig": eval_orig_row, "eval-cpt": eval_cpt_row, "eval-res": eval_res_row,
    "report": small_row, "figures": small_row, "eval-text": small_row, "chain-report": small_row,
    "methods-report": small_row, "chain-root": chain_root_row, "u-crawl": chain_crawl_row,
    "u-window": chain_window_row, "u-cpt-base": chain_cpt_row, "u-cpt-instruct": chain_cpt_row,
    "u-merge": chain_merge_row, "promote": promote_row, "merge": merge_row, "eval-merge": eval_merge_row,
    "gate": gate_row, **{f"u-eval-{m}": chain_eval_row
                         for m in ("cpt-base-res", "cpt-instruct", "cpt-base", "incumbent", "current")},
}


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
                         if r["stage"].startswith("cpt@base-")},
        "notes": ["the paper's A.2 counts 25M samples x 8192 tokens (its footnote 1 says 10M "
                  "hand-annotated examples for LLaMA 3 Instruct); its ratio 2048 assumes 5 cpt epochs, "
                  "the ratios here use this plan's cpt tokens",
                  "instruction residuals instead cost one subtraction and one scaled addition per "
                  "parameter (residual-extract / residual-apply: bytes moved, no training)"],
    }


def make_plan(params_path: str | Path = "params.yaml", dvc_yaml: str | Path = "dvc.yaml",
              gpu: Gpu | None = None, mfu: float | None = None, tokens_per_s: float | None = None) -> dict:
    """``{stage name: estimate, ..., "total": ...}`` for ``dvc repro`` with these params."""
    from .hardware import DEFAULT_GPU, GPUS

    gpu = gpu or GPUS[DEFAULT_GPU]
    mfu = ASSUMPTIONS["mfu"] if mfu is None else mfu
    inp = load_inputs(params_path, dvc_yaml, gpu, mfu, tokens_per_s)
    plan: dict[str, Any] = {}
    for stage in inp.stages:
        builder = BUILDERS.get(stage.base)
        if builder is None:
            row = _row(stage, stage.base, "?", outputs={}, notes=["no cost model for this stage"])
        else:
            row = builder(inp, stage)
        row["disk"] = _disk(row, stage)
        row.setdefault("notes", [])
        plan[stage.name] = row
    plan["total"] = total(inp, plan)
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
