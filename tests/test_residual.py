import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import random_llama
from freshllm.config import build_config
from freshllm.io.hf import save_model_dir
from freshllm.residual import ResidualConfig, ResidualError, apply, extract
from freshllm.io.st_stream import ShardedReader


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


@pytest.fixture(params=["whole", "row-chunks", "row-chunks-read-ahead"])
def chunking(request, monkeypatch):
    """Run a test with whole tensors and with tiny row chunks (the streaming path that
    large models take), read in the caller's thread or ahead in a background thread."""
    monkeypatch.setattr("freshllm.residual.chunks.READ_AHEAD", request.param.endswith("read-ahead"))
    if request.param.startswith("row-chunks"):
        monkeypatch.setattr("freshllm.residual.chunks.CHUNK_BYTES", 512)
    else:
        monkeypatch.setattr("freshllm.residual.chunks.CHUNK_BYTES", 1 << 30)
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
    rows = target.config.vocab_size - 8
    with pytest.raises(ResidualError, match=rf"vocabulary sizes differ: the residual has {rows} rows, the "
                       rf"target {rows + 8}; set residual\.vocab: shared_rows to apply it to the {rows} shared"):
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


def test_registry_lists_methods_with_modes_and_names_unknown_ones(tmp_path, tiny_pair):
    from freshllm.config import ConfigError
    from freshllm.residual import METHODS, get_method

    assert {n: m.mode for n, m in METHODS.items()} == {
        "plain": "chunks", "ties": "tensors", "dare": "tensors", "ties_dr": "tensors", "dare_dr": "tensors",
        "dare_ties_dr": "tensors", "magmax": "chunks", "breadcrumbs_dr": "tensors"}
    assert all(METHODS[n].name == n and callable(METHODS[n].merge) for n in METHODS)
    known = r"\(known: plain, ties, dare, ties_dr, dare_dr, dare_ties_dr, magmax, breadcrumbs_dr\)"
    with pytest.raises(ConfigError, match=rf"residual\.method: unknown merge method 'slerp' {known}"):
        cfg(method="slerp")
    with pytest.raises(ValueError, match=rf"unknown merge method 'slerp' {known}"):
        get_method("slerp")
    b, i = tiny_pair
    extract(b, i, tmp_path / "R", cfg())
    with pytest.raises(ValueError, match=rf"unknown merge method 'slerp' {known}"):
        apply(tmp_path / "R", b, tmp_path / "new", ResidualConfig(method="slerp"))  # unvalidated
    assert not (tmp_path / "new").exists()


def test_manifest_records_provenance(tmp_path, tokenizers_pair):
    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="man")
    extract(b, i, tmp_path / "R", cfg())
    m = json.loads((tmp_path / "R/manifest.json").read_text())
    assert m["base"]["path"] == str(b) and len(m["instruct"]["weights_sha256"]) == 64
    assert m["tensors"]["model.norm.weight"]["shape"] == [32]
    assert (tmp_path / "R/tokenizer/chat_template.jinja").exists()


@pytest.mark.parametrize("where", ["target", "residual", "base"])
def test_nan_named_in_apply_and_extract(tmp_path, tokenizers_pair, chunking, where):
    from safetensors.torch import save_file

    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.bfloat16, name="nn")
    if where == "base":  # extract: NaN in the base model
        victim = b
    else:
        extract(b, i, tmp_path / "R", cfg())
        victim = tmp_path / "R" if where == "residual" else b
    shard = sorted(victim.glob("*.safetensors"))[-1]
    tensors = load_file(shard)
    name = max(tensors, key=lambda n: tensors[n].numel())
    tensors[name].view(-1)[-1] = float("inf") if where == "residual" else float("nan")
    save_file(tensors, shard, metadata={"format": "pt", **({"freshllm": "freshllm-instruction-residual/1"}
                                                           if where == "residual" else {})})
    with pytest.raises(ResidualError, match=rf"{victim}: tensor {name} contains NaN or Inf"):
        if where == "base":
            extract(b, i, tmp_path / "R2", cfg())
        else:
            apply(tmp_path / "R", b, tmp_path / "new", cfg())
    assert not (tmp_path / "new").exists() and not (tmp_path / "R2").exists()


# ---------------------------------------------------------------- checks before writing

def _nan_in_residual(r_dir, name=None, index=-1):
    """Put a NaN into one element of a residual tensor (the largest unless named)."""
    from safetensors.torch import save_file

    reader = ShardedReader(r_dir)
    name = name or max(reader.specs, key=lambda n: reader.specs[n].numel)
    shard = reader.file_of[name]
    tensors = load_file(shard)
    tensors[name].view(-1)[index] = float("nan")
    save_file(tensors, shard, metadata={"format": "pt", "freshllm": "freshllm-instruction-residual/1"})
    return name


def _cli(capsys, *argv):
    """``python -m freshllm.residual`` in-process: (exit code, stderr)."""
    from freshllm.residual.__main__ import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    return exc.value.code, capsys.readouterr().err


def test_apply_refuses_a_base_that_is_not_the_residuals(tmp_path, tokenizers_pair, caplog, capsys):
    import re

    b1, i1 = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, seed=1, name="v1")
    b2, _ = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, seed=5, name="v2")
    extract(b1, i1, tmp_path / "R", cfg())
    msg = rf"--base {re.escape(str(b2))} is not the residual's base: its weights sha256 \w+\.\.\. != \w+\.\.\. recorded in {re.escape(str(tmp_path / 'R/manifest.json'))}"
    with pytest.raises(ResidualError, match=msg + r".*residual\.base_mismatch: warn"):
        apply(tmp_path / "R", b2, tmp_path / "new", cfg(), base_dir=b2)
    assert not (tmp_path / "new").exists()
    params = tmp_path / "params.yaml"
    params.write_text("residual:\n  shard_size: 20KB\n")
    code, err = _cli(capsys, "--params", params, "apply", "--residual", tmp_path / "R", "--target", b2,
                     "--base", b2, "--out", tmp_path / "new")
    assert code == 1 and re.fullmatch(r"residual: " + msg + r".*\n", err) and not (tmp_path / "new").exists()
    rep = apply(tmp_path / "R", b2, tmp_path / "new", cfg(base_mismatch="warn"), base_dir=b2)
    assert rep["base_matches"] is False and "is not the residual's base" in caplog.text
    assert apply(tmp_path / "R", b2, tmp_path / "new2", cfg(), base_dir=b1)["base_matches"] is True
    with pytest.raises(Exception, match=r"base_mismatch: must be error or warn"):
        cfg(base_mismatch="ignore")


def test_unindexed_multi_shard_dir_refused(tmp_path, tokenizers_pair, capsys):
    import shutil

    from freshllm.io.st_stream import SafetensorsFormatError

    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="ix")
    extract(b, i, tmp_path / "R", cfg())
    shutil.copytree(b, tmp_path / "noindex")
    (tmp_path / "noindex/model.safetensors.index.json").unlink()
    match = rf"{tmp_path / 'noindex'}: \d+ \*\.safetensors files \(model-00001-of-\d+\.safetensors.*\) but no model\.safetensors\.index\.json"
    with pytest.raises(SafetensorsFormatError, match=match):
        apply(tmp_path / "R", tmp_path / "noindex", tmp_path / "new", cfg())
    with pytest.raises(SafetensorsFormatError, match=match):
        extract(tmp_path / "noindex", i, tmp_path / "R2", cfg())
    code, err = _cli(capsys, "apply", "--residual", tmp_path / "R", "--target", tmp_path / "noindex",
                     "--out", tmp_path / "new")
    assert code == 1 and err.startswith(f"residual: {tmp_path / 'noindex'}: ") and err.count("\n") == 1
    assert not (tmp_path / "new").exists() and not (tmp_path / "R2").exists()


@pytest.mark.parametrize("method", ["ties", "dare"])
def test_ties_and_dare_refuse_a_nan_residual(tmp_path, tokenizers_pair, method):
    from freshllm.residual import METHODS
    from freshllm.residual.chunks import Scratch

    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="tn")
    extract(b, i, tmp_path / "R", cfg())
    c = cfg(method=method, density=0.2)
    name = "model.layers.0.mlp.up_proj.weight"
    shape = ShardedReader(tmp_path / "R").specs[name].shape
    # an entry the method drops (a NaN there vanished from the output before the check)
    kept = METHODS[method].merge(torch.zeros(shape), torch.ones(shape), name, c, Scratch())
    index = int((kept.reshape(-1) == 0).nonzero()[0]) if method == "dare" else 0
    _nan_in_residual(tmp_path / "R", name, index)
    with pytest.raises(ResidualError, match=rf"{tmp_path / 'R'}: tensor {name} contains NaN or Inf"):
        apply(tmp_path / "R", b, tmp_path / "new", c)
    assert not (tmp_path / "new").exists()


def test_out_path_that_is_in_or_contains_an_input_refused(tmp_path, tokenizers_pair):
    from freshllm.residual import weights_hash

    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="op")
    R = tmp_path / "R"
    extract(b, i, R, cfg())
    (tmp_path / "link").symlink_to(b)
    before = {d: (sorted(p.name for p in d.iterdir()), weights_hash(d)) for d in (b, i, R)}
    cases = [(b, "is", "target"), (R, "is", "residual"), (tmp_path / "link", "is", "target"),
             (b / ".." / b.name, "is", "target"), (b / "merged", "is inside", "target"),
             (tmp_path / "link/sub", "is inside", "target"), (tmp_path, "contains", "residual")]
    for out, how, opt in cases:
        with pytest.raises(ResidualError, match=rf"--out {out} {how} the input --{opt} "):
            apply(R, b, out, cfg())
    with pytest.raises(ResidualError, match=rf"--out {i} is the input --base {i}"):
        apply(R, b, i, cfg(), base_dir=i)  # --base here is only another input
    for out, how, opt in [(b, "is", "base"), (i / "R", "is inside", "instruct")]:
        with pytest.raises(ResidualError, match=rf"--out {out} {how} the input --{opt} "):
            extract(b, i, out, cfg())
    assert before == {d: (sorted(p.name for p in d.iterdir()), weights_hash(d)) for d in (b, i, R)}


def test_stale_temp_dirs_of_a_killed_run_are_removed(tmp_path, tiny_pair):
    import os
    import subprocess
    import sys

    b, i = tiny_pair
    out = tmp_path / "new"
    killed = ("import os, sys; from freshllm.common import atomic_dir\n"
              "cm = atomic_dir(sys.argv[1]); tmp = cm.__enter__(); (tmp / 'model.safetensors').write_bytes(b'half')\n"
              "print(tmp, flush=True); os._exit(9)")  # killed: no cleanup runs
    stale = [Path(subprocess.run([sys.executable, "-c", killed, str(out)], capture_output=True, text=True,
                                 env=os.environ).stdout.strip())]
    assert stale[0].is_dir() and (stale[0] / "model.safetensors").is_file()
    prefix, dead = stale[0].name.rsplit("-", 2)[0], stale[0].name.rsplit("-", 2)[1]  # .new.tmp-<host>
    host = prefix.split(".tmp-", 1)[1]
    keep = [tmp_path / f"{prefix}-{os.getpid()}-live1234",  # a live owner (this process)
            tmp_path / f".new.tmp-other{host}-{dead}-abcd1234",  # another host's
            tmp_path / f".newer.tmp-{host}-{dead}-abcd1234",  # another output's
            tmp_path / ".new.tmp-abcd1234"]  # no owner in the name
    for d in keep:
        d.mkdir()
    stale.append(tmp_path / f".new.old-{host}-{dead}")  # a swap that was killed
    stale[-1].mkdir()
    extract(b, i, out, cfg())
    assert (out / "manifest.json").is_file()
    assert not any(p.exists() for p in stale) and all(d.is_dir() for d in keep)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".new.")) == sorted(
        d.name for d in keep if d.name.startswith(".new."))


def test_stale_temp_file_of_a_killed_write_is_removed_at_the_next_write(tmp_path):
    """atomic_file, as atomic_dir: a write killed mid-way leaves its temp file; the next write of
    the same file removes it, and leaves a live process's temp and another file's alone."""
    import os
    import subprocess
    import sys

    from freshllm.common import atomic_file

    out = tmp_path / "heldout.jsonl"
    killed = ("import os, sys; from freshllm.common import atomic_file\n"
              "cm = atomic_file(sys.argv[1]); fh = cm.__enter__(); fh.write('half'); fh.flush()\n"
              "print(fh.name, flush=True); os._exit(9)")  # killed: no cleanup runs
    stale = Path(subprocess.run([sys.executable, "-c", killed, str(out)], capture_output=True, text=True,
                                env=os.environ).stdout.strip())
    assert stale.is_file() and stale.read_text() == "half" and not out.exists()
    host = stale.name.split(".tmp-", 1)[1].rsplit("-", 2)[0]
    keep = [tmp_path / f".heldout.jsonl.tmp-{host}-{os.getpid()}-live1234",  # a live owner (this process)
            tmp_path / f".other.jsonl.tmp-{host}-{stale.name.rsplit('-', 2)[1]}-abcd1234"]  # another file's
    for k in keep:
        k.write_text("x")
    with atomic_file(out) as fh:
        fh.write("whole")
    assert out.read_text() == "whole" and not stale.exists() and all(k.is_file() for k in keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, *(k.name for k in keep)])


def test_merged_model_carries_instruct_tokenizer_template_and_generation_config(tmp_path, tokenizers_pair):
    from transformers import AutoTokenizer, GenerationConfig

    base_tok, inst_tok = tokenizers_pair
    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="gi")
    target, _ = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, seed=7, name="gt")
    stops = [base_tok.eos_token_id, inst_tok.eos_token_id]  # <|end_of_text|>, <|eot_id|>
    edit = lambda p, **kw: p.write_text(json.dumps({**json.loads(p.read_text()), **kw}))  # noqa: E731
    # the instruct model as on the hub: template in tokenizer_config.json, slow files, a list of stops
    template = (i / "chat_template.jinja").read_text()
    (i / "chat_template.jinja").unlink()
    edit(i / "tokenizer_config.json", chat_template=template)
    edit(i / "generation_config.json", eos_token_id=stops)
    edit(i / "config.json", eos_token_id=stops)
    inst_tok.backend_tokenizer.model.save(str(i))  # vocab.json + merges.txt
    # the target (another version / a cpt base) has its own template, stop token and sentencepiece file
    (target / "chat_template.jinja").write_text("{{ 'the target template' }}")
    (target / "tokenizer.model").write_bytes(b"the target's")
    extract(b, i, tmp_path / "R", cfg())
    rep = apply(tmp_path / "R", target, tmp_path / "new", cfg())
    new = tmp_path / "new"
    carried = ["tokenizer.json", "tokenizer_config.json", "vocab.json",
               "merges.txt", "generation_config.json"]
    for f in carried:
        assert (new / f).read_bytes() == (i / f).read_bytes(), f
    assert not (new / "chat_template.jinja").exists() and not (new / "tokenizer.model").exists()
    assert json.loads((new / "config.json").read_text())["eos_token_id"] == stops
    assert GenerationConfig.from_pretrained(new).eos_token_id == stops
    assert AutoTokenizer.from_pretrained(new).chat_template == template
    assert rep["tokenizer"] == "residual"


def _edit_tokenizer(model_dir, fn):
    p = model_dir / "tokenizer.json"
    data = json.loads(p.read_text())
    fn(data)
    p.write_text(json.dumps(data))


def test_target_tokenizer_checked_against_the_residuals(tmp_path, tokenizers_pair, caplog):
    import shutil

    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="tk")
    R = tmp_path / "R"
    extract(b, i, R, cfg())
    # same shapes, other regular tokens at the same ids: refused, naming both tokenizers
    shutil.copytree(b, tmp_path / "other")

    def swap(data):
        v = data["model"]["vocab"]
        a, z = sorted(v, key=v.get)[100], sorted(v, key=v.get)[101]
        v[a], v[z] = v[z], v[a]
    _edit_tokenizer(tmp_path / "other", swap)
    with pytest.raises(ResidualError, match=rf"tokenizer {tmp_path / 'other/tokenizer.json'} of the target and "
                       rf"the residual's {R / 'tokenizer/tokenizer.json'} differ in 2 regular tokens \(id 100: "):
        apply(R, tmp_path / "other", tmp_path / "new", cfg())
    # only the added special tokens differ (Qwen2 vs Qwen2.5): a warning; the residual's tokenizer
    shutil.copytree(b, tmp_path / "fewer")
    _edit_tokenizer(tmp_path / "fewer", lambda data: data["added_tokens"].pop())
    rep = apply(R, tmp_path / "fewer", tmp_path / "new", cfg())
    assert "differ in added special tokens" in caplog.text and "gets the residual's (instruct) tokenizer" in caplog.text
    assert rep["added_tokens_differ"] and rep["tokenizer"] == "residual"
    assert (tmp_path / "new/tokenizer.json").read_bytes() == (R / "tokenizer/tokenizer.json").read_bytes()
    # fewer embedding rows than the residual's tokenizer has ids: refused even under shared_rows
    small = random_llama(tokenizers_pair[0], seed=1)
    rows = small.config.vocab_size
    small.resize_token_embeddings(rows - 8)
    save_model_dir(small, tokenizers_pair[0], tmp_path / "small")
    with pytest.raises(ResidualError, match=rf"has token id {rows - 1}, but the target {tmp_path / 'small'} "
                       rf"has only {rows - 8} embedding rows"):
        apply(R, tmp_path / "small", tmp_path / "new2", cfg(vocab="shared_rows"))
    assert not (tmp_path / "new2").exists()


def test_dtypes_recorded_bf16_target_stays_bf16(tmp_path, tokenizers_pair, capsys):
    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="d32")
    t16, _ = _pair(tmp_path, tokenizers_pair, dtype=torch.bfloat16, seed=3, name="d16")
    ex = extract(b, i, tmp_path / "R", cfg())
    assert (ex["dtype"], ex["base_dtype"], ex["instruct_dtype"]) == ("float32", "float32", "float32")
    params = tmp_path / "params.yaml"
    params.write_text("residual:\n  shard_size: 20KB\n")
    from freshllm.residual.__main__ import main

    main(["--params", str(params), "apply", "--residual", str(tmp_path / "R"), "--target", str(t16),
          "--out", str(tmp_path / "new"), "--metrics", str(tmp_path / "m.json")])
    m = json.loads((tmp_path / "m.json").read_text())
    assert (m["residual_dtype"], m["target_dtype"], m["output_dtype"]) == ("float32", "bfloat16", "bfloat16")
    assert {t.dtype for t in state(tmp_path / "new").values()} == {torch.bfloat16}
    extract(b, i, tmp_path / "R16", cfg(dtype="bfloat16"))
    rep = apply(tmp_path / "R16", b, tmp_path / "new32", cfg())
    assert (rep["residual_dtype"], rep["target_dtype"], rep["output_dtype"]) == ("bfloat16", "float32", "float32")
