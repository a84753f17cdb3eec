"""Stage ``chain-report@<chain>``: the chain over its update steps.

Per step (the ancestor, then every window in order): instruction following of the merged
model (``cpt-base-res``, Setting 2 chain + residual), of the Setting 1 chain (``cpt-instruct``)
and of the incumbent it was gated against; the gate's decision; and, for every model, the bits
per byte on the held-out news of each window so far and their mean (does January's news
survive March's update? lower is better) and, in a toy world whose d2 events come in monthly
slices, the d2 quiz accuracy on each window's events; per update where its cpt started
(``chain.cpt_from``: the previous update's models or the ancestor's, read from the cpt-base's
lineage) and how far its models drifted from the ancestor (per-layer ``||B_t - B|| / ||B||``,
mean and max over layers: the cpt-base's from ``merge.json``'s ``drift``, the cpt-instruct's
from ``drift-cpt-instruct.json``; :func:`start_and_drift`); and the served block
(:func:`served`): per month, the model served after its gate (``current``: the window and role
of the model, the residual setting it was made with, the number of tries the gate scored and
which it chose) and its scores on the test items (stage ``u-eval-current``: instruction
following, the own window's bits per byte and the mean over every window so far, the d2
quiz). Outputs: ``report.md`` (tables),
``summary.json`` (every number), ``compare.json`` (the last step's scores and every
decision, the DVC metrics ``dvc exp show`` compares chains by), ``steps.csv`` and
``steps.png`` (the same over update steps). The tables and their cells are the main report's
(:func:`freshllm.report.render.md_table`, :func:`~freshllm.report.render.value_se`), the figure is
drawn by :func:`freshllm.figures.line_panels`.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from ..common import atomic_file, write_json
from ..figures import line_panels
from ..report.render import md_row, md_table, value_se
from .config import ANCESTOR, Chain
from .gate import instruction_score, read_json, window_bpb

log = logging.getLogger(__name__)

MODELS = ("cpt-base-res", "cpt-instruct", "cpt-base")  # the eval records of every update, besides the incumbent


def window_quiz(rec: dict, update) -> tuple[float | None, float | None]:
    """(accuracy, standard error) of the d2 quiz items about the events of ``update``'s months."""
    quiz = (rec.get("windows") or {}).get("toy_d2") or {}
    slices = quiz.get("slices")
    if not slices:
        return None, None
    from ..synthetic.toyworld import month_number

    first, last = (month_number(d.isoformat()[:7]) for d in update.dates)
    ks = sorted({n % slices for n in range(first, last + 1)})  # as d2_slice_of_month, per month
    rows = [quiz.get(f"slice-{k}") for k in ks]
    if not rows or None in rows:
        return None, None
    n = sum(r["items"] for r in rows)
    acc = sum(r["acc"] * r["items"] for r in rows) / n
    se = math.sqrt(sum((r["items"] * (r["stderr"] or 0.0)) ** 2 for r in rows)) / n
    return acc, se


def _drift_of(path: Path) -> dict | None:
    """``{mean, max}`` of a drift record (``drift`` of a merge record, or a drift file), or None."""
    if not path.is_file():
        return None
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    d = data.get("drift", data) if path.name == "merge.json" else data
    if not isinstance(d, dict) or d.get("mean") is None:
        return None
    return {"mean": d.get("mean"), "max": d.get("max")}


def start_and_drift(records_dir: Path, window: str) -> dict:
    """Where ``window``'s cpt started (its cpt-base's parent: ``ancestor`` or a window) and the
    drift from the ancestor of its cpt-base (``merge.json``'s ``drift``) and cpt-instruct
    (``drift-cpt-instruct.json``); None where a record lacks it."""
    base = Path(records_dir) / window
    lineage = base / "lineage-cpt-base.json"
    cpt_from = None
    if lineage.is_file():
        parent = read_json(lineage, f"the cpt-base lineage of {window}").get("parent") or {}
        cpt_from = parent.get("window") or ANCESTOR
    return {"cpt_from": cpt_from, "drift": {"cpt-base": _drift_of(base / "merge.json"),
                                            "cpt-instruct": _drift_of(base / "drift-cpt-instruct.json")}}


def chain_mode(rows: list[dict]) -> str:
    """``previous`` when a later update started from its parent, ``ancestor`` when every one
    started from the ancestor (a one-window chain: both, said so)."""
    starts = [r.get("start", {}).get("cpt_from") for r in rows if r.get("start")]
    if any(s not in (None, ANCESTOR) for s in starts):
        return "previous"
    return "ancestor" if len(starts) > 1 else "previous or ancestor (one update)"


def render_start_and_drift(chain: Chain, rows: list[dict]) -> list[str]:
    """Markdown: per update, where its cpt started, the drift, the merged model's instruction
    following and its scores on its own window."""
    steps = [r for r in rows if r.get("start")]
    if not steps:
        return []
    lines = ["", f"**Start and drift** (chain.cpt_from: {chain_mode(rows)}): drift = per-layer "
             "||M_t - M_0|| / ||M_0|| from the ancestor's model (mean / max over layers); the merged model's "
             "instruction following and its scores on the update's own window", ""]

    def d(x):
        return f"{value_se(x['mean'], digits=4)} / {value_se(x['max'], digits=4)}" if x else "–"

    table = []
    for r in steps:
        m, w = r["models"]["cpt-base-res"], r["window"]
        table.append([w, r["start"]["cpt_from"] or "–", d(r["start"]["drift"]["cpt-base"]),
                      d(r["start"]["drift"]["cpt-instruct"]), value_se(m["ifeval"], m["ifeval_se"]),
                      value_se(m["quiz"].get(w), m["quiz_se"].get(w), scale=100.0),
                      value_se(m["bpb"].get(w), m["bpb_se"].get(w), digits=4)])
    return lines + md_table(["step", "cpt from", "drift cpt-base mean / max", "drift cpt-instruct mean / max",
                             "IFEval, cpt-base + residual", "quiz, own window", "bpb, own window"], table,
                            align="llrrrrr")


def start_and_drift_metrics(rows: list[dict]) -> dict:
    """Flat ``<window>.drift_{mean,max}.<model>`` of every update, for compare.json."""
    out = {}
    for r in rows:
        for name, dr in ((r.get("start") or {}).get("drift") or {}).items():
            for key in ("mean", "max"):
                if dr and dr.get(key) is not None:
                    out[f"{r['window']}.drift_{key}.{name}"] = dr[key]
    return out


def collect(chain: Chain, records_dir: Path) -> list[dict]:
    """One row per step: scores of every model and the gate's decision."""
    steps = []
    ancestor_eval = None
    for i, update in enumerate(chain.updates):
        base = Path(records_dir) / update.window
        evals = {m: read_json(base / "eval" / f"{m}.json", f"the eval of {m} @ {update.window}") for m in MODELS}
        evals["incumbent"] = read_json(base / "eval" / "incumbent.json", f"the incumbent's eval @ {update.window}")
        if i == 0:
            ancestor_eval = evals["incumbent"]
        steps.append({"window": update.window, "update": update, "evals": evals,
                      "record": read_json(base / "promote.json", f"the promotion record of {update.window}")})
    rows = []
    if ancestor_eval is not None:  # the ancestor instruct model, as the first gate scored it
        rows.append({"window": ANCESTOR, "evals": {"cpt-base-res": ancestor_eval, "cpt-instruct": ancestor_eval},
                     "record": read_json(Path(records_dir) / ANCESTOR / "promote.json", "the ancestor's record")})
    rows += steps
    out = []
    windows = chain.windows
    for row in rows:
        scores: dict = {"window": row["window"], "promoted": row["record"].get("promoted"),
                        "current": row["record"].get("current", {}).get("window"),
                        "reasons": row["record"].get("reasons"), "models": {}}
        seen = windows[: windows.index(row["window"]) + 1] if row["window"] in windows else windows[:1]
        for name, rec in row["evals"].items():
            ifv, ifse = instruction_score(rec, "ifeval")
            bpb = {w: window_bpb(rec, w) for w in seen}
            vals = [v for v, _ in bpb.values() if v is not None]
            quiz = {w: window_quiz(rec, chain.get(w)) for w in seen}
            qvals = [v for v, _ in quiz.values() if v is not None]
            scores["models"][name] = {
                "ifeval": ifv, "ifeval_se": ifse,
                "bpb": {w: v for w, (v, _) in bpb.items()}, "bpb_se": {w: s for w, (_, s) in bpb.items()},
                "bpb_mean": sum(vals) / len(vals) if len(vals) == len(seen) else None,
                "quiz": {w: v for w, (v, _) in quiz.items()}, "quiz_se": {w: s for w, (_, s) in quiz.items()},
                "quiz_mean": sum(qvals) / len(qvals) if qvals and len(qvals) == len(seen) else None}
        if row["window"] != ANCESTOR:
            scores["start"] = start_and_drift(records_dir, row["window"])
        out.append(scores)
    return out


def render(chain: Chain, rows: list[dict]) -> str:
    windows = chain.windows
    lines = ["# Chained updates", "",
             "One row per update step (the ancestor instruct model first). Instruction following: the "
             "mean of the IFEval metrics x100 ± one standard error; the gate compares each update's merged "
             "model (Setting 2 chain + residual) with the model promoted before it, on the same items.", "",
             *md_table(["step", "IFEval, cpt-base + residual", "IFEval, cpt-instruct (Setting 1)", "promoted",
                        "current after"],
                       [[r["window"], *(value_se(r["models"][m]["ifeval"], r["models"][m]["ifeval_se"])
                                        for m in ("cpt-base-res", "cpt-instruct")),
                         "yes" if r["promoted"] else "no", str(r["current"])] for r in rows], align="lrrll")]
    for name, title in (("cpt-base-res", "cpt-base + residual"), ("cpt-instruct", "cpt-instruct (Setting 1)"),
                        ("cpt-base", "cpt-base (Setting 2, no residual)")):
        present = [r for r in rows if name in r["models"]]
        for key, label, scale, digits in (("bpb", "bits per byte on each window's held-out news (lower: knows it)", 1.0, 4),
                                          ("quiz", "d2 quiz accuracy x100 on each window's events", 100.0, 2)):
            if not any(v is not None for r in present for v in r["models"][name][key].values()):
                continue
            lines += ["", f"**{title}**: {label}", "", *md_table(["step", *windows, "mean"])]
            for r in present:
                s = r["models"][name]
                cells = [value_se(s[key].get(w), s[f"{key}_se"].get(w), digits, scale) if w in s[key] else ""
                         for w in windows]
                lines.append(md_row([r["window"], *cells, value_se(s[f"{key}_mean"], None, digits, scale)]))
    lines += render_start_and_drift(chain, rows)
    lines += ["", "Gate decisions:", ""]
    lines += [f"- {r['window']}: " + "; ".join(r["reasons"] or []) for r in rows]
    return "\n".join(lines) + "\n"


def summary(rows: list[dict]) -> dict:
    """Every number (``steps``); ``final``: the last step's scores per model, with each window's
    bits per byte and quiz accuracy (is January still known after March?); ``step``: the
    instruction following and the own window's scores of every step; ``promoted``."""
    final = rows[-1]["models"] if rows else {}
    flat = {f"{key}.{name}": s[key] for name, s in final.items()
            for key in ("ifeval", "ifeval_se", "bpb_mean", "quiz_mean") if s.get(key) is not None}
    for name, s in final.items():
        for key in ("bpb", "bpb_se", "quiz", "quiz_se"):
            flat.update({f"{key}.{name}.{w}": v for w, v in s[key].items() if v is not None})
    steps = {}
    for r in rows:
        for name, s in r["models"].items():
            for key in ("ifeval", "ifeval_se", "bpb_mean", "quiz_mean"):
                if s.get(key) is not None:
                    steps[f"{r['window']}.{key}.{name}"] = s[key]
    steps.update(start_and_drift_metrics(rows))
    return {"steps": rows, "final": flat, "step": steps,
            "promoted": {r["window"]: r["promoted"] for r in rows}}


def write_steps(rows: list[dict], windows: list[str], csv_path: Path, png_path: Path) -> None:
    cols = ["step", "window", "model", "ifeval", "ifeval_se", "bpb_mean", "quiz_mean",
            *[f"bpb_{w}" for w in windows], *[f"quiz_{w}" for w in windows]]
    with atomic_file(csv_path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for i, r in enumerate(rows):
            for name, s in r["models"].items():
                w.writerow([i, r["window"], name, s["ifeval"], s["ifeval_se"], s["bpb_mean"], s["quiz_mean"],
                            *[s["bpb"].get(x) for x in windows], *[s["quiz"].get(x) for x in windows]])
    line_panels(step_panels(rows, windows), png_path, xticks=[r["window"] for r in rows], xlabel="update step")


def step_panels(rows: list[dict], windows: list[str]) -> list[dict]:
    """The figure's panels (:func:`freshllm.figures.line_panels`), x = the step: instruction
    following of the merged model and of the Setting 1 chain; the merged model's bits per byte on
    each window's news and, in a toy world with d2 slices, its quiz accuracy on each window's events."""
    ifeval = {}
    for name in ("cpt-base-res", "cpt-instruct"):
        scores = [r["models"].get(name, {}) for r in rows]
        ifeval[name] = [(i, s.get("ifeval"), s.get("ifeval_se")) for i, s in enumerate(scores)]
    panels = [{"title": "instruction following (IFEval mean x100)", "lines": ifeval}]
    has_quiz = any(v is not None for r in rows for s in r["models"].values() for v in s["quiz"].values())
    for key, title in (("bpb", "held-out news bits per byte, cpt-base + residual"),
                       ("quiz", "d2 quiz accuracy, cpt-base + residual")):
        if key == "quiz" and not has_quiz:
            continue
        merged = [r["models"]["cpt-base-res"] for r in rows]
        panels.append({"title": title, "lines": {
            f"window {w}": [(i, s[key][w], s[f"{key}_se"].get(w)) for i, s in enumerate(merged)
                            if s[key].get(w) is not None] for w in windows}})
    return panels


def served(chain: Chain, records_dir: Path) -> list[dict]:
    """Per window: what is served after its gate (see the module doc) and its test scores."""
    out = []
    settings: dict[str, dict | None] = {}  # weights hash -> the setting that made it (its gate's record)
    for update in chain.updates:
        base = Path(records_dir) / update.window
        rec = read_json(base / "promote.json", f"the promotion record of {update.window}")
        ev = read_json(base / "eval" / "current.json", f"the eval of the served model @ {update.window}")
        if rec.get("promoted"):
            settings[rec["current"]["weights_sha256"]] = rec.get("setting")
        seen = chain.earlier(update.window)
        ifv, ifse = instruction_score(ev, "ifeval")
        bpb = {w: window_bpb(ev, w)[0] for w in seen}
        quiz = [window_quiz(ev, chain.get(w))[0] for w in seen]
        out.append({"window": update.window, "promoted": rec.get("promoted"),
                    "served": rec.get("current", {}).get("window"), "role": rec.get("current", {}).get("role"),
                    "chosen": rec.get("chosen"), "setting": settings.get(rec.get("current", {}).get("weights_sha256")),
                    "tries": len(rec.get("tries") or []), "ifeval": ifv, "ifeval_se": ifse,
                    "bpb_own": bpb.get(update.window), "bpb_own_se": window_bpb(ev, update.window)[1],
                    "bpb_mean": sum(bpb.values()) / len(bpb) if None not in bpb.values() else None,
                    "quiz_mean": sum(quiz) / len(quiz) if quiz and None not in quiz else None})
    return out


def _setting_text(setting: dict | None) -> str:
    if not setting:
        return "–"
    keys = ("alpha", "beta", "method", "density")
    return ", ".join(f"{k} {setting[k]}" for k in keys if k in setting)


def render_served(rows: list[dict]) -> str:
    lines = ["", "## What is served", "",
             "After each month's gate: the model served (`models/updates/<w>/current`), the residual setting "
             "it was made with, the tries the gate scored on the validation split (the candidate, then "
             "`promote.retry` when it failed) and the one it chose, and the served model's scores on the "
             "test items (stage `u-eval-current`).", "",
             *md_table(["month", "served", "setting", "tries", "chosen", "IFEval", "bpb own window", "bpb mean",
                        "d2 quiz mean x100"],
                       [[r["window"], f"{r['role']} @ {r['served']}", _setting_text(r["setting"]), str(r["tries"]),
                         str(r["chosen"] or "none: incumbent kept"), value_se(r["ifeval"], r["ifeval_se"]),
                         value_se(r["bpb_own"], r["bpb_own_se"], digits=4), value_se(r["bpb_mean"], digits=4),
                         value_se(r["quiz_mean"], scale=100.0)] for r in rows], align="lllrlrrrr")]
    return "\n".join(lines) + "\n"


def run(chain: Chain, records_dir: Path, markdown: Path, summary_path: Path, compare_path: Path,
        csv_path: Path, png_path: Path) -> dict:
    rows = collect(chain, records_dir)
    served_rows = served(chain, records_dir)
    with atomic_file(markdown, "w", encoding="utf-8") as fh:
        fh.write(render(chain, rows))
        fh.write(render_served(served_rows))
    result = summary(rows)
    result["served"] = served_rows
    write_json(summary_path, result)
    write_json(compare_path, {**{k: result[k] for k in ("final", "step", "promoted")},
                              "served": {f"{r['window']}.{k}": r[k] for r in served_rows
                                         for k in ("ifeval", "bpb_own", "bpb_mean", "quiz_mean", "tries")
                                         if r[k] is not None}})
    write_steps(rows, chain.windows, csv_path, png_path)
    log.info("chain report: %d steps -> %s", len(rows), markdown)
    return result
