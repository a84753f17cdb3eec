"""Command line: build stand-in snapshots and tokenizers.

    python -m freshllm.standins --model meta-llama/Meta-Llama-3-8B --out DIR \\
        [--shrink hidden=64,layers=2,intermediate=128,heads=4,kv_heads=2] [--seed 0] \\
        [--perturb-from BASE_DIR] [--eps 0.1] [--perturb-seed 0] [--shards N | --full]
    python -m freshllm.standins pair --base Qwen/Qwen2-1.5B --out-root DIR [--shrink ...]
    python -m freshllm.standins tokenizer --model Qwen/Qwen2.5-1.5B-Instruct --out DIR
    python -m freshllm.standins check-tokenizers
    python -m freshllm.standins list
    python -m freshllm.standins bench-configs   # rewrite the GPU benchmark's models.json

``build`` is the default command.  Without ``--shrink`` the stand-in has the real size
(16 GB for an 8B model), so that needs ``--full``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..common import setup_logging

_COMMANDS = ("build", "pair", "tokenizer", "check-tokenizers", "list", "bench-configs")


def _shrink_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shrink", default=None,
                   help="depth/width overrides, e.g. hidden=64,layers=2,intermediate=128,"
                        "heads=4,kv_heads=2 (vocab, tying, biases, rope scaling stay real)")
    p.add_argument("--seed", type=int, default=0, help="seed of the base weights")
    p.add_argument("--eps", type=float, default=None, help="perturbation size (default 0.1)")
    p.add_argument("--perturb-seed", type=int, default=0)
    p.add_argument("--shards", type=int, default=None,
                   help="number of safetensors shards (default: the hub's)")
    p.add_argument("--full", action="store_true",
                   help="allow a real-size stand-in (no --shrink)")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m freshllm.standins", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="one stand-in snapshot directory")
    b.add_argument("--model", required=True, help="hub model id, e.g. meta-llama/Meta-Llama-3-8B")
    b.add_argument("--out", required=True)
    b.add_argument("--perturb-from", default=None,
                   help="stand-in directory to perturb (instruct = base + eps*N(0,1))")
    _shrink_args(b)
    p = sub.add_parser("pair", help="a base stand-in and its -Instruct (perturbed base)")
    p.add_argument("--base", required=True)
    p.add_argument("--out-root", required=True)
    _shrink_args(p)
    t = sub.add_parser("tokenizer", help="only the tokenizer files of a model")
    t.add_argument("--model", required=True)
    t.add_argument("--out", required=True)
    sub.add_parser("check-tokenizers", help="compare with llama.cpp's expected ids")
    sub.add_parser("list", help="known model ids with their parameter counts")
    sub.add_parser("bench-configs", help="rewrite the GPU benchmark's models.json from these hub configs "
                                         "(its models and tiny shrink as listed there)")
    return ap


def _check_size(args) -> None:
    if args.shrink is None and not args.full and not getattr(args, "perturb_from", None):
        sys.exit("error: no --shrink given: that would be a real-size stand-in; pass --full "
                 "to really write it")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in _COMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "build")
    args = _parser().parse_args(argv)
    setup_logging()
    logging.getLogger("freshllm").setLevel(logging.INFO)

    if args.cmd == "list":
        from .architectures import get_arch, list_models
        for mid in list_models():
            a = get_arch(mid)
            print(f"{mid:40s} {a.params / 1e9:6.3f}B  {a.n_shards} file(s)  {a.version}")
        return 0
    if args.cmd == "bench-configs":
        from ..common import atomic_file
        from .architectures import BENCH_GPU_MODELS, bench_gpu_models
        new = bench_gpu_models(json.loads(BENCH_GPU_MODELS.read_text(encoding="utf-8")))
        with atomic_file(BENCH_GPU_MODELS, "w", encoding="utf-8") as fh:  # in priority order: not sorted
            fh.write(json.dumps(new, indent=2) + "\n")
        print(BENCH_GPU_MODELS)
        return 0
    if args.cmd == "check-tokenizers":
        from .tokenizers import check_against_llamacpp
        ok = True
        for fam in ("llama3", "qwen2"):
            matched, total, bad = check_against_llamacpp(fam)
            print(f"{fam}: {matched}/{total} llama.cpp test strings match")
            for m in bad:
                print(f"  {m['text']!r}: expected {m['expected']} got {m['got']}")
            ok &= matched == total
        return 0 if ok else 1
    if args.cmd == "tokenizer":
        from .tokenizers import save_tokenizer, write_generation_config
        written = save_tokenizer(args.model, args.out)
        written.append(write_generation_config(args.model, args.out))
        print("\n".join(map(str, written)))
        return 0

    from .snapshots import DEFAULT_EPS, build_family_pair, build_standin
    _check_size(args)
    eps = DEFAULT_EPS if args.eps is None else args.eps
    if args.cmd == "build":
        out = build_standin(args.model, args.out, shrink=args.shrink, seed=args.seed,
                            perturb_of=args.perturb_from, eps=eps,
                            perturb_seed=args.perturb_seed, shards=args.shards)
        print(out)
    else:
        pair = build_family_pair(args.base, args.out_root, shrink=args.shrink, seed=args.seed,
                                 eps=eps, perturb_seed=args.perturb_seed, shards=args.shards)
        print(json.dumps({k: str(v) for k, v in pair.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
