"""How the merge methods' retention moves with model size: the method tables of several
groups of runs (one group per model size, one run per training seed) side by side.

Each group is a list of run directories that ran the same ``merges:`` grid
(``scripts/sizes.sh``); within a group every figure is the mean over its runs ± the
standard error over runs (:func:`freshllm.report.methods.combine`; one run: the delta-method
error). Per setting and size: IF kept, d2 kept, bpb kept, knowledge kept, and whether the
goal is reached beyond the noise: ``IF kept - 2 SE >= --if-goal`` and the same for d2 kept
and bpb kept against ``--knowledge-goal``. The PNG has one point per setting and size, a
colour per size.

    python -m freshllm.report.sizes --group 1M=runs/1M-w0-s0,runs/1M-w0-s1 --group 7M=runs/7M-w0-s0 \\
        --settings residual,b050,magmax --markdown sizes.md --json sizes.json --figure sizes.png
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..common import atomic_file, setup_logging, user_errors, write_json
from . import ReportError
from .exps import ExpsError
from .methods import _pm, combine, mark_front, run_rows

log = logging.getLogger(__name__)

KEPT = ("if_kept", "d2_kept", "bpb_kept", "knowledge_kept")


def parse_group(text: str) -> tuple[str, list[Path]]:
    """``LABEL=DIR,DIR,...`` -> (label, dirs)."""
    label, sep, dirs = text.partition("=")
    paths = [Path(d) for d in dirs.split(",") if d]
    if not sep or not label or not paths:
        raise ReportError(f"--group {text!r}: expected LABEL=DIR[,DIR...]")
    return label, paths


def parameters(run: Path, family: str = "toy") -> int | None:
    """The model's parameter count, from the models stage's metrics (None when absent)."""
    path = run / "metrics" / "models" / f"{family}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("parameters")
    except (OSError, json.JSONDecodeError):
        return None


def goal(row: dict, if_goal: float, knowledge_goal: float) -> str:
    """``reached`` when IF kept, d2 kept and bpb kept are each at least their goal by more than
    two standard errors; else the figures that are not."""
    short = []
    for key, target in (("if_kept", if_goal), ("d2_kept", knowledge_goal), ("bpb_kept", knowledge_goal)):
        v, se = row.get(key), row.get(key + "_se") or 0.0
        if v is None or v - 2 * se < target:
            short.append(key.replace("_kept", ""))
    return "reached" if not short else "not: " + ", ".join(short)


def build(groups: list[tuple[str, list[Path]]], settings: list[str] | None, if_goal: float,
          knowledge_goal: float) -> list[dict]:
    table = []
    for label, runs in groups:
        rows = combine([run_rows(r)[1] for r in runs])
        mark_front(rows)
        wanted = settings or [k for k in rows if k not in ("instruct", "cpt-base")]
        unknown = [s for s in wanted if s not in rows]
        if unknown:
            raise ReportError(f"group {label}: no setting {', '.join(unknown)} (have: {', '.join(rows)})")
        n_params = parameters(runs[0])
        for s in wanted:
            table.append({"size": label, "parameters": n_params, "setting": s, "runs": [str(r) for r in runs],
                          "goal": goal(rows[s], if_goal, knowledge_goal), **rows[s]})
    return table


def render(table: list[dict], if_goal: float, knowledge_goal: float) -> str:
    lines = ["# Retention by model size", "",
             "Per size: mean ± standard error over its runs (training seeds); one run: ± the delta-method "
             f"error. Goal: IF kept >= {if_goal:g} and d2 and bpb kept >= {knowledge_goal:g}, each by more than "
             "two standard errors. `residual` is the pipeline's default merge (cpt-base + R).", "",
             "| setting | size | parameters | runs | IFEval | IF kept | d2 kept | bpb kept | knowledge kept | front | goal |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|:---:|---|"]
    for r in sorted(table, key=lambda r: (r["setting"], r["parameters"] or 0)):
        lines.append(f"| {r['setting']} | {r['size']} | {r['parameters'] or '–'} | {r['n_runs']} | "
                     f"{_pm(r['ifeval'], r['ifeval_se'])} | "
                     + " | ".join(_pm(r[k], r[k + '_se']) for k in KEPT)
                     + f" | {'yes' if r.get('front') else ''} | {r['goal']} |")
    return "\n".join(lines) + "\n"


def figure(table: list[dict], out: Path) -> None:
    from ..figures import pareto

    points = [{"label": r["setting"], "group": r["size"], "x": r["if_kept"], "y": r["knowledge_kept"],
               "x_se": r["if_kept_se"], "y_se": r["knowledge_kept_se"], "front": r.get("front")}
              for r in table if r["if_kept"] is not None and r["knowledge_kept"] is not None]
    pareto(points, out, "instruction following kept (IFEval / instruct)",
           "knowledge kept (mean of d2 and fresh-bpb gain kept)", "merge settings by model size (± 1 SE)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m freshllm.report.sizes", description=__doc__.splitlines()[0])
    ap.add_argument("--group", action="append", required=True, help="LABEL=DIR[,DIR...]: one size, its runs")
    ap.add_argument("--settings", default=None, help="comma-separated settings to show (default: all)")
    ap.add_argument("--if-goal", type=float, default=0.9)
    ap.add_argument("--knowledge-goal", type=float, default=0.8)
    ap.add_argument("--markdown", type=Path, required=True)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--figure", type=Path, required=True)
    args = ap.parse_args(argv)
    setup_logging()
    with user_errors("report.sizes", ReportError, ExpsError):
        groups = [parse_group(g) for g in args.group]
        settings = [s for s in (args.settings or "").split(",") if s] or None
        table = build(groups, settings, args.if_goal, args.knowledge_goal)
        with atomic_file(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(render(table, args.if_goal, args.knowledge_goal))
        write_json(args.json, {"if_goal": args.if_goal, "knowledge_goal": args.knowledge_goal, "rows": table})
        figure(table, args.figure)
    log.info("%d rows -> %s", len(table), args.markdown)


if __name__ == "__main__":
    main()
