"""Training throughput of the cpt loop vs a plain `transformers.Trainer` on the same data.

    python -m freshllm.bench.cpt [--steps 60] [--batch-size 8] [--seq-len 256] [--repeats 3]
        [--hidden 128 --layers 4 --vocab 1024] [--grad-ckpt] [--skip-steps 5]
    python -m freshllm.bench.cpt --standin Qwen/Qwen2.5-0.5B --seq-len 4096 --batch-size 1 \
        --steps 4 --skip-steps 1 --repeats 1 --grad-ckpt --lr 1e-5 --warmup 1   # the users' scale

``--standin MODEL_ID`` trains a full-size stand-in of that hub model instead
(``freshllm.standins``: the exact config, random weights, e.g. Qwen2.5-0.5B's 494M parameters
with tied embeddings and q/k/v biases) on text packed with its real tokenizer (from llama.cpp's
vocab files); both runs load it in float32 (the cpt stage's master weights).

Builds a tiny Llama (``freshllm.models.build_llama``, random init, saved once so both runs
start from the same weights) and packs generated d1 text (``PackWriter``, documents split
across rows, position_ids reset per document). Then trains it, each in a fresh
subprocess, for the same number of steps and sequences per step:

* ours: ``freshllm.train.train`` with ``accelerate.Accelerator(cpu=True)`` (what the cpt
  stage runs: AdamW(0.9, 0.95), linear re-warmup then cosine to ``min_lr_ratio``, weight
  decay, grad clipping);
* baseline: a plain ``transformers.Trainer`` (``use_cpu``, batch size, ``max_steps``, grad
  clipping, ``report_to=[]``, no eval, no saving, loss logged every step like ours) given
  the same AdamW and LR schedule objects the cpt loop builds (so the LR, betas, weight
  decay groups and warmup are identical), a Dataset yielding the same packed rows in the
  same order (``train_sampling_strategy="sequential"``), and a collator that keeps
  ``position_ids`` and passes no ``attention_mask``; ``use_cache`` is off in both.

Prints tokens/s of each (whole ``train`` call; the median step after the first 5, which is
robust to bursts of other processes on the machine; and per CPU-second), medians over
``--repeats`` runs of each in alternating order, the ratio
ours/Trainer (goal >= 1.0 on CPU), and both final losses (mean of the last 10 steps) and
the largest per-step loss difference: same data, weights and optimizer, so they should
agree closely.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}
SKIP_STEPS = 5  # steady state: tokens/s after this many steps


def prepare(work: Path, a) -> dict:
    """Tokenizer, packed data (``work/data``) and an initial model (``work/init``)."""
    from freshllm.synthetic.corpus import d1_documents
    from freshllm.models import ModelsConfig, build_llama, train_tokenizer
    from freshllm.io.packed import PackedData, PackWriter

    if a.standin:
        from freshllm.standins import build_standin, load_tokenizer

        tok = load_tokenizer(a.standin)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
    else:
        tok = train_tokenizer(d1_documents(0, 500), a.vocab)[0]
    need = a.steps * a.batch_size * a.seq_len
    writer = PackWriter(work / "data", a.seq_len, pad_id=tok.pad_token_id,
                        max_rows=a.steps * a.batch_size)
    seed = 1
    while writer.rows < a.steps * a.batch_size:
        docs = d1_documents(seed, 2000)
        for ids in tok(docs, add_special_tokens=True)["input_ids"]:
            writer.add(ids + [tok.eos_token_id])
        seed += 1
    meta = writer.close()
    if a.standin:
        from safetensors import safe_open
        from transformers import AutoConfig

        build_standin(a.standin, work / "init", shrink=a.shrink)
        n_params = 0
        for f in sorted((work / "init").glob("*.safetensors")):
            with safe_open(str(f), "pt") as fh:
                n_params += sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys())
        c = AutoConfig.from_pretrained(str(work / "init"))
        return {"parameters": n_params, "rows": len(PackedData.open(work / "data")), "tokens": need,
                "documents": meta["documents"],
                "what": f"{a.standin} stand-in ({c.num_hidden_layers} layers, hidden {c.hidden_size}, "
                        f"vocab {c.vocab_size}, tied embeddings {c.tie_word_embeddings}, real tokenizer)"}
    cfg = ModelsConfig(seed=0, vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=3 * a.hidden,
                       num_layers=a.layers, num_heads=a.heads, num_kv_heads=a.kv_heads,
                       max_position_embeddings=max(4096, a.seq_len))
    model = build_llama(cfg, tok)
    model.config.use_cache = False
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(str(work / "init"), safe_serialization=True)
    n_params = sum(p.numel() for p in model.parameters())
    return {"parameters": n_params, "rows": len(PackedData.open(work / "data")), "tokens": need,
            "documents": meta["documents"]}


def loop_config(a):
    from freshllm.train import TrainConfig

    return TrainConfig(lr=a.lr, steps=a.steps, batch_size=a.batch_size, warmup_steps=a.warmup,
                       min_lr_ratio=0.1, schedule="cosine", weight_decay=0.1, beta1=0.9, beta2=0.95,
                       max_grad_norm=1.0, seed=0, gradient_checkpointing=a.grad_ckpt)


def cpu_seconds() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def steady(stamps: list[float], tokens_per_step: int, skip: int = SKIP_STEPS) -> float | None:
    """tokens/s of the median step after the first ``skip`` (step-end timestamps): robust
    to bursts of other processes on the machine."""
    if len(stamps) <= skip + 1:
        return None
    return tokens_per_step / statistics.median(b - a for a, b in zip(stamps[skip:], stamps[skip + 1:]))


def run_ours(work: Path, a) -> dict:
    import torch
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM

    from freshllm.io.packed import PackedData
    from freshllm.train import train

    torch.manual_seed(0)
    data = PackedData.open(work / "data")
    model = AutoModelForCausalLM.from_pretrained(str(work / "init"), dtype=torch.float32)
    cfg = loop_config(a)
    stamps: list[float] = []
    acc = Accelerator(cpu=True)
    t, c = time.perf_counter(), cpu_seconds()
    stats = train(model, data, cfg, acc, on_step=lambda s: stamps.append(time.perf_counter()),
                  progress_desc="ours")
    wall, cpu = time.perf_counter() - t, cpu_seconds() - c
    losses = stats["losses"]
    tps = a.batch_size * a.seq_len
    return {"wall_s": wall, "cpu_s": cpu, "tokens_per_cpu_s": a.steps * tps / cpu,
            "tokens_per_s": a.steps * tps / wall, "steady_tokens_per_s": steady(stamps, tps, a.skip_steps),
            "final_loss": statistics.fmean(losses[-10:]), "mean_loss": statistics.fmean(losses),
            "first_loss": losses[0], "losses": losses}


def run_trainer(work: Path, a) -> dict:
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from freshllm.io.packed import PackedData
    from freshllm.train import batch_rows, optimizer_and_scheduler

    torch.manual_seed(0)
    data = PackedData.open(work / "data")
    cfg = loop_config(a).resolve(len(data), 1)  # as train() resolves it
    # the rows the cpt loop trains on, in its order (one epoch-free list of steps x batch)
    order = np.concatenate([batch_rows(s, 0, 0, 1, len(data), cfg) for s in range(a.steps)])

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(order)

        def __getitem__(self, i):
            return {k: v[0] for k, v in data.batch([order[i]]).items()}

    def collate(features):
        return {k: torch.stack([f[k] for f in features]) for k in ("input_ids", "position_ids", "labels")}

    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    model = AutoModelForCausalLM.from_pretrained(str(work / "init"), dtype=torch.float32)
    args = TrainingArguments(
        output_dir=str(work / "trainer-out"), per_device_train_batch_size=a.batch_size,
        max_steps=a.steps, learning_rate=a.lr, lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1}, warmup_steps=a.warmup, weight_decay=0.1,
        adam_beta1=0.9, adam_beta2=0.95, max_grad_norm=1.0, optim="adamw_torch",
        logging_strategy="steps", logging_steps=1, report_to=[], save_strategy="no",
        eval_strategy="no", use_cpu=True, dataloader_num_workers=0, remove_unused_columns=False,
        train_sampling_strategy="sequential", disable_tqdm=True, seed=0,
        gradient_checkpointing=a.grad_ckpt)
    # the cpt loop's optimizer and schedule, built by the same function train.train uses:
    # AdamW with no decay on embeddings and 1-d weights, linear re-warmup from (step+1)/warmup
    optimizer, scheduler = optimizer_and_scheduler(model, cfg)
    trainer = Trainer(model=model, args=args, train_dataset=Rows(), data_collator=collate,
                      callbacks=[Stamp()], optimizers=(optimizer, scheduler))
    t, c = time.perf_counter(), cpu_seconds()
    out = trainer.train()
    wall, cpu = time.perf_counter() - t, cpu_seconds() - c
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tps = a.batch_size * a.seq_len
    return {"wall_s": wall, "cpu_s": cpu, "tokens_per_cpu_s": a.steps * tps / cpu,
            "tokens_per_s": a.steps * tps / wall, "steady_tokens_per_s": steady(stamps, tps, a.skip_steps),
            "final_loss": statistics.fmean(losses[-10:]), "mean_loss": out.training_loss,
            "first_loss": losses[0], "losses": losses, "train_runtime_s": out.metrics.get("train_runtime")}


def run_child(which: str, work: Path, a) -> dict:
    cmd = [sys.executable, "-m", "freshllm.bench.cpt", "--child", which, "--work", str(work),
           "--steps", str(a.steps), "--batch-size", str(a.batch_size), "--seq-len", str(a.seq_len),
           "--lr", str(a.lr), "--warmup", str(a.warmup), "--skip-steps", str(a.skip_steps)]
    if a.grad_ckpt:
        cmd.append("--grad-ckpt")
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ENV})
    if r.returncode:
        raise RuntimeError(f"{which} run failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench(work: Path, a, out=print) -> dict:
    t = time.perf_counter()
    out(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
        "(other processes on the machine skew timings)")
    info = prepare(work, a)
    what = info.get("what") or f"tiny Llama (hidden {a.hidden}, {a.layers} layers, vocab {a.vocab})"
    out(f"{what}: {info['parameters']:,} parameters; gradient checkpointing {'on' if a.grad_ckpt else 'off'}; "
        f"{info['rows']} packed rows of {a.seq_len} tokens ({info['documents']} documents); "
        f"{a.steps} steps x {a.batch_size} sequences = {info['tokens']:,} tokens per run "
        f"(prepared in {time.perf_counter() - t:.1f} s)")
    runs: dict[str, list[dict]] = {"ours": [], "trainer": []}
    for i in range(a.repeats):
        for which in (("ours", "trainer") if i % 2 == 0 else ("trainer", "ours")):
            runs[which].append(run_child(which, work, a))
    res = {}
    for which, rs in runs.items():
        med = lambda k: statistics.median(r[k] for r in rs if r[k] is not None)  # noqa: E731
        res[which] = {"tokens_per_s": med("tokens_per_s"), "steady_tokens_per_s": med("steady_tokens_per_s"),
                      "final_loss": rs[-1]["final_loss"], "mean_loss": rs[-1]["mean_loss"],
                      "wall_s": med("wall_s"), "cpu_s": med("cpu_s"), "tokens_per_cpu_s": med("tokens_per_cpu_s"),
                      "all_tokens_per_s": [r["tokens_per_s"] for r in rs]}
    rep = f" (median of {a.repeats}, alternating order)" if a.repeats > 1 else ""
    for which, name in (("ours", "ours (freshllm.train)"), ("trainer", "transformers.Trainer")):
        r = res[which]
        out(f"{name:<22} {r['tokens_per_s']:>8,.0f} tokens/s whole run{rep}, {r['steady_tokens_per_s']:>8,.0f} "
            f"median step; {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU "
            f"({r['tokens_per_cpu_s']:,.0f} tokens per CPU-s); final loss {r['final_loss']:.4f} "
            f"(last 10 steps), mean {r['mean_loss']:.4f}"
            + (f"; runs: {', '.join(f'{x:,.0f}' for x in r['all_tokens_per_s'])} tokens/s" if a.repeats > 1 else ""))
    ratio = res["ours"]["tokens_per_s"] / res["trainer"]["tokens_per_s"]
    ratio_ss = res["ours"]["steady_tokens_per_s"] / res["trainer"]["steady_tokens_per_s"]
    ratio_cpu = res["ours"]["tokens_per_cpu_s"] / res["trainer"]["tokens_per_cpu_s"]
    out(f"ratio ours/Trainer:    {ratio:.3f} whole run, {ratio_ss:.3f} median step, {ratio_cpu:.3f} per "
        "CPU-second  (goal >= 1.0)")
    step_diff = max(abs(x - y) for x, y in zip(runs["ours"][-1]["losses"], runs["trainer"][-1]["losses"]))
    out(f"final loss ours - Trainer: {res['ours']['final_loss'] - res['trainer']['final_loss']:+.4f}; "
        f"largest per-step loss difference {step_diff:.4f} (Trainer logs losses rounded to 4 decimals)")
    res["max_step_loss_diff"] = step_diff
    out(f"load average at end: {os.getloadavg()[0]:.1f}")
    res["ratio"], res["ratio_steady"], res["ratio_cpu"] = ratio, ratio_ss, ratio_cpu
    return res


def main(argv=None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each, alternating (median reported)")
    ap.add_argument("--standin", default=None, metavar="MODEL_ID",
                    help="train a full-size stand-in of this hub model (freshllm.standins, e.g. Qwen/Qwen2.5-0.5B) "
                         "on text packed with its real tokenizer instead of the tiny Llama")
    ap.add_argument("--shrink", default=None, help="--standin only: depth/width overrides "
                    "(freshllm.standins syntax, e.g. hidden=64,layers=2,intermediate=128,heads=4,kv_heads=2)")
    ap.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing in both runs")
    ap.add_argument("--skip-steps", type=int, default=SKIP_STEPS,
                    help="steps left out of the median-step rate (warm-up)")
    ap.add_argument("--child", choices=["ours", "trainer"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    os.environ.update(ENV)
    if a.child:
        import logging

        logging.disable(logging.WARNING)
        fn = run_ours if a.child == "ours" else run_trainer
        print(json.dumps(fn(Path(a.work), a)))
        return
    from ..common import quiet_logging

    with quiet_logging(), tempfile.TemporaryDirectory(prefix="bench-cpt-") as d:
        return bench(Path(d), a)


if __name__ == "__main__":
    main()
