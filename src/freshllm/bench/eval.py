"""Eval stage throughput: items/s and tokens/s of a log-likelihood task and a generation task.

    python -m freshllm.bench.eval [--ll-task piqa] [--gen-task gsm8k] [--max-gen-toks 32]
        [--items 10] [--full-items 3] [--batch-size 8] [--dtype auto] [--skip-full] [--json PATH]

Runs what the eval stage runs (``freshllm.eval.build_lm`` with the hf backend on CPU, then
``evaluate_suite`` with the paper suite's shots on the local-data twins, base-model prompts,
no chat template) on two Qwen2.5-0.5B stand-ins (``freshllm.standins.build_standin``: real
tokenizer, exact hub config, seeded random weights): the full-size one (494M parameters;
slow on CPU, so only ``--full-items`` items per task) and one shrunk to
``hidden=64,layers=2,intermediate=128,heads=4,kv_heads=2`` (real vocab), ``--items`` items.
The generation task gets a fixed ``max_gen_toks`` (a random model rarely emits a stop
sequence, so nearly every item generates all of them). Note: the checkpoint's
``generation_config.json`` (Qwen2.5's carries ``max_new_tokens: 2048``) overrides the
``max_length`` lm-eval derives from ``max_gen_toks`` in transformers' ``generate()``, so the
eval stage as it is generates up to 2048 tokens per item whatever ``max_gen_toks`` says; this
benchmark unsets ``generation_config.max_new_tokens`` after loading so the fixed budget
applies (``--as-is`` keeps the eval stage's behaviour).

One untimed 64-token forward and 2-token generate per model first (kernel setup that a
long eval run amortizes; ``--no-warmup`` counts it). Per model and task it prints: items, lm-eval requests, the whole ``evaluate_suite`` wall
time (task building, data loading, model calls, scoring) and the model's share of it (time
inside the backend's ``loglikelihood``/``generate_until``), items/s, and tokens/s through
the model -- log-likelihood: tokens of the padded batches fed to the forward pass; generation:
prompt tokens and generated token positions per second of ``generate`` -- plus the ratio of
the two models' model-time tokens/s, all measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

MODEL_ID = "Qwen/Qwen2.5-0.5B"
SHRINK = "hidden=64,layers=2,intermediate=128,heads=4,kv_heads=2"


class Meter:
    """Wraps an lm-eval HF LM's request methods and model calls to time and count them."""

    def __init__(self, lm):
        self.lm = lm
        self.reset()
        for name in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
            if hasattr(lm, name):
                setattr(lm, name, self._outer(getattr(lm, name)))
        if hasattr(lm, "_model_call"):
            lm._model_call = self._call(lm._model_call)
        if hasattr(lm, "_model_generate"):
            lm._model_generate = self._generate(lm._model_generate)

    def reset(self):
        self.s = {"requests": 0, "model_s": 0.0, "forward_s": 0.0, "forward_tokens": 0, "forwards": 0,
                  "generate_s": 0.0, "prompt_tokens": 0, "generated_tokens": 0, "generate_calls": 0}

    def _outer(self, fn):
        def wrapped(requests, *a, **kw):
            t = time.perf_counter()
            try:
                return fn(requests, *a, **kw)
            finally:
                self.s["model_s"] += time.perf_counter() - t
                self.s["requests"] += len(requests)
        return wrapped

    def _call(self, fn):
        def wrapped(inps, *a, **kw):
            t = time.perf_counter()
            out = fn(inps, *a, **kw)
            self.s["forward_s"] += time.perf_counter() - t
            self.s["forward_tokens"] += int(inps.numel())
            self.s["forwards"] += 1
            return out
        return wrapped

    def _generate(self, fn):
        def wrapped(context, *a, **kw):
            t = time.perf_counter()
            out = fn(context, *a, **kw)
            self.s["generate_s"] += time.perf_counter() - t
            self.s["prompt_tokens"] += int(context.numel())
            self.s["generated_tokens"] += int(context.shape[0] * (out.shape[1] - context.shape[1]))
            self.s["generate_calls"] += 1
            return out
        return wrapped


def build_models(work: Path, full: bool, log) -> dict[str, Path]:
    from freshllm.standins import build_standin, param_count, parse_shrink, shrink_config
    from freshllm.standins.architectures import get_arch

    out = {}
    specs = [("shrunk", SHRINK)] + ([("full", None)] if full else [])
    for name, shrink in specs:
        t = time.perf_counter()
        d = build_standin(MODEL_ID, work / name, shrink=shrink, seed=0)
        n = param_count(shrink_config(get_arch(MODEL_ID).config(), parse_shrink(shrink)))
        log(f"stand-in {name}: {MODEL_ID}{f' shrunk to {shrink}' if shrink else ''}, {n:,} parameters "
            f"(built in {time.perf_counter() - t:.1f} s)")
        out[name] = (d, n)
    return out


def bench_model(name: str, model_dir: Path, tasks: list[str], items: int, a, log) -> dict:
    import torch

    from freshllm.eval import EvalConfig, build_lm, evaluate_suite

    base = dict(limit=items, batch_size=a.batch_size, max_gen_toks=a.max_gen_toks, device="cpu",
                dtype=a.dtype, seed=0)
    t = time.perf_counter()
    lm, _ = build_lm(EvalConfig(tasks=list(tasks), **base), model_dir)
    load_s = time.perf_counter() - t
    dtype = str(getattr(getattr(lm, "model", None), "dtype", "?"))
    log(f"  {name}: loaded in {load_s:.1f} s ({dtype}, batch size {a.batch_size}, "
        f"{torch.get_num_threads()} threads)")
    gc = getattr(getattr(lm, "model", None), "generation_config", None)
    gc_file = Path(model_dir) / "generation_config.json"
    shipped = json.loads(gc_file.read_text()).get("max_new_tokens") if gc_file.is_file() else None
    # The checkpoint's generation_config.json (Qwen2.5's: max_new_tokens 2048) would take
    # precedence in transformers' generate() over the max_length lm-eval derives from
    # max_gen_toks; the eval stage's build_lm unsets it (--as-is restores it, to measure that).
    res_gc = {"generation_config_max_new_tokens": shipped,
              "max_new_tokens_unset": gc is not None and gc.max_new_tokens is None and shipped is not None}
    if a.as_is and gc is not None and shipped is not None:
        gc.max_new_tokens = shipped
        res_gc["max_new_tokens_unset"] = False
    model = getattr(lm, "model", None)
    if model is not None and not a.no_warmup:  # first-call kernel setup, which a long run amortizes
        t = time.perf_counter()
        with torch.no_grad():
            ids = torch.full((1, 64), 100, dtype=torch.long, device=model.device)
            model(input_ids=ids)
            model.generate(input_ids=ids, max_new_tokens=2, do_sample=False, pad_token_id=0)
        log(f"  {name}: warmup forward + generate {time.perf_counter() - t:.1f} s (not counted)")
    meter = Meter(lm)
    res = {"load_s": load_s, "dtype": dtype, **res_gc, "tasks": {}}
    for task in tasks:
        meter.reset()
        cfg = EvalConfig(tasks=[task], **base)
        t = time.perf_counter()
        out, _ = evaluate_suite(lm, cfg, chat=False)
        wall = time.perf_counter() - t
        s = dict(meter.s)
        n_items = items_of(out, task, items)
        r = {"items": n_items, "wall_s": wall, **s, "items_per_s": n_items / wall,
             "items_per_model_s": n_items / s["model_s"] if s["model_s"] else None,
             "model_share": s["model_s"] / wall}
        if s["forward_tokens"]:
            r["forward_tokens_per_s"] = s["forward_tokens"] / s["forward_s"]
        if s["generate_calls"]:
            r["generated_tokens_per_s"] = s["generated_tokens"] / s["generate_s"]
            r["prompt_tokens_per_generate_s"] = s["prompt_tokens"] / s["generate_s"]
            r["all_tokens_per_generate_s"] = (s["prompt_tokens"] + s["generated_tokens"]) / s["generate_s"]
        res["tasks"][task] = r
        kind = "generation" if s["generate_calls"] else "log-likelihood"
        tok = (f"{r['generated_tokens_per_s']:,.1f} generated tokens/s, {r['all_tokens_per_generate_s']:,.0f} "
               f"prompt+generated tokens/s of generate() ({s['generated_tokens']:,} generated positions, "
               f"{s['prompt_tokens']:,} prompt tokens in {s['generate_calls']} generate calls; the few-shot "
               "prefill is in that time)"
               if s["generate_calls"] else
               f"{r.get('forward_tokens_per_s', 0):,.0f} tokens/s through the forward "
               f"({s['forward_tokens']:,} tokens in {s['forwards']} batches)")
        log(f"  {name} {task} ({kind}): {n_items} items, {s['requests']} requests, {wall:.1f} s "
            f"({r['model_share']:.0%} in the model) -> {r['items_per_s']:.3f} items/s "
            f"({fmt(r['items_per_model_s'], '.3f')} per model-second); {tok}")
    del lm
    return res


def items_of(out: dict, task: str, default: int) -> int:
    """Documents lm-eval evaluated for ``task`` (its n-samples entry, else the samples)."""
    ns = (out.get("n-samples") or {}).get(task) or {}
    if "effective" in ns:
        return int(ns["effective"])
    return len((out.get("samples") or {}).get(task, [])) or default


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ll-task", default="piqa", help="log-likelihood task (piqa, arc_easy, ...)")
    ap.add_argument("--gen-task", default="gsm8k", help="generation task (gsm8k: 5-shot)")
    ap.add_argument("--max-gen-toks", type=int, default=32)
    ap.add_argument("--items", type=int, default=10, help="items per task, shrunk model")
    ap.add_argument("--full-items", type=int, default=3, help="items per task, full-size model")
    ap.add_argument("--batch-size", type=int, default=8, help="lm-eval batch size (eval.batch_size)")
    ap.add_argument("--dtype", default="auto", help="eval.dtype (auto: the checkpoint's, bfloat16)")
    ap.add_argument("--skip-full", action="store_true", help="only the shrunk model")
    ap.add_argument("--no-warmup", action="store_true", help="count the first model call's setup too")
    ap.add_argument("--as-is", action="store_true",
                    help="keep the checkpoint's generation_config max_new_tokens (2048 for Qwen2.5), "
                         "which overrides max_gen_toks in the eval stage today")
    ap.add_argument("--workdir", default=None, help="keep the stand-ins here (default: a temp dir)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    for k, v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                 "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}.items():
        os.environ.setdefault(k, v)
    from ..common import quiet_logging

    log = lambda s: print(s, flush=True)  # noqa: E731
    tasks = [a.ll_task, a.gen_task]
    report: dict = {"args": vars(a), "load_average_start": os.getloadavg(), "models": {}}
    log(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
        "(other processes on the machine skew timings)")
    with quiet_logging(), tempfile.TemporaryDirectory(prefix="bench-eval-") as d:
        work = Path(a.workdir) if a.workdir else Path(d)
        models = build_models(work, not a.skip_full, log)
        for name, (path, n) in models.items():
            items = a.items if name == "shrunk" else a.full_items
            report["models"][name] = {"params": n, **bench_model(name, path, tasks, items, a, log)}
    m = report["models"]
    if "full" in m:
        for task in tasks:
            key = "generated_tokens_per_s" if "generated_tokens_per_s" in m["full"]["tasks"][task] \
                else "forward_tokens_per_s"
            sh, fu = m["shrunk"]["tasks"][task].get(key), m["full"]["tasks"][task].get(key)
            if sh and fu:
                log(f"{task}: shrunk/full {key.replace('_', ' ')}: {sh / fu:.1f}x "
                    f"({sh:,.1f} vs {fu:,.1f}); items/s {m['shrunk']['tasks'][task]['items_per_s']:.3f} vs "
                    f"{m['full']['tasks'][task]['items_per_s']:.3f}")
    report["load_average_end"] = os.getloadavg()
    log(f"load average at end: {os.getloadavg()[0]:.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
