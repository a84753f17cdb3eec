"""The real-weights tables (``profiles/real-smollm2.yaml``): the paper's comparison on a real
trained model, over one or more runs (``--run DIR`` repeated, e.g. one per training seed).

(a) **Setting 1 on the released instruct model**: the profile's ``base`` is the released
    SmolLM2-135M-Instruct, so ``base`` vs ``cpt-base@<budget>`` is continued pre-training of
    an instruct model, scored with its own chat template.
(b) **The residual method at real geometry**: ``instruct`` (base + a short SFT on the toy
    world's chats), ``cpt-instruct@<budget>`` (Setting 1), ``cpt-base@<budget>`` and
    ``cpt-base-res@<budget>`` (Setting 2 + the residual).

Columns (x100 but bits per byte): IFEval twin (the paper suite's local IFEval, real-world
prompts; mean of lm-eval's 4 metrics), Toy IFEval (the same checkers on the toy world's
prompts), d2 quiz (the new knowledge, chance 25), retention (mean acc_norm of the ARC-Easy,
Hellaswag and PIQA twins: real-world items), fresh-news and known-text bits per byte.
With several runs each figure is the mean ± the standard error over runs (sd / sqrt(n)); with
one run, lm-eval's standard error. Wall times come from each run's cpt and eval metrics.

    python -m freshllm.report.real --run runs/real-s0 --run runs/real-s1 --run runs/real-s2 \\
        --markdown docs/evidence/real-smollm2.md --json docs/evidence/real-smollm2.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from ..common import atomic_file, setup_logging, user_errors, write_json
from ..config import read_params
from ..names import model_name
from . import ReportError, load_evals

IFEVAL_KEYS = ("inst_level_loose_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "prompt_level_strict_acc")
RETENTION = {"arc_easy": "acc_norm", "hellaswag": "acc_norm", "piqa": "acc_norm"}
COLUMNS = {"ifeval_twin": "IFEval twin", "toy_ifeval": "Toy IFEval", "d2": "d2 quiz",
           "retention": "retention", "fresh_bpb": "fresh bpb", "known_bpb": "known bpb"}


def _mean(pairs: list[tuple[float, float | None]]) -> tuple[float, float | None]:
    value = sum(v for v, _ in pairs) / len(pairs)
    ses = [s for _, s in pairs]
    se = None if None in ses else math.sqrt(sum(s * s for s in ses)) / len(pairs)
    return value, se


def figures(rec: dict) -> dict[str, tuple[float, float | None]]:
    """The table's figures of one eval JSON: ``{column: (value, standard error)}``."""
    res, err = rec.get("results", {}), rec.get("stderr", {})

    def one(task: str, key: str, scale: float = 100.0):
        v = res.get(task, {}).get(key)
        s = err.get(task, {}).get(key)
        return None if v is None else (v * scale, None if s is None else s * scale)

    out = {}
    for col, task in (("ifeval_twin", "ifeval"), ("toy_ifeval", "toy_ifeval")):
        parts = [one(task, k) for k in IFEVAL_KEYS]
        if None not in parts:
            out[col] = _mean(parts)
    if (d2 := one("toy_d2", "acc")) is not None:
        out["d2"] = d2
    parts = [one(t, k) for t, k in RETENTION.items()]
    if None not in parts:
        out["retention"] = _mean(parts)
    for col in ("fresh_bpb", "known_bpb"):
        if (b := one(col, "bits_per_byte", 1.0)) is not None:
            out[col] = b
    return out


KEPT = {"if_kept": "IF kept (toy IFEval / instruct's)", "d2_kept": "d2 kept (of cpt-base's gain)",
        "bpb_kept": "bpb kept (of cpt-base's gain)"}


def kept(tables: dict, budget: str) -> dict[str, tuple[float, None]]:
    """The size-curve point of one run at ``budget``, as report.methods defines it: IF kept =
    merged / instruct (toy IFEval); d2 kept and bpb kept = the share of cpt-base's gain over the
    base that cpt-base + residual keeps."""
    base, inst = tables["base"], tables["instruct"]
    cpt, res = tables[f"cpt-base@{budget}"], tables[f"cpt-base-res@{budget}"]
    out = {}

    def has(col, *ms):
        return all(col in m for m in ms)

    if has("toy_ifeval", inst, res) and inst["toy_ifeval"][0]:
        out["if_kept"] = (res["toy_ifeval"][0] / inst["toy_ifeval"][0], None)
    if has("d2", base, cpt, res) and cpt["d2"][0] != base["d2"][0]:
        out["d2_kept"] = ((res["d2"][0] - base["d2"][0]) / (cpt["d2"][0] - base["d2"][0]), None)
    if has("fresh_bpb", base, cpt, res) and cpt["fresh_bpb"][0] != base["fresh_bpb"][0]:
        out["bpb_kept"] = ((base["fresh_bpb"][0] - res["fresh_bpb"][0])
                           / (base["fresh_bpb"][0] - cpt["fresh_bpb"][0]), None)
    return out


def run_tables(run: Path) -> tuple[dict, dict]:
    """``({model: figures}, {"cpt_seconds": {...}, ...})`` of one run directory."""
    params = read_params(run / "params.yaml")
    family, budgets = str(params["target"]), [str(b) for b in params["budgets"]]
    evals = load_evals(run / "metrics" / "eval")
    names = {"base": model_name("base", family), "instruct": model_name("instruct", family)}
    for b in budgets:
        for kind in ("cpt-base", "cpt-instruct"):
            names[f"{kind}@{b}"] = model_name(kind, None, b)
        names[f"cpt-base-res@{b}"] = model_name("cpt-base-res", family, b)
    missing = [n for n in names.values() if n not in evals]
    if missing:
        raise ReportError(f"{run}: no eval results for {missing}")
    tables = {key: figures(evals[name]) for key, name in names.items()}
    for b in budgets:
        tables[f"kept@{b}"] = kept(tables, b)
    times = {}
    for f in sorted((run / "metrics" / "cpt").glob("*.json")):
        times[f"cpt {f.stem}"] = json.loads(f.read_text()).get("train_seconds")
    wall = run / "wall.txt"
    if wall.is_file():
        times["dvc repro"] = float(wall.read_text().split()[1])
    return tables, {"budgets": budgets, "seconds": times}


def combine(runs: list[tuple[dict, dict]]) -> tuple[dict, dict]:
    """Mean ± SE over runs (lm-eval's SE when there is one run)."""
    tables = [t for t, _ in runs]
    out = {}
    for model in tables[0]:
        out[model] = {}
        for col in (*COLUMNS, *KEPT):
            vals = [t[model][col] for t in tables if col in t.get(model, {})]
            if len(vals) != len(tables):
                continue
            if len(vals) == 1:
                out[model][col] = vals[0]
            else:
                xs = [v for v, _ in vals]
                out[model][col] = (statistics.fmean(xs), statistics.stdev(xs) / math.sqrt(len(xs)))
    seconds = {}
    for _, meta in runs:
        for k, v in meta["seconds"].items():
            if v is not None:
                seconds.setdefault(k, []).append(v)
    return out, {"budgets": runs[0][1]["budgets"], "runs": len(runs),
                 "seconds": {k: statistics.fmean(v) for k, v in seconds.items()}}


def _cell(fig: tuple[float, float | None] | None, bpb: bool) -> str:
    if fig is None:
        return "–"
    v, s = fig
    f = "{:.3f}" if bpb else "{:.1f}"
    return f.format(v) + ("" if s is None else " ± " + f.format(s))


def _table(rows: list[tuple[str, str]], table: dict) -> list[str]:
    lines = ["| model | " + " | ".join(COLUMNS.values()) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for label, key in rows:
        figs = table.get(key, {})
        lines.append(f"| {label} | " + " | ".join(_cell(figs.get(c), c.endswith("bpb")) for c in COLUMNS) + " |")
    return lines


def render(table: dict, meta: dict) -> str:
    budgets = meta["budgets"]
    how = (f"mean ± standard error over {meta['runs']} runs" if meta["runs"] > 1
           else "one run, ± lm-eval's standard error")
    a = [("released SmolLM2-135M-Instruct (before)", "base")] + \
        [(f"after cpt on {b} new tokens (Setting 1)", f"cpt-base@{b}") for b in budgets]
    b_rows = [("instruct = real + toy SFT", "instruct")]
    for b in budgets:
        b_rows += [(f"cpt-instruct@{b} (Setting 1)", f"cpt-instruct@{b}"), (f"cpt-base@{b}", f"cpt-base@{b}"),
                   (f"cpt-base@{b} + residual (Setting 2)", f"cpt-base-res@{b}")]
    lines = [f"Scores x100 (bits per byte as they are, lower is better); {how}.", "",
             "(a) Setting 1 on the released instruct model", "", *_table(a, table), "",
             "(b) The residual method at real geometry (the residual is the toy SFT's delta)", "",
             *_table(b_rows, table), ""]
    lines += ["Retention at this size (the size curve's point; mean ± SE over runs where there are several)", "",
              "| budget | " + " | ".join(KEPT.values()) + " |", "|---|" + "---:|" * len(KEPT)]
    for b in budgets:
        figs = table.get(f"kept@{b}", {})
        lines.append(f"| {b} | " + " | ".join(_cell(figs.get(k), True) for k in KEPT) + " |")
    lines.append("")
    if meta["seconds"]:
        lines += ["Wall times (seconds, mean over runs): " + ", ".join(
            f"{k} {v:,.0f}" for k, v in sorted(meta["seconds"].items())), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, type=Path, help="a run directory (repeatable)")
    ap.add_argument("--markdown", required=True, type=Path)
    ap.add_argument("--json", required=True, type=Path)
    args = ap.parse_args(argv)
    setup_logging()
    with user_errors("report.real", ReportError):
        table, meta = combine([run_tables(r) for r in args.run])
        write_json(args.json, {"table": table, **meta})
        with atomic_file(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(render(table, meta))
    print(args.markdown.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
