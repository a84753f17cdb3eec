"""``dare_dr`` and ``dare_ties_dr``: DARE (Yu et al., ICML 2024, "Language Models are Super
Mario", arXiv:2311.03099) over the two task vectors of the merge, ``D = T - B`` and the
instruction residual R, onto the base B.

``dare_dr``: each vector drops every entry with p = ``1 - density`` and rescales the rest by
``1 / density``, with its own random mask per tensor (seeded by ``seed``, the tensor's name
and which vector, so the same whatever the chunking, the tensor order or the other
vector); then ``B + beta * D~ + alpha * R~``. mergekit 0.1.5: ``merge_method: dare_linear``,
``base_model: B``, T at ``weight: beta``, instruct at ``weight: alpha``, both
``density: density``, ``normalize: false``. One difference: mergekit's ``rescale: true``
rescales each masked tensor to the original's L1 norm; this follows the paper's
``1 / density``, equal to it in expectation (and the same as the single-vector ``dare``).

``dare_ties_dr``: the same DARE masks, then TIES sign election over the two weighted
vectors (:func:`~.base.elect_signs`; mergekit ``dare_ties``, ``normalize: false``).
Both need ``apply --base``; fed whole tensors (one mask per tensor).
"""

from __future__ import annotations

import torch

from .base import always, dare_mask, elect_signs, onto_base, register, seeded_generator, task_vectors


def _dare_vectors(target, residual, base, name, cfg, scratch):
    d, r = task_vectors(target, residual, base, scratch)
    dare_mask(d, cfg.density, seeded_generator(cfg.seed, name, "D")).mul_(cfg.beta)
    dare_mask(r, cfg.density, seeded_generator(cfg.seed, name, "R")).mul_(cfg.alpha)
    return d, r


@register("dare_dr", mode="tensors", uses=("beta", "density", "seed"), needs_base=always)
def merge(target: torch.Tensor, residual: torch.Tensor, name: str, cfg, scratch,
          base: torch.Tensor | None = None) -> torch.Tensor:
    d, r = _dare_vectors(target, residual, base, name, cfg, scratch)
    return onto_base(base, d, r, scratch)


@register("dare_ties_dr", mode="tensors", uses=("beta", "density", "seed"), needs_base=always)
def merge_ties(target: torch.Tensor, residual: torch.Tensor, name: str, cfg, scratch,
               base: torch.Tensor | None = None) -> torch.Tensor:
    d, r = _dare_vectors(target, residual, base, name, cfg, scratch)
    elect_signs(d, r)
    return onto_base(base, d, r, scratch)
