"""Helpers shared by every stage: offline env, logging, atomic outputs, hashing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger("freshllm")

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_offline(offline: bool = True) -> None:
    """Set the HF offline variables. Call *before* importing transformers/datasets."""
    if offline:
        for k, v in OFFLINE_ENV.items():
            os.environ.setdefault(k, v)


@contextlib.contextmanager
def user_errors(stage: str, *kinds: type[BaseException]) -> Iterator[None]:
    """Errors a user can fix (bad params, a missing or broken input, and the stage's own
    ``kinds``) end the stage with one message ``<stage>: <what and where>`` and exit
    status 1, no traceback. Anything else is a bug and keeps its traceback."""
    from .config import ConfigError

    try:
        yield
    except (ConfigError, FileNotFoundError, *kinds) as exc:
        raise SystemExit(f"{stage}: {exc}") from None


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


@contextlib.contextmanager
def quiet_logging(level: int = logging.WARNING) -> Iterator[None]:
    """Silence log records up to ``level`` (benchmarks print their own table), then restore."""
    previous = logging.root.manager.disable
    logging.disable(level)
    try:
        yield
    finally:
        logging.disable(previous)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _claim(final: Path) -> str:
    """Make ``final``'s parent, remove what killed runs left there, and return this process's
    owner tag ``<host>-<pid>`` for the temp names.

    Temps are ``.<name>.tmp-<host>-<pid>-<random>`` (and ``.<name>.old-<host>-<pid>``): a run
    that was killed (no cleanup) leaves them behind, so the ones of the same output whose
    owner, on this host, is no longer running are removed; those of live processes, of other
    hosts or of another naming scheme are left alone.
    """
    import re
    import socket

    final.parent.mkdir(parents=True, exist_ok=True)
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"
    mine = re.compile(rf"\.{re.escape(final.name)}\.(?:tmp|old)-{re.escape(host)}-(\d+)(?:-[A-Za-z0-9_]+)?")
    for p in final.parent.iterdir():
        m = mine.fullmatch(p.name)
        if m and not p.is_symlink() and not _running(int(m.group(1))):
            log.warning("removing %s: left by process %s, which is no longer running", p, m.group(1))
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return f"{host}-{os.getpid()}"


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temp directory next to ``final``; rename it into place on success.

    On failure the temp directory is removed and ``final`` is left untouched; what a killed
    run left is removed at the next start (``_claim``).
    """
    final = Path(final)
    owner = _claim(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{owner}-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}.old-{owner}")
        os.replace(final, old) if final.is_dir() else final.unlink()
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


@contextlib.contextmanager
def atomic_file(final: str | Path, mode: str = "w", **kw) -> Iterator[Any]:
    """Open a temp file next to ``final`` and rename it into place on success (what a killed
    run left is removed at the next start, as for ``atomic_dir``)."""
    final = Path(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.tmp-{_claim(final)}-", dir=final.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    try:
        with open(tmp, mode, **kw) as fh:
            yield fh
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, data: Any) -> None:
    with atomic_file(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


MODEL_CARD = "README.md"  # a model directory's card (freshllm.cards): read by people, not by a model loader


def file_hashes(path: str | Path) -> dict[str, str]:
    """The sha256 of every file under a directory, by relative name, in path order."""
    root = Path(path)
    return {f.relative_to(root).as_posix(): sha256_file(f)
            for f in sorted(p for p in root.rglob("*") if p.is_file())}


def combine_hashes(hashes: dict[str, str], exclude: tuple[str, ...] = ()) -> str:
    """A directory's content hash from its :func:`file_hashes`: sha256 over (relative name, file
    sha256) pairs in their (path) order, but the names in ``exclude``."""
    h = hashlib.sha256()
    for rel, sha in hashes.items():
        if rel not in exclude:
            h.update(rel.encode() + b"\0" + sha.encode() + b"\n")
    return h.hexdigest()


RESIDUAL_MANIFEST = "manifest.json"  # a residual artifact's description (freshllm.residual.artifact)


def weights_hash(model_dir: str | Path) -> str:
    """Content hash of a model's weights: sha256 over its safetensors files (and index), by
    name; the identity model cards, residual manifests and promotion records name models by."""
    model_dir = Path(model_dir)
    h = hashlib.sha256()
    files = sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.safetensors.index.json"))
    for f in files:
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def jsonl_records(path: str | Path, error: type[Exception] = ValueError) -> Iterator[tuple[int, int, Any]]:
    """``(line number, byte offset, record)`` of every non-blank line of a JSONL file; a line
    that is not UTF-8 JSON raises ``error`` naming the file and the line."""
    path = Path(path)
    pos = 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            start, pos = pos, pos + len(raw)
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise error(f"{path}, line {lineno}: not valid UTF-8 ({exc.reason})") from exc
            except json.JSONDecodeError as exc:
                raise error(f"{path}, line {lineno}: not a JSON object ({exc.msg})") from exc
            yield lineno, start, rec


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota
    (``cpu.max``, e.g. a container limited to 2 CPUs on a 64-core host)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def use_runtime(params_path: str | Path = "params.yaml") -> dict:
    """Set torch's threads from the params' ``runtime`` section and return what was used, for
    the stage's metrics. Call it in a stage's ``main`` before the work starts.

    The OpenMP wait policy is chosen when the package is imported, before torch loads its
    OpenMP runtime (``freshllm/__init__.py``); the record says which was chosen and why."""
    import torch

    from . import OMP_WAIT
    from .config import load_runtime

    cfg = load_runtime(params_path)
    cores = usable_cores()
    if cfg.threads != "auto":
        threads, why = int(cfg.threads), "runtime.threads"
    elif os.environ.get("OMP_NUM_THREADS", "").strip().isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        threads, why = int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    else:
        local = os.environ.get("LOCAL_WORLD_SIZE", "1")
        procs = int(local) if local.isdigit() and int(local) > 0 else 1
        threads, why = max(1, cores // procs), f"{cores} usable cores / {procs} local processes"
    torch.set_num_threads(threads)
    record = {"threads": threads, "threads_setting": cfg.threads, "threads_from": why,
              "usable_cores": cores, "interop_threads": torch.get_num_interop_threads(),
              "omp_wait": OMP_WAIT, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
              "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", "unset"),
              "torch": torch.__version__}
    log.info("runtime: %d torch threads (%s), OpenMP wait: %s", threads, why, OMP_WAIT)
    return record
