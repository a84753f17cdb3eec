"""Stage ``chain-root@<chain>``: the chain's ancestor node, the parent of its first update.

``models/updates/ancestor/{cpt-base,cpt-instruct,current}`` are the target family's base,
instruct and instruct model (files hard-linked where the file system allows, else copied;
each with a model card naming the pair by weights hash): the chain's base and instruct
models before any update, and the first promoted model. ``--dedup-out`` holds an empty
dedup index and history, ``--heldout-out`` an empty held-out set, ``--packed-out`` an empty
pack (the packed data of no window, which a re-rooted chain's first update extends), and
``--record`` the first promotion record (the ancestor instruct model is current), so every update's stages read
their parent's outputs the same way, the first one's included.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..cards import CARD, build_lineage, read_lineage, write_card
from ..common import atomic_dir, atomic_file, weights_hash, write_json
from .config import ANCESTOR

log = logging.getLogger(__name__)


def link_tree(src: Path, dst: Path) -> None:
    """Fill the (new, empty) directory ``dst`` with ``src``'s files: hard links where possible
    (no disk, no copy time: outputs are never modified in place), copies elsewhere."""
    for f in sorted(Path(src).rglob("*")):
        target = dst / f.relative_to(src)
        if f.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)


def copy_model(src: Path, out: Path, lineage: dict | None = None) -> None:
    """``out`` = ``src`` (linked), with the card of ``lineage`` (else ``src``'s own card)."""
    with atomic_dir(out) as tmp:
        link_tree(src, tmp)
        if lineage is not None:
            (tmp / CARD).unlink(missing_ok=True)  # a link to the source's card: replace, never edit
            write_card(tmp, lineage)


def record_of(window: str, model: Path, lineage: dict | None, promoted: bool, reasons: list[str],
              **extra) -> dict:
    """A promotion record: the window decided, whether its candidate was promoted and why,
    and what is current after it."""
    return {"window": window, "promoted": promoted, "reasons": reasons,
            "current": {"window": (lineage or {}).get("window") or ANCESTOR, "role": (lineage or {}).get("role"),
                        "weights_sha256": weights_hash(model)}, **extra}


def run(base: Path, instruct: Path, models_out: Path, dedup_out: Path, heldout_out: Path,
        record: Path, packed_out: Path | None = None, seq_len: int = 2) -> dict:
    for d in (base, instruct):
        if not (Path(d) / "config.json").is_file():
            raise FileNotFoundError(f"not a model directory (no config.json): {d}")
    pair = {"base": base, "instruct": instruct}
    nodes = {"cpt-base": (base, "ancestor-base"), "cpt-instruct": (instruct, "ancestor-instruct"),
             "current": (instruct, "ancestor-instruct")}
    for name, (src, role) in nodes.items():
        with atomic_dir(Path(models_out) / name) as tmp:
            link_tree(src, tmp)
            (tmp / CARD).unlink(missing_ok=True)
            write_card(tmp, build_lineage(tmp, role, ancestors=pair))
    with atomic_dir(dedup_out) as tmp:
        write_json(tmp / "seen.json", {"urls": [], "texts": []})
        (tmp / "history.jsonl").write_text("", encoding="utf-8")
    with atomic_file(heldout_out, "w", encoding="utf-8"):
        pass
    if packed_out is not None:  # the union of no window (chain.cpt_from: ancestor reads it)
        from .window import _empty_pack

        _empty_pack(Path(packed_out), seq_len)
    current = Path(models_out) / "current"
    rec = record_of(ANCESTOR, current, read_lineage(current), True,
                    ["the ancestor instruct model is the first current model"])
    write_json(record, rec)
    log.info("chain root: ancestor pair %s / %s -> %s", base, instruct, models_out)
    return rec
