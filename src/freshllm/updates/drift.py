"""Per-layer drift of a model from a reference (the ancestor): ``||M_g - B_g|| / ||B_g||`` for
every transformer layer ``g`` (all its floating tensors together), streamed in row chunks
(:func:`freshllm.residual.layer_scale.relative_changes`, the measure ``layer_scale: cpt_change``
uses), never holding a whole model in memory.

The chain measures how far each update's models moved from the ancestor pair: Setting 2's
cpt-base from the ancestor base comes with the merge (``metrics/updates/<w>/merge.json``'s
``drift``, computed by ``residual apply --base``); Setting 1's cpt-instruct from the ancestor
instruct model is written by ``u-cpt-instruct`` (``metrics/updates/<w>/drift-cpt-instruct.json``,
``python -m freshllm.updates.drift``). Both as ``{"mean", "max", "per_layer"}``: mean and max
over the transformer layers, and every layer's value (non-layer tensors, such as the
embeddings, under ``other``).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from pathlib import Path

from ..common import setup_logging, user_errors, write_json
from .config import ChainError

log = logging.getLogger(__name__)


def _layer_index(group: str) -> int:
    m = re.search(r"\.(\d+)$", group)
    return int(m.group(1)) if m else -1


def drift(model: Path, ref: Path) -> dict:
    """``{"mean", "max", "per_layer", "other"}`` of ``model`` against ``ref`` (see the module doc);
    the tensors compared are the floating ones both have."""
    from ..io.st_stream import ShardedReader
    from ..residual.layer_scale import is_layer, relative_changes

    target, base = ShardedReader(model), ShardedReader(ref)
    names = [n for n, s in target.specs.items() if s.dtype.is_floating_point and n in base.specs]
    if not names:
        raise ChainError(f"{model} and {ref}: no floating tensor in common")
    changes = relative_changes(target, base, names, Path(model), Path(ref))
    layers = {g: c for g, c in sorted(changes.items(), key=lambda kv: _layer_index(kv[0])) if is_layer(g)}
    values = list(layers.values()) or list(changes.values())

    def finite(x: float) -> float | None:
        return x if math.isfinite(x) else None

    return {"mean": finite(sum(values) / len(values)), "max": finite(max(values)),
            "per_layer": {g: finite(c) for g, c in layers.items()},
            "other": {g: finite(c) for g, c in changes.items() if g not in layers},
            "reference": str(ref)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m freshllm.updates.drift", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="the model (e.g. an update's cpt-instruct)")
    ap.add_argument("--ref", required=True, type=Path, help="the reference (the ancestor's model)")
    ap.add_argument("--out", required=True, type=Path, help="JSON {mean, max, per_layer, other}")
    args = ap.parse_args(argv)
    setup_logging()
    from ..io.st_format import SafetensorsFormatError
    from ..residual.config import ResidualError

    with user_errors("updates.drift", ChainError, ResidualError, SafetensorsFormatError):
        result = drift(args.model, args.ref)
    write_json(args.out, result)
    log.info("drift of %s from %s: mean %.4g, max %.4g over %d layers", args.model, args.ref,
             result["mean"] or float("nan"), result["max"] or float("nan"), len(result["per_layer"]))


if __name__ == "__main__":
    sys.exit(main())
