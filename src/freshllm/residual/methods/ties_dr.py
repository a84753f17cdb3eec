"""``ties_dr``: TIES-Merging (Yadav et al., NeurIPS 2023, arXiv:2306.01708) over the two task
vectors of the merge, ``beta * D`` (``D = T - B``, what cpt learned) and ``alpha * R`` (the
instruction residual), onto the base B:

1. trim: each of D and R keeps its ``k = max(1, int(density * numel))`` largest-magnitude
   entries per tensor (the rest 0);
2. elect: per entry, the sign of ``beta * D' + alpha * R'`` (the trimmed, weighted vectors'
   sum; positive where it is 0);
3. disjoint merge: each weighted vector keeps only its entries of the elected sign, and the
   two are summed onto B (no division by the number of agreeing vectors).

mergekit 0.1.5: ``merge_method: ties`` with ``base_model: B``, models T (``weight: beta``)
and instruct (``weight: alpha``), both ``density: density``, ``normalize: false`` (its
default is true, which divides by the sum of the agreeing weights), ``lambda: 1``: the
same trim (``sparsify.magnitude``, floor), the same ``consensus: sum`` election. One
difference: a vocabulary tensor under ``vocab: shared_rows`` is trimmed over R's own rows
(mergekit has no such case). Needs ``apply --base``; fed whole tensors (a per-tensor top-k).
"""

from __future__ import annotations

import torch

from .base import always, elect_signs, onto_base, register, task_vectors, top_k_mask


@register("ties_dr", mode="tensors", uses=("beta", "density"), needs_base=always)
def merge(target: torch.Tensor, residual: torch.Tensor, name: str, cfg, scratch,
          base: torch.Tensor | None = None) -> torch.Tensor:
    d, r = task_vectors(target, residual, base, scratch)
    d.mul_(top_k_mask(d, cfg.density)).mul_(cfg.beta)
    r.mul_(top_k_mask(r, cfg.density)).mul_(cfg.alpha)
    elect_signs(d, r)
    return onto_base(base, d, r, scratch)
