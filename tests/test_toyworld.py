"""The toy world: generators (determinism, d2 absent from d1, quizzes consistent with the
texts, v1 responses that lm-eval's IFEval checkers accept) and a shrunken toy world run
end to end by real `dvc repro` in a temporary git repository (models -> crawl through
fundus -> pack -> cpt -> residual -> eval on the toy suite -> report -> figures), then as a
queued `dvc exp` budget grid. Mechanics only, not the finding."""

from __future__ import annotations

import ast
import copy
import json
import re
import shutil
import subprocess
import time
from datetime import date
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, copy_project, dvc_stage_names, hermetic_env, profile_file, sh
from freshllm.synthetic import toyworld as tw
from freshllm.synthetic.ifeval_rows import IFEVAL_KWARGS

PROFILE = profile_file("toyworld")
pytestmark = pytest.mark.usefixtures("private_nltk_data")


@pytest.fixture(scope="module")
def world():
    return tw.make_world(0)


def _ifeval_ready():
    from freshllm.eval import prepare_ifeval_scoring

    prepare_ifeval_scoring(0)


# --- generators ----------------------------------------------------------------------------------

def test_world_and_texts_are_deterministic_in_the_seed(world):
    tw.make_world.cache_clear()
    again = tw.make_world(0)
    assert again == world and again is not world
    assert tw.make_world(1) != world
    assert tw.d1_documents(world, 50) == tw.d1_documents(tw.make_world(0), 50)
    assert tw.sft_chats(world, 50) == tw.sft_chats(world, 50)
    span = (date(2024, 1, 1), date(2024, 1, 31))
    assert tw.d2_articles(world, 20, *span) == tw.d2_articles(world, 20, *span)
    assert tw.d2_quiz(world) == tw.d2_quiz(world) and tw.d1_quiz(world, 30) == tw.d1_quiz(world, 30)
    assert tw.d1_documents(world, 50) != tw.d1_documents(world, 50, seed=1)
    assert tw.d1_documents(tw.make_world(1), 50) != tw.d1_documents(world, 50)


def test_world_shape(world):
    assert len({p.name for p in world.people}) == 64 and len({t.name for t in world.towns}) == 16
    assert all(len(world.residents(t.name)) == 4 for t in world.towns)
    assert {m for _, m in world.mayors}.isdisjoint({w for _, w in world.prizes})
    assert {w for _, w in world.old_prizes}.isdisjoint({w for _, w in world.prizes})
    assert all(world.person(m).town == t for t, m in world.mayors)
    old_names = " ".join(p for p, _ in world.old_prizes) + " ".join(f for f, _ in world.old_festivals)
    for name in [p for p, _ in world.prizes] + [f for f, _ in world.festivals]:
        assert not set(name.split()[:-1]) & set(old_names.split()), name  # no shared word
    assert len(world.d2_facts()) == 48 and not set(world.d2_facts()) & set(world.d1_facts())


def test_d2_facts_and_names_never_appear_in_d1_or_v1(world):
    d1 = "\n".join(tw.d1_documents(world, 3000))
    v1 = "\n".join(m["content"] for chat in tw.sft_chats(world, 1500) for m in chat)
    for text in (d1, v1, d1.lower(), v1.lower()):
        for name in world.d2_names():
            assert name not in text, name
        for fact in world.d2_facts():
            for template in tw.TEMPLATES[fact.relation]:
                assert template.format(s=fact.subject, o=fact.object) not in text
    assert "2024" not in d1 and "2024" not in v1
    # ...while d1 does state old events in the same news style
    assert "according to reports published in" in d1 and "was won by" in d1 and "was held in" in d1


def test_quiz_answers_are_stated_in_their_corpus(world):
    articles = tw.d2_articles(world, 480, date(2024, 1, 1), date(2024, 3, 31))
    d2 = "\n".join(a.text for a in articles)
    assert len({a.text for a in articles}) == 480
    d1 = "\n".join(tw.d1_documents(world, 3000))
    for quiz, text, n in ((tw.d2_quiz(world), d2, 80), (tw.d1_quiz(world, 128), d1, None)):
        assert n is None or len(quiz) == n
        for item in quiz:
            answer = item["choices"][item["answer"]]
            assert len(set(item["choices"])) == 4
            rel, subject, obj = item["fact"]
            assert answer in (subject, obj)
            assert f"{item['cue']} {answer}" in text, item
    # every d2 event is reported (about) equally often
    per_fact = [sum(any(t.format(s=f.subject, o=f.object) in a.text for t in tw.TEMPLATES[f.relation])
                    for a in articles) for f in world.d2_facts()]
    assert min(per_fact) == max(per_fact) == 10


def test_mayor_choices_cannot_be_told_apart_by_d1(world):
    for item in tw.d2_quiz(world):
        if item["fact"][0] == "mayor":
            assert {world.person(c).town for c in item["choices"]} == {item["fact"][2]}


def test_v1_responses_follow_their_instructions_by_lm_eval_checkers(world):
    _ifeval_ready()
    from lm_eval.tasks.ifeval import instructions_registry

    from freshllm.tasks.toy import ifeval_reference_check

    chats = tw.sft_chats(world, 600, knowledge_fraction=0.0)
    rows = tw.ifeval_prompts(world, 400)
    by_prompt = {r["prompt"]: r for r in rows}
    assert not by_prompt.keys() & {c[0]["content"] for c in tw.sft_chats(world, 3000)}  # held out
    ok = 0
    import random
    rng = random.Random(0)
    for _ in range(300):
        prompt, instructions, kind, name = tw.ifeval_item(rng, world, 2)
        row = {"key": 1, "prompt": prompt, "instruction_id_list": [i for i, _ in instructions],
               "kwargs": [{k: kw.get(k) for k in IFEVAL_KWARGS} for _, kw in instructions]}
        ok += ifeval_reference_check(row, tw.respond(rng, world, kind, name, instructions))
    assert ok >= 0.9 * 300  # the rest: langdetect misreading short upper-case text
    ids = {i for r in rows for i in r["instruction_id_list"]}
    assert ids == set(tw.INSTRUCTIONS) and ids <= set(instructions_registry.INSTRUCTION_DICT)
    assert len(chats) == 600 and all(c[1]["content"] for c in chats)


def test_toy_eval_data_keeps_only_achievable_prompts(tmp_path):
    _ifeval_ready()
    from freshllm import tasks as lm_tasks

    group = lm_tasks.materialize(tmp_path, ["toy_ifeval", "toy_d2", "toy_d1"], "local", suite_name="toyworld",
                                 world_seed=0, toy_sizes={"ifeval_prompts": 20, "d1_items": 10})
    assert [t["task"] for t in group["task"]] == ["toy_ifeval", "toy_d2", "toy_d1"]
    twin = yaml.safe_load((tmp_path / "twins/toy/toy_ifeval.yaml").read_text())
    assert Path(twin["include"]).is_file() and twin["task"] == "toy_ifeval"
    data = Path(twin["dataset_kwargs"]["data_files"]["train"])
    assert data.is_absolute() and len(data.read_text().splitlines()) == 20
    with pytest.raises(ValueError, match="unknown eval task"):
        lm_tasks.materialize(tmp_path, ["toy_nope"], "local", suite_name="toyworld")
    # the paper suite's local twins (real-world items) run beside the toy tasks (real-weights profile)
    group = lm_tasks.materialize(tmp_path / "mixed", ["toy_d2", "arc_easy"], "local", suite_name="toyworld")
    assert [t["task"] for t in group["task"]] == ["toy_d2", "arc_easy"]
    assert (tmp_path / "mixed/twins/arc_easy/arc_easy.yaml").is_file()
    assert (tmp_path / "mixed/twins/toy/toy_d2.yaml").is_file()


# --- structure -----------------------------------------------------------------------------------

def _absolute_imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Modules ``source`` (the code of ``module``) imports anywhere, inside functions too;
    relative imports resolved."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            mod = ".".join(x for x in (base, node.module) if x)
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    return found


def test_synthetic_never_imports_tasks():
    """``freshllm.tasks`` builds on ``freshllm.synthetic`` (the toy tasks generate their
    data from the toy world), never the other way round."""
    assert _absolute_imports("def f():\n    from ..tasks.build_data import ifeval_row\n",
                             "freshllm.synthetic.toyworld") >= {"freshllm.tasks.build_data"}
    src = ROOT / "src"
    files = sorted((src / "freshllm" / "synthetic").rglob("*.py"))
    assert src / "freshllm" / "synthetic" / "toyworld" / "instructions.py" in files
    scanned = {}
    for path in files:
        rel = path.relative_to(src).with_suffix("")
        is_package = rel.name == "__init__"
        module = ".".join(rel.parts[:-1] if is_package else rel.parts)
        scanned[module] = _absolute_imports(path.read_text(encoding="utf-8"), module, is_package)
    assert "freshllm.synthetic.ifeval_rows" in scanned["freshllm.synthetic.toyworld.instructions"]
    upward = {m: sorted(i for i in found if i == "freshllm.tasks" or i.startswith("freshllm.tasks."))
              for m, found in scanned.items()}
    assert not {m: i for m, i in upward.items() if i}


# --- the profile ---------------------------------------------------------------------------------

def test_profile_has_one_world_for_every_stage_and_dvc_expands_the_grid(tmp_path):
    """The world is one top-level key: every stage that builds from it gets the same one,
    also after `dvc exp run -S world.seed=...`, and no stage section names a world itself."""
    from dvc.utils.hydra import apply_overrides

    from freshllm.config import load_section
    from freshllm.crawl import CrawlConfig
    from freshllm.eval import EvalConfig
    from freshllm.models import ModelsConfig
    from freshllm.report import ReportConfig

    params = yaml.safe_load(PROFILE.read_text())
    assert params["world"] == {"kind": "toyworld", "seed": 0}
    for section in ("crawl", "eval", "report", *(f"models.{f}" for f in params["families"])):
        node = params
        for key in section.split("."):
            node = node[key]
        assert not {"world", "world_seed", "suite", "corpus", "embedded_world"} & set(node), section
    shutil.copy(PROFILE, tmp_path / "params.yaml")
    apply_overrides(str(tmp_path / "params.yaml"), ["world.seed=7"])
    stage_cfgs = [load_section(cls, sec, tmp_path / "params.yaml") for cls, sec in (
        (CrawlConfig, "crawl"), (EvalConfig, "eval"), (ReportConfig, "report"), (ModelsConfig, "models.toy"))]
    assert {(c.world.kind, c.world.seed) for c in stage_cfgs} == {("toyworld", 7)}
    assert {c.suite for c in stage_cfgs[1:3]} == {"toyworld"}
    (tmp_path / "params.yaml").unlink()
    out = dvc_stage_names(tmp_path, PROFILE)
    budgets = params["budgets"]
    assert {f"cpt@{v}-{b}" for v in ("base", "instruct") for b in budgets} <= set(out)
    assert {f"eval-res@toy-{b}" for b in budgets} | {"models@toy", "crawl", "report"} <= set(out)


# --- a shrunken toy world through the real stages -----------------------------------------------------

def shrunken_params() -> dict:
    p = copy.deepcopy(yaml.safe_load(PROFILE.read_text()))
    p["models"]["toy"].update(vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=2,
                              pretrain_docs=300, sft_examples=80, seq_len=64)
    for phase in ("pretrain", "sft"):
        p["models"]["toy"][phase].update(steps=8, batch_size=8, warmup_steps=1)
    p["crawl"].update(local_per_month=30, max_articles=80, min_articles=40)
    p["pack"].update(seq_len=64)
    p["cpt"]["train"].update(batch_size=4, save_every=0, warmup_steps=1)
    p["eval"].update(toy_ifeval_prompts=6, toy_d1_items=8, max_gen_toks=16, batch_size=8)
    p["budgets"] = ["2K"]
    return p


# eval metrics file -> model name, as dvc.yaml's eval stages write them
EVALS = {"base-toy": "base+toy", "instruct-toy": "instruct+toy", "cpt-base-2K": "cpt-base@2K",
         "cpt-instruct-2K": "cpt-instruct@2K", "res-toy-2K": "cpt-base-res+toy@2K"}


@pytest.fixture(scope="module")
def shrunken_run(tmp_path_factory, private_nltk_data):
    """`dvc repro` of the shrunken toy world in a temporary git repository: models -> crawl
    through fundus -> pack -> cpt x2 -> residual -> eval x5 on the toy suite -> report -> figures."""
    tmp = tmp_path_factory.mktemp("toyworld")
    work = tmp / "repo"
    work.mkdir()
    env = hermetic_env(tmp)
    copy_project(work)
    (work / "params.yaml").write_text(yaml.safe_dump(shrunken_params(), sort_keys=False))
    sh(["git", "init", "-q", "-b", "main"], work, env)
    sh(["git", "add", "-A"], work, env)
    sh(["git", "commit", "-qm", "shrunken toy world"], work, env)
    sh(["dvc", "repro"], work, env, timeout=1200)
    return work, env


@pytest.mark.e2e
def test_shrunken_world_models_are_a_base_instruct_pair(shrunken_run):
    tmp, _ = shrunken_run
    stats = json.loads((tmp / "metrics/models/toy.json").read_text())
    assert stats["world"] == "toyworld" and stats["sft_chats"] == 80 and stats["d1_documents"] == 300
    tok = json.loads((tmp / "models/toy/instruct/tokenizer_config.json").read_text())
    assert "chat_template" in tok or (tmp / "models/toy/instruct/chat_template.jinja").exists()


@pytest.mark.e2e
def test_shrunken_world_archive_is_parsed_by_fundus_and_is_d2(shrunken_run, world):
    tmp, _ = shrunken_run
    records = [json.loads(line) for line in (tmp / "data/articles.jsonl").read_text().splitlines()]
    metrics = json.loads((tmp / "metrics/crawl.json").read_text())
    assert 40 <= len(records) == metrics["articles"] <= 80
    assert set(metrics["per_language"]) == {"en"} and len(metrics["per_publisher"]) >= 3
    statements = [t.format(s=f.subject, o=f.object) for f in world.d2_facts() for t in tw.TEMPLATES[f.relation]]
    for r in records:  # every kept article is toy-world d2 news (the planted bad records are dropped)
        assert any(s in r["text"] for s in statements), r["text"][:200]
        assert r["published"].startswith("2024-0")


@pytest.mark.e2e
def test_shrunken_world_toy_tasks_are_scored_and_reported(shrunken_run):
    tmp, _ = shrunken_run
    evals = EVALS.values()
    for stem, name in EVALS.items():
        ev = json.loads((tmp / f"metrics/eval/{stem}.json").read_text())
        assert ev["model"] == name and ev["chat_template"] == ("instruct" in name or "res" in name)
        assert set(ev["results"]) == {"toy_ifeval", "toy_d2", "toy_d1", "fresh_bpb", "known_bpb"}
        assert set(ev["results"]["toy_ifeval"]) == {"inst_level_loose_acc", "inst_level_strict_acc",
                                                    "prompt_level_loose_acc", "prompt_level_strict_acc"}
        for task in ("toy_ifeval", "toy_d2", "toy_d1"):
            assert all(0 <= v <= 1 for v in ev["results"][task].values())
        for task in ("fresh_bpb", "known_bpb"):  # bits per byte: positive, finite
            assert 0 < ev["results"][task]["bits_per_byte"] < 100
        assert ev["config"]["n_samples"]["toy_d2"]["effective"] == 80
    summary = json.loads((tmp / "metrics/summary.json").read_text())
    assert set(summary["d2"]) == set(evals) and set(summary["knowledge_group"]) == set(evals)
    md = (tmp / "metrics/report.md").read_text()
    for text in ("Toy IFEval", "d2 news (new)", "d1 facts (kept)", "Sub-Average", "Figure 1"):
        assert text in md
    header = (tmp / "metrics/plots/residual.csv").read_text().splitlines()[0]
    scores = "ifeval,ifeval_group,knowledge_group,d2,d1,avg,fresh_bpb,known_bpb"
    assert header == "model,new_tokens," + scores + "," + ",".join(f"{c}_se" for c in scores.split(","))
    png = (tmp / "metrics/figures/figure1.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.e2e
def test_shrunken_world_budget_grid_as_queued_experiments(shrunken_run):
    """`dvc exp run --queue` over budgets, run by the queue worker: every experiment reports
    exactly its own grid (the committed 2K eval files are not carried into the 3K one), and
    the 2K experiment, identical to the commit, reuses the built stages."""
    work, env = shrunken_run
    sh(["git", "add", "-A"], work, env)
    sh(["git", "commit", "-qm", "built"], work, env)
    sh(["dvc", "exp", "run", "--queue", "-S", "budgets=[2K],[3K]"], work, env)
    sh(["dvc", "queue", "start", "-j", "1"], work, env)
    deadline = time.monotonic() + 900
    while True:
        status = sh(["dvc", "queue", "status"], work, env)
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        assert time.monotonic() < deadline, status
        time.sleep(1)
    assert status.count("Success") == 2, status
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], cwd=work, env=env, check=True,
                                      capture_output=True, text=True).stdout)
    exps = {}
    for entry in shown:
        for exp in entry.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                budgets = data["params"]["params.yaml"]["data"]["budgets"]
                exps[tuple(budgets)] = data["metrics"]["metrics/compare.json"]["data"]  # the DVC metrics
    assert set(exps) == {("2K",), ("3K",)}
    for (budget,), summary in exps.items():
        grid = {"base+toy", "instruct+toy", f"cpt-base@{budget}", f"cpt-instruct@{budget}",
                f"cpt-base-res+toy@{budget}"}
        assert set(summary["avg"]) == grid and set(summary["d2"]) == grid
