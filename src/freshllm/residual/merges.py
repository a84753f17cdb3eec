"""The ``merges:`` grid of params.yaml: named merge settings for the method table.

``merges`` maps a name to partial ``residual`` overrides, e.g.::

    merges:
      beta050: {beta: 0.5}
      ties: {method: ties_dr, density: 0.5}

Each setting is the ``residual`` section overlaid with its entry (:func:`overlay`) and
validated as a whole, every bad key named ``merges.<name>.<key>``. The ``merge@<name>``
stages apply each to ``models/cpt/base-<merge_budget>`` (top-level ``merge_budget``, one of
``budgets``) with the target family's residual; ``residual apply --merge NAME`` reads one.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..config import ConfigError, build_config, load_section, parse_count, read_params
from .config import ResidualConfig

NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # a stage name, a path and a DVC param path part


def overlay(cfg: ResidualConfig, overrides: dict, where: str) -> ResidualConfig:
    """``cfg`` with the keys of ``overrides`` replaced, validated as a whole; a ConfigError
    listing every problem, each named ``<where>.<key>``."""
    if not isinstance(overrides, dict):
        raise ConfigError(where, [f"{where}: expected a mapping of residual keys, got "
                                  f"{type(overrides).__name__} {overrides!r}"])
    return build_config(ResidualConfig, {**asdict(cfg), **overrides}, where)


def load_merges(params_path: str | Path = "params.yaml") -> dict[str, ResidualConfig]:
    """``{name: ResidualConfig}`` of the ``merges`` grid ({} without one); every problem of
    every entry (and of ``merge_budget``, when there are merges) in one ConfigError."""
    params = read_params(params_path)
    residual = load_section(ResidualConfig, "residual", params_path)
    merges: Any = params.get("merges") or {}
    if not isinstance(merges, dict):
        raise ConfigError(str(params_path), [f"merges: expected a mapping name -> residual overrides, "
                                             f"got {type(merges).__name__}"])
    problems: list[str] = []
    out: dict[str, ResidualConfig] = {}
    for name, entry in merges.items():
        if not isinstance(name, str) or not NAME.match(name):
            problems.append(f"merges.{name}: a name of letters, digits, '_' and '-' only (a stage name "
                            "and a DVC param path: no '.', e.g. beta050 for beta 0.5)")
            continue
        try:
            out[name] = overlay(residual, entry or {}, f"merges.{name}")
        except ConfigError as exc:
            problems += exc.problems
    if merges:
        problems += _budget_problems(params)
    if problems:
        raise ConfigError(str(params_path), problems)
    return out


def _budget_problems(params: dict) -> list[str]:
    budget, budgets = params.get("merge_budget"), [str(b) for b in params.get("budgets") or []]
    if budget is None:
        return [f"merge_budget: missing (the budget whose cpt-base the merges start from; one of {budgets})"]
    if str(budget) not in budgets:
        return [f"merge_budget: {budget!r} is not in budgets {budgets}"]
    return []


def merge_budget(params_path: str | Path = "params.yaml") -> str:
    """The top-level ``merge_budget`` (validated against ``budgets``)."""
    params = read_params(params_path)
    problems = _budget_problems(params)
    if problems:
        raise ConfigError(str(params_path), problems)
    parse_count(str(params["merge_budget"]))
    return str(params["merge_budget"])


def get_merge(params_path: str | Path, name: str) -> ResidualConfig:
    merges = load_merges(params_path)
    if name not in merges:
        raise ConfigError(str(params_path), [f"merges.{name}: no such merge setting (have: "
                                             f"{', '.join(merges) or 'none'})"])
    return merges[name]
