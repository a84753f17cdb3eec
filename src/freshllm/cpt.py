"""Stage ``cpt``: continued pre-training of a causal LM on the packed news data.

Run for the base model (paper Setting 2) and for the instruct model (Setting 1). Built
on ``accelerate``: the same command runs on CPU, one GPU, DDP or FSDP, e.g.::

    accelerate launch --config_file configs/accelerate/fsdp_8gpu.yaml -m freshllm.cpt ...

Checkpoints (model, optimizer, scheduler, RNG) are written atomically every
``save_every`` steps to ``--ckpt-dir``; a killed run restarted with the same arguments
resumes from the latest one and ends with the same weights. The directory is tied to a
fingerprint of the inputs and config, and removed once the final model is saved.

Training keeps float32 master weights whatever the source dtype; the final model is saved
in the source dtype (``config.json``'s ``dtype``), or in ``cpt.train.save_dtype``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .common import set_offline, setup_logging, use_runtime, write_json
from .config import load_section
from .train import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CptLr:
    """Peak learning rate per variant (the paper continues both base and instruct)."""

    base: float = 2e-5
    instruct: float = 2e-5

    def validate(self) -> list[str]:
        return [f"{k}: must be > 0" for k in ("base", "instruct") if getattr(self, k) <= 0]


@dataclass(frozen=True)
class CptConfig:
    lr: CptLr = CptLr()
    train: TrainConfig = TrainConfig()  # cpt.train: what the training loop takes

    def train_config(self, variant: str) -> TrainConfig:
        """``cpt.train`` with the peak LR of ``variant`` (``cpt.lr.<variant>``): the one place
        the two meet."""
        return replace(self.train, lr=getattr(self.lr, variant))


def fingerprint(model_dir: Path, data_dir: Path, cfg: TrainConfig, world: int) -> str:
    """Identifies a training run, so stale checkpoints of another run are never resumed."""
    h = hashlib.sha256()
    h.update(json.dumps([asdict(cfg), world], sort_keys=True).encode())
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


_SAFETENSORS_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}


def source_dtype(model_dir: Path) -> str:
    """The dtype a model is stored in: its config.json's ``dtype`` (``torch_dtype`` before
    transformers 4.56); without one, that of its first floating safetensors tensor (as
    ``from_pretrained(dtype="auto")`` would); else float32."""
    config = json.loads((model_dir / "config.json").read_text())
    name = config.get("dtype") or config.get("torch_dtype")
    if isinstance(name, str) and name != "auto":
        return name.removeprefix("torch.")
    for f in sorted(model_dir.glob("*.safetensors")):
        with open(f, "rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        found = [_SAFETENSORS_DTYPES[v["dtype"]] for k, v in header.items()
                 if k != "__metadata__" and v["dtype"] in _SAFETENSORS_DTYPES]
        if found:
            return found[0]
    return "float32"


def check_launch(accelerator) -> None:
    """Refuse a launch that silently runs another kind of parallelism than the accelerate
    config asks for. accelerate (1.15) applies FSDP only on accelerators: with FSDP in the
    config but no GPU, the processes fall back to MULTI_CPU data parallelism (every process
    holds the whole model), which would hide an FSDP bug and misstate memory."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and \
            accelerator.distributed_type.value != "FSDP":
        raise SystemExit(
            f"cpt: the accelerate config asks for FSDP, but accelerate runs "
            f"{accelerator.distributed_type.value} on {accelerator.device} (accelerate shards with FSDP "
            "only on GPUs/accelerators); use a DDP config (configs/accelerate/cpu_ddp2.yaml) on CPUs")


def skip_unchanged(args, runtime: dict) -> None:
    """No training: ``--out`` is a copy of ``--model`` (its weights hash unchanged), and the
    metrics say why (the packed data is marked ``no_new_articles``)."""
    import os

    from .common import atomic_dir

    if int(os.environ.get("RANK", "0")) == 0:
        with atomic_dir(args.out) as tmp:
            shutil.copytree(args.model, tmp, dirs_exist_ok=True)
        reason = f"{args.data}: marked no_new_articles (the window's crawl found no article): no training"
        log.warning("cpt %s: %s; %s is a copy of %s", args.variant, reason, args.out, args.model)
        write_json(args.metrics, {"variant": args.variant, "skipped": reason, "steps": 0, "tokens_seen": 0,
                                  "new_tokens_seen": 0, "start": str(args.model), "runtime": runtime})
        shutil.rmtree(args.ckpt_dir, ignore_errors=True)


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
    ap.add_argument("--section", default="cpt",
                    help="the params section to read (default cpt; a chain of updates reads chain.cpt)")
    ap.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # tests
    args = ap.parse_args(argv)
    setup_logging()
    set_offline()
    cfg = load_section(CptConfig, args.section, args.params).train_config(args.variant)
    runtime = use_runtime(args.params)

    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from .io.hf import check_model_dir, load_causal_lm, save_final
    from .io.packed import PackedData, no_new_articles
    from .train import train

    check_model_dir(args.model)
    if no_new_articles(args.data):  # a chained update's window with no article: nothing to learn
        skip_unchanged(args, runtime)
        return
    data = PackedData.open(args.data / "train")
    # Without an accelerator, processes started by torchrun (`accelerate launch` with a
    # multi-process config) must be told they are CPU workers to use DDP over gloo.
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision,
                              cpu=cfg.cpu or not torch.cuda.is_available())
    check_launch(accelerator)
    set_seed(cfg.seed)
    world = accelerator.num_processes
    if args.replay_data and cfg.replay_fraction > 0 and len(PackedData.open(args.replay_data / "train")) == 0:
        # the first update of a chain has no earlier window to replay: its replay pool is empty
        log.warning("replay data %s is empty: training without replay", args.replay_data)
        cfg = replace(cfg, replay_fraction=0.0)
    cfg = cfg.resolve(len(data), world)  # this run's steps and warmup
    per_step, new_per_step = cfg.sequences_per_step(world), cfg.sequences_per_step(world, new_only=True)
    replay = PackedData.open(args.replay_data / "train") if args.replay_data else None
    if cfg.replay_fraction > 0 and replay is None:
        raise SystemExit("cpt.train.replay_fraction > 0 needs --replay-data (a packed directory)")
    fp = fingerprint(args.model, args.data, cfg, world)
    prepare_ckpt_dir(args.ckpt_dir, fp, accelerator.is_main_process)
    accelerator.wait_for_everyone()

    src_dtype = source_dtype(args.model)
    save_dtype = src_dtype if cfg.save_dtype == "auto" else cfg.save_dtype
    if not isinstance(getattr(torch, save_dtype, None), torch.dtype):  # fail now, not after training
        raise SystemExit(f"cannot save in dtype {save_dtype!r} (from {args.model}/config.json); "
                         "set cpt.train.save_dtype")
    # Master weights in float32 whatever the source dtype (a bf16 or fp16 model is upcast
    # exactly, so training starts from the very same weights): AdamW moves a weight by about
    # the LR per step, and half a bf16 ulp is |w|/512 to |w|/256, so at the paper's lr 1e-5
    # bf16 parameters would round away every update of a weight larger than ~0.004 -- most
    # of them -- and training would silently stall. Under mixed_precision: bf16 the compute
    # still runs in bf16 (autocast); only the saved model is cast, once, to save_dtype.
    model = load_causal_lm(args.model, dtype=torch.float32, trust_remote_code=cfg.trust_remote_code)
    n_params = sum(p.numel() for p in model.parameters())
    n_embed = model.get_input_embeddings().weight.numel()
    log.info("cpt %s: %s (%d params, %s, saved as %s) on %d sequences x %d tokens; %d steps of "
             "%d tokens; lr %g", args.variant, args.model, n_params, src_dtype, save_dtype, len(data),
             data.seq_len, cfg.steps, per_step * data.seq_len, cfg.lr)

    live = None
    if args.live_dir is not None and accelerator.is_main_process:
        from dvclive import Live

        live = Live(str(args.live_dir), dvcyaml=None, save_dvc_exp=False, report=None,
                    resume=any(args.ckpt_dir.glob("step-*")))

    def on_step(s: dict) -> None:
        if args.stop_after is not None and s["step"] >= args.stop_after:
            raise SystemExit(f"--stop-after {args.stop_after}: stopping (simulated crash)")
        if live is not None:
            live.step = s["step"]  # before logging: the metrics of step n are plotted at n
            for key in ("loss", "lr", "grad_norm", "tokens_per_s"):
                live.log_metric(f"train/{key}", s[key], plot=True)
            live.next_step()

    stats = train(model, data, cfg, accelerator, ckpt_dir=args.ckpt_dir, replay=replay, on_step=on_step,
                  progress_desc=f"cpt {args.variant}")
    save_final(accelerator, model, args.model, args.out, save_dtype)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if live is not None:
            live.end()
        losses = stats.pop("losses")
        tokens = stats["tokens_seen"]
        write_json(args.metrics, {
            "variant": args.variant, "lr": cfg.lr, "num_processes": world,
            "distributed_type": str(accelerator.distributed_type.value),
            "source_dtype": src_dtype, "master_dtype": "float32", "saved_dtype": save_dtype,
            "parameters": n_params, "non_embedding_parameters": n_params - n_embed,
            "flops": 6 * n_params * tokens, "new_tokens_seen": cfg.steps * new_per_step * data.seq_len,
            "loss_decreased": bool(losses[-1] < losses[0]),
            **stats, "runtime": runtime,
        })
        shutil.rmtree(args.ckpt_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
