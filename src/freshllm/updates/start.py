"""Where an update's continued pre-training starts (``chain.cpt_from``).

* ``previous`` (the default): the parent update's cpt-base / cpt-instruct
  (``models/updates/<prev>/cpt-<variant>``): a chain, each month continuing the last.
* ``ancestor`` (re-rooted): the ancestor node's (``models/updates/ancestor/cpt-<variant>``,
  the target family's base / instruct) every month, trained on the union of every window so
  far (``u-window``'s packed data in this mode, :func:`freshllm.updates.window.union_pack`), so
  the model after month t has learned months 1..t and has drifted from the base the residual
  was extracted at by one update's worth, not t.

DVC cannot choose a dependency by a param, so the ``u-cpt-*`` stages depend on both candidate
start models and their command asks this module which one to use::

    START=$(python -m freshllm.updates.start --window 2024-02 --prev 2024-01 --variant base \\
            --models models/updates) && accelerate launch ... --model $START ... \\
        && python -m freshllm.cards ... --parent $START

(the path goes to stdout, logs to stderr), so the cpt and the model card name the same parent.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..common import setup_logging, user_errors
from ..config import ConfigError, load_section
from .config import ANCESTOR, Chain, ChainConfig, ChainError, load_chain

log = logging.getLogger(__name__)


def start_model(chain: Chain, cfg: ChainConfig, window: str, prev: str, variant: str, models: Path,
                params_path: str | Path = "params.yaml", packed: Path | None = None) -> Path:
    """The model directory ``window``'s cpt of ``variant`` (base | instruct) starts from. A
    window with no article (``packed`` marked by :func:`freshllm.updates.window.empty_window`)
    starts from the parent's model in either mode: it carries every earlier window, and cpt
    copies it unchanged."""
    update = chain.get(window)
    if update.prev != prev:
        raise ConfigError(str(params_path), [f"updates.{window}.prev: is {update.prev!r}, the command "
                                             f"line says {prev!r} (dvc.yaml and params disagree)"])
    if variant not in ("base", "instruct"):
        raise ConfigError(str(params_path), [f"start --variant: base or instruct, got {variant!r}"])
    from ..io.packed import no_new_articles

    empty = packed is not None and no_new_articles(packed)
    node = ANCESTOR if cfg.cpt_from == ANCESTOR and not empty else update.prev
    path = Path(models) / node / f"cpt-{variant}"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"the start model of {window}'s cpt-{variant} (chain.cpt_from: "
                                f"{cfg.cpt_from}) is missing: {path}")
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m freshllm.updates.start", description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--window", required=True)
    ap.add_argument("--prev", required=True, help="the window's parent (dvc.yaml's ${item.prev}), checked")
    ap.add_argument("--variant", required=True, choices=["base", "instruct"])
    ap.add_argument("--models", required=True, type=Path, help="the chain's models (models/updates)")
    ap.add_argument("--packed", type=Path, default=None,
                    help="the window's packed data: a window with no article starts from the parent")
    args = ap.parse_args(argv)
    setup_logging()
    with user_errors("updates.start", ChainError):
        path = start_model(load_chain(args.params), load_section(ChainConfig, "chain", args.params), args.window,
                           args.prev, args.variant, args.models, args.params, packed=args.packed)
    log.info("%s's cpt-%s starts from %s", args.window, args.variant, path)
    print(path)


if __name__ == "__main__":
    sys.exit(main())
