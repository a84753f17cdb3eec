"""Stand-ins for hub snapshots: real tokenizers from llama.cpp's vocab files, exact hub configs,
seeded shrunken weights.

The first run downloads the llama-cpp-python sdist (~77 MB, pip) into the freshllm cache
(``$FRESHLLM_CACHE`` or ``~/.cache/freshllm``); a failed download FAILS these tests (with pip's
reason), it never skips them.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess

import pytest

from freshllm.standins import architectures as A
from freshllm.standins import tokenizers as T

SHRINK = "hidden=64,layers=2,intermediate=128,heads=4,kv_heads=2"
LLAMA3, LLAMA3_I = "meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-8B-Instruct"
LLAMA31, LLAMA31_I = "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct"
QWEN2, QWEN2_I = "Qwen/Qwen2-1.5B", "Qwen/Qwen2-1.5B-Instruct"
QWEN25, QWEN25_I = "Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B-Instruct"
CONVERSATION = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What is 2+2?"}]


@pytest.fixture(scope="session")
def tokenizers_cache():
    """Fetch llama.cpp's vocab files (once, into the cache) and build the tokenizer dirs."""
    try:
        for fam in ("llama3", "qwen2"):
            T.vocab_files(fam)
        for mid in (LLAMA3, LLAMA3_I, LLAMA31, LLAMA31_I, QWEN2, QWEN2_I, QWEN25, QWEN25_I):
            T.tokenizer_dir(mid)
    except Exception as e:  # never skip: the stand-ins are useless without real tokenizers
        pytest.fail(f"could not fetch/build the real tokenizers into {T.cache_root()}: {e}")
    return T.cache_root()


@pytest.fixture(scope="session")
def tok(tokenizers_cache):
    loaded = {}

    def get(model_id):
        if model_id not in loaded:
            loaded[model_id] = T.load_tokenizer(model_id)
        return loaded[model_id]
    return get


# --- tokenizers ----------------------------------------------------------------------------

@pytest.mark.parametrize("model_id", [QWEN25, LLAMA31])
def test_pack_is_byte_identical_with_the_real_tokenizers_own_batch_call(tok, model_id, tmp_path, monkeypatch):
    """pack's fast path (the Rust batch call, 1 and 2 threads) writes what the transformers
    call writes, with the real Qwen2.5 and LLaMA 3.1 tokenizers (BOS added for LLaMA only)."""
    from test_pack import pack_is_the_same_on_every_path

    pack_is_the_same_on_every_path(tok(model_id), tmp_path, monkeypatch)


@pytest.mark.parametrize("family,model_id", [("qwen2", QWEN2), ("llama3", LLAMA3)])
def test_llamacpp_expected_ids(tok, family, model_id):
    matched, total, bad = T.check_against_llamacpp(family, tok(model_id))
    assert total == 46
    # 46/46 for both: the one LLaMA 3 string that transformers' GGUF converter gets wrong
    # ("Cửa Việt") needs the hub's ignore_merges=True, which we keep.
    assert matched == total, [(m["text"], m["expected"], m["got"]) for m in bad]


def test_vocab_sizes_and_specials(tok):
    for mid in (LLAMA3, LLAMA3_I, LLAMA31, LLAMA31_I):
        t = tok(mid)
        assert len(t) == 128256 and t.vocab_size == 128000
        assert t.convert_tokens_to_ids(["<|begin_of_text|>", "<|end_of_text|>",
                                        "<|start_header_id|>", "<|end_header_id|>",
                                        "<|eot_id|>"]) == [128000, 128001, 128006, 128007, 128009]
        assert "<|endoftext|>" not in t.get_vocab()  # the GGUF converter's extra 128,257th entry
    l3, l31 = tok(LLAMA3), tok(LLAMA31)
    assert l3.convert_ids_to_tokens([128004, 128008, 128010, 128255]) == [
        "<|reserved_special_token_2|>", "<|reserved_special_token_4|>",
        "<|reserved_special_token_5|>", "<|reserved_special_token_250|>"]
    assert l31.convert_ids_to_tokens([128004, 128008, 128010, 128255]) == [
        "<|finetune_right_pad_id|>", "<|eom_id|>", "<|python_tag|>",
        "<|reserved_special_token_247|>"]
    for mid in (QWEN2, QWEN2_I):
        t = tok(mid)
        assert len(t) == 151646 and t.vocab_size == 151643
        assert t.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
            151643, 151644, 151645]
        assert not any(k.startswith("[PAD") for k in t.get_vocab())
    for mid in (QWEN25, QWEN25_I):
        t = tok(mid)
        assert len(t) == 151665
        assert t.convert_ids_to_tokens([151646, 151657, 151659, 151664]) == [
            "<|object_ref_start|>", "<tool_call>", "<|fim_prefix|>", "<|file_sep|>"]
    # the embedding has more rows than the tokenizer has tokens, as on the hub
    assert A.get_arch(QWEN25).vocab_size == 151936 > len(tok(QWEN25))


def test_bos_eos_pad(tok):
    for mid, eos in ((LLAMA3, 128001), (LLAMA3_I, 128009), (LLAMA31, 128001), (LLAMA31_I, 128009)):
        t = tok(mid)
        ids = t("hi")["input_ids"]
        assert ids[0] == 128000 and ids[1:] == t("hi", add_special_tokens=False)["input_ids"]
        assert ids[-1] not in (128001, 128009)  # no EOS appended by default
        assert t.bos_token_id == 128000 and t.eos_token_id == eos and t.pad_token is None
    for mid, eos in ((QWEN2, 151643), (QWEN2_I, 151645), (QWEN25, 151643), (QWEN25_I, 151645)):
        t = tok(mid)
        assert t("hi")["input_ids"] == t("hi", add_special_tokens=False)["input_ids"] == [6023]
        assert t.bos_token is None and t.eos_token_id == eos and t.pad_token_id == 151643


def test_chat_templates(tok):
    assert tok(LLAMA3).chat_template is None and tok(LLAMA31).chat_template is None
    hdr = "<|start_header_id|>{}<|end_header_id|>\n\n"
    assert tok(LLAMA3_I).apply_chat_template(CONVERSATION, tokenize=False,
                                             add_generation_prompt=True) == (
        "<|begin_of_text|>" + hdr.format("system") + "You are terse.<|eot_id|>"
        + hdr.format("user") + "What is 2+2?<|eot_id|>" + hdr.format("assistant"))
    assert tok(LLAMA31_I).apply_chat_template(CONVERSATION, tokenize=False,
                                              add_generation_prompt=True) == (
        "<|begin_of_text|>" + hdr.format("system")
        + "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        + "You are terse.<|eot_id|>" + hdr.format("user") + "What is 2+2?<|eot_id|>"
        + hdr.format("assistant"))
    chatml = ("<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
              "<|im_start|>assistant\n")
    for mid in (QWEN2_I, QWEN25_I, QWEN2, QWEN25):
        assert tok(mid).apply_chat_template(CONVERSATION, tokenize=False,
                                            add_generation_prompt=True) == chatml.format(
            "You are terse.")
    user_only = CONVERSATION[1:]
    for mid, system in ((QWEN2_I, "You are a helpful assistant."),
                        (QWEN25, "You are a helpful assistant."),
                        (QWEN25_I, "You are Qwen, created by Alibaba Cloud. "
                                   "You are a helpful assistant.")):
        assert tok(mid).apply_chat_template(user_only, tokenize=False,
                                            add_generation_prompt=True) == chatml.format(system)
    # tokenized: the template carries the BOS, so no second one is added
    ids = tok(LLAMA3_I).apply_chat_template(CONVERSATION, add_generation_prompt=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert ids[0] == 128000 and ids[1] != 128000


def test_split_special_tokens_keeps_text_literal(tok):
    # Crawled text may contain "<|endoftext|>" etc.: the pack stage must encode with
    # split_special_tokens=True, or the text injects real control tokens.
    text = "a <|endoftext|> b <|im_end|> c <|eot_id|> d <|begin_of_text|>"
    for mid, specials in ((QWEN2_I, {151643, 151645}), (LLAMA3, {128000, 128009})):
        t = tok(mid)
        parsed = t(text, add_special_tokens=False)["input_ids"]
        literal = t(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        assert specials <= set(parsed)
        assert not set(literal) & specials and max(literal) < t.vocab_size
        assert t.decode(literal) == text


def test_qwen_nfc_normalisation(tok):
    t = tok(QWEN2)
    assert t("cafe\u0301")["input_ids"] == t("caf\u00e9")["input_ids"]
    assert json.loads((T.tokenizer_dir(QWEN2) / "tokenizer.json").read_text())["normalizer"] == {
        "type": "NFC"}


def test_saved_tokenizer_roundtrip(tok, tmp_path):
    text = "Hello wörld 12345 cafe\u0301 <tool_call>"
    for mid in (LLAMA31_I, QWEN25_I):
        t = tok(mid)
        t.save_pretrained(tmp_path / mid)
        from transformers import AutoTokenizer
        t2 = AutoTokenizer.from_pretrained(tmp_path / mid)
        assert type(t2) is type(t) and len(t2) == len(t)
        assert t2(text)["input_ids"] == t(text)["input_ids"]
    assert type(tok(QWEN2)).__name__ == "Qwen2Tokenizer"


def test_generation_configs():
    g = T.generation_config
    assert g(LLAMA3_I) == {"bos_token_id": 128000, "eos_token_id": [128001, 128009],
                           "do_sample": True, "temperature": 0.6, "top_p": 0.9,
                           "max_length": 4096, "transformers_version": "4.40.0.dev0"}
    assert g(LLAMA31_I)["eos_token_id"] == [128001, 128008, 128009]
    assert g("meta-llama/Meta-Llama-3.1-8B-Instruct") == g(LLAMA31_I)  # old repo name
    q = g(QWEN2_I)
    q.pop("transformers_version")
    assert q == {"bos_token_id": 151643, "pad_token_id": 151643, "eos_token_id": [151645, 151643],
                 "do_sample": True, "repetition_penalty": 1.1, "temperature": 0.7, "top_p": 0.8,
                 "top_k": 20}
    assert g(QWEN2)["eos_token_id"] == 151643 and g(QWEN2)["do_sample"] is False
    assert g(LLAMA3)["eos_token_id"] == 128001


def test_download_failure_names_package_and_cause(monkeypatch, tmp_path):
    def fake_run(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"]
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that "
                                           "satisfies the requirement llama-cpp-python==0.3.36\n")
    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(RuntimeError) as e:
        T._download_sdist(tmp_path)
    msg = str(e.value)
    assert "llama-cpp-python==0.3.36" in msg and "Could not find a version" in msg
    assert "\n" not in msg


# --- architectures -------------------------------------------------------------------------

def test_param_counts():
    assert A.param_count(A.get_arch(LLAMA3)) == 8_030_261_248          # 8.03B
    assert A.param_count(A.get_arch("Qwen/Qwen2-1.5B")) == 1_543_714_304   # 1.54B
    assert A.param_count(A.get_arch("Qwen/Qwen2.5-0.5B")) == 494_032_768   # 494M
    assert A.param_count(A.get_arch("meta-llama/Llama-3.2-3B")) == 3_212_749_824  # 3.21B
    assert A.get_arch("meta-llama/Llama-3.2-1B").params == 1_235_814_400    # 1.24B
    assert A.get_arch("Qwen/Qwen2.5-7B").params == 7_615_616_512           # 7.62B
    # the formula agrees with the stored tensors of any config
    from freshllm.standins.snapshots import tensor_shapes
    for mid in A.list_models():
        cfg = A.get_arch(mid).config()
        assert A.param_count(cfg) == sum(math.prod(s) for _, s in tensor_shapes(cfg)), mid


def test_registry_facts():
    l31 = A.get_arch(LLAMA31)
    assert l31["rope_scaling"] == {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                   "original_max_position_embeddings": 8192, "rope_type": "llama3"}
    assert l31.max_position_embeddings == 131072 and A.get_arch(LLAMA3)["rope_scaling"] is None
    assert A.get_arch(LLAMA31_I)["eos_token_id"] == [128001, 128008, 128009]
    assert A.get_arch(LLAMA3_I)["eos_token_id"] == 128009
    for s in ("1B", "3B"):
        a = A.get_arch(f"meta-llama/Llama-3.2-{s}")
        assert a.tied and a["rope_scaling"]["factor"] == 32.0
    for mid in A.list_models():
        a = A.get_arch(mid)
        assert a["torch_dtype"] == "bfloat16"
        if a.family == "qwen2":
            assert a.qkv_bias and a["rope_theta"] == 1e6 and a["use_sliding_window"] is False
            assert a.vocab_size == (152064 if "7B" in mid else 151936)
            assert a.tied == ("7B" not in mid)
            assert a["eos_token_id"] == (151645 if a.is_instruct else 151643)
    assert A.get_arch("Qwen/Qwen2.5-1.5B-Instruct")["max_window_layers"] == 21
    assert A.get_arch("Qwen/Qwen2-1.5B")["max_position_embeddings"] == 131072
    assert A.get_arch("Qwen/Qwen2-1.5B-Instruct")["max_position_embeddings"] == 32768
    assert [A.get_arch(m).n_shards for m in (LLAMA3, "meta-llama/Llama-3.2-3B", QWEN25,
                                             "Qwen/Qwen2.5-7B")] == [4, 2, 1, 4]
    assert A.get_arch("meta-llama/Meta-Llama-3.1-8B") is l31
    # a config copy is independent of the registry
    cfg = l31.config()
    cfg["rope_scaling"]["factor"] = 1.0
    assert l31["rope_scaling"]["factor"] == 8.0


def test_importable_without_torch():
    code = ("import sys; import freshllm.standins as s; s.get_arch('Qwen/Qwen2-7B').params; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    import os
    import sys
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_package_exports_resolve():
    import freshllm.standins as s
    for name in s.__all__:
        assert callable(getattr(s, name)) or isinstance(getattr(s, name), dict), name


# --- stand-in snapshots ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def standins(tokenizers_cache, tmp_path_factory):
    from freshllm.standins import build_family_pair, build_standin
    root = tmp_path_factory.mktemp("standins")
    out = {}
    out["llama3"] = build_family_pair(LLAMA3, root, shrink=SHRINK, seed=0)
    out["llama31"] = build_standin(LLAMA31, root / "llama31", shrink=SHRINK, seed=0)
    out["qwen25"] = build_family_pair(QWEN25, root, shrink=SHRINK, seed=0)
    return out


def _hashes(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.iterdir()) if p.suffix == ".safetensors"}


def test_standin_layout_and_config(standins):
    base = standins["llama3"]["base"]
    cfg = json.loads((base / "config.json").read_text())
    hub = A.get_arch(LLAMA3).config()
    assert cfg == A.shrink_config(hub, {"hidden": 64, "layers": 2, "intermediate": 128,
                                        "heads": 4, "kv_heads": 2})
    for k in ("vocab_size", "tie_word_embeddings", "rope_scaling", "rope_theta", "torch_dtype",
              "bos_token_id", "eos_token_id", "max_position_embeddings"):
        assert cfg[k] == hub[k], k
    names = {p.name for p in base.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "model.safetensors.index.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)
    assert json.loads((base / "generation_config.json").read_text()) == T.generation_config(LLAMA3)
    q = standins["qwen25"]["instruct"]
    assert {"vocab.json", "merges.txt", "model.safetensors"} <= {p.name for p in q.iterdir()}
    assert not (q / "model.safetensors.index.json").exists()


def test_sharded_index_valid(standins):
    from safetensors import safe_open
    d = standins["llama3"]["base"]
    index = json.loads((d / "model.safetensors.index.json").read_text())
    files = sorted(p.name for p in d.glob("model-*.safetensors"))
    n = len(files)
    assert n >= 2 and files == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert set(index["weight_map"].values()) == set(files)
    seen, total = {}, 0
    for f in files:
        with safe_open(str(d / f), framework="pt") as fh:
            assert fh.metadata() == {"format": "pt"}
            for k in fh.keys():
                t = fh.get_slice(k)
                seen[k] = f
                total += math.prod(t.get_shape()) * 2
    assert seen == index["weight_map"] and index["metadata"]["total_size"] == total
    assert "lm_head.weight" in seen  # untied LLaMA 3
    with safe_open(str(standins["qwen25"]["base"] / "model.safetensors"), framework="pt") as fh:
        keys = set(fh.keys())
    assert "lm_head.weight" not in keys and "model.layers.0.self_attn.q_proj.bias" in keys


def test_standins_load_and_generate(standins):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    for d, bos in ((standins["llama3"]["instruct"], 128000), (standins["llama31"], 128000),
                   (standins["qwen25"]["instruct"], None)):
        model = AutoModelForCausalLM.from_pretrained(d, use_safetensors=True, dtype=torch.bfloat16)
        tok = AutoTokenizer.from_pretrained(d)
        assert model.dtype == torch.bfloat16
        assert model.get_input_embeddings().weight.shape[0] == model.config.vocab_size
        enc = tok("The news today", return_tensors="pt")
        plain = tok("The news today", add_special_tokens=False)["input_ids"]
        assert enc["input_ids"][0].tolist() == ([bos] if bos else []) + plain
        with torch.no_grad():
            logits = model(**enc).logits.float()
            assert torch.isfinite(logits).all() and logits.abs().max() < 20
            out = model.generate(**enc, max_new_tokens=4, do_sample=False,
                                 pad_token_id=tok.eos_token_id)
        assert out.shape[1] == enc["input_ids"].shape[1] + 4
        assert model.num_parameters() == json.loads((d / "freshllm_standin.json").read_text())[
            "params"]


def test_instruct_is_base_plus_known_perturbation(standins):
    import torch
    from freshllm.standins.snapshots import expected_perturbation, load_state_dict, read_manifest
    for fam, mid in (("llama3", LLAMA3_I), ("qwen25", QWEN25_I)):
        base = load_state_dict(standins[fam]["base"])
        inst = load_state_dict(standins[fam]["instruct"])
        rec = read_manifest(standins[fam]["instruct"])["perturbation"]
        assert base.keys() == inst.keys()
        changed = 0
        for name, b in base.items():
            delta = expected_perturbation(mid, name, tuple(b.shape), perturb_seed=rec["seed"],
                                          eps=rec["eps"])
            assert inst[name].dtype == torch.bfloat16
            assert torch.equal(inst[name], (b.float() + delta).to(torch.bfloat16)), name
            changed += int(not torch.equal(inst[name], b))
        assert changed == len(base)


def test_llama31_standin_differs_from_llama3(standins):
    import torch
    from transformers import AutoConfig
    from freshllm.standins.snapshots import load_state_dict
    c3 = AutoConfig.from_pretrained(standins["llama3"]["base"])
    c31 = AutoConfig.from_pretrained(standins["llama31"])
    assert c31.rope_parameters["rope_type"] == "llama3" and c31.rope_parameters["factor"] == 8.0
    assert c31.max_position_embeddings == 131072 and c3.max_position_embeddings == 8192
    assert c3.rope_parameters["rope_type"] == "default"
    w3 = load_state_dict(standins["llama3"]["base"])
    w31 = load_state_dict(standins["llama31"])
    assert {k: v.shape for k, v in w3.items()} == {k: v.shape for k, v in w31.items()}
    assert not torch.equal(w3["model.embed_tokens.weight"], w31["model.embed_tokens.weight"])


def test_deterministic_and_idempotent(standins, tmp_path):
    from freshllm.standins.__main__ import main
    base = standins["llama3"]["base"]
    again = tmp_path / "again"
    assert main(["--model", LLAMA3, "--out", str(again), "--shrink", SHRINK, "--seed", "0"]) == 0
    assert _hashes(again) == _hashes(base)
    stamp = (again / "model.safetensors.index.json").stat().st_mtime_ns
    assert main(["build", "--model", LLAMA3, "--out", str(again), "--shrink", SHRINK]) == 0
    assert (again / "model.safetensors.index.json").stat().st_mtime_ns == stamp  # cached
    inst = tmp_path / "inst"
    assert main(["--model", LLAMA3_I, "--out", str(inst), "--perturb-from", str(again)]) == 0
    assert _hashes(inst) == _hashes(standins["llama3"]["instruct"])
    other = tmp_path / "seed1"
    assert main(["--model", LLAMA3, "--out", str(other), "--shrink", SHRINK, "--seed", "1",
                 "--shards", "2"]) == 0
    assert len(_hashes(other)) == 2 and _hashes(other) != _hashes(base)
