"""Every project file a stage's code can load is a dependency of that stage in dvc.yaml.

A stage's command runs ``python -m freshllm.<module>`` (directly or under ``accelerate
launch``). Its code dependencies are the transitive closure of the project modules that
module imports -- at the top or inside a function (lazy imports run only on some params,
e.g. the toy world's generators) -- found by reading the imports of every module (AST),
plus, for a package that ships data files its code reads at run time (task YAMLs, local
datasets), the package directory itself. A stage passes when each of those files lies in
one of its ``deps`` (a file, or a directory above it). The test also runs each stage
module's imports in a fresh interpreter, as the stage's command would, and checks that
every project module loaded then is in the static closure (so the static reading misses
nothing that the import machinery finds).
"""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PKG = SRC / "freshllm"
DATA_SUFFIXES = {".yaml", ".yml", ".jsonl", ".json", ".jinja", ".txt", ".csv"}


def module_path(name: str) -> Path | None:
    rel = Path(*name.split("."))
    for cand in (SRC / rel.with_suffix(".py"), SRC / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


@functools.lru_cache(maxsize=None)  # the sources do not change during a test run
def imported_modules(path: Path) -> frozenset[str]:
    """Project modules ``path`` imports anywhere in its body (absolute or relative)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "freshllm")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "freshllm":
                continue
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    # importing a.b.c imports a and a.b too
    closed = set()
    for mod in found:
        parts = mod.split(".")
        closed.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(m for m in closed if module_path(m) is not None)


@functools.lru_cache(maxsize=None)
def code_closure(root_module: str) -> frozenset[Path]:
    """Source files of ``root_module`` and everything it can import, plus data-carrying
    package directories."""
    seen: set[str] = set()
    todo = [root_module]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = module_path(mod)
        if path is None:
            raise AssertionError(f"{root_module}: imports {mod}, which does not exist")
        todo.extend(imported_modules(path) - seen)
        parts = mod.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) not in seen)
    files = {module_path(m) for m in seen}
    for mod in seen:
        path = module_path(mod)
        if path.name == "__init__.py":
            if package_data(path.parent):
                files.add(path.parent)
    return frozenset(files)


def package_data(pkg_dir: Path) -> list[Path]:
    """Data files of the package ``pkg_dir`` itself (not of its sub-packages)."""
    found = []
    for p in pkg_dir.iterdir():
        if p.is_file() and p.suffix in DATA_SUFFIXES:
            found.append(p)
        elif p.is_dir() and not (p / "__init__.py").exists():
            found.extend(q for q in p.rglob("*") if q.is_file() and q.suffix in DATA_SUFFIXES)
    return found


def stages(dvc_yaml: dict) -> dict[str, dict]:
    """Stage name -> {cmd, deps} from dvc.yaml (foreach / matrix bodies as written)."""
    out = {}
    for name, st in dvc_yaml["stages"].items():
        body = st.get("do", st)
        cmd = body["cmd"]  # a string, or a list of commands DVC runs in turn
        out[name] = {"cmd": " && ".join(cmd) if isinstance(cmd, list) else cmd,
                     "deps": [d for d in body.get("deps", []) if isinstance(d, str)]}
    return out


def stage_modules(cmd: str) -> list[str]:
    """The modules ``python -m`` runs: a package runs its ``__main__`` (after its ``__init__``)."""
    mods = []
    for mod in re.findall(r"-m\s+(freshllm(?:\.\w+)+)", cmd):
        mods.append(mod)
        if module_path(f"{mod}.__main__") is not None:
            mods.append(f"{mod}.__main__")
    return mods


def uncovered(stage: dict) -> dict[str, list[str]]:
    """{module: [missing paths]} for each stage module whose code is not in the deps."""
    deps = [ROOT / d for d in stage["deps"] if not d.startswith("$")]
    missing = {}
    for mod in stage_modules(stage["cmd"]):
        bad = sorted(str(p.relative_to(ROOT)) for p in code_closure(mod)
                     if not any(p == d or d in p.parents for d in deps))
        if bad:
            missing[mod] = bad
    return missing


def load_stages() -> dict[str, dict]:
    return stages(yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8")))


STAGES = load_stages()


def test_every_stage_runs_a_project_module():
    for name, st in STAGES.items():
        assert stage_modules(st["cmd"]), f"stage {name}: no `-m freshllm.<module>` in its cmd"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_code_is_covered_by_its_deps(name):
    missing = uncovered(STAGES[name])
    assert not missing, "\n".join(
        f"stage {name}: {mod} loads {', '.join(paths)}, not covered by its deps in dvc.yaml"
        for mod, paths in missing.items())


def test_checker_names_the_stage_and_module_of_a_removed_dep():
    """The checker is not vacuous: dropping any one code dep of a stage is reported."""
    for name, st in STAGES.items():
        for dep in [d for d in st["deps"] if d.startswith("src/")]:
            pruned = {**st, "deps": [d for d in st["deps"] if d != dep]}
            missing = uncovered(pruned)
            assert missing, f"stage {name}: removing {dep} went unnoticed (a dep nothing needs?)"
            assert any(p == dep or p.startswith(dep.rstrip("/") + "/") for ps in missing.values() for p in ps)


def test_runtime_imports_are_in_the_static_closure():
    """Importing each stage module in a fresh interpreter (as its command does before
    main() runs) loads only project modules the static closure already holds."""
    mods = sorted({m for st in STAGES.values() for m in stage_modules(st["cmd"])})
    code = ("import importlib, json, sys\n"
            "out = {}\n"
            "for m in sys.argv[1:]:\n"
            "    before = set(sys.modules)\n"
            "    importlib.import_module(m)\n"
            "    out[m] = sorted(k for k in sys.modules if k.split('.')[0] == 'freshllm')\n"
            "print(json.dumps(out))\n")
    for mod in mods:  # one interpreter per module: nothing carried over
        res = subprocess.run([sys.executable, "-c", code, mod], capture_output=True, text=True,
                             cwd=ROOT, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin",
                                            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
        assert res.returncode == 0, res.stderr
        loaded = json.loads(res.stdout.strip().splitlines()[-1])[mod]
        closure = {module_path(m) for m in loaded}
        static = code_closure(mod)
        assert closure <= static, f"{mod}: loads {sorted(map(str, closure - static))} not found statically"


def test_bytecode_next_to_the_sources_is_not_part_of_a_code_dep(tmp_path):
    """Python writes __pycache__/*.pyc into the package directories that are stage deps; DVC
    hashes every file of a directory dep unless .dvcignore excludes it, so without the
    patterns any import (a test run) marks crawl and everything downstream as changed, and a
    lock written in one checkout is stale in a fresh clone. Shown with DVC's own hashing."""
    import shutil

    from dvc.repo import Repo

    work = tmp_path / "repo"
    shutil.copytree(ROOT / "src/freshllm/io", work / "pkg", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".dvcignore", work / ".dvcignore")
    subprocess.run(["git", "init", "-q"], cwd=work, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=work, check=True)
    shutil.copy(ROOT / ".dvcignore", work / ".dvcignore")  # dvc init writes its own
    (work / "dvc.yaml").write_text("stages:\n  s:\n    cmd: echo hi > out.txt\n    deps: [pkg]\n    outs: [out.txt]\n")
    env_cmd = [sys.executable, "-m", "dvc", "repro", "-q"]
    subprocess.run(env_cmd, cwd=work, check=True, capture_output=True)
    (work / "pkg/__pycache__").mkdir()
    (work / "pkg/__pycache__/hf.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (work / "pkg/stray.pyc").write_bytes(b"\x00")
    with Repo(str(work)) as repo:
        assert repo.status() == {}, "bytecode changed the hash of a directory dep"
    (work / "pkg/hf.py").write_text((work / "pkg/hf.py").read_text() + "\n# edited\n")
    with Repo(str(work)) as repo:
        assert any(k.split(":")[-1] == "s" for k in repo.status())  # and a real edit still does


def test_stages_that_set_torch_threads_depend_on_the_runtime_params():
    """A stage whose module calls ``use_runtime`` (the thread count changes its results in the
    last bits) lists ``runtime`` in its params, so changing it reruns the stage; no other does."""
    raw = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    call = re.compile(r"(?<!def )\buse_runtime\(")
    for name, st in raw.items():
        body = st.get("do", st)
        params = [p for p in body.get("params", []) if isinstance(p, str)]
        uses = any(call.search(module_path(m).read_text(encoding="utf-8")) for m in stage_modules(STAGES[name]["cmd"]))
        assert uses == ("runtime" in params), (
            f"stage {name}: {'calls use_runtime but does not list' if uses else 'lists'} `runtime` in its params")
