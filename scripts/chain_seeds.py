"""The chain evidence over seeds: reads `dvc exp show --json` (experiments of the chain profile)
and prints, per replay share, the mean ± standard error over seeds of each step's instruction
following and of the last step's knowledge of every window (metrics/chain/compare.json).

    python scripts/chain_seeds.py chain-exps.json
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict


def experiments(shown: list) -> list[tuple[dict, dict]]:
    """(params, compare.json) of every experiment with the chain's metrics."""
    out = []
    for entry in shown:
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
                metrics = ((data.get("metrics") or {}).get("metrics/chain/compare.json") or {}).get("data")
                if metrics:
                    out.append((params, metrics))
    return out


def mean_se(xs: list[float], digits: int = 2) -> str:
    if not xs:
        return "–"
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return f"{m:.{digits}f}"
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    return f"{m:.{digits}f} ± {sd / math.sqrt(len(xs)):.{digits}f}"


def main(path: str) -> None:
    groups: dict[float, list[dict]] = defaultdict(list)
    windows: list[str] = []
    for params, metrics in experiments(json.load(open(path))):
        groups[params["chain"]["cpt"]["train"]["replay_fraction"]].append(metrics)
        windows = windows or list(params["updates"])
    steps = ["ancestor", *windows]
    print("Chained updates over training seeds (mean ± standard error over seeds; x100 for scores).\n")
    for replay, runs in sorted(groups.items()):
        print(f"### replay share {replay:g} ({len(runs)} seeds)\n")
        print("| step | IFEval, cpt-base + residual | IFEval, cpt-instruct (Setting 1) | bpb, windows so far, + residual "
              "| d2 quiz, windows so far, + residual | promoted |")
        print("|---|---:|---:|---:|---:|---|")
        for i, step in enumerate(steps):
            def vals(key, model, scale=1.0):
                return [r["step"][f"{step}.{key}.{model}"] * scale for r in runs if f"{step}.{key}.{model}" in r["step"]]

            promoted = sum(bool(r["promoted"].get(step)) for r in runs)
            print(f"| {step} | {mean_se(vals('ifeval', 'cpt-base-res'))} | {mean_se(vals('ifeval', 'cpt-instruct'))} | "
                  f"{mean_se(vals('bpb_mean', 'cpt-base-res'), 4) if i else '–'} | "
                  f"{mean_se(vals('quiz_mean', 'cpt-base-res', 100.0)) if i else '–'} | {promoted}/{len(runs)} |")
        print(f"\nAfter the last update ({windows[-1]}), each window's held-out news and events:\n")
        print("| model | " + " | ".join(f"bpb {w}" for w in windows) + " | " + " | ".join(f"quiz {w}" for w in windows) + " |")
        print("|---|" + "---:|" * (2 * len(windows)))
        for model in ("cpt-base-res", "cpt-instruct", "cpt-base", "incumbent"):
            cells = [mean_se([r["final"][f"bpb.{model}.{w}"] for r in runs if f"bpb.{model}.{w}" in r["final"]], 4)
                     for w in windows]
            cells += [mean_se([100 * r["final"][f"quiz.{model}.{w}"] for r in runs if f"quiz.{model}.{w}" in r["final"]])
                      for w in windows]
            print(f"| {model} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main(sys.argv[1])
