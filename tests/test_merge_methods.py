"""Merges in the knowledge x instruction plane: ``B + beta * D + alpha * R`` (D = T - B) and the
two-vector methods (ties_dr, dare_dr, dare_ties_dr, magmax, breadcrumbs_dr), each against a
direct float32 computation on real safetensors model dirs; plain's bit-identity at
beta = alpha = 1, streaming, dtypes, the --base requirement, the config errors and the drift
report."""

import hashlib
import json
import math

import pytest
import torch

from freshllm.io.hf import save_model_dir
from freshllm.residual import ResidualError, apply, extract, weights_hash
from test_residual import _cli, _pair, cfg, chunking, state  # noqa: F401  (chunking: a fixture)

UP = "model.layers.0.mlp.up_proj.weight"


def _cpt(base_dir, out, dtype=torch.float32, scale=0.02, seed=7):
    """A stand-in for cpt: the base plus noise comparable to the residual's (so D and R
    conflict in sign about half the time), saved in ``dtype``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    save_model_dir(m.to(dtype), AutoTokenizer.from_pretrained(base_dir), out, max_shard_size="30KB")
    return out


@pytest.fixture
def triple(tmp_path, tokenizers_pair):
    """(B, R, T) float32 dirs: R = instruct - B, T = B + noise."""
    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="o")
    extract(b, i, tmp_path / "R", cfg())
    return b, tmp_path / "R", _cpt(b, tmp_path / "T")


# ------------------------------------------------------------- direct references (float32)

def _topk(x, density):  # mergekit 0.1.5 sparsify.magnitude, without rescale
    if density >= 1:
        return x
    k = max(1, int(density * x.numel()))
    mask = torch.zeros(x.numel())
    mask[torch.sort(x.abs().reshape(-1), descending=True, stable=True).indices[:k]] = 1  # ties: index order
    return x * mask.view(x.shape)


def _outliers(x, density, gamma):  # mergekit 0.1.5 sparsify.magnitude_outliers
    if density >= 1:
        return x
    n = x.numel()
    keep, top = int(density * n), int(gamma * n)
    bot = max(0, n - keep - top)
    mask = torch.zeros(n)
    mask[torch.sort(x.abs().reshape(-1), stable=True).indices[bot:bot + keep]] = 1
    return x * mask.view(x.shape)


def _dare(x, density, seed, name, which):
    s = int.from_bytes(hashlib.sha256(f"{seed}:{name}:{which}".encode()).digest()[:8], "little") >> 1
    keep = torch.rand(x.shape, generator=torch.Generator().manual_seed(s)) < density
    return torch.where(keep, x / density, torch.zeros_like(x)) if density < 1 else x


def _ties(d, r):  # mergekit get_mask(method="sum"), normalize false
    stack = torch.stack([d, r])
    elected = (stack.sum(0) >= 0).float() * 2 - 1
    return (stack * (stack.sign() == elected)).sum(0)


def reference(method, b, t, r, name, alpha=1.0, beta=1.0, density=1.0, seed=0, gamma=0.01):
    d = t.float() - b.float()
    r = r.float()
    if method == "plain":
        return b + beta * d + alpha * r
    if method == "ties_dr":
        return b + _ties(beta * _topk(d, density), alpha * _topk(r, density))
    if method in ("dare_dr", "dare_ties_dr"):
        dd, rr = beta * _dare(d, density, seed, name, "D"), alpha * _dare(r, density, seed, name, "R")
        return b + (dd + rr if method == "dare_dr" else _ties(dd, rr))
    if method == "magmax":
        dd, rr = beta * d, alpha * r
        return b + torch.where(rr.abs() > dd.abs(), rr, dd)
    if method == "breadcrumbs_dr":
        return b + beta * _outliers(d, density, gamma) + alpha * _outliers(r, density, gamma)
    raise AssertionError(method)


SETTINGS = {
    "plain beta": ("plain", dict(alpha=1.25, beta=0.5)),
    "ties_dr": ("ties_dr", dict(alpha=1.0, beta=0.75, density=0.3)),
    "ties_dr full": ("ties_dr", dict(alpha=1.0, beta=1.0, density=1.0)),
    "dare_dr": ("dare_dr", dict(alpha=1.0, beta=0.5, density=0.4, seed=3)),
    "dare_ties_dr": ("dare_ties_dr", dict(alpha=1.25, beta=1.0, density=0.6, seed=1)),
    "magmax": ("magmax", dict(alpha=1.0, beta=0.75)),
    "breadcrumbs_dr": ("breadcrumbs_dr", dict(alpha=1.0, beta=1.0, density=0.5, gamma=0.05)),
}


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_every_method_matches_a_direct_float32_computation(tmp_path, triple, chunking, setting):
    method, kw = SETTINGS[setting]
    b_dir, R, t_dir = triple
    rep = apply(R, t_dir, tmp_path / "new", cfg(method=method, **kw), base_dir=b_dir)
    new, b, t, r = state(tmp_path / "new"), state(b_dir), state(t_dir), state(R)
    assert set(new) == set(t)
    for n in t:
        want = reference(method, b[n], t[n], r[n], n, **kw)
        torch.testing.assert_close(new[n], want, atol=2e-7, rtol=2e-6, msg=lambda m: f"{n}: {m}")
        assert new[n].dtype == torch.float32
    assert (rep["method"], rep["alpha"], rep["beta"]) == (method, kw["alpha"], kw["beta"])
    d, rr = t[UP] - b[UP], r[UP]
    moved = new[UP] - b[UP]
    if method == "ties_dr" and kw["density"] < 1:  # trimmed: at most 2 * density of the entries move
        assert 0.25 < (moved != 0).float().mean() < 2 * kw["density"]
    if method == "ties_dr" and kw["density"] == 1:  # no trim: where D and R agree in sign, their sum
        agree = d.sign() == rr.sign()
        torch.testing.assert_close(moved[agree], (d + rr)[agree], atol=1e-6, rtol=1e-5)
        assert 0.3 < agree.float().mean() < 0.7  # the test really has conflicts
    if method == "magmax":
        assert torch.all(moved.abs() >= torch.minimum(0.75 * d.abs(), rr.abs()) - 1e-6)


@pytest.mark.parametrize("method,kw", [("plain", dict(beta=0.5, alpha=1.25)), ("magmax", dict(beta=0.75))])
def test_chunk_methods_stream_the_same_bytes_as_whole_tensors(tmp_path, triple, monkeypatch, method, kw):
    b_dir, R, t_dir = triple
    hashes = {}
    for label, size in (("whole", 1 << 30), ("tiny", 512)):
        monkeypatch.setattr("freshllm.residual.chunks.CHUNK_BYTES", size)
        apply(R, t_dir, tmp_path / label, cfg(method=method, **kw), base_dir=b_dir)
        hashes[label] = weights_hash(tmp_path / label)
    assert hashes["whole"] == hashes["tiny"]


@pytest.mark.parametrize("with_base", [False, True])
def test_plain_at_beta_1_alpha_1_is_bit_identical_to_t_plus_r(tmp_path, triple, chunking, with_base):
    b_dir, R, t_dir = triple
    apply(R, t_dir, tmp_path / "new", cfg(), base_dir=b_dir if with_base else None)
    new, t, r = state(tmp_path / "new"), state(t_dir), state(R)
    for n in t:
        assert torch.equal(new[n], t[n] + r[n]), n
    apply(R, t_dir, tmp_path / "beta1", cfg(beta=1.0, alpha=1.0))  # the old code path: no base read
    assert weights_hash(tmp_path / "beta1") == weights_hash(tmp_path / "new")


@pytest.mark.parametrize("method,kw", [("plain", dict(beta=0.5)), ("ties_dr", dict(density=0.5)),
                                       ("magmax", {}), ("dare_dr", dict(density=0.5)),
                                       ("breadcrumbs_dr", dict(density=0.5, gamma=0.1))])
def test_bf16_target_stays_bf16(tmp_path, tokenizers_pair, method, kw):
    b_dir, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="h")
    extract(b_dir, i, tmp_path / "R", cfg())
    t_dir = _cpt(b_dir, tmp_path / "T16", dtype=torch.bfloat16)
    rep = apply(tmp_path / "R", t_dir, tmp_path / "new", cfg(method=method, **kw), base_dir=b_dir)
    assert (rep["target_dtype"], rep["output_dtype"]) == ("bfloat16", "bfloat16")
    new, b, t, r = state(tmp_path / "new"), state(b_dir), state(t_dir), state(tmp_path / "R")
    for n in t:
        assert new[n].dtype == torch.bfloat16
        want = reference(method, b[n], t[n], r[n], n, **kw).to(torch.bfloat16)
        # one bf16 rounding of the float32 result; float32 summation order may flip a last bit
        torch.testing.assert_close(new[n].float(), want.float(), atol=0, rtol=2**-7)


def test_single_vector_ties_and_dare_are_unchanged(tmp_path, triple):
    """The existing ``ties`` / ``dare`` (R alone onto the target) write what they always did."""
    b_dir, R, t_dir = triple
    apply(R, t_dir, tmp_path / "ties", cfg(method="ties", density=0.25, alpha=0.8))
    apply(R, t_dir, tmp_path / "dare", cfg(method="dare", density=0.5, seed=1))
    t, r = state(t_dir), state(R)
    ties, dare = state(tmp_path / "ties"), state(tmp_path / "dare")
    for n in t:
        x = r[n]
        k = max(1, int(round(0.25 * x.numel())))
        thresh = x.abs().flatten().kthvalue(x.numel() - k + 1).values
        want = t[n].clone()
        want.add_(torch.where(x.abs() >= thresh, x, torch.zeros_like(x)), alpha=0.8)
        assert torch.equal(ties[n], want), n
        s = int.from_bytes(hashlib.sha256(f"1:{n}".encode()).digest()[:8], "little") >> 1
        keep = torch.rand(x.shape, generator=torch.Generator().manual_seed(s)) < 0.5
        want = t[n].clone()
        want.add_(torch.where(keep, x / 0.5, torch.zeros_like(x)), alpha=1.0)
        assert torch.equal(dare[n], want), n


# ------------------------------------------------------------------- errors and config

def test_a_setting_that_needs_the_base_without_it_is_refused_in_one_line(tmp_path, triple, capsys):
    b_dir, R, t_dir = triple
    with pytest.raises(ResidualError, match=r"^residual\.beta: 0\.5 needs --base \(the residual's base model\)"):
        apply(R, t_dir, tmp_path / "new", cfg(beta=0.5))
    for method in ("ties_dr", "dare_dr", "dare_ties_dr", "magmax", "breadcrumbs_dr"):
        with pytest.raises(ResidualError, match=rf"^residual\.method: {method} needs --base"):
            apply(R, t_dir, tmp_path / "new", cfg(method=method))
    assert not (tmp_path / "new").exists()
    params = tmp_path / "params.yaml"
    params.write_text("residual:\n  method: magmax\n  beta: 0.5\n")
    code, err = _cli(capsys, "--params", params, "apply", "--residual", R, "--target", t_dir,
                     "--out", tmp_path / "new")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("residual: residual.method: magmax needs --base")


def test_a_base_that_is_not_the_residuals_is_refused_under_warn(tmp_path, triple, tokenizers_pair):
    b_dir, R, t_dir = triple
    other, _ = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, seed=6, name="x")
    with pytest.raises(ResidualError, match=r"residual\.method: ties_dr \(beta 1\.0\) merges onto the residual's "
                       r"base, and --base .* is not it"):
        apply(R, t_dir, tmp_path / "new", cfg(method="ties_dr", base_mismatch="warn"), base_dir=other)


def test_invalid_and_ineffective_keys_are_all_reported_at_once():
    from freshllm.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        cfg(method="ties", beta=0.5, seed=2, gamma=0.2, density=0.0, alpha=float("nan"))
    keys = [p.split(":")[0] for p in exc.value.problems]
    assert keys == ["residual.alpha", "residual.density", "residual.beta", "residual.seed", "residual.gamma"]
    assert "beta: 0.5 has no effect with method: ties (methods that read it: plain, ties_dr" in exc.value.problems[2]
    with pytest.raises(ConfigError) as exc:
        cfg(method="magmax", density=0.5, gamma=1.5)
    assert [p.split(":")[0] for p in exc.value.problems] == ["residual.gamma", "residual.density"]  # gamma once
    with pytest.raises(ConfigError, match=r"residual\.gamma: 0\.05 has no effect with method: breadcrumbs_dr "
                       r"at density 1"):
        cfg(method="breadcrumbs_dr", gamma=0.05)
    c = cfg(method="dare_ties_dr", beta=0.5, density=0.3, seed=4)  # every key it reads: fine
    assert (c.beta, c.density, c.seed) == (0.5, 0.3, 4)


# ------------------------------------------------------------------------- drift report

def test_drift_per_layer_is_the_relative_norm_of_cpts_change(tmp_path, triple, chunking):
    b_dir, R, t_dir = triple
    rep = apply(R, t_dir, tmp_path / "new", cfg(), base_dir=b_dir)
    b, t = state(b_dir), state(t_dir)
    from freshllm.residual.layer_scale import layer_of

    groups: dict = {}
    for n in t:
        acc = groups.setdefault(layer_of(n), [0.0, 0.0])
        acc[0] += float((t[n].double() - b[n].double()).square().sum())
        acc[1] += float(b[n].double().square().sum())
    want = {g: math.sqrt(dd) / math.sqrt(bb) for g, (dd, bb) in groups.items()}
    drift = rep["drift"]
    assert set(drift) == {"mean", "max", "per_layer"}
    assert set(drift["per_layer"]) == set(want) and "model.layers.1" in want
    for g in want:
        assert drift["per_layer"][g] == pytest.approx(want[g], rel=1e-5)
    assert drift["max"] == max(drift["per_layer"].values())
    assert drift["mean"] == pytest.approx(sum(want.values()) / len(want), rel=1e-5)
    json.dumps(rep)  # metrics JSON
    assert "drift" not in apply(R, t_dir, tmp_path / "nobase", cfg())
