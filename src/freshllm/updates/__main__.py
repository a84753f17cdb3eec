"""``python -m freshllm.updates {root,window,promote,report,add}``: the chain's stages
(see :mod:`freshllm.updates`) and ``add``, which appends the next month to ``updates``.
``python -m freshllm.updates.gating`` (the gate), ``python -m freshllm.updates.start`` and
``python -m freshllm.updates.drift`` are separate commands, so the stages that run them depend
on those modules alone."""

from __future__ import annotations

import argparse
import calendar
import logging
import sys
from pathlib import Path

from ..common import set_offline, setup_logging, user_errors, write_json
from ..config import ConfigError, load_section
from .config import ANCESTOR, ChainConfig, ChainError, load_chain

log = logging.getLogger(__name__)


def add_month(params_path: Path, month: str) -> dict:
    """Append ``month`` (YYYY-MM) to the params' ``updates``, keeping the file's comments and
    layout: its first and last day, and the last window (or the ancestor) as its parent."""
    import re

    from ruamel.yaml import YAML

    if not re.fullmatch(r"\d{4}-\d{2}", month) or not 1 <= int(month[5:]) <= 12:
        raise ConfigError(str(params_path), [f"add: {month!r} is not a month YYYY-MM"])
    chain = load_chain(params_path)
    if month in chain.windows:
        raise ConfigError(str(params_path), [f"updates.{month}: already in updates"])
    year, mon = int(month[:4]), int(month[5:])
    last = chain.windows[-1] if chain.windows else None
    if last and re.fullmatch(r"\d{4}-\d{2}", last):
        ly, lm = int(last[:4]), int(last[5:])
        following = f"{ly + lm // 12:04d}-{lm % 12 + 1:02d}"
        if month > last and month != following:
            raise ConfigError(str(params_path), [
                f"add: {month} does not follow the last month {last}: the next one is {following} "
                "(a chain has no gaps; add the months in between first)"])
    entry = {"published_from": f"{month}-01",
             "published_to": f"{month}-{calendar.monthrange(year, mon)[1]:02d}",
             "prev": chain.windows[-1] if chain.windows else ANCESTOR}
    yaml = YAML()
    yaml.preserve_quotes = True
    data = yaml.load(params_path.read_text(encoding="utf-8"))
    if data.get("updates") is None:
        data["updates"] = {}
    data["updates"][month] = entry
    from io import StringIO

    buf = StringIO()
    yaml.dump(data, buf)
    tmp = params_path.with_name(f".{params_path.name}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    try:
        load_chain(tmp)  # the new chain validates before it replaces the file
    except ConfigError:
        tmp.unlink()
        raise
    tmp.replace(params_path)
    return entry


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m freshllm.updates", description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    sub = ap.add_subparsers(dest="cmd", required=True)
    root = sub.add_parser("root", help="the ancestor node: the pair as the chain's step 0")
    for a in ("--base", "--instruct", "--models-out", "--dedup-out", "--heldout-out", "--record"):
        root.add_argument(a, required=True, type=Path)
    root.add_argument("--packed-out", type=Path, default=None, help="an empty pack (chain.cpt_from: ancestor)")
    win = sub.add_parser("window", help="one update's data: dedup, held-out news, packed window, replay pool")
    win.add_argument("--window", required=True)
    win.add_argument("--prev", required=True)
    for a in ("--articles", "--prev-dedup", "--prev-heldout", "--tokenizer", "--dedup-out", "--heldout-out",
              "--packed-out", "--replay-out", "--metrics"):
        win.add_argument(a, required=True, type=Path)
    win.add_argument("--crawl-metrics", type=Path, default=None,
                     help="the window's crawl metrics: what it lost goes into the window's metrics and the gate record")
    win.add_argument("--prev-packed", type=Path, default=None,
                     help="the parent's packed data (read with chain.cpt_from: ancestor)")
    prom = sub.add_parser("promote", help="models/current: the model current after the last window")
    for a in ("--records", "--models", "--out", "--decision"):
        prom.add_argument(a, required=True, type=Path)
    rep = sub.add_parser("report", help="tables and a figure over update steps")
    for a in ("--records", "--markdown", "--summary", "--compare", "--csv", "--figure"):
        rep.add_argument(a, required=True, type=Path)
    add = sub.add_parser("add", help="append the next month to the params' updates")
    add.add_argument("month", help="YYYY-MM")
    args = ap.parse_args(argv)
    setup_logging()
    set_offline()
    from ..cards import CardError
    from ..pack import CorpusError
    from ..tasks.text import TextDataError

    with user_errors("updates", ChainError, CardError, CorpusError, TextDataError):
        params = Path(args.params)
        if args.cmd == "add":
            entry = add_month(params, args.month)
            print(f"{params}: updates.{args.month} = {entry}")
            return
        chain = load_chain(params)
        if args.cmd == "root":
            from ..pack import PackConfig
            from .root import run

            seq_len = load_section(PackConfig, "pack", params).seq_len if args.packed_out else 2
            run(args.base, args.instruct, args.models_out, args.dedup_out, args.heldout_out, args.record,
                args.packed_out, seq_len)
        elif args.cmd == "window":
            from ..pack import PackConfig
            from ..tasks.text import TextConfig
            from .window import run

            update = chain.get(args.window)
            if update.prev != args.prev:
                raise ConfigError(str(params), [f"updates.{args.window}.prev: is {update.prev!r}, the command "
                                                f"line says {args.prev!r} (dvc.yaml and params disagree)"])
            cfg = load_section(ChainConfig, "chain", params)
            metrics = run(update, cfg, load_section(PackConfig, "pack", params),
                          load_section(TextConfig, "eval.text", params), args.articles, args.prev_dedup,
                          args.prev_heldout, args.tokenizer, args.dedup_out, args.heldout_out, args.packed_out,
                          args.replay_out, args.prev_packed, crawl_metrics=args.crawl_metrics)
            write_json(args.metrics, metrics)
        elif args.cmd == "promote":
            from .gate import promote

            promote(chain, args.records, args.models, args.out, args.decision)
        else:
            from .report import run

            run(chain, args.records, args.markdown, args.summary, args.compare, args.csv, args.figure)


if __name__ == "__main__":
    sys.exit(main())
