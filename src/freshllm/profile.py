"""Profiles as overlays: ``profiles/<name>.yaml`` names its parent and lists only what differs.

    python -m freshllm.profile use toyworld     # writes the complete params.yaml that DVC reads
    python -m freshllm.profile diff toyworld    # what the profile changes, against its parent
    python -m freshllm.profile list             # every profile and its parent

A profile is a params file with two directives at the top, in the spirit of lm-eval's
``include:``:

* ``include: <parent>`` -- the profile it starts from (``default`` is ``profiles/default.yaml``,
  the complete default params; a profile without ``include`` is complete itself);
* ``replace: [<dotted key>, ...]`` (optional) -- mappings taken whole from the profile instead of
  merged into the parent's (e.g. ``models``, when a profile's model families differ).

Everything else is merged into the parent's expansion: a mapping key by key, any other value
(a list, a number, a string, null) replaces the parent's. Comments survive: the parent's,
except on a value the profile replaces, which carries the profile's comment. The expansion is
what every stage reads, so :func:`expand` checks the directives and the include chain (no
cycle, no missing parent) and names the file and key of any problem.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

from .config import ConfigError

PROFILES = Path("profiles")
DEFAULT = "default"
DIRECTIVES = ("include", "replace")


def _yaml():
    from ruamel.yaml import YAML

    y = YAML()  # round trip: comments and key order kept
    y.preserve_quotes = True
    y.width = 4096
    return y


def profile_path(name: str, root: Path = PROFILES) -> Path:
    path = Path(root) / f"{name}.yaml"
    if not path.is_file():
        have = sorted(p.stem for p in Path(root).glob("*.yaml"))
        raise FileNotFoundError(f"no profile {name!r}: {path} does not exist (profiles: {', '.join(have)})")
    return path


def load(name: str, root: Path = PROFILES):
    path = profile_path(name, root)
    data = _yaml().load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["top level must be a mapping"])
    return data


def _merge(base, over, path: str, replace: set[str]) -> None:
    """Merge the mapping ``over`` into ``base`` in place (see the module doc)."""
    for key, value in over.items():
        dotted = f"{path}.{key}" if path else str(key)
        if (isinstance(value, dict) and isinstance(base.get(key), dict) and dotted not in replace):
            _merge(base[key], value, dotted, replace)
            continue
        base[key] = value
        ca = getattr(base, "ca", None)
        if ca is not None:  # the parent's end-of-line comment described the old value
            ca.items.pop(key, None)
            over_ca = getattr(over, "ca", None)
            if over_ca is not None and key in over_ca.items:
                ca.items[key] = over_ca.items[key]


def expand(name: str, root: Path = PROFILES, _seen: tuple[str, ...] = ()):
    """The complete params of profile ``name`` (a ruamel mapping, comments kept)."""
    if name in _seen:
        raise ConfigError(str(Path(root) / f"{name}.yaml"), [f"include: a cycle: {' -> '.join([*_seen, name])}"])
    data = load(name, root)
    where = str(Path(root) / f"{name}.yaml")
    parent = data.get("include")
    replace = data.get("replace") or []
    problems = []
    if parent is not None and not isinstance(parent, str):
        problems.append(f"include: expected a profile name, got {parent!r}")
    if not isinstance(replace, list) or not all(isinstance(k, str) for k in replace):
        problems.append(f"replace: expected a list of dotted keys, got {replace!r}")
    elif replace and parent is None:
        problems.append("replace: only a profile with include: has a parent to replace keys of")
    if problems:
        raise ConfigError(where, problems)
    for key in DIRECTIVES:
        data.pop(key, None)
    if parent is None:
        return data
    base = expand(parent, root, (*_seen, name))
    for dotted in replace:
        node = data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(where, [f"replace: {dotted}: not a key of this profile"])
            node = node[part]
    _merge(base, data, "", set(replace))
    return base


def parent_of(name: str, root: Path = PROFILES) -> str | None:
    return load(name, root).get("include")


def dump(data) -> str:
    buf = io.StringIO()
    _yaml().dump(data, buf)
    return buf.getvalue()


def plain(data) -> Any:
    """``data`` as plain dicts and lists (what the stages read)."""
    from .config import load_yaml

    return load_yaml(dump(data))


def use(name: str, out: Path = Path("params.yaml"), root: Path = PROFILES) -> Path:
    """Write profile ``name``'s expansion to ``out`` (atomically)."""
    from .common import atomic_file

    data = expand(name, root)
    parent = parent_of(name, root)
    text = dump(data) if parent is not None else profile_path(name, root).read_text(encoding="utf-8")
    if parent is not None:  # the profile's own header comment, not its ancestors'
        lines = text.splitlines(keepends=True)
        while lines and (lines[0].startswith("#") or not lines[0].strip()):
            lines.pop(0)
        own = []
        for line in profile_path(name, root).read_text(encoding="utf-8").splitlines(keepends=True):
            if not line.startswith("#"):
                break
            own.append(line)
        text = (f"# Generated by `python -m freshllm.profile use {name}` from profiles/{name}.yaml "
                f"(include: {parent}); edit the profile, not this file.\n") + "".join(own) + "".join(lines)
    with atomic_file(out, "w", encoding="utf-8") as fh:
        fh.write(text)
    return out


def differences(name: str, root: Path = PROFILES) -> list[tuple[str, Any, Any]]:
    """``(dotted key, parent's value, profile's value)`` for every leaf the profile changes
    (a key the parent lacks: parent's value ``<absent>``)."""
    parent = parent_of(name, root)
    before = plain(expand(parent, root)) if parent is not None else {}
    after = plain(expand(name, root))
    out: list[tuple[str, Any, Any]] = []

    def walk(a, b, path):
        for key in b:
            dotted = f"{path}.{key}" if path else str(key)
            if isinstance(b[key], dict) and isinstance(a.get(key) if isinstance(a, dict) else None, dict):
                walk(a[key], b[key], dotted)
            elif not isinstance(a, dict) or key not in a:
                out.append((dotted, "<absent>", b[key]))
            elif a[key] != b[key]:
                out.append((dotted, a[key], b[key]))
        for key in (a if isinstance(a, dict) else {}):
            if key not in b:
                out.append((f"{path}.{key}" if path else str(key), a[key], "<removed>"))

    walk(before, after, "")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m freshllm.profile", description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", type=Path, default=PROFILES, help="the profiles directory")
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("use", help="write the profile's complete params (default: params.yaml)")
    u.add_argument("name")
    u.add_argument("--out", type=Path, default=Path("params.yaml"))
    d = sub.add_parser("diff", help="what the profile changes against its parent")
    d.add_argument("name")
    sub.add_parser("list", help="every profile and its parent")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "use":
            out = use(args.name, args.out, args.profiles)
            print(f"{out}: profile {args.name}")
        elif args.cmd == "diff":
            parent = parent_of(args.name, args.profiles)
            print(f"{args.name} (include: {parent or '-'}):")
            for key, a, b in differences(args.name, args.profiles):
                print(f"  {key}: {a!r} -> {b!r}")
        else:
            for p in sorted(Path(args.profiles).glob("*.yaml")):
                print(f"{p.stem}: include {parent_of(p.stem, args.profiles) or '-'}")
    except (ConfigError, FileNotFoundError) as exc:
        print(f"profile: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
