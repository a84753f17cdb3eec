"""The params of a chain of updates: the top-level ``updates`` (the publishing windows, in
order, each naming its parent), ``chains`` (the chain-level stages' one name, or none),
``chain`` (what every update does) and ``promote`` (the gate's thresholds).

``updates`` maps each window's name to its publishing window and its parent::

    updates:
      2024-01: {published_from: "2024-01-01", published_to: "2024-01-31", prev: ancestor}
      2024-02: {published_from: "2024-02-01", published_to: "2024-02-29", prev: 2024-01}

DVC interpolation cannot compute "the previous item", so each entry names it (``prev``) and
the stages check it: the first entry's parent is ``ancestor`` (the target family's pair), each
later entry's is the entry before it, and the windows follow each other without overlapping.
A mapping (not a list) so that DVC names the stages by window (``u-cpt-base@2024-02``) and
appending a window adds stages without renaming any."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from ..config import ConfigError, _build, parse_count, read_params

class ChainError(ValueError):
    """A chain's inputs that do not fit together (a record of another window, an eval of
    another model); the message names the file."""


ANCESTOR = "ancestor"  # the parent of the first update: the target family's base / instruct pair
CPT_FROM = ("previous", "ancestor")  # chain.cpt_from
CptFrom = Literal["previous", "ancestor"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def _iso(value: Any) -> Any:
    """YAML reads an unquoted 2024-01-31 as a date: the window takes it as its ISO string."""
    return value.isoformat() if isinstance(value, date) else value


@dataclass(frozen=True)
class Update:
    """One update: its window's name, publishing window (inclusive) and parent."""

    window: str
    published_from: str
    published_to: str
    prev: str

    @property
    def dates(self) -> tuple[date, date]:
        return date.fromisoformat(self.published_from), date.fromisoformat(self.published_to)

    def validate(self) -> list[str]:
        errs = []
        if not _NAME.match(self.window) or self.window == ANCESTOR:
            errs.append(f"window: {self.window!r} must be a name of letters, digits, '-' and '_' "
                        f"(not {ANCESTOR!r}): it names stages and paths")
        for key in ("published_from", "published_to"):
            try:
                date.fromisoformat(getattr(self, key))
            except (TypeError, ValueError):
                errs.append(f"{key}: expected a date YYYY-MM-DD, got {getattr(self, key)!r}")
        if not errs and self.dates[0] > self.dates[1]:
            errs.append(f"published_from: {self.published_from} is after published_to {self.published_to}")
        return errs


@dataclass(frozen=True)
class Chain:
    """The ``updates`` in order, checked as a chain (see the module doc)."""

    updates: list[Update] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)

    def validate(self) -> list[str]:
        errs = []
        if len(self.chains) > 1:
            errs.append(f"chains: at most one chain, got {self.chains}")
        if self.updates and not self.chains:
            errs.append("chains: empty, but `updates` lists windows: set chains: [main] "
                        "(the chain-level stages: the ancestor node, promote, the chain report)")
        windows = [u.window for u in self.updates]
        if len(set(windows)) != len(windows):
            errs.append("updates: duplicate windows")
        for i, u in enumerate(self.updates):
            want = ANCESTOR if i == 0 else self.updates[i - 1].window
            if u.prev != want:
                errs.append(f"updates.{u.window}.prev: must be {want!r} (the "
                            f"{'ancestor: the first update' if i == 0 else 'update before it'}), got {u.prev!r}")
            if i and not Update.validate(u) and not Update.validate(self.updates[i - 1]):
                before = self.updates[i - 1]
                if u.dates[0] <= before.dates[1]:
                    errs.append(f"updates.{u.window}: window {u.published_from}..{u.published_to} does not "
                                f"start after {before.window}'s ({before.published_from}..{before.published_to})")
        return errs

    @property
    def windows(self) -> list[str]:
        return [u.window for u in self.updates]

    def get(self, window: str) -> Update:
        for u in self.updates:
            if u.window == window:
                return u
        raise ConfigError("updates", [f"{window}: not an update window (have: {', '.join(self.windows) or 'none'})"])

    def earlier(self, window: str) -> list[str]:
        """The windows up to and including ``window``."""
        return self.windows[: self.windows.index(window) + 1]


def load_chain(params_path: str | Path = "params.yaml") -> Chain:
    """The top-level ``updates`` and ``chains`` of a params file, checked (every problem at once:
    each entry's keys, then the chain's order and parents over the entries that parsed)."""
    params = read_params(params_path)
    raw = params.get("updates")
    problems: list[str] = []
    if "updates" not in params:
        problems.append("updates: missing (`updates: {}` when there is no chain)")
    elif raw is not None and not isinstance(raw, dict):
        problems.append(f"updates: expected a mapping window -> {{published_from, published_to, prev}}, "
                        f"got {type(raw).__name__}")
    updates: list[Update] = []
    for window, entry in (raw or {}).items() if isinstance(raw, dict) else ():
        if not isinstance(entry, dict):
            problems.append(f"updates.{window}: expected a mapping {{published_from, published_to, prev}}")
            continue
        values = {"window": str(window), **{k: str(v) if k == "prev" else _iso(v) for k, v in entry.items()}}
        if "window" in entry:
            problems.append(f"updates.{window}.window: unknown key (the window is the entry's name)")
        u = _build(Update, values, f"updates.{window}", problems)
        if u is not None:
            updates.append(u)
    chains = params.get("chains", [])
    if not isinstance(chains, list) or not all(isinstance(c, str) for c in chains):
        problems.append(f"chains: expected a list of names, got {chains!r}")
        chains = []
    chain = Chain(updates=updates, chains=chains)
    problems += chain.validate()
    if problems:
        raise ConfigError(str(params_path), problems)
    return chain


@dataclass(frozen=True)
class ChainConfig:
    """``chain``: what every update does. Its ``cpt`` subsection is an overlay of ``cpt``: it lists
    only what the chain's continued pre-training changes (its LR, its replay share), the rest is
    ``cpt``'s (``python -m freshllm.cpt --section chain.cpt`` reads the merged section, see
    :data:`freshllm.config.OVERLAYS`); loading ``chain`` validates the merged section as a cpt
    section, so a bad chain.cpt key fails every chain stage, not only the cpt ones."""

    residual_source: str = ""  # the family whose residual is applied to every update's cpt-base
    tokens: str = "100K"  # new tokens packed per window
    replay_tokens: str | None = None  # the replay pool packed from the earlier windows (null: tokens)
    cpt: dict[str, Any] = field(default_factory=dict)  # what differs from `cpt` (checked by check_params)
    # where each update's cpt starts: `previous` (the parent update's cpt-base / cpt-instruct: a
    # chain) | `ancestor` (re-rooted: the ancestor's base / instruct every month, trained on the
    # union of every window so far, see freshllm.updates.start and .window)
    cpt_from: CptFrom = "previous"

    def validate(self) -> list[str]:
        errs = []
        if not self.residual_source:
            errs.append("residual_source: missing (a family of residual_sources)")
        for key in ("tokens", "replay_tokens"):
            value = getattr(self, key)
            if value is None:
                continue
            try:
                if parse_count(value) <= 0:
                    errs.append(f"{key}: must be > 0")
            except ValueError as exc:
                errs.append(f"{key}: {exc}")
        return errs

    @staticmethod
    def check_params(params: dict, where: str) -> list[str]:
        """``chain.cpt`` over ``cpt`` must be a valid cpt section (named ``chain.cpt.<key>``)."""
        from ..config import section_values
        from ..cpt import CptConfig

        problems: list[str] = []
        try:
            _build(CptConfig, section_values(params, "chain.cpt", where) or {}, "chain.cpt", problems)
        except ConfigError as exc:
            problems += exc.problems
        return problems

    @property
    def replay_budget(self) -> str:
        return self.replay_tokens or self.tokens


@dataclass(frozen=True)
class PromoteConfig:
    """``promote``: when an update's merged model replaces the promoted one. The gate scores the
    models itself on the VALIDATION split (the toy IFEval validation prompts and the validation
    half of every window's held-out news so far, :mod:`.gate`), never on the eval's test items."""

    instruction: str = "ifeval"  # the instruction-following score (the report's: mean of the IFEval metrics)
    max_instruction_drop_se: float = 2.0  # may be lower by at most this many combined standard errors
    fresh: Literal["new", "all"] = "new"  # bits per byte on the update's own window | the mean over all so far
    min_fresh_bpb_gain: float = 0.0  # the candidate's must be lower than the incumbent's by more than this
    max_forget_se: float | None = None  # each earlier window's bpb may be higher by at most this many SEs (null: not checked)
    val_ifeval_prompts: int = 60  # toy IFEval validation prompts: the next N of the eval's generator
    # an absolute floor: instruction following >= this fraction of the ancestor instruct model's
    # (validation, less max_instruction_drop_se combined SEs); null: off
    min_instruction_kept: float | None = None
    # residual overrides tried in order when the candidate fails (partial `residual` sections,
    # e.g. {alpha: 0.75}); the best passing try is promoted (lowest validation fresh bpb)
    retry: list[dict[str, Any]] = field(default_factory=list)

    def validate(self) -> list[str]:
        errs = []
        if self.max_instruction_drop_se < 0:
            errs.append("max_instruction_drop_se: must be >= 0")
        if self.max_forget_se is not None and self.max_forget_se < 0:
            errs.append("max_forget_se: must be >= 0 or null")
        if self.val_ifeval_prompts <= 0:
            errs.append(f"val_ifeval_prompts: must be > 0, got {self.val_ifeval_prompts}")
        if self.min_instruction_kept is not None and not 0 < self.min_instruction_kept <= 1.5:
            errs.append(f"min_instruction_kept: must be in (0, 1.5] or null, got {self.min_instruction_kept}")
        for i, entry in enumerate(self.retry):
            if not entry:
                errs.append(f"retry[{i}]: empty (a partial residual section, e.g. {{alpha: 0.75}})")
        return errs
