"""Stage ``methods-report``: the method table of the ``merges:`` grid.

Each named merge setting (``merges.<name>``: residual overrides, stages ``merge@<name>`` and
``eval-merge@<name>``, model ``cpt-base-res+<target>@<merge_budget>~<name>``) is scored
against the base, the instruct model and cpt-base at ``merge_budget``:

* IFEval: the report's instruction-following score (mean of the 4 metrics);
* IF kept = merge / instruct;
* d2 kept = (merge - base) / (cpt-base - base), the d2 quiz gain kept;
* bpb kept = (base - merge) / (base - cpt-base), the fresh-news bits-per-byte gain kept;
* knowledge kept = the mean of d2 kept and bpb kept;

each with a delta-method standard error from the evals' standard errors
(:func:`freshllm.report.grid.kept`). The instruct model, cpt-base and the pipeline's own
``cpt-base-res`` (``residual``, when its eval is there) are reference rows. With several
runs (``--run DIR`` repeated, e.g. one per training seed) every figure is the mean over
runs ± its standard error over runs (sd / sqrt(n)). A setting is on the Pareto front when
no other setting keeps at least as much of both (IF kept, knowledge kept) and more of one.

    python -m freshllm.report.methods --run . --markdown metrics/merges/table.md \\
        --json metrics/merges/table.json --figure metrics/merges/pareto.png
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
from pathlib import Path

from ..common import atomic_file, setup_logging, user_errors, write_json
from ..config import load_section, read_params
from ..names import model_name
from . import LAYOUTS, ReportConfig, ReportError, build_summary, load_evals, model_scores
from .exps import ExpsError
from .grid import kept

log = logging.getLogger(__name__)

FIGURES = ("ifeval", "if_kept", "d2_kept", "bpb_kept", "knowledge_kept")
SEP = "~"  # cpt-base-res+<family>@<budget>~<setting>


def merge_model(family: str, budget: str, name: str) -> str:
    """The eval name of the merge setting ``name``: ``cpt-base-res+<family>@<budget>~<name>``."""
    return f"{model_name('cpt-base-res', family, budget)}{SEP}{name}"


def _grid(params: dict, path: Path) -> tuple[str, str, dict]:
    """``(target, merge_budget, merges)`` of a params file."""
    merges = params.get("merges") or {}
    budget, budgets = params.get("merge_budget"), [str(b) for b in params.get("budgets") or []]
    problems = []
    if not isinstance(merges, dict) or not merges:
        problems.append("merges: no merge settings (a mapping name -> residual overrides)")
    if budget is None or str(budget) not in budgets:
        problems.append(f"merge_budget: {budget!r} is not one of budgets {budgets}")
    if not params.get("target"):
        problems.append("target: missing")
    if problems:
        raise ReportError(f"{path}: " + "; ".join(problems))
    return str(params["target"]), str(budget), merges


def _kept_row(summary: dict, family: str, budget: str, model: str) -> dict:
    k = kept(summary, family, budget, res=model)
    row = {"model": model, "ifeval": k["ifeval"]["cpt-base-res"], "ifeval_se": k["ifeval"]["cpt-base-res_se"]}
    for key in ("if_kept", "d2_kept", "bpb_kept"):
        row[key], row[key + "_se"] = k.get(key), k.get(key + "_se")
    d2, bpb = row["d2_kept"], row["bpb_kept"]
    if d2 is not None and bpb is not None:
        row["knowledge_kept"] = (d2 + bpb) / 2
        row["knowledge_kept_se"] = math.hypot(row["d2_kept_se"], row["bpb_kept_se"]) / 2
    else:  # no fresh-news bits per byte: the quiz alone
        row["knowledge_kept"], row["knowledge_kept_se"] = d2, row["d2_kept_se"]
    return row


def run_rows(run: Path, params_name: str = "params.yaml", eval_dir: str = "metrics/eval",
             merges_dir: str = "metrics/merges/eval") -> tuple[dict, dict[str, dict]]:
    """One run: ``(merges overrides, {row label: figures})``, the rows in table order
    (references first, then the settings in params order)."""
    path = run / params_name
    params = read_params(path)
    target, budget, merges = _grid(params, path)
    cfg = load_section(ReportConfig, "report", path)
    layout = LAYOUTS[cfg.suite]
    evals = load_evals(run / eval_dir)
    merged = load_evals(run / merges_dir)
    clash = sorted(set(evals) & set(merged))
    if clash:
        raise ReportError(f"models {clash} have eval results in both {run / eval_dir} and {run / merges_dir}")
    evals.update(merged)
    refs = {"instruct": model_name("instruct", target), "cpt-base": model_name("cpt-base", budget=budget),
            "residual": model_name("cpt-base-res", target, budget)}
    wanted = {model_name("base", target): None, refs["instruct"]: None, refs["cpt-base"]: None}
    wanted.update({merge_model(target, budget, n): None for n in merges})
    missing = [m for m in wanted if m not in evals]
    if missing:
        raise ReportError(f"no eval results for {', '.join(missing)} in {run / eval_dir} or {run / merges_dir}")
    if refs["residual"] not in evals:
        del refs["residual"]
    models = [*wanted, *([refs["residual"]] if "residual" in refs else [])]
    scores = {m: model_scores(evals[m]["results"], layout, evals[m].get("stderr")) for m in models}
    summary = build_summary(scores, models, layout)
    rows = {label: {**_kept_row(summary, target, budget, m), "reference": True} for label, m in refs.items()}
    for n in merges:
        rows[n] = {**_kept_row(summary, target, budget, merge_model(target, budget, n)), "reference": False}
    return merges, rows


def combine(per_run: list[dict[str, dict]]) -> dict[str, dict]:
    """Rows over runs: one run, its figures ± the delta-method standard errors; several, the
    mean ± the standard error over runs (each run's value under ``runs``)."""
    labels = list(per_run[0])
    for i, rows in enumerate(per_run[1:], 2):
        if set(rows) != set(labels):
            raise ReportError(f"run {i} has rows {sorted(rows)}, run 1 {sorted(labels)}: the runs must "
                              "have the same merge settings and reference models")
    out: dict[str, dict] = {}
    for label in labels:
        row = {"model": per_run[0][label]["model"], "reference": per_run[0][label]["reference"],
               "n_runs": len(per_run)}
        for key in FIGURES:
            values = [rows[label][key] for rows in per_run]
            if any(v is None for v in values):
                row[key] = row[key + "_se"] = None
            elif len(values) == 1:
                row[key], row[key + "_se"] = values[0], per_run[0][label][key + "_se"]
            else:
                row[key] = statistics.fmean(values)
                row[key + "_se"] = statistics.stdev(values) / math.sqrt(len(values))
                row[key + "_runs"] = values
        out[label] = row
    return out


def mark_front(rows: dict[str, dict]) -> None:
    """``front``: no other non-reference row keeps at least as much of both and more of one."""
    cands = {k: r for k, r in rows.items()
             if not r["reference"] or k == "residual"}
    for k, r in rows.items():
        r["front"] = False
        if k not in cands or r["if_kept"] is None or r["knowledge_kept"] is None:
            continue
        x, y = r["if_kept"], r["knowledge_kept"]
        r["front"] = not any(o is not r and o["if_kept"] is not None and o["knowledge_kept"] is not None
                             and o["if_kept"] >= x and o["knowledge_kept"] >= y
                             and (o["if_kept"] > x or o["knowledge_kept"] > y) for o in cands.values())


def _pm(x, se, digits=2) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}f}" + (f" ± {se:.{digits}f}" if se is not None else "")


def _overrides(entry) -> str:
    return ", ".join(f"{k}: {v}" for k, v in (entry or {}).items()) or "(the residual section)"


def render(rows: dict[str, dict], merges: dict, n_runs: int) -> str:
    how = (f"mean ± standard error over {n_runs} runs" if n_runs > 1
           else "± one standard error (delta method from the evals' standard errors)")
    lines = ["# Merge methods: instruction following x knowledge kept", "",
             f"Merged = B + beta * D + alpha * R (D = cpt-base - base, R = instruct - base); {how}. "
             "IF kept = IFEval / instruct's; d2 kept = quiz gain over the base / cpt-base's; bpb kept = "
             "fresh-news bits-per-byte drop / cpt-base's; knowledge kept = their mean. "
             "Front: on the Pareto front of (IF kept, knowledge kept).", "",
             "| setting | overrides | IFEval | IF kept | d2 kept | bpb kept | knowledge kept | front |",
             "|---|---|---:|---:|---:|---:|---:|:---:|"]
    for label, r in rows.items():
        name = f"*{label}* (reference)" if r["reference"] else label
        over = r["model"] if r["reference"] else _overrides(merges.get(label))
        lines.append(f"| {name} | {over} | {_pm(r['ifeval'], r['ifeval_se'])} | "
                     + " | ".join(_pm(r[k], r[k + '_se']) for k in ("if_kept", "d2_kept", "bpb_kept", "knowledge_kept"))
                     + f" | {'yes' if r.get('front') else ''} |")
    return "\n".join(lines) + "\n"


def figure(rows: dict[str, dict], out: Path, n_runs: int) -> None:
    from ..figures import pareto

    points = [{"label": k, "x": r["if_kept"], "y": r["knowledge_kept"], "x_se": r["if_kept_se"],
               "y_se": r["knowledge_kept_se"], "front": r.get("front"), "anchor": r["reference"] and k != "residual"}
              for k, r in rows.items() if r["if_kept"] is not None and r["knowledge_kept"] is not None]
    pareto(points, out, "instruction following kept (IFEval / instruct)",
           "knowledge kept (mean of d2 and fresh-bpb gain kept)",
           f"merge settings ({n_runs} run{'s' if n_runs > 1 else ''}; ± 1 SE)")


def run(runs: list[Path], markdown: Path, json_path: Path, png: Path, params_name: str = "params.yaml",
        eval_dir: str = "metrics/eval", merges_dir: str = "metrics/merges/eval") -> dict:
    per_run = []
    merges: dict = {}
    for i, r in enumerate(runs):
        m, rows = run_rows(Path(r), params_name, eval_dir, merges_dir)
        if i == 0:
            merges = m
        elif m != merges:
            raise ReportError(f"run {r}: its merges differ from run {runs[0]}'s")
        per_run.append(rows)
    rows = combine(per_run)
    mark_front(rows)
    with atomic_file(markdown, "w", encoding="utf-8") as fh:
        fh.write(render(rows, merges, len(runs)))
    write_json(json_path, {"runs": [str(r) for r in runs], "merges": merges, "rows": rows})
    figure(rows, png, len(runs))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m freshllm.report.methods", description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, action="append", default=None,
                    help="a run's project directory (repeat: one per training seed); default: .")
    ap.add_argument("--params", default="params.yaml", help="params file, relative to each run")
    ap.add_argument("--eval-dir", default="metrics/eval", help="eval JSONs of base, instruct, cpt-base (per run)")
    ap.add_argument("--merges-dir", default="metrics/merges/eval", help="eval JSONs of the merges (per run)")
    ap.add_argument("--markdown", type=Path, required=True)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--figure", type=Path, required=True, help="Pareto PNG")
    args = ap.parse_args(argv)
    setup_logging()
    runs = args.run or [Path(".")]
    with user_errors("report.methods", ReportError, ExpsError):
        rows = run(runs, args.markdown, args.json, args.figure, args.params, args.eval_dir, args.merges_dir)
    log.info("%d rows over %d run(s) -> %s", len(rows), len(runs), args.markdown)


if __name__ == "__main__":
    main()
