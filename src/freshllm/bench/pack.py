"""Pack throughput vs raw batched `tokenizers` encoding, and peak RSS at two corpus sizes.

    python -m freshllm.bench.pack [--articles 20000] [--tokenizer models/base]

Prints tokens/s of the pack stage and of plain batched encoding of the same texts (the
baseline), their ratio (goal >= 0.85), and the peak RSS of packing a corpus N and 4N
articles long, each in a fresh process (memory must stay flat).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_corpus(path: Path, n: int, seed: int = 0) -> None:
    from freshllm.synthetic.corpus import d1_documents

    docs = d1_documents(seed, min(n, 5000))
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"url": f"https://example.com/{i}", "text": docs[i % len(docs)] * 4}) + "\n")


def tokenizer_for(path: str | None, tmp: Path):
    from freshllm.io.hf import load_tokenizer

    if path:
        return load_tokenizer(path)
    from freshllm.synthetic.corpus import d1_documents
    from freshllm.models import train_tokenizer

    return train_tokenizer(d1_documents(0, 500), 1024)[0]


def run_pack(corpus: Path, tok, out: Path, tokens: str) -> tuple[float, dict]:
    from freshllm.config import build_config
    from freshllm.pack import PackConfig, pack_corpus

    cfg = build_config(PackConfig, {"seq_len": 4096, "tokens": tokens, "allow_short": True}, "pack")
    t = time.perf_counter()
    m = pack_corpus(corpus, tok, cfg, out)
    return time.perf_counter() - t, m


def child(args) -> None:
    """Pack one corpus in this process; print peak RSS (MiB) as JSON."""
    tmp = Path(args.child)
    tok = tokenizer_for(args.tokenizer, tmp)
    _, m = run_pack(tmp / "corpus.jsonl", tok, tmp / "out", "100B")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mib": rss, "tokens": m["train"]["tokens"]}))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=20000)
    ap.add_argument("--tokenizer", default=None, help="model dir (default: a tokenizer trained here)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    from ..common import quiet_logging

    with quiet_logging(), tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tok = tokenizer_for(args.tokenizer, tmp)
        corpus = tmp / "corpus.jsonl"
        write_corpus(corpus, args.articles)
        texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8")]
        t = time.perf_counter()
        n_raw = 0
        for i in range(0, len(texts), 512):
            n_raw += sum(len(x) for x in tok(texts[i:i + 512], add_special_tokens=True)["input_ids"])
        raw_s = time.perf_counter() - t
        pack_s, m = run_pack(corpus, tok, tmp / "packed", "100B")
        n_pack = m["train"]["article_tokens"]
        print(f"raw batched encoding: {n_raw / raw_s:,.0f} tokens/s ({n_raw:,} tokens, {raw_s:.2f} s)")
        print(f"pack stage:           {n_pack / pack_s:,.0f} tokens/s ({n_pack:,} tokens, {pack_s:.2f} s)")
        print(f"ratio pack/raw:       {(n_pack / pack_s) / (n_raw / raw_s):.3f}  (goal >= 0.85)")
        rss = []
        for n in (args.articles, 4 * args.articles):
            sub = tmp / f"rss{n}"
            sub.mkdir()
            write_corpus(sub / "corpus.jsonl", n)
            cmd = [sys.executable, "-m", "freshllm.bench.pack", "--child", str(sub)]
            if args.tokenizer:
                cmd += ["--tokenizer", args.tokenizer]
            res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
            rss.append(res["peak_rss_mib"])
            print(f"peak RSS, {n:>7,} articles ({res['tokens']:,} tokens): {res['peak_rss_mib']:.0f} MiB")
        print(f"RSS ratio 4N/N:       {rss[1] / rss[0]:.3f}  (flat: close to 1)")


if __name__ == "__main__":
    main()
