"""Stage ``cpt``: continued pre-training of a causal LM on the packed news data.

Run for the base model (paper Setting 2) and for the instruct model (Setting 1). Built
on ``accelerate``: the same command runs on CPU, one GPU, DDP or FSDP, e.g.::

    accelerate launch --config_file configs/accelerate/fsdp_8gpu.yaml -m freshllm.cpt ...

Checkpoints (model, optimizer, scheduler, RNG) are written atomically every
``save_every`` steps to ``--ckpt-dir``; a killed run restarted with the same arguments
resumes from the latest one and ends with the same weights. The directory is tied to a
fingerprint of the inputs and config, and removed once the final model is saved.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from .common import atomic_dir, set_offline, setup_logging, write_json
from .config import load_section

log = logging.getLogger(__name__)

WEIGHT_FILES = ("*.safetensors", "*.safetensors.index.json", "config.json")


@dataclass(frozen=True)
class CptLr:
    """Peak learning rate per variant (the paper continues both base and instruct)."""

    base: float = 2e-5
    instruct: float = 2e-5

    def validate(self) -> list[str]:
        return [f"{k}: must be > 0" for k in ("base", "instruct") if getattr(self, k) <= 0]


@dataclass(frozen=True)
class CptTrain:
    steps: int | None = None          # None: `epochs` passes over the packed sequences
    epochs: float = 1.0
    batch_size: int = 4               # sequences per micro-batch per process
    grad_accum: int = 1
    min_lr_ratio: float = 0.1
    warmup_steps: int = 0
    warmup_fraction: float = 0.01     # used when warmup_steps is 0
    schedule: str = "cosine"          # cosine | wsd | constant
    decay_fraction: float = 0.2       # wsd: final fraction of steps that decays
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"       # no | bf16 | fp16
    gradient_checkpointing: bool = False
    compile: bool = False
    save_every: int = 0               # 0: no intermediate checkpoints
    keep_last: int = 2
    seed: int = 0
    replay_fraction: float = 0.0      # share of each micro-batch from --replay-data (packed the same way)
    cpu: bool = False                 # force CPU even when an accelerator is present
    trust_remote_code: bool = False

    def validate(self) -> list[str]:
        errs = []
        if self.steps is not None and self.steps <= 0:
            errs.append("steps: must be > 0 or null")
        if self.epochs <= 0:
            errs.append("epochs: must be > 0")
        for key in ("batch_size", "grad_accum"):
            if getattr(self, key) <= 0:
                errs.append(f"{key}: must be > 0")
        if not 0 <= self.min_lr_ratio <= 1:
            errs.append("min_lr_ratio: must be in [0, 1]")
        if self.schedule not in ("cosine", "wsd", "constant"):
            errs.append(f"schedule: must be cosine, wsd or constant, got {self.schedule!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            errs.append(f"mixed_precision: must be no, bf16 or fp16, got {self.mixed_precision!r}")
        if self.keep_last < 1:
            errs.append("keep_last: must be >= 1")
        if not 0.0 <= self.replay_fraction < 1.0:
            errs.append(f"replay_fraction: must be in [0, 1), got {self.replay_fraction}")
        return errs


@dataclass(frozen=True)
class CptConfig:
    lr: CptLr = CptLr()
    train: CptTrain = CptTrain()


def fingerprint(model_dir: Path, data_dir: Path, cfg: CptTrain, lr: float, world: int) -> str:
    """Identifies a training run, so stale checkpoints of another run are never resumed."""
    h = hashlib.sha256()
    h.update(json.dumps([asdict(cfg), lr, world], sort_keys=True).encode())
    for f in sorted(model_dir.glob("*.safetensors")) + [data_dir / "train" / "meta.json"]:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}".encode())
    h.update((data_dir / "info.json").read_bytes() if (data_dir / "info.json").exists() else b"")
    return h.hexdigest()[:16]


def prepare_ckpt_dir(ckpt_dir: Path, fp: str, is_main: bool) -> None:
    stamp = ckpt_dir / "FINGERPRINT"
    if is_main:
        if ckpt_dir.exists() and (not stamp.exists() or stamp.read_text().strip() != fp):
            log.warning("discarding checkpoints of a different run in %s", ckpt_dir)
            shutil.rmtree(ckpt_dir)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fp + "\n")


def save_final(accelerator, model, src_dir: Path, out: Path) -> None:
    """HF directory: weights (safetensors) + every non-weight file of the source model
    (tokenizer, chat template, generation config) copied unchanged."""
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.config.use_cache = True
    with atomic_dir(out) as tmp:
        unwrapped.save_pretrained(str(tmp), state_dict=state, safe_serialization=True)
        for f in src_dir.iterdir():
            if f.is_file() and not any(f.match(p) for p in WEIGHT_FILES):
                shutil.copy2(f, tmp / f.name)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--variant", required=True, choices=["base", "instruct"])
    ap.add_argument("--model", required=True, type=Path, help="HF model directory to start from")
    ap.add_argument("--data", required=True, type=Path, help="packed data directory (pack stage)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--metrics", required=True, type=Path)
    ap.add_argument("--ckpt-dir", required=True, type=Path)
    ap.add_argument("--live-dir", type=Path, default=None, help="dvclive directory (loss curves)")
    ap.add_argument("--replay-data", type=Path, default=None,
                    help="packed replay corpus (e.g. old pre-training data) for cpt.train.replay_fraction")
    ap.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # tests
    args = ap.parse_args(argv)
    setup_logging()
    set_offline()
    full = load_section(CptConfig, "cpt", args.params)
    cfg, lr = full.train, getattr(full.lr, args.variant)

    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from .io.hf import check_model_dir, load_causal_lm
    from .io.packed import PackedData
    from .train import LoopConfig, train

    check_model_dir(args.model)
    data = PackedData.open(args.data / "train")
    # Without an accelerator, processes started by torchrun (`accelerate launch` with a
    # multi-process config) must be told they are CPU workers to use DDP over gloo.
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision,
                              cpu=cfg.cpu or not torch.cuda.is_available())
    set_seed(cfg.seed)
    world = accelerator.num_processes
    per_step = cfg.batch_size * cfg.grad_accum * world
    new_per_step = (cfg.batch_size - round(cfg.batch_size * cfg.replay_fraction)) * cfg.grad_accum * world
    steps = cfg.steps or max(1, math.ceil(cfg.epochs * len(data) / max(1, new_per_step)))
    warmup = cfg.warmup_steps or max(1, round(cfg.warmup_fraction * steps))
    loop = LoopConfig(lr=lr, steps=steps, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                      warmup_steps=warmup, min_lr_ratio=cfg.min_lr_ratio, schedule=cfg.schedule,
                      decay_fraction=cfg.decay_fraction, weight_decay=cfg.weight_decay,
                      max_grad_norm=cfg.max_grad_norm, seed=cfg.seed, save_every=cfg.save_every,
                      keep_last=cfg.keep_last, gradient_checkpointing=cfg.gradient_checkpointing,
                      compile=cfg.compile, replay_fraction=cfg.replay_fraction)
    replay = PackedData.open(args.replay_data / "train") if args.replay_data else None
    if cfg.replay_fraction > 0 and replay is None:
        raise SystemExit("cpt.train.replay_fraction > 0 needs --replay-data (a packed directory)")
    fp = fingerprint(args.model, args.data, cfg, lr, world)
    prepare_ckpt_dir(args.ckpt_dir, fp, accelerator.is_main_process)
    accelerator.wait_for_everyone()

    model = load_causal_lm(args.model, dtype=torch.float32, trust_remote_code=cfg.trust_remote_code)
    n_params = sum(p.numel() for p in model.parameters())
    n_embed = model.get_input_embeddings().weight.numel()
    log.info("cpt %s: %s (%d params) on %d sequences x %d tokens; %d steps of %d tokens; lr %g",
             args.variant, args.model, n_params, len(data), data.seq_len, steps,
             per_step * data.seq_len, lr)

    live = None
    if args.live_dir is not None and accelerator.is_main_process:
        from dvclive import Live

        live = Live(str(args.live_dir), dvcyaml=None, save_dvc_exp=False, report=None,
                    resume=any(args.ckpt_dir.glob("step-*")))

    def on_step(s: dict) -> None:
        if args.stop_after is not None and s["step"] >= args.stop_after:
            raise SystemExit(f"--stop-after {args.stop_after}: stopping (simulated crash)")
        if live is not None:
            for key in ("loss", "lr", "grad_norm", "tokens_per_s"):
                live.log_metric(f"train/{key}", s[key], plot=True)
            live.step = s["step"]
            live.next_step()

    stats = train(model, data, loop, accelerator, ckpt_dir=args.ckpt_dir, replay=replay, on_step=on_step,
                  progress_desc=f"cpt {args.variant}")
    save_final(accelerator, model, args.model, args.out)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if live is not None:
            live.end()
        losses = stats.pop("losses")
        tokens = stats["tokens_seen"]
        write_json(args.metrics, {
            "variant": args.variant, "lr": lr, "num_processes": world,
            "parameters": n_params, "non_embedding_parameters": n_params - n_embed,
            "flops": 6 * n_params * tokens, "new_tokens_seen": steps * new_per_step * data.seq_len,
            "loss_decreased": bool(losses[-1] < losses[0]),
            **stats,
        })
        shutil.rmtree(args.ckpt_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
