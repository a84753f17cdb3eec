"""``ties``: keep the ``density`` largest-magnitude entries of each residual tensor (the
TIES trim; with a single residual, sign election is a no-op), then ``target + alpha * R``.
The threshold is a top-k over the whole tensor: fed whole tensors."""

from __future__ import annotations

import torch

from .base import add_scaled, register


@register("ties", mode="tensors", uses=("density",))
def merge(target: torch.Tensor, residual: torch.Tensor, name: str, cfg, scratch,
          base: torch.Tensor | None = None) -> torch.Tensor:
    r = residual.float()
    if cfg.density < 1.0 and r.numel():
        k = max(1, int(round(cfg.density * r.numel())))
        thresh = r.abs().flatten().kthvalue(r.numel() - k + 1).values
        r = torch.where(r.abs() >= thresh, r, torch.zeros_like(r))
    return add_scaled(target, r, cfg.alpha, scratch)
