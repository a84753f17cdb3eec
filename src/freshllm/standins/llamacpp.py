"""llama.cpp's vocab files, offline: the llama-cpp-python sdist on PyPI (downloaded once with
pip), its GGUF vocabularies and test strings extracted member by member into the cache."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Iterator

from ..common import atomic_dir

log = logging.getLogger("freshllm.standins.tokenizers")


LLAMA_CPP_PYTHON = "llama-cpp-python"


LLAMA_CPP_PYTHON_VERSION = "0.3.36"


_SDIST_DIR = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/models"


GGUF_NAMES = {"llama3": "ggml-vocab-llama-bpe.gguf", "qwen2": "ggml-vocab-qwen2.gguf"}


_SUFFIXES = ("", ".inp", ".out")


def cache_root() -> Path:
    """``$FRESHLLM_CACHE`` if set, else ``~/.cache/freshllm``."""
    env = os.environ.get("FRESHLLM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "freshllm"


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """An exclusive inter-process lock under the cache (parallel tests / DVC stages)."""
    import fcntl
    path = cache_root() / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _vocab_dir() -> Path:
    return cache_root() / "llama.cpp-vocab" / f"llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}"


def pip_download(spec: str, dest: Path, glob: str, what: str, sdist: bool = False) -> Path:
    """One distribution (``spec``, no dependencies) from the package index into ``dest`` with pip,
    as any dependency is fetched: the file matching ``glob``. ``what`` says why, in the log."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *(["--no-binary", ":all:"] if sdist else []),
           "--disable-pip-version-check", spec, "-d", str(dest)]
    kind = "sdist" if sdist else "wheel"
    log.info("downloading the %s %s (%s)", spec, kind, what)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"cannot download {spec} with pip: {e}") from None
    found = sorted(dest.glob(glob))
    if res.returncode != 0 or not found:
        lines = [ln.strip() for ln in (res.stderr + res.stdout).splitlines() if ln.strip()]
        errs = [ln for ln in lines if "error" in ln.lower()] or lines or [f"no {kind} written"]
        raise RuntimeError(f"cannot download {spec} ({kind}) with pip: {errs[-1]}")
    return found[0]


def _download_sdist(dest: Path) -> Path:
    return pip_download(f"{LLAMA_CPP_PYTHON}=={LLAMA_CPP_PYTHON_VERSION}", dest, "llama_cpp_python-*.tar.gz",
                        "~77 MB, for llama.cpp's vocab files", sdist=True)


def _extract(sdist: Path, dest: Path) -> None:
    wanted = {f"{_SDIST_DIR}/{g}{s}": f"{g}{s}" for g in GGUF_NAMES.values() for s in _SUFFIXES}
    found: set[str] = set()
    with atomic_dir(dest) as tmp, tarfile.open(sdist, "r:gz") as tf:
        for member in tf:  # stream: never extract the whole archive
            name = wanted.get(member.name)
            if name is None or not member.isfile():
                continue
            src = tf.extractfile(member)
            assert src is not None
            with open(tmp / name, "wb") as out:
                shutil.copyfileobj(src, out)
            found.add(name)
            if len(found) == len(wanted):
                break
        missing = sorted(set(wanted.values()) - found)
        if missing:
            raise RuntimeError(f"{sdist.name} lacks {', '.join(missing)} under {_SDIST_DIR}")


def vocab_files(family: str) -> dict[str, Path]:
    """``{"gguf", "inp", "out"}`` paths of a family's llama.cpp vocab files (fetched on demand)."""
    gguf = GGUF_NAMES[family]
    d = _vocab_dir()
    paths = {"gguf": d / gguf, "inp": d / f"{gguf}.inp", "out": d / f"{gguf}.out"}
    if not all(p.is_file() for p in paths.values()):
        with _lock("vocab"):
            if not all(p.is_file() for p in paths.values()):
                local = os.environ.get("FRESHLLM_LLAMACPP_SDIST")
                if local:
                    _extract(Path(local), d)
                else:
                    cache_root().mkdir(parents=True, exist_ok=True)
                    with tempfile.TemporaryDirectory(prefix=".sdist-", dir=cache_root()) as tmp:
                        _extract(_download_sdist(Path(tmp)), d)
    return paths
