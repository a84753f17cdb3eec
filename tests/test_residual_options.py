"""residual-apply options for the knowledge-gap grid: ``residual.modules`` (which tensors get
the residual) and ``residual.layer_scale: cpt_change`` (less residual where cpt changed a
layer most)."""

import json
import math
import re

import pytest
import torch

from freshllm.io.hf import save_model_dir
from freshllm.io.st_stream import ShardedReader
from freshllm.residual import ResidualError, apply, extract, weights_hash
from test_residual import _cli, _pair, cfg, chunking, state  # noqa: F401  (chunking: a fixture)

LAYER0, LAYER1 = "model.layers.0", "model.layers.1"
EMB, NORM = "model.embed_tokens.weight", "model.norm.weight"


def _is(name, *parts):
    return any(p in name for p in parts)


def _cpt_target(base_dir, out, k):
    """The base with every tensor of group g scaled by (1 + k[g]): ||t_g - b_g|| / ||b_g|| = k[g]
    (up to float32 rounding) -- a hand-built cpt model whose per-layer change is known."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    with torch.no_grad():
        for name, p in m.named_parameters():
            group = next(g for g in k if name.startswith(g))
            p.mul_(1 + k[group])
    save_model_dir(m, AutoTokenizer.from_pretrained(base_dir), out, max_shard_size="30KB")
    return out


@pytest.fixture
def triple(tmp_path, tokenizers_pair):
    """(base, residual, cpt target with known per-group change): layer 1 changed 4x more than
    layer 0, the embeddings 2x more, the final norm less than any layer."""
    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="o")
    extract(b, i, tmp_path / "R", cfg())
    k = {LAYER0 + ".": 0.01, LAYER1 + ".": 0.04, EMB: 0.02, NORM: 0.001}
    return b, tmp_path / "R", _cpt_target(b, tmp_path / "cpt", k)


# ------------------------------------------------------------------------------ modules

def test_modules_mlp_adds_the_residual_to_mlp_tensors_only(tmp_path, triple, chunking):
    b, R, t_dir = triple
    rep = apply(R, t_dir, tmp_path / "new", cfg(alpha=0.7, modules=["mlp"]))
    new, t, r = state(tmp_path / "new"), state(t_dir), state(R)
    assert set(new) == set(t)
    mlp = [n for n in t if ".mlp." in n]
    assert len(mlp) == 6  # gate/up/down x 2 layers
    for n in t:
        if n in mlp:
            torch.testing.assert_close(new[n], t[n] + 0.7 * r[n], atol=1e-6, rtol=0)
            assert not torch.equal(new[n], t[n])
        else:  # attention, norms, embeddings: the target's, bit for bit
            assert torch.equal(new[n], t[n]), n
    assert rep["modules"] == {"entries": ["mlp"], "tensors_with_residual": 6,
                              "passed_through": len(t) - 6}


def test_modules_groups_and_regexes_select_by_tensor_name(tmp_path, triple):
    b, R, t_dir = triple
    apply(R, t_dir, tmp_path / "new", cfg(modules=["embeddings", "norms", r"layers\.1\.self_attn\.q_proj"]))
    new, t, r = state(tmp_path / "new"), state(t_dir), state(R)
    got = {n for n in t if not torch.equal(new[n], t[n])}
    want = {EMB, NORM, "model.layers.1.self_attn.q_proj.weight"} | {
        f"model.layers.{i}.{ln}.weight" for i in (0, 1) for ln in ("input_layernorm", "post_attention_layernorm")}
    assert got == want
    for n in want:
        torch.testing.assert_close(new[n], t[n] + r[n], atol=1e-6, rtol=0)


def test_modules_attention_on_a_qwen2_shaped_name_set():
    from freshllm.residual.modules import select

    names = ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
             "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.bias",
             "model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.down_proj.weight",
             "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight"]
    assert select(["attention"], names) == ({n for n in names if ".self_attn." in n}, [])
    assert select(["lm_head", "embeddings"], names) == ({"lm_head.weight", "model.embed_tokens.weight"}, [])
    assert select(["norms"], names)[0] == {n for n in names if n.endswith("norm.weight")}
    assert select(["all"], names) == (set(names), [])
    assert select(["mlp", "xyz"], names) == ({"model.layers.0.mlp.down_proj.weight"}, ["xyz"])


def test_modules_that_match_no_tensor_are_refused(tmp_path, triple):
    b, R, t_dir = triple
    with pytest.raises(ResidualError, match=r"residual\.modules: 'lm_head' matches no tensor of the target .*"
                       r"\(tied embeddings: the output layer is model\.embed_tokens\.weight\)"):
        apply(R, t_dir, tmp_path / "new", cfg(modules=["mlp", "lm_head"]))
    with pytest.raises(ResidualError, match=r"residual\.modules: 'mpl' matches no tensor of the target"):
        apply(R, t_dir, tmp_path / "new", cfg(modules=["mpl"]))
    assert not (tmp_path / "new").exists()


# -------------------------------------------------------------------- bit-identical defaults

@pytest.mark.parametrize("method", ["plain", "ties", "dare"])
def test_defaults_modules_all_and_strength_0_are_bit_identical(tmp_path, tokenizers_pair, method):
    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="bi")
    t, _ = _pair(tmp_path, tokenizers_pair, dtype=torch.bfloat16, seed=4, name="bt")  # bf16 target: casts
    extract(b, i, tmp_path / "R", cfg())
    extra = {"plain": {}, "ties": {"density": 0.5}, "dare": {"density": 0.5, "seed": 3}}[method]
    ref = apply(tmp_path / "R", t, tmp_path / "ref", cfg(method=method, alpha=0.6, **extra), base_dir=b)
    h = weights_hash(tmp_path / "ref")
    variants = {"all": dict(modules=["all"]),
                "every group": dict(modules=["attention", "mlp", "embeddings", "norms"]),  # tied: no lm_head
                "strength 0": dict(layer_scale="cpt_change", layer_scale_strength=0.0)}
    for k, kw in variants.items():
        rep = apply(tmp_path / "R", t, tmp_path / k, cfg(method=method, alpha=0.6, **extra, **kw), base_dir=b)
        assert weights_hash(tmp_path / k) == h, k
        assert rep["target_vs_base_cosine"] == ref["target_vs_base_cosine"]
    assert "modules" not in ref and "layer_scale" not in ref
    assert set(rep["layer_scale"]["per_group"]) == {LAYER0, LAYER1, EMB, NORM}
    assert {v["scale"] for v in rep["layer_scale"]["per_group"].values()} == {0.6}


# ----------------------------------------------------------------------- layer_scale

@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_cpt_change_scales_match_the_formula_by_hand(tmp_path, triple, chunking, strength):
    b, R, t_dir = triple
    alpha = 0.8
    rep = apply(R, t_dir, tmp_path / "new", cfg(alpha=alpha, layer_scale="cpt_change",
                                                 layer_scale_strength=strength), base_dir=b)
    ls = rep["layer_scale"]
    c = {g: v["c"] for g, v in ls["per_group"].items()}
    assert set(c) == {LAYER0, LAYER1, EMB, NORM}
    for g, want in {LAYER0: 0.01, LAYER1: 0.04, EMB: 0.02, NORM: 0.001}.items():
        assert c[g] == pytest.approx(want, rel=1e-4), g
    # by hand: c_ref = c(layer 0) = 0.01 (the least-changed layer; the final norm is not a layer)
    want = {LAYER0: alpha, LAYER1: alpha * 0.25 ** strength, EMB: alpha * 0.5 ** strength,
            NORM: alpha}  # the norm changed less than c_ref: capped at alpha
    assert ls["c_ref"] == pytest.approx(0.01, rel=1e-5)
    for g, s in want.items():
        assert ls["per_group"][g]["scale"] == pytest.approx(s, rel=1e-4), g
    assert ls["scale_mean_layers"] == pytest.approx((want[LAYER0] + want[LAYER1]) / 2, rel=1e-4)
    new, t, r = state(tmp_path / "new"), state(t_dir), state(R)
    for n in t:
        g = next(g for g in want if n.startswith(g + ".") or n == g)
        torch.testing.assert_close(new[n], t[n] + ls["per_group"][g]["scale"] * r[n], atol=1e-6, rtol=0)


def test_cpt_change_scales_exactly_the_formula():
    from freshllm.residual.layer_scale import scales

    s, ref = scales({LAYER0: 0.02, LAYER1: 0.08, "model.layers.2": 0.0, EMB: math.inf, NORM: 0.01}, 2.0, 1.0)
    assert ref == 0.02
    assert s == {LAYER0: 2.0, LAYER1: 0.5, "model.layers.2": 2.0, EMB: 0.0, NORM: 2.0}
    assert scales({LAYER0: 0.0, EMB: 0.0}, 0.5, 3.0) == ({LAYER0: 0.5, EMB: 0.5}, None)  # nothing changed
    assert scales({LAYER0: 0.02, LAYER1: 0.08}, 0.3, 0.0)[0] == {LAYER0: 0.3, LAYER1: 0.3}


@pytest.mark.parametrize("method", ["ties", "dare"])
def test_cpt_change_scales_every_method(tmp_path, triple, method):
    """ties / dare: the trimmed / dropped residual, scaled per layer (ties trims by magnitude
    and dare's mask depends on seed and name only, so the kept entries are the same)."""
    b, R, t_dir = triple
    kw = dict(method=method, density=0.5, **({"seed": 2} if method == "dare" else {}))  # seed: dare only
    apply(R, t_dir, tmp_path / "flat", cfg(**kw))
    rep = apply(R, t_dir, tmp_path / "scaled", cfg(layer_scale="cpt_change", **kw), base_dir=b)
    flat, scaled, t = state(tmp_path / "flat"), state(tmp_path / "scaled"), state(t_dir)
    n = "model.layers.1.mlp.up_proj.weight"
    assert rep["layer_scale"]["per_group"][LAYER1]["scale"] == pytest.approx(0.25, rel=1e-4)
    torch.testing.assert_close(scaled[n] - t[n], 0.25 * (flat[n] - t[n]), atol=1e-6, rtol=1e-4)
    n0 = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(scaled[n0], flat[n0])


def test_cpt_change_with_modules_measures_the_selected_tensors(tmp_path, triple):
    b, R, t_dir = triple
    rep = apply(R, t_dir, tmp_path / "new", cfg(modules=["mlp"], layer_scale="cpt_change"), base_dir=b)
    assert set(rep["layer_scale"]["per_group"]) == {LAYER0, LAYER1}
    new, t, r = state(tmp_path / "new"), state(t_dir), state(R)
    n = "model.layers.1.mlp.down_proj.weight"
    torch.testing.assert_close(new[n], t[n] + 0.25 * r[n], atol=1e-6, rtol=1e-4)
    assert torch.equal(new["model.layers.1.self_attn.q_proj.weight"], t["model.layers.1.self_attn.q_proj.weight"])


def test_cpt_change_pre_pass_streams_row_chunks(tmp_path, triple, monkeypatch):
    """The pre-pass reads cache-sized row chunks of target and base, never whole matrices:
    its memory does not grow with the model."""
    from freshllm.residual.layer_scale import relative_changes

    b, R, t_dir = triple
    monkeypatch.setattr("freshllm.residual.chunks.CHUNK_BYTES", 512)
    monkeypatch.setattr("freshllm.residual.chunks.READ_AHEAD", True)
    sizes = []
    real = ShardedReader.read

    def spy(self, name, start=None, stop=None, out=None):
        sizes.append(self.chunk_nbytes(name, start, stop))
        return real(self, name, start, stop, out)

    monkeypatch.setattr(ShardedReader, "read", spy)
    target, base = ShardedReader(t_dir), ShardedReader(b)
    biggest = max(s.nbytes for s in target.specs.values())
    c = relative_changes(target, base, list(target.specs), t_dir, b)
    assert c[LAYER1] == pytest.approx(0.04, rel=1e-5)
    assert len(sizes) > 2 * len(target.specs) and max(sizes) <= 512 < biggest


def test_cpt_change_needs_the_residuals_base(tmp_path, triple, tokenizers_pair, capsys):
    b, R, t_dir = triple
    with pytest.raises(ResidualError, match=r"^residual\.layer_scale: cpt_change needs --base \(the residual's base"):
        apply(R, t_dir, tmp_path / "new", cfg(layer_scale="cpt_change"))
    params = tmp_path / "params.yaml"
    params.write_text("residual:\n  shard_size: 20KB\n  layer_scale: cpt_change\n")
    code, err = _cli(capsys, "--params", params, "apply", "--residual", R, "--target", t_dir,
                     "--out", tmp_path / "new")
    assert code == 1 and re.fullmatch(r"residual: residual\.layer_scale: cpt_change needs --base [^\n]*\n", err)
    other, _ = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, seed=6, name="x")
    with pytest.raises(ResidualError, match=r"cpt_change measures cpt's change against the residual's base, "
                       rf"and --base {re.escape(str(other))} is not it"):
        apply(R, t_dir, tmp_path / "new", cfg(layer_scale="cpt_change", base_mismatch="warn"), base_dir=other)
    assert not (tmp_path / "new").exists()


def test_cpt_change_pre_pass_names_a_nan_in_the_target(tmp_path, triple, chunking):
    from safetensors.torch import load_file, save_file

    b, R, t_dir = triple
    reader = ShardedReader(t_dir)
    name = "model.layers.1.mlp.up_proj.weight"
    tensors = load_file(reader.file_of[name])
    tensors[name].view(-1)[-1] = float("nan")
    save_file(tensors, reader.file_of[name], metadata={"format": "pt"})
    with pytest.raises(ResidualError, match=rf"{re.escape(str(t_dir))}: tensor {re.escape(name)} contains NaN"):
        apply(R, t_dir, tmp_path / "new", cfg(layer_scale="cpt_change"), base_dir=b)
    assert not (tmp_path / "new").exists()


def test_cpt_change_metrics_json_records_the_scales(tmp_path, triple):
    from freshllm.residual.__main__ import main

    b, R, t_dir = triple
    params = tmp_path / "params.yaml"
    params.write_text("residual:\n  shard_size: 20KB\n  alpha: 0.5\n  modules: [mlp, attention]\n"
                      "  layer_scale: cpt_change\n  layer_scale_strength: 1.0\n")
    main(["--params", str(params), "apply", "--residual", str(R), "--target", str(t_dir), "--base", str(b),
          "--out", str(tmp_path / "new"), "--metrics", str(tmp_path / "m.json")])
    m = json.loads((tmp_path / "m.json").read_text())
    ls = m["layer_scale"]
    assert ls["kind"] == "cpt_change" and ls["strength"] == 1.0 and ls["formula"]
    assert ls["per_group"][LAYER1]["scale"] == pytest.approx(0.125, rel=1e-4)
    assert ls["per_group"][LAYER0]["scale"] == pytest.approx(0.5, rel=1e-4)
    assert m["config"]["modules"] == ["mlp", "attention"] and m["modules"]["tensors_with_residual"] == 14


def test_cpt_change_compares_the_shared_vocabulary_rows(tmp_path, tokenizers_pair):
    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="vs")
    extract(b, i, tmp_path / "R", cfg())
    from transformers import AutoModelForCausalLM

    target = AutoModelForCausalLM.from_pretrained(b)
    with torch.no_grad():
        target.model.embed_tokens.weight.mul_(1.03)
    target.resize_token_embeddings(target.config.vocab_size + 8)  # 8 new rows: not compared
    save_model_dir(target, tokenizers_pair[0], tmp_path / "big")
    rep = apply(tmp_path / "R", tmp_path / "big", tmp_path / "o",
                cfg(vocab="shared_rows", layer_scale="cpt_change"), base_dir=b)
    assert rep["layer_scale"]["per_group"][EMB]["c"] == pytest.approx(0.03, rel=1e-5)
    assert rep["layer_scale"]["per_group"][LAYER0]["c"] == 0.0  # untouched layers: c = 0, scale alpha
    assert rep["layer_scale"]["c_ref"] is None and rep["layer_scale"]["per_group"][EMB]["scale"] == 1.0


# --------------------------------------------------------------------------- config

def test_bad_option_values_are_all_reported_by_name():
    from freshllm.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        cfg(modules=["mlp", "(oops", ""], layer_scale="per_layer", layer_scale_strength=-1.0, alpha=1.0)
    problems = exc.value.problems
    assert [p.split(":")[0] for p in problems] == ["residual.modules[1]", "residual.modules[2]",
                                                   "residual.layer_scale", "residual.layer_scale_strength"]
    assert "'(oops' is neither a group (all, attention, mlp, embeddings, norms, lm_head) nor a valid regex" in problems[0]
    assert "must be none or cpt_change, got 'per_layer'" in problems[2]
    with pytest.raises(ConfigError, match=r"residual\.modules: expected a list, got str"):
        cfg(modules="mlp")
    with pytest.raises(ConfigError, match=r"residual\.modules: must list at least one group"):
        cfg(modules=[])
    with pytest.raises(ConfigError, match=r"residual\.modules: 'all' already selects every tensor"):
        cfg(modules=["all", "mlp"])
    with pytest.raises(ConfigError, match=r"residual\.layer_scale_strength: 0\.5 has no effect with layer_scale: none"):
        cfg(layer_scale_strength=0.5)
    with pytest.raises(ConfigError, match=r"residual\.layer_scal: unknown key"):
        cfg(layer_scal="cpt_change")
    c = cfg(modules=["mlp", r"self_attn\.(q|k)_proj"], layer_scale="cpt_change", layer_scale_strength=0)
    assert c.layer_scale_strength == 0.0 and c.modules == ["mlp", r"self_attn\.(q|k)_proj"]


def test_params_yaml_residual_section_has_the_defaults():
    from freshllm.config import load_section
    from freshllm.residual import ResidualConfig
    from conftest import ROOT

    c = load_section(ResidualConfig, "residual", ROOT / "params.yaml")
    assert (c.modules, c.layer_scale, c.layer_scale_strength) == (["all"], "none", 1.0)
    assert c == ResidualConfig(alpha=c.alpha, dtype=c.dtype, shard_size=c.shard_size,
                               base_mismatch=c.base_mismatch)
