"""The promotion gate's decision (stage ``gate@<window>``: :mod:`.gating` runs it) and the promoted
model (stage ``promote@<chain>``).

``gate@<window>`` compares the update's merged model (the candidate, ``cpt-base + residual``,
the ``residual`` section's setting, made by ``u-merge``) with the model promoted before it (the
incumbent). It scores both ITSELF, in-process with :func:`freshllm.eval.run`, on the
VALIDATION split, never on the eval stages' test items: the toy IFEval validation prompts
(``promote.val_ifeval_prompts``, the next prompts of the eval's generator, disjoint from its
``eval.toy_ifeval_prompts``) and the validation half of every window's held-out news so far
(:func:`freshllm.updates.window.is_validation`). A try passes when every check passes:

* instruction following (``promote.instruction``, the report's score: the mean of the IFEval
  metrics) not lower than the incumbent's by more than ``max_instruction_drop_se`` combined
  standard errors;
* optionally (``min_instruction_kept``), instruction following not below that fraction of the
  ancestor instruct model's (less ``max_instruction_drop_se`` combined standard errors): an
  absolute floor, so a chain cannot ratchet down by just under the incumbent check every month.
  The first gate scores the ancestor instruct model (its incumbent) and every record carries
  the number on (``ancestor_validation``);
* bits per byte on the fresh news (``fresh: new``: the update's own window's validation
  articles; ``all``: the mean over every window so far) lower than the incumbent's by more than
  ``min_fresh_bpb_gain``;
* optionally (``max_forget_se``), every earlier window's bits per byte not higher than the
  incumbent's by more than that many combined standard errors.

When the candidate fails, each entry of ``promote.retry`` (a partial ``residual`` section, e.g.
``{alpha: 0.75}``) is applied in turn to the window's cpt-base (``freshllm.residual.apply``,
with ``--base``, as ``u-merge`` does; into a temporary directory next to ``--out``) and scored
the same way. The BEST passing try is promoted: the lowest validation fresh bits per byte (the
number the fresh check compares: the own window's, or the mean), ties broken by the higher
instruction score, then by the order of the list. None passing: the incumbent is kept.

It writes ``models/updates/<window>/current`` (the promoted try, its card naming the setting
used, or the incumbent again: a failing gate keeps the previous model) and a record with every
try (its setting, override, validation numbers, each check and the reason), the chosen one, and
the ancestor's validation score. ``promote@<chain>`` copies the last window's current model to
``models/current``, the stable path a serving system points at, and writes
``metrics/promote.json``: what is current and every decision of the chain with its reasons.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from ..cards import read_lineage
from ..common import weights_hash, write_json
from ..report import LAYOUTS, model_scores
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


def decide(cfg: PromoteConfig, window: str, windows: list[str], candidate: dict, incumbent: dict,
           ancestor: dict | None = None, news: dict[str, int] | None = None) -> dict:
    """``{promote, checks, reasons, instruction, fresh_bpb}``: the gate on two eval records
    (see the module doc); ``windows``: every window so far, ``window`` last; ``ancestor``:
    ``{instruction, instruction_se}`` of the ancestor instruct model (``min_instruction_kept``).
    A missing score fails its check. ``news``: the validation articles per window (None: every
    window has some); a window with none has no bits per byte to compare, so the checks on it
    are left out (recorded as ``skipped``, with the reason) and the gate decides on the rest.
    ``instruction`` / ``fresh_bpb``: the candidate's numbers the checks compared (None where
    missing), by which :func:`best_try` ranks passing tries."""
    checks = []

    def check(name: str, passed: bool | None, reason: str, **numbers) -> None:
        checks.append({"check": name, "passed": bool(passed), "reason": reason, **numbers})

    def has_news(w: str) -> bool:
        return news is None or news.get(w, 0) > 0

    def skip(name: str, reason: str) -> None:
        checks.append({"check": name, "passed": True, "skipped": True, "reason": reason})

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
    if cfg.min_instruction_kept is not None:
        a, a_se = (ancestor or {}).get("instruction"), (ancestor or {}).get("instruction_se")
        if c is None or a is None:
            check("ancestor_floor", False, f"instruction following ({cfg.instruction}) of the candidate or of "
                  "the ancestor instruct model missing")
        else:
            k = cfg.min_instruction_kept
            floor = k * a - cfg.max_instruction_drop_se * _combined(c_se, k * (a_se or 0.0))
            check("ancestor_floor", c >= floor,
                  f"instruction following {c:.2f} ± {c_se or 0:.2f} vs {k:g} x the ancestor instruct's "
                  f"{a:.2f} ± {a_se or 0:.2f}: {'not ' if c >= floor else ''}below the absolute floor {floor:.2f}",
                  candidate=c, ancestor=a, kept=k, floor=floor)
    fresh = [window] if cfg.fresh == "new" else list(windows)
    none = [w for w in fresh if not has_news(w)]
    fresh = [w for w in fresh if has_news(w)]
    cb = [window_bpb(candidate, w)[0] for w in fresh]
    ib = [window_bpb(incumbent, w)[0] for w in fresh]
    what = f"window {window}" if cfg.fresh == "new" else f"the mean of windows {', '.join(fresh)}"
    if none and fresh:
        what += f" (left out: {', '.join(none)}, no held-out validation article)"
    cm = None
    if not fresh:
        skip("fresh_bpb", f"fresh-news bits per byte left out: window{'s' if len(none) > 1 else ''} "
             f"{', '.join(none)} ha{'ve' if len(none) > 1 else 's'} no held-out validation article; "
             "the gate decides on the other checks")
    elif None in cb or None in ib:
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
            if not has_news(w):
                skip(f"kept_{w}", f"window {w} kept: left out, it has no held-out validation article")
                continue
            (cv, cs), (iv, is_) = window_bpb(candidate, w), window_bpb(incumbent, w)
            if cv is None or iv is None:
                check(f"kept_{w}", False, f"bits per byte on window {w} missing from an eval record")
                continue
            ceiling = iv + cfg.max_forget_se * _combined(cs, is_)
            check(f"kept_{w}", cv <= ceiling, f"window {w} kept: bits per byte {cv:.4f} vs the incumbent's "
                  f"{iv:.4f}, ceiling {ceiling:.4f}", candidate=cv, incumbent=iv, ceiling=ceiling)
    promote = all(ch["passed"] for ch in checks)
    failed = [ch["reason"] for ch in checks if not ch["passed"]] + [ch["reason"] for ch in checks if ch.get("skipped")]
    reasons = ([f"promoted: every check passed ({len(checks)})"] + [ch["reason"] for ch in checks] if promote
               else [f"kept the incumbent: {len(failed)} of {len(checks)} checks failed"] + failed)
    return {"promote": promote, "checks": checks, "reasons": reasons, "instruction": c, "fresh_bpb": cm}


def best_try(tries: list[dict]) -> int | None:
    """The index of the best passing try (lowest ``fresh_bpb``, then highest ``instruction``,
    then the earliest), or None when none passed."""
    passing = [i for i, t in enumerate(tries) if t["passed"]]
    if not passing:
        return None
    inf = float("inf")

    def key(i: int):
        t = tries[i]
        return (t["fresh_bpb"] if t["fresh_bpb"] is not None else inf,
                -(t["instruction"] if t["instruction"] is not None else -inf), i)
    return min(passing, key=key)


# settings that do not change the merged weights: left out of a try's recorded setting
_IO_KEYS = ("dtype", "shard_size", "check_finite", "base_mismatch")


def setting_of(residual_cfg) -> dict:
    """The residual setting of a try, as recorded (every key that changes the merge)."""
    from dataclasses import asdict

    return {k: v for k, v in asdict(residual_cfg).items() if k not in _IO_KEYS}


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
              "decisions": [{k: d.get(k) for k in ("window", "promoted", "reasons", "current", "checks", "chosen",
                                                    "setting")}
                            for d in decisions]}
    write_json(decision_path, result)
    log.info("current model: %s (%s @ %s)", out, result["current"]["role"], result["current"]["window"])
    return result
