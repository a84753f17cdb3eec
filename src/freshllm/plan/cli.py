"""``python -m freshllm.plan``: the cost of ``dvc repro`` before running it."""

from __future__ import annotations

import argparse
import json
import sys

from ..common import user_errors
from ..config import ConfigError
from .arch import PlanError
from .hardware import DEFAULT_GPU, GPUS, get_gpu


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m freshllm.plan",
        description="Plan a run: per DVC stage, parameters, tokens, FLOPs, disk, peak GPU memory per "
                    "process and time (offline, seconds). It reads the params file, dvc.yaml (the stages "
                    "and their outputs), the accelerate config the params name, .dvc/config (the cache's "
                    "link type) and, for models given as local directories, their config.json; no "
                    "weights, no data.")
    ap.add_argument("--params", default="params.yaml", help="params file (a profile, as params.yaml would be)")
    ap.add_argument("--dvc-yaml", default="dvc.yaml", help="the pipeline whose stages are planned")
    ap.add_argument("--json", action="store_true", help="one JSON object keyed by stage name (plus 'total')")
    ap.add_argument("--gpu", default=DEFAULT_GPU, help=f"one of {', '.join(GPUS)} (default {DEFAULT_GPU})")
    ap.add_argument("--tokens-per-s", type=_positive, default=None,
                    help="measured training throughput per GPU (else --mfu x the GPU's bf16 peak)")
    ap.add_argument("--mfu", type=_positive, default=None, help="model FLOPs utilisation (default 0.4)")
    args = ap.parse_args(argv)
    if args.mfu is not None and args.mfu > 1:
        ap.error(f"--mfu: must be in (0, 1], got {args.mfu}")
    with user_errors("plan", PlanError):
        from .render import report
        from .stages import make_plan

        plan = make_plan(args.params, args.dvc_yaml, get_gpu(args.gpu), args.mfu, args.tokens_per_s)
    if args.json:
        json.dump(plan, sys.stdout, indent=1, sort_keys=False)
        sys.stdout.write("\n")
    else:
        print(report(plan))


__all__ = ["main", "ConfigError"]
