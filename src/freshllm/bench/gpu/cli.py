"""The command line and the driver: arguments, the configs in priority order, the time budget
(estimates, skips, the hard alarm), OOM retries, the log on stdout and the JSON report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import sys
import time
import traceback
from pathlib import Path

from .checks import Dev, matmul_probe, tf32_setting
from .report import fmt, recommend, table
from .shapes import (DEFAULT_BATCH, DEFAULT_PATHS, EAGER_BATCH, MODELS, PATHS, TOL_BF16_FLOOR,
                     TOL_BF16_NOISE_X, TOL_FP32, matmul_params, model_config, spec_peak)
from .steps import run_config


class BudgetExceeded(BaseException):
    """Raised by the hard alarm: not an Exception, so library code does not swallow it."""


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
        cfg = model_config(key, a.tiny, a.vocab)
        b = DEFAULT_BATCH.get(key, 1)
        step = 6 * matmul_params(cfg) * b * a.seq / (0.25 * (peak or 100) * 1e12)
        base = 10 + (a.warmup + a.steps + 6) * step
    if path.startswith("eager"):
        base *= 1.5
    if path.startswith("flex"):
        base += 25 if flex_compiled else 60
    return 0.0 if a.tiny else base


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
    ap = argparse.ArgumentParser(prog="python -m " + __package__,
                                 description=sys.modules[__package__].__doc__.splitlines()[0],
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


