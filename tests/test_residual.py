import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import random_llama
from freshllm.config import build_config
from freshllm.hfio import save_model_dir
from freshllm.residual import ResidualConfig, ResidualError, apply, extract
from freshllm.st_stream import ShardedReader


def cfg(**kw):
    base = {"shard_size": "20KB"}  # tiny shards: exercise the sharded paths
    base.update(kw)
    return build_config(ResidualConfig, base, "residual")


def state(model_dir):
    r = ShardedReader(model_dir)
    return {n: r.get(n) for n in r.names()}


def _pair(tmp_path, tokenizers_pair, dtype=torch.bfloat16, tie=True, seed=1, name="m"):
    base_tok, inst_tok = tokenizers_pair
    base = random_llama(base_tok, seed=seed, tie=tie, dtype=dtype)
    save_model_dir(base, base_tok, tmp_path / f"{name}-base", max_shard_size="30KB")
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in base.parameters():
            p.add_((0.02 * torch.randn(p.shape, generator=gen)).to(p.dtype))
    save_model_dir(base, inst_tok, tmp_path / f"{name}-instruct", max_shard_size="30KB")
    return tmp_path / f"{name}-base", tmp_path / f"{name}-instruct"


def test_base_plus_residual_reproduces_instruct_sharded_bf16_tied(tmp_path, tokenizers_pair, chunking):
    base, inst = _pair(tmp_path, tokenizers_pair)
    assert (base / "model.safetensors.index.json").exists()  # really sharded input
    extract(base, inst, tmp_path / "R", cfg())
    apply(tmp_path / "R", base, tmp_path / "new", cfg())
    assert (tmp_path / "new/model.safetensors.index.json").exists()
    new, ref = state(tmp_path / "new"), state(inst)
    assert set(new) == set(ref)
    assert "lm_head.weight" not in new  # tied: stored once, applied once
    for n in ref:
        assert new[n].dtype == torch.bfloat16
        # exact in float32 up to one bf16 rounding of the sum
        torch.testing.assert_close(new[n].float(), ref[n].float(), atol=0, rtol=2**-7)
    # loadable, carries the instruct tokenizer and chat template
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = AutoModelForCausalLM.from_pretrained(tmp_path / "new")
    assert m.config.tie_word_embeddings
    tok = AutoTokenizer.from_pretrained(tmp_path / "new")
    assert tok.chat_template and tok.eos_token == "<|eot_id|>"


def test_bf16_storage_error_is_small(tmp_path, tokenizers_pair):
    base, inst = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="f")
    extract(base, inst, tmp_path / "R32", cfg())
    extract(base, inst, tmp_path / "R16", cfg(dtype="bfloat16"))
    size = lambda d: sum(f.stat().st_size for f in d.glob("*.safetensors"))  # noqa: E731
    assert size(tmp_path / "R16") < 0.6 * size(tmp_path / "R32")
    apply(tmp_path / "R16", base, tmp_path / "n16", cfg())
    new, ref = state(tmp_path / "n16"), state(inst)
    err = max((new[n] - ref[n]).abs().max().item() for n in ref)
    assert 0 < err < 1e-3


@pytest.fixture(params=["whole", "row-chunks"])
def chunking(request, monkeypatch):
    """Run a test with whole tensors and with tiny row chunks (the streaming path that
    large models take)."""
    if request.param == "row-chunks":
        monkeypatch.setattr("freshllm.residual.CHUNK_BYTES", 512)
    return request.param


def test_cross_version_port_and_mismatch_refused(tmp_path, tokenizers_pair, chunking):
    b1, i1 = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, seed=1, name="v1")
    b2, _ = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, seed=5, name="v2")
    extract(b1, i1, tmp_path / "R", cfg())
    rep = apply(tmp_path / "R", b2, tmp_path / "port", cfg(alpha=0.5), base_dir=b1)
    r, t, new = state(tmp_path / "R"), state(b2), state(tmp_path / "port")
    for n in t:
        torch.testing.assert_close(new[n], t[n] + 0.5 * r[n])
    assert rep["target_vs_base_cosine"]["mean"] < 0.5  # differently seeded: far from the ancestor
    # a wider model: refused, naming a tensor and both shapes, nothing written
    wide = random_llama(tokenizers_pair[0], seed=3, hidden=48)
    save_model_dir(wide, tokenizers_pair[0], tmp_path / "wide")
    with pytest.raises(ResidualError, match=r"model\.embed_tokens\.weight: residual shape \(\d+, 32\) != target shape \(\d+, 48\)"):
        apply(tmp_path / "R", tmp_path / "wide", tmp_path / "bad", cfg())
    assert not (tmp_path / "bad").exists()
    # untied target vs tied residual: lm_head has no residual -> refused, not skipped
    untied = random_llama(tokenizers_pair[0], seed=3, tie=False)
    save_model_dir(untied, tokenizers_pair[0], tmp_path / "untied")
    with pytest.raises(ResidualError, match="lm_head.weight"):
        apply(tmp_path / "R", tmp_path / "untied", tmp_path / "bad", cfg())


def test_vocab_policy(tmp_path, tokenizers_pair, chunking):
    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="vb")
    extract(b, i, tmp_path / "R", cfg())
    target = random_llama(tokenizers_pair[0], seed=1)
    target.resize_token_embeddings(target.config.vocab_size + 8)
    save_model_dir(target, tokenizers_pair[0], tmp_path / "bigvocab")
    with pytest.raises(ResidualError, match="vocab: shared_rows"):
        apply(tmp_path / "R", tmp_path / "bigvocab", tmp_path / "o", cfg())
    apply(tmp_path / "R", tmp_path / "bigvocab", tmp_path / "o", cfg(vocab="shared_rows"))
    new, t, r = state(tmp_path / "o"), state(tmp_path / "bigvocab"), state(tmp_path / "R")
    name = "model.embed_tokens.weight"
    rows = r[name].shape[0]
    torch.testing.assert_close(new[name][:rows], t[name][:rows] + r[name])
    torch.testing.assert_close(new[name][rows:], t[name][rows:])


def test_nan_input_is_an_error(tmp_path, tokenizers_pair, chunking):
    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="nan")
    shard = sorted(i.glob("*.safetensors"))[0]
    tensors = load_file(shard)
    name = sorted(tensors)[0]
    tensors[name][0] = float("nan")
    from safetensors.torch import save_file

    save_file(tensors, shard, metadata={"format": "pt"})
    with pytest.raises(ResidualError, match=f"{name}.*NaN"):
        extract(b, i, tmp_path / "R", cfg())


def test_matches_independent_full_load_task_arithmetic(tmp_path, tokenizers_pair):
    """cpt_base + (instruct - base), computed here by loading whole models in float32."""
    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="ta")
    c, _ = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, seed=9, name="cpt")
    extract(b, i, tmp_path / "R", cfg())
    apply(tmp_path / "R", c, tmp_path / "new", cfg())
    from transformers import AutoModelForCausalLM

    sd = {k: AutoModelForCausalLM.from_pretrained(p).state_dict() for k, p in
          (("b", b), ("i", i), ("c", c))}
    got = AutoModelForCausalLM.from_pretrained(tmp_path / "new").state_dict()
    for n, v in got.items():
        torch.testing.assert_close(v, sd["c"][n] + sd["i"][n] - sd["b"][n], atol=1e-6, rtol=0)


def test_ties_and_dare(tmp_path, tokenizers_pair):
    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="td")
    extract(b, i, tmp_path / "R", cfg())
    r, base = state(tmp_path / "R"), state(b)
    apply(tmp_path / "R", b, tmp_path / "ties", cfg(method="ties", density=0.25))
    name = "model.layers.0.mlp.up_proj.weight"
    delta = state(tmp_path / "ties")[name] - base[name]
    kept = (delta != 0).float().mean().item()
    assert 0.2 < kept < 0.3
    assert torch.all(delta[delta != 0].abs() >= r[name].abs().quantile(0.74))
    apply(tmp_path / "R", b, tmp_path / "dare", cfg(method="dare", density=0.5, seed=1))
    delta = state(tmp_path / "dare")[name] - base[name]
    nz = delta != 0
    assert 0.4 < nz.float().mean().item() < 0.6
    torch.testing.assert_close(delta[nz], 2 * r[name][nz], atol=1e-6, rtol=1e-5)


def test_manifest_records_provenance(tmp_path, tokenizers_pair):
    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="man")
    extract(b, i, tmp_path / "R", cfg())
    m = json.loads((tmp_path / "R/manifest.json").read_text())
    assert m["base"]["path"] == str(b) and len(m["instruct"]["weights_sha256"]) == 64
    assert m["tensors"]["model.norm.weight"]["shape"] == [32]
    assert (tmp_path / "R/tokenizer/chat_template.jinja").exists()
