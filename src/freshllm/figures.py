"""Stage ``figures``: PNG renderings of the plots, viewable without internet.

``dvc plots show`` writes HTML that loads vega from a CDN (blank offline); this stage
draws the same data with matplotlib:

* ``figure1.png``: instruction following (IFEval mean), the suite's sub-averages (and, for the
  toy world, d2 knowledge and d1 retention) and the average vs new tokens, one line per family
  (base, instruct, base + residual), like the paper's Figure 1, next to what the update is for:
  bits per byte on the held-out fresh news and on known text (lower is better; the report's
  ``fresh_bpb`` / ``known_bpb`` columns), with one-standard-error bars
  (the report's ``<score>_se`` columns) and a log x axis when the budgets span 10x or more;
  the panels are the score columns the report wrote (a column with no value, or a copy of an
  earlier one, is skipped);
* ``loss.png``: training loss per step of every cpt run (from the dvclive logs).

The drawing helpers serve other stages too (:func:`line_panels`: the chain report's steps).
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
from pathlib import Path

from .common import atomic_file, setup_logging

log = logging.getLogger(__name__)

TITLES = {"ifeval": "IFEval (mean of 4 metrics)", "ifeval_group": "instruction-following sub-average",
          "reasoning_group": "reasoning sub-average", "knowledge_group": "knowledge sub-average",
          "d2": "d2 news (new knowledge)", "d1": "d1 facts (retention)", "avg": "average",
          "fresh_bpb": "fresh news (held out), bits per byte", "known_bpb": "known text, bits per byte"}
LOWER_IS_BETTER = ("fresh_bpb", "known_bpb")  # raw bits per byte, not scores x100
ID_COLUMNS = ("model", "new_tokens")
SE_SUFFIX = "_se"  # a score's standard error column: drawn as error bars, not as a panel


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _save(fig, out: Path) -> None:
    with atomic_file(out, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")


def panel_columns(data: dict[Path, list[dict]]) -> list[str]:
    """Score columns in first-seen order, without empty columns and exact copies of earlier ones."""
    columns: list[str] = []
    for rows in data.values():
        for row in rows:
            columns += [c for c in row if c not in ID_COLUMNS and not c.endswith(SE_SUFFIX) and c not in columns]
    series = {c: [row.get(c) or "" for rows in data.values() for row in rows] for c in columns}
    kept: list[str] = []
    for c in columns:
        if any(series[c]) and all(series[c] != series[k] for k in kept):
            kept.append(c)
    if not kept:
        raise ValueError(f"no score column with a value in {', '.join(str(f) for f in data)}")
    return kept


def read_plots(plots_dir: Path) -> dict[Path, list[dict]]:
    """The report's plot CSVs, one per family, rows by new tokens."""
    files = sorted(plots_dir.glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no plot CSVs in {plots_dir} (run the report stage)")
    return {f: sorted(read_csv(f), key=lambda r: int(r["new_tokens"])) for f in files}


def figure1(data: dict[Path, list[dict]], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = panel_columns(data)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    axes = axes[0]
    budgets = sorted({int(r["new_tokens"]) for rows in data.values() for r in rows if int(r["new_tokens"]) > 0})
    log_x = len(budgets) >= 2 and budgets[-1] >= 10 * budgets[0]  # budgets 10x apart: log scale
    for ax, key in zip(axes, panels):
        for f, rows in data.items():
            pts = [(int(r["new_tokens"]), float(r[key]), float(r.get(key + SE_SUFFIX) or 0.0))
                   for r in rows if r.get(key) not in (None, "")]
            if pts:
                # symlog keeps the ancestors (0 new tokens) on a log axis
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                            marker="o", capsize=3, label=f.stem)
        if log_x:
            ax.set_xscale("symlog", linthresh=budgets[0])
        ax.set_title(TITLES.get(key, key), fontsize=10)
        ax.set_xlabel("new tokens" + (" (log)" if log_x else ""))
        ax.set_ylabel("bits per byte (lower is better)" if key in LOWER_IS_BETTER else "score x100")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8)
    _save(fig, out)
    plt.close(fig)


def pareto(points: list[dict], out: Path, xlabel: str, ylabel: str, title: str = "") -> None:
    """One labelled point per entry (``label``, ``x``, ``y``, optional ``x_se`` / ``y_se``
    error bars, ``front``: drawn filled and joined when on the Pareto front, hollow
    otherwise; ``anchor``: a reference model, drawn as a grey square; ``group``: points of
    one group share a colour, named in a legend, e.g. one group per model size)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    groups = list(dict.fromkeys(p["group"] for p in points if p.get("group") is not None))
    for i, g in enumerate(groups):
        ax.plot([], [], "o", color=f"C{i + 2}", label=g)
    for p in points:
        color = ("0.45" if p.get("anchor") else f"C{groups.index(p['group']) + 2}" if p.get("group") in groups
                 else "C0" if p.get("front") else "C1")
        ax.errorbar([p["x"]], [p["y"]], xerr=[p.get("x_se") or 0.0], yerr=[p.get("y_se") or 0.0],
                    fmt="s" if p.get("anchor") else "o", color=color, capsize=3,
                    mfc=color if p.get("front") or p.get("anchor") else "white")
        ax.annotate(p["label"], (p["x"], p["y"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for i, g in enumerate(groups or [None]):
        front = sorted((p for p in points if p.get("front") and p.get("group") == g), key=lambda p: p["x"])
        if len(front) > 1:
            ax.plot([p["x"] for p in front], [p["y"] for p in front], color=f"C{i + 2}" if groups else "C0",
                    alpha=0.4, lw=1)
    if groups:
        ax.legend(fontsize=8, loc="best")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    _save(fig, out)
    plt.close(fig)


def line_panels(panels: list[dict], out: Path, xticks: list[str] | None = None, xlabel: str = "",
                size: tuple[float, float] = (5.0, 4.0)) -> None:
    """Panels side by side (each ``size`` inches), one dict each: ``title``, optional ``ylabel``
    and ``lines``: ``{label: [(x, y, se), ...]}``, drawn as lines with one-standard-error bars
    (``se`` None: no bar; ``y`` None: a gap; a line without points is left out); ``xticks``:
    the labels of x = 0, 1, ... (e.g. the steps of a chain), slanted; ``xlabel`` under each panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError(f"{out}: no panel to draw")
    fig, axes = plt.subplots(1, len(panels), figsize=(size[0] * len(panels), size[1]), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        lines = {label: pts for label, pts in panel["lines"].items() if pts}
        for label, pts in lines.items():
            ax.errorbar([p[0] for p in pts], [float("nan") if p[1] is None else p[1] for p in pts],
                        yerr=[p[2] or 0.0 for p in pts], marker="o", capsize=3, label=label)
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(xlabel)
        if panel.get("ylabel"):
            ax.set_ylabel(panel["ylabel"])
        if xticks is not None:
            ax.set_xticks(range(len(xticks)), xticks, rotation=30)
        ax.grid(alpha=0.3)
        if lines:
            ax.legend(fontsize=7)
    _save(fig, out)
    plt.close(fig)


def grid_runs(data: dict[Path, list[dict]]) -> set[str] | None:
    """dvclive run names (``cpt-<variant>-<budget>``) of the cpt models in the report's plot
    CSVs, which hold exactly the current grid; None when they name no cpt model."""
    runs = set()
    for rows in data.values():
        for row in rows:
            m = re.fullmatch(r"cpt-(base|instruct)@(.+)", row.get("model", ""))
            if m:
                runs.add(f"cpt-{m.group(1)}-{m.group(2)}")
    return runs or None


def loss_curves(live_root: Path, out: Path, only: set[str] | None = None) -> list[str]:
    """Loss per step of each dvclive run (of ``only``, when given: runs of budgets no longer
    in the grid stay in the dvclive directory but are not drawn)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(f for f in live_root.glob("*/plots/metrics/train/loss.tsv")
                  if only is None or f.parents[3].name in only)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for f in runs:
        with open(f, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows],
                label=f.parents[3].name)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    if runs:
        ax.legend(fontsize=8)
    _save(fig, out)
    plt.close(fig)
    return [f.parents[3].name for f in runs]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plots-dir", required=True, type=Path, help="CSVs from the report stage")
    ap.add_argument("--live-dir", required=True, type=Path, help="root of the dvclive directories")
    ap.add_argument("--out", required=True, type=Path, help="directory for the PNGs")
    args = ap.parse_args(argv)
    setup_logging()
    args.out.mkdir(parents=True, exist_ok=True)
    data = read_plots(args.plots_dir)
    figure1(data, args.out / "figure1.png")
    loss_curves(args.live_dir, args.out / "loss.png", grid_runs(data))
    log.info("wrote %s", ", ".join(str(args.out / n) for n in ("figure1.png", "loss.png")))


if __name__ == "__main__":
    main()
