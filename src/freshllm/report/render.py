"""The report's outputs: the markdown table (value ± standard error), the Figure-1 data,
the plot CSVs; number formats of the paper (percent, 2 decimals, half up) and of bits per byte;
the markdown helpers (:func:`value_se`, :func:`md_row`, :func:`md_table`) other reports share."""

from __future__ import annotations

import csv
import logging
import math
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from ..common import atomic_file
from ..names import model_budget, model_kind
from .layouts import LAYOUTS, Layout

if TYPE_CHECKING:
    from . import ReportConfig

log = logging.getLogger("freshllm.report")


def bpb(value: float) -> float:
    """A bits-per-byte value (or its standard error) as shown and summarised: 4 decimals."""
    return round(float(value), 4)


def pct(value: float) -> float:
    """A fraction as percent with 2 decimals, half up (the paper's 31.425 -> 31.43)."""
    return float(Decimal(repr(round(value * 100, 9))).quantize(Decimal("0.01"), ROUND_HALF_UP))


def value_se(value: float | None, se: float | None = None, digits: int = 2, scale: float = 1.0) -> str:
    """A table cell: ``value ± se`` with ``digits`` decimals (both times ``scale``, e.g. 100 for a
    fraction shown x100), only ``value`` without a standard error, ``–`` without a value."""
    if value is None:
        return "–"
    text = f"{value * scale:.{digits}f}"
    return text + (f" ± {se * scale:.{digits}f}" if se is not None else "")


def md_row(cells: list[str]) -> str:
    """One markdown table row."""
    return "| " + " | ".join(cells) + " |"


def md_table(head: list[str], rows: list[list[str]] = (), align: str | None = None) -> list[str]:
    """A markdown table's lines: the header, the alignment row (``align``: ``l`` or ``r`` per
    column; by default the first column left, the others right) and ``rows``."""
    align = align or "l" + "r" * (len(head) - 1)
    if len(align) != len(head):
        raise ValueError(f"align {align!r}: one letter per column of {head}")
    return [md_row(head), "|" + "".join("---:|" if a == "r" else "---|" for a in align),
            *(md_row(r) for r in rows)]


def render_markdown(scores: dict[str, dict], models: list[str], evals: dict[str, dict],
                    layout: Layout | None = None, figure: dict[str, list[dict]] | None = None) -> str:
    layout = layout or LAYOUTS["paper"]

    def cell(value: float | None, se: float | None = None, bold: bool = False) -> str:
        text = value_se(value, se)
        return f"**{text}**" if bold and value is not None else text

    def text_cell(value: float | None, se: float | None = None) -> str:
        return value_se(value, se, digits=4)

    lines = md_table(["Benchmark", "Metric", *models], align="ll" + "r" * len(models))

    def subtotal(label: str, name: str) -> None:
        vals = [cell(scores[m]["scores"][name], scores[m]["scores_se"].get(name), bold=True) for m in models]
        lines.append(f"| **{label}** |  | " + " | ".join(vals) + " |")

    previous = None
    for row in layout.rows:
        if previous in layout.sections and row.section != previous:
            subtotal("Sub-Average", layout.sections[previous])
        key = (row.task, row.key)
        vals = [cell(scores[m]["table"].get(key), scores[m]["table_se"].get(key)) for m in models]
        lines.append(f"| {row.benchmark} | {row.metric} | " + " | ".join(vals) + " |")
        previous = row.section
    if previous in layout.sections:  # the last block has a Sub-Average too
        subtotal("Sub-Average", layout.sections[previous])
    subtotal("Average", "avg")
    if layout.text_rows:  # what the update is for: its own block, raw bits per byte
        lines.append("| ***Bits per byte*** | *lower is better* |" + " |" * len(models))
        for row in layout.text_rows:
            vals = [text_cell(scores[m]["scores"].get(row.task), scores[m]["scores_se"].get(row.task))
                    for m in models]
            lines.append(f"| {row.benchmark} | {row.metric} | " + " | ".join(vals) + " |")

    info = md_table(["Model", "Chat template", "Model hash", "Limit", "Data"], align="lllrl")
    for m in models:
        e = evals[m]
        cfg = e.get("config", {})
        info.append(md_row([m, "yes" if e.get("chat_template") else "no", f"`{str(e.get('model_hash', ''))[:12]}`",
                            str(cfg.get("limit") or "all"), str(cfg.get("source", ""))]))
    return "\n".join([
        "# Evaluation report",
        "",
        *finding_lines(scores, models, layout),
        layout.intro,
        "",
        *lines,
        "",
        *(["± is one standard error over the eval items (lm-eval, `eval.bootstrap_iters`); an "
           "average's is sqrt(sum se²)/n. Two scores closer than about two combined standard "
           "errors (sqrt(se1² + se2²)) are within the noise.", ""]
          if any(scores[m]["scores_se"].get("avg") is not None for m in models) else []),
        *text_sources(evals, models, layout),
        *(figure_lines(figure, layout) if figure else []),
        *info,
        "",
    ])


def text_sources(evals: dict[str, dict], models: list[str], layout: Layout) -> list[str]:
    """What the bits-per-byte rows were measured on (from the eval records), one line."""
    seen: dict[str, set] = {}
    for m in models:
        for task, info in ((evals[m].get("config") or {}).get("texts") or {}).items():
            docs = info.get("scored") or info.get("documents")
            seen.setdefault(task, set()).add((info.get("source"), docs, info.get("sha256")))
    parts = []
    for row in layout.text_rows:
        found = seen.get(row.task)
        if not found:
            continue
        if len(found) > 1:
            parts.append(f"{row.benchmark}: DIFFERENT data across models ({len(found)} versions)")
        else:
            source, docs, _ = next(iter(found))
            parts.append(f"{row.benchmark}: {docs} documents of `{source}`")
    return [f"Bits per byte measured on: {'; '.join(parts)}.", ""] if parts else []


def figure_lines(figure: dict[str, list[dict]], layout: Layout) -> list[str]:
    """Figure-1 data as a table: family, model, new tokens and the scores."""
    names = [n for n in layout.plot_scores if n not in ("ifeval_group",)]
    lines = ["## Figure 1 data: scores vs new tokens", "",
             *md_table(["Family", "Model", "New tokens", *names], align="llr" + "r" * len(names))]
    for fam, rows in figure.items():
        for r in rows:
            vals = [value_se(None if r[n] == "" else r[n], digits=4 if n in layout.text_scores else 2)
                    for n in names]
            lines.append(md_row([fam, r["model"], f"{r['new_tokens']:,}", *vals]))
    return [*lines, ""]


def plot_rows(scores: dict[str, dict], models: list[str], cfg: ReportConfig,
              cpt_tokens: int | None, layout: Layout | None = None) -> dict[str, list[dict]]:
    """Rows per family: ``model, new_tokens`` and the scores, sorted by new tokens."""
    family_of = {kind: fam for fam, kinds in cfg.plot_lines.items() for kind in kinds}
    rows: dict[str, list[dict]] = {fam: [] for fam in cfg.plot_lines}
    for model in models:
        fam = family_of.get(model_kind(model))
        if fam is None:
            continue
        tokens = model_budget(model)
        if tokens is None:
            tokens = 0 if model_kind(model) in cfg.origin_models else cpt_tokens
        if tokens is None:
            log.warning("plots: skipping %s (new tokens unknown: set report.cpt_tokens "
                        "or --cpt-tokens, or name it <kind>@<budget>)", model)
            continue
        s, se = scores[model]["scores"], scores[model]["scores_se"]
        names = (layout or LAYOUTS["paper"]).plot_scores
        rows[fam].append({"model": model, "new_tokens": tokens,
                          **{name: "" if s.get(name) is None else s[name] for name in names},
                          **{f"{name}_se": "" if se.get(name) is None else se[name] for name in names}})
    return {fam: sorted(r, key=lambda x: x["new_tokens"]) for fam, r in rows.items()}


def write_plots(plots_dir: Path, rows: dict[str, list[dict]], layout: Layout | None = None) -> list[Path]:
    written = []
    for fam, fam_rows in rows.items():
        path = plots_dir / f"{fam}.csv"
        with atomic_file(path, "w", encoding="utf-8", newline="") as fh:
            names = (layout or LAYOUTS["paper"]).plot_scores
            writer = csv.DictWriter(fh, fieldnames=["model", "new_tokens", *names, *(f"{n}_se" for n in names)])
            writer.writeheader()
            writer.writerows(fam_rows)
        written.append(path)
    return written


def _pick(models: list[str], kind: str, budget: int | None) -> str | None:
    found = [m for m in models if model_kind(m) == kind and model_budget(m) == budget]
    return found[0] if found else None


def _versus(scores: dict, a: str, b: str, name: str) -> str:
    """``x ± se`` of model b's score, and whether it differs from model a's beyond the noise
    (more than two combined standard errors)."""
    va, vb = scores[a]["scores"].get(name), scores[b]["scores"].get(name)
    sa, sb = scores[a]["scores_se"].get(name), scores[b]["scores_se"].get(name)
    if va is None or vb is None:
        return "–"
    digits = 4 if name.endswith("bpb") else 2
    text = value_se(vb, sb, digits)
    if sa is not None and sb is not None:
        noise = 2 * math.hypot(sa, sb)
        text += " (within the noise of" if abs(vb - va) <= noise else " (outside the noise of"
        text += f" {va:.{digits}f})"
    return text


def finding_lines(scores: dict, models: list[str], layout: Layout) -> list[str]:
    """The result first: at the largest budget, instruction following and new knowledge of
    Setting 1 (cpt of the instruct model) and Setting 2 + residual against their ancestors,
    each with its standard error and whether the difference is outside the noise."""
    budgets = sorted({model_budget(m) for m in models if model_budget(m) is not None})
    if not budgets or "ifeval" not in layout.scores:
        return []
    top = budgets[-1]
    base, inst = _pick(models, "base", None), _pick(models, "instruct", None)
    cpt_b, cpt_i = _pick(models, "cpt-base", top), _pick(models, "cpt-instruct", top)
    res = next((m for m in models if model_kind(m) == "cpt-base-res" and model_budget(m) == top), None)
    if not (inst and cpt_i and res):
        return []
    label = f"{top:,} new tokens"
    out = ["## Result", "",
           f"At {label} (one standard error; \"outside the noise\" = more than two combined "
           "standard errors apart):", "",
           f"- instruction following (IFEval mean): instruct {value_se(scores[inst]['scores'].get('ifeval'))}; "
           f"Setting 1, cpt-instruct: {_versus(scores, inst, cpt_i, 'ifeval')}; "
           f"Setting 2 + residual, cpt-base-res: {_versus(scores, inst, res, 'ifeval')}; "
           f"Setting 2 + residual against Setting 1: {_versus(scores, cpt_i, res, 'ifeval')}"]
    knowledge = [n for n in ("d2", "fresh_bpb") if n in layout.scores or n in scores[res]["scores"]]
    for name in knowledge:
        ref = base or inst
        if scores[ref]["scores"].get(name) is None:
            continue
        what = "d2 news knowledge (new)" if name == "d2" else "bits per byte on held-out fresh news (lower: learned)"
        parts = [f"{model_kind(m)}: {_versus(scores, ref, m, name)}" for m in (cpt_b, cpt_i, res) if m]
        own = value_se(scores[ref]["scores"].get(name), digits=4 if name.endswith("bpb") else 2)
        out.append(f"- {what}: {model_kind(ref)} {own}; " + "; ".join(parts))
    if "d1" in layout.scores and base and scores[base]["scores"].get("d1") is not None:
        parts = [f"{model_kind(m)}: {_versus(scores, base, m, 'd1')}" for m in (cpt_b, cpt_i, res) if m]
        out.append(f"- d1 retention (old facts): base {value_se(scores[base]['scores'].get('d1'))}; "
                   + "; ".join(parts))
    return [*out, ""]
