"""``residual.layer_scale: cpt_change``: less residual where continued pre-training
changed the model most.

A pre-pass streams the target (the cpt model) and ``--base`` (the residual's base) in
row chunks, as the merge pass does (peak memory: a few chunk buffers, whatever the model
size), and measures each group's relative change

    c_g = ||target_g - base_g|| / ||base_g||

over the tensors of the group that get the residual (:mod:`.modules`). A group is one
transformer layer (``model.layers.<i>``: all its selected tensors together) or one
non-layer tensor (``model.embed_tokens.weight``, ``model.norm.weight``,
``lm_head.weight``: each its own ``c``). The merge pass then adds ``scale_g * R``
instead of ``alpha * R`` to every tensor of the group; :func:`scales` is the formula.
The cost: one more streamed read of target and base before the merge.

On the toy world the layers' ``c`` lie within ~15% of each other (20K: 0.0128-0.0137,
200K: 0.056-0.065), so strength 1 scales them only to 0.87-1.0 of alpha: a grid that
wants a visible effect there needs strengths of several units.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

from ..io.st_stream import ShardedReader, TensorSpec, prefetch
from .checks import is_vocab
from . import chunks
from .chunks import Scratch, _torch_threads, check_finite, row_chunks
from .config import ResidualError


def layer_of(name: str) -> str:
    """The group of a tensor: ``model.layers.<i>`` for a layer's tensors, else the name."""
    parts = name.split(".")
    if "layers" in parts:
        i = parts.index("layers")
        return ".".join(parts[: i + 2])
    return name


def is_layer(group: str) -> bool:
    parts = group.split(".")
    return len(parts) >= 2 and parts[-2] == "layers" and parts[-1].isdigit()


def _compared_rows(name: str, target: ShardedReader, base: ShardedReader, base_dir: Path) -> int | None:
    """Rows of ``name`` to compare (None: a 0-d tensor); the shared leading rows of a
    vocabulary tensor whose row count differs (``vocab: shared_rows``)."""
    if name not in base.specs:
        raise ResidualError(f"--base {base_dir}: no tensor {name}, which layer_scale: cpt_change "
                            "compares with the target's")
    ts, bs = target.specs[name].shape, base.specs[name].shape
    if ts == bs:
        return ts[0] if ts else None
    if is_vocab(name) and len(ts) == len(bs) and ts[1:] == bs[1:]:
        return min(ts[0], bs[0])
    raise ResidualError(f"--base {base_dir}: tensor {name} has shape {tuple(bs)} but the target's is "
                        f"{tuple(ts)}: layer_scale: cpt_change needs the residual's base")


def relative_changes(target: ShardedReader, base: ShardedReader, names: list[str], target_dir: Path,
                     base_dir: Path, check: bool = True) -> dict[str, float]:
    """``{group: c_g}`` over the tensors ``names`` (floating, in the target and the base),
    streamed in row chunks; ``c_g = 0`` where the base group's norm is 0 and nothing changed,
    ``inf`` where only the base's norm is 0."""
    rows = {n: _compared_rows(n, target, base, base_dir) for n in names}
    plan = []
    for n in names:
        spec = target.specs[n]
        sub = TensorSpec(n, spec.dtype, spec.shape if rows[n] is None else (rows[n], *spec.shape[1:]))
        plan += [(n, i, j) for i, j in row_chunks(sub)]
    reqs = [((target, n, i, j), (base, n, i, j)) for n, i, j in plan]
    diff: dict[str, float] = {}
    ref: dict[str, float] = {}
    from tqdm.auto import tqdm

    scratch = Scratch()
    steps = prefetch(reqs, ahead=chunks.READ_AHEAD)  # read at call time, as chunks.stream does
    bar = tqdm(total=len(plan), desc="layer_scale: cpt change", unit="chunk", mininterval=1.0)
    with _torch_threads(1), contextlib.closing(steps), bar:  # closing: stop the read-ahead on an error
        for (n, i, j), (t, b) in zip(plan, steps):
            bar.update(1)
            g = layer_of(n)
            d = scratch.f32("d", t).sub_(b).reshape(-1)  # in t's read buffer if float32
            bf = scratch.f32("b", b).reshape(-1)
            dd, bb = (float(d.dot(d)), float(bf.dot(bf))) if d.numel() else (0.0, 0.0)
            if not (math.isfinite(dd) and math.isfinite(bb)):
                if check:
                    check_finite(n, b, base_dir)
                    check_finite(n, target.read(n, i, j), target_dir)  # re-read: d overwrote t
                dd, bb = float(d.double().square().sum()), float(bf.double().square().sum())
            diff[g] = diff.get(g, 0.0) + dd
            ref[g] = ref.get(g, 0.0) + bb
    return {g: relative_norm(diff[g], ref[g]) for g in diff}


def relative_norm(diff_sq: float, ref_sq: float) -> float:
    """``sqrt(diff_sq) / sqrt(ref_sq)``: 0 where both are 0, ``inf`` where only ``ref_sq`` is."""
    return math.sqrt(diff_sq) / math.sqrt(ref_sq) if ref_sq > 0 else 0.0 if diff_sq == 0 else math.inf


def scales(changes: dict[str, float], alpha: float, strength: float) -> tuple[dict[str, float], float | None]:
    """``({group: scale_g}, c_ref)`` with

        scale_g = alpha * min(1, (c_ref / c_g) ** strength)

    ``c_ref`` is the smallest nonzero ``c`` of a transformer layer (of any group in a model
    without ``layers``); a group with ``c_g <= c_ref`` (an unchanged one, the reference
    layer itself) gets ``alpha``; no layer changed at all: ``alpha`` everywhere.

    Why this ``f``:

    * **Never more than alpha.** The least-changed layer keeps the full residual and every
      other group gets less, never more, so a grid point differs from ``layer_scale: none``
      only by withholding residual where cpt wrote most -- the one intervention the
      knowledge-gap hypothesis (the residual overwrites cpt's new knowledge where both
      moved the same weights) is about. Normalising to a mean of alpha would also push
      more than alpha into the least-changed layers, a second intervention (extrapolating
      the residual) mixed into the same comparison. The recorded mean scale gives the
      matched control: a uniform ``alpha`` equal to it separates "where" from "how much".
    * **A ratio of changes.** Only how much more a layer changed than the least-changed one
      matters, not the overall size of cpt's change (learning rate, token budget), so one
      ``strength`` means the same at every budget.
    * **A power.** ``strength`` 0 is exactly off (``x ** 0 == 1.0``: the same floats as
      ``layer_scale: none``, bit for bit), 1 makes the residual inversely proportional to
      the change (a layer cpt changed 4x more than the reference gets alpha / 4), 0.5 its
      square root; it is continuous in between.
    * **Reference over layers, non-layer tensors capped.** The final norm or an embedding
      can change far less than any layer; taken as the reference it would shrink every
      layer. Non-layer tensors are scaled against the layers' reference with their own
      ``c`` and capped at alpha like the rest.
    """
    pool = [c for g, c in changes.items() if is_layer(g)] or list(changes.values())
    c_ref = min((c for c in pool if c > 0), default=None)

    def f(c: float) -> float:
        if c_ref is None or c <= c_ref:
            return 1.0
        return (c_ref / c) ** strength  # c = inf: 0.0 (strength > 0) or 1.0 (strength 0)

    return {g: alpha * f(c) for g, c in changes.items()}, c_ref


def report(changes: dict[str, float], scale: dict[str, float], c_ref: float | None, strength: float) -> dict:
    """What the apply metrics record: the formula's inputs and every group's c and scale."""
    finite = lambda x: x if math.isfinite(x) else str(x)  # noqa: E731  JSON has no inf
    layer_scales = [s for g, s in scale.items() if is_layer(g)] or list(scale.values())
    return {"kind": "cpt_change", "strength": strength, "c_ref": c_ref,
            "formula": "alpha * min(1, (c_ref / c) ** strength)",
            "scale_min": min(layer_scales, default=None), "scale_max": max(layer_scales, default=None),
            "scale_mean_layers": sum(layer_scales) / len(layer_scales) if layer_scales else None,
            "per_group": {g: {"c": finite(changes[g]), "scale": scale[g]} for g in changes}}
