"""The local and paper profiles: every stage's section validates, dvc.yaml expands to
the expected stages, and the hub code path fails fast and clearly without network."""

import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ROOT, all_profiles, dvc_stage_names, profile_file
from freshllm.config import build_config
from freshllm.cpt import CptConfig
from freshllm.crawl import CrawlConfig
from freshllm.eval import EvalConfig
from freshllm.models import ModelsConfig
from freshllm.pack import PackConfig
from freshllm.report import ReportConfig
from freshllm.residual import ResidualConfig

PROFILES = all_profiles()
SECTIONS = {"crawl": CrawlConfig, "pack": PackConfig, "cpt": CptConfig, "residual": ResidualConfig,
            "eval": EvalConfig, "report": ReportConfig}


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_every_stage_section_validates(path):
    from freshllm.config import load_section
    from freshllm.names import load_grid

    params = yaml.safe_load(path.read_text())
    for section, cls in SECTIONS.items():
        load_section(cls, section, path)
    grid = load_grid(path)
    assert params["target"] in params["families"] == grid.families
    assert set(params["residual_sources"]) <= set(params["families"])
    for fam in params["families"]:
        assert "." not in fam  # DVC param paths models.<family>
        load_section(ModelsConfig, f"models.{fam}", path)
    assert params["budgets"] and (ROOT / params["accelerate_config"]).is_file()


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_profiles_survive_dvc_rewriting_params(tmp_path, path):
    """`dvc exp run -S` rewrites params.yaml (YAML 1.2: `no` unquoted): still valid."""
    from dvc.utils.hydra import apply_overrides

    from freshllm.config import load_section

    params = tmp_path / "params.yaml"
    shutil.copy(path, params)
    apply_overrides(str(params), ["cpt.lr.base=0.001"])
    assert "mixed_precision: no" in params.read_text() or "bf16" in params.read_text()
    for section, cls in SECTIONS.items():
        load_section(cls, section, params)
    assert load_section(CptConfig, "cpt", params).lr.base == 0.001


def test_paper_profile_expands_to_the_paper_grid(tmp_path):
    """dvc.yaml + the LLaMA profile: cpt@{base,instruct}-{100M,500M,1B}, ports of both
    families' residuals onto the LLaMA 3 base, and evals of every model."""
    out = dvc_stage_names(tmp_path, profile_file("paper-llama3"))
    expected = {"models@llama3", "models@llama31", "crawl", "pack@1B", "cpt@base-100M",
                "cpt@instruct-1B", "residual-extract@llama31", "residual-apply@llama31-500M",
                "eval-orig@llama31-instruct", "eval-cpt@instruct-100M", "eval-res@llama3-1B", "report"}
    assert expected <= set(out), sorted(expected - set(out))
    assert len([s for s in out if s.startswith("cpt@")]) == 6


def test_hub_source_without_network_fails_fast_and_clearly(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"world": {"kind": "news", "seed": 0}, "models": {"llama3": {
        "source": "hub", "hub_base": "meta-llama/Meta-Llama-3-8B",
        "hub_instruct": "meta-llama/Meta-Llama-3-8B-Instruct"}}}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    t = time.time()
    res = subprocess.run([sys.executable, "-m", "freshllm.models", "--params", str(params), "--family",
                          "llama3", "--base-out", str(tmp_path / "b"), "--instruct-out", str(tmp_path / "i"),
                          "--metrics", str(tmp_path / "m.json")], capture_output=True, text=True, env=env)
    assert res.returncode != 0 and time.time() - t < 120  # a hang guard: no retries against the network
    assert "meta-llama/Meta-Llama-3-8B" in res.stderr and "local profile" in res.stderr
    assert not (tmp_path / "b").exists()


def test_hub_source_accepts_pre_downloaded_local_snapshots(tmp_path, tiny_pair):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"world": {"kind": "news", "seed": 0}, "models": {"fam": {
        "source": "hub", "hub_base": str(tiny_pair[0]), "hub_instruct": str(tiny_pair[1])}}}))
    from freshllm.models import main

    main(["--params", str(params), "--family", "fam", "--base-out", str(tmp_path / "b"),
          "--instruct-out", str(tmp_path / "i"), "--metrics", str(tmp_path / "m.json")])
    assert (tmp_path / "b/model.safetensors").read_bytes() == (tiny_pair[0] / "model.safetensors").read_bytes()
    assert (tmp_path / "i/tokenizer_config.json").exists()


def test_models_config_names_every_bad_key():
    from freshllm.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        build_config(ModelsConfig, {"source": "hub", "hidden_size": 30, "num_heads": 4, "colour": 1},
                     "models.x")
    msg = str(exc.value)
    for key in ("models.x.hub_base", "models.x.hub_instruct", "models.x.hidden_size", "models.x.colour"):
        assert key in msg


@pytest.mark.parametrize("path", [ROOT / "params.yaml", profile_file("toyworld")], ids=lambda p: p.name)
def test_local_profiles_expand_with_the_eval_text_stage(tmp_path, path):
    """dvc.yaml + the default (and toy) profile still expand; every eval stage depends on the
    held-out fresh file and on eval.text.known, which here is the eval-text stage's world file."""
    import dvc.repo

    names = dvc_stage_names(tmp_path, path)
    assert "eval-text" in names and "report" in names and any(n.startswith("eval-orig@") for n in names)
    repo = dvc.repo.Repo(str(tmp_path))
    stages = {s.name: s for s in repo.index.stages}
    text_outs = {str(o.def_path) for o in stages["eval-text"].outs}
    assert {"data/eval_text/fresh.jsonl", "data/eval_text/world.jsonl"} <= text_outs
    for name, stage in stages.items():
        if name.startswith(("eval-orig@", "eval-cpt@", "eval-res@")):
            deps = {str(d.def_path) for d in stage.deps}
            assert {"data/eval_text/fresh.jsonl", "data/eval_text/world.jsonl"} <= deps, name
            assert "--known-text data/eval_text/world.jsonl" in stage.cmd
    assert {"data/articles.jsonl"} <= {str(d.def_path) for d in stages["eval-text"].deps}


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_every_profile_holds_out_fresh_news_and_names_its_known_text(path):
    """The same new keys everywhere: a held-out share (the toy world's largest budget still
    fits: 3000 articles of ~125 tokens, 5% held out leave ~356K >= 300K; a chain's window
    holds its tokens), eval.text."""
    from freshllm.config import load_section
    from freshllm.tasks.text import TextConfig

    params = yaml.safe_load(path.read_text())
    assert 0.05 <= params["pack"]["val_fraction"] <= 0.1 and params["pack"]["text_field"] == "text"
    text = load_section(TextConfig, "eval.text", path)
    assert text.known.endswith(".jsonl")
    if params["world"]["kind"] == "toyworld":
        from freshllm.config import parse_count

        assert params["pack"]["val_fraction"] == 0.05
        kept = 125 * (1 - params["pack"]["val_fraction"])  # tokens per article left to train on
        assert params["crawl"]["max_articles"] * kept >= max(map(parse_count, params["budgets"]))
        if params.get("updates"):  # a chain: every one-month window holds its chain.tokens
            per_window = min(params["crawl"]["max_articles"], params["crawl"]["local_per_month"])
            assert per_window * kept >= parse_count(params["chain"]["tokens"])


# --- profiles as overlays (freshllm.profile) ------------------------------------------------------

def test_params_yaml_is_the_default_profile_and_every_other_profile_is_an_overlay(tmp_path):
    from freshllm.profile import parent_of, use

    assert (ROOT / "params.yaml").read_bytes() == (ROOT / "profiles/default.yaml").read_bytes()
    assert parent_of("default", ROOT / "profiles") is None
    for p in sorted((ROOT / "profiles").glob("*.yaml")):
        if p.stem == "default":
            continue
        assert parent_of(p.stem, ROOT / "profiles"), p.name
        assert len(p.read_text().splitlines()) < len(profile_file(p.stem).read_text().splitlines()) / 2, p.name
    # a complete profile writes itself, byte for byte
    assert use("default", tmp_path / "p.yaml", ROOT / "profiles").read_bytes() == (ROOT / "params.yaml").read_bytes()


def _write(root, name, text):
    root.mkdir(exist_ok=True)
    (root / f"{name}.yaml").write_text(text)


def test_overlay_merges_mappings_replaces_values_and_keeps_the_right_comments(tmp_path, capsys):
    from freshllm.profile import differences, expand, main, plain

    root = tmp_path / "profiles"
    _write(root, "base", "# the base\nbudgets: [20K, 200K]   # two budgets\nmodels:\n  toy: {seed: 0, size: 1}\n"
                         "cpt:\n  lr: {base: 0.1, instruct: 0.1}\n  train: {steps: 5}  # five\n")
    _write(root, "child", "# the child\ninclude: base\nbudgets: [30K]   # one budget\ncpt:\n  lr: {base: 0.2}\n")
    _write(root, "other", "include: child\nreplace: [models]\nmodels:\n  big: {seed: 1}\ncpt: {train: null}\n")
    assert plain(expand("child", root)) == {"budgets": ["30K"], "models": {"toy": {"seed": 0, "size": 1}},
                                            "cpt": {"lr": {"base": 0.2, "instruct": 0.1}, "train": {"steps": 5}}}
    assert plain(expand("other", root)) == {"budgets": ["30K"], "models": {"big": {"seed": 1}},
                                            "cpt": {"lr": {"base": 0.2, "instruct": 0.1}, "train": None}}
    assert differences("other", root) == [("models.big", "<absent>", {"seed": 1}), ("models.toy", {"seed": 0, "size": 1}, "<removed>"),
                                          ("cpt.train", {"steps": 5}, None)]
    out = tmp_path / "params.yaml"
    assert main(["--profiles", str(root), "use", "child", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Generated by `python -m freshllm.profile use child`") and "# the child" in text
    assert "# the base" not in text and "# one budget" in text and "# two budgets" not in text and "# five" in text
    assert main(["--profiles", str(root), "diff", "child"]) == 0
    assert "budgets: ['20K', '200K'] -> ['30K']" in capsys.readouterr().out


def test_overlay_errors_name_the_file_and_key(tmp_path, capsys):
    from freshllm.config import ConfigError
    from freshllm.profile import expand, main

    root = tmp_path / "profiles"
    _write(root, "a", "include: b\nx: 1\n")
    _write(root, "b", "include: a\ny: 2\n")
    _write(root, "c", "include: nowhere\n")
    _write(root, "d", "include: e\nreplace: [models]\n")
    _write(root, "e", "models: {}\n")
    with pytest.raises(ConfigError, match="include: a cycle: a -> b -> a"):
        expand("a", root)
    with pytest.raises(FileNotFoundError, match="no profile 'nowhere'"):
        expand("c", root)
    with pytest.raises(ConfigError, match=r"(?s)d.yaml.*replace: models: not a key of this profile"):
        expand("d", root)
    assert main(["--profiles", str(root), "use", "zzz", "--out", str(tmp_path / "p.yaml")]) == 1
    assert "profile: no profile 'zzz'" in capsys.readouterr().err and not (tmp_path / "p.yaml").exists()
