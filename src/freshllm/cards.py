"""Model cards with lineage: ``README.md`` in a model directory (the Hugging Face hub's
convention: YAML front matter, then Markdown), naming every parent by content hash, so a
checkpoint pulled from a remote says what it is.

    python -m freshllm.cards --model models/updates/2024-02/cpt-base --role cpt-base --window 2024-02 \\
        --parent models/updates/2024-01/cpt-base --data data/updates/2024-02/packed \\
        --corpus data/updates/2024-02/dedup --params params.yaml --section chain.cpt --lineage-out <json>

The front matter's ``freshllm`` block is the lineage (also written to ``--lineage-out``, the
stage's metrics): the model's own weights hash (sha256 over its safetensors files and index,
the same hash a residual manifest records for its base and instruct); its parent's (path,
role, window, weights hash); the data it was trained on (window, corpus and packed-data
hashes, the replay pool's; ``windows``: every window in the packed data of a re-rooted chain); the residual it carries (manifest hash, and the weights hashes of
the residual's base and instruct); the ancestor pair's weights hashes and the whole chain of
earlier models, both inherited from the parent's card; and the params section that made it.
The card is written next to the weights by the stage that made them (after the model, as a
temp file renamed into place).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from .common import RESIDUAL_MANIFEST as MANIFEST
from .common import MODEL_CARD as CARD
from .common import atomic_file, setup_logging, sha256_file, user_errors, weights_hash, write_json
from .config import read_params, section_values

log = logging.getLogger(__name__)

FORMAT = "freshllm-lineage/1"
ROLES = ("ancestor-base", "ancestor-instruct", "cpt-base", "cpt-instruct", "cpt-base-res")


class CardError(ValueError):
    pass


def tree_hash(path: Path) -> str:
    """sha256 over (relative name, sha256) of every file under ``path`` (or of the file)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise FileNotFoundError(f"not found: {path}")
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def read_lineage(model_dir: Path) -> dict | None:
    """The ``freshllm`` lineage of a model directory's card, or None without one."""
    import yaml

    card = Path(model_dir) / CARD
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise CardError(f"{card}: no YAML front matter")
    front = yaml.safe_load(text[4:text.index("\n---\n", 4)]) or {}
    lineage = front.get("freshllm")
    if not isinstance(lineage, dict) or lineage.get("format") != FORMAT:
        raise CardError(f"{card}: no {FORMAT} lineage in its front matter")
    return lineage


def _node(path: Path, lineage: dict | None) -> dict:
    """A parent as a lineage names it."""
    return {"path": str(path), "weights_sha256": weights_hash(path),
            "role": (lineage or {}).get("role"), "window": (lineage or {}).get("window")}


def build_lineage(model: Path, role: str, window: str | None = None, parent: Path | None = None,
                  data: Path | None = None, corpus: Path | None = None, replay: Path | None = None,
                  residual: Path | None = None, ancestors: dict[str, Path] | None = None,
                  params: dict | None = None) -> dict:
    """The lineage of ``model`` (see the module doc). ``ancestors`` ({base, instruct}: the pair's
    directories) is given for the ancestor node; every later model inherits it from ``parent``."""
    if role not in ROLES:
        raise CardError(f"role {role!r}: expected one of {list(ROLES)}")
    parent_lineage = read_lineage(parent) if parent is not None else None
    if parent is not None and parent_lineage is None:
        raise CardError(f"{parent}: has no model card ({CARD}) to inherit the lineage from")
    if ancestors:
        pair = {k: weights_hash(Path(v)) for k, v in ancestors.items()}
        history: list[dict] = []
    elif parent_lineage is not None:
        pair = parent_lineage["ancestors"]
        history = [*parent_lineage.get("chain", []),
                   {k: parent_lineage.get(k) for k in ("role", "window", "weights_sha256")}]
    else:
        raise CardError(f"{model}: a lineage needs a parent or the ancestor pair")
    lineage: dict[str, Any] = {"format": FORMAT, "role": role, "window": window,
                               "weights_sha256": weights_hash(model), "ancestors": pair, "chain": history,
                               "parent": _node(parent, parent_lineage) if parent is not None else None}
    if data is not None:
        lineage["data"] = {"window": window, "packed": str(data), "packed_sha256": tree_hash(data)}
        info = Path(data) / "info.json"
        union = json.loads(info.read_text(encoding="utf-8")).get("union") if info.is_file() else None
        if isinstance(union, dict):  # a re-rooted chain's packed data: every window so far
            lineage["data"]["windows"] = list(union.get("windows", {}))
        if corpus is not None:
            lineage["data"].update(corpus=str(corpus), corpus_sha256=tree_hash(corpus))
        if replay is not None:
            lineage["data"].update(replay=str(replay), replay_sha256=tree_hash(replay))
    if residual is not None:
        manifest_path = Path(residual) / MANIFEST
        if not manifest_path.is_file():
            raise CardError(f"{residual}: not a residual artifact (no {MANIFEST})")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        lineage["residual"] = {"path": str(residual), "manifest_sha256": sha256_file(manifest_path),
                               "base_weights_sha256": manifest["base"]["weights_sha256"],
                               "instruct_weights_sha256": manifest["instruct"]["weights_sha256"]}
    if params is not None:
        lineage["params"] = params
    return lineage


def render_card(lineage: dict) -> str:
    """README.md text: front matter (``base_model``: the parent's path; ``freshllm``: the
    lineage) and a human summary of the same."""
    import yaml

    parent = lineage.get("parent") or {}
    front = {"library_name": "transformers", "pipeline_tag": "text-generation",
             "tags": ["freshllm", lineage["role"]], **({"base_model": parent["path"]} if parent else {}),
             "freshllm": lineage}
    title = lineage["role"] + (f" @ {lineage['window']}" if lineage.get("window") else "")
    rows = [("weights", lineage["weights_sha256"])]
    if parent:
        rows.append((f"parent ({parent.get('role')} @ {parent.get('window') or 'ancestor'})",
                     f"{parent['weights_sha256']} ({parent['path']})"))
    rows += [(f"ancestor {k}", v) for k, v in lineage["ancestors"].items()]
    data = lineage.get("data") or {}
    if data:
        windows = f" (with {', '.join(data['windows'])})" if len(data.get("windows", [])) > 1 else ""
        rows.append((f"data window {data.get('window')}{windows}", f"packed {data['packed_sha256']}"
                     + (f", corpus {data['corpus_sha256']}" if "corpus_sha256" in data else "")
                     + (f", replay {data['replay_sha256']}" if "replay_sha256" in data else "")))
    if lineage.get("residual"):
        r = lineage["residual"]
        rows.append(("residual", f"manifest {r['manifest_sha256']} (base {r['base_weights_sha256']}, "
                                 f"instruct {r['instruct_weights_sha256']}; {r['path']})"))
    steps = " -> ".join(f"{c.get('role')}@{c.get('window') or 'ancestor'}" for c in lineage.get("chain", []))
    lines = [f"# {title}", "",
             "Made by the freshllm pipeline (continued pre-training on fresh news, instruction "
             "residuals). Every parent is named by the sha256 of its weights (safetensors files and "
             "index) or data; the front matter's `freshllm` block holds the same lineage as data.", "",
             "| what | content hash |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], ""]
    if steps:
        lines += [f"Chain of earlier models: {steps}.", ""]
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n" + "\n".join(lines)


def write_card(model: Path, lineage: dict) -> Path:
    path = Path(model) / CARD
    with atomic_file(path, "w", encoding="utf-8") as fh:
        fh.write(render_card(lineage))
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", required=True, type=Path, help="the model directory to write the card into")
    ap.add_argument("--role", required=True, choices=ROLES)
    ap.add_argument("--window", default=None, help="the update window the model was made for")
    ap.add_argument("--parent", type=Path, default=None, help="the model it was made from (carrying a card)")
    ap.add_argument("--data", type=Path, default=None, help="the packed data it was trained on")
    ap.add_argument("--corpus", type=Path, default=None, help="the corpus the packed data was made from")
    ap.add_argument("--replay", type=Path, default=None, help="the packed replay pool")
    ap.add_argument("--residual", type=Path, default=None, help="the residual artifact it carries")
    ap.add_argument("--section", action="append", default=[],
                    help="a params section that made the model, recorded in the lineage (repeatable)")
    ap.add_argument("--lineage-out", type=Path, default=None, help="the lineage as JSON (stage metrics)")
    args = ap.parse_args(argv)
    setup_logging()
    with user_errors("cards", CardError):
        params = read_params(args.params) if args.section else {}
        sections = {s: section_values(params, s, args.params) for s in args.section}
        lineage = build_lineage(args.model, args.role, args.window, args.parent, args.data, args.corpus,
                                args.replay, args.residual, params=sections or None)
        path = write_card(args.model, lineage)
    if args.lineage_out:
        write_json(args.lineage_out, lineage)
    log.info("wrote %s (weights %s…, parent %s)", path, lineage["weights_sha256"][:12],
             (lineage.get("parent") or {}).get("path"))


if __name__ == "__main__":
    main()
