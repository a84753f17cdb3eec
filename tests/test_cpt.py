import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from conftest import ROOT
from freshllm.config import ConfigError, build_config
from freshllm.cpt import CptConfig
from freshllm.train import TrainConfig, lr_factor


@pytest.fixture(scope="module")
def packed(tmp_path_factory, tiny_pair):
    """Packed generated text, with the tiny pair's tokenizer."""
    from freshllm.synthetic.corpus import d1_documents
    from freshllm.io.hf import load_tokenizer
    from freshllm.pack import PackConfig, pack_corpus

    root = tmp_path_factory.mktemp("cpt")
    corpus = root / "a.jsonl"
    with open(corpus, "w") as fh:
        for i, t in enumerate(d1_documents(21, 300)):
            fh.write(json.dumps({"text": t}) + "\n")
    cfg = build_config(PackConfig, {"seq_len": 64, "tokens": "8K"}, "pack")
    pack_corpus(corpus, load_tokenizer(tiny_pair[0]), cfg, root / "packed")
    return root / "packed"


def write_params(path, lr=5e-3, **train):
    section = {"batch_size": 4, "warmup_steps": 2, "seed": 0}
    section.update(train)
    path.write_text(yaml.safe_dump({"cpt": {"lr": {"base": lr, "instruct": lr}, "train": section}}))
    return path


def run_cpt(tmp, model, data, params, out="out", launcher=None, extra=(), check=True):
    args = ["--params", str(params), "--variant", "base", "--model", str(model), "--data", str(data),
            "--out", str(tmp / out), "--metrics", str(tmp / f"{out}.json"),
            "--ckpt-dir", str(tmp / f"ckpt-{out}"), *extra]
    cmd = (launcher or [sys.executable, "-m"]) + ["freshllm.cpt", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=check, timeout=300)


def weights(d):
    from safetensors.torch import load_file

    return load_file(str(d / "model.safetensors"))


def test_loss_decreases_and_output_reloads_and_generates(tmp_path, tiny_pair, packed):
    params = write_params(tmp_path / "p.yaml", steps=30)
    run_cpt(tmp_path, tiny_pair[0], packed, params, extra=["--live-dir", str(tmp_path / "live")])
    m = json.loads((tmp_path / "out.json").read_text())
    assert m["steps"] == 30 and m["final_loss"] < m["first_loss"] - 0.5
    assert m["tokens_seen"] == 30 * 4 * 64 and m["flops"] == 6 * m["parameters"] * m["tokens_seen"]
    rows = (tmp_path / "live/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]
    assert [int(r.split("\t")[0]) for r in rows] == list(range(1, 31))  # step n plotted at n
    assert float(rows[0].split("\t")[1]) == pytest.approx(m["first_loss"])
    assert not (tmp_path / "ckpt-out").exists()  # cleaned after success
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    ids = tok("The old bridge of", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5
    # tokenizer files copied unchanged
    assert (tmp_path / "out/tokenizer.json").read_bytes() == (tiny_pair[0] / "tokenizer.json").read_bytes()


def test_killed_run_resumes_to_identical_weights(tmp_path, tiny_pair, packed):
    params = write_params(tmp_path / "p.yaml", steps=60, save_every=5, keep_last=2)
    run_cpt(tmp_path, tiny_pair[0], packed, params, out="ref")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = [sys.executable, "-m", "freshllm.cpt", "--params", str(params), "--variant", "base",
            "--model", str(tiny_pair[0]), "--data", str(packed), "--out", str(tmp_path / "run"),
            "--metrics", str(tmp_path / "run.json"), "--ckpt-dir", str(tmp_path / "ckpt-run")]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        ckpts = list((tmp_path / "ckpt-run").glob("step-*"))
        if any(int(p.name.split("-")[1]) >= 10 for p in ckpts):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "run finished before it could be killed"
    assert not (tmp_path / "run").exists()
    res = run_cpt(tmp_path, tiny_pair[0], packed, params, out="run")
    m = json.loads((tmp_path / "run.json").read_text())
    assert m["resumed_from_step"] >= 10, res.stderr[-2000:]
    ref, got = weights(tmp_path / "ref"), weights(tmp_path / "run")
    for n in ref:
        assert torch.equal(ref[n], got[n]), n


def test_bf16_model_is_saved_in_bf16_from_float32_master_weights(tmp_path, tiny_bf16, packed):
    """A bf16 source comes out bf16 (every tensor, about half the bytes, config.json and the
    metrics say so) unless save_dtype says otherwise; an fp32 source stays fp32. Both train
    on float32 master weights: the bf16 run equals the fp32 run from the same weights, cast
    (pure bf16 training would round small updates away and differ)."""
    from safetensors import safe_open

    bf16, fp32 = tiny_bf16
    params = write_params(tmp_path / "p.yaml", steps=6)
    run_cpt(tmp_path, bf16, packed, params, out="bf16")
    run_cpt(tmp_path, fp32, packed, params, out="fp32")
    run_cpt(tmp_path, bf16, packed, write_params(tmp_path / "k.yaml", steps=6, save_dtype="float32"),
            out="bf16-kept-fp32")
    expect = {"bf16": ("bfloat16", "bfloat16"), "fp32": ("float32", "float32"),
              "bf16-kept-fp32": ("bfloat16", "float32")}
    for out, (source, saved) in expect.items():
        m = json.loads((tmp_path / f"{out}.json").read_text())
        assert (m["source_dtype"], m["master_dtype"], m["saved_dtype"]) == (source, "float32", saved), out
        assert json.loads((tmp_path / out / "config.json").read_text())["dtype"] == saved, out
        with safe_open(str(tmp_path / out / "model.safetensors"), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16" if saved == "bfloat16" else "F32"}, out
    size = {out: (tmp_path / out / "model.safetensors").stat().st_size for out in expect}
    assert 0.45 < size["bf16"] / size["fp32"] < 0.55, size
    assert size["bf16-kept-fp32"] == size["fp32"]
    w = {out: weights(tmp_path / out) for out in expect}
    assert w["bf16"].keys() == w["fp32"].keys()
    for n in w["fp32"]:
        assert torch.equal(w["bf16"][n], w["fp32"][n].to(torch.bfloat16)), n
        assert torch.equal(w["bf16-kept-fp32"][n], w["fp32"][n]), n
    src = weights(bf16)
    assert any(not torch.equal(w["bf16"][n], src[n]) for n in src)  # it did train
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype="auto").dtype == torch.bfloat16


def test_stale_checkpoints_of_another_run_are_not_resumed(tmp_path, tiny_pair, packed):
    params = write_params(tmp_path / "p.yaml", steps=12, save_every=5)
    run_cpt(tmp_path, tiny_pair[0], packed, params, out="a", extra=["--stop-after", "8"], check=False)
    assert list((tmp_path / "ckpt-a").glob("step-5"))
    params = write_params(tmp_path / "p.yaml", steps=12, save_every=5, lr=1e-3)
    run_cpt(tmp_path, tiny_pair[0], packed, params, out="a")
    assert json.loads((tmp_path / "a.json").read_text())["resumed_from_step"] == 0


def test_ddp_two_processes_matches_single_process(tmp_path, tiny_pair, packed):
    single = write_params(tmp_path / "s.yaml", steps=8, batch_size=4)
    run_cpt(tmp_path, tiny_pair[0], packed, single, out="single")
    ddp = write_params(tmp_path / "d.yaml", steps=8, batch_size=2)
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(ROOT / "configs/accelerate/cpu_ddp2.yaml"), "--main_process_port", "29517", "-m"]
    res = run_cpt(tmp_path, tiny_pair[0], packed, ddp, out="ddp", launcher=launcher, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((tmp_path / "ddp.json").read_text())
    assert m["num_processes"] == 2 and m["tokens_seen"] == 8 * 4 * 64
    a, b = weights(tmp_path / "single"), weights(tmp_path / "ddp")
    for n in a:
        torch.testing.assert_close(a[n], b[n], atol=1e-4, rtol=1e-3)
    assert any(not torch.equal(a[n], weights(tiny_pair[0])[n]) for n in a)  # it did train


def test_replay_mixes_a_fraction_of_each_batch(tmp_path, tiny_pair, packed):
    from freshllm.io.packed import PackedData
    from freshllm.train import TrainConfig, batch_rows, replay_split

    new, rep = replay_split(TrainConfig(lr=1.0, steps=10, batch_size=4, replay_fraction=0.25))
    assert (new.batch_size, rep.batch_size) == (3, 1) and rep.seed != new.seed
    with pytest.raises(ValueError, match="no new data"):
        replay_split(TrainConfig(lr=1.0, steps=1, batch_size=2, replay_fraction=0.9))
    data = PackedData.open(packed / "train")
    assert len(batch_rows(0, 0, 0, 1, len(data), rep)) == 1
    params = write_params(tmp_path / "p.yaml", steps=6, replay_fraction=0.5)
    run_cpt(tmp_path, tiny_pair[0], packed, params, extra=["--replay-data", str(packed)])
    m = json.loads((tmp_path / "out.json").read_text())
    assert m["tokens_seen"] == 6 * 4 * 64 and m["new_tokens_seen"] == 6 * 2 * 64
    res = run_cpt(tmp_path, tiny_pair[0], packed, params, out="noreplay", check=False)
    assert res.returncode != 0 and "--replay-data" in res.stderr


def test_schedules():
    cos = TrainConfig(lr=1.0, steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cos) == pytest.approx(0.1) and lr_factor(9, cos) == pytest.approx(1.0)
    assert lr_factor(10, cos) == pytest.approx(1.0) and lr_factor(100, cos) == pytest.approx(0.1)
    assert 0.1 < lr_factor(55, cos) < 1.0
    wsd = TrainConfig(lr=1.0, steps=100, warmup_steps=10, min_lr_ratio=0.0, schedule="wsd",
                     decay_fraction=0.2)
    assert lr_factor(50, wsd) == 1.0 and lr_factor(100, wsd) == pytest.approx(0.0)
    assert 0 < lr_factor(95, wsd) < 1


def test_config_errors_name_every_key():
    with pytest.raises(ConfigError) as exc:
        build_config(CptConfig, {"lr": {"base": -1}, "train": {"schedule": "linear", "mixed_precision": "fp8",
                                 "batchsize": 3, "save_dtype": "int8", "lr": 1e-3}}, "cpt")
    for key in ("cpt.train.schedule", "cpt.train.mixed_precision", "cpt.lr.base", "cpt.train.batchsize",
                "cpt.train.save_dtype", "cpt.train.lr"):
        assert key in str(exc.value)


def test_train_config_is_the_section_with_the_variant_lr():
    cfg = build_config(CptConfig, {"lr": {"base": 1e-3, "instruct": 2e-4},
                                   "train": {"batch_size": 2, "schedule": "wsd", "save_dtype": "bfloat16"}}, "cpt")
    run = cfg.train_config("instruct")
    assert isinstance(run, TrainConfig) and run.lr == 2e-4 and cfg.train.lr is None
    assert (run.batch_size, run.schedule, run.save_dtype) == (2, "wsd", "bfloat16")
    resolved = run.resolve(n_rows=100, world=2)  # 1 epoch of 100 sequences, 4 per step
    assert (resolved.steps, resolved.warmup_steps) == (25, 1) and resolved.resolve(7, 1) == resolved


def test_fsdp_config_without_gpus_is_refused_not_run_as_something_else(tmp_path, tiny_bf16, packed):
    """accelerate 1.15 applies FSDP only on accelerators (accelerate/state.py: FSDP is set for
    MULTI_GPU/XPU/NPU/... but not MULTI_CPU): the shipped FSDP config on 2 CPU processes would
    silently run plain data parallelism. cpt refuses, naming what accelerate runs instead."""
    bf16, _ = tiny_bf16
    two = write_params(tmp_path / "d.yaml", steps=2, batch_size=2, mixed_precision="bf16")
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(ROOT / "configs/accelerate/fsdp_8gpu_bf16.yaml"), "--num_processes", "2",
                "--main_process_port", "29523", "-m"]
    res = run_cpt(tmp_path, bf16, packed, two, out="fsdp", launcher=launcher, check=False)
    assert res.returncode != 0 and not (tmp_path / "fsdp").exists()
    assert "asks for FSDP, but accelerate runs MULTI_CPU" in res.stderr


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="FSDP under accelerate needs >= 2 GPUs "
                    "(on CPUs accelerate falls back to MULTI_CPU, see the test above)")
@pytest.mark.parametrize("config,port", [("fsdp_8gpu_bf16.yaml", 29521)])
def test_shipped_fsdp_config_on_two_gpus_matches_one_process(tmp_path, tiny_bf16, packed, config, port):
    """The shipped FSDP2 config (full shard, transformer-layer wrap, activation checkpointing,
    bf16 autocast), run with 2 processes (`--num_processes 2` the only override), trains the
    same model as 1 process: the float32 masters agree to 1e-4
    (the all-reduce sums in another order), so the saved bf16 weights agree to one bf16 step
    (a master that sits on a rounding boundary may round to the neighbour). The checkpoint is a
    full (gathered) HF directory in the source dtype that transformers loads."""
    from transformers import AutoModelForCausalLM

    bf16, _ = tiny_bf16
    single = write_params(tmp_path / "s.yaml", steps=8, batch_size=4, mixed_precision="bf16")
    run_cpt(tmp_path, bf16, packed, single, out="single")
    two = write_params(tmp_path / "d.yaml", steps=8, batch_size=2, mixed_precision="bf16")
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(ROOT / "configs/accelerate" / config), "--num_processes", "2",
                "--main_process_port", str(port), "-m"]
    res = run_cpt(tmp_path, bf16, packed, two, out="fsdp", launcher=launcher, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((tmp_path / "fsdp.json").read_text())
    assert m["num_processes"] == 2 and m["distributed_type"] == "FSDP" and m["saved_dtype"] == "bfloat16"
    assert m["tokens_seen"] == 8 * 4 * 64
    a, b = weights(tmp_path / "single"), weights(tmp_path / "fsdp")
    assert a.keys() == b.keys() and all(t.dtype == torch.bfloat16 for t in b.values())
    for n in a:
        step = torch.finfo(torch.bfloat16).eps * a[n].float().abs().clamp_min(1e-3)
        assert bool(((a[n].float() - b[n].float()).abs() <= step + 1e-6).all()), n
    assert sum(not torch.equal(a[n], b[n]) for n in a) <= len(a) // 2  # mostly bit-equal
    assert any(not torch.equal(b[n], weights(bf16)[n]) for n in b)  # it did train
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "fsdp", dtype="auto")
    assert model.dtype == torch.bfloat16
