"""What ``dvc repro`` would run, read from ``dvc.yaml`` the way DVC expands it, and how the DVC
cache links outputs (``.dvc/config``) -- without importing DVC (it takes seconds to import).

Stage names follow DVC's rules: ``foreach`` over a list of scalars gives ``<stage>@<value>``
(over a dict, ``<stage>@<key>``; over a list of non-scalars, ``<stage>@<index>``); ``matrix``
gives ``<stage>@<v1>-<v2>...`` in the order of its keys, every combination. ``${key.path}``
values come from the params file the plan reads (``dvc repro`` reads ``params.yaml``: the plan
of a profile is the plan of that profile copied to ``params.yaml``, as the README uses them).
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


def interpolate(value: Any, ctx: dict, where: str) -> Any:
    """``${a.b}`` as a whole string -> the value itself; inside a string -> its text."""
    if isinstance(value, str):
        whole = _VAR.fullmatch(value.strip())
        if whole:
            return _lookup(ctx, whole.group(1), where)
        return _VAR.sub(lambda m: str(_lookup(ctx, m.group(1), where)), value)
    if isinstance(value, list):
        return [interpolate(v, ctx, where) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, ctx, where) for k, v in value.items()}
    return value


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) or v is None


def _outs(spec: dict, ctx: dict, where: str) -> tuple[tuple[str, bool], ...]:
    found = []
    for entry in spec.get("outs") or []:
        if isinstance(entry, str):
            found.append((interpolate(entry, ctx, where), True))
        elif isinstance(entry, dict):
            for path, opts in entry.items():
                cached = not (isinstance(opts, dict) and opts.get("cache") is False)
                found.append((interpolate(path, ctx, where), cached))
    return tuple(found)


def expand(dvc: dict, params: dict, where: str = "dvc.yaml") -> list[Stage]:
    """Every stage of ``dvc`` (a parsed dvc.yaml) with ``params`` substituted, in file order."""
    stages = dvc.get("stages") if isinstance(dvc, dict) else None
    if not isinstance(stages, dict):
        raise ConfigError(where, ["stages: missing"])
    out: list[Stage] = []
    for base, spec in stages.items():
        if "foreach" in spec:
            items = interpolate(spec["foreach"], params, where)
            pairs = (list(items.items()) if isinstance(items, dict)
                     else [(v if _scalar(v) else i, v) for i, v in enumerate(items)])
            body = spec.get("do") or {}
            for key, item in pairs:
                ctx = {**params, "item": item, **({"key": key} if isinstance(items, dict) else {})}
                out.append(Stage(f"{base}@{key}", base, item, _outs(body, ctx, where)))
        elif "matrix" in spec:
            axes = {k: interpolate(v, params, where) for k, v in spec["matrix"].items()}
            for combo in itertools.product(*(list(enumerate(v)) for v in axes.values())):
                item = {k: v for k, (_, v) in zip(axes, combo)}
                label = "-".join(str(v) if _scalar(v) else f"{k}{i}" for k, (i, v) in zip(axes, combo))
                out.append(Stage(f"{base}@{label}", base, item,
                                 _outs(spec, {**params, "item": item}, where)))
        else:
            out.append(Stage(base, base, None, _outs(spec, params, where)))
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
