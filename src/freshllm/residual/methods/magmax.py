"""``magmax``: MagMax (Marczak et al., ECCV 2024, "MagMax: Leveraging Model Merging for
Seamless Continual Learning", arXiv:2407.06322) over the two task vectors of the merge:
per entry, whichever of ``beta * D`` (``D = T - B``) and ``alpha * R`` has the larger
magnitude (``beta * D`` on a tie), added to the base B. The paper merges the task vectors
of sequentially fine-tuned models by maximum magnitude per parameter; here the two vectors
are cpt's and the instruction residual's, with ``beta`` / ``alpha`` as their scales.
mergekit 0.1.5 has no MagMax. Elementwise: streams row chunks. Needs ``apply --base``.
"""

from __future__ import annotations

import torch

from .base import always, register, task_vectors


@register("magmax", mode="chunks", uses=("beta",), needs_base=always)
def merge(target: torch.Tensor, residual: torch.Tensor, name: str, cfg, scratch,
          base: torch.Tensor | None = None) -> torch.Tensor:
    d, r = task_vectors(target, residual, base, scratch)
    d.mul_(cfg.beta)
    r.mul_(cfg.alpha)
    dd = d[: r.shape[0]]
    torch.where(r.abs() > dd.abs(), r, dd, out=dd)  # rows past R's: D alone
    new = scratch.get("new", torch.float32, target.shape).copy_(base)
    return new.add_(d)
