"""How much of each update base + residual keeps, across a ``dvc exp`` grid of settings.

For one budget, per experiment: instruction following kept (IFEval of cpt-base-res over the
instruct model's), new knowledge kept (cpt-base-res's d2 gain over the base, as a share of
cpt-base's gain; the same with fresh-news bits per byte), and their product, each with a
standard error by the delta method from the eval's standard errors (each score's taken as
independent: conservative, since every model answers the same items). Rows are ranked by
the product; a row "wins" over the default only when the two products are more than two
combined standard errors apart.

    dvc exp show --json > exps.json
    python -m freshllm.report.grid --exp-json exps.json --vary residual.alpha,residual.modules \\
        --budget 200K --markdown metrics/grid.md --json metrics/grid.json

Each experiment's ``metrics/summary.json`` (scores and standard errors) is read from its
commit (``git show``), so run it in the repository that ran the grid.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import yaml

from ..common import setup_logging, user_errors
from ..names import model_name
from .exps import ExpsError, finished, git_file, key_of, load

log = logging.getLogger(__name__)
SUMMARY = "metrics/summary.json"


def _ratio(a: float, sa: float, b: float, sb: float) -> tuple[float | None, float | None]:
    """a / b and its delta-method standard error."""
    if b == 0:
        return None, None
    return a / b, math.hypot(sa / b, a * sb / b**2)


def kept(summary: dict, family: str, budget: str, res: str | None = None) -> dict:
    """The shares base + residual keeps at ``budget`` (from a summary.json); ``res``: the
    model to score instead of ``cpt-base-res+<family>@<budget>`` (a named merge setting,
    report.methods; its figures stay under the ``cpt-base-res`` keys)."""
    base, inst = model_name("base", family), model_name("instruct", family)
    cptb = model_name("cpt-base", budget=budget)
    res = res or model_name("cpt-base-res", family, budget)

    def v(score, m):
        try:
            return float(summary[score][m]), float(summary["stderr"][score][m])
        except KeyError:
            raise ExpsError(f"{SUMMARY}: no {score} score (with standard error) for {m}") from None

    out: dict = {"models": {"base": base, "instruct": inst, "cpt-base": cptb, "cpt-base-res": res}}
    (ri, si), (ii, sii) = v("ifeval", res), v("ifeval", inst)
    out["ifeval"] = {"cpt-base-res": ri, "cpt-base-res_se": si, "instruct": ii}
    out["if_kept"], out["if_kept_se"] = _ratio(ri, si, ii, sii)
    (rd, srd), (bd, sbd), (cd, scd) = v("d2", res), v("d2", base), v("d2", cptb)
    out["d2"] = {"cpt-base-res": rd, "cpt-base": cd, "base": bd}
    out["d2_kept"], out["d2_kept_se"] = _ratio(rd - bd, math.hypot(srd, sbd), cd - bd, math.hypot(scd, sbd))
    if "fresh_bpb" in summary:
        (rb, srb), (bb, sbb), (cb, scb) = v("fresh_bpb", res), v("fresh_bpb", base), v("fresh_bpb", cptb)
        out["fresh_bpb"] = {"cpt-base-res": rb, "cpt-base": cb, "base": bb}
        out["bpb_kept"], out["bpb_kept_se"] = _ratio(bb - rb, math.hypot(srb, sbb), bb - cb, math.hypot(scb, sbb))
    a, sa, b, sb = out["if_kept"], out["if_kept_se"], out["d2_kept"], out["d2_kept_se"]
    if a is not None and b is not None:
        out["both"] = a * b
        out["both_se"] = math.hypot(sa * b, sb * a)
    else:
        out["both"] = out["both_se"] = None
    return out


def rows(shown: list, repo: Path, vary: list[str], family: str, budget: str) -> list[dict]:
    seen: dict[tuple, dict] = {}
    for rev, label, params, _metrics in finished(shown):
        key = key_of(params, vary, label)
        if key in seen:
            continue
        row = {"exp": label, "rev": rev, "setting": dict(zip(vary, key)),
               **kept(git_file(repo, rev, SUMMARY), family, budget)}
        seen[key] = row
    return sorted(seen.values(), key=lambda r: -(r["both"] if r["both"] is not None else -math.inf))


def mark_default(table: list[dict], defaults: dict) -> dict | None:
    default = next((r for r in table if r["setting"] == defaults), None)
    for r in table:
        r["default"] = r is default
        if default is None or r is default or r["both"] is None or default["both"] is None:
            r["vs_default"] = None
            continue
        gap, noise = r["both"] - default["both"], 2 * math.hypot(r["both_se"], default["both_se"])
        r["vs_default"] = ("wins" if gap > noise else "loses" if gap < -noise else "within the noise")
    return default


def _pm(x, se, digits=2) -> str:
    return "–" if x is None else f"{x:.{digits}f} ± {se:.{digits}f}"


def render(table: list[dict], vary: list[str], budget: str, title: str) -> str:
    lines = [f"# {title}", "",
             f"At {budget}: kept = cpt-base-res's share of what it should keep, ± one standard error "
             "(delta method): IFEval of the instruct model; d2 gain and fresh-news bits-per-byte drop "
             "of cpt-base (over the base). Ranked by IF kept x d2 kept.", "",
             "| " + " | ".join(vary) + " | IFEval | IF kept | d2 | d2 kept | fresh bpb | bpb kept | IF x d2 kept | vs default |",
             "|" + "---|" * len(vary) + "---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in table:
        cells = [json.dumps(r["setting"][k]) if not isinstance(r["setting"][k], str) else r["setting"][k]
                 for k in vary]
        bpb = r.get("fresh_bpb", {}).get("cpt-base-res")
        lines.append("| " + " | ".join(cells) + f" | {_pm(r['ifeval']['cpt-base-res'], r['ifeval']['cpt-base-res_se'])} "
                     f"| {_pm(r['if_kept'], r['if_kept_se'])} | {r['d2']['cpt-base-res']:.2f} "
                     f"| {_pm(r['d2_kept'], r['d2_kept_se'])} | {'–' if bpb is None else f'{bpb:.4f}'} "
                     f"| {_pm(r.get('bpb_kept'), r.get('bpb_kept_se'))} | {_pm(r['both'], r['both_se'])} "
                     f"| {'(default)' if r['default'] else r['vs_default'] or '–'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m freshllm.report.grid", description=__doc__.split("\n\n")[0])
    ap.add_argument("--exp-json", type=Path, required=True, help="the output of `dvc exp show --json`")
    ap.add_argument("--repo", type=Path, default=Path("."), help="the repository that ran the grid")
    ap.add_argument("--vary", required=True, help="comma-separated params.yaml keys the grid varies")
    ap.add_argument("--budget", required=True, help="the budget to compare at, e.g. 200K")
    ap.add_argument("--family", default="toy", help="the residual source (model names' +<family>)")
    ap.add_argument("--defaults", type=Path, default=Path("params.yaml"),
                    help="params file whose values of --vary are the default row")
    ap.add_argument("--title", default="Knowledge-gap grid")
    ap.add_argument("--markdown", type=Path, required=True)
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args(argv)
    setup_logging()
    vary = [k.strip() for k in args.vary.split(",") if k.strip()]
    with user_errors("report.grid", ExpsError):
        table = rows(load(args.exp_json), args.repo, vary, args.family, args.budget)
        if not table:
            raise ExpsError(f"{args.exp_json}: no finished experiment with metrics")
        params = yaml.safe_load(args.defaults.read_text()) or {}
        defaults = dict(zip(vary, key_of(params, vary, str(args.defaults))))
        mark_default(table, defaults)
        for path in (args.markdown, args.json):
            path.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(render(table, vary, args.budget, args.title))
        args.json.write_text(json.dumps({"vary": vary, "budget": args.budget, "rows": table}, indent=2) + "\n")
    log.info("%d settings -> %s", len(table), args.markdown)


if __name__ == "__main__":
    main()
