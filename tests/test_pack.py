import copy
import json
import math

import numpy as np
import pytest
import torch

from conftest import random_llama
from freshllm.config import ConfigError, build_config
from freshllm.pack import CorpusError, PackConfig, heldout_key, is_heldout, pack_corpus
from freshllm.io.packed import PackedData, PackWriter


def _logits(model, ids, pos):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), position_ids=torch.tensor([pos]),
                    attention_mask=None, use_cache=False)
    return out.logits[0]


def test_packed_logits_equal_isolated_logits(tmp_path, tokenizers_pair):
    """No attention leaks across articles: each article's logits inside a packed
    sequence equal its logits alone, also for an article split over two sequences."""
    tok = tokenizers_pair[0]
    model = random_llama(tok, seed=3)
    rng = np.random.default_rng(0)
    docs = [rng.integers(5, 300, n).tolist() for n in (17, 23, 40)]  # 80 tokens, rows of 48
    w = PackWriter(tmp_path / "p", seq_len=48)
    for d in docs:
        w.add(d)
    w.close()
    data = PackedData.open(tmp_path / "p")
    assert len(data) == 2
    row0 = _logits(model, data.input_ids[0].tolist(), data.position_ids[0].tolist())
    row1 = _logits(model, data.input_ids[1].tolist(), data.position_ids[1].tolist())
    # doc 0 and doc 1 fully inside row 0
    for start, d in ((0, docs[0]), (17, docs[1])):
        alone = _logits(model, d, list(range(len(d))))
        torch.testing.assert_close(row0[start:start + len(d)], alone, atol=1e-5, rtol=1e-5)
    # doc 2: first 8 tokens end row 0, the other 32 start row 1 with positions 8..39
    d = docs[2]
    head = _logits(model, d[:8], list(range(8)))
    torch.testing.assert_close(row0[40:48], head, atol=1e-5, rtol=1e-5)
    assert data.position_ids[1][:32].tolist() == list(range(8, 40))
    tail = _logits(model, d[8:], list(range(8, 40)))
    torch.testing.assert_close(row1[:32], tail, atol=1e-5, rtol=1e-5)
    # and the check is not vacuous: with a full causal mask the logits differ
    with torch.no_grad():
        leaky = model(input_ids=torch.tensor([data.input_ids[0].tolist()]),
                      attention_mask=torch.ones(1, 48, dtype=torch.long)).logits[0]
    assert not torch.allclose(leaky[17:40], row0[17:40], atol=1e-3)


def test_loss_mask_and_labels(tmp_path):
    w = PackWriter(tmp_path / "p", seq_len=8)
    w.add([1, 2, 3])
    w.add([4, 5, 6, 7, 8, 9, 10])
    meta = w.close()
    data = PackedData.open(tmp_path / "p")
    assert meta["pad_tokens"] == 6 and meta["n_seq"] == 2
    b = data.batch([0, 1])
    assert b["labels"][0].tolist() == [-100, 2, 3, -100, 5, 6, 7, 8]
    assert b["position_ids"][1].tolist() == [5, 6, 0, 1, 2, 3, 4, 5]  # tail, then padding block
    assert b["labels"][1].tolist() == [9, 10, -100, -100, -100, -100, -100, -100]


def _corpus(path, texts):
    with open(path, "w", encoding="utf-8") as fh:
        for i, t in enumerate(texts):
            fh.write(json.dumps({"url": f"https://example.com/{i}", "text": t}) + "\n")
    return path


def _texts(n=120):
    from freshllm.synthetic.corpus import d1_documents

    return d1_documents(11, n)


def _cfg(**kw):
    base = {"seq_len": 64, "tokens": "2K", "seed": 0}
    base.update(kw)
    return build_config(PackConfig, base, "pack")


def test_budget_is_exact_and_output_deterministic(tmp_path, tokenizers_pair):
    tok = tokenizers_pair[0]
    corpus = _corpus(tmp_path / "a.jsonl", _texts())
    m1 = pack_corpus(corpus, tok, _cfg(tokens="2K"), tmp_path / "out1")
    m2 = pack_corpus(corpus, tok, _cfg(tokens="2K"), tmp_path / "out2")
    assert m2 == m1
    assert m1["train"]["sequences"] == math.ceil(2000 / 64)
    assert 2000 <= m1["train"]["tokens"] < 2000 + 64
    assert m1["train"]["padding_fraction"] == 0.0
    for f in ("input_ids.bin", "position_ids.bin", "loss_mask.bin", "meta.json"):
        assert (tmp_path / "out1/train" / f).read_bytes() == (tmp_path / "out2/train" / f).read_bytes()
    m3 = pack_corpus(corpus, tok, _cfg(tokens="2K", seed=1), tmp_path / "out3")
    assert (tmp_path / "out1/train/input_ids.bin").read_bytes() != \
        (tmp_path / "out3/train/input_ids.bin").read_bytes()
    assert m3["train"]["tokens"] == m1["train"]["tokens"]


def test_articles_are_bos_text_eos(tmp_path, tokenizers_pair):
    tok = tokenizers_pair[0]
    corpus = _corpus(tmp_path / "a.jsonl", ["alpha beta gamma", "delta epsilon"])
    pack_corpus(corpus, tok, _cfg(tokens="64", seq_len=64, allow_short=True), tmp_path / "o")
    data = PackedData.open(tmp_path / "o/train")
    ids = data.input_ids[0].tolist()
    starts = [i for i, p in enumerate(data.position_ids[0].tolist()) if p == 0]
    assert ids[starts[0]] == tok.bos_token_id and ids[starts[1]] == tok.bos_token_id
    assert ids[starts[1] - 1] == tok.eos_token_id


def test_budget_larger_than_corpus(tmp_path, tokenizers_pair):
    tok = tokenizers_pair[0]
    corpus = _corpus(tmp_path / "a.jsonl", _texts(5))
    with pytest.raises(CorpusError, match=r"exceeds the corpus.*holds only"):
        pack_corpus(corpus, tok, _cfg(tokens="1M"), tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing half-written
    m = pack_corpus(corpus, tok, _cfg(tokens="1M", allow_short=True), tmp_path / "o")
    assert m["train"]["short"] and m["train"]["article_tokens"] < 10**6


def test_bad_inputs(tmp_path, tokenizers_pair):
    tok = tokenizers_pair[0]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(CorpusError, match="empty"):
        pack_corpus(empty, tok, _cfg(), tmp_path / "o")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "ok ok"}\n{"text": "\xff\xfe"}\n')
    with pytest.raises(CorpusError, match="not valid UTF-8"):
        pack_corpus(bad, tok, _cfg(tokens="64", allow_short=True, seed=0), tmp_path / "o")
    skip = _corpus(tmp_path / "skip.jsonl", ["", "   ", "real text here"])
    m = pack_corpus(skip, tok, _cfg(tokens="64", allow_short=True), tmp_path / "o2")
    assert m["skipped"] == {"empty_text": 2} and m["train"]["articles"] == 1


def test_val_split_holds_out_articles(tmp_path, tokenizers_pair):
    tok = tokenizers_pair[0]
    corpus = _corpus(tmp_path / "a.jsonl", _texts(100))
    m = pack_corpus(corpus, tok, _cfg(tokens="1K", val_fraction=0.1), tmp_path / "o")
    expected = sum(is_heldout(f"https://example.com/{i}", t, 0.1) for i, t in enumerate(_texts(100)))
    assert m["val"]["articles"] == m["heldout"]["articles"] == expected and 3 <= expected <= 20
    assert PackedData.open(tmp_path / "o/val").seq_len == 64


def _marked_corpus(path, n=150):
    """Articles whose text starts with their own url (so a decoded train sequence shows which
    articles it holds); some lines have no url (the rule falls back to the text hash)."""
    texts = _texts(n)
    with open(path, "w", encoding="utf-8") as fh:
        for i, t in enumerate(texts):
            url = f"https://news.example/a{i:03d}x" if i % 10 else None
            rec = {"text": f"a{i:03d}x {t}", **({"url": url} if url else {})}
            fh.write(json.dumps(rec) + "\n")
    return path


def _decoded_rows(tok, split_dir):
    data = PackedData.open(split_dir)
    return [tok.decode(data.input_ids[r].tolist()) for r in range(len(data))]


def test_heldout_rule_is_the_url_hash_and_nothing_else():
    """One uniform [0, 1) key per url (the text's where there is none): deterministic,
    independent of any seed or budget, monotone in the fraction."""
    assert heldout_key("https://x.org/a", "one text") == heldout_key(" https://x.org/a ", "another text")
    assert heldout_key(None, "one text") == heldout_key("", "one text") != heldout_key(None, "other")
    keys = [heldout_key(f"https://x.org/{i}", "t") for i in range(4000)]
    assert all(0.0 <= k < 1.0 for k in keys)
    assert 0.08 < sum(k < 0.1 for k in keys) / len(keys) < 0.12  # uniform
    for i in range(200):
        url = f"https://x.org/{i}"
        assert not is_heldout(url, "t", 0.0)
        assert is_heldout(url, "t", 0.05) <= is_heldout(url, "t", 0.1)  # a larger fraction: a superset


def test_heldout_split_is_stable_across_budget_and_seed_and_disjoint_from_train(tmp_path, tokenizers_pair):
    """The held-out articles are the same whatever the budget and pack.seed, exactly the rule's,
    and no held-out article (its url / marker) is in any train sequence."""
    tok = tokenizers_pair[0]
    corpus = _marked_corpus(tmp_path / "a.jsonl")
    records = [json.loads(line) for line in corpus.read_text().splitlines()]
    held = {r["text"].split()[0] for r in records if is_heldout(r.get("url"), r["text"], 0.1)}
    assert 5 <= len(held) <= 30
    assert any("url" not in r and r["text"].split()[0] in held for r in records)  # by its text hash
    val_bytes = set()
    for budget, seed in (("1K", 0), ("4K", 0), ("4K", 7)):
        out = tmp_path / f"o-{budget}-{seed}"
        m = pack_corpus(corpus, tok, _cfg(tokens=budget, seed=seed, val_fraction=0.1), out)
        assert m["heldout"]["articles"] == len(held) and m["val"]["articles"] == len(held)
        val_bytes.add((out / "val/input_ids.bin").read_bytes())
        val_text = "".join(_decoded_rows(tok, out / "val"))  # rows joined: an article may span two
        assert {w for w in held if w in val_text} == held
        train = "".join(_decoded_rows(tok, out / "train"))
        leaked = {w for w in held if w in train or w[:-1] in train}
        assert not leaked, (budget, seed, leaked)
        assert sum(f"a{i:03d}x" in train for i in range(150)) == m["train"]["articles"]
        assert m["train"]["articles"] > 0
    assert len(val_bytes) == 1  # the very same val split for every budget and seed


def test_eval_text_stage_writes_exactly_the_heldout_articles(tmp_path):
    """The eval-text stage picks its fresh articles by the same rule as pack (after pack's
    validation and duplicate removal), whatever pack.seed, and caps their number and length."""
    import yaml

    from freshllm.tasks import heldout

    corpus = _marked_corpus(tmp_path / "a.jsonl")
    with open(corpus, "a", encoding="utf-8") as fh:  # a duplicate text under another url: skipped, as in pack
        first = json.loads(corpus.read_text().splitlines()[1])
        fh.write(json.dumps({"url": "https://news.example/dup", "text": first["text"]}) + "\n")
    records = [json.loads(line) for line in corpus.read_text().splitlines()][:-1]
    held = [r for r in records if is_heldout(r.get("url"), r["text"], 0.1)]
    outs = []
    for seed in (0, 5):
        params = tmp_path / f"params{seed}.yaml"
        params.write_text(yaml.safe_dump({
            "world": {"kind": "news", "seed": 0},
            "pack": {"seq_len": 64, "seed": seed, "val_fraction": 0.1, "text_field": "text"},
            "eval": {"text": {"docs": 5, "max_chars": 120, "known": "x.jsonl"}}}))
        fresh, world = tmp_path / f"fresh{seed}.jsonl", tmp_path / f"world{seed}.jsonl"
        heldout.main(["--params", str(params), "--corpus", str(corpus), "--fresh", str(fresh),
                      "--world", str(world), "--metrics", str(tmp_path / "m.json")])
        rows = [json.loads(line) for line in fresh.read_text().splitlines()]
        outs.append(fresh.read_bytes())
        assert len(rows) == 5 and all(len(r["text"]) <= 120 for r in rows)
        assert {r["text"].split()[0] for r in rows} <= {r["text"].split()[0] for r in held}
        known = [json.loads(line)["text"] for line in world.read_text().splitlines()]
        assert len(known) == 5 and all(0 < len(t) <= 120 for t in known)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["fresh"]["heldout_articles"] == len(held) and metrics["fresh"]["documents"] == 5
    assert outs[0] == outs[1]


def test_config_reports_every_bad_key():
    with pytest.raises(ConfigError) as exc:
        build_config(PackConfig, {"seq_len": "x", "tokens": "lots", "val_fraction": 2.0, "bogus": 1}, "pack")
    msg = str(exc.value)
    for key in ("pack.seq_len", "pack.tokens", "pack.val_fraction", "pack.bogus"):
        assert key in msg


def test_every_line_is_validated_whatever_the_budget(tmp_path, tokenizers_pair):
    """A corrupt line far past what the budget needs is still an error, named by line number."""
    tok = tokenizers_pair[0]
    path = _corpus(tmp_path / "a.jsonl", _texts(60))
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n{not json\n")
    for seed in (0, 1, 2):
        with pytest.raises(CorpusError, match=r"a\.jsonl, line 62: not a JSON object"):
            pack_corpus(path, tok, _cfg(tokens="64", seed=seed), tmp_path / f"o{seed}")
        assert not (tmp_path / f"o{seed}").exists()


def test_literal_special_token_strings_stay_text(tmp_path, tokenizers_pair):
    """`<|end_of_text|>` written in an article is text, not the EOS id mid-article; BOS/EOS
    are added by id at the article's ends only."""
    tok = tokenizers_pair[0]
    text = "breaking <|end_of_text|> news <|begin_of_text|> here <|eot_id|> end"
    corpus = _corpus(tmp_path / "a.jsonl", [text])
    m = pack_corpus(corpus, tok, _cfg(tokens="64", seq_len=64, allow_short=True), tmp_path / "o")
    ids = PackedData.open(tmp_path / "o/train").input_ids[0].tolist()[:m["train"]["article_tokens"]]
    specials = set(tok.all_special_ids)
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert not specials & set(ids[1:-1])
    assert tok.decode(ids[1:-1]) == text
    assert m["bos_added"] and m["eos_added"] and m["bos_id"] == tok.bos_token_id


def test_no_bos_where_the_tokenizer_adds_none_and_a_warning_for_an_unused_bos(tmp_path, tokenizers_pair, caplog):
    import logging

    from tokenizers import processors

    tok = copy.deepcopy(tokenizers_pair[0])
    tok.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)  # adds nothing
    corpus = _corpus(tmp_path / "a.jsonl", ["alpha beta gamma", "delta epsilon"])
    with caplog.at_level(logging.WARNING, logger="freshllm.pack"):
        m = pack_corpus(corpus, tok, _cfg(tokens="64", seq_len=64, allow_short=True), tmp_path / "o")
    data = PackedData.open(tmp_path / "o/train")
    starts = [i for i, p in enumerate(data.position_ids[0].tolist()) if p == 0]
    assert tok.bos_token_id not in data.input_ids[0].tolist()[:m["train"]["article_tokens"]]
    assert data.input_ids[0][starts[1] - 1] == tok.eos_token_id
    assert not m["bos_added"] and m["bos_id"] is None
    assert "BOS token" in caplog.text and "does not add" in caplog.text


def test_duplicates_are_dropped_before_the_val_split(tmp_path, tokenizers_pair):
    tok = tokenizers_pair[0]
    texts = _texts(40)
    corpus = _corpus(tmp_path / "a.jsonl", texts + texts[:20])
    m = pack_corpus(corpus, tok, _cfg(tokens="256", val_fraction=0.5, allow_short=True), tmp_path / "o")
    assert m["skipped"] == {"duplicate_text": 20} and m["corpus_articles"] == 40
    assert m["val"]["articles"] + m["train"]["articles"] <= 40


def test_only_empty_texts_is_an_error_even_with_allow_short(tmp_path, tokenizers_pair):
    tok = tokenizers_pair[0]
    corpus = _corpus(tmp_path / "a.jsonl", ["", "  "])
    with pytest.raises(CorpusError, match=r"no usable articles.*empty_text"):
        pack_corpus(corpus, tok, _cfg(tokens="64", allow_short=True), tmp_path / "o")


def test_budget_error_says_rows_are_whole(tmp_path, tokenizers_pair):
    tok = tokenizers_pair[0]
    corpus = _corpus(tmp_path / "a.jsonl", _texts(3))
    with pytest.raises(CorpusError, match=r"rounded up to whole rows: [\d,]+ sequences of 64 = [\d,]+ tokens"):
        pack_corpus(corpus, tok, _cfg(tokens="100K"), tmp_path / "o")


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


ODD_TEXTS = ["  leading spaces and trailing  ", "unicode: café – naïve 東京 🚀 ok",
             "breaking <|end_of_text|> news <|begin_of_text|> here <|eot_id|> end",
             "tabs\tand\nnew lines\r\n and numbers 1234567890 3.14159"]


def pack_is_the_same_on_every_path(tok, tmp_path, monkeypatch):
    """Pack with the tokenizer's own batch call on 1 and 2 threads and with the transformers
    call (the path before it): every output file byte for byte, metrics but the thread count."""
    import freshllm.pack as P

    corpus = _corpus(tmp_path / "a.jsonl", ODD_TEXTS + _texts(200) + ODD_TEXTS[::-1])
    probe = [json.loads(line)["text"] for line in corpus.read_text().splitlines()[:7]]
    assert P.fast_encoder(tok, probe) is not None  # the fast path is the one taken
    kw = dict(tokens="4K", seq_len=64, batch_articles=7, val_fraction=0.1)
    m1 = pack_corpus(corpus, tok, _cfg(workers=1, **kw), tmp_path / "w1")
    m2 = pack_corpus(corpus, tok, _cfg(workers=2, **kw), tmp_path / "w2")
    with monkeypatch.context() as mp:
        mp.setattr(P, "fast_encoder", lambda tokenizer, probe: None)
        m0 = pack_corpus(corpus, tok, _cfg(workers=1, **kw), tmp_path / "hf")
    assert (m1["workers"], m2["workers"]) == (1, 2)
    ref = _tree_bytes(tmp_path / "hf")
    assert any(k.startswith("val/") for k in ref) and len(ref) > 8
    for out, m in (("w1", m1), ("w2", m2)):
        assert _tree_bytes(tmp_path / out) == ref, out
        assert {k: v for k, v in m.items() if k != "workers"} == {k: v for k, v in m0.items() if k != "workers"}


def test_pack_output_is_byte_identical_whatever_the_encoding_path(tmp_path, tokenizers_pair, monkeypatch):
    pack_is_the_same_on_every_path(tokenizers_pair[0], tmp_path, monkeypatch)


def test_fast_encoder_is_not_used_where_it_would_differ(tokenizers_pair):
    import freshllm.pack as P

    tok = copy.deepcopy(tokenizers_pair[0])
    tok._tokenizer.enable_truncation(8)  # the transformers call resets it, the raw call would not
    assert P.fast_encoder(tok, ["some text"]) is None
    tok._tokenizer.no_truncation()
    assert P.fast_encoder(tok, ["some text"]) is not None
    with pytest.raises(ConfigError, match="pack.workers: must be auto or a positive integer, got 0"):
        _cfg(workers=0)
