"""``models.<family>``: the training loops are the sections ``pretrain`` and ``sft``, each a
TrainConfig validated like ``cpt.train`` (every bad key named by its dotted path), and what
reaches :func:`freshllm.train.train` is exactly the section's values."""

from dataclasses import asdict

import pytest
import yaml

from conftest import ROOT
from freshllm.config import ConfigError, build_config, load_section
from freshllm.models import LoopConfig, ModelsConfig
from freshllm.train import TrainConfig


def write_params(tmp_path, family: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"world": {"kind": "toyworld", "seed": 0}, "models": {"toy": family}}))
    return path


def test_every_bad_loop_key_is_named_by_its_dotted_path(tmp_path):
    params = write_params(tmp_path, {
        "source": "local", "hidden_size": 30,
        "pretrain": {"lr": 0.003, "steps": 10, "foo": 1, "min_lr_ratio": 2},
        "sft": {"lr": -1, "steps": 10, "batch_size": 0, "save_every": 5, "mixed_precision": "fp16"}})
    with pytest.raises(ConfigError) as exc:
        load_section(ModelsConfig, "models.toy", params)
    problems = exc.value.problems
    for key in ("models.toy.pretrain.foo: unknown key", "models.toy.pretrain.min_lr_ratio: must be in [0, 1]",
                "models.toy.sft.lr: must be > 0, got -1", "models.toy.sft.batch_size: must be > 0",
                "models.toy.sft.save_every: not used by the models stage",
                "models.toy.sft.mixed_precision: must be no or bf16", "models.toy.hidden_size: must be divisible"):
        assert any(p.startswith(key) for p in problems), (key, problems)
    assert not any("not a cpt.train key" in p for p in problems)  # a loop's lr is its own


def test_a_loop_section_needs_its_lr_and_steps(tmp_path):
    params = write_params(tmp_path, {"pretrain": {"batch_size": 4}, "sft": {"lr": 0.001, "steps": None}})
    with pytest.raises(ConfigError) as exc:
        load_section(ModelsConfig, "models.toy", params)
    assert [p.split(":")[0] for p in exc.value.problems] == [
        "models.toy.pretrain.lr", "models.toy.pretrain.steps", "models.toy.sft.steps"], exc.value.problems


def test_the_old_flat_keys_are_unknown(tmp_path):
    params = write_params(tmp_path, {"pretrain_steps": 10, "sft_lr": 0.001, "batch_size": 4, "mixed_precision": "no"})
    with pytest.raises(ConfigError) as exc:
        load_section(ModelsConfig, "models.toy", params)
    assert sorted(p.split(":")[0] for p in exc.value.problems) == [
        "models.toy.batch_size", "models.toy.mixed_precision", "models.toy.pretrain_steps", "models.toy.sft_lr"]


def test_the_loops_reaching_train_are_exactly_the_sections(tmp_path, monkeypatch):
    """No hidden warmup, LR floor or weight decay: train() gets each section as written, and a
    key a section leaves out takes TrainConfig's default (as in cpt.train)."""
    import freshllm.train
    from freshllm.models import build_local

    pretrain = {"lr": 0.02, "steps": 3, "batch_size": 2, "grad_accum": 2, "warmup_steps": 2,
                "min_lr_ratio": 0.3, "schedule": "wsd", "decay_fraction": 0.5, "weight_decay": 0.05,
                "beta2": 0.99, "max_grad_norm": 0.5, "seed": 7}
    sft = {"lr": 0.004, "steps": 2, "batch_size": 3}
    cfg = build_config(ModelsConfig, {"seed": 1, "vocab_size": 400, "hidden_size": 32, "intermediate_size": 64,
                                      "num_layers": 1, "pretrain_docs": 30, "sft_examples": 12, "seq_len": 32,
                                      "pretrain": pretrain, "sft": sft}, "models.t")
    seen = []

    def fake_train(model, data, loop, accelerator, **kw):
        seen.append((kw.get("progress_desc"), loop))
        return {"steps": loop.steps, "losses": []}

    monkeypatch.setattr(freshllm.train, "train", fake_train)
    build_local(cfg, tmp_path / "base", tmp_path / "instruct")
    assert [d for d, _ in seen] == ["pretrain base", "sft instruct"]
    assert seen[0][1] == cfg.pretrain and seen[1][1] == cfg.sft
    defaults = asdict(TrainConfig())
    assert asdict(seen[0][1]) == {**defaults, **pretrain}
    assert asdict(seen[1][1]) == {**defaults, **sft}  # warmup_steps 0, weight_decay 0.1: TrainConfig's
    assert (tmp_path / "instruct/model.safetensors").is_file()


def old_loop(lr: float, steps: int, batch_size: int, seed: int) -> TrainConfig:
    """What models.py hard-coded for a loop before the loops were params sections."""
    return TrainConfig(lr=lr, steps=steps, batch_size=batch_size, warmup_steps=max(1, steps // 20),
                       min_lr_ratio=0.1, weight_decay=0.0, seed=seed)


def test_the_default_loops_are_the_old_hard_coded_ones():
    """params.yaml (the default profile) and ModelsConfig's default sections spell out the
    loops models.py used to build, so the default pair is the same bytes."""
    cfg = load_section(ModelsConfig, "models.toy", ROOT / "params.yaml")
    assert asdict(cfg.pretrain) == asdict(old_loop(0.003, 600, 16, 0))
    assert asdict(cfg.sft) == asdict(old_loop(0.001, 400, 16, 0))
    assert asdict(ModelsConfig.pretrain) == asdict(old_loop(3e-3, 200, 16, 0))
    assert asdict(ModelsConfig.sft) == asdict(old_loop(1e-3, 150, 16, 0))
    assert (ROOT / "params.yaml").read_bytes() == (ROOT / "profiles/default.yaml").read_bytes()


def test_loop_config_is_a_train_config_with_its_own_lr():
    loop = LoopConfig(lr=0.001, steps=5)
    assert isinstance(loop, TrainConfig) and loop.validate() == []
    assert TrainConfig(lr=0.001).validate()[0].startswith("lr: not a cpt.train key")  # cpt.train unchanged


def test_threads_bench_shrinks_the_loops_steps(tmp_path):
    from freshllm.bench.threads import shrunk_params

    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["models"]["bare"] = {"source": "local"}  # no loop sections: the default loops, shrunk
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    out = shrunk_params(project, tmp_path / "params.json", 6, 4)
    toy = load_section(ModelsConfig, "models.toy", out)
    full = load_section(ModelsConfig, "models.toy", ROOT / "params.yaml")
    assert (toy.pretrain.steps, toy.sft.steps) == (6, 4)
    assert asdict(toy.pretrain) == {**asdict(full.pretrain), "steps": 6}
    bare = load_section(ModelsConfig, "models.bare", out)
    assert asdict(bare.sft) == {**asdict(ModelsConfig.sft), "steps": 4}
