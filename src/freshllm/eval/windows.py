"""Scores per publishing window of a chained update (:mod:`freshllm.updates`): the bits per
byte of the held-out fresh news of each window so far (``fresh_bpb`` documents whose JSONL line
names a ``window``), and, in a toy world whose d2 events come in monthly slices
(``world.d2_slices`` > 1), the d2 quiz accuracy per slice. Both are computed from lm-eval's
per-document samples of the one task, so a chained model is scored once, not once per window."""

from __future__ import annotations

import math

from .results import rolling_bootstrap_se


def _doc_text(sample: dict) -> str | None:
    doc = sample.get("doc")
    return doc.get("text") if isinstance(doc, dict) else None


def fresh_windows(samples: list[dict], windows: dict[str, str], iters: int, seed: int) -> dict[str, dict]:
    """``{window: {bits_per_byte, stderr, documents}}`` of the rolling samples whose document
    text is a key of ``windows`` (text -> window)."""
    pairs: dict[str, list] = {}
    for s in samples:
        window = windows.get(_doc_text(s) or "")
        pair = s.get("bits_per_byte")
        if window is not None and isinstance(pair, (list, tuple)) and len(pair) == 2:
            pairs.setdefault(window, []).append(pair)
    out = {}
    for window, ps in pairs.items():
        ll, n_bytes = sum(float(p[0]) for p in ps), sum(float(p[1]) for p in ps)
        out[window] = {"bits_per_byte": -ll / n_bytes / math.log(2) if n_bytes else None,
                       "stderr": rolling_bootstrap_se(ps, "bits_per_byte", iters, seed),
                       "documents": len(ps)}
    return out


def quiz_slices(samples: list[dict], world_seed: int, slices: int) -> dict[str, dict]:
    """``{"slice-<k>": {acc, stderr, items}}`` of the toy d2 quiz samples, by the slice of the
    event each item quizzes (:func:`freshllm.synthetic.toyworld.d2_slices`)."""
    from ..synthetic import toyworld

    world = toyworld.make_world(world_seed)
    slice_of = {(f.relation, f.subject, f.object): k
                for k, facts in enumerate(toyworld.d2_slices(world, slices)) for f in facts}
    hits: dict[int, list[float]] = {}
    for s in samples:
        doc = s.get("doc") if isinstance(s.get("doc"), dict) else {}
        k = slice_of.get(tuple(doc.get("fact") or ()))
        if k is not None and isinstance(s.get("acc"), (int, float)):
            hits.setdefault(k, []).append(float(s["acc"]))
    out = {}
    for k in sorted(hits):
        xs = hits[k]
        mean = sum(xs) / len(xs)
        se = (math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) if len(xs) > 1 else None)
        out[f"slice-{k}"] = {"acc": mean, "stderr": se, "items": len(xs)}
    return out
