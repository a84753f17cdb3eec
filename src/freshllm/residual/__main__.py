"""``python -m freshllm.residual {extract,apply}``: the commands of the two stages."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ..common import set_offline, setup_logging, use_runtime, write_json
from ..config import ConfigError, load_section
from ..io.st_stream import SafetensorsFormatError
from . import __doc__ as package_doc
from .apply import apply
from .config import ResidualConfig, ResidualError
from .extract import extract
from .merges import get_merge

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m freshllm.residual", description=package_doc.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("extract", help="R = instruct - base")
    ex.add_argument("--base", required=True, type=Path)
    ex.add_argument("--instruct", required=True, type=Path)
    ex.add_argument("--out", required=True, type=Path)
    ex.add_argument("--metrics", type=Path, default=None)
    apx = sub.add_parser("apply", help="new = target + alpha * R")
    apx.add_argument("--residual", required=True, type=Path)
    apx.add_argument("--target", required=True, type=Path)
    apx.add_argument("--out", required=True, type=Path)
    apx.add_argument("--base", type=Path, default=None,
                     help="the residual's base model, for the target-vs-base cosine report and "
                          "residual.layer_scale: cpt_change")
    apx.add_argument("--metrics", type=Path, default=None)
    apx.add_argument("--merge", default=None, metavar="NAME",
                     help="apply the setting merges.NAME (overrides over the residual section)")
    for p in (ex, apx):
        p.add_argument("--params", dest="params_sub", default=None)
    args = ap.parse_args(argv)
    setup_logging()
    set_offline()
    try:  # a user error (its message names the file, tensor or path): that line, no traceback
        params = args.params_sub or args.params
        if args.cmd == "apply" and args.merge is not None:
            cfg = get_merge(params, args.merge)
        else:
            cfg = load_section(ResidualConfig, "residual", params)
        runtime = use_runtime(params)
        start = time.perf_counter()
        if args.cmd == "extract":
            stats = extract(args.base, args.instruct, args.out, cfg)
        else:
            stats = apply(args.residual, args.target, args.out, cfg, base_dir=args.base)
    except (ResidualError, SafetensorsFormatError, ConfigError, FileNotFoundError) as exc:
        print(f"residual: {exc}", file=sys.stderr)
        sys.exit(1)
    stats["seconds"] = round(time.perf_counter() - start, 3)  # the work, without start-up and imports
    stats["config"] = asdict(cfg)
    stats["runtime"] = runtime
    if getattr(args, "merge", None) is not None:
        stats["merge"] = args.merge
    if args.metrics:
        write_json(args.metrics, stats)
    log.info("%s done: %s", args.cmd, {k: v for k, v in stats.items() if k != "config"})


if __name__ == "__main__":
    main()
