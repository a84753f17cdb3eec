"""``plain``: task arithmetic, ``B + beta * (T - B) + alpha * R`` (elementwise: streams
row chunks). At ``beta = 1`` that is ``target + alpha * R`` and needs no base: the fast
path below, bit for bit what it always wrote. At ``beta != 1`` it needs ``apply --base``
and computes, in float32 per chunk, ``d = T - B``, ``B + beta * d``, then ``+ alpha * R``
(mergekit 0.1.5 ``task_arithmetic`` with ``base_model: B`` and the models T at weight
``beta`` and instruct at weight ``alpha``, ``normalize: false``)."""

from __future__ import annotations

import torch

from .base import add_scaled, register


def _beta_not_1(cfg) -> bool:
    return cfg.beta != 1.0


@register("plain", mode="chunks", uses=("beta",), needs_base=_beta_not_1)
def merge(target: torch.Tensor, residual: torch.Tensor, name: str, cfg, scratch,
          base: torch.Tensor | None = None) -> torch.Tensor:
    if cfg.beta == 1.0:
        if residual.dtype == torch.float32 and residual.shape == target.shape:
            return torch.add(target, residual, alpha=cfg.alpha, out=residual)  # in r's read buffer
        return add_scaled(target, residual, cfg.alpha, scratch)
    new = scratch.get("new", torch.float32, target.shape).copy_(target)
    new.sub_(base).mul_(cfg.beta).add_(base)  # B + beta * (T - B)
    new[: residual.shape[0]].add_(residual, alpha=cfg.alpha)
    return new
