"""Mean ± spread of every score over training seeds, from a ``dvc exp`` grid.

One experiment per seed (``dvc exp run --queue -S models.toy.seed=N -S cpt.train.seed=N``,
``scripts/seeds.sh``) leaves one ``metrics/compare.json`` per seed; ``dvc exp show --json``
holds them all. This reads that output and writes, per score and model, the mean, the sample
standard deviation over seeds, the range and the seeds' values, and for the paper's
comparisons the per-seed difference: a finding counts when its sign holds in every seed and
its mean is more than two standard errors of the mean (sd / sqrt(n)) from zero.

    dvc exp show --json > exps.json
    python -m freshllm.report.seeds --exp-json exps.json --keys models.toy.seed,cpt.train.seed \\
        --markdown metrics/seeds.md --json metrics/seeds.json
    python -m freshllm.report.seeds --chain --exp-json chain-exps.json --markdown metrics/chain/seeds.md
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
from pathlib import Path

from ..common import setup_logging, user_errors
from ..names import model_budget, model_kind
from .exps import METRICS_FILE, ExpsError, finished, key_of, load
from .render import _pick

log = logging.getLogger(__name__)

# (score, what it says, lower is better)
SCORES = {
    "ifeval": ("instruction following (IFEval mean)", False),
    "d2": ("d2 news knowledge (new)", False),
    "d1": ("d1 retention (old facts)", False),
    "fresh_bpb": ("bits per byte, held-out fresh news", True),
    "known_bpb": ("bits per byte, known text", True),
    "avg": ("average", False),
}


def runs_from_exp_show(shown: list, keys: list[str], metrics_file: str = METRICS_FILE) -> dict[tuple, dict]:
    """``{seed values: compare metrics}``: one run per distinct value of ``keys`` (the
    workspace and its clean commit are the same run; two different results for the same
    seeds are an error, since they would be averaged as one)."""
    runs: dict[tuple, dict] = {}
    names: dict[tuple, str] = {}
    for _rev, label, params, metrics in finished(shown, metrics_file):
        key = key_of(params, keys, label)
        if key in runs and runs[key] != metrics:
            raise ExpsError(f"two different results for {dict(zip(keys, key))}: {names[key]} and {label}")
        runs.setdefault(key, metrics)
        names.setdefault(key, label)
    return runs


def _stats(values: list[float]) -> dict:
    n = len(values)
    sd = statistics.stdev(values) if n > 1 else None
    return {"n": n, "mean": statistics.fmean(values), "sd": sd,
            "sem": sd / math.sqrt(n) if sd is not None else None,
            "min": min(values), "max": max(values), "values": values}


def aggregate(runs: dict[tuple, dict]) -> dict[str, dict[str, dict]]:
    """``{score: {model: stats}}`` over the runs, for the scores every run has for a model."""
    out: dict[str, dict[str, dict]] = {}
    seeds = sorted(runs)
    for score in SCORES:
        per_model: dict[str, list[float]] = {}
        for seed in seeds:
            for model, value in (runs[seed].get(score) or {}).items():
                if isinstance(value, (int, float)):
                    per_model.setdefault(model, []).append(float(value))
        kept = {m: _stats(v) for m, v in per_model.items() if len(v) == len(seeds)}
        if kept:
            out[score] = kept
    return out


def contrasts(runs: dict[tuple, dict]) -> list[dict]:
    """The paper's comparisons at every budget, per seed: Setting 2 + residual against
    Setting 1 and against the instruct model on instruction following; every cpt model
    against the base on the new knowledge; cpt-base against base + residual (the knowledge
    gap). ``better`` counts the seeds in which ``a`` beats ``b``."""
    seeds = sorted(runs)
    models = sorted(set.intersection(*(set(runs[s].get("ifeval") or runs[s].get("avg") or {}) for s in seeds)))
    budgets = sorted({model_budget(m) for m in models if model_budget(m) is not None})
    base, inst = _pick(models, "base", None), _pick(models, "instruct", None)
    pairs = []
    for b in budgets:
        res, cpt_i, cpt_b = (_pick(models, "cpt-base-res", b), _pick(models, "cpt-instruct", b),
                             _pick(models, "cpt-base", b))
        pairs += [("ifeval", res, cpt_i), ("ifeval", res, inst), ("ifeval", cpt_i, inst),
                  ("d2", res, base), ("d2", cpt_i, base), ("d2", cpt_b, res),
                  ("fresh_bpb", res, base), ("fresh_bpb", cpt_b, res), ("d1", res, base)]
    out = []
    for score, a, b in pairs:
        if not a or not b or any(score not in runs[s] or a not in runs[s][score] or b not in runs[s][score]
                                 for s in seeds):
            continue
        lower = SCORES[score][1]
        diffs = [float(runs[s][score][a]) - float(runs[s][score][b]) for s in seeds]
        st = _stats(diffs)
        better = sum((d < 0) if lower else (d > 0) for d in diffs)
        beyond = st["sem"] is not None and abs(st["mean"]) > 2 * st["sem"]
        out.append({"score": score, "a": a, "b": b, **st, "a_better_in": better,
                    "verdict": _verdict(st, better, len(seeds), beyond, lower)})
    return out


def _verdict(st: dict, better: int, n: int, beyond: bool, lower: bool) -> str:
    if st["sd"] is None:
        return "one seed: no spread"
    if beyond and better in (0, n):
        word = "better" if better == n else "worse"
        return f"{word} in {n}/{n} seeds, beyond the noise"
    return f"better in {better}/{n} seeds, within the noise"


def _cell(st: dict, digits: int) -> str:
    if st["sd"] is None:
        return f"{st['mean']:.{digits}f}"
    return f"{st['mean']:.{digits}f} ± {st['sd']:.{digits}f} ({st['min']:.{digits}f}–{st['max']:.{digits}f})"


def render(runs: dict[tuple, dict], keys: list[str], agg: dict, diffs: list[dict]) -> str:
    n = len(runs)
    models = sorted({m for per in agg.values() for m in per},
                    key=lambda m: (model_budget(m) or 0, ["base", "instruct", "cpt-base", "cpt-instruct",
                                                          "cpt-base-res"].index(model_kind(m))))
    seeds = ", ".join("(" + ", ".join(f"{k}={v}" for k, v in zip(keys, s)) + ")" for s in sorted(runs))
    lines = [f"# Scores over {n} training seeds", "",
             f"Runs: {seeds}. Cells: mean ± sample standard deviation over the seeds (range); "
             "scores x100, bits per byte as measured.", "",
             "| score | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for score, per in agg.items():
        digits = 4 if score.endswith("bpb") else 2
        lines.append(f"| {SCORES[score][0]} | " + " | ".join(_cell(per[m], digits) if m in per else "–"
                                                            for m in models) + " |")
    lines += ["", "Per-seed differences (a - b; mean ± sd over seeds; \"beyond the noise\": the "
              "sign holds in every seed and the mean is more than two standard errors of the mean "
              "from zero):", "", "| score | a | b | a - b | a better in | verdict |", "|---|---|---|---:|---:|---|"]
    for d in diffs:
        digits = 4 if d["score"].endswith("bpb") else 2
        lines.append(f"| {d['score']} | {d['a']} | {d['b']} | {_cell(d, digits)} | {d['a_better_in']}/{d['n']} "
                     f"| {d['verdict']} |")
    return "\n".join(lines) + "\n"


CHAIN_METRICS = "metrics/chain/compare.json"
CHAIN_GROUP = "chain.cpt.train.replay_fraction"


def _mean_se(xs: list[float], digits: int = 2) -> str:
    if not xs:
        return "–"
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {statistics.stdev(xs) / math.sqrt(len(xs)):.{digits}f}"


def chain_runs(shown: list, group: str = CHAIN_GROUP) -> tuple[dict, list[str]]:
    """``({group value: [chain compare.json of each finished experiment]}, windows)`` of a
    chain profile's ``dvc exp`` grid (finished experiments only: :func:`.exps.finished`)."""
    groups: dict = {}
    windows: list[str] = []
    for _rev, label, params, metrics in finished(shown, CHAIN_METRICS):
        (value,) = key_of(params, [group], label)
        groups.setdefault(value, []).append(metrics)
        windows = windows or list(params.get("updates") or {})
    return groups, windows


def render_chain(groups: dict, windows: list[str], group: str = CHAIN_GROUP) -> str:
    """Per value of ``group`` (the replay share), the mean ± standard error over seeds of each
    step's instruction following and the last step's knowledge of every window."""
    steps = ["ancestor", *windows]
    out = ["Chained updates over training seeds (mean ± standard error over seeds; x100 for scores).", ""]
    for value, runs in sorted(groups.items()):
        out += [f"### {group} {value:g} ({len(runs)} seeds)", "",
                "| step | IFEval, cpt-base + residual | IFEval, cpt-instruct (Setting 1) | bpb, windows so far, + residual "
                "| d2 quiz, windows so far, + residual | promoted |", "|---|---:|---:|---:|---:|---|"]
        for i, step in enumerate(steps):
            def vals(key, model, scale=1.0):
                return [r["step"][f"{step}.{key}.{model}"] * scale for r in runs if f"{step}.{key}.{model}" in r["step"]]

            promoted = sum(bool(r["promoted"].get(step)) for r in runs)
            out.append(f"| {step} | {_mean_se(vals('ifeval', 'cpt-base-res'))} | {_mean_se(vals('ifeval', 'cpt-instruct'))} | "
                       f"{_mean_se(vals('bpb_mean', 'cpt-base-res'), 4) if i else '–'} | "
                       f"{_mean_se(vals('quiz_mean', 'cpt-base-res', 100.0)) if i else '–'} | {promoted}/{len(runs)} |")
        if windows:
            out += ["", f"After the last update ({windows[-1]}), each window's held-out news and events:", "",
                    "| model | " + " | ".join(f"bpb {w}" for w in windows) + " | "
                    + " | ".join(f"quiz {w}" for w in windows) + " |", "|---|" + "---:|" * (2 * len(windows))]
            for model in ("cpt-base-res", "cpt-instruct", "cpt-base", "incumbent"):
                cells = [_mean_se([r["final"][f"bpb.{model}.{w}"] for r in runs if f"bpb.{model}.{w}" in r["final"]], 4)
                         for w in windows]
                cells += [_mean_se([100 * r["final"][f"quiz.{model}.{w}"] for r in runs
                                    if f"quiz.{model}.{w}" in r["final"]]) for w in windows]
                out.append(f"| {model} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m freshllm.report.seeds", description=__doc__.split("\n\n")[0])
    ap.add_argument("--exp-json", type=Path, required=True, help="the output of `dvc exp show --json`")
    ap.add_argument("--keys", default="models.toy.seed,cpt.train.seed",
                    help="comma-separated params.yaml keys that tell the seeds apart")
    ap.add_argument("--min-seeds", type=int, default=3)
    ap.add_argument("--markdown", type=Path, required=True)
    ap.add_argument("--json", type=Path, default=None, help="the aggregate as JSON (the single-update grid)")
    ap.add_argument("--chain", action="store_true",
                    help=f"a chain profile's grid ({CHAIN_METRICS}), grouped by {CHAIN_GROUP}")
    args = ap.parse_args(argv)
    setup_logging()
    keys = [k.strip() for k in args.keys.split(",") if k.strip()]
    if args.chain:
        with user_errors("report.seeds", ExpsError):
            groups, windows = chain_runs(load(args.exp_json))
            if not groups:
                raise ExpsError(f"{args.exp_json}: no finished experiment with {CHAIN_METRICS}")
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(render_chain(groups, windows))
        log.info("%d chains -> %s", sum(map(len, groups.values())), args.markdown)
        return
    if args.json is None:
        raise SystemExit("report.seeds: --json is required (without --chain)")
    with user_errors("report.seeds", ExpsError):
        runs = runs_from_exp_show(load(args.exp_json), keys)
        if len(runs) < args.min_seeds:
            raise ExpsError(f"{args.exp_json}: {len(runs)} distinct runs of {', '.join(keys)}, "
                             f"need at least {args.min_seeds}")
        agg, diffs = aggregate(runs), contrasts(runs)
        for path in (args.markdown, args.json):
            path.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(render(runs, keys, agg, diffs))
        args.json.write_text(json.dumps({"keys": keys, "runs": [dict(zip(keys, s)) for s in sorted(runs)],
                                         "scores": agg, "contrasts": diffs}, indent=2) + "\n")
    log.info("%d seeds -> %s, %s", len(runs), args.markdown, args.json)


if __name__ == "__main__":
    main()
