"""The attention paths and one config's cpt steps: the ``flex_attention_autocast`` registration,
the model (random weights, hub config) and its AdamW parameter groups, the warmup and timed
steps with their throughput and FLOPs, and ``run_config`` (build, train, check one config)."""

from __future__ import annotations

import math
import statistics
import time
import traceback

from .checks import Dev, exactness
from .shapes import (FLEX_NAME, MODELS, PATHS, DocStream, attention_flops_per_pair, make_batch,
                     matmul_params, model_config, param_count)

# --- model ---------------------------------------------------------------------------------------

_flex_registered = False


def use_uncompiled_flex() -> None:
    """CPU only: torch's compiled CPU flex kernel has no backward, so run flex_attention
    uncompiled (its unfused reference implementation: correct, slow) to test the plumbing."""
    import transformers.integrations.flex_attention as fa

    def uncompiled(query, key, value, training=False, **kwargs):
        return fa.flex_attention(query, key, value, **kwargs)

    fa.compile_friendly_flex_attention = uncompiled


def register_flex_autocast(torch) -> None:
    """``flex_attention_autocast``: transformers' flex forward and mask, with q/k/v cast to
    the autocast dtype (or to a common dtype outside autocast) before the kernel."""
    global _flex_registered
    if _flex_registered:
        return
    from transformers import AttentionInterface
    from transformers.integrations.flex_attention import flex_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, flex_attention_mask

    def forward(module, query, key, value, attention_mask, **kwargs):
        dev = query.device.type
        if torch.is_autocast_enabled(dev):
            dt = torch.get_autocast_dtype(dev)
            query, key, value = query.to(dt), key.to(dt), value.to(dt)
        elif not (query.dtype == key.dtype == value.dtype):
            query, key = query.to(value.dtype), key.to(value.dtype)
        return flex_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register(FLEX_NAME, forward)
    AttentionMaskInterface.register(FLEX_NAME, flex_attention_mask)
    _flex_registered = True


def build_model(torch, cfg: dict, impl: str, device, seed: int):
    from transformers import AutoConfig, AutoModelForCausalLM

    d = dict(cfg)
    config = AutoConfig.for_model(d.pop("model_type"), **d)
    config.use_cache = False  # the packing pitfall: a cache disables the per-article mask
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, attn_implementation=impl, dtype=torch.float32)
    model.to(device)
    model.config.use_cache = False
    return model


def param_groups(model, weight_decay: float) -> list[dict]:
    """As freshllm.train.param_groups: no decay on embeddings and 1-d weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and "embed" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# --- cpt steps -----------------------------------------------------------------------------------

def train_steps(torch, model, opt, batches, res, a, dev: Dev, cfg, batch, impl, deadline, log) -> None:
    """Warmup then timed cpt steps; fills ``res``."""
    params = [p for p in model.parameters() if p.requires_grad]
    times, losses = [], []
    n_total = a.warmup + (1 if impl.startswith("flex") else 0) + a.steps
    n_warm = n_total - a.steps
    for i in range(n_total):
        b = batches[i % len(batches)]
        dev.sync()
        ts = time.perf_counter()
        with dev.autocast():
            out = model(input_ids=b["input_ids"], position_ids=b["position_ids"], labels=b["labels"],
                        attention_mask=None, use_cache=False)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
        del out
        dev.sync()
        times.append(time.perf_counter() - ts)
        if i == 0:
            res["first_step_s"] = times[0]
            log(f"    first step {times[0]:.1f} s")
        if i >= n_warm + 1 and time.perf_counter() > deadline:
            res["note"] = f"timed loop cut at the budget after {i + 1 - n_warm} steps"
            break
    timed = times[n_warm:]
    used = batches[:len(timed)] if len(timed) < 2 else batches
    tokens_step = batch * a.seq
    pairs_step = statistics.fmean(b["pairs"] for b in used)
    res.update({
        "warmup_steps": n_warm, "timed_steps": len(timed), "step_s_median": statistics.median(timed),
        "step_s_mean": statistics.fmean(timed), "tokens_per_step": tokens_step,
        "losses": losses, "peak_mem_gib": dev.peak_gib(), "peak_reserved_gib": dev.reserved_gib(),
        "docs_per_row": statistics.fmean(len(r) for b in batches for r in b["segments"]),
    })
    tps = tokens_step / res["step_s_mean"]
    f6n = 6 * res["matmul_params"]
    fattn = attention_flops_per_pair(cfg) * pairs_step / tokens_step
    res.update({"tokens_per_s": tps, "tokens_per_s_median_step": tokens_step / res["step_s_median"],
                "flops_per_token_6n": f6n, "flops_per_token_attn": fattn,
                "model_tflops": tps * (f6n + fattn) / 1e12})
    if not all(math.isfinite(x) for x in losses):
        res["note"] = (res.get("note", "") + "; non-finite loss").lstrip("; ")
    del opt, params


def run_config(torch, key: str, path: str, a, dev: Dev, batch: int, grad_ckpt: bool,
               deadline: float, log) -> dict:
    impl, packed = PATHS[path]
    if impl.startswith("flex"):
        register_flex_autocast(torch)
        if not dev.cuda:
            use_uncompiled_flex()
    cfg = model_config(key, a.tiny, a.vocab)
    res: dict = {"model": key, "model_id": MODELS[key], "path": path, "attn_implementation": impl,
                 "packed": packed, "batch": batch, "seq": a.seq, "grad_ckpt": grad_ckpt,
                 "compiled_model": a.compile,
                 "params": param_count(cfg), "matmul_params": matmul_params(cfg)}
    t0 = time.perf_counter()
    dev.free()
    dev.reset_peak()
    model = build_model(torch, cfg, impl, dev.device, a.seed)
    if grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-5, betas=(0.9, 0.95))
    res["build_s"] = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(a.seed)
    stream = DocStream(a.seed, a.doc_median, a.doc_sigma, a.doc_max)
    batches = [make_batch(torch, batch, a.seq, cfg["vocab_size"], packed, stream, gen, dev.device)
               for _ in range(2)]
    if impl.startswith("flex") and not dev.cuda:
        # torch's flex_attention has no backward on CPU: check the forward only
        res["note"] = "no training: FlexAttention has no backward on CPU (check only)"
    else:
        fwd = torch.compile(model) if a.compile else model
        train_steps(torch, fwd, opt, batches, res, a, dev, cfg, batch, impl, deadline, log)
        del fwd
    del opt
    model.zero_grad(set_to_none=True)
    dev.free()
    if a.check:
        log("    exactness check ...")
        tc = time.perf_counter()
        try:
            res["check"] = exactness(torch, model, cfg, a, dev, packed)
        except Exception as e:  # noqa: BLE001 -- keep the timing, report the check's failure
            res["check"] = {"exact": False, "error": f"{type(e).__name__}: {str(e).strip()[:300]}",
                            "traceback": traceback.format_exc(limit=6)}
            log(f"    check failed: {res['check']['error']}")
            del e
            dev.free()
        res["check"]["seconds"] = time.perf_counter() - tc
    res["seconds"] = time.perf_counter() - t0
    del model, batches
    dev.free()
    return res

