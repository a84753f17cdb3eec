"""Stage ``report``: the paper's Table 2 from the eval JSONs, a summary for ``dvc exp
show`` and Figure-1-style plot data.

Rows (benchmark x metric, values x100): IFEval ILL/ILS/PLL/PLS, MMLU acc, MMLU-Pro EM,
GSM8K EM (flexible-extract) and strict-EM, Sub-Average, Winogrande acc, Hellaswag
acc/acc_n, ARC acc/acc_n, Piqa acc/acc_n, Sub-Average, T_mc2 acc, Average. As in the
paper, the first Sub-Average is the mean of the 8 instruction-following numbers, the
second the mean of the 7 reasoning numbers and Average the mean of all 16.

Columns: one per model, ordered by ``report.models`` (model kinds); ``<kind>@<budget>``
variants follow their kind, by budget.

Outputs:
* ``--summary`` JSON: ``{avg|ifeval_group|reasoning_group|ifeval: {model: value}}`` plus
  ``table.<task>.<metric>.<model>`` (percent, 2 decimals), so ``dvc exp show`` has
  columns such as ``avg.instruct`` or ``ifeval_group.cpt-base-res``;
* ``--markdown``: the table;
* ``--plots-dir`` (optional): one CSV per plot line (``report.plot_lines``) with
  ``model,new_tokens,<score columns>`` for a ``dvc plots`` line per family.

The top-level ``world: {kind: toyworld}`` lays out the toy world's suite the same way (see
:mod:`freshllm.tasks.toy`): rows Toy IFEval ILL/ILS/PLL/PLS, d2 news acc, d1 facts acc;
Sub-Average of the 4 IFEval numbers (``ifeval_group``), of the 2 knowledge numbers
(``knowledge_group``) and Average of all 6; the summary and plot CSVs add ``d2`` and
``d1`` (accuracy x100), and the markdown adds the Figure-1 data (instruction following
and d2 knowledge vs new tokens per family).

Both layouts end with the block that says whether the update did what it is for: bits per
byte (lower is better; never in an average) of every model on the fresh news the pack stage
held out (``fresh_bpb``) and on older text the ancestor knew (``known_bpb``), with their
standard errors (a bootstrap over documents); the summary has ``fresh_bpb.<model>`` /
``known_bpb.<model>`` (and ``stderr.fresh_bpb.<model>``, all three lm-eval metrics under
``text.<task>.<metric>.<model>``), the plot CSVs ``fresh_bpb`` / ``known_bpb`` (+ ``_se``)
columns, and ``--compare`` both.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..common import atomic_file, setup_logging, user_errors, write_json
from ..config import WorldConfig, load_section, parse_count
from ..names import GRID_KEYS, load_grid, model_budget, model_kind
from ..tasks import SUITE_OF_WORLD

from .layouts import (  # noqa: F401 (re-exported) the tables: rows, blocks, score names
    LAYOUTS,
    Layout,
    PAPER_TEXT_INTRO,
    ROWS,
    Row,
    SCORES,
    SECTIONS,
    TEXT_INTRO,
    TEXT_ROWS,
    TEXT_SCORES,
    _rows,
)

from .render import (bpb, figure_lines, pct, plot_rows, render_markdown,  # noqa: F401
                     text_sources, write_plots)

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ReportConfig:
    # column order, by model kind; "<kind>@<budget>" variants follow their kind
    models: list[str] = field(default_factory=lambda: [
        "base", "instruct", "cpt-base", "cpt-instruct", "cpt-base-res"])
    # plot lines: family -> model kinds
    plot_lines: dict[str, list[str]] = field(default_factory=lambda: {
        "base": ["base", "cpt-base"],
        "instruct": ["instruct", "cpt-instruct"],
        "residual": ["cpt-base-res"],
    })
    origin_models: list[str] = field(default_factory=lambda: ["base", "instruct"])  # 0 new tokens
    cpt_tokens: str | None = None  # new tokens behind un-suffixed cpt-* models (= pack.tokens)
    world: WorldConfig = WorldConfig()  # the top-level `world`: its eval suite is laid out

    @property
    def suite(self) -> str:
        return SUITE_OF_WORLD[self.world.kind]

    def validate(self) -> list[str]:
        errs = []
        if len(set(self.models)) != len(self.models):
            errs.append("models: duplicates")
        if self.cpt_tokens is not None:
            try:
                parse_count(self.cpt_tokens)
            except ValueError as exc:
                errs.append(f"cpt_tokens: {exc}")
        return errs


class ReportError(ValueError):
    pass


def order_models(names: list[str], order: list[str]) -> list[str]:
    def key(name: str):
        kind = model_kind(name)
        rank = order.index(kind) if kind in order else len(order)
        budget = model_budget(name)
        return (rank, kind if rank == len(order) else "", -1 if budget is None else budget, name)

    return sorted(names, key=key)


def load_evals(eval_dir: Path) -> dict[str, dict]:
    """``{model name: eval JSON}`` for every ``*.json`` in ``eval_dir``."""
    if not eval_dir.is_dir():
        raise ReportError(f"eval directory not found: {eval_dir}")
    evals: dict[str, dict] = {}
    for path in sorted(eval_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
            raise ReportError(f"{path}: not an eval result (no 'results' mapping)")
        name = data.get("model") or path.stem
        if name in evals:
            raise ReportError(f"{path}: model {name!r} appears twice in {eval_dir}")
        evals[name] = data
    if not evals:
        raise ReportError(f"no eval JSONs in {eval_dir}")
    return evals


def model_scores(results: dict, layout: Layout | None = None, stderrs: dict | None = None) -> dict:
    """Table values (percent) and averages of one model, averages only over complete blocks;
    with lm-eval's standard errors (``stderrs``, same keys as ``results``) each value and
    average also gets one (an average of n numbers: sqrt(sum se^2) / n, treating the
    benchmarks as independent samples)."""
    layout = layout or LAYOUTS["paper"]
    rows = layout.rows
    values: dict[tuple[str, str], float] = {}
    ses: dict[tuple[str, str], float] = {}
    for row in rows:
        value = results.get(row.task, {}).get(row.key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            values[(row.task, row.key)] = value
        se = (stderrs or {}).get(row.task, {}).get(row.key)
        if isinstance(se, (int, float)) and math.isfinite(se):
            ses[(row.task, row.key)] = se

    def mean(rows) -> float | None:
        vals = [values.get((r.task, r.key)) for r in rows]
        return None if not vals or None in vals else pct(sum(vals) / len(vals))

    def mean_se(rows) -> float | None:
        vals = [ses.get((r.task, r.key)) for r in rows]
        return None if not vals or None in vals else pct(math.sqrt(sum(v * v for v in vals)) / len(vals))

    text: dict[tuple[str, str], float] = {}
    text_se: dict[tuple[str, str], float] = {}
    for row in layout.text_rows:
        for key, value in results.get(row.task, {}).items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                text[(row.task, key)] = value
        for key, se in (stderrs or {}).get(row.task, {}).items():
            if isinstance(se, (int, float)) and math.isfinite(se):
                text_se[(row.task, key)] = se
    groups = {name: [r for r in rows if r.section == section] for section, name in layout.sections.items()}
    groups["avg"] = list(rows)
    groups["ifeval"] = [r for r in rows if r.task in ("ifeval", "toy_ifeval")]
    for name, (task, key) in layout.singles.items():
        groups[name] = [r for r in rows if (r.task, r.key) == (task, key)]
    scores = {name: mean(g) for name, g in groups.items()}
    scores_se = {name: mean_se(g) for name, g in groups.items()}
    for row in layout.text_rows:  # the bits per byte, as they are (not percent, not averaged)
        value, se = text.get((row.task, row.key)), text_se.get((row.task, row.key))
        scores[row.task] = None if value is None else bpb(value)
        scores_se[row.task] = None if se is None else bpb(se)
    return {"table": {k: pct(v) for k, v in values.items()},
            "scores": scores,
            "table_se": {k: pct(v) for k, v in ses.items()},
            "scores_se": scores_se,
            "text": {k: bpb(v) for k, v in text.items()},
            "text_se": {k: bpb(v) for k, v in text_se.items()}}


def build_summary(scores: dict[str, dict], models: list[str], layout: Layout | None = None) -> dict:
    """``{score: {model: value}}`` (the averages and ``fresh_bpb`` / ``known_bpb``),
    ``table.<task>.<metric>.<model>`` (percent), ``text.<task>.<metric>.<model>`` (the
    bits-per-byte tasks' lm-eval metrics as they are) and, where there are standard errors,
    the same under ``stderr`` / ``table_stderr`` / ``text_stderr``."""
    names = (layout or LAYOUTS["paper"]).plot_scores
    summary: dict = {name: {} for name in names}
    stderr: dict = {name: {} for name in names}
    table: dict = {}
    table_se: dict = {}
    text: dict = {}
    text_se: dict = {}
    for model in models:
        s = scores[model]
        for name in names:
            if s["scores"][name] is not None:
                summary[name][model] = s["scores"][name]
            if s["scores_se"].get(name) is not None:
                stderr[name][model] = s["scores_se"][name]
        for (task, key), value in s["table"].items():
            table.setdefault(task, {}).setdefault(key, {})[model] = value
        for (task, key), value in s["table_se"].items():
            table_se.setdefault(task, {}).setdefault(key, {})[model] = value
        for (task, key), value in s.get("text", {}).items():
            text.setdefault(task, {}).setdefault(key, {})[model] = value
        for (task, key), value in s.get("text_se", {}).items():
            text_se.setdefault(task, {}).setdefault(key, {})[model] = value
    summary = {k: v for k, v in summary.items() if v}
    summary["table"] = table
    if text:
        summary["text"] = text
    if any(stderr.values()):
        summary["stderr"] = {k: v for k, v in stderr.items() if v}
        summary["table_stderr"] = table_se
    if text_se:
        summary["text_stderr"] = text_se
    return summary


def select_grid(evals: dict[str, dict], expected: list[str], eval_dir: Path) -> dict[str, dict]:
    """Keep the grid's models; results of models no longer in the grid (an earlier budget, a
    file committed before ``-S budgets=...``) are left out with a warning, missing ones are an error."""
    missing = [m for m in expected if m not in evals]
    if missing:
        raise ReportError(f"no eval results in {eval_dir} for {', '.join(missing)} (expected by the grid)")
    stale = sorted(set(evals) - set(expected))
    if stale:
        log.warning("ignoring eval results in %s of models not in the grid: %s", eval_dir, ", ".join(stale))
    return {m: evals[m] for m in evals if m in expected}


# what `dvc exp show` compares across experiments, per stage metrics file: key -> column
STAGE_COLUMNS = {
    "cpt": ("final_loss", "new_tokens_seen"),
    "residual": ("residual_norm",),
    "crawl": ("articles", "tokens_estimate"),
}


def compare_metrics(summary: dict, layout: Layout, stage_metrics: dict[str, list[Path]]) -> dict:
    """The few numbers registered as DVC metrics (``metrics/compare.json``): each model's
    averages and sub-averages, its bits per byte on the held-out fresh news and on known text
    (``fresh_bpb`` / ``known_bpb``), cpt's final loss and tokens, the residual norm, crawl totals.
    Everything else stays in the plain, git-tracked JSONs (summary, eval records, stage metrics)."""
    out: dict = {name: dict(summary[name]) for name in layout.plot_scores if name in summary}
    for stage, paths in stage_metrics.items():
        for path in sorted(paths):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ReportError(f"{path}: cannot read stage metrics ({exc})") from exc
            values = {k: data[k] for k in STAGE_COLUMNS[stage] if isinstance(data.get(k), (int, float))}
            if not values:
                continue
            name = path.stem.removeprefix("extract-")
            out.setdefault(stage, {})[name] = values
    if "crawl" in out:
        out["crawl"] = next(iter(out["crawl"].values()))
    return out


def run(cfg: ReportConfig, eval_dir: Path, summary_path: Path, markdown_path: Path,
        plots_dir: Path | None = None, expected: list[str] | None = None,
        compare_path: Path | None = None, stage_metrics: dict[str, list[Path]] | None = None) -> dict:
    evals = load_evals(eval_dir)
    if expected is not None:
        evals = select_grid(evals, expected, eval_dir)
    missing = [m for m in cfg.models if not any(model_kind(n) == m for n in evals)]
    if missing:
        log.warning("no eval results for %s in %s", missing, eval_dir)
    models = order_models(list(evals), cfg.models)
    layout = LAYOUTS[cfg.suite].evaluated(evals)
    scores = {m: model_scores(evals[m]["results"], layout, evals[m].get("stderr")) for m in models}
    summary = build_summary(scores, models, layout)
    write_json(summary_path, summary)
    tokens = parse_count(cfg.cpt_tokens) if cfg.cpt_tokens is not None else None
    figure = plot_rows(scores, models, cfg, tokens, layout) if cfg.suite != "paper" else None
    with atomic_file(markdown_path, "w", encoding="utf-8") as fh:
        fh.write(render_markdown(scores, models, evals, layout, figure))
    if plots_dir is not None:
        write_plots(plots_dir, plot_rows(scores, models, cfg, tokens, layout), layout)
    if compare_path is not None:
        write_json(compare_path, compare_metrics(summary, layout, stage_metrics or {}))
    log.info("report for %s: avg %s", models, summary.get("avg"))
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--eval-dir", required=True, type=Path)
    ap.add_argument("--summary", required=True, type=Path)
    ap.add_argument("--markdown", required=True, type=Path)
    ap.add_argument("--plots-dir", type=Path, default=None, help="per-family plot CSVs")
    ap.add_argument("--cpt-tokens", default=None, help="override report.cpt_tokens, e.g. ${pack.tokens}")
    ap.add_argument("--compare", type=Path, default=None,
                    help="write the numbers `dvc exp show` compares (averages, cpt loss, residual norm, crawl totals)")
    ap.add_argument("--cpt-metrics", type=Path, default=None, help="directory of cpt stage metrics JSONs")
    ap.add_argument("--residual-metrics", type=Path, default=None,
                    help="directory of residual stage metrics JSONs (extract-<family>.json are read)")
    ap.add_argument("--crawl-metrics", type=Path, default=None, help="the crawl stage's metrics JSON")
    ap.add_argument("--grid", action="store_true",
                    help="report exactly the models of the params' grid (top-level %s)" % "/".join(GRID_KEYS))
    args = ap.parse_args(argv)
    setup_logging()
    overrides = {"cpt_tokens": args.cpt_tokens} if args.cpt_tokens is not None else {}
    with user_errors("report", ReportError):
        cfg = load_section(ReportConfig, "report", args.params, overrides)
        grid = load_grid(args.params) if args.grid else None
        expected = grid.models() if grid else None
        if grid:  # exactly the grid's files (others may be left over from earlier grids)
            cpt = [f"{v}-{b}.json" for b in grid.budgets for v in ("base", "instruct")]
            res = [f"extract-{f}.json" for f in grid.residual_sources]
        else:
            cpt, res = ["*.json"], ["extract-*.json"]
        stage_metrics = {
            "cpt": [p for g in cpt for p in sorted(args.cpt_metrics.glob(g))] if args.cpt_metrics else [],
            "residual": [p for g in res for p in sorted(args.residual_metrics.glob(g))] if args.residual_metrics else [],
            "crawl": [args.crawl_metrics] if args.crawl_metrics else [],
        }
        run(cfg, args.eval_dir, args.summary, args.markdown, args.plots_dir, expected,
            args.compare, stage_metrics)

