"""Smoke runs of the benchmarks (tiny shapes, peers skipped): they run end to end and
their own correctness checks hold (residual output == reference, identical losses)."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from freshllm.bench import cpt as bench_cpt
from freshllm.bench import residual as bench_residual


def test_residual_bench_smoke(tmp_path, capsys):
    res = bench_residual.main([
        "--layers", "1", "--hidden", "64", "--intermediate", "128", "--heads", "4", "--kv-heads", "2",
        "--vocab", "512", "--shard-size", "100KB", "--skip", "residuals,mergekit",
        "--workdir", str(tmp_path / "w")])
    out = capsys.readouterr().out
    assert "ours apply" in out and "copy (apply's bytes)" in out and "mergekit" in out
    for key in ("ours extract", "ours apply", "copy (apply's bytes)", "copy (merge's bytes)"):
        assert "error" not in res[key], res[key]
        assert res[key]["wall_s"] > 0 and res[key]["rss_mib"] > 0
    assert res["compare"]["max_abs_diff"]["ours vs reference"] == 0.0
    assert not res["compare"]["missing"]
    assert not (tmp_path / "w").exists()  # removed unless --keep


def test_cpt_bench_smoke(capsys):
    res = bench_cpt.main(["--steps", "8", "--batch-size", "2", "--seq-len", "64", "--hidden", "32",
                          "--layers", "1", "--vocab", "400", "--repeats", "1", "--warmup", "2"])
    out = capsys.readouterr().out
    assert "ratio ours/Trainer" in out
    assert res["ours"]["tokens_per_s"] > 0 and res["trainer"]["tokens_per_s"] > 0
    assert abs(res["ours"]["final_loss"] - res["trainer"]["final_loss"]) < 1e-3
    assert res["max_step_loss_diff"] < 1e-3
    import logging

    assert logging.root.manager.disable == logging.NOTSET  # the bench's quiet logging is undone


def test_cpt_bench_on_a_standin_with_its_real_tokenizer(capsys):
    """--standin: the hub config (here Qwen2.5-0.5B's, shrunk in depth and width only: the
    151,936-row tied embedding and q/k/v biases stay) and its real tokenizer; gradient
    checkpointing on in both runs; the two loops still agree step by step."""
    res = bench_cpt.main(["--standin", "Qwen/Qwen2.5-0.5B", "--shrink", "hidden=32,layers=1,intermediate=64,heads=2,kv_heads=1",
                          "--steps", "4", "--batch-size", "1", "--seq-len", "64", "--repeats", "1",
                          "--warmup", "1", "--skip-steps", "1", "--grad-ckpt"])
    out = capsys.readouterr().out
    assert "Qwen/Qwen2.5-0.5B stand-in (1 layers, hidden 32, vocab 151936, tied embeddings True" in out
    assert "gradient checkpointing on" in out
    assert res["ours"]["steady_tokens_per_s"] > 0 and res["trainer"]["steady_tokens_per_s"] > 0
    assert res["max_step_loss_diff"] < 1e-3


# --- bench/gpu (the package src/freshllm/bench/gpu/): the GPU cpt-step benchmark, run on CPU
# with tiny shapes ---

def test_gpu_bench_tiny(tmp_path, capsys):
    """Every default path on both families (Qwen2 with qkv bias, LLaMA 3.2 with llama3 rope):
    timed steps (flex: check only, torch has no flex backward on CPU), the per-article
    check exact while the same articles without the split differ (leak), JSON written."""
    from freshllm.bench import gpu

    out = tmp_path / "gpu.json"
    rep = gpu.main(["--tiny", "--models", "qwen2.5-0.5b,llama3.2-3b", "--steps", "1", "--seq", "128",
                    "--doc-median", "24", "--check-docs", "4", "--json", str(out)])
    text = capsys.readouterr().out
    assert "recommended GPU default:" in text and "MFU" in text
    res = rep["results"]
    assert {(r["model"], r["path"]) for r in res} == {
        (m, p) for m in ("qwen2.5-0.5b", "llama3.2-3b") for p in gpu.DEFAULT_PATHS}
    for r in res:
        assert "error" not in r, r
        c = r["check"]
        assert c["exact"], (r["path"], c)
        assert c["max_abs_diff_fp32"] <= c["tol_fp32"] and c["max_abs_diff_bf16"] <= c["tol_bf16"]
        if r["packed"]:
            assert c["articles"] >= 3 and c["continuations"] >= 1
            assert c["leak_fp32"] > 20 * gpu.TOL_FP32  # the check would catch cross-article attention
        if not r["path"].startswith("flex"):
            assert r["tokens_per_s"] > 0 and r["timed_steps"] == 1 and r["model_tflops"] > 0
            assert all(math.isfinite(x) for x in r["losses"])
    assert rep["recommended"]["path"] in ("sdpa_packed", "eager_packed")  # flex did not train here
    saved = json.loads(out.read_text())
    assert saved["env"]["precision"].startswith("fp32 master weights")
    assert len(saved["results"]) == len(res)


def test_gpu_bench_budget_skips(capsys):
    from freshllm.bench import gpu

    rep = gpu.main(["--tiny", "--models", "qwen2.5-0.5b", "--paths", "sdpa_packed", "--budget-s", "0"])
    assert [r["status"] for r in rep["results"]] == ["skipped"]
    assert rep["recommended"] is None
    assert "skipped (budget" in capsys.readouterr().out


def test_gpu_bench_oom_retries_smaller(monkeypatch, capsys):
    """A CUDA OOM halves the batch and retries (at batch 1: gradient checkpointing)."""
    import torch

    from freshllm.bench.gpu import cli

    calls = []

    def fake(torch_, key, path, a, dev, batch, grad_ckpt, deadline, log):
        calls.append((batch, grad_ckpt))
        if len(calls) < 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"model": key, "path": path, "packed": True, "batch": batch, "grad_ckpt": grad_ckpt,
                "tokens_per_s": 1.0, "model_tflops": 1e-9, "flops_per_token_6n": 6.0,
                "peak_mem_gib": None, "step_s_mean": 1.0, "seconds": 1.0,
                "check": {"exact": True, "max_abs_diff_fp32": 0.0, "max_abs_diff_bf16": 0.0,
                          "tol_bf16": 0.02, "leak_fp32": 1.0}}

    monkeypatch.setattr(cli, "run_config", fake)  # the name the driver calls
    rep = cli.main(["--tiny", "--models", "qwen2.5-0.5b", "--paths", "sdpa_packed", "--no-check"])
    assert calls == [(2, False), (1, False), (1, True)]
    (r,) = rep["results"]
    assert r["oom"] == "OOM at batch 2; OOM at batch 1" and r["grad_ckpt"]
    assert "OOM at batch 2" in capsys.readouterr().out


def test_gpu_bench_flex_toolchain_failure_skips_other_flex_runs(monkeypatch, capsys):
    from freshllm.bench.gpu import cli

    seen = []

    def fake(torch_, key, path, a, dev, batch, grad_ckpt, deadline, log):
        seen.append((key, path))
        if path.startswith("flex"):
            raise RuntimeError("torch._inductor.exc.InductorError: C compiler not found")
        return {"model": key, "path": path, "packed": True, "batch": batch, "grad_ckpt": grad_ckpt,
                "tokens_per_s": 1.0, "model_tflops": 1e-9, "flops_per_token_6n": 6.0, "peak_mem_gib": None,
                "step_s_mean": 1.0, "seconds": 1.0, "check": {"exact": True}}

    monkeypatch.setattr(cli, "run_config", fake)  # the name the driver calls
    rep = cli.main(["--tiny", "--models", "qwen2.5-0.5b,llama3.2-3b", "--paths", "sdpa_packed,flex_packed"])
    assert [p for _, p in seen].count("flex_packed") == 1  # the second model's flex run is skipped
    status = {(r["model"], r["path"]): r.get("status", "ok") for r in rep["results"]}
    assert sorted(status.values()) == ["error", "ok", "ok", "skipped"]
    assert rep["recommended"]["path"] == "sdpa_packed"
    assert "flex failed before" in capsys.readouterr().out


def test_gpu_bench_rows_are_packed_like_packwriter(tmp_path):
    """The benchmark's rows: the positions PackWriter writes for the same article lengths."""
    import numpy as np

    from freshllm.bench import gpu
    from freshllm.io.packed import PackedData, PackWriter

    seq, n_rows = 64, 6
    stream = gpu.DocStream(3, 20, 0.9, 500)
    rows = [stream.row(seq) for _ in range(n_rows)]
    lengths, again = [], gpu.DocStream(3, 20, 0.9, 500)
    while sum(lengths) < seq * n_rows:
        again._next_doc()
        lengths.append(again.left)
    writer = PackWriter(tmp_path / "p", seq, max_rows=n_rows)
    for n in lengths:
        writer.add(list(range(1, n + 1)))
    writer.close()
    expected = PackedData.open(tmp_path / "p").position_ids
    got = np.zeros((n_rows, seq), dtype=np.int64)
    for r, segs in enumerate(rows):
        for start, n, p0 in segs:
            got[r, start:start + n] = np.arange(p0, p0 + n)
    assert (got == expected).all()


def test_gpu_bench_flop_accounting():
    from freshllm.bench import gpu
    from freshllm.standins.architectures import get_arch, param_count

    tied = get_arch("meta-llama/Llama-3.2-3B").config()
    untied = get_arch("meta-llama/Llama-3.1-8B").config()
    assert gpu.matmul_params(tied) == param_count(tied)  # the tied lm_head counts once
    assert gpu.matmul_params(untied) == param_count(untied) - 128256 * 4096  # no embedding lookup
    q15 = get_arch("Qwen/Qwen2.5-1.5B").config()
    assert gpu.attention_flops_per_pair(q15) == 12 * 28 * 12 * 128
    assert gpu.spec_peak("NVIDIA H200") == 989.0 and gpu.spec_peak("NVIDIA H100 PCIe") == 756.0


def test_gpu_bench_models_are_the_projects_hub_configs():
    """bench/gpu reads its hub configs as data (models.json, in priority order): they are what
    freshllm.standins.architectures says, exact and shrunk for --tiny; `python -m freshllm.standins
    bench-configs` rewrites the file when they change."""
    from freshllm.bench import gpu
    from freshllm.bench.gpu.shapes import MODELS_FILE
    from freshllm.standins.architectures import BENCH_GPU_MODELS, bench_gpu_models

    saved = json.loads(MODELS_FILE.read_text())
    assert MODELS_FILE == BENCH_GPU_MODELS and list(gpu.MODELS)[0] == "qwen2.5-1.5b"  # the goal first
    assert saved == bench_gpu_models(saved), "models.json is stale: run `python -m freshllm.standins bench-configs`"
    assert gpu.model_config("llama3.2-3b", tiny=True, vocab=1024)["hidden_size"] == saved["tiny_shrink"]["hidden"]


def test_gpu_bench_imports_only_torch_and_transformers(tmp_path):
    """The GPU machine has torch, transformers and accelerate only. Every module of the package
    imports nothing but the standard library, torch, transformers, accelerate and the package's
    own modules (relatively): checked in each module's source, and by running ``python -m
    freshllm.bench.gpu`` with freshllm's other dependencies absent, then importing every module
    of the package, and listing the freshllm modules loaded (no other one)."""
    import ast

    from freshllm.bench import gpu

    pkg = Path(gpu.__file__).parent
    modules = sorted(p.stem for p in pkg.glob("*.py"))
    assert {"__init__", "__main__", "cli", "shapes", "steps", "checks", "report"} <= set(modules)
    outside = {"torch", "transformers", "accelerate"}
    project: set[str] = set()
    bad = []
    for p in sorted(pkg.glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(), p.name)):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level != 1:  # from .. import: out of the package
                    bad.append(f"{p.name}:{node.lineno}: {'.' * node.level}{node.module or ''}")
                continue
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                if not (top in sys.stdlib_module_names or top in outside or name in project):
                    bad.append(f"{p.name}:{node.lineno}: {name}")
    assert not bad, f"imports outside the stdlib, torch, transformers, accelerate, the package: {bad}"

    out = tmp_path / "gpu.json"
    code = textwrap.dedent(f"""
        import importlib, runpy, sys
        for name in ("fundus", "lm_eval", "dvc", "dvclive", "datasets", "yaml_include", "curl_cffi"):
            sys.modules[name] = None  # import fails, importlib.util.find_spec returns None
        sys.argv = ["gpu", "--tiny", "--models", "llama3.2-3b", "--paths", "sdpa_packed", "--steps", "1",
                    "--warmup", "0", "--no-check", "--json", {str(out)!r}]
        runpy.run_module("freshllm.bench.gpu", run_name="__main__", alter_sys=True)  # as python -m does
        for m in {modules!r}:
            importlib.import_module("freshllm.bench.gpu" + ("" if m == "__init__" else "." + m))
        mods = sorted(m for m in sys.modules if m.split(".")[0] == "freshllm")
        print("FRESHLLM", ",".join(mods))
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "llama3.2-3b sdpa_packed: batch 2 x 256" in res.stdout and "recommended GPU default:" in res.stdout
    line = [x for x in res.stdout.splitlines() if x.startswith("FRESHLLM ")][-1]
    assert set(line.split(" ", 1)[1].split(",")) == {
        "freshllm", "freshllm.bench", *("freshllm.bench.gpu" + ("" if m == "__init__" else "." + m) for m in modules)}
    saved = json.loads(out.read_text())
    assert set(saved) == {"env", "args", "results", "recommended", "total_s"}  # no peak on CPU: no goal_1_5b
    (r,) = saved["results"]
    assert r["model"] == "llama3.2-3b" and r["path"] == "sdpa_packed" and r["tokens_per_s"] > 0


# --- bench/pack and bench/eval smoke runs ---

def test_pack_bench_smoke(capsys):
    from freshllm.bench import pack as bench_pack

    res = bench_pack.main(["--articles", "150", "--real", "qwen2"])
    out = capsys.readouterr().out
    assert "Qwen/Qwen2.5-0.5B's real tokenizer" in out and "ratio pack/raw" in out
    assert res["pack_encoded_tokens"] == res["raw_tokens"]  # the same texts, the same encoding
    assert res["raw_tokens_per_s"] > 0 and res["pack_tokens_per_s"] > 0
    assert set(res["by_workers"]) == {1, res["cores"]} and "1 tokenizer thread(s)" in out
    for row in res["by_workers"].values():
        assert row["pack_encoded_tokens"] == row["raw_tokens"] and row["raw_fast_tokens_per_s"] > 0
    assert 0.5 < res["rss_ratio"] < 2.0


def test_eval_bench_smoke(capsys):
    from freshllm.bench import eval as bench_eval

    rep = bench_eval.main(["--skip-full", "--items", "2", "--max-gen-toks", "4", "--batch-size", "2"])
    out = capsys.readouterr().out
    assert "piqa (log-likelihood)" in out and "gsm8k (generation)" in out
    m = rep["models"]["shrunk"]
    assert m["generation_config_max_new_tokens"] == 2048 and m["max_new_tokens_unset"]
    piqa, gsm = m["tasks"]["piqa"], m["tasks"]["gsm8k"]
    assert piqa["items"] == 2 and piqa["requests"] == 4 and piqa["forward_tokens"] > 0
    assert gsm["items"] == 2 and 0 < gsm["generated_tokens"] <= 2 * 4  # max_gen_toks holds
    assert piqa["items_per_s"] > 0 and gsm["generated_tokens_per_s"] > 0
