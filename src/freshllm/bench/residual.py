"""Residual apply vs the `residuals` package, mergekit task_arithmetic and a plain copy.

    python -m freshllm.bench.residual [--small | --llama3-8b [--layers 16]] [--peer-python ../peers-venv/bin/python]
        [--layers 16 --hidden 2048 --intermediate 8192 --heads 32 --kv-heads 8 --vocab 128256]
        [--residual-dtype float32] [--shard-size 1GB] [--workdir DIR] [--keep] [--no-check]
        [--skip residuals,mergekit]

Builds a random Llama triple on disk (base, instruct = base + d_i, cpt_base = base + d_c;
bf16, sharded safetensors in HF's layout; default shape: Llama-3.2-1B, 1.24B parameters,
2.5 GB a model), then runs, each in its own subprocess, timed (wall) with its peak RSS
(``os.wait4`` of that child):

* ours: ``python -m freshllm.residual extract`` (once), then ``apply`` to cpt_base;
* the PyPI ``residuals`` package (``Residuals.from_models`` + ``save_pretrained``, then
  ``Residuals.apply_to_pretrained``; full models in float32, its defaults);
* mergekit ``task_arithmetic`` (base_model: base; cpt_base and instruct at weight 1.0,
  normalize false, dtype bfloat16; ``mergekit-yaml --lazy-unpickle``, CPU);
* a plain copy of the same bytes (read the inputs, write an output of the same size): the
  I/O baseline, once for apply's inputs (R + cpt_base) and once for a one-shot merge's
  (base + instruct + cpt_base).

Our apply and the copies are short and noisy: each is run twice and the faster run is
reported (with the larger peak RSS of the two); extract and the peers run once.

Peers run from a separate venv (``--peer-python``, default ``$FRESHLLM_PEER_PYTHON``; make
it with ``python3 -m venv ../peers-venv && ../peers-venv/bin/pip install torch==2.13.0 &&
../peers-venv/bin/pip install residuals mergekit``); a peer that is missing, fails or would not fit in memory is reported and
skipped. The page cache cannot be dropped: every run is preceded by a warm-up read of its
inputs and followed by an (untimed) ``sync``, so all tools read from a warm cache and
start with no dirty pages: caching applies equally. Outputs are checked against a float32
reference ``cpt_base + instruct - base`` and against each other (max abs diff).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from .residual_triple import (build_triple, compare, dir_bytes, llama_specs, nbytes,  # noqa: F401
                              shards, warm, write_config_and_tokenizer)
from .residual_peers import (ENV, COPY_CHILD, LAUNCHER, MERGEKIT_CONFIG, RESIDUALS_DRIVER, best_of,  # noqa: F401
                             mem_available, peer_check, run_child)

MiB = 2**20
GB = 1e9
SMALL = dict(layers=2, hidden=512, intermediate=1536, heads=8, kv_heads=4, vocab=32000, shard_size="64MB")
# Meta-Llama-3-8B: every tensor at its shape, untied head, ~5 GB shards like the hub's 4
LLAMA3_8B = dict(layers=32, hidden=4096, intermediate=14336, heads=32, kv_heads=8, vocab=128256,
                 shard_size="5GB", untied=True)


# --------------------------------------------------------------------------- the model triple


# --------------------------------------------------------------------------- running children


# --------------------------------------------------------------------------- checking outputs


# --------------------------------------------------------------------------- main

def fmt_row(name: str, r: dict, read: int, written: int, copy_bps: float | None = None) -> str:
    if "error" in r:
        return f"  {name:<22} FAILED: {r['error']}"
    bps = (read + written) / r["wall_s"]
    rel = f"  {bps / copy_bps:5.2f}x copy" if copy_bps else ""
    runs = ("  (best of " + ", ".join(f"{w:.1f}" for w in r["walls_s"]) + " s)") if "walls_s" in r else ""
    return (f"  {name:<22} {r['wall_s']:7.1f} s {r['rss_mib']:7.0f} MiB ({r['anon_mib']:5.0f} anon, "
            f"{r['file_mib']:5.0f} file)  "
            f"read {read / GB:5.2f} GB  wrote {written / GB:5.2f} GB  {bps / GB:5.2f} GB/s{rel}{runs}")


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--intermediate", type=int, default=8192)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--shard-size", default="1GB", help="input model shard size (HF-style sharding)")
    ap.add_argument("--residual-dtype", default="float32", choices=["float32", "bfloat16"],
                    help="residual.dtype for ours (params.yaml default: float32)")
    ap.add_argument("--small", action="store_true", help="a 23M-parameter triple (seconds)")
    ap.add_argument("--llama3-8b", action="store_true",
                    help="Meta-Llama-3-8B's shapes (untied, 5 GB shards, 16 GB a model); an explicit --layers "
                         "keeps every tensor's shape but fewer layers (disk: ~7 models' bytes at the peak)")
    ap.add_argument("--untied", action="store_true", help="a separate lm_head.weight (LLaMA 3 8B)")
    default_peer = os.environ.get("FRESHLLM_PEER_PYTHON")
    ap.add_argument("--peer-python", default=default_peer,
                    help="python of a venv with `residuals` and `mergekit` installed")
    ap.add_argument("--skip", default="", help="comma list of: residuals, mergekit")
    ap.add_argument("--workdir", default=None, help="where to build (default: a temp dir under $TMPDIR or /var/tmp); "
                    "removed at the end if this run created it, unless --keep")
    ap.add_argument("--keep", action="store_true", help="keep the workdir")
    ap.add_argument("--no-check", action="store_true",
                    help="skip comparing the outputs (a streaming pass over all of them: minutes at 1B)")
    args = ap.parse_args(argv)
    if args.small:
        for k, v in SMALL.items():
            setattr(args, k, v)
    if args.llama3_8b:
        given = {a.lstrip("-").split("=")[0].replace("-", "_") for a in (argv if argv is not None else sys.argv[1:])}
        for k, v in LLAMA3_8B.items():
            if k not in given:
                setattr(args, k, v)
    os.environ.update(ENV)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    if args.workdir:
        root = Path(args.workdir)
        created = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="bench-residual-", dir=os.environ.get("TMPDIR", "/var/tmp")))
        created = True
    try:
        return run_bench(args, root, skip)
    finally:
        if created and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")


def run_bench(args, root: Path, skip: set[str]) -> dict:
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(other processes on the machine skew timings)")
    from freshllm.config import parse_bytes

    specs = llama_specs(args)
    n_params = sum(s.numel for s in specs)
    largest = max(s.nbytes for s in specs)
    print(f"model: Llama, {args.layers} layers, hidden {args.hidden}, intermediate {args.intermediate}, "
          f"vocab {args.vocab}, {'untied head' if args.untied else 'tied embeddings'}: "
          f"{n_params / 1e9:.3f} B parameters, bf16, "
          f"{n_params * 2 / GB:.2f} GB; largest tensor {largest / MiB:.0f} MiB; shards of {args.shard_size}")
    print(f"workdir: {root}")
    t = time.perf_counter()
    dirs = build_triple(root, args)
    print(f"built base/instruct/cpt in {time.perf_counter() - t:.1f} s")
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    M = dir_bytes(dirs["base"])
    results: dict[str, dict] = {}
    io: dict[str, tuple[int, int]] = {}

    # ---- plain copies (I/O baselines)
    def copy(name: str, read: list[Path], write: list[Path]) -> None:
        out = root / f"out-{name}"
        warm(read + write)
        job = json.dumps({"out": str(out), "read": [str(p) for p in read], "write": [str(p) for p in write]})
        runs = []
        for _ in range(2):  # short and noisy: best of two
            runs.append(run_child([sys.executable, "-S", "-c", COPY_CHILD, job], logs / f"{name}.log"))
            shutil.rmtree(out, ignore_errors=True)
        results[name] = best_of(runs)
        io[name] = (nbytes(read + write), nbytes(write))
        shutil.rmtree(out, ignore_errors=True)

    # ---- ours
    params = root / "params.yaml"
    params.write_text(f"residual:\n  alpha: 1.0\n  dtype: {args.residual_dtype}\n"
                      f"  shard_size: \"{args.shard_size}\"\n", encoding="utf-8")
    ours = [sys.executable, "-m", "freshllm.residual", "--params", str(params)]
    res_dir, ours_out = root / "R-ours", root / "out-ours"
    warm(shards(dirs["base"]) + shards(dirs["instruct"]))
    results["ours extract"] = run_child(ours + ["extract", "--base", str(dirs["base"]), "--instruct",
                                                str(dirs["instruct"]), "--out", str(res_dir)],
                                        logs / "ours-extract.log")
    R = dir_bytes(res_dir) if res_dir.is_dir() else 0
    io["ours extract"] = (2 * M, R)
    outputs: dict[str, Path] = {}
    if "error" not in results["ours extract"]:
        runs = []
        for _ in range(2):  # short and noisy like the copies: best of two (peak RSS: the larger)
            shutil.rmtree(ours_out, ignore_errors=True)
            warm(shards(res_dir) + shards(dirs["cpt"]))
            metrics = root / "ours-apply.json"
            runs.append(run_child(ours + ["apply", "--residual", str(res_dir), "--target",
                                          str(dirs["cpt"]), "--out", str(ours_out), "--metrics", str(metrics)],
                                  logs / "ours-apply.log"))
            if "error" in runs[-1]:
                break
            runs[-1]["work_s"] = json.loads(metrics.read_text())["seconds"]
        results["ours apply"] = best_of(runs)
        io["ours apply"] = (R + M, M)
        if "error" not in results["ours apply"]:
            outputs["ours"] = ours_out
        copy("copy (apply's bytes)", shards(res_dir), shards(dirs["cpt"]))
    copy("copy (merge's bytes)", shards(dirs["base"]) + shards(dirs["instruct"]), shards(dirs["cpt"]))

    # ---- mergekit
    why_not: dict[str, str] = {}
    if "mergekit" in skip:
        why_not["mergekit"] = "skipped (--skip)"
    elif (why := peer_check(args.peer_python, "mergekit")) is not None:
        why_not["mergekit"] = why
    else:
        cfg = root / "mergekit.yml"
        cfg.write_text(MERGEKIT_CONFIG.format(**{k: str(v) for k, v in dirs.items()}), encoding="utf-8")
        exe = Path(args.peer_python).parent / "mergekit-yaml"
        per_shard = max(1, parse_bytes(args.shard_size) // 2)  # parameters per output shard (bf16)
        mk_out = root / "out-mergekit"
        warm(shards(dirs["base"]) + shards(dirs["instruct"]) + shards(dirs["cpt"]))
        results["mergekit"] = run_child(
            [str(exe), str(cfg), str(mk_out), "--lazy-unpickle", "--no-cuda", "--out-shard-size",
             str(per_shard), "--no-write-model-card", "--no-copy-tokenizer", "--quiet"],
            logs / "mergekit.log")
        io["mergekit"] = (3 * M, dir_bytes(mk_out) if mk_out.is_dir() else 0)
        if "error" in results["mergekit"]:
            why_not["mergekit"] = results.pop("mergekit")["error"]
        else:
            outputs["mergekit"] = mk_out

    # ---- residuals (PyPI)
    est = 3 * n_params * 4 + 1.5 * GB  # base + instruct + R in float32, plus the interpreter
    if "residuals" in skip:
        why_not["residuals"] = "skipped (--skip)"
    elif (why := peer_check(args.peer_python, "residuals")) is not None:
        why_not["residuals"] = why
    elif mem_available() and est > 0.95 * mem_available():
        why_not["residuals"] = (f"needs ~{est / GB:.1f} GB (three float32 copies of the model), "
                                f"only {mem_available() / GB:.1f} GB available")
    else:
        pr_dir, pr_out = root / "R-residuals", root / "out-residuals"
        warm(shards(dirs["base"]) + shards(dirs["instruct"]))
        results["residuals extract"] = run_child(
            [args.peer_python, "-c", RESIDUALS_DRIVER, "extract", str(dirs["base"]), str(dirs["instruct"]),
             str(pr_dir)], logs / "residuals-extract.log")
        io["residuals extract"] = (2 * M, dir_bytes(pr_dir) if pr_dir.is_dir() else 0)
        if "error" in results["residuals extract"]:
            why_not["residuals"] = results.pop("residuals extract")["error"]
        else:
            warm(shards(pr_dir) + shards(dirs["cpt"]))
            results["residuals apply"] = run_child(
                [args.peer_python, "-c", RESIDUALS_DRIVER, "apply", str(dirs["cpt"]), str(pr_dir),
                 str(pr_out)], logs / "residuals-apply.log")
            io["residuals apply"] = (io["residuals extract"][1] + M, dir_bytes(pr_out) if pr_out.is_dir() else 0)
            if "error" in results["residuals apply"]:
                why_not["residuals"] = "apply: " + results.pop("residuals apply")["error"]
            else:
                outputs["residuals"] = pr_out
            shutil.rmtree(pr_dir, ignore_errors=True)

    # ---- report
    copy_apply = results.get("copy (apply's bytes)")
    copy_merge = results["copy (merge's bytes)"]
    bps = {k: sum(io[k]) / r["wall_s"] for k, r in results.items() if "error" not in r and k.startswith("copy")}
    print(f"\ninput model size {M / GB:.2f} GB; residual (ours, {args.residual_dtype}) {R / GB:.2f} GB; "
          "each run after a warm-up read of its inputs, sync between runs (untimed)")
    print(f"  {'run':<22} {'wall':>9} {'peak RSS (sampled peaks: anonymous, mapped file)':>52}")
    for k, r in results.items():
        ref = (bps.get("copy (apply's bytes)") if k in ("ours apply",) else
               bps.get("copy (merge's bytes)") if k in ("mergekit",) else None)
        print(fmt_row(k, r, *io[k], copy_bps=ref))
    for k, why in why_not.items():
        print(f"  {k:<22} not run: {why}")

    print(f"load average now: {os.getloadavg()[0]:.1f}")
    ok = lambda k: k in results and "error" not in results[k]  # noqa: E731
    print("\ngoals:")
    if ok("ours apply"):
        ap_ = results["ours apply"]
        ours_peak = max(ap_["rss_mib"], results["ours extract"]["rss_mib"])
        limit = (2 * largest + 300 * MiB) / MiB
        anon = max(ap_["anon_mib"], results["ours extract"]["anon_mib"])
        print(f"  peak RSS, ours apply {ap_['rss_mib']:.0f} MiB (goal <= 1 GB at LLaMA-3-8B shapes: "
              f"{verdict(ap_['rss_mib'] * MiB <= GB)})")
        print(f"  peak RSS, ours apply {ap_['rss_mib']:.0f} MiB / extract {results['ours extract']['rss_mib']:.0f} MiB"
              f" vs 2 x largest tensor ({largest / MiB:.0f} MiB bf16) + 300 MB = {limit:.0f} MiB: "
              f"apply {verdict(ap_['rss_mib'] <= limit)}, extract {verdict(results['ours extract']['rss_mib'] <= limit)}"
              f"  (with the largest tensor in float32, {2 * largest / MiB:.0f} MiB: limit "
              f"{(4 * largest + 300 * MiB) / MiB:.0f} MiB)")
        print(f"  anonymous memory only (without mapped file pages), ours: apply {ap_['anon_mib']:.0f} MiB, "
              f"extract {results['ours extract']['anon_mib']:.0f} MiB: {verdict(anon <= limit)} "
              f"against the same {limit:.0f} MiB")
        if ok("residuals apply"):
            pr_peak = max(results["residuals apply"]["rss_mib"], results["residuals extract"]["rss_mib"])
            ratio_apply = results["residuals apply"]["rss_mib"] / ap_["rss_mib"]
            ratio_all = pr_peak / ours_peak
            print(f"  memory, residuals / ours: apply {ratio_apply:.1f}x, peak over extract+apply "
                  f"{ratio_all:.1f}x (goal >= 5x): {verdict(min(ratio_apply, ratio_all) >= 5)}")
            t_ours = ap_["wall_s"] + results["ours extract"]["wall_s"]
            t_pr = results["residuals apply"]["wall_s"] + results["residuals extract"]["wall_s"]
            print(f"  time, ours / residuals: apply {ap_['wall_s'] / results['residuals apply']['wall_s']:.2f}, "
                  f"extract+apply {t_ours / t_pr:.2f}")
        else:
            print(f"  memory vs residuals: not measured ({why_not.get('residuals', '?')})")
        if ok("mergekit"):
            mk = results["mergekit"]["wall_s"]
            t_all = ap_["wall_s"] + results["ours extract"]["wall_s"]
            print(f"  time, mergekit / ours apply: {mk / ap_['wall_s']:.2f}x faster (goal >= 2x: "
                  f"{verdict(mk >= 2 * ap_['wall_s'])}); mergekit / ours extract+apply {mk / t_all:.2f}x; "
                  f"memory mergekit / ours apply {results['mergekit']['rss_mib'] / ap_['rss_mib']:.1f}x")
        else:
            print(f"  time vs mergekit: not measured ({why_not.get('mergekit', '?')})")
        if copy_apply and "error" not in copy_apply:
            x = ap_["wall_s"] / copy_apply["wall_s"]
            print(f"  ours apply / copy of the same bytes ({copy_apply['wall_s']:.1f} s): {x:.2f}x "
                  f"(goal <= 1.5x): {verdict(x <= 1.5)}")
            if "work_s" in ap_:  # the same run without interpreter start-up and imports (~2 s of torch)
                print(f"  ours apply without start-up ({ap_['work_s']:.1f} s of {ap_['wall_s']:.1f} s) / copy: "
                      f"{ap_['work_s'] / copy_apply['wall_s']:.2f}x")
        if ok("mergekit"):
            print(f"  mergekit / copy of the same bytes ({copy_merge['wall_s']:.1f} s): "
                  f"{results['mergekit']['wall_s'] / copy_merge['wall_s']:.2f}x")
    else:
        print(f"  ours failed: {results.get('ours apply', results['ours extract']).get('error')}")

    if outputs and not args.no_check:
        t = time.perf_counter()
        cmp_ = compare(dirs, outputs)
        print(f"\noutputs vs float32 reference cpt + instruct - base (bf16-rounded), max abs diff "
              f"({time.perf_counter() - t:.0f} s):")
        for k, v in cmp_["max_abs_diff"].items():
            print(f"  {k:<30} {v:.3g}")
        for k, v in cmp_["missing"].items():
            print(f"  {k}: {len(v)} tensors missing from the output, e.g. {v[:2]}")
        if "mergekit" in outputs and "ours" in outputs:
            d = cmp_["max_abs_diff"]["ours vs mergekit"]
            print(f"  ours and mergekit agree to {d:.3g} (mergekit rounds instruct - base and the sum to "
                  "bf16, ours works in float32: one bf16 rounding step apart at most)")
        results["compare"] = cmp_
    return results


if __name__ == "__main__":
    main()
