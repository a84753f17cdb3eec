"""What a merge method is, and the registry the method modules add themselves to.

A merge is written ``B + beta * D + alpha * R`` with ``D = T - B`` (what cpt taught the
target T over the base B) and ``R`` the instruction residual (instruct - B). A method is a
function ``merge(target, residual, name, cfg, scratch, base) -> float32 tensor``
registered with :func:`register` under the name ``residual.method`` selects, and a
``mode``:

* ``"chunks"``: it is fed row chunks of each tensor (streams; peak memory about one
  chunk, whatever the model size), so it must be elementwise;
* ``"tensors"``: it is fed whole tensors (for methods that look at a whole tensor: a
  top-k threshold, one random mask per tensor).

``target`` is the target's chunk or tensor in its own dtype; ``residual`` the residual's,
in its stored dtype, with the same shape or, under ``vocab: shared_rows``, fewer rows (the
rows the two vocabularies share; the rest of the target passes through, or gets
``B + beta * D`` from a two-vector method); ``base`` the base's chunk (same shape as the
target) when the method needs it (:attr:`MergeMethod.needs_base`), else None. All are
views of read buffers; a method may modify ``residual`` and ``base`` in place, never
``target`` (the apply loop re-checks it for NaN after the merge). ``name`` is the tensor's
name and ``cfg`` the :class:`~freshllm.residual.config.ResidualConfig`; ``scratch``
(:class:`~freshllm.residual.chunks.Scratch`) hands out reused buffers. The apply loop
casts the result to the target's dtype and writes it; tensors without a residual never
reach the method.

``uses`` lists the config keys the method reads besides ``alpha`` (``beta``, ``density``,
``seed``, ``gamma``): the config refuses another of them set away from its default, so a
grid cannot vary a key that changes nothing. ``needs_base(cfg)`` says whether it needs
``apply --base`` (the residual's base) under that config.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Literal, get_args

import torch

Mode = Literal["chunks", "tensors"]
Merge = Callable[..., torch.Tensor]  # (target, residual, name, cfg, scratch, base) -> float32
# the keys a method may read besides alpha, and their defaults (ResidualConfig's)
OPTIONAL_KEYS = {"beta": 1.0, "density": 1.0, "seed": 0, "gamma": 0.01}


def _never(cfg) -> bool:
    return False


def always(cfg) -> bool:
    return True


@dataclass(frozen=True)
class MergeMethod:
    name: str
    mode: Mode
    merge: Merge
    uses: tuple[str, ...] = ()
    needs_base: Callable[..., bool] = _never


METHODS: dict[str, MergeMethod] = {}


def register(name: str, mode: Mode, uses: tuple[str, ...] = (),
             needs_base: Callable[..., bool] = _never) -> Callable[[Merge], Merge]:
    """Decorator: register ``merge`` as the method ``name``, fed as ``mode`` says, reading
    the config keys ``uses`` (of OPTIONAL_KEYS) and the base chunk when ``needs_base(cfg)``."""
    if mode not in get_args(Mode):
        raise ValueError(f"merge method {name}: mode must be one of {get_args(Mode)}, got {mode!r}")
    bad = [k for k in uses if k not in OPTIONAL_KEYS]
    if bad:
        raise ValueError(f"merge method {name}: uses {bad}, known keys: {list(OPTIONAL_KEYS)}")

    def add(merge: Merge) -> Merge:
        if name in METHODS:
            raise ValueError(f"merge method {name!r} registered twice")
        METHODS[name] = MergeMethod(name, mode, merge, tuple(uses), needs_base)
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


# ------------------------------------------------------------------ two-vector helpers

def task_vectors(target: torch.Tensor, residual: torch.Tensor, base: torch.Tensor, scratch
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(D, R)`` in float32: ``D = T - B`` (a scratch buffer, the target's shape) and ``R``
    (the residual itself if float32, else a float32 copy; its own rows)."""
    d = scratch.get("d", torch.float32, target.shape).copy_(target)
    d.sub_(base)
    return d, scratch.f32("r", residual)


def onto_base(base: torch.Tensor, d: torch.Tensor, r: torch.Tensor, scratch) -> torch.Tensor:
    """``B + d + r`` in float32 (``r`` added to the leading rows, as many as it has)."""
    new = scratch.get("new", torch.float32, base.shape).copy_(base)
    new.add_(d)
    new[: r.shape[0]].add_(r)
    return new


def top_k_mask(x: torch.Tensor, density: float) -> torch.Tensor:
    """The ``k = max(1, int(density * numel))`` largest-magnitude entries of ``x`` (mergekit
    0.1.5 ``sparsify.magnitude``: floor, at least one); all of them at density 1. Equal
    magnitudes at the threshold (common in bf16) are kept in index order, so the mask is
    exactly ``k`` entries and deterministic (a stable sort by descending magnitude)."""
    n = x.numel()
    if density >= 1.0 or n == 0:
        return torch.ones(x.shape, dtype=torch.bool)
    k = max(1, int(density * n))
    a = x.abs().reshape(-1)
    thresh = a.kthvalue(n - k + 1).values
    mask = a > thresh
    need = k - int(mask.sum())
    if need > 0:
        mask[(a == thresh).nonzero().squeeze(1)[:need]] = True
    return mask.view(x.shape)


def elect_signs(d: torch.Tensor, r: torch.Tensor) -> None:
    """TIES sign election between two weighted vectors, in place: the elected sign of an
    entry is that of ``d + r`` (positive where the sum is 0: mergekit's ``consensus: sum``),
    and each vector keeps only its entries of that sign. Rows of ``d`` past ``r``'s (shared
    vocabulary) have only ``d``, which agrees with itself."""
    dd = d[: r.shape[0]]
    elected = torch.where(dd + r >= 0, 1.0, -1.0)
    dd.mul_(dd.sign() == elected)
    r.mul_(r.sign() == elected)


def seeded_generator(seed: int, name: str, which: str) -> torch.Generator:
    """A generator seeded from ``seed``, the tensor's name and which vector (``D`` / ``R``):
    the same mask whatever the chunking, the tensor order or the other vector."""
    s = int.from_bytes(hashlib.sha256(f"{seed}:{name}:{which}".encode()).digest()[:8], "little") >> 1
    return torch.Generator().manual_seed(s)


def dare_mask(x: torch.Tensor, density: float, gen: torch.Generator) -> torch.Tensor:
    """DARE (Yu et al. 2024) in place: drop each entry with p = 1 - density, rescale the
    rest by 1 / density."""
    if density < 1.0 and x.numel():
        keep = torch.rand(x.shape, generator=gen) < density
        x.mul_(keep).div_(density)
    return x
