"""Smoke runs of the benchmarks (tiny shapes, peers skipped): they run end to end and
their own correctness checks hold (residual output == reference, identical losses)."""

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
