"""Each CPU stage's wall time alone and beside one busy process, under the project's thread
policy and under torch's defaults.

    python -m freshllm.bench.threads --project DIR [--stages models,cpt,eval] [--repeats 1]
    python -m freshllm.bench.threads --project DIR --pipelines   # + two `dvc repro -f` at once

``DIR`` is a project on the default profile after ``dvc repro`` (the stages read its models,
packed data and held-out text; outputs go to a temp directory). Each stage runs its real
command (``python -m freshllm.<stage>``), shrunk where it is long (pre-training and SFT steps
of ``models``), in a fresh process:

* ``policy``: the project's (``runtime.threads: auto``, ``FRESHLLM_OMP_WAIT=auto``: a short
  spin when the machine is idle at the stage's start, a passive wait beside a busy process);
* ``torch``: torch's own defaults (``FRESHLLM_OMP_WAIT=torch``: libgomp's long spin);

each alone, then beside a neighbour (a process busy on one core, started first). Printed: the
seconds of each run and the ratio beside/alone (the goal: <= 1.5 under the policy). With
``--pipelines``: the default ``dvc repro -f`` alone, then two at once (the project and a copy
of it), and their ratio (goal <= 1.5). All runs are made here, in this process's order; run
it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLICIES = {"policy": "auto", "torch": "torch"}


def stage_commands(project: Path, work: Path, params: Path) -> dict[str, list[str]]:
    py = [sys.executable, "-m"]
    fresh = project / "data/eval_text/fresh.jsonl"
    return {
        "models": py + ["freshllm.models", "--params", str(params), "--family", "toy",
                        "--base-out", str(work / "m-base"), "--instruct-out", str(work / "m-instruct"),
                        "--metrics", str(work / "models.json")],
        "cpt": py + ["freshllm.cpt", "--params", str(params), "--variant", "base",
                     "--model", str(project / "models/toy/base"), "--data", str(project / "data/packed/200K"),
                     "--out", str(work / "cpt"), "--metrics", str(work / "cpt.json"),
                     "--ckpt-dir", str(work / "cpt-ckpt")],
        "eval": py + ["freshllm.eval", "--params", str(params), "--model", str(project / "models/toy/instruct"),
                      "--kind", "instruct", "--family", "toy", "--out", str(work / "eval.json"),
                      "--samples", str(work / "eval.jsonl"), "--fresh-text", str(fresh)],
    }


def shrunk_params(project: Path, out: Path, pretrain_steps: int, sft_steps: int) -> Path:
    from dataclasses import asdict

    from freshllm.config import read_params
    from freshllm.models import ModelsConfig

    data = read_params(project / "params.yaml")
    for fam in data.get("models", {}).values():
        if isinstance(fam, dict) and fam.get("source") == "local":
            for phase, steps in (("pretrain", pretrain_steps), ("sft", sft_steps)):
                loop = fam.get(phase) or asdict(getattr(ModelsConfig, phase))  # absent: the default loop
                fam[phase] = {**loop, "steps": steps}
    out.write_text(json.dumps(data))  # JSON is YAML
    return out


def busy_neighbour() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(1.0)  # running before the stage starts
    return proc


def timed(cmd: list[str], env: dict, cwd: Path, log: Path) -> float:
    start = time.perf_counter()
    with open(log, "ab") as fh:
        subprocess.run(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def clean(work: Path) -> None:
    for p in work.iterdir():
        if p.name != "log.txt":
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def run_stages(project: Path, stages: list[str], repeats: int, pretrain_steps: int, sft_steps: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        tmp = Path(tmp)
        work = tmp / "work"
        work.mkdir()
        params = shrunk_params(project, tmp / "params.json", pretrain_steps, sft_steps)
        cmds = stage_commands(project, work, params)
        for stage in stages:
            for name, mode in POLICIES.items():
                env = {k: v for k, v in os.environ.items()
                       if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
                env["FRESHLLM_OMP_WAIT"] = mode
                row = {"stage": stage, "policy": name}
                for where in ("alone", "beside"):
                    times = []
                    for _ in range(repeats):
                        clean(work)
                        nb = busy_neighbour() if where == "beside" else None
                        try:
                            times.append(timed(cmds[stage], env, project, work / "log.txt"))
                        finally:
                            if nb is not None:
                                nb.kill()
                                nb.wait()
                    row[where] = min(times)
                row["ratio"] = row["beside"] / row["alone"]
                rt = json.loads((work / f"{stage}.json").read_text()).get("runtime", {})
                row["threads"], row["omp_wait"] = rt.get("threads"), rt.get("omp_wait")
                rows.append(row)
                print(f"{stage:7s} {name:7s} alone {row['alone']:7.1f} s  beside {row['beside']:7.1f} s  "
                      f"ratio {row['ratio']:5.2f}  (threads {row['threads']}, wait {row['omp_wait']} beside)",
                      flush=True)
    return rows


def run_pipelines(project: Path, twin: Path | None = None) -> dict:
    """``dvc repro -f`` of ``project`` alone, then it and ``twin`` (another copy of the project,
    by default a fresh clone reproduced first) at once."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with tempfile.TemporaryDirectory(prefix="bench-pipelines-") as tmp:
        if twin is None:
            twin = Path(tmp) / "twin"
            subprocess.run(["git", "clone", "-q", str(project), str(twin)], check=True)
            subprocess.run(["dvc", "repro", "-q"], cwd=twin, env=env, check=True)  # its outputs exist too
        alone = timed(["dvc", "repro", "-f", "-q"], env, project, Path(tmp) / "log.txt")
        print(f"dvc repro -f alone: {alone:.1f} s", flush=True)
        start = time.perf_counter()
        procs = [subprocess.Popen(["dvc", "repro", "-f", "-q"], cwd=d, env=env) for d in (project, twin)]
        ends = []
        for p in procs:
            if p.wait() != 0:
                raise SystemExit("a dvc repro failed")
            ends.append(time.perf_counter() - start)
    res = {"alone_s": alone, "together_s": max(ends), "ratio": max(ends) / alone}
    print(f"dvc repro -f, two at once: {max(ends):.1f} s; ratio {res['ratio']:.2f} (goal <= 1.5)", flush=True)
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m freshllm.bench.threads", description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True, help="a project after `dvc repro` on the default profile")
    ap.add_argument("--stages", default="models,cpt,eval")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each; the fastest is kept")
    ap.add_argument("--pretrain-steps", type=int, default=60)
    ap.add_argument("--sft-steps", type=int, default=20)
    ap.add_argument("--pipelines", action="store_true", help="also two `dvc repro -f` at once vs one")
    ap.add_argument("--twin", type=Path, default=None,
                    help="with --pipelines: another copy of the project after `dvc repro` (default: a fresh clone, reproduced)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    project = args.project.resolve()
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - {"models", "cpt", "eval"}
    if unknown:
        raise SystemExit(f"unknown stage(s) {sorted(unknown)}: models, cpt, eval")
    if not (project / "models/toy/instruct").is_dir():
        raise SystemExit(f"{project}: no models/toy/instruct; run `dvc repro` on the default profile there first")
    res = {"cpu_count": os.cpu_count(), "stages": run_stages(project, stages, args.repeats,
                                                              args.pretrain_steps, args.sft_steps) if stages else []}
    if args.pipelines:
        res["pipelines"] = run_pipelines(project, args.twin.resolve() if args.twin else None)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
