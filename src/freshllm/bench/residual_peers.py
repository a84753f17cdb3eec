"""How the residual benchmark runs each tool: a child process per run (wall time and peak RSS
measured from outside), the plain-copy baseline, and the peers (`residuals`, mergekit) in their
own venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

MiB = 2**20
ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false",
       "TQDM_DISABLE": "1"}


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
