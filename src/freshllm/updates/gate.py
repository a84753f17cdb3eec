"""The promotion gate (stage ``gate@<window>``) and the promoted model (stage ``promote@<chain>``).

``gate@<window>`` compares the update's merged model (the candidate, ``cpt-base + residual``)
with the model promoted before it (the incumbent), both scored by the eval stage on the same
items: the suite and the held-out news of every window so far. The candidate is promoted when
every check of ``promote`` passes:

* instruction following (``promote.instruction``, the report's score: the mean of the IFEval
  metrics) not lower than the incumbent's by more than ``max_instruction_drop_se`` combined
  standard errors;
* bits per byte on the fresh news (``fresh: new``: the update's own window's held-out articles;
  ``all``: the mean over every window so far) lower than the incumbent's by more than
  ``min_fresh_bpb_gain``;
* optionally (``max_forget_se``), every earlier window's bits per byte not higher than the
  incumbent's by more than that many combined standard errors.

It writes ``models/updates/<window>/current`` (the candidate if promoted, else the incumbent
again: a failing gate keeps the previous model) and a record with every check, its numbers
and the reasons. ``promote@<chain>`` copies the last window's current model to
``models/current``, the stable path a serving system points at, and writes
``metrics/promote.json``: what is current and every decision of the chain with its reasons.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from ..cards import read_lineage
from ..common import dir_content_hash, write_json
from ..report import LAYOUTS, model_scores
from ..residual.artifact import weights_hash
from .config import ANCESTOR, Chain, ChainError, PromoteConfig
from .root import copy_model, record_of

log = logging.getLogger(__name__)


GateError = ChainError


def read_json(path: Path, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GateError(f"{path}: not valid JSON ({exc})") from exc


def instruction_score(rec: dict, score: str) -> tuple[float | None, float | None]:
    """(value, standard error) x100 of ``score`` in an eval record, as the report computes it."""
    layout = LAYOUTS.get((rec.get("config") or {}).get("suite_name", "paper"), LAYOUTS["paper"])
    s = model_scores(rec.get("results") or {}, layout, rec.get("stderr") or {})
    return s["scores"].get(score), s["scores_se"].get(score)


def window_bpb(rec: dict, window: str) -> tuple[float | None, float | None]:
    """(bits per byte, standard error) of an eval record on one window's held-out news."""
    row = ((rec.get("windows") or {}).get("fresh_bpb") or {}).get(window) or {}
    return row.get("bits_per_byte"), row.get("stderr")


def _combined(*ses: float | None) -> float:
    return math.sqrt(sum((s or 0.0) ** 2 for s in ses))


def decide(cfg: PromoteConfig, window: str, windows: list[str], candidate: dict, incumbent: dict) -> dict:
    """``{promote, checks, reasons}``: the gate on two eval records (see the module doc);
    ``windows``: every window so far, ``window`` last. A missing score fails its check."""
    checks = []

    def check(name: str, passed: bool | None, reason: str, **numbers) -> None:
        checks.append({"check": name, "passed": bool(passed), "reason": reason, **numbers})

    (c, c_se), (i, i_se) = instruction_score(candidate, cfg.instruction), instruction_score(incumbent, cfg.instruction)
    if c is None or i is None:
        check("instruction", False, f"instruction following ({cfg.instruction}) missing from an eval record")
    else:
        floor = i - cfg.max_instruction_drop_se * _combined(c_se, i_se)
        check("instruction", c >= floor,
              f"instruction following {c:.2f} ± {c_se or 0:.2f} vs the incumbent's {i:.2f} ± {i_se or 0:.2f}: "
              f"{'not ' if c >= floor else ''}below the floor {floor:.2f} "
              f"({cfg.max_instruction_drop_se:g} combined standard errors)",
              candidate=c, incumbent=i, floor=floor)
    fresh = [window] if cfg.fresh == "new" else list(windows)
    cb = [window_bpb(candidate, w)[0] for w in fresh]
    ib = [window_bpb(incumbent, w)[0] for w in fresh]
    what = f"window {window}" if cfg.fresh == "new" else f"the mean of windows {', '.join(fresh)}"
    if None in cb or None in ib:
        check("fresh_bpb", False, f"fresh-news bits per byte on {what} missing from an eval record")
    else:
        cm, im = sum(cb) / len(cb), sum(ib) / len(ib)
        ok = cm < im - cfg.min_fresh_bpb_gain
        check("fresh_bpb", ok, f"fresh-news bits per byte on {what}: {cm:.4f} vs the incumbent's {im:.4f} "
              f"({'lower' if ok else 'not lower'} by more than {cfg.min_fresh_bpb_gain:g})",
              candidate=cm, incumbent=im)
    if cfg.max_forget_se is not None:
        for w in windows:
            if w == window:
                continue
            (cv, cs), (iv, is_) = window_bpb(candidate, w), window_bpb(incumbent, w)
            if cv is None or iv is None:
                check(f"kept_{w}", False, f"bits per byte on window {w} missing from an eval record")
                continue
            ceiling = iv + cfg.max_forget_se * _combined(cs, is_)
            check(f"kept_{w}", cv <= ceiling, f"window {w} kept: bits per byte {cv:.4f} vs the incumbent's "
                  f"{iv:.4f}, ceiling {ceiling:.4f}", candidate=cv, incumbent=iv, ceiling=ceiling)
    promote = all(ch["passed"] for ch in checks)
    failed = [ch["reason"] for ch in checks if not ch["passed"]]
    reasons = ([f"promoted: every check passed ({len(checks)})"] + [ch["reason"] for ch in checks] if promote
               else [f"kept the incumbent: {len(failed)} of {len(checks)} checks failed"] + failed)
    return {"promote": promote, "checks": checks, "reasons": reasons}


def gate(cfg: PromoteConfig, chain: Chain, window: str, candidate: Path, incumbent: Path,
         candidate_eval: Path, incumbent_eval: Path, prev_record: Path, out: Path, record: Path) -> dict:
    update = chain.get(window)
    prev = read_json(prev_record, "the previous promotion record")
    if prev.get("window") != update.prev:
        raise GateError(f"{prev_record}: is the record of {prev.get('window')!r}, not of {window}'s parent {update.prev!r}")
    if weights_hash(incumbent) != prev["current"]["weights_sha256"]:
        raise GateError(f"{incumbent}: is not the model {prev_record} says is current (weights hash)")
    evals = {}
    for name, model, path in (("candidate", candidate, candidate_eval), ("incumbent", incumbent, incumbent_eval)):
        rec = read_json(path, f"the {name}'s eval")
        if rec.get("model_hash") != dir_content_hash(model):
            raise GateError(f"{path}: scores another model than {model} (model_hash differs)")
        evals[name] = rec
    decision = decide(cfg, window, chain.earlier(window), evals["candidate"], evals["incumbent"])
    copy_model(candidate if decision["promote"] else incumbent, out)
    rec = record_of(window, out, read_lineage(out), decision["promote"], decision["reasons"],
                    checks=decision["checks"], previous=prev["current"],
                    candidate={"path": str(candidate), "weights_sha256": weights_hash(candidate),
                               "eval": evals["candidate"].get("model")},
                    incumbent={"path": str(incumbent), "weights_sha256": weights_hash(incumbent),
                               "eval": evals["incumbent"].get("model")})
    write_json(record, rec)
    log.info("gate %s: %s", window, "; ".join(decision["reasons"]))
    return rec


def promote(chain: Chain, records_dir: Path, models_dir: Path, out: Path, decision_path: Path) -> dict:
    """``models/current`` = the current model after the last window's gate (see the module doc)."""
    last = chain.windows[-1] if chain.windows else ANCESTOR
    decisions = []
    for window in [ANCESTOR, *chain.windows]:
        rec = read_json(Path(records_dir) / window / "promote.json", f"the promotion record of {window}")
        if rec.get("window") != window:
            raise GateError(f"{Path(records_dir) / window / 'promote.json'}: is the record of {rec.get('window')!r}")
        decisions.append(rec)
    src = Path(models_dir) / last / "current"
    if weights_hash(src) != decisions[-1]["current"]["weights_sha256"]:
        raise GateError(f"{src}: is not the model the record of {last} says is current (weights hash)")
    copy_model(src, out)
    result = {"current": {**decisions[-1]["current"], "path": str(out), "decided_by": last},
              "decisions": [{k: d.get(k) for k in ("window", "promoted", "reasons", "current", "checks")}
                            for d in decisions]}
    write_json(decision_path, result)
    log.info("current model: %s (%s @ %s)", out, result["current"]["role"], result["current"]["window"])
    return result
