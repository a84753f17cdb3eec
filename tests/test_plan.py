"""``python -m freshllm.plan``: the arithmetic on a hand-computed model, the activation formula
against what autograd really saves, the accelerate estimate-memory cross-check, stage names
against ``dvc stage list``, the paper profiles offline, and errors reported like other stages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, dvc_stage_names, profile_file
from freshllm.plan import formulas as F
from freshllm.plan.dvcfiles import load_cache, load_stages
from freshllm.plan.hardware import GPUS, Launch
from freshllm.plan.stages import make_plan

PAPER = [profile_file("paper-llama3"), profile_file("paper-qwen2")]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}

# The hand-computed case: a 2-layer LLaMA-style decoder, vocab 1000, d 64, MLP 160, 4 query
# heads and 2 KV heads of 16, untied embeddings.
SMALL = F.Shape(layers=2, hidden=64, intermediate=160, heads=4, kv_heads=2, head_dim=16, vocab=1000,
                tied=False)


def plan_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "freshllm.plan", *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=120)


def write_profile(tmp_path: Path, base: Path, edit) -> Path:
    params = yaml.safe_load(base.read_text())
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


# --- the arithmetic, by hand -------------------------------------------------------------------

def test_parameter_count_by_hand():
    # q 64x64 = 4096, k and v 64x32 = 2048 each, o 4096 -> 12,288; gate/up/down 3 x 64 x 160 = 30,720;
    # two RMSNorms 128 -> a layer is 43,136. Embedding 64,000 + lm_head 64,000 + final norm 64.
    assert SMALL.layer_params == 43_136
    assert SMALL.layer_matmul_params == 43_008
    assert SMALL.params == 2 * 43_136 + 64_000 + 64_000 + 64 == 214_336
    assert SMALL.embedding_params == 128_000
    assert SMALL.non_embedding_params == 86_336
    assert SMALL.compute_params == 86_336 + 64_000 == 150_336   # lm_head matmul counts, the lookup not
    assert SMALL.root_params == 128_064
    tied = F.Shape(2, 64, 160, 4, 2, 16, 1000, tied=True)
    assert tied.params == 214_336 - 64_000 and tied.compute_params == tied.params


def test_tokens_and_flops_by_hand():
    from freshllm.train import TrainConfig

    # budget 1000 tokens, rows of 32 -> ceil(1000/32) = 32 rows; 2 rows x 3 micro-batches x 2
    # processes = 12 rows per step -> ceil(32/12) = 3 steps -> D = 3 x 12 x 32 = 1152 tokens
    run = TrainConfig(batch_size=2, grad_accum=3).resolve(32, 2)
    assert run.steps == 3
    tokens = run.steps * run.sequences_per_step(2) * 32
    assert tokens == 1152
    assert F.train_flops(SMALL.params, tokens) == 6 * 214_336 * 1152 == 1_481_490_432
    assert F.attention_train_flops_per_token(SMALL, 32) == 12 * 2 * 64 * 32 == 49_152
    assert F.forward_flops(SMALL.params, 10) == 4_286_720


def test_activation_and_logit_bytes_by_hand():
    s, b = 32, 2  # 64 tokens per micro-batch
    auto, bf16, fp32 = F.REGIMES["autocast"], F.REGIMES["bf16"], F.REGIMES["fp32"]
    # autocast (fp32 masters): norms 2 x 8 B, q/k/v input copies 6 B, gate/up 4 B -> 26 x 64 = 1664;
    # Q, K, V, out (K, V repeated to 64 wide when packed), gate, up, silu, product in bf16:
    # 2 x (64 + 64 + 64 + 64 + 4 x 160) = 1792 -> 3456 B per token -> 221,184 per layer
    assert F.activation_bytes_per_layer(SMALL, s, b, auto) == 64 * 3456 == 221_184
    # without packing K and V are only 32 wide: 2 x 2 x 32 less per token
    assert F.activation_bytes_per_layer(SMALL, s, b, auto, packed=False) == 64 * (3456 - 128)
    # head: final norm 8 B + lm_head input 2 B per element -> 64 x 64 x 10 = 40,960; mask 2 x 32 x 32 x 2
    assert F.head_activation_bytes(SMALL, s, b, auto) == 40_960 + 4_096
    assert F.activation_bytes(SMALL, s, b, False, auto) == 2 * 221_184 + 45_056 == 487_424
    # checkpointing: each layer's fp32 input 64 x 64 x 4 (x 2 layers) + one layer + head
    assert F.activation_bytes(SMALL, s, b, True, auto) == 32_768 + 221_184 + 45_056 == 299_008
    # bf16 parameters (FSDP): norms 2 x 6, one input copy each (2 + 2) -> 16 x 64 = 1024 + 1792
    assert F.activation_bytes_per_layer(SMALL, s, b, bf16) == 64 * 2816 == 180_224
    assert F.activation_bytes(SMALL, s, b, True, bf16) == 16_384 + 180_224 + 32_768 + 4_096
    # fp32: norms 2 x 8, one 4 B input copy each -> 24 x 64 = 1536, and 4 x 896 = 3584
    assert F.activation_bytes_per_layer(SMALL, s, b, fp32) == 64 * 5120
    assert F.logits_bytes(SMALL, s, b) == 2 * 32 * 1000 * 4 == 256_000
    assert F.loss_peak_bytes(SMALL, s, b) == 64_000 * 14 == 896_000       # 3.5 x the fp32 logits
    assert F.loss_peak_bytes(SMALL, s, b, logits_dtype_bytes=4) == 64_000 * 16


def test_memory_per_process_by_hand_ddp_vs_fsdp():
    n = 214_336
    ddp = F.train_memory(SMALL, 32, 2, F.Parallel("ddp", 2, 1), "bf16", checkpointing=False, overhead=0)
    assert ddp["weights"] == ddp["gradients"] == 4 * n == 857_344        # fp32 masters and grads
    assert ddp["optimizer"] == 8 * n == 1_714_688                         # AdamW m and v, fp32
    assert ddp["ddp_buckets"] == 857_344                                  # DDP's copy of the grads
    assert ddp["compute_copies"] == 2 * (64_000 + 2 * 43_008) == 300_032  # bf16 weight casts
    assert ddp["activations"] == 487_424 and ddp["loss"] == 896_000
    assert ddp["peak"] == 3 * 857_344 + 1_714_688 + 300_032 + 487_424 + 896_000 == 5_970_176
    ck = F.train_memory(SMALL, 32, 2, F.Parallel("ddp", 2, 1), "bf16", checkpointing=True, overhead=0)
    assert ck["activations"] == 299_008
    assert ck["compute_copies"] == 2 * (64_000 + 43_008) == 214_016      # lm_head + the recomputed layer
    # FSDP full shard over 2 processes: the fp32 state halves, no buckets; gathered in bf16: the
    # root (embedding + lm_head + final norm = 128,064) and two layers, grads of the root and one layer
    fsdp = F.train_memory(SMALL, 32, 2, F.Parallel("fsdp", 2, 2), "bf16", checkpointing=True, overhead=0)
    assert fsdp["weights"] == fsdp["gradients"] == 428_672 and fsdp["optimizer"] == 857_344
    assert fsdp["ddp_buckets"] == 0
    assert fsdp["compute_copies"] == 2 * (128_064 + 2 * 43_136) + 2 * (128_064 + 43_136) == 771_072
    assert fsdp["activations"] == 16_384 + 180_224 + 36_864
    # one process, no mixed precision: no casts, fp32 logits
    one = F.train_memory(SMALL, 32, 2, F.Parallel(), "no", checkpointing=False, overhead=0)
    assert one["ddp_buckets"] == one["compute_copies"] == 0
    assert one["loss"] == 64_000 * 16
    assert F.checkpoint_bytes(n) == 12 * n                    # fp32 model (= masters) + m + v
    assert F.checkpoints_on_disk(steps=3, save_every=1, keep_last=1) == 2   # keep_last + the new one
    assert F.checkpoints_on_disk(steps=191, save_every=200, keep_last=2) == 0
    assert F.checkpoints_on_disk(steps=954, save_every=200, keep_last=2) == 3


def test_accelerate_estimate_memory_reproduced_by_hand():
    """accelerate estimate-memory needs the hub; its arithmetic, offline: it sizes AutoModel (no
    lm_head: 214,336 - 64,000 = 150,336 params) in fp32: "Total Size" 4 B per parameter,
    "Training using Adam" 4 x that; ours (weights + grads + AdamW) adds the lm_head's 16 x 64,000."""
    est = F.accelerate_estimate_memory(SMALL)
    assert est["parameters_counted"] == 150_336
    assert est["float32"] == {"total_size": 601_344, "training_using_adam": 2_405_376}
    assert est["float16"] == {"total_size": 300_672, "training_using_adam": 1_202_688}
    mem = F.train_memory(SMALL, 32, 2, F.Parallel(), "bf16", checkpointing=False)
    assert mem["weights"] + mem["gradients"] + mem["optimizer"] == 3_429_376 == 2_405_376 + 16 * 64_000
    tied = F.Shape(2, 64, 160, 4, 2, 16, 1000, tied=True)
    assert F.accelerate_estimate_memory(tied)["float32"]["training_using_adam"] == 16 * tied.params


def test_launch_parallelism():
    fsdp = Launch("x", "FSDP", 8, 1, False, "bf16", "FULL_SHARD", 2).parallel()
    assert (fsdp.kind, fsdp.processes, fsdp.shard, fsdp.reshard_after_forward) == ("fsdp", 8, 8, True)
    hybrid = Launch("x", "FSDP", 16, 2, False, "bf16", "HYBRID_SHARD").parallel()
    assert hybrid.shard == 8
    assert Launch("x", "MULTI_GPU", 8, 1, False, "bf16").parallel().kind == "ddp"
    assert Launch("x", "NO", 4, 1, True, "no").parallel().processes == 1
    assert GPUS["A100-40GB"].peak_flops == 312e12


# --- cross-checks against torch, transformers and accelerate -----------------------------------

def _tiny_config(cls_name: str, **kw):
    import transformers

    cfg_cls = getattr(transformers, cls_name)
    return cfg_cls(vocab_size=3000, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa", **kw)


@pytest.mark.parametrize("arch", ["LlamaConfig", "Qwen2Config"])
def test_activation_formula_matches_what_autograd_saves(arch):
    """The per-layer formula against the tensors a real transformers forward saves for backward
    (saved_tensors_hooks, unique storages, parameters excluded), on packed rows, in the three
    precision regimes, with and without gradient checkpointing. Left out by the formula: RoPE
    tables, rsqrt, log-sum-exp (a few %)."""
    import torch
    from transformers import AutoModelForCausalLM

    cfg = _tiny_config(arch, **({"tie_word_embeddings": True} if arch == "Qwen2Config" else {}))
    shape = F.Shape.from_config(cfg.to_dict())
    b, s = 2, 96
    for name, rg in F.REGIMES.items():
        for ckpt in (False, True):
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(cfg).train()
            model = model.to(torch.bfloat16 if name == "bf16" else torch.float32)
            model.config.use_cache = False
            if ckpt:  # what freshllm.train calls (transformers 5 also names it activation_checkpointing_enable)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    model.gradient_checkpointing_enable()
            ids = torch.randint(0, cfg.vocab_size, (b, s))
            pos = torch.arange(s).repeat(b, 1)
            pos[:, 40:] -= 40  # two articles per row, as freshllm.pack writes them
            saved: dict[int, int] = {}

            def pack(t):
                saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=name != "fp32"):
                out = model(input_ids=ids, position_ids=pos, labels=ids, attention_mask=None)
            params = {p.untyped_storage().data_ptr() for p in model.parameters()}
            measured = sum(v for k, v in saved.items() if k not in params)
            acts = F.activation_bytes(shape, s, b, ckpt, rg)
            if ckpt:  # the recomputed layer exists only during the backward pass
                acts -= F.activation_bytes_per_layer(shape, s, b, rg)
            copies = 0 if name != "autocast" else 2 * (shape.vocab * shape.hidden
                                                       + (0 if ckpt else 2 * shape.layer_matmul_params))
            log_softmax = b * s * shape.vocab * 4
            predicted = acts + copies + log_softmax
            assert abs(measured / predicted - 1) < 0.03, (arch, name, ckpt, measured, predicted)
            assert out.logits.element_size() == rg.act  # the logits the output object holds


class LivePeak:
    """The peak of live tensor bytes over a block: every storage an op creates (forward or backward)
    counts from its creation to its release. Exact and independent of the allocator, the page cache
    and the machine's load, unlike a process's peak RSS."""

    def __init__(self):
        import weakref

        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        tracker = self
        self.live: dict[int, int] = {}
        self.now = self.peak = 0

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in tree_flatten(out)[0]:
                    if isinstance(t, torch.Tensor):
                        st = t.untyped_storage()
                        key = st.data_ptr()
                        if key and key not in tracker.live:
                            tracker.live[key] = st.nbytes()
                            tracker.now += st.nbytes()
                            weakref.finalize(st, tracker._free, key)
                tracker.peak = max(tracker.peak, tracker.now)
                return out

        self.mode = Mode()

    def _free(self, key):
        self.now -= self.live.pop(key)

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


@pytest.mark.parametrize("autocast,bytes_per_element", [(True, 2), (False, 4)], ids=["autocast", "fp32"])
def test_loss_peak_is_what_the_loss_allocates(autocast, bytes_per_element):
    """The loss's peak, per batch x seq x vocab element, over the forward and backward of lm_head +
    transformers' ForCausalLMLoss on the CPU: 14 B under bf16 autocast (bf16 logits + fp32
    log-softmax + two fp32 gradients), 16 B in fp32. Counted as live tensor bytes (deterministic:
    the same figure on every run); h is small against batch x seq so that the weight's gradient
    (h / (b s) bytes per element) stays below the tolerance."""
    import torch
    from transformers.loss.loss_utils import ForCausalLMLoss

    torch.manual_seed(0)
    b, s, V, h = 2, 512, 5000, 16
    hid, W = torch.randn(b, s, h, requires_grad=True), torch.randn(V, h, requires_grad=True)
    labels = torch.randint(0, V, (b, s))
    hid.grad, W.grad = torch.zeros_like(hid), torch.zeros_like(W)
    with LivePeak() as peak:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = torch.nn.functional.linear(hid, W)
            loss = ForCausalLMLoss(logits, labels, V, num_items_in_batch=b * s)
        loss.backward()
    weight_copy = V * h * 2 if autocast else 0  # autocast's bf16 copy of the weight, not the loss's
    measured = (peak.peak - weight_copy) / (b * s * V)
    shape = F.Shape(1, 64, 64, 1, 1, 64, 1, tied=True)  # vocab 1, one token: bytes per element
    assert measured == pytest.approx(F.loss_peak_bytes(shape, 1, 1, bytes_per_element), rel=0.02)


def test_parameter_counts_and_accelerate_estimate_memory_cross_check():
    """The plan's parameter count = transformers' own (AutoModelForCausalLM) for the paper models
    and the small case, and accelerate's estimate-memory numbers = what the functions the command
    calls give without its hub lookup: AutoModel (as it builds it: empty, float32) ->
    calculate_maximum_sizes -> estimate_training_usage."""
    import torch
    from accelerate import init_empty_weights
    from accelerate.commands.estimate import estimate_training_usage
    from accelerate.utils import calculate_maximum_sizes
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, LlamaConfig

    from freshllm.standins.architectures import get_arch

    configs = [LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)]
    for mid in ("meta-llama/Meta-Llama-3-8B", "Qwen/Qwen2-1.5B"):
        d = get_arch(mid).config()
        configs.append(AutoConfig.for_model(d.pop("model_type"), **d))
    for cfg in configs:
        shape = F.Shape.from_config(cfg.to_dict())
        with init_empty_weights():
            causal = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
            # accelerate passes float32: from_config would follow config.json's bfloat16
            model = AutoModel.from_config(cfg, dtype=torch.float32)
        causal.tie_weights()  # not applied on the meta device by from_config
        assert sum(p.numel() for p in causal.parameters()) == shape.params
        buffers = sum(b.numel() * b.element_size() for b in model.buffers())
        total, _ = calculate_maximum_sizes(model)
        ours = F.accelerate_estimate_memory(shape, buffers)
        assert total == ours["float32"]["total_size"] == 4 * ours["parameters_counted"] + buffers
        assert max(estimate_training_usage(total, "float32").values()) == ours["float32"]["training_using_adam"]
        mem = F.train_memory(shape, 16, 1, F.Parallel(), "bf16", False)
        lm_head = 0 if shape.tied else shape.vocab * shape.hidden
        assert mem["weights"] + mem["gradients"] + mem["optimizer"] == 16 * shape.params \
            == ours["float32"]["training_using_adam"] - 4 * buffers + 16 * lm_head


def test_shapes_add_up_to_the_shipped_parameter_counts():
    from freshllm.standins.architectures import ARCHS, param_count

    for mid, arch in ARCHS.items():
        assert F.Shape.from_config(arch.config()).params == param_count(arch), mid


# --- stage names, the paper profiles, errors ---------------------------------------------------

@pytest.mark.parametrize("profile", [ROOT / "params.yaml", *PAPER], ids=lambda p: p.name)
def test_stage_names_equal_dvc_stage_list(tmp_path, profile):
    listed = dvc_stage_names(tmp_path, profile)
    ours = [s.name for s in load_stages(ROOT / "dvc.yaml", yaml.safe_load(profile.read_text()))]
    assert sorted(ours) == sorted(listed) and len(ours) == len(set(ours))
    plan = make_plan(profile, ROOT / "dvc.yaml")
    assert list(plan) == ours + ["total"]
    for name, row in plan.items():  # every sized output is one that dvc.yaml lists
        assert not any("not in dvc.yaml" in n for n in row.get("notes", [])), (name, row["notes"])


@pytest.mark.parametrize("profile", ["updates-toyworld.yaml", "merges-toyworld.yaml", "updates6-toyworld.yaml"])
def test_every_stage_is_sized_chain_included(tmp_path, profile):
    """No stage is left without a cost model ("?"); every sized output is one dvc.yaml lists;
    each update's cpt trains chain.tokens (re-rooted: k x chain.tokens at the k-th window)."""
    from freshllm.config import parse_count

    path = profile_file(profile.removesuffix(".yaml"))
    params = yaml.safe_load(path.read_text())
    plan = make_plan(path, ROOT / "dvc.yaml")
    for name, row in plan.items():
        if name == "total":
            continue
        assert row["device"] != "?", name
        assert not any("not in dvc.yaml" in n for n in row.get("notes", [])), (name, row["notes"])
    windows = list(params.get("updates") or {})
    if not windows:
        return
    seq = params["pack"]["seq_len"]
    own = parse_count(params["chain"]["tokens"])
    for k, w in enumerate(windows, 1):
        mult = k if params["chain"].get("cpt_from") == "ancestor" else 1
        row = plan[f"u-cpt-base@{w}"]
        assert row["new_tokens"] <= row["tokens"] and abs(row["new_tokens"] - mult * own) <= seq * 64, (w, row)
        assert plan[f"u-window@{w}"]["disk"]["outputs"][f"data/updates/{w}/packed"]["bytes"] > 0
        assert plan[f"u-merge@{w}"]["disk"]["outputs"][f"models/updates/{w}/cpt-base-res"]["bytes"] > 0
    # re-rooted, the plan grows with the window
    ancestor = tmp_path / "p.yaml"
    ancestor.write_text(yaml.safe_dump({**params, "chain": {**params["chain"], "cpt_from": "ancestor"}}))
    re = make_plan(ancestor, ROOT / "dvc.yaml")
    assert re[f"u-cpt-base@{windows[-1]}"]["tokens"] > re[f"u-cpt-base@{windows[0]}"]["tokens"] * (len(windows) - 0.5)


@pytest.mark.parametrize("profile", PAPER, ids=lambda p: p.name)
def test_paper_profiles_plan_offline_in_seconds(profile):
    t = time.time()
    res = plan_cli("--params", profile, "--gpu", "A100-40GB", "--json")
    elapsed = time.time() - t
    assert res.returncode == 0, res.stderr
    assert elapsed < 60, f"{profile.name}: {elapsed:.1f} s"  # a hang guard: no hub lookup, no model built
    plan = json.loads(res.stdout)
    params = yaml.safe_load(profile.read_text())
    cpt = [r for r in plan.values() if r.get("kind") == "cpt"]
    assert len(cpt) == 2 * len(params["budgets"])
    for row in cpt:
        assert row["model"]["config_source"] == "standins" and row["model"]["dtype"] == "bfloat16"
        assert row["flops"]["train_6ND"] == 6 * row["model"]["parameters"] * row["tokens"]
        assert row["memory"]["gpu"] == "A100-40GB" and isinstance(row["memory"]["fits"], bool)
        assert row["time"]["gpu_hours"] > 0
    b100 = plan["cpt@base-100M"]
    # 100M tokens in rows of 4096 = 24,415 rows; the global batch is batch_size x grad_accum x 8
    tc = params["cpt"]["train"]
    per_step = tc["batch_size"] * tc["grad_accum"] * 8
    assert b100["steps"] == -(-24_415 // per_step) and b100["tokens"] == b100["steps"] * per_step * 4096
    seconds = b100["flops"]["train_6ND"] / (8 * 312e12 * 0.4)
    assert b100["time"]["seconds"] == pytest.approx(seconds)
    ift = plan["total"]["instruction_ft_avoided"]
    assert ift["tokens"] == 204_800_000_000 and ift["paper_ratio"] == 2048
    assert ift["flops"] == 6 * b100["model"]["parameters"] * 204_800_000_000 * 5
    text = plan_cli("--params", profile, "--gpu", "A100-40GB")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    for name in plan:
        if name != "total":
            assert sum(line.split()[:1] == [name] for line in lines) == 1, name


def test_llama3_fsdp_fits_a100_40gb_and_ddp_does_not(tmp_path):
    fsdp = make_plan(PAPER[0], ROOT / "dvc.yaml", GPUS["A100-40GB"])
    assert fsdp["cpt@base-100M"]["model"]["parameters"] == 8_030_261_248
    assert fsdp["total"]["memory"]["fits"] is True
    ddp = write_profile(tmp_path, PAPER[0],
                        lambda p: p.update(accelerate_config="configs/accelerate/ddp_8gpu_bf16.yaml"))
    plan = make_plan(ddp, ROOT / "dvc.yaml", GPUS["A100-40GB"])
    row = plan["cpt@base-100M"]
    assert row["memory"]["fits"] is False and row["memory"]["per_process"]["weights"] == 4 * 8_030_261_248
    assert plan["total"]["memory"]["not_fitting"] == [s for s in plan if s.startswith("cpt@")]
    res = plan_cli("--params", ddp, "--gpu", "A100-40GB")
    assert res.returncode == 0 and "does NOT fit A100-40GB" in res.stdout
    # 20 B per parameter before activations (fp32 masters, grads, AdamW, DDP buckets): 150 GiB
    assert make_plan(ddp, ROOT / "dvc.yaml", GPUS["H200-141GB"])["total"]["memory"]["fits"] is False
    assert make_plan(PAPER[0], ROOT / "dvc.yaml", GPUS["L40S-48GB"])["total"]["memory"]["fits"] is True


def test_tokens_per_s_sets_the_time(tmp_path):
    plan = make_plan(PAPER[1], ROOT / "dvc.yaml", GPUS["H100-80GB"], tokens_per_s=5000)
    row = plan["cpt@instruct-1B"]
    assert row["time"]["seconds"] == pytest.approx(row["tokens"] / (8 * 5000))
    assert row["time"]["gpu_hours"] == pytest.approx(row["tokens"] / 5000 / 3600)


def test_bad_params_are_reported_like_other_stages(tmp_path):
    def edit(p):
        p["cpt"]["train"]["batch_size"] = 0
        p["cpt"]["train"]["bogus"] = 1
        p["residual"]["dtype"] = "int8"
    res = plan_cli("--params", write_profile(tmp_path, PAPER[0], edit))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("plan: invalid config in")
    for what in ("batch_size: must be > 0", "bogus: unknown key", "residual.dtype"):
        assert what in res.stderr, res.stderr
    res = plan_cli("--params", PAPER[0], "--gpu", "TPU-v5")
    assert res.returncode == 1 and "unknown GPU 'TPU-v5'" in res.stderr


def test_unknown_model_offline_names_it(tmp_path):
    path = write_profile(tmp_path, PAPER[1], lambda p: p["models"]["qwen25"].update(hub_base="someone/unknown-7B"))
    res = plan_cli("--params", path)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "models.qwen25" in res.stderr and "someone/unknown-7B" in res.stderr


def test_local_snapshot_directory_gives_the_config(tmp_path):
    cfg = {"model_type": "llama", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 160,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "tie_word_embeddings": False, "dtype": "float32"}
    for name in ("b", "i"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(cfg))
    path = write_profile(tmp_path, PAPER[0], lambda p: p["models"].update(
        llama3={"source": "hub", "hub_base": str(tmp_path / "b"), "hub_instruct": str(tmp_path / "i")}))
    plan = make_plan(path, ROOT / "dvc.yaml")
    row = plan["models@llama3"]
    assert row["model"]["config_source"] == "local-dir" and row["model"]["parameters"] == 214_336
    assert row["disk"]["outputs"]["models/llama3/base"]["bytes"] == 4 * 214_336
    assert plan["cpt@base-100M"]["disk"]["outputs"]["models/cpt/base-100M"]["bytes"] == 4 * 214_336


def test_disk_follows_dtypes_and_cache_links(tmp_path):
    plan = make_plan(PAPER[0], ROOT / "dvc.yaml")
    n = 8_030_261_248
    assert plan["models@llama3"]["disk"]["bytes"] == 2 * 2 * n                       # bf16 pair
    assert plan["residual-extract@llama31"]["disk"]["bytes"] == 2 * n                # residual.dtype bf16
    # uint32 + uint32 + uint8 per token: the train rows, plus the val split (pack.val_fraction 0.05
    # of crawl.max_articles 2M, at the plan's 650 tokens per article)
    assert plan["pack@100M"]["disk"]["bytes"] == 24_415 * 4096 * 9 + int(0.05 * 2_000_000 * 650 * 9)
    out = plan["eval-orig@llama3-base"]["disk"]["outputs"]
    assert out["metrics/eval/base-llama3.json"]["dvc_cached"] is False
    assert out["data/eval_samples/base-llama3.jsonl"]["dvc_cached"] is True
    big = plan["cpt@base-1B"]
    assert big["disk"]["transient_bytes"] == 3 * 12 * n       # keep_last 2 + the one being written
    for links, fs_copy in (("copy", True), ("reflink,hardlink,copy", False), ("symlink", False)):
        (tmp_path / ".dvc").mkdir(exist_ok=True)
        (tmp_path / ".dvc" / "config").write_text(f"[cache]\n    type = \"{links}\"\n")
        assert load_cache(tmp_path).second_copy is fs_copy, links
    (tmp_path / ".dvc" / "config").write_text("[core]\n    remote = x\n")
    cache = load_cache(tmp_path)  # DVC's default reflink,copy: a copy unless the FS reflinks
    assert cache.links == ("reflink", "copy") and cache.second_copy == (cache.used == "copy")
    total = plan["total"]["disk"]
    assert total["total"] == total["outputs"] + total["dvc_cache_extra"] + total["transient_checkpoints_peak"]


# --- dvc.yaml as DVC reads it: anchors, merge keys, stage vars; cost models keyed by module ------

PIPELINE = """\
stages:
  u-eval-base:
    foreach: ${updates}
    do: &u-eval
      vars: [{role: cpt-base, tag: {x: 1}}]
      cmd: >-
        python -m freshllm.eval --model models/updates/${key}/${role} --name ${role}@${key}
        --samples data/${key}/${role}.jsonl --flag ${flag} --x ${tag.x} --known ${eval.text.known}
      deps: ['models/updates/${key}/${role}']
      outs: ['data/${key}/${role}.jsonl', 'metrics/${key}/${role}.json': {cache: false}]
  u-eval-instruct:
    foreach: ${updates}
    do:
      <<: *u-eval
      vars: [{role: cpt-instruct, tag: {x: 2}}]
  grid:
    matrix: {variant: [base, instruct], budget: '${budgets}'}
    vars: [{eval: {extra: e}}]
    cmd:
      - python -m freshllm.pack --tokens ${item.budget} --out data/${item.variant}-${item.budget}
      - echo ${item.variant} ${eval.extra} ${eval.text.known}
    outs: ['data/${item.variant}-${item.budget}']
  plain:
    vars: [{name: solo}, {other: 2}]
    cmd: echo ${name} ${other} ${target}
"""
PIPELINE_PARAMS = {"target": "tiny", "budgets": ["1K", "2K"], "flag": True, "eval": {"text": {"known": "k.jsonl"}},
                   "updates": {"w1": {"prev": "ancestor"}, "w2": {"prev": "w1"}}}


def _expand(text: str, params: dict = PIPELINE_PARAMS):
    from freshllm.config import load_yaml
    from freshllm.plan.dvcfiles import expand

    return {s.name: s for s in expand(load_yaml(text), params)}


def test_merge_keys_and_stage_vars_resolve_as_dvc_does(tmp_path):
    """YAML anchors and merge keys (the merged do: body takes its own vars: the override), and
    stage vars in a foreach do:, a matrix stage and a plain one -- against DVC's own resolver."""
    stages = _expand(PIPELINE)
    assert stages["u-eval-base@w1"].cmd == (
        "python -m freshllm.eval --model models/updates/w1/cpt-base --name cpt-base@w1 "
        "--samples data/w1/cpt-base.jsonl --flag true --x 1 --known k.jsonl")
    inst = stages["u-eval-instruct@w2"]
    assert inst.cmd.startswith("python -m freshllm.eval --model models/updates/w2/cpt-instruct --name cpt-instruct@w2")
    assert "--x 2" in inst.cmd and inst.deps == ("models/updates/w2/cpt-instruct",)
    assert inst.outs == (("data/w2/cpt-instruct.jsonl", True), ("metrics/w2/cpt-instruct.json", False))
    grid = stages["grid@instruct-2K"]
    assert grid.cmd == ("python -m freshllm.pack --tokens 2K --out data/instruct-2K", "echo instruct e k.jsonl")
    assert grid.commands == grid.cmd and stages["plain"].commands == ("echo solo 2 tiny",)
    assert list(stages) == ["u-eval-base@w1", "u-eval-base@w2", "u-eval-instruct@w1", "u-eval-instruct@w2",
                            "grid@base-1K", "grid@base-2K", "grid@instruct-1K", "grid@instruct-2K", "plain"]
    # DVC itself, on the same files
    from dvc.parsing import DataResolver
    from dvc.repo import Repo
    from dvc.utils.serialize import parse_yaml

    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PIPELINE_PARAMS))
    subprocess.run([Path(sys.executable).parent / "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True,
                   env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    theirs = DataResolver(Repo(str(tmp_path)), str(tmp_path), parse_yaml(PIPELINE, "dvc.yaml")).resolve()["stages"]
    assert list(theirs) == list(stages)
    for name, d in theirs.items():
        cmd = d["cmd"]
        assert stages[name].cmd == (tuple(cmd) if isinstance(cmd, list) else cmd), name
        outs = [(k, v.get("cache") is not False) for e in d.get("outs", [])
                for k, v in ({e: {}} if isinstance(e, str) else e).items()]
        assert list(stages[name].outs) == outs, name


def test_the_pipeline_expands_as_dvc_does(tmp_path):
    """Every stage of this repository's dvc.yaml, on the chain profile: cmd, deps and outs as
    DVC's resolver gives them."""
    from dvc.parsing import DataResolver
    from dvc.repo import Repo
    from dvc.utils.serialize import parse_yaml

    from freshllm.config import read_params

    profile = profile_file("updates-toyworld")
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(profile, tmp_path / "params.yaml")
    subprocess.run([Path(sys.executable).parent / "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True,
                   env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    text = (tmp_path / "dvc.yaml").read_text()
    theirs = DataResolver(Repo(str(tmp_path)), str(tmp_path), parse_yaml(text, "dvc.yaml")).resolve()["stages"]
    ours = {s.name: s for s in load_stages(tmp_path / "dvc.yaml", read_params(tmp_path / "params.yaml"))}
    assert list(ours) == list(theirs)
    for name, d in theirs.items():
        cmd = d["cmd"]
        assert ours[name].cmd == (tuple(cmd) if isinstance(cmd, list) else cmd), name
        assert ours[name].deps == tuple(d.get("deps", [])), name


@pytest.mark.parametrize("where", ["foreach", "matrix", "plain"])
def test_stage_vars_refuse_what_dvc_refuses(where):
    from freshllm.config import ConfigError

    def stage(vars_: str) -> str:
        body = f"vars: {vars_}\n      cmd: echo ${{target}}"
        return {"foreach": f"stages:\n  s:\n    foreach: [a]\n    do:\n      {body}\n",
                "matrix": f"stages:\n  s:\n    matrix: {{v: [a]}}\n    {body.replace('      ', '    ')}\n",
                "plain": f"stages:\n  s:\n    {body.replace('      ', '    ')}\n"}[where]

    name = {"foreach": "s@a", "matrix": "s@a", "plain": "s"}[where]
    with pytest.raises(ConfigError) as err:  # a top-level params key, redefined
        _expand(stage("[{target: other}]"))
    assert f"stage '{name}'" in str(err.value) and "vars[0]: cannot redefine 'target'" in str(err.value)
    with pytest.raises(ConfigError, match=r"cannot redefine 'eval.text.known'"):  # a leaf, nested
        _expand(stage("[{eval: {text: {known: x}}}]"))
    with pytest.raises(ConfigError, match=r"vars\[1\]: cannot redefine 'a'"):  # an earlier entry's
        _expand(stage("[{a: 1}, {a: 2}]"))
    with pytest.raises(ConfigError, match="not supported by the plan"):  # a file to load
        _expand(stage("[extra.yaml]"))
    with pytest.raises(ConfigError, match="interpolating"):
        _expand(stage("[{a: '${target}'}]"))
    if where != "plain":
        with pytest.raises(ConfigError, match="cannot redefine 'item'"):
            _expand(stage("[{item: x}]"))
    assert _expand(stage("[{eval: {new: 1}}]"))[name].cmd == "echo tiny"  # mappings merge key by key
    top = "vars: [{extra: 1}]\n" + stage("[{more: 2}]").replace("${target}", "${target} ${extra} ${more}")
    assert _expand(top)[name].cmd == "echo tiny 1 2"                       # the top-level vars, too
    assert PIPELINE_PARAMS["eval"] == {"text": {"known": "k.jsonl"}}     # the params stay as read


def test_commands_name_the_modules_they_run():
    from freshllm.plan.commands import calls

    cmd = ("START=$(python -m freshllm.updates.start --window w --variant base) && accelerate launch "
           "--config_file c.yaml -m freshllm.cpt --section chain.cpt --model $START --data d/ --dry-run "
           "&& python -m freshllm.cards --model 'a b' ; echo 'python -m not.run' | python3 -u -m freshllm.residual "
           "--params p.yaml apply --alpha -1 --merge=x\npython script.py -m freshllm.no")
    found = calls(cmd)
    assert [c.name for c in found] == ["freshllm.updates.start", "freshllm.cpt", "freshllm.cards",
                                       "freshllm.residual apply"]
    cpt, apply = found[1], found[3]
    assert cpt.launcher == "accelerate launch" and cpt.get("--section") == "chain.cpt"
    assert cpt.path("--data") == "d" and cpt.get("--dry-run") is True and cpt.get("--model") == "$START"
    assert found[2].get("--model") == "a b"
    assert apply.get("--alpha") == "-1" and apply.get("--merge") == "x" and apply.subcommand == "apply"


def _pipeline_copy(tmp_path: Path, profile: Path, edit=lambda text: text) -> tuple[Path, Path]:
    """dvc.yaml (edited as text) and ``profile`` in ``tmp_path``; the accelerate config named by
    its absolute path (dvc.yaml's directory is the root the plan resolves it from)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    params = write_profile(tmp_path, profile, lambda p: p.update(
        accelerate_config=str(ROOT / p["accelerate_config"])))
    (tmp_path / "dvc.yaml").write_text(edit((ROOT / "dvc.yaml").read_text()))
    return params, tmp_path / "dvc.yaml"


def _rename(text: str, old: str, new: str) -> str:
    """Rename stage ``old`` (its key line, a comment after it or not) to ``new``."""
    import re

    pattern = re.compile(rf"^  {re.escape(old)}:(?=\s*(#.*)?$)", re.M)
    assert len(pattern.findall(text)) == 1, old
    return pattern.sub(f"  {new}:", text)


def test_renamed_stages_are_sized_the_same(tmp_path):
    """The cost models follow the module a stage runs, not its name: eval-cpt, cpt and
    u-cpt-base renamed in a copy of dvc.yaml give the same rows and the same total."""
    profile = profile_file("updates-toyworld")
    renames = {"eval-cpt": "my-eval", "cpt": "train-it", "u-cpt-base": "chain-train"}

    def edit(text):
        for old, new in renames.items():
            text = _rename(text, old, new)
        return text

    plan = make_plan(*_pipeline_copy(tmp_path / "a", profile))
    renamed = make_plan(*_pipeline_copy(tmp_path / "b", profile, edit))
    assert len(plan) == len(renamed)
    for name, row in plan.items():
        if name == "total":
            continue
        base, _, at = name.partition("@")
        new = f"{renames[base]}@{at}" if base in renames else name
        assert renamed[new] == {**row, "stage": new}, name
        assert row["device"] != "?", name
    assert renamed["my-eval@instruct-20K"]["kind"] == "eval" and renamed["train-it@base-20K"]["kind"] == "cpt"
    tot, rtot = dict(plan["total"]), dict(renamed["total"])
    ift, rift = tot.pop("instruction_ft_avoided"), rtot.pop("instruction_ft_avoided")
    tot.pop("params_file"), rtot.pop("params_file")
    assert tot == rtot
    assert list(ift.pop("ratio_vs_cpt").values()) == list(rift.pop("ratio_vs_cpt").values()) != []
    assert ift == rift


def test_unknown_module_is_reported_by_name(tmp_path):
    """A stage running a module no cost model knows: a "?" row whose note names the module (in
    the text too); chained after a known one, the known one is sized and the unknown named."""
    extra = """
  mystery:
    cmd: python -m freshllm.mystery --out data/mystery.bin
    outs: [data/mystery.bin]
  eval-then-mystery:
    cmd: >-
      python -m freshllm.eval --model models/cpt/instruct-20K --kind cpt-instruct --budget 20K
      --out metrics/x.json --samples data/x.jsonl && python -m freshllm.mystery --in data/x.jsonl
    outs: [data/x.jsonl]
  shell-only:
    cmd: cp a b
"""
    params, dvc_yaml = _pipeline_copy(tmp_path, profile_file("updates-toyworld"),
                                      lambda text: text.replace("\nstages:\n", "\nstages:" + extra, 1))
    plan = make_plan(params, dvc_yaml)
    row = plan["mystery"]
    assert row["device"] == "?" and row["modules"] == ["freshllm.mystery"]
    assert row["notes"] == ["no cost model for module freshllm.mystery"]
    chained = plan["eval-then-mystery"]
    assert chained["kind"] == "eval" and chained["modules"] == ["freshllm.eval", "freshllm.mystery"]
    assert {k: v for k, v in chained.items() if k not in ("stage", "notes", "modules")} == \
        {k: v for k, v in plan["eval-cpt@instruct-20K"].items() if k not in ("stage", "notes", "modules", "disk")
         } | {"disk": chained["disk"]}
    assert chained["disk"]["outputs"]["data/x.jsonl"]["bytes"] > 0
    assert any("freshllm.mystery" in n for n in chained["notes"])
    assert plan["shell-only"]["device"] == "?" and "runs no python -m module" in plan["shell-only"]["notes"][0]
    res = plan_cli("--params", params, "--dvc-yaml", dvc_yaml)
    assert res.returncode == 0, res.stderr
    assert "note: no cost model for module freshllm.mystery" in res.stdout


def test_a_profile_overlay_is_planned_as_its_expansion(tmp_path):
    """`--params profiles/<name>.yaml` (an `include:` overlay) plans what `profile use` writes."""
    from freshllm.profile import use

    full = use("updates-toyworld", tmp_path / "params.yaml")
    a = make_plan(full, ROOT / "dvc.yaml")
    b = make_plan(ROOT / "profiles" / "updates-toyworld.yaml", ROOT / "dvc.yaml")
    assert b["total"]["params_file"].endswith("updates-toyworld.yaml (expanded)")
    a["total"].pop("params_file"), b["total"].pop("params_file")
    assert a == b and any(n.startswith("u-cpt-base@") for n in b)
