"""The ``residual`` section of params.yaml, and the error both stages raise."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..config import parse_bytes
from .methods import METHODS, unknown_method
from .methods.base import OPTIONAL_KEYS
from .modules import DEFAULT as DEFAULT_MODULES, validate_modules

LAYER_SCALES = ("none", "cpt_change")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ResidualConfig:
    alpha: float = 1.0                # weight of the instruction residual R
    beta: float = 1.0                 # weight of cpt's change D = target - base (merge: B + beta*D + alpha*R)
    dtype: str = "float32"            # storage dtype of the residual artifact
    shard_size: str = "2GB"
    method: str = "plain"             # a name in methods.METHODS: plain | ties | dare | ties_dr | dare_dr
                                      # | dare_ties_dr | magmax | breadcrumbs_dr
    density: float = 1.0              # ties/dare/*_dr: fraction of entries kept per tensor
    seed: int = 0                     # dare/dare_dr/dare_ties_dr: drop mask seed
    gamma: float = 0.01               # breadcrumbs_dr: fraction of largest-magnitude entries dropped
    vocab: str = "error"              # error | shared_rows
    check_finite: bool = True
    base_mismatch: str = "error"      # apply --base not the residual's base: error | warn
    # apply: tensors that get the residual: groups (modules.GROUPS) or regexes; the rest pass through
    modules: list[str] = field(default_factory=lambda: list(DEFAULT_MODULES))
    layer_scale: str = "none"         # none | cpt_change (layer_scale.scales; needs apply --base)
    layer_scale_strength: float = 1.0  # cpt_change: alpha * min(1, (c_ref / c) ** strength); 0: off

    @property
    def shard_bytes(self) -> int:
        return parse_bytes(self.shard_size)

    def validate(self) -> list[str]:
        errs = []
        if self.dtype not in ("float32", "bfloat16", "float16"):
            errs.append(f"dtype: must be float32, bfloat16 or float16, got {self.dtype!r}")
        if self.method not in METHODS:
            errs.append(f"method: {unknown_method(self.method)}")
        for key in ("alpha", "beta"):
            if not math.isfinite(getattr(self, key)):
                errs.append(f"{key}: must be a finite number, got {getattr(self, key)}")
        if not 0.0 < self.density <= 1.0:
            errs.append(f"density: must be in (0, 1], got {self.density}")
        if not (math.isfinite(self.gamma) and 0.0 <= self.gamma < 1.0):
            errs.append(f"gamma: must be in [0, 1), got {self.gamma}")
        named = {e.split(":")[0] for e in errs}
        errs += [e for e in self._unused_keys() if e.split(":")[0] not in named]
        if self.vocab not in ("error", "shared_rows"):
            errs.append(f"vocab: must be error or shared_rows, got {self.vocab!r}")
        if self.base_mismatch not in ("error", "warn"):
            errs.append(f"base_mismatch: must be error or warn, got {self.base_mismatch!r}")
        errs += validate_modules(self.modules)
        if self.layer_scale not in LAYER_SCALES:
            errs.append(f"layer_scale: must be none or cpt_change, got {self.layer_scale!r}")
        if not (math.isfinite(self.layer_scale_strength) and self.layer_scale_strength >= 0):
            errs.append(f"layer_scale_strength: must be a finite number >= 0, got {self.layer_scale_strength}")
        elif self.layer_scale == "none" and self.layer_scale_strength != 1.0:
            errs.append(f"layer_scale_strength: {self.layer_scale_strength} has no effect with layer_scale: "
                        "none; set layer_scale: cpt_change (or drop layer_scale_strength)")
        try:
            if self.shard_bytes <= 0:
                errs.append("shard_size: must be > 0")
        except ValueError as exc:
            errs.append(f"shard_size: {exc}")
        return errs


    def _unused_keys(self) -> list[str]:
        """A key the method does not read, set away from its default: an error (a grid that
        varies it would vary nothing)."""
        method = METHODS.get(self.method)
        if method is None:
            return []
        errs = []
        for key, default in OPTIONAL_KEYS.items():
            if key not in method.uses and getattr(self, key) != default:
                users = [n for n, m in METHODS.items() if key in m.uses]
                errs.append(f"{key}: {getattr(self, key)} has no effect with method: {self.method} "
                            f"(methods that read it: {', '.join(users)}); drop {key} or choose one of them")
        if self.method == "breadcrumbs_dr" and self.density == 1.0 and self.gamma != OPTIONAL_KEYS["gamma"]:
            errs.append(f"gamma: {self.gamma} has no effect with method: breadcrumbs_dr at density 1 "
                        "(every entry is kept); set density < 1")
        return errs


class ResidualError(ValueError):
    pass
