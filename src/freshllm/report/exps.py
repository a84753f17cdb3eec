"""Reading ``dvc exp show --json``: every experiment's params and metrics, and files of its
commit (``git show <rev>:<path>``), for the tables over an experiment grid (seeds, grid)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

PARAMS_FILE = "params.yaml"
METRICS_FILE = "metrics/compare.json"


class ExpsError(ValueError):
    pass


def load(path: Path) -> list:
    try:
        shown = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ExpsError(f"{path}: not JSON ({exc})") from None
    if not isinstance(shown, list):
        raise ExpsError(f"{path}: not the output of `dvc exp show --json` (a list)")
    return shown


def dig(tree: dict, dotted: str):
    """``tree["a"]["b"]`` for ``"a.b"``; KeyError(dotted) when a part is missing."""
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def states(shown: list) -> list[dict]:
    """Every experiment state: the baseline commits (and the workspace) and the finished
    experiments under them."""
    out = []
    for entry in shown:
        out.append(entry)
        for rng in entry.get("experiments") or []:
            # a queued or running experiment shows its params with its baseline's metrics:
            # only finished ones (no executor: already in git, or state success) count
            state = (rng.get("executor") or {}).get("state")
            if state in (None, "success"):
                out.extend(rng.get("revs") or [])
    return out


def finished(shown: list, metrics_file: str = METRICS_FILE) -> list[tuple[str, str, dict, dict]]:
    """``(rev, label, params, metrics)`` of every state that has both (failed or queued
    experiments have no data)."""
    out = []
    for state in states(shown):
        data = state.get("data") or {}
        params = ((data.get("params") or {}).get(PARAMS_FILE) or {}).get("data")
        metrics = ((data.get("metrics") or {}).get(metrics_file) or {}).get("data")
        if params and metrics:
            out.append((str(state.get("rev")), state.get("name") or str(state.get("rev"))[:7], params, metrics))
    return out


def key_of(params: dict, keys: list[str], label: str) -> tuple:
    try:
        return tuple(json.dumps(dig(params, k), sort_keys=True) if isinstance(dig(params, k), (dict, list))
                     else dig(params, k) for k in keys)
    except KeyError as exc:
        raise ExpsError(f"{PARAMS_FILE} of {label}: no key {exc.args[0]}") from None


def git_file(repo: Path, rev: str, path: str) -> dict:
    """A JSON file as committed in ``rev`` (an experiment's commit, or the workspace's file
    for the ``workspace`` entry)."""
    if rev == "workspace":
        return json.loads((repo / path).read_text())
    res = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True)
    if res.returncode:
        raise ExpsError(f"{path} of experiment {rev[:7]}: {res.stderr.strip() or 'not in its commit'}")
    return json.loads(res.stdout)
