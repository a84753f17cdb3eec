"""The training loop shared by ``cpt`` (continued pre-training) and ``models`` (building
the embedded ancestor pair): flat, nanoGPT-style, on top of ``accelerate``.

Data comes from a :class:`~freshllm.io.packed.PackedData`; batches are chosen by a seeded
permutation indexed by the optimizer step, so resuming needs only the step number and
the same code runs single-process, DDP or FSDP (each process takes its own slice).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

    from .io.packed import PackedData

log = logging.getLogger(__name__)

Schedule = Literal["cosine", "wsd", "constant"]
MixedPrecision = Literal["no", "bf16", "fp16"]
SaveDtype = Literal["auto", "float32", "bfloat16", "float16"]


@dataclass(frozen=True)
class TrainConfig:
    """One training run: the ``cpt.train`` params section (validated, every bad key at once,
    by :func:`freshllm.config.load_section`) and what :func:`train` takes; ``models`` builds
    the same type for the tiny pre-training and SFT of the local ancestor pair.

    ``lr``, the peak LR, is not a ``cpt.train`` key: the cpt stage sets it per variant from
    ``cpt.lr`` (:meth:`freshllm.cpt.CptConfig.train_config`). ``steps: null`` and
    ``warmup_steps: 0`` are resolved against the data by :meth:`resolve` (``train`` does it).
    """

    lr: float | None = None           # peak LR (set by the caller, see above)
    steps: int | None = None          # optimizer steps; None: `epochs` passes over the new data
    epochs: float = 1.0
    batch_size: int = 4               # sequences per micro-batch per process
    grad_accum: int = 1
    warmup_steps: int = 0             # 0: warmup_fraction of the steps (at least 1)
    warmup_fraction: float = 0.01
    min_lr_ratio: float = 0.1
    schedule: Schedule = "cosine"
    decay_fraction: float = 0.2       # wsd: final fraction of steps that decays
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    max_grad_norm: float = 1.0
    seed: int = 0
    save_every: int = 0               # 0: no intermediate checkpoints
    keep_last: int = 2
    gradient_checkpointing: bool = False
    compile: bool = False
    replay_fraction: float = 0.0      # share of each micro-batch drawn from the replay data
    # Read where the model is loaded, placed and saved (the cpt stage), not by train():
    mixed_precision: MixedPrecision = "no"
    save_dtype: SaveDtype = "auto"    # dtype of the saved model; auto: the source model's
    cpu: bool = False                 # force CPU even when an accelerator is present
    trust_remote_code: bool = False

    def validate(self) -> list[str]:
        """Problems of the config as a params section (where ``lr`` is the caller's to set)."""
        errs = []
        if self.lr is not None:
            errs.append("lr: not a cpt.train key (the peak LR is cpt.lr.<variant>)")
        if self.steps is not None and self.steps <= 0:
            errs.append("steps: must be > 0 or null")
        if self.epochs <= 0:
            errs.append("epochs: must be > 0")
        for key in ("batch_size", "grad_accum"):
            if getattr(self, key) <= 0:
                errs.append(f"{key}: must be > 0")
        for key in ("warmup_steps", "save_every"):
            if getattr(self, key) < 0:
                errs.append(f"{key}: must be >= 0")
        for key in ("min_lr_ratio", "warmup_fraction", "decay_fraction"):
            if not 0 <= getattr(self, key) <= 1:
                errs.append(f"{key}: must be in [0, 1]")
        if self.keep_last < 1:
            errs.append("keep_last: must be >= 1")
        if not 0.0 <= self.replay_fraction < 1.0:
            errs.append(f"replay_fraction: must be in [0, 1), got {self.replay_fraction}")
        return errs

    @property
    def replay_rows(self) -> int:
        """Sequences of each micro-batch drawn from the replay data."""
        return int(round(self.batch_size * self.replay_fraction))

    def sequences_per_step(self, world: int, new_only: bool = False) -> int:
        """Sequences of one optimizer step over ``world`` processes (``new_only``: not replay)."""
        return (self.batch_size - (self.replay_rows if new_only else 0)) * self.grad_accum * world

    def resolve(self, n_rows: int, world: int) -> TrainConfig:
        """This run with ``steps`` (from ``epochs`` over ``n_rows`` new sequences) and
        ``warmup_steps`` (from ``warmup_fraction``) set; unchanged when both are given."""
        steps = self.steps or max(1, math.ceil(self.epochs * n_rows / max(1, self.sequences_per_step(
            world, new_only=True))))
        warmup = self.warmup_steps or max(1, round(self.warmup_fraction * steps))
        return replace(self, steps=steps, warmup_steps=warmup)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak LR at ``step`` (``cfg`` resolved): linear re-warmup, then cosine
    re-decay to a floor (Ibrahim et al. 2024), or warmup-stable-decay, or constant after warmup."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    floor = cfg.min_lr_ratio
    span = max(1, cfg.steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "wsd":
        decay_start = 1.0 - cfg.decay_fraction
        if t <= decay_start:
            return 1.0
        return 1.0 - (1.0 - floor) * (t - decay_start) / max(cfg.decay_fraction, 1e-9)
    return 1.0


def batch_rows(step: int, micro: int, rank: int, world: int, n_rows: int, cfg: TrainConfig) -> np.ndarray:
    """Row indices of one micro-batch: a deterministic function of (step, micro, rank)."""
    per_step = cfg.batch_size * cfg.grad_accum * world
    start = step * per_step + (micro * world + rank) * cfg.batch_size
    idx = np.arange(start, start + cfg.batch_size)
    epoch = idx // n_rows
    out = np.empty_like(idx)
    for e in np.unique(epoch):
        perm = np.random.default_rng([cfg.seed, int(e)]).permutation(n_rows)
        sel = epoch == e
        out[sel] = perm[idx[sel] % n_rows]
    return out


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embed" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def optimizer_and_scheduler(model: torch.nn.Module, cfg: TrainConfig):
    """AdamW (no weight decay on embeddings and 1-d weights) and ``cfg``'s LR schedule,
    stepped once per optimizer step (``cfg`` resolved)."""
    import torch

    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                                  betas=(cfg.beta1, cfg.beta2))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))


_CKPT_RE = re.compile(r"^step-(\d+)$")


def latest_checkpoint(ckpt_dir: Path | None) -> tuple[int, Path] | None:
    if ckpt_dir is None or not ckpt_dir.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _CKPT_RE.match(p.name))]
    return max(found) if found else None


def _save_checkpoint(accelerator, ckpt_dir: Path, step: int, keep_last: int) -> None:
    """accelerate state (model, optimizer, scheduler, RNG) saved to a temp dir, renamed."""
    final = ckpt_dir / f"step-{step}"
    tmp = ckpt_dir / f".tmp-step-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        os.replace(tmp, final)
        ckpts = sorted((int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _CKPT_RE.match(p.name)))
        for _, old in ckpts[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def replay_split(cfg: TrainConfig) -> tuple[TrainConfig, TrainConfig | None]:
    """(new-data, replay) configs whose batch sizes split each micro-batch."""
    n_replay = cfg.replay_rows
    if n_replay == 0:
        return cfg, None
    if n_replay >= cfg.batch_size:
        raise ValueError(f"replay_fraction {cfg.replay_fraction} leaves no new data in a micro-batch "
                         f"of {cfg.batch_size} sequences")
    return (replace(cfg, batch_size=cfg.batch_size - n_replay),
            replace(cfg, batch_size=n_replay, seed=cfg.seed + 1))


def train(model: torch.nn.Module, data: PackedData, cfg: TrainConfig, accelerator,
          ckpt_dir: str | Path | None = None, replay: PackedData | None = None,
          on_step: Callable[[dict], None] | None = None,
          progress_desc: str = "train") -> dict:
    """Train ``model`` in place for ``cfg.steps`` optimizer steps (``cfg`` resolved against
    ``data`` first, see :meth:`TrainConfig.resolve`); returns summary stats.

    If ``ckpt_dir`` holds checkpoints, training resumes from the latest one (model,
    optimizer, scheduler, RNG; the data position follows from the step number).
    """
    import torch
    from tqdm.auto import tqdm

    if len(data) == 0:
        raise ValueError("no training sequences")
    if cfg.lr is None:
        raise ValueError("TrainConfig.lr (the peak learning rate) is not set")
    cfg = cfg.resolve(len(data), accelerator.num_processes)
    torch.manual_seed(cfg.seed)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.config.use_cache = False
    model.train()
    optimizer, scheduler = optimizer_and_scheduler(model, cfg)
    # The scheduler is not passed to prepare(): accelerate would step it once per process
    # (it assumes a sharded dataloader); ours counts optimizer steps. It is still saved
    # and restored with the checkpoints.
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    if cfg.compile:
        model = torch.compile(model)

    start_step = 0
    ckpt_path = Path(ckpt_dir) if ckpt_dir else None
    if ckpt_path is not None:
        ckpt_path.mkdir(parents=True, exist_ok=True)
        found = latest_checkpoint(ckpt_path)
        if found:
            start_step, path = found
            accelerator.load_state(str(path))
            log.info("resumed from %s (step %d)", path, start_step)

    world, rank = accelerator.num_processes, accelerator.process_index
    new_cfg, replay_cfg = replay_split(cfg)
    if replay_cfg is not None and (replay is None or len(replay) == 0):
        raise ValueError("replay_fraction > 0 needs replay data")
    if replay_cfg is not None and replay.seq_len != data.seq_len:
        raise ValueError(f"replay sequences have length {replay.seq_len}, new data {data.seq_len}")
    sources = [(data, new_cfg)] + ([(replay, replay_cfg)] if replay_cfg is not None else [])
    tokens_per_step = cfg.sequences_per_step(world) * data.seq_len
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(start_step, cfg.steps), initial=start_step, total=cfg.steps, desc=progress_desc,
               unit="step", disable=not accelerator.is_local_main_process, dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 10.0)
    for step in bar:
        ts = time.perf_counter()
        # The loss is normalised by the number of target tokens of the whole global batch
        # (all micro-batches, all processes; known locally since batches are a function of
        # the step), so accumulation and DDP give the same gradient as one big batch.
        rows = {(m, r, i): batch_rows(step, m, r, world, len(src), c)
                for m in range(cfg.grad_accum) for r in range(world) for i, (src, c) in enumerate(sources)}
        n_targets = max(1, sum(int(sources[i][0].loss_mask[np.sort(idx)][:, 1:].sum())
                               for (_, _, i), idx in rows.items()))
        loss_sum = torch.zeros((), device=accelerator.device)
        for micro in range(cfg.grad_accum):
            parts = [src.batch(rows[(micro, rank, i)]) for i, (src, _) in enumerate(sources)]
            batch = {k: torch.cat([p[k] for p in parts]).to(accelerator.device) for k in parts[0]}
            ctx = (accelerator.no_sync(model) if micro < cfg.grad_accum - 1
                   else contextlib.nullcontext())
            with ctx, accelerator.autocast():
                out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                            labels=batch["labels"], attention_mask=None, use_cache=False,
                            num_items_in_batch=n_targets)
                loss = out.loss  # sum over this micro-batch / n_targets
            accelerator.backward(loss * world)  # DDP averages gradients over processes
            loss_sum += loss.detach()
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step_loss = accelerator.reduce(loss_sum, reduction="sum").item()
        losses.append(step_loss)
        dt = time.perf_counter() - ts
        stats = {"step": step + 1, "loss": step_loss, "lr": lr,
                 "grad_norm": float(grad_norm), "tokens_per_s": tokens_per_step / max(dt, 1e-9),
                 "tokens": (step + 1) * tokens_per_step}
        bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{stats['tokens_per_s']:.0f}", refresh=False)
        if on_step is not None and accelerator.is_main_process:
            on_step(stats)
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"loss became {step_loss} at step {step + 1}")
        if ckpt_path is not None and cfg.save_every and (step + 1) % cfg.save_every == 0 \
                and step + 1 < cfg.steps:
            _save_checkpoint(accelerator, ckpt_path, step + 1, cfg.keep_last)
    bar.close()
    elapsed = time.perf_counter() - t0
    done = cfg.steps - start_step
    return {
        "steps": cfg.steps,
        "resumed_from_step": start_step,
        "tokens_seen": cfg.steps * tokens_per_step,
        "tokens_per_step": tokens_per_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": float(np.mean(losses[-max(1, min(10, len(losses))):])) if losses else None,
        "losses": losses,
        "train_seconds": elapsed,
        "tokens_per_s": done * tokens_per_step / elapsed if elapsed > 0 and done else None,
    }
