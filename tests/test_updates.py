"""Chained updates (freshllm.updates, freshllm.cards): the chain's params, the window's
dedup and held-out news, the per-window scores, the toy world's monthly event slices, model
cards with lineage, and the promotion gate (a failing gate keeps the previous model)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from freshllm.config import ConfigError, load_section
from freshllm.updates import gate as gate_mod
from freshllm.updates.config import ANCESTOR, ChainConfig, PromoteConfig, load_chain
from conftest import profile_file, all_profiles  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROFILE = profile_file("updates-toyworld")

GOOD = """\
chains: [main]
updates:
  2024-01: {published_from: "2024-01-01", published_to: "2024-01-31", prev: ancestor}
  2024-02: {published_from: 2024-02-01, published_to: 2024-02-29, prev: 2024-01}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


# --- the chain's params ---------------------------------------------------------------------------

def test_chain_reads_windows_in_order_and_unquoted_dates(tmp_path):
    chain = load_chain(write(tmp_path, GOOD))
    assert chain.windows == ["2024-01", "2024-02"]
    assert chain.get("2024-02").published_from == "2024-02-01"  # a YAML date, as its ISO string
    assert chain.earlier("2024-02") == ["2024-01", "2024-02"] and chain.get("2024-01").prev == ANCESTOR


def test_chain_names_every_bad_entry_at_once(tmp_path):
    bad = """\
chains: [main]
updates:
  2024-01: {published_from: "2024-01-01", published_to: "2024-01-31", prev: 2023-12}
  2024-02: {published_from: "2024-01-15", published_to: "2024-02-29", prev: 2024-03, colour: red}
  2024-03: {published_from: "2024-03-40", published_to: "2024-03-31", prev: 2024-02}
  bad/name: {published_from: "2024-04-01", published_to: "2024-04-30", prev: 2024-03}
"""
    with pytest.raises(ConfigError) as exc:
        load_chain(write(tmp_path, bad))
    msg = str(exc.value)
    for part in ("updates.2024-01.prev: must be 'ancestor'", "updates.2024-02.prev: must be '2024-01'",
                 "updates.2024-02.colour: unknown key", "updates.2024-02: window 2024-01-15..2024-02-29 does not start",
                 "updates.2024-03.published_from: expected a date", "updates.bad/name.window"):
        assert part in msg, msg


def test_chain_needs_its_chain_level_stages_and_the_key(tmp_path):
    with pytest.raises(ConfigError, match="chains: empty"):
        load_chain(write(tmp_path, GOOD.replace("chains: [main]", "chains: []")))
    with pytest.raises(ConfigError, match="updates: missing"):
        load_chain(write(tmp_path, "chains: []\n"))
    assert load_chain(write(tmp_path, "updates: {}\nchains: []\n")).windows == []


@pytest.mark.parametrize("path", all_profiles(),
                         ids=lambda p: p.name)
def test_every_profile_has_a_valid_chain_or_none(path):
    chain = load_chain(path)
    if path.name.startswith("updates"):  # updates-toyworld.yaml, updates6-toyworld.yaml
        assert len(chain.windows) >= 3 and chain.chains == ["main"]
        cfg = load_section(ChainConfig, "chain", path)
        from freshllm.cpt import CptConfig
        from freshllm.names import load_grid

        assert cfg.residual_source in load_grid(path).residual_sources
        load_section(CptConfig, "chain.cpt", path)
        load_section(PromoteConfig, "promote", path)
    else:
        assert chain.windows == [] and chain.chains == []


def test_add_appends_the_next_month_keeping_comments(tmp_path):
    from freshllm.updates.__main__ import add_month

    p = write(tmp_path, "# my chain\n" + GOOD + "other: 1  # kept\n")
    entry = add_month(p, "2024-03")
    assert entry == {"published_from": "2024-03-01", "published_to": "2024-03-31", "prev": "2024-02"}
    text = p.read_text()
    assert "# my chain" in text and "# kept" in text
    assert load_chain(p).windows == ["2024-01", "2024-02", "2024-03"]
    empty = tmp_path / "empty.yaml"
    empty.write_text("updates: {}\nchains: [main]\n")
    assert add_month(empty, "2024-02")["prev"] == ANCESTOR
    with pytest.raises(ConfigError, match="not a month"):
        add_month(p, "2024-13")
    with pytest.raises(ConfigError, match="already in updates"):
        add_month(p, "2024-02")
    with pytest.raises(ConfigError, match="does not start after"):  # a month before the last
        add_month(p, "2023-12")
    with pytest.raises(ConfigError, match="2024-05 does not follow the last month 2024-03: the next one is 2024-04"):
        add_month(p, "2024-05")  # a gap
    assert load_chain(p).windows == ["2024-01", "2024-02", "2024-03"]  # unchanged by the refusal


def test_stage_errors_are_one_line_naming_the_key(tmp_path):
    from freshllm.updates.__main__ import main

    p = write(tmp_path, GOOD)
    args = ["--articles", "a", "--prev-dedup", "b", "--prev-heldout", "c", "--tokenizer", "d", "--dedup-out", "e",
            "--heldout-out", "f", "--packed-out", "g", "--replay-out", "h", "--metrics", "i"]
    with pytest.raises(SystemExit) as exc:
        main(["--params", str(p), "window", "--window", "2024-05", "--prev", "2024-02", *args])
    assert str(exc.value).startswith("updates: ") and "2024-05: not an update window" in str(exc.value)
    with pytest.raises(SystemExit) as exc:
        main(["--params", str(p), "window", "--window", "2024-02", "--prev", "ancestor", *args])
    assert "updates.2024-02.prev: is '2024-01', the command line says 'ancestor'" in str(exc.value)
    with pytest.raises(SystemExit) as exc:
        main(["--params", str(write(tmp_path, GOOD.replace("prev: 2024-01", "prev: 2023-12"))), "report",
              "--records", "r", "--markdown", "m", "--summary", "s", "--compare", "c", "--csv", "x", "--figure", "y"])
    assert "updates.2024-02.prev: must be '2024-01'" in str(exc.value)


# --- the window: dedup against earlier windows, held-out news, history ------------------------------

def _articles(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w") as fh:
        for url, text in rows:
            fh.write(json.dumps({"url": url, "text": text, "published": "2024-02-01"}) + "\n")
    return path


def test_dedup_drops_what_an_earlier_window_had_by_url_or_text(tmp_path):
    from freshllm.pack import text_digest
    from freshllm.updates.window import dedup, url_key

    seen_urls, seen_texts = {url_key("https://a/1")}, {text_digest("old text").hex()}
    src = _articles(tmp_path / "a.jsonl", [("https://a/1", "a new text at an old url"),
                                            ("https://a/2", "old text"),
                                            ("https://a/3", "fresh one"),
                                            ("https://a/3", "fresh one, same url again"),
                                            ("https://a/4", "fresh one"),
                                            ("https://a/5", "fresh two")])
    counts = dedup(src, seen_urls, seen_texts, "text", tmp_path / "out.jsonl")
    kept = [json.loads(x)["url"] for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert kept == ["https://a/3", "https://a/5"]
    assert counts == {"articles": 6, "kept": 2, "earlier_url": 1, "earlier_text": 1, "repeated": 2}
    assert url_key("https://a/5") in seen_urls and text_digest("fresh two").hex() in seen_texts


def _window_world(tmp_path, tokenizers_pair, ancestor: str, **chain):
    """(tokenizer dir, pack / eval.text / chain configs, an empty ancestor node) for window runs."""
    from freshllm.config import build_config
    from freshllm.pack import PackConfig
    from freshllm.tasks.text import TextConfig

    tok_dir = tmp_path / "tok"
    tokenizers_pair[0].save_pretrained(str(tok_dir))
    (tok_dir / "config.json").write_text("{}")
    pack_cfg = build_config(PackConfig, {"seq_len": 32, "val_fraction": 0.2}, "pack")
    text_cfg = build_config(TextConfig, {"docs": 100, "max_chars": 200}, "eval.text")
    chain_cfg = build_config(ChainConfig, {"residual_source": "toy", "tokens": "200", **chain}, "chain")
    anc = tmp_path / ancestor
    (anc / "dedup").mkdir(parents=True)
    (anc / "dedup" / "seen.json").write_text('{"urls": [], "texts": []}')
    (anc / "dedup" / "history.jsonl").write_text("")
    (anc / "heldout.jsonl").write_text("")
    return tok_dir, pack_cfg, text_cfg, chain_cfg, anc


def test_window_stage_chains_seen_history_heldout_and_replay(tmp_path, tokenizers_pair):
    from freshllm.io.packed import PackedData
    from freshllm.pack import is_heldout
    from freshllm.tasks.text import load_windows
    from freshllm.updates.config import Update
    from freshllm.updates.window import run as window_run

    tok_dir, pack_cfg, text_cfg, chain_cfg, anc = _window_world(tmp_path, tokenizers_pair, "anc")
    words = "the town of Varnholm lies on the river Tessa and people there play the violin".split()

    def text(i: int) -> str:
        return " ".join(words[(i + k) % len(words)] for k in range(30)) + f" number {i}"

    outs = {}
    for w, prev, rows in (("w1", anc, [(f"https://x/{i}", text(i)) for i in range(40)]),
                          ("w2", tmp_path / "w1", [(f"https://x/{i}", text(i)) for i in range(30, 70)])):
        out = tmp_path / w
        articles = _articles(tmp_path / f"{w}.jsonl", rows)
        outs[w] = window_run(Update(w, "2024-01-01", "2024-01-31", "x"), chain_cfg, pack_cfg, text_cfg,
                             articles, prev / "dedup", prev / "heldout.jsonl", tok_dir,
                             out / "dedup", out / "heldout.jsonl", out / "packed", out / "replay")
    assert outs["w1"]["dedup"]["kept"] == 40 and outs["w2"]["dedup"]["kept"] == 30  # 30..39 were in w1
    assert outs["w2"]["dedup"]["earlier_url"] == 10
    assert outs["w1"]["replay"] == {"empty": True} and len(PackedData.open(tmp_path / "w1/replay/train")) == 0
    assert len(PackedData.open(tmp_path / "w2/replay/train")) > 0  # w1's history
    history = [json.loads(x) for x in (tmp_path / "w2/dedup/history.jsonl").read_text().splitlines()]
    assert len(history) == len({r["url"] for r in history}) == 70 - sum(
        is_heldout(f"https://x/{i}", text(i), 0.2) for i in range(70))
    assert not any(is_heldout(r["url"], r["text"], 0.2) for r in history)  # replay never trains on held-out news
    held = load_windows(tmp_path / "w2/heldout.jsonl", text_cfg)  # the eval's (test) half
    val = load_windows(tmp_path / "w2/heldout.jsonl", text_cfg, split="validation")  # the gate's
    assert {w for _, w in held} == {w for _, w in val} == {"w1", "w2"} and len(held) + len(val) == sum(
        is_heldout(f"https://x/{i}", text(i), 0.2) for i in range(70))
    assert not {t for t, _ in held} & {t for t, _ in val}
    seen = json.loads((tmp_path / "w2/dedup/seen.json").read_text())
    assert len(seen["urls"]) == 70


@pytest.mark.parametrize("cpt_from", ["previous", "ancestor"])
def test_a_month_with_no_article_carries_the_parent_and_trains_nothing(tmp_path, tokenizers_pair, tiny_pair, cpt_from):
    """w1 has articles, w2's crawl found none: w2's window carries w1's dedup index, history and
    held-out news unchanged and marks its packed data (re-rooted: w1's union, kept for the next
    window); its cpt starts from w1's model in either mode and cpt copies it (no training, the
    reason in the metrics)."""
    from freshllm import cpt as cpt_mod
    from freshllm.common import weights_hash
    from freshllm.io.packed import no_new_articles
    from freshllm.updates.config import Chain, Update
    from freshllm.updates.start import start_model
    from freshllm.updates.window import run as window_run

    tok_dir, pack_cfg, text_cfg, chain_cfg, anc = _window_world(tmp_path, tokenizers_pair, "ancestor", cpt_from=cpt_from)
    from freshllm.updates.window import _empty_pack

    _empty_pack(anc / "packed", 32)
    words = "the town of Varnholm lies on the river Tessa and people there play the violin".split()
    rows = [(f"https://x/{i}", " ".join(words[(i + k) % len(words)] for k in range(30)) + f" n {i}") for i in range(40)]
    w1 = window_run(Update("w1", "2024-01-01", "2024-01-31", "ancestor"), chain_cfg, pack_cfg, text_cfg,
                    _articles(tmp_path / "w1.jsonl", rows), anc / "dedup", anc / "heldout.jsonl", tok_dir,
                    tmp_path / "w1/dedup", tmp_path / "w1/heldout.jsonl", tmp_path / "w1/packed",
                    tmp_path / "w1/replay", prev_packed=anc / "packed")
    empty = tmp_path / "w2.jsonl"
    empty.write_text("")
    w2 = window_run(Update("w2", "2024-02-01", "2024-02-29", "w1"), chain_cfg, pack_cfg, text_cfg, empty,
                    tmp_path / "w1/dedup", tmp_path / "w1/heldout.jsonl", tok_dir, tmp_path / "w2/dedup",
                    tmp_path / "w2/heldout.jsonl", tmp_path / "w2/packed", tmp_path / "w2/replay",
                    prev_packed=tmp_path / "w1/packed")
    assert w2["no_new_articles"] and "the crawl found no article" in w2["reason"] and w1["dedup"]["kept"] == 40
    for f in ("dedup/seen.json", "dedup/history.jsonl", "heldout.jsonl"):
        assert (tmp_path / "w2" / f).read_bytes() == (tmp_path / "w1" / f).read_bytes(), f
    assert no_new_articles(tmp_path / "w2/packed") and not no_new_articles(tmp_path / "w1/packed")
    if cpt_from == "ancestor":  # the union so far, for the next window
        assert (tmp_path / "w2/packed/train/input_ids.bin").read_bytes() == \
            (tmp_path / "w1/packed/train/input_ids.bin").read_bytes()
    # the start model: the parent's, in either mode
    models = tmp_path / "models"
    for node in ("ancestor", "w1"):
        shutil.copytree(tiny_pair[0], models / node / "cpt-base")
    chain = Chain([Update("w1", "2024-01-01", "2024-01-31", "ancestor"), Update("w2", "2024-02-01", "2024-02-29", "w1")], ["main"])
    start = start_model(chain, chain_cfg, "w2", "w1", "base", models, packed=tmp_path / "w2/packed")
    assert start == models / "w1" / "cpt-base"
    assert start_model(chain, chain_cfg, "w2", "w1", "base", models) == models / (
        "ancestor" if cpt_from == "ancestor" else "w1") / "cpt-base"
    # cpt copies it: same weights, metrics say why
    params = tmp_path / "params.yaml"
    params.write_text("cpt: {lr: {base: 0.001, instruct: 0.001}, train: {steps: 3, batch_size: 2}}\n")
    cpt_mod.main(["--params", str(params), "--variant", "base", "--model", str(start), "--data",
                  str(tmp_path / "w2/packed"), "--out", str(tmp_path / "out"), "--metrics", str(tmp_path / "m.json"),
                  "--ckpt-dir", str(tmp_path / "ck")])
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["steps"] == 0 and "no_new_articles" in m["skipped"] and m["runtime"]["threads"] >= 1
    assert weights_hash(tmp_path / "out") == weights_hash(start)


def test_text_sets_cap_documents_per_window(tmp_path):
    from freshllm.config import build_config
    from freshllm.tasks.text import TextConfig, load, load_windows

    cfg = build_config(TextConfig, {"docs": 2, "max_chars": 100}, "eval.text")
    p = tmp_path / "h.jsonl"
    rows = [{"text": f"a{i}", "window": "w1"} for i in range(3)] + [{"text": f"b{i}", "window": "w2"} for i in range(3)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_windows(p, cfg) == [("a0", "w1"), ("a1", "w1"), ("b0", "w2"), ("b1", "w2")]
    p.write_text("".join(json.dumps({"text": f"c{i}"}) + "\n" for i in range(5)))
    assert load(p, cfg) == ["c0", "c1"]  # without windows: as before, docs in all


def test_per_window_scores_from_samples():
    import math

    from freshllm.eval.windows import fresh_windows, quiz_slices
    from freshllm.synthetic import toyworld

    samples = [{"doc": {"text": "a"}, "bits_per_byte": [-2.0 * math.log(2), 2]},
               {"doc": {"text": "b"}, "bits_per_byte": [-6.0 * math.log(2), 2]},
               {"doc": {"text": "c"}, "bits_per_byte": [-1.0 * math.log(2), 4]}]
    out = fresh_windows(samples, {"a": "w1", "b": "w1", "c": "w2"}, 200, 0)
    assert out["w1"]["bits_per_byte"] == pytest.approx(2.0) and out["w1"]["documents"] == 2
    assert out["w2"]["bits_per_byte"] == pytest.approx(0.25) and out["w2"]["stderr"] is None  # one document
    world = toyworld.make_world(0)
    s0, s1, _ = toyworld.d2_slices(world, 3)
    f0, f1 = s0[0], s1[0]
    quiz = [{"doc": {"fact": [f0.relation, f0.subject, f0.object]}, "acc": 1.0},
            {"doc": {"fact": [f0.relation, f0.subject, f0.object]}, "acc": 0.0},
            {"doc": {"fact": [f1.relation, f1.subject, f1.object]}, "acc": 1.0}]
    q = quiz_slices(quiz, 0, 3)
    assert q["slice-0"]["acc"] == 0.5 and q["slice-0"]["items"] == 2 and q["slice-1"]["acc"] == 1.0


# --- the toy world's monthly slices ------------------------------------------------------------------

def test_toy_world_slices_split_the_d2_events_and_months_report_their_own():
    from datetime import date

    from freshllm.synthetic import toyworld

    world = toyworld.make_world(0)
    slices = toyworld.d2_slices(world, 3)
    flat = [f for s in slices for f in s]
    assert sorted(map(str, flat)) == sorted(map(str, world.d2_facts())) and len(set(flat)) == len(flat)
    assert {len(s) for s in slices} == {16}
    assert [toyworld.d2_slice_of_month(m, 3) for m in ("2024-01", "2024-02", "2024-03", "2024-04")] == [0, 1, 2, 0]
    feb = toyworld.d2_articles(world, 40, date(2024, 2, 1), date(2024, 2, 29), facts=slices[1])
    names = {f.object if f.relation == "prize" else f.subject for f in slices[0] if f.relation in ("prize", "festival")}
    assert not any(n in a.text for a in feb for n in names)  # February never reports January's prizes/festivals
    # one slice: exactly the articles of before (the default profile's crawl is unchanged)
    a = toyworld.d2_articles(world, 30, date(2024, 1, 1), date(2024, 1, 31))
    b = toyworld.d2_articles(world, 30, date(2024, 1, 1), date(2024, 1, 31), facts=toyworld.d2_slices(world, 1)[0])
    assert [x.text for x in a] == [x.text for x in b]


def test_world_slices_validate():
    from freshllm.config import WorldConfig, build_config

    with pytest.raises(ConfigError, match="d2_slices: must be in 1..12"):
        build_config(WorldConfig, {"kind": "toyworld", "d2_slices": 0}, "world")
    with pytest.raises(ConfigError, match="only the toyworld"):
        build_config(WorldConfig, {"kind": "news", "d2_slices": 2}, "world")


# --- model cards -------------------------------------------------------------------------------------

@pytest.fixture
def chain_models(tmp_path, tiny_pair):
    """The ancestor node (root stage) and two 'updates' made by copying the pair."""
    from freshllm.updates.root import run as root_run

    base, instruct = tiny_pair
    root = tmp_path / "models"
    rec = root_run(base, instruct, root / ANCESTOR, tmp_path / "data/dedup", tmp_path / "data/heldout.jsonl",
                   tmp_path / "metrics/ancestor/promote.json")
    return tmp_path, rec


def test_cards_name_parents_by_hash_and_inherit_the_ancestors(chain_models, tiny_pair):
    from freshllm.cards import build_lineage, read_lineage, write_card
    from freshllm.residual.artifact import weights_hash

    tmp, rec = chain_models
    base, instruct = tiny_pair
    anc = tmp / "models" / ANCESTOR
    lin = read_lineage(anc / "cpt-base")
    assert lin["role"] == "ancestor-base" and lin["ancestors"] == {"base": weights_hash(base),
                                                                  "instruct": weights_hash(instruct)}
    assert rec["current"]["weights_sha256"] == weights_hash(instruct) and rec["promoted"]
    child = tmp / "child"
    shutil.copytree(base, child)
    data = tmp / "packed"
    data.mkdir()
    (data / "info.json").write_text("{}")
    write_card(child, build_lineage(child, "cpt-base", "2024-01", parent=anc / "cpt-base", data=data,
                                    params={"chain.cpt": {"lr": 1}}))
    grand = tmp / "grand"
    shutil.copytree(child, grand)
    (grand / "README.md").unlink()
    write_card(grand, build_lineage(grand, "cpt-base", "2024-02", parent=child))
    g = read_lineage(grand)
    assert g["parent"]["weights_sha256"] == weights_hash(child) and g["parent"]["window"] == "2024-01"
    assert g["ancestors"] == lin["ancestors"]
    assert [c["window"] for c in g["chain"]] == [None, "2024-01"]
    text = (child / "README.md").read_text()
    assert text.startswith("---\n") and "base_model: " + str(anc / "cpt-base") in text
    assert weights_hash(anc / "cpt-base") in text and "chain.cpt" in text
    (grand / "README.md").unlink()
    from freshllm.cards import CardError

    with pytest.raises(CardError, match="no model card"):
        build_lineage(tmp / "x", "cpt-base", "2024-03", parent=grand)


# --- the promotion gate ---------------------------------------------------------------------------------

def _eval(ifeval: float, se: float, bpb: dict[str, float], model_hash: str = "h") -> dict:
    from freshllm.tasks import ALL_BENCHMARKS

    keys = [m.key for m in ALL_BENCHMARKS["toy_ifeval"].metrics]
    return {"model": "m", "model_hash": model_hash, "config": {"suite_name": "toyworld"},
            "results": {"toy_ifeval": {k: ifeval for k in keys}},
            "stderr": {"toy_ifeval": {k: se for k in keys}},
            "windows": {"fresh_bpb": {w: {"bits_per_byte": v, "stderr": 0.01, "documents": 10}
                                      for w, v in bpb.items()}}}


CFG = PromoteConfig()


def test_gate_promotes_when_instruction_holds_and_the_news_is_learned():
    d = gate_mod.decide(CFG, "w2", ["w1", "w2"], _eval(0.50, 0.02, {"w1": 0.5, "w2": 0.6}),
                        _eval(0.52, 0.02, {"w1": 0.5, "w2": 0.9}))
    assert d["promote"] and d["reasons"][0].startswith("promoted")


@pytest.mark.parametrize("candidate, why", [
    (_eval(0.40, 0.02, {"w1": 0.5, "w2": 0.6}), "instruction following 40.00"),  # 12 points below, SE 2.8
    (_eval(0.52, 0.02, {"w1": 0.5, "w2": 0.95}), "not lower"),
    (_eval(0.52, 0.02, {"w1": 0.5}), "missing"),
])
def test_gate_keeps_the_incumbent_and_says_why(candidate, why):
    d = gate_mod.decide(CFG, "w2", ["w1", "w2"], candidate, _eval(0.52, 0.02, {"w1": 0.5, "w2": 0.9}))
    assert not d["promote"] and d["reasons"][0].startswith("kept the incumbent")
    assert any(why in r for r in d["reasons"][1:]), d["reasons"]


def test_gate_forgetting_check_and_the_mean_over_windows():
    inc = _eval(0.5, 0.02, {"w1": 0.5, "w2": 0.9})
    cand = _eval(0.5, 0.02, {"w1": 0.7, "w2": 0.6})  # learned w2, forgot w1
    assert gate_mod.decide(CFG, "w2", ["w1", "w2"], cand, inc)["promote"]
    strict = PromoteConfig(max_forget_se=2.0)
    d = gate_mod.decide(strict, "w2", ["w1", "w2"], cand, inc)
    assert not d["promote"] and any("window w1 kept" in r for r in d["reasons"])
    # the mean over both windows: 0.65 vs the incumbent's 0.70
    assert gate_mod.decide(PromoteConfig(fresh="all", min_fresh_bpb_gain=0.04), "w2", ["w1", "w2"], cand, inc)["promote"]
    assert not gate_mod.decide(PromoteConfig(fresh="all", min_fresh_bpb_gain=0.06), "w2", ["w1", "w2"],
                               cand, inc)["promote"]


# the gate stage itself (validation split, ancestor floor, retries, what it writes): tests/test_gate.py


# --- a shrunken chain through the real stages (dvc repro) -----------------------------------------------

def shrunken_chain_params() -> dict:
    """The chain profile shrunk to seconds per stage, with one window (a test adds the next)."""
    import copy

    import yaml

    p = copy.deepcopy(yaml.safe_load(PROFILE.read_text()))
    p["models"]["toy"].update(vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=2,
                              pretrain_docs=300, sft_examples=80, seq_len=64)
    for phase in ("pretrain", "sft"):
        p["models"]["toy"][phase].update(steps=8, batch_size=8, warmup_steps=1)
    p["crawl"].update(local_per_month=40, max_articles=40, min_articles=20)
    p["pack"].update(seq_len=64, val_fraction=0.2)
    p["chain"]["tokens"] = "1K"
    p["chain"]["cpt"]["train"].update(batch_size=4, save_every=0, warmup_steps=1, replay_fraction=0.25)
    p["eval"].update(toy_ifeval_prompts=6, toy_d1_items=8, max_gen_toks=16, batch_size=8)
    p["eval"]["text"].update(docs=4, max_chars=400)
    p["promote"].update(val_ifeval_prompts=4, retry=[{"alpha": 0.5}])
    p["updates"] = {"2024-01": p["updates"]["2024-01"]}
    return p


CHAIN_TARGETS = ["promote@main", "chain-report@main"]


@pytest.fixture(scope="module")
def shrunken_chain(tmp_path_factory, private_nltk_data):
    """`dvc repro` of the chain-level targets with one window, in a temporary git repository
    running the copied code (PYTHONPATH: its src)."""
    import yaml

    from conftest import copy_project, hermetic_env, sh

    tmp = tmp_path_factory.mktemp("chain")
    work = tmp / "repo"
    work.mkdir()
    env = hermetic_env(tmp)
    env["PYTHONPATH"] = str(work / "src")
    copy_project(work)
    (work / "params.yaml").write_text(yaml.safe_dump(shrunken_chain_params(), sort_keys=False))
    sh(["git", "init", "-q", "-b", "main"], work, env)
    sh(["git", "add", "-A"], work, env)
    sh(["git", "commit", "-qm", "shrunken chain"], work, env)
    first = sh(["dvc", "repro", *CHAIN_TARGETS], work, env, timeout=900)
    return work, env, first


def _ran(log: str) -> set[str]:
    import re

    return set(re.findall(r"Running stage '([^']+)'", log))


@pytest.mark.e2e
def test_chain_runs_and_every_model_card_names_its_parents(shrunken_chain):
    from freshllm.cards import read_lineage
    from freshllm.residual.artifact import weights_hash

    work, _, first = shrunken_chain
    assert {"chain-root@main", "u-cpt-base@2024-01", "gate@2024-01", "promote@main"} <= _ran(first)
    assert not any(s.startswith(("cpt@", "eval-cpt@", "report")) for s in _ran(first))  # the chain only
    u = work / "models/updates/2024-01"
    merged, cpt_base = read_lineage(u / "cpt-base-res"), read_lineage(u / "cpt-base")
    assert merged["parent"]["weights_sha256"] == weights_hash(u / "cpt-base")
    assert cpt_base["parent"]["weights_sha256"] == weights_hash(work / "models/toy/base")
    assert merged["ancestors"] == {"base": weights_hash(work / "models/toy/base"),
                                   "instruct": weights_hash(work / "models/toy/instruct")}
    assert merged["residual"]["base_weights_sha256"] == weights_hash(work / "models/toy/base")
    assert cpt_base["data"]["window"] == "2024-01" and len(cpt_base["data"]["corpus_sha256"]) == 64
    assert cpt_base["params"]["chain.cpt"]["train"]["replay_fraction"] == 0.25
    ev = json.loads((work / "metrics/updates/2024-01/eval/cpt-base-res.json").read_text())
    assert set(ev["windows"]["fresh_bpb"]) == {"2024-01"} and ev["windows"]["toy_d2"]["slices"] == 3
    decision = json.loads((work / "metrics/promote.json").read_text())
    assert [d["window"] for d in decision["decisions"]] == ["ancestor", "2024-01"]
    gate_rec = json.loads((work / "metrics/updates/2024-01/promote.json").read_text())
    assert gate_rec["validation"]["val_ifeval_prompts"] == 4 and gate_rec["ancestor_validation"]["scored_by"] == "2024-01"
    assert gate_rec["tries"][0]["try"] == "candidate" and len(gate_rec["tries"]) in (1, 2)
    held = [json.loads(x) for x in (work / "data/updates/2024-01/heldout.jsonl").read_text().splitlines()]
    assert {r["split"] for r in held} == {"validation", "test"}
    assert ev["config"]["texts"]["fresh_bpb"]["documents"] == sum(r["split"] == "test" for r in held)
    served = json.loads((work / "metrics/updates/2024-01/eval/current.json").read_text())
    assert served["model"] == "cpt-base-res+current@2024-01"
    if weights_hash(u / "current") == weights_hash(u / "cpt-base-res"):  # the candidate as is: its record, copied
        assert served["reused_from"] == {"record": "metrics/updates/2024-01/eval/cpt-base-res.json", "model": ev["model"]}
        assert served["results"] == ev["results"]
    elif weights_hash(u / "current") == weights_hash(work / "models/updates/ancestor/current"):  # the incumbent kept
        assert served["reused_from"]["record"] == "metrics/updates/2024-01/eval/incumbent.json"
    else:  # a retry setting's merge: a model no other stage scored
        assert "reused_from" not in served
    assert "## What is served" in (work / "metrics/chain/report.md").read_text()
    assert weights_hash(work / "models/current") == decision["current"]["weights_sha256"]
    assert (work / "models/current/README.md").is_file()
    cpt = json.loads((work / "metrics/updates/2024-01/cpt-base.json").read_text())
    assert 0 < cpt["new_tokens_seen"] == cpt["tokens_seen"]  # the first update has no earlier window to replay


@pytest.mark.e2e
def test_adding_a_month_reruns_only_that_month(shrunken_chain):
    from freshllm.cards import read_lineage
    from freshllm.residual.artifact import weights_hash

    from conftest import sh

    work, env, _ = shrunken_chain
    sh([sys.executable, "-m", "freshllm.updates", "add", "2024-02"], work, env)
    second = sh(["dvc", "repro", *CHAIN_TARGETS], work, env, timeout=900)
    ran = _ran(second)
    new = {s for s in ran if s.endswith("@2024-02")}
    assert new and ran == new | {"promote@main", "chain-report@main"}, sorted(ran)
    assert "Stage 'u-cpt-base@2024-01' didn't change, skipping" in second
    u = work / "models/updates/2024-02"
    assert read_lineage(u / "cpt-base")["parent"]["weights_sha256"] == weights_hash(
        work / "models/updates/2024-01/cpt-base")  # Setting 2's chain: from the previous cpt-base
    window = json.loads((work / "metrics/updates/2024-02/window.json").read_text())
    assert window["replay"].get("empty") is not True and window["seen_before"]["urls"] > 0
    cpt = json.loads((work / "metrics/updates/2024-02/cpt-base.json").read_text())
    assert cpt["new_tokens_seen"] < cpt["tokens_seen"]  # a replay share of the January window
    ev = json.loads((work / "metrics/updates/2024-02/eval/cpt-base-res.json").read_text())
    assert set(ev["windows"]["fresh_bpb"]) == {"2024-01", "2024-02"}
    report = (work / "metrics/chain/report.md").read_text()
    assert "| 2024-02 |" in report and "each window's held-out news" in report
    assert json.loads((work / "metrics/chain/compare.json").read_text())["promoted"].keys() == {
        "ancestor", "2024-01", "2024-02"}
    status = sh(["dvc", "status", *CHAIN_TARGETS], work, env)
    assert "up to date" in status, status


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _descends_from(pid: int, root: int) -> bool:
    """Whether ``pid`` is ``root`` or runs under it (parallel tests run other chains' stages)."""
    while pid > 1:
        if pid == root:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rpartition(")")[2].split()[1])  # the parent's pid
    return False


def _lock_outs(work: Path, stage: str) -> dict:
    import yaml

    lock = yaml.safe_load((work / "dvc.lock").read_text())["stages"][stage]
    return {o["path"]: o.get("md5") for o in lock["outs"]}


@pytest.mark.e2e
@pytest.mark.parametrize("stage,module", [("u-window@2024-02", "freshllm.updates"),
                                          ("u-cpt-base@2024-02", "freshllm.cpt"),
                                          ("gate@2024-02", "freshllm.updates.gating")])
def test_kill_9_inside_a_chain_stage_then_repro_ends_as_if_never_interrupted(shrunken_chain, stage, module):
    """SIGKILL the stage's worker process (no cleanup runs) while it works, as soon as it has
    begun writing an output (or after 3 s), then `dvc repro`: every output of the stage, and the
    chain's served model, are what the uninterrupted run made, and nothing is left to do."""
    import os
    import re
    import signal
    import subprocess
    import time

    from conftest import sh

    work, env, _ = shrunken_chain
    if "2024-02" not in (work / "params.yaml").read_text():
        pytest.skip("needs test_adding_a_month_reruns_only_that_month's second window")
    before = _lock_outs(work, stage)
    served = _lock_outs(work, "promote@main")
    record = json.loads((work / "metrics/updates/2024-02/promote.json").read_text())
    proc = subprocess.Popen(["dvc", "repro", "-f", "-s", stage], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    victim, began, killed = None, time.monotonic(), False
    out_dirs = [work / Path(p).parent for p in before]
    while proc.poll() is None and time.monotonic() - began < 300:
        if victim is None:
            pattern = f"[-]m {re.escape(module)} .*2024-02"
            ps = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
            ps = [int(p) for p in ps if int(p) != os.getpid() and b"accelerate" not in _cmdline(int(p))
                  and _descends_from(int(p), proc.pid)]  # this test's repro, not another test's
            if ps:  # the worker itself (under `accelerate launch`: its child)
                victim, seen_at = max(ps), time.monotonic()
        elif any(d.is_dir() and any(".tmp-" in q.name for q in d.iterdir()) for d in out_dirs) \
                or time.monotonic() - seen_at > 3.0:
            os.kill(victim, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    log = proc.communicate(timeout=300)[0]
    assert killed, f"{stage}: its worker ({module}) was not seen running:\n{log[-2000:]}"
    assert proc.returncode != 0, log[-2000:]
    sh(["dvc", "repro", *CHAIN_TARGETS], work, env, timeout=900)
    data = lambda outs: {k: v for k, v in outs.items() if not k.startswith("metrics/")}  # noqa: E731
    assert data(_lock_outs(work, stage)) == data(before)  # models and data: byte for byte (metrics hold timings)
    assert data(_lock_outs(work, "promote@main")) == data(served)
    again = json.loads((work / "metrics/updates/2024-02/promote.json").read_text())
    assert {k: again[k] for k in ("promoted", "reasons", "current")} == {k: record[k] for k in ("promoted", "reasons", "current")}
    status = sh(["dvc", "status", *CHAIN_TARGETS], work, env)
    assert "up to date" in status, status
    leftovers = [q for d in out_dirs if d.is_dir() for q in d.iterdir() if ".tmp-" in q.name or ".old-" in q.name]
    assert not leftovers, leftovers


@pytest.mark.e2e
def test_months_with_no_article_train_nothing_and_keep_the_served_model(shrunken_chain):
    """The newest month's crawl finds no article (each one too short): the window carries its
    parent's data, no cpt trains (its cpt-base is its parent's weights), the gate keeps the
    incumbent and says why, models/current is still the month before's, and the report renders.
    (Runs last: it changes the crawl params of the module's repository.)"""
    import yaml

    from freshllm.residual.artifact import weights_hash

    from conftest import sh

    work, env, _ = shrunken_chain
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["crawl"].update(min_chars=10**6, max_chars=10**6 + 1)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the chain's stages alone (-s): the single update's crawl, which these params would fail, stays as it is
    listed = sh(["dvc", "stage", "list", "--name-only"], work, env).split()
    *before, last = params["updates"]
    parent = params["updates"][last]["prev"]
    served = weights_hash(work / f"models/updates/{parent}/current")
    chain = [s for s in listed if s.endswith(f"@{last}")]
    out = sh(["dvc", "repro", "-s", *chain, *CHAIN_TARGETS], work, env, timeout=900)
    assert f"u-crawl@{last}" in _ran(out) and "crawl" not in _ran(out) and before
    anc = work / f"models/updates/{parent}"
    for w in [last]:
        crawl = json.loads((work / f"metrics/updates/{w}/crawl.json").read_text())
        window = json.loads((work / f"metrics/updates/{w}/window.json").read_text())
        cpt = json.loads((work / f"metrics/updates/{w}/cpt-base.json").read_text())
        rec = json.loads((work / f"metrics/updates/{w}/promote.json").read_text())
        assert crawl["empty"] and window["no_new_articles"] and cpt["steps"] == 0 and "no_new_articles" in cpt["skipped"]
        assert weights_hash(work / f"models/updates/{w}/cpt-base") == weights_hash(anc / "cpt-base")
        assert not rec["promoted"] and rec["no_new_articles"]
        assert rec["reasons"][0].startswith(f"kept the incumbent: window {w}: the crawl found no article")
    assert weights_hash(work / "models/current") == served
    current = json.loads((work / f"metrics/updates/{last}/eval/current.json").read_text())
    # not scored again (with no new article the candidate has the incumbent's weights too)
    assert current["reused_from"]["record"] in {f"metrics/updates/{last}/eval/{r}.json"
                                                for r in ("cpt-base-res", "incumbent")}
    decisions = json.loads((work / "metrics/promote.json").read_text())["decisions"]
    assert [d["window"] for d in decisions] == ["ancestor", *params["updates"]] and not decisions[-1]["promoted"]
    assert (work / "metrics/chain/report.md").read_text().count("| 2024-0") >= len(params["updates"])
