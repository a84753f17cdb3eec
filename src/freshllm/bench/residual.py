"""Residual apply vs the `residuals` package, mergekit task_arithmetic and a plain copy.

    python -m freshllm.bench.residual [--small] [--peer-python ../peers-venv/bin/python]
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
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

MiB = 2**20
GB = 1e9
SMALL = dict(layers=2, hidden=512, intermediate=1536, heads=8, kv_heads=4, vocab=32000, shard_size="64MB")
ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false",
       "TQDM_DISABLE": "1"}


# --------------------------------------------------------------------------- the model triple

def llama_specs(a) -> list:
    """Tensor specs of a tied-embedding LlamaForCausalLM in HF's state-dict order (bf16)."""
    import torch

    from freshllm.io.st_stream import TensorSpec

    head = a.hidden // a.heads
    kv = a.kv_heads * head
    bf = torch.bfloat16
    specs = [TensorSpec("model.embed_tokens.weight", bf, (a.vocab, a.hidden))]
    for i in range(a.layers):
        p = f"model.layers.{i}."
        specs += [TensorSpec(p + "self_attn.q_proj.weight", bf, (a.hidden, a.hidden)),
                  TensorSpec(p + "self_attn.k_proj.weight", bf, (kv, a.hidden)),
                  TensorSpec(p + "self_attn.v_proj.weight", bf, (kv, a.hidden)),
                  TensorSpec(p + "self_attn.o_proj.weight", bf, (a.hidden, a.hidden)),
                  TensorSpec(p + "mlp.gate_proj.weight", bf, (a.intermediate, a.hidden)),
                  TensorSpec(p + "mlp.up_proj.weight", bf, (a.intermediate, a.hidden)),
                  TensorSpec(p + "mlp.down_proj.weight", bf, (a.hidden, a.intermediate)),
                  TensorSpec(p + "input_layernorm.weight", bf, (a.hidden,)),
                  TensorSpec(p + "post_attention_layernorm.weight", bf, (a.hidden,))]
    specs.append(TensorSpec("model.norm.weight", bf, (a.hidden,)))
    return specs


def write_config_and_tokenizer(out: Path, a) -> None:
    """config.json + a word-level tokenizer with exactly ``vocab`` entries (so that the
    ``residuals`` package, which resizes embeddings to its tokenizer, changes nothing)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
                      num_hidden_layers=a.layers, num_attention_heads=a.heads,
                      num_key_value_heads=a.kv_heads, max_position_embeddings=4096,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=3,
                      rope_theta=500000.0)
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.dtype = "bfloat16"
    cfg.save_pretrained(str(out))
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab = {t: i for i, t in enumerate(specials + [f"w{i}" for i in range(len(specials), a.vocab)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            pad_token="<pad>").save_pretrained(str(out))


def build_triple(root: Path, a, seed: int = 0) -> dict[str, Path]:
    """base, instruct = base + d_i, cpt = base + d_c; one tensor in memory at a time."""
    import torch

    from freshllm.config import parse_bytes
    from freshllm.io.st_stream import ShardedWriter

    specs = llama_specs(a)
    dirs = {k: root / k for k in ("base", "instruct", "cpt")}
    writers = {k: ShardedWriter(d, specs, parse_bytes(a.shard_size)) for k, d in dirs.items()}
    gen = torch.Generator().manual_seed(seed)
    bf = torch.bfloat16
    for spec in specs:
        base = torch.empty(spec.shape, dtype=bf).uniform_(-0.035, 0.035, generator=gen)
        if len(spec.shape) == 1:
            base += 1.0
        writers["base"].write(spec.name, base)
        for k in ("instruct", "cpt"):
            t = torch.empty(spec.shape, dtype=bf).uniform_(-0.003, 0.003, generator=gen)
            t += base
            writers[k].write(spec.name, t)
            del t
        del base
    for k, w in writers.items():
        w.close()
        write_config_and_tokenizer(dirs[k], a)
    return dirs


def shards(d: Path) -> list[Path]:
    return sorted(d.glob("*.safetensors"))


def nbytes(paths) -> int:
    return sum(p.stat().st_size for p in paths)


def dir_bytes(d: Path) -> int:
    return nbytes(shards(d))


# --------------------------------------------------------------------------- running children

def warm(paths) -> None:
    """Read files once so the timed run finds them in the page cache (like every other run)."""
    buf = bytearray(16 * MiB)
    for p in paths:
        with open(p, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


# A tiny launcher (``python -S``, standard library only) forks and execs the command and
# reports the child's wall time and peak RSS from ``wait4``, plus the peaks of its
# anonymous and file-backed (mmapped) resident memory sampled every 20 ms. Spawning from
# the benchmark process itself would not do: the child's peak RSS would include this
# (large) process's memory, inherited at fork before exec.
LAUNCHER = textwrap.dedent("""
    import json, os, sys, time
    out, cmd = sys.argv[1], sys.argv[2:]
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    peak = {"RssAnon:": 0, "RssFile:": 0}
    while True:
        done, status, ru = os.wait4(pid, os.WNOHANG)
        if done:
            break
        try:  # sampled every 20 ms: anonymous memory vs mapped file pages
            for line in open(f"/proc/{pid}/status"):
                k = line.split(":")[0] + ":"
                if k in peak:
                    peak[k] = max(peak[k], int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - t
    with open(out, "w") as fh:
        json.dump({"wall_s": wall, "rss_mib": ru.ru_maxrss / 1024, "rc": os.waitstatus_to_exitcode(status),
                   "anon_mib": peak["RssAnon:"] / 1024, "file_mib": peak["RssFile:"] / 1024}, fh)
""")


def run_child(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` (through LAUNCHER); wall time, peak RSS, exit code; then sync (untimed)."""
    full_env = {**os.environ, **ENV, **(env or {})}
    stats = log.with_suffix(".json")
    with open(log, "wb") as fh:
        subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(stats), *cmd], stdout=fh,
                       stderr=subprocess.STDOUT, env=full_env, check=True)
    res = json.loads(stats.read_text())
    t = time.perf_counter()
    os.sync()
    res.update(sync_s=time.perf_counter() - t, log=str(log))
    if res["rc"] != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-6:]
        res["error"] = f"exit {res['rc']}" + ("" if res["rc"] > 0 else " (killed by signal; out of memory?)") \
            + ": " + " | ".join(tail)
    return res


def best_of(runs: list[dict]) -> dict:
    """The fastest of repeated runs, with the largest peak memory of any (all walls kept)."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    best = dict(min(runs, key=lambda r: r["wall_s"]))
    for k in ("rss_mib", "anon_mib", "file_mib"):
        best[k] = max(r[k] for r in runs)
    best["walls_s"] = [r["wall_s"] for r in runs]
    return best


# Plain copy, run as ``python -S -c COPY_CHILD JOB`` (no imports beyond the standard
# library): ``write`` files are copied into ``out`` (8 MiB reads and writes), ``read`` files
# are only read.
COPY_CHILD = textwrap.dedent("""
    import json, os, sys
    job = json.loads(sys.argv[1])
    os.makedirs(job["out"], exist_ok=True)
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    for src in job["read"]:
        with open(src, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass
    for src in job["write"]:
        dst = os.path.join(job["out"], os.path.basename(src))
        with open(src, "rb", buffering=0) as fi, open(dst, "wb", buffering=0) as fo:
            while n := fi.readinto(buf):
                fo.write(view[:n])
""")


RESIDUALS_DRIVER = textwrap.dedent("""
    import sys
    from residuals import Residuals
    step, a, b, out = sys.argv[1:5]
    if step == "extract":   # both full models, float32 (the package's default)
        res = Residuals.from_models(a, b, instruct_tokenizer_name=b)
        res.save_pretrained(out)
    else:                   # target model + stored residuals, float32; saves the model
        Residuals.apply_to_pretrained(a, b, out_dir=out)
""")

MERGEKIT_CONFIG = """\
merge_method: task_arithmetic
base_model: {base}
models:
  - model: {cpt}
    parameters:
      weight: 1.0
  - model: {instruct}
    parameters:
      weight: 1.0
parameters:
  normalize: false
dtype: bfloat16
"""


def mem_available() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peer_check(peer_python: str | None, module: str) -> str | None:
    """None when ``module`` imports under ``peer_python``, else why not."""
    if not peer_python:
        return "no --peer-python given (nor $FRESHLLM_PEER_PYTHON)"
    if not Path(peer_python).exists():
        return f"{peer_python} does not exist"
    r = subprocess.run([peer_python, "-c", f"import {module}"], capture_output=True, text=True,
                       env={**os.environ, **ENV})
    if r.returncode:
        return f"`import {module}` fails under {peer_python}: {r.stderr.strip().splitlines()[-1:]}"
    return None


# --------------------------------------------------------------------------- checking outputs

def compare(dirs: dict[str, Path], outputs: dict[str, Path]) -> dict[str, dict]:
    """Max abs diff of each output vs the float32 reference cpt + instruct - base, and of
    each pair of outputs, all rounded to bf16 (the models' dtype; the `residuals` package
    writes float32). Streams tensor by tensor."""
    import torch

    from freshllm.io.st_stream import ShardedReader

    rd = {k: ShardedReader(v) for k, v in dirs.items()}
    outs = {k: ShardedReader(v) for k, v in outputs.items()}
    keys = list(outs)
    diff = {f"{k} vs reference": 0.0 for k in keys}
    diff.update({f"{a} vs {b}": 0.0 for i, a in enumerate(keys) for b in keys[i + 1:]})
    missing = {k: [] for k in keys}
    for name in rd["base"].specs:
        ref = (rd["cpt"].get(name).float() + rd["instruct"].get(name).float()
               - rd["base"].get(name).float()).to(torch.bfloat16).float()
        got = {}
        for k, r in outs.items():
            if name not in r.specs:
                missing[k].append(name)
                continue
            got[k] = r.get(name).to(torch.bfloat16).float()  # the models' dtype
            diff[f"{k} vs reference"] = max(diff[f"{k} vs reference"], float((got[k] - ref).abs().max()))
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                if a in got and b in got:
                    diff[f"{a} vs {b}"] = max(diff[f"{a} vs {b}"], float((got[a] - got[b]).abs().max()))
        del ref, got
    return {"max_abs_diff": diff, "missing": {k: v for k, v in missing.items() if v}}


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
    n_params = sum(_numel(s.shape) for s in specs)
    largest = max(s.nbytes for s in specs)
    print(f"model: Llama, {args.layers} layers, hidden {args.hidden}, intermediate {args.intermediate}, "
          f"vocab {args.vocab}, tied embeddings: {n_params / 1e9:.3f} B parameters, bf16, "
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
            print(f"  time, ours / mergekit: apply {ap_['wall_s'] / mk:.2f} ({verdict(ap_['wall_s'] <= mk)}), "
                  f"extract+apply {t_all / mk:.2f} ({verdict(t_all <= mk)})  (goal <= 1.0); "
                  f"memory mergekit / ours apply {results['mergekit']['rss_mib'] / ap_['rss_mib']:.1f}x")
        else:
            print(f"  time vs mergekit: not measured ({why_not.get('mergekit', '?')})")
        if copy_apply and "error" not in copy_apply:
            x = ap_["wall_s"] / copy_apply["wall_s"]
            print(f"  ours apply / copy of the same bytes ({copy_apply['wall_s']:.1f} s): {x:.2f}x "
                  f"(goal <= 1.3x): {verdict(x <= 1.3)}")
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


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    main()
