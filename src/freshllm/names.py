"""Model names, the one home of their grammar: ``<kind>[+<family>][@<budget>]``.

* ``base+tiny`` / ``instruct+tiny``: an ancestor pair (``models@<family>``);
* ``cpt-base@40K`` / ``cpt-instruct@40K``: continued pre-training of the target's base
  (Setting 2) / instruct model (Setting 1) on a token budget;
* ``cpt-base-res+tiny@40K``: ``cpt-base`` plus the residual of family ``tiny``.

The grid of a params file (top-level ``families``, ``target``, ``residual_sources``,
``budgets``) names every model ``dvc.yaml`` builds; the eval stage composes each model's
name from ``--kind/--family/--budget`` with :func:`model_name`, the report expects
:meth:`Grid.models`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, build_config, parse_count, read_params

ORIGIN_KINDS = ("base", "instruct")
CPT_KINDS = ("cpt-base", "cpt-instruct")
MERGED_KIND = "cpt-base-res"
KINDS = (*ORIGIN_KINDS, *CPT_KINDS, MERGED_KIND)


def model_name(kind: str, family: str | None = None, budget: str | None = None) -> str:
    """``<kind>[+<family>][@<budget>]``; the family and budget each kind needs are checked."""
    if kind in ORIGIN_KINDS and (not family or budget):
        raise ValueError(f"model kind {kind!r} takes a family and no budget")
    if kind in CPT_KINDS and (family or not budget):
        raise ValueError(f"model kind {kind!r} takes a budget and no family")
    if kind == MERGED_KIND and not (family and budget):
        raise ValueError(f"model kind {kind!r} takes a residual source family and a budget")
    for part in (family, budget):
        if part is not None and ("+" in part or "@" in part):
            raise ValueError(f"family / budget {part!r} must not contain '+' or '@'")
    return kind + (f"+{family}" if family else "") + (f"@{budget}" if budget else "")


def model_kind(name: str) -> str:
    """``cpt-base@100M`` -> ``cpt-base``, ``cpt-base-res+llama31@1B`` -> ``cpt-base-res``."""
    return name.split("@", 1)[0].split("+", 1)[0]


def model_family(name: str) -> str | None:
    """``instruct+qwen2`` -> ``qwen2``; None without ``+<family>``."""
    head = name.split("@", 1)[0]
    return head.split("+", 1)[1] if "+" in head else None


def model_budget(name: str) -> int | None:
    """Tokens in ``<kind>...@<budget>`` (``cpt-base@100M`` -> 100_000_000), else None."""
    if "@" not in name:
        return None
    try:
        return parse_count(name.split("@", 1)[1])
    except ValueError:
        return None


GRID_KEYS = ("families", "target", "residual_sources", "budgets")


@dataclass(frozen=True)
class Grid:
    """The top-level grid keys of a params file."""

    families: list[str] = field(default_factory=list)
    target: str = ""
    residual_sources: list[str] = field(default_factory=list)
    budgets: list[str] = field(default_factory=list)

    def validate(self) -> list[str]:
        errs = []
        for key in ("families", "residual_sources", "budgets"):
            values = getattr(self, key)
            if not values:
                errs.append(f"{key}: must not be empty")
            if len(set(values)) != len(values):
                errs.append(f"{key}: duplicates")
            for v in values:
                if "+" in v or "@" in v or "." in v:
                    errs.append(f"{key}: {v!r} must not contain '+', '@' or '.' (names, DVC param paths)")
        if self.target not in self.families:
            errs.append(f"target: {self.target!r} is not in families {self.families}")
        unknown = [s for s in self.residual_sources if s not in self.families]
        if unknown:
            errs.append(f"residual_sources: {unknown} not in families {self.families}")
        for b in self.budgets:
            try:
                parse_count(b)
            except ValueError as exc:
                errs.append(f"budgets: {exc}")
        return errs

    def models(self) -> list[str]:
        """Every model name the grid's eval stages produce (keep in step with dvc.yaml)."""
        return ([model_name(v, family=f) for f in self.families for v in ORIGIN_KINDS]
                + [model_name(k, budget=b) for b in self.budgets for k in CPT_KINDS]
                + [model_name(MERGED_KIND, family=s, budget=b)
                   for s in self.residual_sources for b in self.budgets])


def load_grid(params_path: str | Path = "params.yaml") -> Grid:
    params = read_params(params_path)
    values = {k: params[k] for k in GRID_KEYS if k in params}
    for k in ("families", "residual_sources", "budgets"):  # budgets may be written as ints
        if isinstance(values.get(k), list):
            values[k] = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in values[k]]
    missing = [f"{k}: missing" for k in GRID_KEYS if k not in params]
    try:
        grid = build_config(Grid, values, "top-level")
    except ConfigError as exc:
        raise ConfigError(str(params_path), missing + [p.replace("top-level.", "", 1) for p in exc.problems]) from None
    if missing:
        raise ConfigError(str(params_path), missing)
    return grid
