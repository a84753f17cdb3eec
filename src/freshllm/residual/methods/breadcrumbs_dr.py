"""``breadcrumbs_dr``: Model Breadcrumbs (Davari & Belilovsky, ECCV 2024, arXiv:2312.06795)
over the two task vectors of the merge, ``D = T - B`` and the instruction residual R, onto
the base B: each vector, per tensor, drops its largest-magnitude outliers (a fraction
``gamma`` of the entries) and its smallest entries, keeping ``int(density * numel)`` entries
in between (the "breadcrumbs"); then ``B + beta * D' + alpha * R'`` (no sign election).

mergekit 0.1.5: ``merge_method: breadcrumbs``, ``base_model: B``, T at ``weight: beta``,
instruct at ``weight: alpha``, both ``density: density`` and ``gamma: gamma``,
``normalize: false``; the same mask (``sparsify.magnitude_outliers``: sort by magnitude,
drop the ``n - int(density * n) - int(gamma * n)`` smallest (at least 0) and keep the next
``int(density * n)``, so the outliers removed shrink when density + gamma > 1), and like
mergekit, density 1 keeps every entry. Needs ``apply --base``; fed whole tensors.
"""

from __future__ import annotations

import torch

from .base import always, onto_base, register, task_vectors


def breadcrumbs_mask(x: torch.Tensor, density: float, gamma: float) -> torch.Tensor:
    n = x.numel()
    if density >= 1.0 or n == 0:
        return torch.ones(x.shape, dtype=torch.bool)
    keep_n, top_n = int(density * n), int(gamma * n)
    bottom_n = max(0, n - keep_n - top_n)
    order = torch.sort(x.abs().reshape(-1), stable=True).indices
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[bottom_n: bottom_n + keep_n]] = True
    return mask.view(x.shape)


@register("breadcrumbs_dr", mode="tensors", uses=("beta", "density", "gamma"), needs_base=always)
def merge(target: torch.Tensor, residual: torch.Tensor, name: str, cfg, scratch,
          base: torch.Tensor | None = None) -> torch.Tensor:
    d, r = task_vectors(target, residual, base, scratch)
    d.mul_(breadcrumbs_mask(d, cfg.density, cfg.gamma)).mul_(cfg.beta)
    r.mul_(breadcrumbs_mask(r, cfg.density, cfg.gamma)).mul_(cfg.alpha)
    return onto_base(base, d, r, scratch)
