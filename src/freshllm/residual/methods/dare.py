"""``dare``: drop residual entries at random with p = 1 - density and rescale the rest by
1 / density, then ``target + alpha * R``. One mask per tensor, seeded by ``seed`` and the
tensor's name (the same whatever the chunking or tensor order): fed whole tensors."""

from __future__ import annotations

import hashlib

import torch

from .base import add_scaled, register


@register("dare", mode="tensors", uses=("density", "seed"))
def merge(target: torch.Tensor, residual: torch.Tensor, name: str, cfg, scratch,
          base: torch.Tensor | None = None) -> torch.Tensor:
    r = residual.float()
    if cfg.density < 1.0 and r.numel():
        seed = int.from_bytes(hashlib.sha256(f"{cfg.seed}:{name}".encode()).digest()[:8], "little") >> 1
        gen = torch.Generator().manual_seed(seed)
        keep = torch.rand(r.shape, generator=gen) < cfg.density
        r = torch.where(keep, r / cfg.density, torch.zeros_like(r))
    return add_scaled(target, r, cfg.alpha, scratch)
