"""What a merge method is, and the registry the method modules add themselves to.

A method is a function ``merge(target, residual, name, cfg, scratch) -> float32 tensor``
registered with :func:`register` under the name ``residual.method`` selects, and a
``mode``:

* ``"chunks"``: it is fed row chunks of each tensor (streams; peak memory about one
  chunk, whatever the model size), so it must be elementwise;
* ``"tensors"``: it is fed whole tensors (for methods that look at a whole tensor: a
  top-k threshold, one random mask per tensor).

``target`` is the target's chunk or tensor in its own dtype; ``residual`` the residual's,
in its stored dtype, with the same shape or, under ``vocab: shared_rows``, fewer rows (the
rows the two vocabularies share; the rest of the target passes through). Both are views
of read buffers that the method may modify in place; ``name`` is the tensor's name and
``cfg`` the :class:`~freshllm.residual.config.ResidualConfig`; ``scratch``
(:class:`~freshllm.residual.chunks.Scratch`) hands out reused buffers. The apply loop
casts the result to the target's dtype and writes it; tensors without a residual (and
row chunks past a shared vocabulary) never reach the method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, get_args

import torch

Mode = Literal["chunks", "tensors"]
Merge = Callable[..., torch.Tensor]  # (target, residual, name, cfg, scratch) -> float32


@dataclass(frozen=True)
class MergeMethod:
    name: str
    mode: Mode
    merge: Merge


METHODS: dict[str, MergeMethod] = {}


def register(name: str, mode: Mode) -> Callable[[Merge], Merge]:
    """Decorator: register ``merge`` as the method ``name``, fed as ``mode`` says."""
    if mode not in get_args(Mode):
        raise ValueError(f"merge method {name}: mode must be one of {get_args(Mode)}, got {mode!r}")

    def add(merge: Merge) -> Merge:
        if name in METHODS:
            raise ValueError(f"merge method {name!r} registered twice")
        METHODS[name] = MergeMethod(name, mode, merge)
        return merge

    return add


def unknown_method(name: str) -> str:
    return f"unknown merge method {name!r} (known: {', '.join(METHODS)})"


def get_method(name: str) -> MergeMethod:
    """The registered method ``name``; a ValueError naming it and the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(unknown_method(name)) from None


def add_scaled(target: torch.Tensor, residual: torch.Tensor, alpha: float, scratch) -> torch.Tensor:
    """``target + alpha * residual`` in a float32 scratch copy of ``target``; a residual
    with fewer rows (shared vocabulary) is added to the leading rows."""
    new = scratch.get("new", torch.float32, target.shape).copy_(target)
    new[: residual.shape[0]].add_(residual, alpha=alpha)
    return new
