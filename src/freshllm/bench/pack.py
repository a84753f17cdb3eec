"""Pack throughput vs raw batched encoding with the same tokenizer, and peak RSS at N and 4N articles.

    python -m freshllm.bench.pack [--articles 20000] [--real qwen2|llama3|none] [--tokenizer DIR]

The tokenizer is a real one by default: ``--real qwen2`` (Qwen2.5's, the default) or
``llama3`` (LLaMA 3.1's), built by ``freshllm.standins.tokenizers`` from llama.cpp's vocab
files and cached in ``~/.cache/freshllm``; ``--tokenizer DIR`` takes a model directory's;
``--real none`` a small BPE tokenizer trained here (the old default). The corpus is
generated news (``freshllm.synthetic.news``: 150-600 words, every text distinct, so the
pack stage's duplicate filter drops nothing), written as articles JSONL.

Prints, measured in this run, on 1 tokenizer thread and on every usable core (``pack.workers``):

* tokens/s of plain batched encoding of the texts (already in memory) with the transformers
  call that defines pack's encoding (``add_special_tokens=False, split_special_tokens=True``,
  the same 512-article batches) -- the baseline -- and with the tokenizer's own batch call
  (``encode_batch_fast``, which pack uses where it gives the same ids) for reference;
* tokens/s of the whole pack stage (``pack_corpus``: index and validate the JSONL, hash
  every text, shuffle, read, encode, pack, write) and the ratio pack/baseline (goal >= 0.95),
  and pack on every core against cores x pack on one (goal >= 0.8);
* the peak RSS of packing the first N and all 4N articles, each in a fresh process, and
  their ratio (memory must stay flat: close to 1).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REAL = {"qwen2": "Qwen/Qwen2.5-0.5B", "llama3": "meta-llama/Llama-3.1-8B"}
BATCH = 512  # PackConfig.batch_articles


def write_corpus(path: Path, n: int, seed: int = 0) -> None:
    """``n`` distinct generated news articles as JSONL (url, title, text)."""
    from datetime import date

    from freshllm.synthetic.news import generate_articles

    with open(path, "w", encoding="utf-8") as fh:
        done = 0
        while done < n:  # chunks keep memory flat and generation fast
            k = min(5000, n - done)
            for i, art in enumerate(generate_articles(k, date(2024, 1, 1), date(2024, 12, 31),
                                                      seed=seed, first_index=done)):
                fh.write(json.dumps({"url": f"https://example.com/{done + i}", "title": art.title,
                                     "text": art.text}) + "\n")
            done += k


def head(src: Path, dst: Path, n: int) -> None:
    with open(src, encoding="utf-8") as fi, open(dst, "w", encoding="utf-8") as fo:
        for i, line in enumerate(fi):
            if i >= n:
                break
            fo.write(line)


def tokenizer_for(args):
    """(tokenizer, description)."""
    if args.tokenizer:
        from freshllm.io.hf import load_tokenizer

        return load_tokenizer(args.tokenizer), f"tokenizer of {args.tokenizer}"
    if args.real != "none":
        from freshllm.standins.tokenizers import load_tokenizer

        mid = REAL[args.real]
        return load_tokenizer(mid), f"{mid}'s real tokenizer ({args.real}, from llama.cpp's vocab)"
    from freshllm.models import train_tokenizer
    from freshllm.synthetic.corpus import d1_documents

    return train_tokenizer(d1_documents(0, 500), 1024)[0], "a 1024-token BPE tokenizer trained here"


def run_pack(corpus: Path, tok, out: Path, workers: int = 1) -> tuple[float, dict]:
    from freshllm.config import build_config
    from freshllm.pack import PackConfig, pack_corpus

    cfg = build_config(PackConfig, {"seq_len": 4096, "tokens": "100B", "allow_short": True,
                                    "batch_articles": BATCH, "workers": workers}, "pack")
    t = time.perf_counter()
    m = pack_corpus(corpus, tok, cfg, out)
    return time.perf_counter() - t, m


def current_rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(args) -> None:
    """Pack one corpus in this process; print RSS figures (MiB) as JSON: the peak while
    packing (sampled every 5 ms: loading the tokenizer can peak higher than packing, which
    would hide the packing's own high-water mark in ru_maxrss), RSS before, and ru_maxrss."""
    import logging
    import threading

    logging.disable(logging.WARNING)
    tmp = Path(args.child)
    tok, _ = tokenizer_for(args)
    import gc

    gc.collect()
    before = current_rss_mib()
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.005):
            peak[0] = max(peak[0], current_rss_mib())

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, m = run_pack(tmp / "corpus.jsonl", tok, tmp / "out")
    stop.set()
    th.join()
    peak[0] = max(peak[0], current_rss_mib())
    print(json.dumps({"peak_rss_mib": peak[0], "rss_before_pack_mib": before,
                      "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "tokens": m["train"]["tokens"], "articles": m["train"]["articles"]}))


def encode_rate(encode, texts) -> tuple[int, float]:
    """Tokens and seconds of ``encode`` over ``texts`` in pack's batches (texts in memory)."""
    t = time.perf_counter()
    n = 0
    for i in range(0, len(texts), BATCH):
        n += sum(len(x) for x in encode(texts[i:i + BATCH]))
    return n, time.perf_counter() - t


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=20000, help="N (the RSS runs pack N and 4N)")
    ap.add_argument("--real", choices=[*REAL, "none"], default="qwen2",
                    help="real tokenizer (default qwen2); none: a small one trained here")
    ap.add_argument("--tokenizer", default=None, help="a model dir whose tokenizer to use instead")
    ap.add_argument("--repeats", type=int, default=1, help="throughput runs (best of), alternating")
    ap.add_argument("--no-rss", dest="rss", action="store_false", help="skip the N / 4N RSS runs")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    os.environ.setdefault("TQDM_DISABLE", "1")  # the pack stage's progress bar
    from ..common import quiet_logging

    res: dict = {}
    with quiet_logging(), tempfile.TemporaryDirectory(prefix="bench-pack-") as d:
        tmp = Path(d)
        print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        t = time.perf_counter()
        tok, desc = tokenizer_for(args)
        print(f"tokenizer: {desc}, {len(tok):,} entries (loaded in {time.perf_counter() - t:.1f} s)")
        big = tmp / "corpus-4n.jsonl"
        t = time.perf_counter()
        write_corpus(big, 4 * args.articles if args.rss else args.articles)
        corpus = tmp / "corpus.jsonl"
        head(big, corpus, args.articles)
        texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8")]
        print(f"corpus: {len(texts):,} generated news articles, {sum(map(len, texts)) / len(texts):,.0f} "
              f"characters each on average (written in {time.perf_counter() - t:.1f} s)", flush=True)
        from ..common import usable_cores
        from ..pack import encode_texts, fast_encoder, tokenizer_threads

        cores = usable_cores()
        res.update({"articles": len(texts), "tokenizer": desc, "cores": cores, "by_workers": {}})
        fast = fast_encoder(tok, texts[:BATCH])
        rep = f" (best of {args.repeats})" if args.repeats > 1 else ""
        best = lambda runs: max(runs, key=lambda x: x[0] / x[1])  # noqa: E731 -- least disturbed
        for workers in sorted({1, cores}):
            raw, raw_fast, pack = [], [], []
            for r in range(args.repeats):
                order = ("raw", "pack") if r % 2 == 0 else ("pack", "raw")
                for which in order:
                    if which == "raw":
                        with tokenizer_threads(workers):
                            raw.append(encode_rate(lambda b: encode_texts(tok, b), texts))
                            if fast is not None:
                                raw_fast.append(encode_rate(fast, texts))
                    else:
                        out = tmp / f"packed{workers}-{r}"
                        sec, m = run_pack(corpus, tok, out, workers)
                        pack.append((m["train"]["article_tokens"], sec, m))
                        import shutil

                        shutil.rmtree(out, ignore_errors=True)
            n_raw, raw_s = best(raw)
            n_pack, pack_s, m = best(pack)
            n_enc_pack = n_pack - m["train"]["articles"] * (2 if m["bos_added"] else 1)  # minus BOS/EOS
            row = {"raw_tokens_per_s": n_raw / raw_s, "pack_tokens_per_s": n_enc_pack / pack_s,
                   "raw_tokens": n_raw, "pack_article_tokens": n_pack, "pack_encoded_tokens": n_enc_pack,
                   "raw_s": raw_s, "pack_s": pack_s}
            row["ratio"] = row["pack_tokens_per_s"] / row["raw_tokens_per_s"]
            if raw_fast:
                n_f, f_s = best(raw_fast)
                row["raw_fast_tokens_per_s"] = n_f / f_s
            res["by_workers"][workers] = row
            print(f"{workers} tokenizer thread(s):")
            print(f"  raw batched encoding (transformers call): {row['raw_tokens_per_s']:>10,.0f} tokens/s "
                  f"({n_raw:,} tokens, {raw_s:.2f} s){rep}")
            if raw_fast:
                print(f"  raw batched encoding (tokenizer's call):  {row['raw_fast_tokens_per_s']:>10,.0f} tokens/s")
            print(f"  pack stage:                               {row['pack_tokens_per_s']:>10,.0f} tokens/s "
                  f"({n_enc_pack:,} text tokens; {n_pack:,} with BOS/EOS; {pack_s:.2f} s){rep}")
            if n_enc_pack != n_raw:
                print(f"  note: pack encoded {n_enc_pack:,} text tokens, the baseline {n_raw:,}")
            print(f"  ratio pack/raw: {row['ratio']:.3f}  (goal >= 0.95)", flush=True)
        one = res["by_workers"][1]
        res.update({k: one[k] for k in ("raw_tokens_per_s", "pack_tokens_per_s", "raw_tokens",
                                        "pack_encoded_tokens", "ratio")})
        if cores > 1:
            alln = res["by_workers"][cores]
            res["scaling"] = alln["pack_tokens_per_s"] / (cores * one["pack_tokens_per_s"])
            print(f"pack on {cores} threads vs {cores} x pack on 1: {res['scaling']:.3f}  (goal >= 0.8)", flush=True)
        if args.rss:
            rss = []
            for n in (args.articles, 4 * args.articles):
                sub = tmp / f"rss{n}"
                sub.mkdir()
                head(big, sub / "corpus.jsonl", n)
                cmd = [sys.executable, "-m", "freshllm.bench.pack", "--child", str(sub), "--real", args.real]
                if args.tokenizer:
                    cmd += ["--tokenizer", args.tokenizer]
                out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
                if out.returncode:
                    raise RuntimeError(f"RSS child failed:\n{out.stderr[-3000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rss.append(r)
                print(f"peak RSS while packing, {n:>7,} articles ({r['tokens']:,} tokens): "
                      f"{r['peak_rss_mib']:,.0f} MiB (before packing, tokenizer loaded: "
                      f"{r['rss_before_pack_mib']:,.0f} MiB; process high-water mark {r['ru_maxrss_mib']:,.0f} MiB)",
                      flush=True)
            res["rss_mib"] = {str(args.articles): rss[0]["peak_rss_mib"],
                              str(4 * args.articles): rss[1]["peak_rss_mib"]}
            res["rss_ratio"] = rss[1]["peak_rss_mib"] / rss[0]["peak_rss_mib"]
            grow = rss[1]["peak_rss_mib"] - rss[0]["peak_rss_mib"]
            print(f"RSS ratio 4N/N (peak while packing): {res['rss_ratio']:.3f}  (flat: close to 1; "
                  f"+{grow:,.0f} MiB for {3 * args.articles:,} more articles)")
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return res


if __name__ == "__main__":
    main()
