"""GPU cpt-step throughput, MFU and per-article exactness of each attention path, at 4096 tokens.

    PYTHONPATH=src python -m freshllm.bench.gpu [--json gpu.json] [--budget-s 420]
        [--models qwen2.5-0.5b,qwen2.5-1.5b,llama3.2-3b] [--paths sdpa_packed,flex_packed,...]
        [--batch 4 | --batch qwen2.5-1.5b=4,llama3.2-3b=2] [--grad-ckpt] [--peak-tflops 989]
    python -m freshllm.bench.gpu --tiny            # CPU smoke run (tiny shapes), used by the tests

On one H200 the default run (3 models x sdpa_packed, flex_packed, sdpa_nomask, then
eager_packed) ends within ``--budget-s`` (420 s) + 40 s hard stop + start-up, i.e. under 8
minutes; configs that would not fit are skipped and listed as such. Output: a table on
stdout and, with ``--json``, every figure (rewritten after each config).

Needs only the standard library, torch and transformers (no other freshllm dependency: the
exact hub configs come from ``freshllm.standins.architectures``, which is stdlib only).

One *cpt step* is what ``freshllm.train.train`` does per optimizer step under
``mixed_precision: bf16``: fp32 master weights, forward and loss under
``torch.autocast(bfloat16)`` (what accelerate's bf16 mode wraps the forward in), backward,
``clip_grad_norm_(1.0)``, ``torch.optim.AdamW`` (betas 0.9/0.95, weight decay 0.1 off
embeddings and 1-d weights, torch's default foreach implementation), ``zero_grad``, and the
loss read back with ``.item()`` (the loop logs it every step). Weights are random (hub
configs: real widths, depths, vocab sizes); inputs are packed rows of ``--seq`` tokens made
the way ``freshllm.io.packed.PackWriter`` makes them: articles of log-normal length
back to back, position ids restarting at 0 per article, an article that does not fit
continues in the next row with continuing positions; labels are -100 at article starts.

Attention paths (``--paths``):

* ``sdpa_packed``  attn_implementation="sdpa", attention_mask=None + the reset position ids:
  transformers derives the block-diagonal causal mask (what the project trains with);
* ``flex_packed``  transformers' flex_attention forward and BlockMask (derived from the same
  position ids, ``create_block_mask``; flex_attention is torch.compile'd by transformers on
  first use, that compile is in the warmup steps and reported as ``first step``). Registered
  as ``flex_attention_autocast``: q/k/v are cast to the autocast dtype first (the rotary
  embedding leaves q/k in fp32 under autocast; torch's flex HOP may reject the mix or, on
  some versions, silently run fp32 kernels);
* ``flex_plain_packed`` (not default) transformers' own ``flex_attention`` without that cast;
* ``eager_packed`` the eager reference (a dense 4-d mask, full S x S scores);
* ``sdpa_nomask``  one document per row (position ids 0..S-1): plain causal sdpa, the
  ceiling; ``flex_nomask`` and ``eager_nomask`` likewise (not default).

Reported per (model, path): tokens/s per GPU (timed steps only, after ``--warmup`` steps,
``torch.cuda.synchronize()`` around each step), MFU against the bf16 dense peak
(``--peak-tflops``, default by GPU name: H100/H200 989 TFLOP/s) and against the bf16
matmul rate measured here at start, peak ``torch.cuda.max_memory_allocated``, and the
per-article exactness check. FLOPs per token: 6*N with N the parameters used in matmuls
(all but the input-embedding lookup; a tied lm_head counts once), plus attention
12 * layers * heads * head_dim per attended (query, key) pair -- only the pairs the mask
allows (per-article causal), i.e. the useful work, not what a dense-mask kernel executes.
``MFU`` is (6N + attention) / peak; ``MFU(6N)`` is also given. Gradient-checkpoint
recompute is not counted.

Exactness: with the trained weights, in eval mode, the logits of each checked article inside
its packed row are compared with the logits of that article run alone (its tokens and
position ids first in a row of its own, the rest of the row a filler that continues its
positions: causal attention keeps the filler out, and the row is one document, so the plain
causal path runs). In fp32 (no autocast, matmul TF32 as torch's default: off) the max
|difference| must be <= 2e-3 x max(1, max |logit|) (a kernel's reassociation gives ~1e-5);
under bf16 autocast it must be <= max(0.02, 3 x the bf16 rounding noise of the reference,
i.e. max |logits_alone_bf16 - logits_alone_fp32|). The same article's logits when the
attention is NOT split by article (a 2-d all-ones attention_mask disables the derivation:
the packing pitfall) are reported as ``leak`` so one can see the check discriminates.

Budget: configs run in priority order (the 1.5B model first, exact paths before eager);
before each, its time is estimated from what already ran and it is skipped if it would
end past ``--budget-s``; a running config stops its timed loop at the budget, and a hard
alarm at budget + 40 s aborts whatever runs (a compile that hangs) and reports. CUDA OOM:
the batch is halved and the config retried (at batch 1: with gradient checkpointing), and
the OOM is reported. The JSON (``--json``) is rewritten after every config.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import sys
import time
import traceback
from pathlib import Path

try:
    from freshllm.standins.architectures import get_arch, param_count, shrink_config
except ImportError:  # run as a file: python src/freshllm/bench/gpu.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from freshllm.standins.architectures import get_arch, param_count, shrink_config

MODELS = {"qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B", "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
          "llama3.2-3b": "meta-llama/Llama-3.2-3B"}  # priority order (the goal is at 1.5B)
TABLE_ORDER = ["qwen2.5-0.5b", "qwen2.5-1.5b", "llama3.2-3b"]
# micro-batch (sequences of 4096) that fits one 141 GB H200 with fp32 masters + AdamW,
# no checkpointing; eager keeps S x S scores per layer, so it gets less
DEFAULT_BATCH = {"qwen2.5-0.5b": 4, "qwen2.5-1.5b": 4, "llama3.2-3b": 2}
EAGER_BATCH = {"qwen2.5-0.5b": 2, "qwen2.5-1.5b": 1, "llama3.2-3b": 1}
FLEX_NAME = "flex_attention_autocast"
PATHS = {  # name: (attn_implementation, packed)
    "sdpa_packed": ("sdpa", True),
    "flex_packed": (FLEX_NAME, True),
    "flex_plain_packed": ("flex_attention", True),
    "eager_packed": ("eager", True),
    "sdpa_nomask": ("sdpa", False),
    "flex_nomask": (FLEX_NAME, False),
    "eager_nomask": ("eager", False),
}
DEFAULT_PATHS = ["sdpa_packed", "flex_packed", "sdpa_nomask", "eager_packed"]
# bf16 dense tensor-core peak (TFLOP/s, no sparsity), matched as substrings of the device
# name, first match wins
PEAK_TFLOPS = [("H200", 989.0), ("GH200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0),
               ("H100", 989.0), ("H800", 989.0), ("B200", 2250.0), ("A100", 312.0),
               ("A800", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0)]
TOL_FP32 = 2e-3
TOL_BF16_FLOOR = 0.02
TOL_BF16_NOISE_X = 3.0
TINY_SHRINK = {"hidden": 64, "layers": 2, "intermediate": 128, "heads": 4, "kv_heads": 2}


class BudgetExceeded(BaseException):
    """Raised by the hard alarm: not an Exception, so library code does not swallow it."""


# --- shapes, FLOPs -------------------------------------------------------------------------------

def model_config(model_id: str, tiny: bool, vocab: int | None) -> dict:
    cfg = get_arch(model_id).config()
    if tiny:
        cfg = shrink_config(cfg, TINY_SHRINK)
    if vocab:
        cfg["vocab_size"] = vocab
    return cfg


def head_dim(cfg: dict) -> int:
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def matmul_params(cfg: dict) -> int:
    """Parameters used in matmuls: all but the input-embedding lookup (a tied lm_head once)."""
    n = param_count(cfg)
    return n if cfg["tie_word_embeddings"] else n - cfg["vocab_size"] * cfg["hidden_size"]


def attention_flops_per_pair(cfg: dict) -> int:
    """Training FLOPs (fwd + bwd = 3 x fwd) per attended (query, key) pair, all layers:
    QK^T and PV are 2 * heads * head_dim each forward."""
    return 12 * cfg["num_hidden_layers"] * cfg["num_attention_heads"] * head_dim(cfg)


# --- data ----------------------------------------------------------------------------------------

class DocStream:
    """Article lengths (log-normal, seeded) packed into rows like PackWriter: returns, per row,
    segments (start, length, first_position); a split article continues in the next row."""

    def __init__(self, seed: int, median: float, sigma: float, max_len: int):
        self.rng = random.Random(seed)
        self.mu, self.sigma, self.max_len = math.log(median), sigma, max_len
        self.left = 0  # tokens left of the current article
        self.pos = 0   # its next position

    def _next_doc(self) -> None:
        n = int(round(self.rng.lognormvariate(self.mu, self.sigma)))
        self.left, self.pos = max(2, min(self.max_len, n)), 0

    def row(self, seq: int) -> list[tuple[int, int, int]]:
        segs, filled = [], 0
        while filled < seq:
            if self.left == 0:
                self._next_doc()
            take = min(self.left, seq - filled)
            segs.append((filled, take, self.pos))
            filled += take
            self.left -= take
            self.pos += take
        return segs


def make_batch(torch, rows: int, seq: int, vocab: int, packed: bool, stream: DocStream,
               gen, device) -> dict:
    """input_ids, position_ids, labels on ``device`` plus the segments and attended pairs."""
    ids = torch.randint(0, vocab, (rows, seq), generator=gen)
    if packed:
        segs = [stream.row(seq) for _ in range(rows)]
        pos = torch.empty(rows, seq, dtype=torch.long)
        for r, row in enumerate(segs):
            for start, n, p0 in row:
                pos[r, start:start + n] = torch.arange(p0, p0 + n)
    else:
        segs = [[(0, seq, 0)] for _ in range(rows)]
        pos = torch.arange(seq).repeat(rows, 1)
    labels = ids.masked_fill(pos == 0, -100)
    pairs = sum(n * (n + 1) // 2 for row in segs for _, n, _ in row)
    return {"input_ids": ids.to(device), "position_ids": pos.to(device), "labels": labels.to(device),
            "segments": segs, "pairs": pairs}


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


# --- device helpers ------------------------------------------------------------------------------

class Dev:
    def __init__(self, torch, device):
        self.torch, self.device = torch, device
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def reset_peak(self):
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gib(self):
        if not self.cuda:
            return None
        return self.torch.cuda.max_memory_allocated(self.device) / 2**30

    def reserved_gib(self):
        return self.torch.cuda.max_memory_reserved(self.device) / 2**30 if self.cuda else None

    def free(self):
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()

    def autocast(self, enabled=True):
        return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16, enabled=enabled)

    def is_oom(self, e: BaseException) -> bool:
        oom = getattr(self.torch.cuda, "OutOfMemoryError", None) or getattr(self.torch, "OutOfMemoryError", ())
        return isinstance(e, oom) or "out of memory" in str(e).lower()


def matmul_probe(torch, dev: Dev, n: int, iters: int) -> float:
    """bf16 n x n x n matmul rate (TFLOP/s) on this device."""
    a = torch.randn(n, n, device=dev.device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev.device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    dev.sync()
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    dev.sync()
    dt = time.perf_counter() - t
    del a, b
    return 2 * n**3 * iters / dt / 1e12


def tf32_setting(torch):
    try:
        return bool(torch.backends.cuda.matmul.allow_tf32)
    except Exception:  # noqa: BLE001 -- newer torch: the fp32_precision API only
        return str(getattr(torch.backends.cuda.matmul, "fp32_precision", "?"))


def spec_peak(name: str) -> float | None:
    for key, tf in PEAK_TFLOPS:
        if key.lower() in name.lower():
            return tf
    return None


# --- one config ----------------------------------------------------------------------------------

def forward_logits(model, b, attention_mask=None):
    return model(input_ids=b["input_ids"], position_ids=b["position_ids"],
                 attention_mask=attention_mask, use_cache=False).logits.float()


@contextlib.contextmanager
def attn_impl(model, impl: str):
    """Temporarily switch the model's attention implementation (weights untouched)."""
    old = model.config._attn_implementation
    if impl == old:
        yield
        return
    model.set_attn_implementation(impl)
    try:
        yield
    finally:
        model.set_attn_implementation(old)


def exactness(torch, model, cfg, a, dev: Dev, packed: bool) -> dict:
    """Logits of articles inside packed rows (the path under test) vs the same article alone
    (computed with plain causal sdpa, an independent reference; see the module docstring)."""
    model.eval()
    seq, vocab = a.seq, cfg["vocab_size"]
    rows = max(1, min(2, a.check_rows))
    gen = torch.Generator().manual_seed(a.seed + 17)
    stream = DocStream(a.seed + 17, a.doc_median, a.doc_sigma, a.doc_max)
    stream.row(seq // 3)  # start mid-article: row 0 begins with a continuation
    b = make_batch(torch, rows, seq, vocab, packed, stream, gen, dev.device)
    # the articles to check: row 0 first, then row 1
    want = [(r, s) for r, row in enumerate(b["segments"]) for s in row][: a.check_docs]
    ids_cpu = b["input_ids"].cpu()
    refs = []
    for r, (start, n, p0) in want:
        ids = torch.randint(0, vocab, (seq,), generator=gen)
        ids[:n] = ids_cpu[r, start:start + n]
        refs.append((ids, torch.arange(p0, p0 + seq)))
    while len(refs) % rows:
        refs.append(refs[-1])
    out: dict = {"articles": len(want), "lengths": [s[1] for _, s in want],
                 "continuations": sum(1 for _, s in want if s[2] > 0), "reference": "sdpa"}
    packed_l, alone_l = {}, {}
    with torch.no_grad():
        for prec in ("fp32", "bf16"):  # the path under test, packed rows
            with dev.autocast(enabled=prec == "bf16"):
                lp = forward_logits(model, b)
                packed_l[prec] = [lp[r, s:s + n].clone() for r, (s, n, _) in want]
                del lp
        try:
            ref_ctx = attn_impl(model, "sdpa")
            ref_ctx.__enter__()
        except Exception as e:  # noqa: BLE001 -- fall back to the path itself as reference
            out["reference"] = f"{model.config._attn_implementation} (switch to sdpa failed: {e})"
            ref_ctx = contextlib.nullcontext()
        try:
            for prec in ("fp32", "bf16"):  # each article alone
                with dev.autocast(enabled=prec == "bf16"):
                    alone = []
                    for i in range(0, len(refs), rows):
                        chunk = refs[i:i + rows]
                        rb = {"input_ids": torch.stack([x for x, _ in chunk]).to(dev.device),
                              "position_ids": torch.stack([q for _, q in chunk]).to(dev.device)}
                        la = forward_logits(model, rb)
                        alone += [la[j] for j in range(la.shape[0])]
                        del la
                    alone_l[prec] = [alone[k][:n].clone() for k, (_, (_, n, _)) in enumerate(want)]
                    del alone
            if packed:  # the packing pitfall: the same rows with the per-article split disabled
                ll = forward_logits(model, b, attention_mask=torch.ones_like(b["input_ids"]))
                d = [float((ll[r, s:s + n] - alone_l["fp32"][k]).abs().max())
                     for k, (r, (s, n, _)) in enumerate(want) if s > 0]
                out["leak_fp32"] = max(d) if d else None
                del ll
        finally:
            ref_ctx.__exit__(None, None, None)
    mx = lambda xs, ys: max(float((x - y).abs().max()) for x, y in zip(xs, ys))  # noqa: E731
    out["max_abs_diff_fp32"] = mx(packed_l["fp32"], alone_l["fp32"])
    out["max_abs_diff_bf16"] = mx(packed_l["bf16"], alone_l["bf16"])
    out["bf16_noise"] = mx(alone_l["bf16"], alone_l["fp32"])
    out["max_abs_logit"] = max(float(x.abs().max()) for x in alone_l["fp32"])
    out["tol_fp32"] = TOL_FP32 * max(1.0, out["max_abs_logit"])
    out["tol_bf16"] = max(TOL_BF16_FLOOR, TOL_BF16_NOISE_X * out["bf16_noise"])
    out["exact"] = bool(out["max_abs_diff_fp32"] <= out["tol_fp32"]
                        and out["max_abs_diff_bf16"] <= out["tol_bf16"])
    del packed_l, alone_l
    model.train()
    return out


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
    cfg = model_config(MODELS[key], a.tiny, a.vocab)
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


# --- driver --------------------------------------------------------------------------------------

def parse_batch(spec: str | None) -> tuple[int | None, dict]:
    if not spec:
        return None, {}
    if "=" not in spec:
        return int(spec), {}
    out = {}
    for part in spec.split(","):
        k, v = part.split("=")
        k = k.strip().lower()
        if k not in MODELS:
            raise SystemExit(f"--batch: unknown model {k!r} (use {', '.join(MODELS)})")
        out[k] = int(v)
    return None, out


def plan(a) -> list[tuple[str, str]]:
    models = [m for m in MODELS if m in a.models]
    exact = [p for p in a.paths if not p.startswith("eager")]
    eager = [p for p in a.paths if p.startswith("eager")]
    return [(m, p) for m in models for p in exact] + [(m, p) for m in models for p in eager]


def estimate_s(key: str, path: str, a, done: list[dict], peak: float | None) -> float:
    """Rough duration of a config from the ones that ran (same model, else FLOPs)."""
    same = [r for r in done if r["model"] == key and "seconds" in r]
    flex_compiled = any(r["path"].startswith("flex") and "seconds" in r for r in done)
    if same:
        base = statistics.fmean(r["seconds"] - r.get("first_step_s", 0) for r in same)
    else:
        cfg = model_config(MODELS[key], a.tiny, a.vocab)
        b = DEFAULT_BATCH.get(key, 1)
        step = 6 * matmul_params(cfg) * b * a.seq / (0.25 * (peak or 100) * 1e12)
        base = 10 + (a.warmup + a.steps + 6) * step
    if path.startswith("eager"):
        base *= 1.5
    if path.startswith("flex"):
        base += 25 if flex_compiled else 60
    return 0.0 if a.tiny else base


def fmt(x, spec, na="-"):
    if x is None:
        m = re.match(r"[<>^]?(\d+)", spec)
        return na.rjust(int(m.group(1))) if m else na
    return format(x, spec)


def table(results: list[dict], peak: float | None, measured: float | None) -> list[str]:
    hdr = (f"{'model':<13} {'path':<18} {'batch':>5} {'tok/s':>9} {'TFLOP/s':>8} {'MFU':>6} "
           f"{'MFU(6N)':>7} {'MFU/meas':>8} {'mem GiB':>8} {'step s':>7} {'1st s':>6} "
           f"{'fp32 |d|':>9} {'bf16 |d|':>9} {'bf16 tol':>8} {'leak':>7} exact")
    lines = [hdr, "-" * len(hdr)]
    order = {m: i for i, m in enumerate(TABLE_ORDER)}
    for r in sorted(results, key=lambda r: (order.get(r["model"], 9), list(PATHS).index(r["path"]))):
        if "tokens_per_s" not in r and "check" not in r:
            lines.append(f"{r['model']:<13} {r['path']:<18} {r.get('batch', '-'):>5} "
                         f"{r.get('status', 'error')}: {r.get('error', '')[:150]}")
            continue
        c = r.get("check") or {}
        tps = r.get("tokens_per_s")
        tf = r.get("model_tflops")
        tf6 = tps * r["flops_per_token_6n"] / 1e12 if tps else None
        bs = f"{r['batch']}{'c' if r['grad_ckpt'] else ''}"
        lines.append(
            f"{r['model']:<13} {r['path']:<18} {bs:>5} {fmt(tps, '>9,.0f')} {fmt(tf, '>8.1f')} "
            f"{fmt(peak and tf and tf / peak, '>6.1%')} {fmt(peak and tf6 and tf6 / peak, '>7.1%')} "
            f"{fmt(measured and tf and tf / measured, '>8.1%')} {fmt(r.get('peak_mem_gib'), '>8.1f')} "
            f"{fmt(r.get('step_s_mean'), '>7.3f')} {fmt(r.get('first_step_s'), '>6.1f')} "
            f"{fmt(c.get('max_abs_diff_fp32'), '>9.2e')} {fmt(c.get('max_abs_diff_bf16'), '>9.2e')} "
            f"{fmt(c.get('tol_bf16'), '>8.3f')} {fmt(c.get('leak_fp32'), '>7.3f')} "
            f"{'yes' if c.get('exact') else ('NO' if c else '-')}"
            + (f"  [{r['note']}]" if r.get("note") else "")
            + (f"  [{r['oom']}]" if r.get("oom") else ""))
    return lines


def recommend(results: list[dict]) -> dict | None:
    """The fastest exact per-article path, by tokens/s summed over the models it ran on with
    every other exact path (ties: the 1.5B model's figure)."""
    ok = [r for r in results if r.get("packed") and "tokens_per_s" in r
          and (r.get("check") or {}).get("exact")]
    if not ok:
        return None
    by_model: dict[str, dict[str, float]] = {}
    for r in ok:
        by_model.setdefault(r["model"], {})[r["path"]] = r["tokens_per_s"]
    paths = {r["path"] for r in ok}
    # compare paths on the models where every candidate ran; else on 1.5B; else anywhere
    common = [m for m, d in by_model.items() if paths <= set(d)]
    pool = common or ([m for m in by_model if m == "qwen2.5-1.5b"] or list(by_model))
    score = {p: sum(by_model[m].get(p, 0.0) / max(by_model[m].values()) for m in pool) for p in paths}
    best = max(score, key=score.get)
    return {"path": best, "attn_implementation": PATHS[best][0], "compared_on": sorted(pool),
            "relative_speed": score}


@contextlib.contextmanager
def bench_settings(torch, transformers):
    """Process-wide settings of the run, restored afterwards (the tests run it in-process):
    transformers' log level, dynamo's recompile settings, the CPU flex patch."""
    import transformers.integrations.flex_attention as fa

    saved_flex = fa.compile_friendly_flex_attention
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    saved_dynamo = {}
    try:
        import torch._dynamo as dynamo

        # one static compile per shape, and never fall back to eager flex (the unfused,
        # S x S-materialising implementation) because a recompile limit was hit
        want = {"automatic_dynamic_shapes": False, "cache_size_limit": 64, "recompile_limit": 64,
                "accumulated_cache_size_limit": 512, "accumulated_recompile_limit": 512}
        for k, v in want.items():
            if hasattr(dynamo.config, k):
                saved_dynamo[k] = getattr(dynamo.config, k)
                setattr(dynamo.config, k, v)
    except Exception:  # noqa: BLE001 -- no dynamo: flex will report its own error
        dynamo = None
    try:
        yield
    finally:
        fa.compile_friendly_flex_attention = saved_flex
        transformers.logging.set_verbosity(verbosity)
        for k, v in saved_dynamo.items():
            setattr(dynamo.config, k, v)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (CPU smoke test)")
    ap.add_argument("--models", default=None, help=f"comma list of {', '.join(MODELS)}")
    ap.add_argument("--paths", default=None, help=f"comma list of {', '.join(PATHS)} "
                    f"(default {','.join(DEFAULT_PATHS)})")
    ap.add_argument("--batch", default=None, help="sequences per step: N, or model=N,... "
                    f"(default {DEFAULT_BATCH}, eager {EAGER_BATCH}; halved on OOM)")
    ap.add_argument("--seq", type=int, default=None, help="tokens per sequence (4096; tiny 256)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (6; tiny 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (2, flex +1; tiny 1)")
    ap.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing everywhere")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the whole model for the timed steps (cpt.train.compile)")
    ap.add_argument("--vocab", type=int, default=None, help="override the vocab (default: real; tiny 1024)")
    ap.add_argument("--doc-median", type=float, default=None, help="median article tokens (600; tiny 48)")
    ap.add_argument("--doc-sigma", type=float, default=0.9)
    ap.add_argument("--doc-max", type=int, default=16384)
    ap.add_argument("--check-docs", type=int, default=6, help="articles checked per config")
    ap.add_argument("--check-rows", type=int, default=2)
    ap.add_argument("--no-check", dest="check", action="store_false")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="bf16 dense peak for MFU (default by device name; H100/H200: 989)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="total seconds; later configs skipped")
    ap.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if present)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write all results here (rewritten per config)")
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    tiny = a.tiny
    a.seq = a.seq or (256 if tiny else 4096)
    a.steps = a.steps or (2 if tiny else 6)
    a.warmup = a.warmup if a.warmup is not None else (1 if tiny else 2)
    a.vocab = a.vocab or (1024 if tiny else None)
    a.doc_median = a.doc_median or (48.0 if tiny else 600.0)
    a.models = [m.strip().lower() for m in a.models.split(",")] if a.models else list(MODELS)
    a.paths = [p.strip() for p in a.paths.split(",")] if a.paths else list(DEFAULT_PATHS)
    for m in a.models:
        if m not in MODELS:
            raise SystemExit(f"--models: unknown {m!r} (use {', '.join(MODELS)})")
    for p in a.paths:
        if p not in PATHS:
            raise SystemExit(f"--paths: unknown {p!r} (use {', '.join(PATHS)})")
    batch_all, batch_per = parse_batch(a.batch)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers

    with bench_settings(torch, transformers):
        return run(a, torch, transformers, t_start, batch_all, batch_per)


def run(a, torch, transformers, t_start: float, batch_all, batch_per) -> dict:
    tiny = a.tiny
    if a.device:
        device = torch.device(a.device)
    elif torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        if not tiny:
            raise SystemExit("no CUDA device (torch.cuda.is_available() is False); use --tiny for CPU")
        device = torch.device("cpu")
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    dev = Dev(torch, device)
    peak = a.peak_tflops or (spec_peak(name) if device.type == "cuda" else None)
    measured = matmul_probe(torch, dev, 256 if device.type == "cpu" else 8192,
                            5 if device.type == "cpu" else 50)
    env = {"device": str(device), "device_name": name, "torch": torch.__version__,
           "transformers": transformers.__version__, "python": platform.python_version(),
           "cuda": getattr(torch.version, "cuda", None),
           "capability": list(torch.cuda.get_device_capability(device)) if dev.cuda else None,
           "gcc": shutil.which("gcc") or shutil.which("cc"),
           "peak_tflops_spec": peak, "peak_source": "--peak-tflops" if a.peak_tflops else "device table",
           "matmul_tflops_measured": measured,
           "tf32_matmul": tf32_setting(torch) if dev.cuda else None,
           "precision": "fp32 master weights, torch.autocast(bfloat16) forward+loss (as the cpt "
                        "stage with mixed_precision: bf16), AdamW foreach fp32 states",
           "mfu": "(6*N_matmul + 12*layers*heads*head_dim*attended_pairs/token) * tokens/s / peak; "
                  "attended pairs = per-article causal (sum L(L+1)/2); recompute not counted"}
    with contextlib.suppress(Exception):
        import accelerate

        env["accelerate"] = accelerate.__version__
    log = lambda s: print(s, flush=True)  # noqa: E731
    log(f"device {device} ({name}); torch {torch.__version__}, transformers {transformers.__version__}")
    log(f"bf16 peak: {fmt(peak, '.0f', 'unknown')} TFLOP/s spec ({env['peak_source']}); "
        f"measured bf16 matmul: {measured:.1f} TFLOP/s")
    log(f"precision: {env['precision']}")
    log(f"MFU = {env['mfu']}")

    results: list[dict] = []
    report = {"env": env, "args": {k: v for k, v in vars(a).items()}, "results": results}

    def dump():
        if a.json:
            p = Path(a.json)
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(p.suffix + ".tmp")
            tmp.write_text(json.dumps(report, indent=2, default=str))
            os.replace(tmp, p)

    hard = a.budget_s + 40
    use_alarm = hasattr(signal, "SIGALRM") and not tiny

    def on_alarm(signum, frame):
        raise BudgetExceeded(f"hard budget {hard:.0f} s reached")

    if use_alarm:
        signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(max(1, int(hard - (time.perf_counter() - t_start))))
    deadline = t_start + a.budget_s
    flex_broken = None  # a flex failure that is not an OOM (e.g. torch.compile): skip the rest
    try:
        for key, path in plan(a):
            elapsed = time.perf_counter() - t_start
            est = estimate_s(key, path, a, results, peak or measured)
            base = {"model": key, "path": path, "attn_implementation": PATHS[path][0],
                    "packed": PATHS[path][1]}
            if flex_broken and path.startswith("flex"):
                results.append({**base, "status": "skipped", "error": f"flex failed before: {flex_broken}"})
                log(f"{key} {path}: skipped (flex failed before)")
                dump()
                continue
            if elapsed + est > a.budget_s:
                results.append({**base, "status": "skipped",
                                "error": f"budget: {elapsed:.0f} s spent, ~{est:.0f} s needed"})
                log(f"{key} {path}: skipped (budget: {elapsed:.0f} s spent, ~{est:.0f} s needed)")
                dump()
                continue
            dflt = (EAGER_BATCH if path.startswith("eager") else DEFAULT_BATCH).get(key, 1)
            batch = batch_per.get(key, batch_all or (2 if tiny else dflt))
            ckpt = a.grad_ckpt
            ooms = []
            while True:
                log(f"{key} {path}: batch {batch} x {a.seq}{' (grad ckpt)' if ckpt else ''} ...")
                try:
                    r = run_config(torch, key, path, a, dev, batch, ckpt, deadline, log)
                except BudgetExceeded:
                    raise
                except Exception as e:  # noqa: BLE001 -- report and continue
                    oom = dev.is_oom(e)
                    msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                    tb = traceback.format_exc(limit=6)
                    del e
                    dev.free()
                    if oom and (batch > 1 or not ckpt) and time.perf_counter() < deadline:
                        ooms.append(f"OOM at batch {batch}{' ckpt' if ckpt else ''}")
                        if batch > 1:
                            batch //= 2
                        else:
                            ckpt = True
                        continue
                    r = {**base, "batch": batch, "grad_ckpt": ckpt, "status": "OOM" if oom else "error",
                         "error": msg, "traceback": tb}
                    log(f"  {r['status']}: {msg}")
                    where = [x.strip() for x in tb.splitlines() if x.strip().startswith("File ")]
                    if where:
                        log(f"    at {where[-1][:300]}")
                    if not oom and path.startswith("flex") and re.search(
                            r"compil|triton|inductor|gcc|python\.h|backend", msg + tb, re.I):
                        flex_broken = msg  # the toolchain, not this model: skip the other flex runs
                if ooms:
                    r["oom"] = "; ".join(ooms)
                break
            results.append(r)
            if "tokens_per_s" in r or "check" in r:
                c = r.get("check") or {}
                tf = r.get("model_tflops")
                log(f"  {fmt(r.get('tokens_per_s'), ',.0f')} tokens/s, {fmt(tf, '.1f')} TFLOP/s"
                    + (f" = {tf / peak:.1%} MFU" if peak and tf else "")
                    + f", peak {fmt(r.get('peak_mem_gib'), '.1f')} GiB, exact: {c.get('exact', '-')} "
                    f"(fp32 {fmt(c.get('max_abs_diff_fp32'), '.1e')}, bf16 {fmt(c.get('max_abs_diff_bf16'), '.1e')}"
                    f" <= {fmt(c.get('tol_bf16'), '.3f')}, leak {fmt(c.get('leak_fp32'), '.3f')}); "
                    f"{r.get('seconds', 0):.0f} s")
            dump()
    except BudgetExceeded as e:
        results.append({"model": "-", "path": "-", "status": "aborted", "error": str(e)})
        log(f"aborted: {e}")
    finally:
        if use_alarm:
            signal.alarm(0)
    dev.free()
    report["recommended"] = rec = recommend(results)
    report["total_s"] = time.perf_counter() - t_start
    log("")
    for line in table(results, peak, measured):
        log(line)
    log(f"MFU: (6N + per-article causal attention FLOPs) / {fmt(peak, '.0f', '?')} TFLOP/s spec bf16 dense; "
        f"MFU(6N): without attention; MFU/meas: vs the {measured:.0f} TFLOP/s bf16 matmul measured here. "
        "'c' after the batch: gradient checkpointing (recompute not counted).")
    log(f"exact: per-article logits packed vs alone, fp32 |d| <= {TOL_FP32:g} x max(1, max |logit|) and bf16 |d| <= "
        f"max({TOL_BF16_FLOOR:g}, {TOL_BF16_NOISE_X:g} x bf16 noise of the reference); "
        "leak: |d| of the same articles with the per-article mask disabled (fp32).")
    g = [r for r in results if r["model"] == "qwen2.5-1.5b" and r.get("packed") and "tokens_per_s" in r
         and (r.get("check") or {}).get("exact")]
    if g and peak:
        best = max(g, key=lambda r: r["tokens_per_s"])
        mfu = best["model_tflops"] / peak
        report["goal_1_5b"] = {"path": best["path"], "mfu": mfu, "met": mfu >= 0.40}
        log(f"goal MFU >= 40% at 1.5B with exact per-article masks: {mfu:.1%} ({best['path']}) -> "
            f"{'met' if mfu >= 0.40 else 'NOT met'}")
    if rec:
        log(f"recommended GPU default: {rec['path']} (attn_implementation=\"{rec['attn_implementation']}\"), "
            f"the fastest exact per-article path (compared on {', '.join(rec['compared_on'])})")
    else:
        log("recommended GPU default: none (no exact per-article path ran)")
    log(f"total {report['total_s']:.0f} s (budget {a.budget_s:.0f} s)")
    dump()
    return report


if __name__ == "__main__":
    main()
