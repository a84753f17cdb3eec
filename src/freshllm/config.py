"""Typed, validated stage configs read from one section of ``params.yaml``.

Each stage declares a frozen dataclass. ``load_section`` reads *only* that stage's
section and builds the dataclass, reporting every bad key at once (unknown keys,
missing keys, wrong types, failed ``validate`` checks), each named by its dotted path.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar


T = TypeVar("T")


class ConfigError(ValueError):
    """A params section that does not validate; lists every problem found."""

    def __init__(self, where: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid config in {where}:\n{lines}")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBT]?)\s*$", re.IGNORECASE)
_SIZE_MULT = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


def parse_count(value: Any) -> int:
    """Parse a token count such as ``100M``, ``1B``, ``250K`` or ``12345`` into an int."""
    if isinstance(value, bool):
        raise ValueError(f"expected a count like 100M, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"count must be >= 0, got {value}")
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"expected a count like 100M / 1B / 250K / 12345, got {value!r}")
    return int(round(float(m.group(1)) * _SIZE_MULT[m.group(2).upper()]))


_BYTES_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(I?)B?\s*$", re.IGNORECASE)


def parse_bytes(value: Any) -> int:
    """Parse a size such as ``2GB``, ``500MB``, ``1GiB`` or ``1048576`` into bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _BYTES_RE.match(str(value))
    if not m:
        raise ValueError(f"expected a size like 2GB / 500MB / 1GiB, got {value!r}")
    base = 1024 if m.group(3) else 1000
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * base**power)


def _check_type(value: Any, tp: Any, path: str, problems: list[str]) -> Any:
    """Check ``value`` against annotation ``tp``; convert nested dataclasses. Returns value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        sub: list[str] = []
        for a in non_none:
            sub = []
            out = _check_type(value, a, path, sub)
            if not sub:
                return out
        problems.extend(sub)
        return value
    if origin is typing.Literal:
        if value not in args:
            problems.append(f"{path}: must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # already built and validated (e.g. the shared world)
            return value
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return value
        return _build(tp, value, path, problems)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return value
        item_t = args[0] if args else Any
        return [_check_type(v, item_t, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return value
        vt = args[1] if len(args) == 2 else Any
        return {k: _check_type(v, vt, f"{path}.{k}", problems) for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{path}: expected a number, got {value!r}")
            return value
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string, got {value!r}")
        return value
    return value


def _build(cls: type[T], data: dict, path: str, problems: list[str]) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            problems.append(f"{path}.{key}: unknown key (allowed: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            n = len(problems)
            value = _check_type(data[name], hints[name], f"{path}.{name}", problems)
            if len(problems) > n:
                # badly typed: validate the rest with the default in its place
                if f.default is not dataclasses.MISSING:
                    value = f.default
                elif f.default_factory is not dataclasses.MISSING:
                    value = f.default_factory()
                else:
                    continue
            kwargs[name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"{path}.{name}: missing required key")
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # missing required keys: already reported
        if not problems:
            problems.append(f"{path}: {exc}")
        return None  # type: ignore[return-value]
    validate = getattr(obj, "validate", None)
    if callable(validate):
        problems.extend(f"{path}.{msg}" for msg in validate() or [])
    return obj


def build_config(cls: type[T], data: dict | None, where: str) -> T:
    """Build ``cls`` from ``data``, raising one ``ConfigError`` that lists every problem."""
    problems: list[str] = []
    obj = _build(cls, data or {}, where, problems)
    if problems:
        raise ConfigError(where, problems)
    return obj


def load_yaml(text: str) -> Any:
    """Parse YAML the way DVC does (YAML 1.2 via ruamel): DVC rewrites params.yaml on
    ``dvc exp run -S`` and leaves e.g. ``no`` unquoted, which YAML 1.1 would read as False."""
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def read_params(params_path: str | Path = "params.yaml") -> dict:
    path = Path(params_path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        data = load_yaml(fh.read()) or {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["top level must be a mapping"])
    return data


def lookup(params: dict, dotted: str, where: str) -> Any:
    """The value at ``dotted`` (e.g. ``models.tiny``) in ``params``; a ``ConfigError`` naming
    the missing key and what is there instead."""
    node: Any = params
    done: list[str] = []
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            have = sorted(node) if isinstance(node, dict) else []
            raise ConfigError(where, [f"{'.'.join([*done, key])}: missing section"
                                      + (f" (have: {', '.join(map(str, have))})" if done and have else "")])
        node = node[key]
        done.append(key)
    return node


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Top-level ``world``: the generated world every local source builds from, one key for
    all stages (models ``source: local``, crawl ``server_address: local``, eval and report).

    ``news``: generated encyclopedia text (d1) and news, the paper's nine-task suite.
    ``toyworld``: the toy world of :mod:`freshllm.synthetic.toyworld` (seed ``seed``): d1/d2
    facts and the toy suite."""

    kind: typing.Literal["news", "toyworld"] = "news"
    seed: int = 0
    # toyworld: the d2 events split into this many monthly slices, month m (counted from
    # 2024-01) reporting slice m % d2_slices only (new events each month about the same people
    # and towns: the chained updates' monthly windows); 1: every month reports every event
    d2_slices: int = 1

    def validate(self) -> list[str]:
        errs = []
        if isinstance(self.d2_slices, int) and not 1 <= self.d2_slices <= 12:
            errs.append(f"d2_slices: must be in 1..12, got {self.d2_slices}")
        if isinstance(self.d2_slices, int) and self.d2_slices > 1 and self.kind != "toyworld":
            errs.append("d2_slices: only the toyworld has d2 event slices (kind: toyworld)")
        return errs


# Sections that are overlays of another: the section a stage reads is the base section updated,
# key by key (nested mappings merged), with the overlay's keys. chain.cpt lists only what the
# chain's continued pre-training changes from cpt (e.g. its LR); the rest is cpt's.
OVERLAYS: dict[str, str] = {"chain.cpt": "cpt"}


def merge_sections(base: Any, over: Any) -> Any:
    """``base`` updated with ``over``: mappings merged recursively, anything else replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: merge_sections(base.get(k), v) for k, v in over.items()}}
    return over


def section_values(params: dict, section: str, where: str) -> Any:
    """The values of ``section`` as a stage reads them: its own, or for an overlay section
    (:data:`OVERLAYS`, a top-level base) its base's updated with its own (an absent overlay is
    the base)."""
    base = OVERLAYS.get(section)
    if base is None:
        return lookup(params, section, where)
    parent, _, key = section.rpartition(".")
    node = lookup(params, parent, where) if parent else params
    own = node.get(key) if isinstance(node, dict) else None
    if own is not None and not isinstance(own, dict):
        raise ConfigError(where, [f"{section}: expected a mapping (what it changes of `{base}`), got {type(own).__name__}"])
    return merge_sections(params.get(base) or {}, own or {})  # no base section: its defaults


def load_section(cls: type[T], section: str, params_path: str | Path = "params.yaml",
                 overrides: dict[str, Any] | None = None) -> T:
    """The one way a stage reads its params: the (dotted) ``section`` of the params file,
    updated with ``overrides`` (values the command line gives), into a validated ``cls``.

    A config with a ``world: WorldConfig`` field gets the top-level ``world`` section, so
    the world is written once for every stage. Every problem of both is reported at once."""
    data = read_params(params_path)
    values = section_values(data, section, str(params_path))
    if values is not None and not isinstance(values, dict):
        raise ConfigError(str(params_path), [f"{section}: expected a mapping, got {type(values).__name__}"])
    values = {**(values or {}), **(overrides or {})}
    problems: list[str] = []
    hints = typing.get_type_hints(cls)
    if hints.get("world") is WorldConfig:
        if "world" in values:
            problems.append(f"{section}.world: unknown key (the world is the top-level `world` section)")
        if "world" not in data:
            problems.append("world: missing section (e.g. world: {kind: news, seed: 0})")
            world = WorldConfig()
        else:
            world = _build(WorldConfig, data["world"] or {}, "world", problems) or WorldConfig()
        values["world"] = world
    obj = _build(cls, values, section, problems)
    check = getattr(cls, "check_params", None)  # checks that need other sections of the file
    if obj is not None and check is not None:
        problems += check(data, str(params_path))
    if problems:
        raise ConfigError(section, problems)
    return obj


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Top-level ``runtime``: how every torch stage uses the CPU (:func:`freshllm.common.use_runtime`).

    ``threads``: torch's intra-op threads. ``auto``: ``OMP_NUM_THREADS`` when it is set (the
    choice of a launcher, or of a script that runs jobs side by side), else the cores this
    process may use (CPU affinity and the cgroup's CPU quota) shared among the launcher's
    processes on this node (``LOCAL_WORLD_SIZE``). A number: that many, whatever the machine.
    The thread count changes float summation order and so the trained weights in the last
    bits: the count used goes into every torch stage's metrics (``runtime``)."""

    threads: int | str = "auto"

    def validate(self) -> list[str]:
        if isinstance(self.threads, str) and self.threads != "auto":
            return [f"threads: must be auto or a positive integer, got {self.threads!r}"]
        if isinstance(self.threads, int) and self.threads < 1:
            return [f"threads: must be auto or a positive integer, got {self.threads}"]
        return []


def load_runtime(params_path: str | Path = "params.yaml") -> RuntimeConfig:
    """The top-level ``runtime`` section (absent: the defaults)."""
    data = read_params(params_path)
    values = data.get("runtime")
    if values is not None and not isinstance(values, dict):
        raise ConfigError(str(params_path), [f"runtime: expected a mapping, got {type(values).__name__}"])
    return build_config(RuntimeConfig, values or {}, "runtime")
