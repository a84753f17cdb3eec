"""``plain``: task arithmetic, ``target + alpha * R`` (elementwise: streams row chunks)."""

from __future__ import annotations

import torch

from .base import add_scaled, register


@register("plain", mode="chunks")
def merge(target: torch.Tensor, residual: torch.Tensor, name: str, cfg, scratch) -> torch.Tensor:
    if residual.dtype == torch.float32 and residual.shape == target.shape:
        return torch.add(target, residual, alpha=cfg.alpha, out=residual)  # in r's read buffer
    return add_scaled(target, residual, cfg.alpha, scratch)
