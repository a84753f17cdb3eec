import copy
import json
import math

import numpy as np
import pytest
import torch

from conftest import random_llama
from freshllm.config import ConfigError, build_config
from freshllm.pack import CorpusError, PackConfig, pack_corpus
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
    assert m["val"]["articles"] == 10
    assert PackedData.open(tmp_path / "o/val").seq_len == 64


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
