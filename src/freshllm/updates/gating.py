"""Stage ``gate@<window>``: ``python -m freshllm.updates.gating``, the promotion gate of one
window (the decision and its rules: :mod:`.gate`). It scores the incumbent, the candidate and,
when the candidate fails, each ``promote.retry`` setting on the validation split itself, in-process
with :func:`freshllm.eval.run` (a module apart from ``python -m freshllm.updates``, so that the
chain's other stages do not load the eval code).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from ..cards import build_lineage, read_lineage
from ..common import set_offline, setup_logging, use_runtime, user_errors, weights_hash, write_json
from ..io.packed import NO_NEW_ARTICLES
from .config import ANCESTOR, Chain, PromoteConfig
from .gate import GateError, best_try, decide, instruction_score, read_json, setting_of, window_bpb
from .root import copy_model, record_of

log = logging.getLogger(__name__)


def validation_file(heldout: Path, text_cfg, out: Path) -> dict:
    """Write the validation half of ``heldout`` (every window so far) to ``out`` as a plain
    text set (lines ``{text, window}``) the eval scores per window; returns the counts."""
    from ..tasks.text import TextDataError, load_windows, read_rows, write_jsonl

    try:
        rows = load_windows(heldout, text_cfg, split="validation")
    except TextDataError:
        if any(t.strip() for t, _ in read_rows(heldout, split="validation")):
            raise
        rows = []  # no window has a validation article yet: the fresh-news checks are left out
    write_jsonl(out, [{"text": t, "window": w} for t, w in rows])
    counts: dict[str, int] = {}
    for _, w in rows:
        counts[w] = counts.get(w, 0) + 1
    return {"source": str(heldout), "documents": counts}


def retry_configs(residual_cfg: Any, retry: list[dict[str, Any]], where: str = "promote.retry") -> list[Any]:
    """Each entry of ``promote.retry`` over the ``residual`` section (the merges grid's own
    :func:`freshllm.residual.merges.overlay`); one ``ConfigError`` naming every bad
    ``promote.retry[i].<key>``."""
    from ..config import ConfigError
    from ..residual.merges import overlay

    problems: list[str] = []
    out = []
    for i, entry in enumerate(retry):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict) or not entry:
            problems.append(f"{at}: expected a non-empty mapping of residual keys")
            continue
        try:
            out.append(overlay(residual_cfg, entry, at))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(where, problems)
    return out


class Scorer:
    """Scores models on the validation split with :func:`freshllm.eval.run` (the instruction
    tasks of ``eval.tasks`` on the validation prompts, ``fresh_bpb`` on the validation news)."""

    def __init__(self, eval_cfg, cfg: PromoteConfig, heldout: Path, workdir: Path):
        from dataclasses import replace

        from ..eval import EvalError
        from ..tasks import ALL_BENCHMARKS

        tasks = [t for t in eval_cfg.tasks if ALL_BENCHMARKS[t].ifeval_scoring]
        if not tasks:
            raise EvalError(f"promote.instruction: eval.tasks {eval_cfg.tasks} has no instruction-following "
                            "task to score on the validation prompts")
        self.eval_cfg = replace(eval_cfg, tasks=tasks)
        # only the toy world's suite has instruction prompts apart from the eval's: elsewhere
        # (the paper's IFEval) the gate scores the suite's own prompts, and says so in the record
        self.prompts = cfg.val_ifeval_prompts if eval_cfg.suite == "toyworld" else None
        if self.prompts is None:
            log.warning("eval suite %r has no validation instruction prompts: the gate scores instruction "
                        "following on the suite's own prompts (the news is still its validation half)",
                        eval_cfg.suite)
        self.workdir = Path(workdir)
        self.texts = self.workdir / "validation-news.jsonl"
        self.news = validation_file(heldout, eval_cfg.text, self.texts)

    def __call__(self, model: Path, name: str, label: str) -> dict:
        from ..eval import run

        texts = {"fresh_bpb": self.texts} if self.news["documents"] else {}  # no window has any yet
        return run(self.eval_cfg, model, name, self.workdir / f"{label}.json", self.workdir / f"{label}.jsonl",
                   texts=texts, validation_prompts=self.prompts)


def _scores(rec: dict, cfg: PromoteConfig, windows: list[str]) -> dict:
    value, se = instruction_score(rec, cfg.instruction)
    return {"instruction": value, "instruction_se": se,
            "fresh_bpb": {w: dict(zip(("bits_per_byte", "stderr"), window_bpb(rec, w))) for w in windows},
            "model_hash": rec.get("model_hash")}


def gate(cfg: PromoteConfig, chain: Chain, window: str, candidate: Path, incumbent: Path, prev_record: Path,
         out: Path, record: Path, *, eval_cfg, residual_cfg, heldout: Path, cpt_base: Path, residual: Path,
         residual_base: Path | None = None, runtime: dict | None = None,
         window_metrics: Path | None = None) -> dict:
    """The gate of ``window`` (see the module doc): ``candidate`` is the u-merge output
    (``residual_cfg``'s setting), ``cpt_base`` / ``residual`` / ``residual_base`` what the
    retries apply, ``heldout`` the window's held-out news (both halves)."""
    import shutil
    import tempfile
    from dataclasses import asdict

    update = chain.get(window)
    retries = retry_configs(residual_cfg, cfg.retry)  # every bad entry named before any work
    prev = read_json(prev_record, "the previous promotion record")
    if prev.get("window") != update.prev:
        raise GateError(f"{prev_record}: is the record of {prev.get('window')!r}, not of {window}'s parent {update.prev!r}")
    incumbent_hash = weights_hash(incumbent)  # once: every use below names the same files
    if incumbent_hash != prev["current"]["weights_sha256"]:
        raise GateError(f"{incumbent}: is not the model {prev_record} says is current (weights hash)")
    cand_lineage = read_lineage(candidate)
    if cand_lineage is None:
        raise GateError(f"{candidate}: has no model card (the u-merge stage writes one)")
    ancestor = prev.get("ancestor_validation")
    if update.prev != ANCESTOR and cfg.min_instruction_kept is not None:
        if ancestor is None:
            raise GateError(f"{prev_record}: has no ancestor_validation (the first gate records the ancestor "
                            "instruct model's validation score; re-run the chain's gates)")
        if ancestor.get("val_ifeval_prompts") != cfg.val_ifeval_prompts:
            raise GateError(f"{prev_record}: its ancestor_validation was scored on {ancestor.get('val_ifeval_prompts')} "
                            f"validation prompts, promote.val_ifeval_prompts is {cfg.val_ifeval_prompts}")
    windows = chain.earlier(window)
    wmetrics = read_json(window_metrics, "the window's metrics") if window_metrics is not None else {}
    crawl = wmetrics.get("crawl")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{Path(out).name}.gate-", dir=Path(out).parent))
    try:
        score = Scorer(eval_cfg, cfg, heldout, work)
        inc_rec = score(incumbent, f"cpt-base-res+incumbent@{window}", "incumbent")
        inc_scores = _scores(inc_rec, cfg, windows)
        if update.prev == ANCESTOR:  # the incumbent IS the ancestor instruct model: its number, once
            ancestor = {"instruction": inc_scores["instruction"], "instruction_se": inc_scores["instruction_se"],
                        "val_ifeval_prompts": cfg.val_ifeval_prompts, "weights_sha256": incumbent_hash,
                        "scored_by": window}
        if wmetrics.get(NO_NEW_ARTICLES):  # nothing was learned: no candidate to score
            copy_model(incumbent, out)
            reasons = [f"kept the incumbent: {wmetrics.get('reason') or f'window {window} has no article'}; "
                       "no update this window"]
            rec = record_of(window, out, read_lineage(out), False, reasons, checks=[], tries=[], chosen=None,
                            setting=None, failed_tries=0, no_new_articles=True,
                            validation={"split": "validation", "news": score.news,
                                        "incumbent": {k: v for k, v in inc_scores.items()}},
                            ancestor_validation=ancestor, previous=prev["current"],
                            incumbent={"path": str(incumbent), "weights_sha256": incumbent_hash},
                            **({"runtime": runtime} if runtime is not None else {}),
                            **({"crawl": crawl} if crawl is not None else {}))
            write_json(record, rec)
            log.info("gate %s: %s", window, "; ".join(reasons))
            return rec
        tries: list[dict] = []
        dirs: list[Path | None] = []
        settings = [(residual_cfg, {}, candidate), *[(r, entry, None) for r, entry in zip(retries, cfg.retry)]]
        best = None
        for i, (rcfg, entry, model) in enumerate(settings):
            name = "candidate" if i == 0 else f"retry[{i - 1}]"
            if i > 0:
                if tries[0]["passed"]:
                    break  # the candidate passed: no retry runs
                from ..residual.apply import apply

                model = work / f"try-{i}"
                apply(Path(residual), Path(cpt_base), model, rcfg, base_dir=residual_base)
            rec = score(model, f"cpt-base-res+gate@{window}", f"try-{i}")
            d = decide(cfg, window, windows, rec, inc_rec, ancestor, news=score.news["documents"])
            tries.append({"try": name, "override": dict(entry), "setting": setting_of(rcfg),
                          "weights_sha256": weights_hash(model), "validation": _scores(rec, cfg, windows),
                          "passed": d["promote"], "checks": d["checks"], "reasons": d["reasons"],
                          "instruction": d["instruction"], "fresh_bpb": d["fresh_bpb"]})
            dirs.append(model)
            log.info("gate %s, %s %s: %s", window, name, setting_of(rcfg), "; ".join(d["reasons"]))
            best = best_try(tries)
            for j, path in enumerate(dirs):  # only the best passing retry stays on disk
                if j and j != best and path is not None and path.exists():
                    shutil.rmtree(path)
                    dirs[j] = None
        chosen = tries[best] if best is not None else None
        if chosen is not None:
            model = dirs[best]
            if best == 0:
                lineage = dict(cand_lineage)
            else:
                lineage = build_lineage(model, "cpt-base-res", window, parent=cpt_base, residual=residual,
                                        params={"residual": asdict(settings[best][0])})
            lineage["gate"] = {"try": chosen["try"], "override": chosen["override"], "setting": chosen["setting"]}
            copy_model(model, out, lineage)
        else:
            copy_model(incumbent, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    promoted = chosen is not None
    n_failed = len(tries) - sum(t["passed"] for t in tries)
    if promoted:
        reasons = [f"promoted {chosen['try']} ({', '.join(f'{k}: {v}' for k, v in chosen['override'].items()) or 'the residual section'}): "
                   f"every check passed on the validation split"
                   + (f"; best of {sum(t['passed'] for t in tries)} passing of {len(tries)} tries" if len(tries) > 1 else ""),
                   *chosen["reasons"][1:]]
    else:
        reasons = [f"kept the incumbent: none of {len(tries)} tries passed on the validation split"]
        reasons += [f"{t['try']}: {r}" for t in tries for r in t["reasons"][1:]]
    if crawl and crawl.get("lost_files"):
        reasons.append(f"the crawl of window {window} lost {crawl['lost_files']} files (could not be read"
                       + (f"; no listing for {', '.join(crawl['missing_listings'])}" if crawl.get("missing_listings") else "")
                       + f"): the update saw {crawl.get('articles')} articles")
    checks = (chosen or tries[0])["checks"]
    rec = record_of(window, out, read_lineage(out), promoted, reasons,
                    checks=checks, tries=tries, chosen=chosen["try"] if chosen else None,
                    setting=chosen["setting"] if chosen else None, failed_tries=n_failed,
                    validation={"split": "validation", "val_ifeval_prompts": score.prompts,
                                "instruction_prompts": "validation" if score.prompts else "the suite's own (no split)",
                                "news": score.news,
                                "incumbent": {k: v for k, v in inc_scores.items()}},
                    ancestor_validation=ancestor, previous=prev["current"],
                    candidate={"path": str(candidate), "weights_sha256": weights_hash(candidate)},
                    incumbent={"path": str(incumbent), "weights_sha256": incumbent_hash},
                    **({"runtime": runtime} if runtime is not None else {}),
                    **({"crawl": crawl} if crawl is not None else {}))
    write_json(record, rec)
    log.info("gate %s: %s", window, "; ".join(reasons))
    return rec


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m freshllm.updates.gating", description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--window", required=True)
    for a in ("--candidate", "--incumbent", "--cpt-base", "--residual", "--heldout", "--prev-record", "--out",
              "--record"):
        ap.add_argument(a, required=True, type=Path)
    ap.add_argument("--window-metrics", type=Path, default=None,
                    help="the window's metrics (u-window): what its crawl lost goes into the record")
    ap.add_argument("--residual-base", type=Path, default=None,
                    help="the residual's base model (as u-merge's apply --base)")
    args = ap.parse_args(argv)
    setup_logging()
    set_offline()
    from ..cards import CardError
    from ..config import load_section
    from ..eval import EvalConfig, EvalError
    from ..residual.config import ResidualConfig, ResidualError
    from ..tasks.text import TextDataError
    from .config import load_chain

    with user_errors("updates", GateError, CardError, EvalError, ResidualError, TextDataError):
        params = Path(args.params)
        runtime = use_runtime(params)
        gate(load_section(PromoteConfig, "promote", params), load_chain(params), args.window, args.candidate,
             args.incumbent, args.prev_record, args.out, args.record,
             eval_cfg=load_section(EvalConfig, "eval", params),
             residual_cfg=load_section(ResidualConfig, "residual", params), heldout=args.heldout,
             cpt_base=args.cpt_base, residual=args.residual, residual_base=args.residual_base, runtime=runtime,
             window_metrics=args.window_metrics)


if __name__ == "__main__":
    sys.exit(main())
