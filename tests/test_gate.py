"""The promotion gate of chained updates (freshllm.updates.gate): it decides on a validation
split of its own (toy IFEval validation prompts, the validation half of the held-out news),
never on the eval's test items; an absolute floor against the ancestor instruct model; a
retry list of residual settings, the best passing try promoted. Each is shown to change a
decision. The gate runs for real: tiny Llamas, the residual applied, freshllm.eval in-process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from freshllm.config import ConfigError, build_config
from freshllm.updates import gate as gate_mod
from freshllm.updates import gating
from freshllm.updates.config import ANCESTOR, Chain, PromoteConfig, Update
from freshllm.updates.gating import retry_configs

pytestmark = pytest.mark.usefixtures("private_nltk_data")

WORDS_VAL = "the mayor of Varnholm opened the bridge over the river Tessa at dawn".split()
WORDS_TEST = "a violinist from Orsk won the festival prize with seven quiet songs".split()


def _text(words: list[str], i: int) -> str:
    return " ".join(words[(i + k) % len(words)] for k in range(24)) + f" ({i})"


VAL_TEXTS = [_text(WORDS_VAL, i) for i in range(4)]
TEST_TEXTS = [_text(WORDS_TEST, i) for i in range(4)]


def _heldout(path: Path, window: str = "w1") -> Path:
    rows = ([{"text": t, "url": f"https://v/{i}", "window": window, "split": "validation"}
             for i, t in enumerate(VAL_TEXTS)]
            + [{"text": t, "url": f"https://t/{i}", "window": window, "split": "test"}
               for i, t in enumerate(TEST_TEXTS)])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _eval_cfg():
    from freshllm.eval import EvalConfig

    return build_config(EvalConfig, {
        "tasks": ["toy_ifeval", "toy_d2"], "world": {"kind": "toyworld", "seed": 0},
        "toy_ifeval_prompts": 4, "max_gen_toks": 8, "batch_size": 8, "device": "cpu",
        "bootstrap_iters": 0, "text": {"docs": 8, "max_chars": 400}}, "eval")


def _train_on(src: Path, out: Path, texts: list[str], steps: int = 60) -> Path:
    """``src`` trained hard on ``texts`` (a cpt-base that learned the window's news)."""
    import torch
    from transformers import AutoTokenizer

    from freshllm.io.hf import load_causal_lm, save_model_dir

    tok = AutoTokenizer.from_pretrained(str(src))
    model = load_causal_lm(src, dtype=torch.float32)
    model.train()
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = tok(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    for _ in range(steps):
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                     use_cache=False).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    save_model_dir(model, tok, out)
    return out


def _noisy(src: Path, tokenizer_dir: Path, out: Path, scale: float) -> Path:
    import torch
    from transformers import AutoTokenizer

    from freshllm.io.hf import load_causal_lm, save_model_dir

    model = load_causal_lm(src, dtype=torch.float32)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    save_model_dir(model, AutoTokenizer.from_pretrained(str(tokenizer_dir)), out)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_pair):
    """Base B; instruct pairs with a small (0.01) and a large (0.1) residual R; the window's
    cpt-base C = B trained on the validation news (it knows them, and nothing else)."""
    from freshllm.residual.config import ResidualConfig
    from freshllm.residual.extract import extract

    base, instruct = tiny_pair
    root = tmp_path_factory.mktemp("gate-world")
    big = _noisy(base, instruct, root / "instruct-big", 0.1)
    res = {}
    for name, inst in (("small", instruct), ("big", big)):
        extract(base, inst, root / f"residual-{name}", ResidualConfig())
        res[name] = (inst, root / f"residual-{name}")
    cpt = _train_on(base, root / "cpt-trained", VAL_TEXTS)
    return {"root": root, "base": base, "residuals": res, "cpt": cpt}


def _chain_case(tmp: Path, world: dict, which: str, alpha: float) -> dict:
    """A chain's first window: the ancestor node (root stage) of B and the ``which`` instruct,
    the window's cpt-base (C, with its card), the candidate (u-merge: C + alpha R, its card)."""
    from freshllm.cards import build_lineage, write_card
    from freshllm.residual.apply import apply
    from freshllm.residual.config import ResidualConfig
    from freshllm.updates.root import run as root_run

    instruct, residual = world["residuals"][which]
    anc = tmp / "models" / ANCESTOR
    root_run(world["base"], instruct, anc, tmp / "data/dedup", tmp / "data/heldout.jsonl",
             tmp / "metrics" / ANCESTOR / "promote.json")
    cpt = tmp / "models/w1/cpt-base"
    shutil.copytree(world["cpt"], cpt)
    write_card(cpt, build_lineage(cpt, "cpt-base", "w1", parent=anc / "cpt-base"))
    rcfg = build_config(ResidualConfig, {"alpha": alpha}, "residual")
    cand = tmp / "models/w1/cpt-base-res"
    apply(residual, cpt, cand, rcfg, base_dir=world["base"])
    write_card(cand, build_lineage(cand, "cpt-base-res", "w1", parent=cpt, residual=residual,
                                   params={"residual": {"alpha": alpha}}))
    return {"tmp": tmp, "anc": anc, "cpt": cpt, "cand": cand, "residual": residual, "rcfg": rcfg,
            "heldout": _heldout(tmp / "heldout.jsonl"),
            "chain": Chain([Update("w1", "2024-01-01", "2024-01-31", ANCESTOR)], ["main"])}


def _run_gate(case: dict, world: dict, cfg: PromoteConfig, **kw) -> dict:
    t = case["tmp"]
    return gating.gate(cfg, case["chain"], "w1", case["cand"], case["anc"] / "current",
                         t / "metrics" / ANCESTOR / "promote.json", t / "models/w1/current",
                         t / "metrics/w1/promote.json", eval_cfg=_eval_cfg(), residual_cfg=case["rcfg"],
                         heldout=case["heldout"], cpt_base=case["cpt"], residual=case["residual"],
                         residual_base=world["base"], **kw)


# instruction following of these random models is ~0 for all: the tests of the news checks
# switch the instruction check off with a huge allowance
NEWS_ONLY = dict(max_instruction_drop_se=1e6)


# --- (a) the retry list ----------------------------------------------------------------------

def test_retry_list_promotes_a_passing_setting_where_the_candidate_fails(tmp_path, world):
    """C + 3 R (a large residual) forgets the validation news the cpt-base learned: the candidate
    fails the fresh check against the ancestor instruct. Retries {alpha: 0.1} and {alpha: 0.2}
    keep them: the better one (lower validation bpb) is promoted, its card names the setting;
    a failing {alpha: 5.0} is recorded too. Without the retry list the incumbent is kept."""
    from freshllm.cards import read_lineage
    from freshllm.residual.artifact import weights_hash

    case = _chain_case(tmp_path / "with", world, "big", alpha=3.0)
    cfg = PromoteConfig(**NEWS_ONLY, val_ifeval_prompts=4, retry=[{"alpha": 5.0}, {"alpha": 0.2}, {"alpha": 0.1}])
    rec = _run_gate(case, world, cfg)
    tries = {t["try"]: t for t in rec["tries"]}
    assert list(tries) == ["candidate", "retry[0]", "retry[1]", "retry[2]"]
    assert not tries["candidate"]["passed"] and not tries["retry[0]"]["passed"]
    assert tries["retry[1]"]["passed"] and tries["retry[2]"]["passed"]
    for t in rec["tries"]:  # every try with its setting, its numbers, each check and the reason
        assert t["setting"]["alpha"] == {"candidate": 3.0, "retry[0]": 5.0, "retry[1]": 0.2, "retry[2]": 0.1}[t["try"]]
        assert t["validation"]["fresh_bpb"]["w1"]["bits_per_byte"] > 0 and t["checks"] and t["reasons"]
        fresh = next(c for c in t["checks"] if c["check"] == "fresh_bpb")
        assert fresh["candidate"] == t["fresh_bpb"] and fresh["incumbent"] == rec["validation"]["incumbent"][
            "fresh_bpb"]["w1"]["bits_per_byte"]
    best = min(("retry[1]", "retry[2]"), key=lambda k: tries[k]["fresh_bpb"])
    assert rec["promoted"] and rec["chosen"] == best and rec["setting"]["alpha"] == tries[best]["setting"]["alpha"]
    current = case["tmp"] / "models/w1/current"
    assert weights_hash(current) == tries[best]["weights_sha256"] == rec["current"]["weights_sha256"]
    lineage = read_lineage(current)
    assert lineage["gate"]["try"] == best and lineage["gate"]["override"] == {"alpha": tries[best]["setting"]["alpha"]}
    assert lineage["params"]["residual"]["alpha"] == tries[best]["setting"]["alpha"]
    assert lineage["parent"]["weights_sha256"] == weights_hash(case["cpt"]) and lineage["window"] == "w1"
    assert not list((case["tmp"] / "models/w1").glob(".current.gate-*"))  # the tries' models are gone
    assert json.loads((case["tmp"] / "metrics/w1/promote.json").read_text())["chosen"] == best
    # the same case without the retry list: the incumbent stays
    case2 = _chain_case(tmp_path / "without", world, "big", alpha=3.0)
    rec2 = _run_gate(case2, world, PromoteConfig(**NEWS_ONLY, val_ifeval_prompts=4))
    assert not rec2["promoted"] and rec2["chosen"] is None and [t["try"] for t in rec2["tries"]] == ["candidate"]
    assert weights_hash(case2["tmp"] / "models/w1/current") == weights_hash(case2["anc"] / "current")
    assert rec2["tries"][0]["fresh_bpb"] == pytest.approx(tries["candidate"]["fresh_bpb"])


def test_best_try_lowest_fresh_bpb_then_instruction_then_order():
    t = lambda passed, bpb, ifv: {"passed": passed, "fresh_bpb": bpb, "instruction": ifv}  # noqa: E731
    assert gate_mod.best_try([t(False, 0.1, 90), t(True, 0.5, 10), t(True, 0.4, 5)]) == 2
    assert gate_mod.best_try([t(False, 0.1, 90), t(True, 0.4, 10), t(True, 0.4, 30), t(True, 0.4, 30)]) == 2
    assert gate_mod.best_try([t(False, 0.1, 90)]) is None


def test_retry_entries_are_checked_by_name_before_any_work():
    from freshllm.residual.config import ResidualConfig

    with pytest.raises(ConfigError) as exc:
        retry_configs(ResidualConfig(), [{"alpha": 0.5, "colour": "red"}, {"alpha": "high"},
                                         {"method": "ties", "density": 1.5}, {"method": "nope"}])
    msg = str(exc.value)
    for part in ("promote.retry[0].colour: unknown key", "promote.retry[1].alpha: expected a number",
                 "promote.retry[2].density: must be in (0, 1]", "promote.retry[3].method:"):
        assert part in msg, msg
    cfgs = retry_configs(ResidualConfig(), [{"alpha": 0.5}, {"method": "dare", "density": 0.5, "modules": ["mlp"]}])
    assert cfgs[0].alpha == 0.5 and cfgs[1].method == "dare" and cfgs[1].alpha == 1.0 and cfgs[1].modules == ["mlp"]
    with pytest.raises(ConfigError, match="promote.retry.0.: empty|promote.retry\\[0\\]: empty"):
        build_config(PromoteConfig, {"retry": [{}]}, "promote")
    with pytest.raises(ConfigError, match="promote.val_ifeval_prompts: must be > 0"):
        build_config(PromoteConfig, {"val_ifeval_prompts": 0}, "promote")
    with pytest.raises(ConfigError, match="promote.min_instruction_kept: must be in"):
        build_config(PromoteConfig, {"min_instruction_kept": 0}, "promote")


def test_gate_stage_names_a_bad_retry_entry(tmp_path):
    from freshllm.updates.gating import main

    p = tmp_path / "params.yaml"
    p.write_text("chains: [main]\nupdates:\n  w1: {published_from: '2024-01-01', published_to: '2024-01-31', "
                 "prev: ancestor}\nresidual: {alpha: 1.0}\nworld: {kind: toyworld}\neval: {tasks: [toy_ifeval]}\n"
                 "promote: {retry: [{alpha: 0.5}, {alphaa: 0.5}]}\n")
    args = [f"--{a}={tmp_path / a}" for a in ("candidate", "incumbent", "cpt-base", "residual", "heldout",
                                             "prev-record", "out", "record")]
    with pytest.raises(SystemExit) as exc:
        main(["--params", str(p), "--window", "w1", *args])
    assert str(exc.value).startswith("updates: ") and "promote.retry[1].alphaa: unknown key" in str(exc.value)


# --- (b) the validation split -------------------------------------------------------------------

def test_gate_follows_the_validation_split_not_the_test_items(tmp_path, world):
    """The candidate (C + 0.1 R: the cpt-base knows the validation news, overfit) is better than
    the incumbent on the validation half and worse on the test half. The gate promotes it; the
    same checks on the test half's scores would have refused."""
    from freshllm.eval import run as eval_run

    case = _chain_case(tmp_path, world, "small", alpha=0.1)
    cfg = PromoteConfig(**NEWS_ONLY, val_ifeval_prompts=4)
    rec = _run_gate(case, world, cfg)
    assert rec["promoted"] and rec["chosen"] == "candidate" and len(rec["tries"]) == 1  # no retry needed
    assert rec["validation"]["news"]["documents"] == {"w1": len(VAL_TEXTS)}
    val_cand = rec["tries"][0]["validation"]["fresh_bpb"]["w1"]["bits_per_byte"]
    val_inc = rec["validation"]["incumbent"]["fresh_bpb"]["w1"]["bits_per_byte"]
    assert val_cand < val_inc
    # what the eval stages see: the test half only
    ecfg = _eval_cfg()
    tests = {}
    for name, model in (("candidate", case["cand"]), ("incumbent", case["anc"] / "current")):
        tests[name] = eval_run(ecfg, model, f"cpt-base-res+{name}@w1", tmp_path / f"{name}.json",
                               tmp_path / f"{name}.jsonl", texts={"fresh_bpb": case["heldout"]})
        assert tests[name]["config"]["texts"]["fresh_bpb"]["documents"] == len(TEST_TEXTS)
        assert "split" not in tests[name]["config"]
    test_cand = tests["candidate"]["windows"]["fresh_bpb"]["w1"]["bits_per_byte"]
    test_inc = tests["incumbent"]["windows"]["fresh_bpb"]["w1"]["bits_per_byte"]
    assert test_cand > test_inc  # the test items disagree ...
    on_test = gate_mod.decide(cfg, "w1", ["w1"], tests["candidate"], tests["incumbent"])
    assert not on_test["promote"]  # ... and a gate deciding on them would have kept the incumbent
    assert rec["ancestor_validation"]["scored_by"] == "w1"  # the first gate scored the ancestor instruct
    assert rec["ancestor_validation"]["instruction"] == rec["validation"]["incumbent"]["instruction"]


def test_validation_prompts_are_the_next_prompts_of_the_generator_and_disjoint():
    from freshllm.eval import prepare_ifeval_scoring
    from freshllm.tasks.toy import ifeval_split_rows, task_rows

    prepare_ifeval_scoring(0)
    test = task_rows("toy_ifeval", 0, 6)
    val = ifeval_split_rows(0, 6, 5, "validation")
    assert ifeval_split_rows(0, 6, 5, "test") == test and len(val) == 5
    assert not {r["prompt"] for r in val} & {r["prompt"] for r in test}
    assert not {r["key"] for r in val} & {r["key"] for r in test}
    assert task_rows("toy_ifeval", 0, 6, split="validation", val_ifeval_prompts=5) == val  # stable
    assert task_rows("toy_ifeval", 0, 11)[6:] == val  # the next prompts of the same generator
    with pytest.raises(ValueError, match="no 'validation' split"):
        task_rows("toy_d2", 0, split="validation")


def test_heldout_halves_are_disjoint_stable_and_about_half():
    from freshllm.tasks.text import SPLIT_FIELD
    from freshllm.updates.window import is_validation, split_heldout

    rows = [{"text": f"article {i}", "url": f"https://news/{i}"} for i in range(400)]
    flags = [is_validation(r["url"], r["text"]) for r in rows]
    assert flags == [is_validation(r["url"], "another text") for r in rows]  # by url alone
    assert 150 < sum(flags) < 250
    tagged = split_heldout(rows, 1000, "w")
    assert [r["url"] for r in tagged] == [r["url"] for r in rows]  # every article, once, in order
    assert [r[SPLIT_FIELD] == "validation" for r in tagged] == flags
    capped = split_heldout(rows, 10, "w")
    assert sum(r[SPLIT_FIELD] == "validation" for r in capped) == 10 == sum(r[SPLIT_FIELD] == "test" for r in capped)
    one_half = [r for r, f in zip(rows, flags) if f][:3]
    tagged = split_heldout(one_half, 10, "window w")  # no test article: no error, the window's test bpb is left out
    assert [r[SPLIT_FIELD] for r in tagged] == ["validation"] * 3
    assert split_heldout([], 10, "window w") == []


def test_a_window_with_no_validation_article_leaves_its_bpb_out_and_the_gate_decides_on_the_rest():
    """The own window has no held-out validation article: the fresh check is skipped, named in
    the reasons, and the instruction check alone decides (pass and fail); with fresh: all, the
    mean is over the windows that have some; a missing score of a window that HAS articles
    still fails."""
    cand, inc = _val(0.50, 0.02, 0.5), _val(0.50, 0.02, 0.9)
    for c in (cand, inc):
        c["windows"]["fresh_bpb"] = {"w2": {"bits_per_byte": c["windows"]["fresh_bpb"]["w3"]["bits_per_byte"],
                                            "stderr": 0.01}}  # w3 has no validation article
    news = {"w2": 12}
    d = gate_mod.decide(PromoteConfig(), "w3", ["w2", "w3"], cand, inc, news=news)
    fresh = {c["check"]: c for c in d["checks"]}["fresh_bpb"]
    assert d["promote"] and fresh["skipped"] and fresh["passed"]
    assert any("window w3 has no held-out validation article" in r for r in d["reasons"])
    worse = _val(0.30, 0.02, 0.5)
    worse["windows"] = cand["windows"]
    d = gate_mod.decide(PromoteConfig(), "w3", ["w2", "w3"], worse, inc, news=news)
    assert not d["promote"] and any("left out" in r for r in d["reasons"])  # decided on the rest, and says why
    d = gate_mod.decide(PromoteConfig(fresh="all", max_forget_se=2.0), "w3", ["w2", "w3"], cand, inc, news=news)
    checks = {c["check"]: c for c in d["checks"]}
    assert d["promote"] and checks["fresh_bpb"]["candidate"] == 0.5 and "left out: w3" in checks["fresh_bpb"]["reason"]
    # without the counts a missing window score is a failure, as before
    assert not gate_mod.decide(PromoteConfig(), "w3", ["w2", "w3"], cand, inc)["promote"]


def test_validation_file_of_a_chain_with_no_validation_article_yet(tmp_path):
    from freshllm.tasks.text import TextConfig

    p = tmp_path / "h.jsonl"
    p.write_text(json.dumps({"text": "only a test article", "window": "w1", "split": "test"}) + "\n")
    assert gating.validation_file(p, TextConfig(docs=10, max_chars=400), tmp_path / "v.jsonl")["documents"] == {}


def test_text_sets_read_their_split_only(tmp_path):
    from freshllm.tasks.text import TextConfig, TextDataError, load_windows

    cfg = TextConfig(docs=10, max_chars=400)
    p = _heldout(tmp_path / "h.jsonl")
    assert [t for t, _ in load_windows(p, cfg)] == TEST_TEXTS
    assert [t for t, _ in load_windows(p, cfg, split="validation")] == VAL_TEXTS
    p.write_text(json.dumps({"text": "x", "split": "train"}) + "\n")
    with pytest.raises(TextDataError, match="line 1: 'split' must be one of"):
        load_windows(p, cfg)


# --- (c) the absolute floor against the ancestor instruct model ------------------------------------

def _val(ifeval: float, se: float, bpb: float) -> dict:
    from freshllm.tasks import ALL_BENCHMARKS

    keys = [m.key for m in ALL_BENCHMARKS["toy_ifeval"].metrics]
    return {"model": "m", "config": {"suite_name": "toyworld", "split": "validation"},
            "results": {"toy_ifeval": {k: ifeval for k in keys}}, "stderr": {"toy_ifeval": {k: se for k in keys}},
            "windows": {"fresh_bpb": {"w3": {"bits_per_byte": bpb, "stderr": 0.01}}}}


def test_ancestor_floor_refuses_a_candidate_the_incumbent_check_passes():
    """The ratchet: the incumbent (promoted at 46, itself within 2 SE of the ancestor's 53) and a
    candidate at 44 that learned the news: within 2 SE of the incumbent, so the incumbent check
    passes, but below 0.9 x 53 less 2 SE: refused."""
    ancestor = {"instruction": 53.0, "instruction_se": 1.0}
    cand, inc = _val(0.44, 0.02, 0.5), _val(0.46, 0.02, 0.9)  # SE 1.0 on the mean of 4 metrics
    off = gate_mod.decide(PromoteConfig(), "w3", ["w3"], cand, inc, ancestor)
    assert off["promote"]  # without the floor (default null): promoted, the chain ratchets down
    on = gate_mod.decide(PromoteConfig(min_instruction_kept=0.9), "w3", ["w3"], cand, inc, ancestor)
    assert not on["promote"]
    checks = {c["check"]: c for c in on["checks"]}
    assert checks["instruction"]["passed"] and not checks["ancestor_floor"]["passed"]
    floor = checks["ancestor_floor"]
    assert floor["ancestor"] == 53.0 and floor["kept"] == 0.9 and floor["candidate"] == pytest.approx(44.0)
    assert floor["floor"] == pytest.approx(0.9 * 53 - 2 * (1.0 ** 2 + 0.9 ** 2) ** 0.5)
    assert any("absolute floor" in r for r in on["reasons"])
    assert gate_mod.decide(PromoteConfig(min_instruction_kept=0.8), "w3", ["w3"], cand, inc, ancestor)["promote"]
    assert not gate_mod.decide(PromoteConfig(min_instruction_kept=0.8), "w3", ["w3"], cand, inc, None)["promote"]


def test_a_later_gate_needs_the_ancestor_score_in_its_parents_record(tmp_path, world):
    from freshllm.common import write_json
    from freshllm.residual.config import ResidualConfig

    case = _chain_case(tmp_path, world, "small", alpha=0.1)
    prev = json.loads((tmp_path / "metrics/ancestor/promote.json").read_text())
    write_json(tmp_path / "w1.json", {**prev, "window": "w1"})  # an old record: no ancestor_validation
    chain = Chain([Update("w1", "2024-01-01", "2024-01-31", ANCESTOR),
                   Update("w2", "2024-02-01", "2024-02-29", "w1")], ["main"])
    with pytest.raises(gate_mod.GateError, match="has no ancestor_validation"):
        gating.gate(PromoteConfig(min_instruction_kept=0.9), chain, "w2", case["cand"], case["anc"] / "current",
                      tmp_path / "w1.json", tmp_path / "out", tmp_path / "rec.json", eval_cfg=_eval_cfg(),
                      residual_cfg=ResidualConfig(), heldout=case["heldout"], cpt_base=case["cpt"],
                      residual=case["residual"])


# --- the gate stage's outputs -----------------------------------------------------------------------

def test_a_failing_gate_keeps_the_previous_model_and_promote_serves_it(tmp_path, world):
    from freshllm.residual.artifact import weights_hash

    from freshllm.updates.window import crawl_losses

    case = _chain_case(tmp_path, world, "small", alpha=0.1)
    crawl = tmp_path / "crawl.json"  # the window's crawl lost 2 files and had no listing for a month
    crawl.write_text(json.dumps({"articles": 40, "failed_files": 2, "partial_files": 1,
                                 "missing_listings": ["2024-02"], "drops": {"too_short": 4}}))
    (tmp_path / "window.json").write_text(json.dumps({"crawl": crawl_losses(crawl)}))
    rec = _run_gate(case, world, PromoteConfig(**NEWS_ONLY, val_ifeval_prompts=4, min_fresh_bpb_gain=100.0),
                    window_metrics=tmp_path / "window.json")
    assert rec["crawl"]["lost_files"] == 2 and rec["crawl"]["partial_files"] == 1
    assert rec["crawl"]["drops"] == {"too_short": 4}
    assert ("the crawl of window w1 lost 2 files (could not be read; no listing for 2024-02): the update saw "
            "40 articles") in rec["reasons"]
    assert not rec["promoted"] and rec["current"]["window"] == ANCESTOR
    assert rec["reasons"][0].startswith("kept the incumbent: none of 1 tries")
    result = gate_mod.promote(case["chain"], tmp_path / "metrics", tmp_path / "models", tmp_path / "serve/current",
                              tmp_path / "promote.json")
    assert weights_hash(tmp_path / "serve/current") == weights_hash(case["anc"] / "current")
    assert result["current"]["window"] == ANCESTOR and not result["decisions"][-1]["promoted"]
    assert any("not lower by more than 100" in r for r in result["decisions"][-1]["reasons"])


def test_a_window_with_no_article_keeps_the_incumbent_and_says_why(tmp_path, world):
    from freshllm.residual.artifact import weights_hash

    case = _chain_case(tmp_path, world, "small", alpha=0.1)
    (tmp_path / "window.json").write_text(json.dumps({
        "no_new_articles": True, "reason": "window w1: the crawl found no article (2024-01-01 .. 2024-01-31)"}))
    rec = _run_gate(case, world, PromoteConfig(**NEWS_ONLY, val_ifeval_prompts=4),
                    window_metrics=tmp_path / "window.json")
    assert not rec["promoted"] and rec["no_new_articles"] and rec["tries"] == []
    assert rec["reasons"] == ["kept the incumbent: window w1: the crawl found no article (2024-01-01 .. 2024-01-31); "
                              "no update this window"]
    assert weights_hash(tmp_path / "models/w1/current") == weights_hash(case["anc"] / "current")
    assert rec["ancestor_validation"]["instruction"] is not None  # the next gate's floor still has its number
    result = gate_mod.promote(case["chain"], tmp_path / "metrics", tmp_path / "models", tmp_path / "serve/current",
                              tmp_path / "promote.json")
    assert result["current"]["window"] == ANCESTOR


# --- the chain report: what is served ------------------------------------------------------------------

def test_chain_report_shows_the_served_model_its_setting_tries_and_test_scores(tmp_path):
    from freshllm.common import write_json
    from freshllm.updates.report import render_served, served

    chain = Chain([Update("w1", "2024-01-01", "2024-01-31", ANCESTOR),
                   Update("w2", "2024-02-01", "2024-02-29", "w1")], ["main"])
    recs = {"w1": {"window": "w1", "promoted": True, "chosen": "retry[0]", "setting": {"alpha": 0.5, "method": "plain"},
                   "tries": [{}, {}], "current": {"window": "w1", "role": "cpt-base-res", "weights_sha256": "h1"}},
            "w2": {"window": "w2", "promoted": False, "chosen": None, "setting": None, "tries": [{}, {}, {}],
                   "current": {"window": "w1", "role": "cpt-base-res", "weights_sha256": "h1"}}}
    for w, rec in recs.items():
        write_json(tmp_path / w / "promote.json", rec)
        ev = _val(0.40, 0.02, 0.5)
        ev["config"].pop("split")
        ev["windows"]["fresh_bpb"] = {"w1": {"bits_per_byte": 0.5, "stderr": 0.01},
                                      "w2": {"bits_per_byte": 0.7, "stderr": 0.01}}
        write_json(tmp_path / w / "eval" / "current.json", ev)
    rows = served(chain, tmp_path)
    assert [(r["window"], r["served"], r["tries"], r["chosen"]) for r in rows] == [
        ("w1", "w1", 2, "retry[0]"), ("w2", "w1", 3, None)]
    assert rows[1]["setting"] == {"alpha": 0.5, "method": "plain"}  # w1's model, still served after w2
    assert rows[1]["bpb_own"] == 0.7 and rows[1]["bpb_mean"] == pytest.approx(0.6)
    assert rows[0]["ifeval"] == pytest.approx(40.0)
    text = render_served(rows)
    assert "| w2 | cpt-base-res @ w1 | alpha 0.5, method plain | 3 | none: incumbent kept | 40.00 ± 1.00 |" in text


# --- the plan sizes the gate -------------------------------------------------------------------------

def test_plan_sizes_the_gate_by_its_tries_and_the_served_eval(tmp_path):
    import yaml

    from freshllm.plan.stages import make_plan

    root = Path(__file__).resolve().parents[1]
    from conftest import profile_file

    params = yaml.safe_load(profile_file("updates-toyworld").read_text())
    rows = {}
    for n in (0, 3):
        params["promote"]["retry"] = [{"alpha": 0.5}] * n
        (tmp_path / f"p{n}.yaml").write_text(yaml.safe_dump(params))
        rows[n] = make_plan(tmp_path / f"p{n}.yaml", root / "dvc.yaml")
    g0, g3 = rows[0]["gate@2024-01"], rows[3]["gate@2024-01"]
    assert g0["device"] != "?" and g0["eval_tokens"]["evals"] == 2 and g3["eval_tokens"]["evals"] == 5
    assert g3["tokens"] == pytest.approx(g0["tokens"] * 5 / 2) and g0["io"]["applies"] == 0 and g3["io"]["applies"] == 3
    assert g3["bytes_moved"] == 3 * sum(g3["io"]["per_apply"].values()) and g0["bytes_moved"] == 0
    per_eval = g0["eval_tokens"]["per_eval"]["per_task"]
    assert list(per_eval) == ["toy_ifeval"] and per_eval["toy_ifeval"]["docs"] == params["promote"]["val_ifeval_prompts"]
    cur = rows[0]["u-eval-current@2024-01"]
    assert cur["kind"] == "eval" and cur["tokens"] > 0 and "data/updates/2024-01/eval_samples/current.jsonl" in cur["disk"]["outputs"]
    assert cur["disk"]["outputs"]["data/updates/2024-01/eval_samples/current.jsonl"]["bytes"] > 0
