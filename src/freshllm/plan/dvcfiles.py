"""What ``dvc repro`` would run, read from ``dvc.yaml`` the way DVC expands it, and how the DVC
cache links outputs (``.dvc/config``) -- without importing DVC (it takes seconds to import).

Stage names follow DVC's rules: ``foreach`` over a list of scalars gives ``<stage>@<value>``
(over a dict, ``<stage>@<key>``; over a list of non-scalars, ``<stage>@<index>``); ``matrix``
gives ``<stage>@<v1>-<v2>...`` in the order of its keys, every combination. ``${key.path}``
values come from the params file the plan reads (``dvc repro`` reads ``params.yaml``: the plan
of a profile is the plan of that profile copied to ``params.yaml``, as the README uses them),
merged with the file's top-level ``vars`` and, per stage, the stage's own ``vars`` (a stage
body's, a matrix stage's or a foreach stage's ``do:``): lists of mappings of literal values,
merged as DVC merges them -- mappings key by key, and a value that redefines one already there
(a params key, an earlier var, ``item`` / ``key``) is an error. ``vars`` entries that name files
to load are not supported here. YAML anchors and merge keys (``<<: *anchor``) are the YAML
loader's (:func:`freshllm.config.load_yaml`, ruamel, as DVC reads dvc.yaml).
"""

from __future__ import annotations

import configparser
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, load_yaml

_VAR = re.compile(r"\$\{\s*([^}]+?)\s*\}")


@dataclass(frozen=True)
class Stage:
    name: str                      # as `dvc stage list` prints it
    base: str                      # the key under `stages:`
    item: Any = None               # the foreach item, or {matrix key: value}
    outs: tuple[tuple[str, bool], ...] = field(default=())   # (path, cached)
    cmd: str | tuple[str, ...] = ""  # interpolated; a tuple where dvc.yaml lists several commands
    deps: tuple[str, ...] = ()     # interpolated paths

    @property
    def commands(self) -> tuple[str, ...]:
        """The stage's commands, in the order DVC runs them (each one a shell command line)."""
        return (self.cmd,) if isinstance(self.cmd, str) else self.cmd


def _lookup(ctx: dict, dotted: str, where: str) -> Any:
    node: Any = ctx
    for key in dotted.split("."):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise ConfigError(where, [f"${{{dotted}}}: not found in the params"])
    return node


def _text(value: Any) -> str:
    """A value inside a string, as DVC writes it (booleans as true / false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def interpolate(value: Any, ctx: dict, where: str) -> Any:
    """``${a.b}`` as a whole string -> the value itself; inside a string -> its text."""
    if isinstance(value, str):
        whole = _VAR.fullmatch(value.strip())
        if whole:
            return _lookup(ctx, whole.group(1), where)
        return _VAR.sub(lambda m: _text(_lookup(ctx, m.group(1), where)), value)
    if isinstance(value, list):
        return [interpolate(v, ctx, where) for v in value]
    if isinstance(value, dict):  # keys too, as DVC does (outs: [{'${x}/y': {cache: false}}])
        return {_key(interpolate(k, ctx, where)): interpolate(v, ctx, where) for k, v in value.items()}
    return value


def _key(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else _text(value)


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) or v is None


def _outs(spec: dict) -> tuple[tuple[str, bool], ...]:
    """(path, cached) of each of an interpolated stage's outs."""
    found = []
    for entry in spec.get("outs") or []:
        if isinstance(entry, str):
            found.append((entry, True))
        elif isinstance(entry, dict):
            for path, opts in entry.items():
                cached = not (isinstance(opts, dict) and opts.get("cache") is False)
                found.append((str(path), cached))
    return tuple(found)


def _has_var(value: Any) -> bool:
    if isinstance(value, str):
        return _VAR.search(value) is not None
    if isinstance(value, list):
        return any(_has_var(v) for v in value)
    if isinstance(value, dict):
        return any(_has_var(k) or _has_var(v) for k, v in value.items())
    return False


def _merge_vars(into: dict, new: dict, entry: str, path: str = "") -> list[str]:
    """DVC's merge of one ``vars`` entry into the context (dvc.parsing.context): mappings merge
    key by key; any other value that meets an existing key is a redefinition, refused."""
    problems = []
    for key, value in new.items():
        dotted = f"{path}{key}"
        if isinstance(into.get(key), dict) and isinstance(value, dict):
            into[key] = dict(into[key])  # copy on write: the params stay as read
            problems += _merge_vars(into[key], value, entry, dotted + ".")
        elif key in into:
            problems.append(f"{entry}: cannot redefine {dotted!r}: already defined (in the params, the "
                            "top-level vars or an earlier entry; DVC refuses it too)")
        else:
            into[key] = value
    return problems


def with_vars(ctx: dict, entries: Any, where: str, stage: str | None = None,
              reserved: tuple[str, ...] = ()) -> dict:
    """``ctx`` plus a ``vars`` list: the dvc.yaml's top-level one (``stage`` None) or a stage's
    (``reserved``: the foreach / matrix names it must not redefine)."""
    if not entries:
        return ctx
    label = f"{where}: stage {stage!r}" if stage else where
    if not isinstance(entries, list):
        raise ConfigError(label, [f"vars: must be a list, got {type(entries).__name__}"])
    if _has_var(entries):
        raise ConfigError(label, ["vars: interpolating (${...}) is not allowed in vars (DVC refuses it too)"])
    out, problems = dict(ctx), []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            problems.append(f"vars[{i}]: {entry!r}: vars that load a file are not supported by the plan "
                            "(give the values inline, or in the params file)")
        elif not isinstance(entry, dict):
            problems.append(f"vars[{i}]: must be a mapping, got {type(entry).__name__}")
        else:
            clash = [k for k in entry if k in reserved]
            problems += [f"vars[{i}]: cannot redefine {k!r}: reserved (the foreach / matrix's own)"
                         for k in clash]
            problems += _merge_vars(out, {k: v for k, v in entry.items() if k not in clash}, f"vars[{i}]")
    if problems:
        raise ConfigError(label, problems)
    return out


_CONTROL = {"foreach", "do", "matrix"}


def _stage(name: str, base: str, item: Any, body: dict, ctx: dict, where: str,
           reserved: tuple[str, ...] = ()) -> Stage:
    """One generated stage: the body's own ``vars`` merged in, then every field interpolated."""
    if not isinstance(body, dict):
        raise ConfigError(where, [f"stage {base!r}: its definition must be a mapping"])
    ctx = with_vars(ctx, body.get("vars"), where, name, reserved)
    fields = {k: v for k, v in body.items() if k != "vars" and k not in _CONTROL}
    resolved = {k: interpolate(v, ctx, f"{where}: stage {name!r}") for k, v in fields.items()}
    cmd = resolved.get("cmd", "")
    cmd = tuple(str(c) for c in cmd) if isinstance(cmd, list) else str(cmd)
    deps = tuple(str(d) for d in resolved.get("deps") or [] if isinstance(d, (str, int, float)))
    return Stage(name, base, item, _outs(resolved), cmd, deps)


def expand(dvc: dict, params: dict, where: str = "dvc.yaml") -> list[Stage]:
    """Every stage of ``dvc`` (a parsed dvc.yaml) with ``params`` substituted, in file order."""
    stages = dvc.get("stages") if isinstance(dvc, dict) else None
    if not isinstance(stages, dict):
        raise ConfigError(where, ["stages: missing"])
    params = with_vars(params, dvc.get("vars"), where)
    out: list[Stage] = []
    for base, spec in stages.items():
        if isinstance(spec, dict) and "foreach" in spec:
            extra = sorted(set(spec) - {"foreach", "do"})
            if extra:  # DVC's schema: a foreach stage holds foreach and do only (vars go in do:)
                raise ConfigError(where, [f"stage {base!r}: foreach takes only 'do' beside it, not {extra}"])
            items = interpolate(spec["foreach"], params, where)
            keyed = isinstance(items, dict)
            pairs = (list(items.items()) if keyed
                     else [(v if _scalar(v) else i, v) for i, v in enumerate(items)])
            body = spec.get("do") or {}
            for key, item in pairs:
                ctx = {**params, "item": item, **({"key": key} if keyed else {})}
                out.append(_stage(f"{base}@{key}", base, item, body, ctx, where,
                                  ("item", "key") if keyed else ("item",)))
        elif isinstance(spec, dict) and "matrix" in spec:
            axes = {k: interpolate(v, params, where) for k, v in spec["matrix"].items()}
            for combo in itertools.product(*(list(enumerate(v)) for v in axes.values())):
                item = {k: v for k, (_, v) in zip(axes, combo)}
                label = "-".join(str(v) if _scalar(v) else f"{k}{i}" for k, (i, v) in zip(axes, combo))
                out.append(_stage(f"{base}@{label}", base, item, spec, {**params, "item": item}, where,
                                  ("item",)))
        else:
            out.append(_stage(base, base, None, spec, params, where))
    return out


def load_stages(dvc_yaml: str | Path, params: dict) -> list[Stage]:
    path = Path(dvc_yaml)
    if not path.is_file():
        raise FileNotFoundError(f"dvc.yaml not found: {path} (run from the repository root or pass --dvc-yaml)")
    return expand(load_yaml(path.read_text(encoding="utf-8")) or {}, params, str(path))


# --- the DVC cache ---------------------------------------------------------------------------

DVC_DEFAULT_LINKS = ["reflink", "copy"]
# file systems where reflinks (copy-on-write clones) work
REFLINK_FS = {"btrfs", "xfs", "apfs", "bcachefs", "ocfs2", "zfs"}


@dataclass(frozen=True)
class Cache:
    links: tuple[str, ...]         # cache.type, in DVC's order of preference
    fs_type: str | None            # of the file system holding the repository, when known
    used: str                      # the link DVC ends up using (its first that works there)

    @property
    def second_copy(self) -> bool:
        """Whether cached outputs take their size twice (workspace + cache)."""
        return self.used == "copy"

    def describe(self) -> str:
        fs = f"{self.fs_type} (this checkout)" if self.fs_type else "an unknown file system"
        extra = "a second copy of every cached output" if self.second_copy else "no second copy"
        return f"cache.type {','.join(self.links)} -> {self.used} on {fs}: {extra}"


def _read_cache(dvc_dir: Path) -> tuple[list[str] | None, Path | None]:
    """(cache.type, cache.dir) of a repository's DVC config; None where unset."""
    found, cache_dir = None, None
    for name in ("config", "config.local"):  # config.local overrides config
        f = dvc_dir / name
        if not f.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(f.read_text(encoding="utf-8"))
        except configparser.Error as exc:
            raise ConfigError(str(f), [f"unreadable: {exc}"]) from None
        if parser.has_option("cache", "type"):
            raw = parser.get("cache", "type").strip().strip("'\"")
            found = [t.strip() for t in raw.split(",") if t.strip()]
        if parser.has_option("cache", "dir"):
            cache_dir = dvc_dir / parser.get("cache", "dir").strip().strip("'\"")
    return found, cache_dir


def _fs_type(path: Path) -> str | None:
    """File-system type of ``path`` from /proc/mounts (Linux); None elsewhere."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, fs = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1].replace("\\040", " ")
        if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, fs = mnt, parts[2]
    return fs


def load_cache(repo_root: str | Path) -> Cache:
    root = Path(repo_root)
    links, cache_dir = _read_cache(root / ".dvc")
    links = links or DVC_DEFAULT_LINKS
    fs = _fs_type(root)
    # a cache.dir on another file system rules out reflinks and hardlinks (symlinks still work)
    same_fs = cache_dir is None or not cache_dir.exists() or cache_dir.stat().st_dev == root.stat().st_dev
    used = "copy"
    for link in links:
        if link == "reflink" and fs in REFLINK_FS and same_fs:
            used = link
            break
        if (link == "hardlink" and same_fs) or link == "symlink":
            used = link
            break
        if link == "copy":
            break
    return Cache(tuple(links), fs, used)
