"""Re-rooted chains (``chain.cpt_from``), per-layer drift from the ancestor, the chain report's
start and drift columns, and the six-month toy chain (freshllm.updates.start / .window /
.drift / .report, profiles/updates6-toyworld.yaml)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from freshllm.config import ConfigError, build_config, load_section
from freshllm.updates.config import ANCESTOR, ChainConfig, load_chain
from conftest import profile_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROFILES = [profile_file("updates-toyworld"), profile_file("updates6-toyworld")]

CHAIN3 = """\
chains: [main]
updates:
  2024-01: {published_from: "2024-01-01", published_to: "2024-01-31", prev: ancestor}
  2024-02: {published_from: "2024-02-01", published_to: "2024-02-29", prev: 2024-01}
  2024-03: {published_from: "2024-03-01", published_to: "2024-03-31", prev: 2024-02}
chain: {residual_source: toy, cpt_from: MODE}
"""


def params(tmp_path: Path, mode: str) -> Path:
    p = tmp_path / f"params-{mode}.yaml"
    p.write_text(CHAIN3.replace("MODE", mode))
    return p


# --- the key ---------------------------------------------------------------------------------------------

def test_cpt_from_defaults_to_previous_and_names_a_bad_value():
    assert ChainConfig(residual_source="toy").cpt_from == "previous"
    with pytest.raises(ConfigError, match=r"chain\.cpt_from: must be one of \['previous', 'ancestor'\]"):
        build_config(ChainConfig, {"residual_source": "toy", "cpt_from": "grandparent"}, "chain")


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_one_override_switches_a_profile_to_the_re_rooted_chain(tmp_path, path):
    from dvc.utils.hydra import apply_overrides

    assert load_section(ChainConfig, "chain", path).cpt_from == "previous"
    p = tmp_path / "params.yaml"
    shutil.copy(path, p)
    apply_overrides(str(p), ["chain.cpt_from=ancestor"])
    assert load_section(ChainConfig, "chain", p).cpt_from == "ancestor"



# --- chain.cpt: an overlay of cpt -----------------------------------------------------------------------

CPT = """\
world: {kind: toyworld, seed: 0}
cpt:
  lr: {base: 0.001, instruct: 0.002}
  train: {batch_size: 8, warmup_steps: 5, weight_decay: 0.1}
"""


def test_chain_cpt_is_cpt_updated_with_what_the_chain_changes(tmp_path):
    """`--section chain.cpt` reads cpt with the chain's keys on top (nested keys merged); with no
    chain.cpt at all it is cpt itself. The card records the same merged section."""
    from freshllm.config import section_values
    from freshllm.cpt import CptConfig

    p = tmp_path / "params.yaml"
    p.write_text(CHAIN3.replace("MODE", "previous").replace(
        "cpt_from: previous}", "cpt_from: previous, cpt: {lr: {base: 0.0002}, train: {replay_fraction: 0.25}}}") + CPT)
    got = load_section(CptConfig, "chain.cpt", p)
    assert (got.lr.base, got.lr.instruct) == (0.0002, 0.002)  # lr.instruct is cpt's
    assert (got.train.replay_fraction, got.train.batch_size, got.train.weight_decay) == (0.25, 8, 0.1)
    cpt = load_section(CptConfig, "cpt", p)
    assert (cpt.lr.base, cpt.train.replay_fraction) == (0.001, 0.0)  # cpt itself is untouched
    q = tmp_path / "bare.yaml"
    q.write_text(CHAIN3.replace("MODE", "previous") + CPT)
    assert load_section(CptConfig, "chain.cpt", q) == cpt
    from freshllm.config import read_params
    assert section_values(read_params(p), "chain.cpt", str(p))["train"] == {
        "batch_size": 8, "warmup_steps": 5, "weight_decay": 0.1, "replay_fraction": 0.25}


def test_loading_the_chain_validates_its_cpt_overlay_naming_every_bad_key(tmp_path):
    """A bad chain.cpt key fails when the chain section loads (every chain stage), by name."""
    p = tmp_path / "params.yaml"
    p.write_text(CHAIN3.replace("MODE", "previous").replace(
        "cpt_from: previous}", "cpt_from: previous, cpt: {lr: {bas: 0.1}, train: {warmup: 3, batch_size: 0}}}") + CPT)
    with pytest.raises(ConfigError) as err:
        load_section(ChainConfig, "chain", p)
    text = str(err.value)
    for key in ("chain.cpt.lr.bas", "chain.cpt.train.warmup", "chain.cpt.train.batch_size"):
        assert key in text, text
    p.write_text(CHAIN3.replace("MODE", "previous").replace("cpt_from: previous}", "cpt_from: previous, cpt: 3}") + CPT)
    with pytest.raises(ConfigError, match=r"chain\.cpt: expected a mapping"):
        load_section(ChainConfig, "chain", p)


KNOBS = {"chain.cpt.lr.base", "chain.cpt.lr.instruct", "chain.cpt.train.seed", "chain.cpt.train.replay_fraction"}


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_the_chain_profiles_list_only_what_their_cpt_changes(path):
    """The chain profiles' chain.cpt is an overlay: no key repeats cpt's value but the knobs
    experiments set with `dvc exp run -S` (DVC's -S changes a key that exists)."""
    from freshllm.config import read_params

    data = read_params(path)

    def same(over, base, where):
        for k, v in over.items():
            if isinstance(v, dict):
                yield from same(v, base.get(k) or {}, f"{where}.{k}")
            elif k in base and base[k] == v and f"{where}.{k}" not in KNOBS:
                yield f"{where}.{k}"

    assert not list(same(data["chain"]["cpt"], data["cpt"], "chain.cpt"))


# --- the start model -------------------------------------------------------------------------------------

@pytest.fixture
def chain_dirs(tmp_path, tiny_pair):
    """models/updates/{ancestor (the root stage), 2024-01, 2024-02} with cards, the updates a copy
    of the pair with one weight changed so every node has its own weights hash."""
    import torch
    from safetensors.torch import load_file, save_file

    from freshllm.cards import build_lineage, write_card
    from freshllm.updates.root import run as root_run

    base, instruct = tiny_pair
    models = tmp_path / "models" / "updates"
    root_run(base, instruct, models / ANCESTOR, tmp_path / "d/dedup", tmp_path / "d/heldout.jsonl",
             tmp_path / "m/promote.json", tmp_path / "d/packed", 16)
    prev = ANCESTOR
    for i, w in enumerate(("2024-01", "2024-02")):
        for variant in ("base", "instruct"):
            out = models / w / f"cpt-{variant}"
            shutil.copytree(models / prev / f"cpt-{variant}", out)
            (out / "README.md").unlink()
            f = next(out.glob("*.safetensors"))
            state = load_file(f)
            name = sorted(k for k in state if "layers.0." in k)[0]
            state[name] = state[name] + 0.01 * (i + 1)
            save_file({k: v.contiguous() for k, v in state.items()}, f, metadata={"format": "pt"})
            write_card(out, build_lineage(out, f"cpt-{variant}", w, parent=models / prev / f"cpt-{variant}"))
        prev = w
    del torch
    return tmp_path, models


def test_the_start_model_follows_chain_cpt_from(chain_dirs, capsys):
    from freshllm.updates.start import main, start_model

    tmp, models = chain_dirs
    for mode, want in (("previous", "2024-02"), ("ancestor", ANCESTOR)):
        p = params(tmp, mode)
        chain, cfg = load_chain(p), load_section(ChainConfig, "chain", p)
        for variant in ("base", "instruct"):
            assert start_model(chain, cfg, "2024-03", "2024-02", variant, models, p) == models / want / f"cpt-{variant}"
        assert start_model(chain, cfg, "2024-01", ANCESTOR, "base", models, p) == models / ANCESTOR / "cpt-base"
        main(["--params", str(p), "--window", "2024-03", "--prev", "2024-02", "--variant", "base",
              "--models", str(models)])
        assert capsys.readouterr().out.strip() == str(models / want / "cpt-base")  # stdout: the path alone
    p = params(tmp, "ancestor")
    with pytest.raises(SystemExit, match="updates.2024-03.prev: is '2024-02', the command line says '2024-01'"):
        main(["--params", str(p), "--window", "2024-03", "--prev", "2024-01", "--variant", "base",
              "--models", str(models)])
    shutil.rmtree(models / ANCESTOR / "cpt-instruct")
    with pytest.raises(SystemExit, match=r"start model of 2024-03's cpt-instruct \(chain.cpt_from: ancestor\)"):
        main(["--params", str(p), "--window", "2024-03", "--prev", "2024-02", "--variant", "instruct",
              "--models", str(models)])


def test_the_card_names_the_ancestor_as_parent_in_ancestor_mode(chain_dirs, capsys):
    """What the u-cpt-* command does: START=$(updates.start) ... cards --parent $START."""
    from freshllm.cards import main as cards_main
    from freshllm.cards import read_lineage
    from freshllm.residual.artifact import weights_hash
    from freshllm.updates.start import main as start_main

    tmp, models = chain_dirs
    for mode, want in (("previous", "2024-02"), ("ancestor", ANCESTOR)):
        p = params(tmp, mode)
        start_main(["--params", str(p), "--window", "2024-03", "--prev", "2024-02", "--variant", "base",
                    "--models", str(models)])
        start = Path(capsys.readouterr().out.strip())
        out = tmp / mode / "cpt-base"
        shutil.copytree(models / "2024-02" / "cpt-base", out)  # stands in for the trained model
        (out / "README.md").unlink()
        cards_main(["--params", str(p), "--model", str(out), "--role", "cpt-base", "--window", "2024-03",
                    "--parent", str(start)])
        lin = read_lineage(out)
        assert lin["parent"]["weights_sha256"] == weights_hash(models / want / "cpt-base")
        assert lin["parent"]["window"] == (None if want == ANCESTOR else want)
        assert len(lin["chain"]) == (1 if want == ANCESTOR else 3)  # the ancestor alone, or ancestor, 01, 02
    assert weights_hash(models / ANCESTOR / "cpt-base") != weights_hash(models / "2024-02" / "cpt-base")


# --- the data: the union of every window so far ----------------------------------------------------------

WORDS = "the town of Varnholm lies on the river Tessa and people there play the violin".split()


def _text(i: int) -> str:
    return " ".join(WORDS[(i + k) % len(WORDS)] for k in range(30)) + f" number {i}"


def _run_windows(tmp_path: Path, tokenizers_pair, mode: str) -> dict:
    from freshllm.pack import PackConfig
    from freshllm.tasks.text import TextConfig
    from freshllm.updates.config import Update
    from freshllm.updates.root import run as root_run
    from freshllm.updates.window import run as window_run

    base_tok, _ = tokenizers_pair
    tok_dir = tmp_path / "tok"
    if not tok_dir.exists():
        base_tok.save_pretrained(str(tok_dir))
        (tok_dir / "config.json").write_text("{}")
    pack_cfg = build_config(PackConfig, {"seq_len": 32, "val_fraction": 0.2}, "pack")
    text_cfg = build_config(TextConfig, {"docs": 100, "max_chars": 200}, "eval.text")
    chain_cfg = build_config(ChainConfig, {"residual_source": "toy", "tokens": "300", "cpt_from": mode}, "chain")
    d = tmp_path / mode
    root_run(*_pair_stub(tmp_path), d / "models", d / ANCESTOR / "dedup", d / ANCESTOR / "heldout.jsonl",
             d / "promote.json", d / ANCESTOR / "packed", 32)
    outs, prev = {}, ANCESTOR
    for w, lo in (("w1", 0), ("w2", 40), ("w3", 80)):
        arts = d / f"{w}.jsonl"
        arts.write_text("".join(json.dumps({"url": f"https://x/{i}", "text": _text(i)}) + "\n"
                                for i in range(lo, lo + 40)))
        o = d / w
        outs[w] = window_run(Update(w, "2024-01-01", "2024-01-31", prev), chain_cfg, pack_cfg, text_cfg, arts,
                             d / prev / "dedup", d / prev / "heldout.jsonl", tok_dir, o / "dedup",
                             o / "heldout.jsonl", o / "packed", o / "replay", d / prev / "packed")
        prev = w
    return outs


_PAIR: dict = {}


def _pair_stub(tmp_path: Path) -> tuple[Path, Path]:
    """Two model directories the root stage links (the window stages never read them)."""
    out = []
    for name in ("base", "instruct"):
        p = tmp_path / "pair" / name
        if not p.exists():
            p.mkdir(parents=True)
            (p / "config.json").write_text("{}")
            from safetensors.torch import save_file
            import torch

            save_file({"w": torch.zeros(2) + (name == "base")}, p / "model.safetensors")
        out.append(p)
    return out[0], out[1]


def _rows(packed: Path):
    from freshllm.io.packed import PackedData

    d = PackedData.open(packed / "train")
    return d.input_ids[:], d.position_ids[:], d.loss_mask[:]


def _tree(path: Path) -> dict[str, str]:
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


def test_ancestor_mode_trains_on_every_window_so_far_never_on_held_out_news(tmp_path, tokenizers_pair):
    import numpy as np

    from freshllm.pack import is_heldout

    prev_outs = _run_windows(tmp_path, tokenizers_pair, "previous")
    anc_outs = _run_windows(tmp_path, tokenizers_pair, "ancestor")
    prv, anc = tmp_path / "previous", tmp_path / "ancestor"
    # each window's own packed data is the same in both modes; the union appends them in order
    for i, w in enumerate(("w1", "w2", "w3")):
        want = [np.concatenate([_rows(prv / x / "packed")[k] for x in ("w1", "w2", "w3")[: i + 1]]) for k in range(3)]
        got = _rows(anc / w / "packed")
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), w
        info = json.loads((anc / w / "packed" / "info.json").read_text())
        assert list(info["union"]["windows"]) == ["w1", "w2", "w3"][: i + 1]
        assert info["union"]["sequences"] == len(got[0]) == anc_outs[w]["union"]["sequences"]
        assert "union" not in prev_outs[w] and "union" not in json.loads((prv / w / "packed/info.json").read_text())
        assert (anc / w / "packed" / "tokenizer").is_dir()
    # every earlier window's articles are in the last update's training data, no held-out one is
    tok = tokenizers_pair[0]
    ids, pos, _ = _rows(anc / "w3" / "packed")
    flat, flat_pos = ids.reshape(-1), pos.reshape(-1)
    starts = [*np.flatnonzero(flat_pos == 0), len(flat)]  # documents: positions restart at 0
    docs = [tok.decode([int(t) for t in flat[a:b]], skip_special_tokens=True) for a, b in zip(starts, starts[1:])]
    numbers = {int(m.group(1)) for d in docs if (m := re.search(r"number (\d+)\s*$", d))}
    held = {i for i in range(120) if is_heldout(f"https://x/{i}", _text(i), 0.2)}
    assert held and not numbers & held
    assert all(numbers & set(range(lo, lo + 40)) for lo in (0, 40, 80)), sorted(numbers)
    # the previous mode's packed data is this window's alone
    assert _rows(prv / "w3" / "packed")[0].shape[0] < ids.shape[0]


def test_previous_mode_never_reads_the_parent_pack(tmp_path, tokenizers_pair):
    """Byte-identical outputs with or without --prev-packed (even a missing one)."""
    from freshllm.pack import PackConfig
    from freshllm.tasks.text import TextConfig
    from freshllm.updates.config import Update
    from freshllm.updates.window import run as window_run

    _run_windows(tmp_path, tokenizers_pair, "previous")
    d = tmp_path / "previous"
    pack_cfg = build_config(PackConfig, {"seq_len": 32, "val_fraction": 0.2}, "pack")
    text_cfg = build_config(TextConfig, {"docs": 100, "max_chars": 200}, "eval.text")
    cfg = build_config(ChainConfig, {"residual_source": "toy", "tokens": "300"}, "chain")
    hashes = []
    for name, prev_packed in (("a", None), ("b", tmp_path / "nowhere")):
        o = tmp_path / name
        window_run(Update("w2", "2024-01-01", "2024-01-31", "w1"), cfg, pack_cfg, text_cfg, d / "w2.jsonl",
                   d / "w1" / "dedup", d / "w1" / "heldout.jsonl", tmp_path / "tok", o / "dedup",
                   o / "heldout.jsonl", o / "packed", o / "replay", prev_packed)
        hashes.append({k: _tree(o / k) if (o / k).is_dir() else hashlib.sha256((o / k).read_bytes()).hexdigest()
                       for k in ("dedup", "heldout.jsonl", "packed", "replay")})
    assert hashes[0] == hashes[1]
    assert hashes[0]["packed"] == _tree(d / "w2" / "packed")


def test_ancestor_mode_refuses_a_parent_pack_that_is_not_a_union(tmp_path, tokenizers_pair):
    from freshllm.pack import CorpusError
    from freshllm.updates.window import union_pack

    _run_windows(tmp_path, tokenizers_pair, "previous")
    d = tmp_path / "previous"
    with pytest.raises(CorpusError, match="one window's packed data, not the union"):
        union_pack(d / "w1" / "packed", d / "w2" / "packed", "w2", tmp_path / "out")


# --- drift ------------------------------------------------------------------------------------------------

def test_drift_is_the_per_layer_relative_change_from_the_reference(chain_dirs):
    from freshllm.updates.drift import drift, main

    tmp, models = chain_dirs
    anc, m2 = models / ANCESTOR / "cpt-instruct", models / "2024-02" / "cpt-instruct"
    same = drift(anc, anc)
    assert same["mean"] == same["max"] == 0.0 and list(same["per_layer"]) == ["model.layers.0", "model.layers.1"]
    d = drift(m2, anc)
    assert d["per_layer"]["model.layers.1"] == 0.0 < d["per_layer"]["model.layers.0"] == d["max"]
    assert d["mean"] == pytest.approx(d["max"] / 2) and "model.embed_tokens.weight" in d["other"]
    # the same number, computed by hand: ||M - B|| / ||B|| over layer 0's tensors
    from safetensors.torch import load_file

    a, b = load_file(next(m2.glob("*.safetensors"))), load_file(next(anc.glob("*.safetensors")))
    keys = [k for k in a if ".layers.0." in k]
    num = sum(float((a[k].double() - b[k].double()).square().sum()) for k in keys) ** 0.5
    den = sum(float(b[k].double().square().sum()) for k in keys) ** 0.5
    assert d["per_layer"]["model.layers.0"] == pytest.approx(num / den, rel=1e-5)
    main(["--model", str(m2), "--ref", str(anc), "--out", str(tmp / "drift.json")])
    assert json.loads((tmp / "drift.json").read_text())["max"] == pytest.approx(d["max"])


# --- the chain report -------------------------------------------------------------------------------------

def _eval(ifeval: float, bpb: dict[str, float], quiz: dict[int, float] | None = None) -> dict:
    from freshllm.tasks import ALL_BENCHMARKS

    keys = [m.key for m in ALL_BENCHMARKS["toy_ifeval"].metrics]
    windows = {"fresh_bpb": {w: {"bits_per_byte": v, "stderr": 0.01, "documents": 10} for w, v in bpb.items()}}
    if quiz:
        windows["toy_d2"] = {"slices": 6, **{f"slice-{k}": {"acc": v, "stderr": 0.1, "items": 12}
                                             for k, v in quiz.items()}}
    return {"model": "m", "model_hash": "h", "config": {"suite_name": "toyworld"},
            "results": {"toy_ifeval": {k: ifeval for k in keys}}, "stderr": {"toy_ifeval": {k: 0.02 for k in keys}},
            "windows": windows}


def _records(tmp: Path, starts: dict[str, str | None], merge_drift: bool = True) -> Path:
    rec = tmp / "records"
    (rec / ANCESTOR).mkdir(parents=True)
    (rec / ANCESTOR / "promote.json").write_text(json.dumps({"window": ANCESTOR, "promoted": True, "reasons": ["r"],
                                                             "current": {"window": ANCESTOR}}))
    seen = []
    for i, (w, parent) in enumerate(starts.items()):
        seen.append(w)
        d = rec / w
        (d / "eval").mkdir(parents=True)
        bpb = {x: 1.0 - 0.1 * i for x in seen}
        quiz = {k: 0.5 for k in range(len(seen))}
        for m in ("cpt-base-res", "cpt-instruct", "cpt-base", "incumbent", "current"):  # current: u-eval-current
            (d / "eval" / f"{m}.json").write_text(json.dumps(_eval(0.4, bpb, quiz)))
        (d / "promote.json").write_text(json.dumps({"window": w, "promoted": False, "reasons": ["kept"],
                                                    "current": {"window": ANCESTOR}}))
        (d / "lineage-cpt-base.json").write_text(json.dumps({"role": "cpt-base", "window": w,
                                                             "parent": {"window": parent, "role": "x"}}))
        merge = {"tensors": 3}
        if merge_drift:  # residual apply --base's report (the merge helper adds it)
            merge["drift"] = {"mean": 0.01 * (i + 1), "max": 0.02 * (i + 1), "per_layer": {"model.layers.0": 0.01}}
        (d / "merge.json").write_text(json.dumps(merge))
        (d / "drift-cpt-instruct.json").write_text(json.dumps({"mean": 0.1 + i, "max": 0.2 + i, "per_layer": {}}))
    return rec


def test_report_shows_where_each_update_started_and_its_drift(tmp_path):
    from freshllm.updates.report import run

    p = tmp_path / "params.yaml"
    p.write_text(CHAIN3.replace("MODE", "ancestor").replace("2024-01", "2024-01"))
    chain = load_chain(p)
    rec = _records(tmp_path, {"2024-01": None, "2024-02": None, "2024-03": None})
    out = tmp_path / "out"
    result = run(chain, rec, out / "r.md", out / "s.json", out / "c.json", out / "s.csv", out / "s.png")
    md = (out / "r.md").read_text()
    assert "**Start and drift** (chain.cpt_from: ancestor)" in md
    assert "| 2024-03 | ancestor | 0.0300 / 0.0600 | 2.1000 / 2.2000 | 40.00 ± 1.00 |" in md
    compare = json.loads((out / "c.json").read_text())
    assert compare["step"]["2024-02.drift_mean.cpt-base"] == pytest.approx(0.02)
    assert compare["step"]["2024-03.drift_max.cpt-instruct"] == pytest.approx(2.2)
    assert result["steps"][1]["start"]["cpt_from"] == ANCESTOR

    prev = _records(tmp_path / "prev", {"2024-01": None, "2024-02": "2024-01", "2024-03": "2024-02"},
                    merge_drift=False)
    run(chain, prev, out / "r2.md", out / "s2.json", out / "c2.json", out / "s2.csv", out / "s2.png")
    md2 = (out / "r2.md").read_text()
    assert "(chain.cpt_from: previous)" in md2 and "| 2024-02 | 2024-01 | – | 1.1000 / 1.2000 |" in md2


def test_chain_report_command_writes_its_tables_csv_and_figure(tmp_path):
    """The chain-report stage's command (``python -m freshllm.updates ... report``) on the records of
    a three-window chain: the markdown tables (cells value ± se, formatted by the main report's
    helpers), the csv, and steps.png drawn by freshllm.figures: a PNG with a panel for instruction
    following, one for each window's bits per byte and, with d2 slices, one for the quiz."""
    from freshllm.updates.__main__ import main
    from freshllm.updates.report import collect, step_panels

    p = params(tmp_path, "previous")
    rec = _records(tmp_path, {"2024-01": None, "2024-02": "2024-01", "2024-03": "2024-02"})
    out = tmp_path / "metrics" / "chain"  # not there yet: the command makes it
    main(["--params", str(p), "report", "--records", str(rec), "--markdown", str(out / "report.md"),
          "--summary", str(out / "summary.json"), "--compare", str(out / "compare.json"),
          "--csv", str(out / "steps.csv"), "--figure", str(out / "steps.png")])
    png = (out / "steps.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    md = (out / "report.md").read_text()
    assert "|---|---:|---:|---|---|\n| ancestor | 40.00 ± 1.00 | 40.00 ± 1.00 | yes | ancestor |" in md
    assert "| step | 2024-01 | 2024-02 | 2024-03 | mean |\n|---|---:|---:|---:|---:|" in md
    assert "| 2024-02 | 0.9000 ± 0.0100 | 0.9000 ± 0.0100 |  | 0.9000 |" in md  # 2024-03 not seen yet
    assert "| 2024-03 | 50.00 ± 10.00 | 50.00 ± 10.00 | 50.00 ± 10.00 | 50.00 |" in md  # quiz x100
    assert "| 2024-03 | None @ ancestor | – | 0 | none: incumbent kept | 40.00 ± 1.00 | 0.8000 ± 0.0100 | " in md
    lines = (out / "steps.csv").read_text().splitlines()
    assert lines[0].startswith("step,window,model,ifeval,") and len(lines) == 1 + 2 + 3 * 4  # ancestor: 2 models
    assert json.loads((out / "compare.json").read_text())["promoted"]["2024-03"] is False

    rows = collect(load_chain(p), rec)
    panels = step_panels(rows, ["2024-01", "2024-02", "2024-03"])
    assert [len(pn["lines"]) for pn in panels] == [2, 3, 3]
    assert panels[1]["lines"]["window 2024-03"] == [(3, 0.8, 0.01)]  # only the steps that saw it
    for r in rows:  # no d2 slices: no quiz panel
        for s in r["models"].values():
            s["quiz"] = dict.fromkeys(s["quiz"])
    assert [pn["title"].split()[0] for pn in step_panels(rows, ["2024-01", "2024-02", "2024-03"])] == [
        "instruction", "held-out"]


# --- the six-month toy world ------------------------------------------------------------------------------

def _archive_digest(months: list[str], slices: int, per_month: int) -> str:
    from freshllm.synthetic.warc_archive import _month_records

    h = hashlib.sha256()
    for i, m in enumerate(months):
        for r in _month_records(m, per_month, 0, i, world="toyworld", world_seed=0, world_slices=slices):
            h.update((r.url + "\0" + r.article.text + "\n").encode())
    return h.hexdigest()


def test_the_default_world_generates_what_it_did_for_january_to_march():
    """Digests of the default profile's crawl archive (world seed 0, d2_slices 1) and of the d2
    quiz, taken before the six-month profile existed: the default run's data is unchanged."""
    from freshllm.synthetic import toyworld

    assert _archive_digest(["2024-01", "2024-02", "2024-03"], 1, 60) == DEFAULT_ARCHIVE_DIGEST
    quiz = json.dumps(toyworld.d2_quiz(toyworld.make_world(0)), sort_keys=True)
    assert hashlib.sha256(quiz.encode()).hexdigest() == DEFAULT_QUIZ_DIGEST


def test_six_months_each_report_their_own_new_events_and_have_quiz_items():
    from freshllm.synthetic import toyworld
    from freshllm.synthetic.warc_archive import _month_records

    p = PROFILES[1]
    chain = load_chain(p)
    assert chain.windows == [f"2024-0{m}" for m in range(1, 7)]
    from freshllm.config import read_params

    slices = read_params(p)["world"]["d2_slices"]
    assert slices == 6
    w = toyworld.make_world(0)
    parts = toyworld.d2_slices(w, slices)
    reported = []
    for i, month in enumerate(chain.windows):
        mine = parts[toyworld.d2_slice_of_month(month, slices)]
        texts = [r.article.text for r in _month_records(month, 40, 0, i, world="toyworld", world_seed=0,
                                                          world_slices=slices)]
        about = {f for t in texts for f in w.d2_facts() if f.subject in t and f.object in t}
        assert about and about <= set(mine), month  # only this month's events
        reported.append(about)
    assert all(not (a & b) for i, a in enumerate(reported) for b in reported[i + 1:])  # new every month
    quiz = toyworld.d2_quiz(w)
    slice_of = {f: k for k, fs in enumerate(parts) for f in fs}
    per_slice = {k: sum(slice_of[toyworld.Fact(*q["fact"])] == k for q in quiz) for k in range(slices)}
    assert min(per_slice.values()) >= 10, per_slice


DEFAULT_ARCHIVE_DIGEST = "ecedc2e795b6c7088d2ca5b375185c5b60fa1b0de6d6f93d2f525d5487709b5f"
DEFAULT_QUIZ_DIGEST = "f8c78ce0a72d1154904548dcc37a8a974a3ece9d79da7ca87a7367688dcb4645"


# --- a re-rooted chain through the real stages (dvc repro) -------------------------------------------------

@pytest.fixture(scope="module")
def rerooted_chain(tmp_path_factory, private_nltk_data):
    """`dvc repro` of both windows' cpt and merge stages (and what they need: the toy pair, its
    residual, the chain root, both windows' crawl and data), chain.cpt_from: ancestor, in a
    temporary git repository running the copied code (test_updates' shrunken chain). The
    evals, gates and chain report that follow do not depend on where a cpt started: they run
    through real `dvc repro` in test_updates."""
    import yaml

    from conftest import copy_project, hermetic_env, sh
    from test_updates import PROFILE, shrunken_chain_params

    p = shrunken_chain_params()
    p["updates"] = dict(list(yaml.safe_load(PROFILE.read_text())["updates"].items())[:2])
    p["chain"]["cpt_from"] = "ancestor"
    p["chain"]["cpt"]["train"]["replay_fraction"] = 0.0  # the earlier window is in the data already
    tmp = tmp_path_factory.mktemp("rerooted")
    work = tmp / "repo"
    work.mkdir()
    env = hermetic_env(tmp)
    env["PYTHONPATH"] = str(work / "src")
    copy_project(work)
    (work / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    sh(["git", "init", "-q", "-b", "main"], work, env)
    sh(["git", "add", "-A"], work, env)
    sh(["git", "commit", "-qm", "re-rooted chain"], work, env)
    targets = [f"u-{stage}@{w}" for w in ("2024-01", "2024-02") for stage in ("merge", "cpt-instruct")]
    log = sh(["dvc", "repro", *targets], work, env, timeout=900)
    return work, env, log, targets


@pytest.mark.e2e
def test_a_re_rooted_chain_starts_every_month_from_the_ancestor(rerooted_chain):
    from freshllm.cards import read_lineage
    from freshllm.residual.artifact import weights_hash

    from conftest import sh

    work, env, log, targets = rerooted_chain
    anc = work / "models/updates" / ANCESTOR
    for w in ("2024-01", "2024-02"):
        u = work / "models/updates" / w
        for variant in ("base", "instruct"):
            lin = read_lineage(u / f"cpt-{variant}")
            assert lin["parent"]["weights_sha256"] == weights_hash(anc / f"cpt-{variant}"), (w, variant)
            assert lin["data"]["windows"] == ["2024-01", "2024-02"][: 1 + (w == "2024-02")]
        drift = json.loads((work / f"metrics/updates/{w}/drift-cpt-instruct.json").read_text())
        assert drift["max"] > 0 and len(drift["per_layer"]) == 2
    info = json.loads((work / "data/updates/2024-02/packed/info.json").read_text())
    first = json.loads((work / "data/updates/2024-01/packed/info.json").read_text())
    assert info["union"]["windows"]["2024-01"] == first["union"]["sequences"]
    cpt1, cpt2 = (json.loads((work / f"metrics/updates/{w}/cpt-base.json").read_text()) for w in ("2024-01", "2024-02"))
    assert cpt2["tokens_seen"] > cpt1["tokens_seen"]  # both windows
    # what the chain report's start and drift columns read (rendered from records: test above)
    from freshllm.updates.report import chain_mode, start_and_drift

    starts = {w: start_and_drift(work / "metrics/updates", w) for w in ("2024-01", "2024-02")}
    assert {w: s["cpt_from"] for w, s in starts.items()} == {"2024-01": ANCESTOR, "2024-02": ANCESTOR}
    assert all(d["max"] > 0 for s in starts.values() for d in s["drift"].values()), starts
    assert chain_mode([{"start": s} for s in starts.values()]) == "ancestor"
    assert "up to date" in sh(["dvc", "status", *targets], work, env)
