"""The rehearsal profiles (profiles/rehearsal-<family>.yaml) keep proving the paper profiles:
they may differ from profiles/paper-<family>.yaml only in sizes, paths and what this CPU
machine forces, each such key named below with its reason; any other difference, or a key in
one profile and not the other, fails naming the key. Then a shrunken rehearsal runs end to
end by real `dvc repro` (scripts/rehearsal.sh --shrunken) on stand-ins of the hub snapshots."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, hermetic_env, profile_file, safetensors_dtypes

FAMILIES = ["llama3", "qwen2"]

# key (dotted; <family> = each of the profile's families) -> why the rehearsal may change it
ALLOWED = {
    "accelerate_config": "no GPU here: one CPU process (configs/accelerate/cpu.yaml) instead of 8 GPUs",
    "budgets": "sizes: token budgets a 2-core CPU trains in minutes instead of 100M/500M/1B",
    "merge_budget": "sizes: the merges grid starts from the largest budget, which is one of the small budgets",
    "models.<family>.hub_base": "paths: the stand-in snapshot of the same hub model (no hub here)",
    "models.<family>.hub_instruct": "paths: the stand-in snapshot of the same hub model (no hub here)",
    "crawl.server_address": "no internet: the seeded CC-NEWS archive on loopback, read by fundus",
    "crawl.max_articles": "sizes: article counts for the small budgets",
    "crawl.min_articles": "sizes: article counts for the small budgets",
    "eval.limit": "sizes: documents per task",
    "eval.max_gen_toks": "sizes: generation length (random stand-ins never stop early)",
    "eval.source": "no hub: local-data twins of the same stock lm-eval tasks",
    "eval.batch_size": "hardware: `auto` probes 64 x max_len x vocab float logits, tens of GB on CPU",
    "eval.text.known": "paths: no pre-cutoff news crawl offline, so the known text is the world's "
                       "generated one (data/eval_text/world.jsonl)",
}
# keys only the rehearsal has
ONLY_IN_REHEARSAL = {
    "crawl.local_per_month": "sizes: records per month of the generated archive (the real CC-NEWS has none)",
}
# per family, on top of ALLOWED
ALLOWED_FOR = {
    "qwen2": {
        "cpt.train.batch_size": "hardware: 1 x 16 instead of 2 x 8: the same 16 sequences and gradient per "
                                "step; 2 x 4096 x 151,936 float logits peak at 17.6 GB of a shared 24 GB",
        "cpt.train.grad_accum": "hardware: see cpt.train.batch_size",
    },
}


def flatten(node, prefix: str = "") -> dict:
    """Dotted key -> leaf value (lists are leaves)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def _expand(keys, families) -> set[str]:
    return {k.replace("<family>", f) for k in keys for f in families} if families else set(keys)


def profile_differences(paper: dict, rehearsal: dict, family: str) -> list[str]:
    """Every difference outside the allow-lists, each naming its key."""
    fams = sorted(set(paper.get("families") or []) | set(rehearsal.get("families") or []))
    allowed = _expand({**ALLOWED, **ALLOWED_FOR.get(family, {})}, fams)
    only_rehearsal = _expand(ONLY_IN_REHEARSAL, fams)
    p, r = flatten(paper), flatten(rehearsal)
    problems = []
    for key in sorted(set(p) | set(r)):
        if key in p and key not in r:
            problems.append(f"{key}: in the paper profile, missing in the rehearsal")
        elif key in r and key not in p:
            if key not in only_rehearsal:
                problems.append(f"{key}: in the rehearsal, not in the paper profile")
        elif key in only_rehearsal:
            problems.append(f"{key}: allowed only in the rehearsal, but the paper profile has it too")
        elif p[key] != r[key] and key not in allowed:
            problems.append(f"{key}: rehearsal {r[key]!r} != paper {p[key]!r} (not in the allow-list)")
    return problems


def _load(kind: str, family: str) -> dict:
    return yaml.safe_load(profile_file(f"{kind}-{family}").read_text())


@pytest.mark.parametrize("family", FAMILIES)
def test_rehearsal_differs_from_the_paper_profile_only_in_allowed_keys(family):
    problems = profile_differences(_load("paper", family), _load("rehearsal", family), family)
    assert not problems, f"rehearsal-{family} vs paper-{family}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("family", FAMILIES)
def test_rehearsal_models_are_stand_ins_of_the_paper_models(family):
    """Each hub id becomes standins/<org>--<name>, where scripts/rehearsal.sh builds its stand-in;
    the grid (families, target, residual sources, number of budgets) is the paper's."""
    paper, reh = _load("paper", family), _load("rehearsal", family)
    for fam, cfg in paper["models"].items():
        for key in ("hub_base", "hub_instruct"):
            assert reh["models"][fam][key] == "standins/" + cfg[key].replace("/", "--"), (fam, key)
    for key in ("families", "target", "residual_sources"):
        assert reh[key] == paper[key], key
    assert len(reh["budgets"]) == len(paper["budgets"])
    assert reh["accelerate_config"] == "configs/accelerate/cpu.yaml"


def test_the_comparison_names_every_kind_of_difference():
    paper = {"families": ["a"], "models": {"a": {"hub_base": "x/y", "seed": 0}},
             "pack": {"seq_len": 4096}, "cpt": {"train": {"mixed_precision": "bf16", "batch_size": 2}},
             "crawl": {"max_articles": 10}}
    ok = {"families": ["a"], "models": {"a": {"hub_base": "standins/x--y", "seed": 0}},
          "pack": {"seq_len": 4096}, "cpt": {"train": {"mixed_precision": "bf16", "batch_size": 2}},
          "crawl": {"max_articles": 3, "local_per_month": 5}}
    assert profile_differences(paper, ok, "llama3") == []
    bad = json.loads(json.dumps(ok))
    bad["pack"]["seq_len"] = 256
    bad["cpt"]["train"]["batch_size"] = 1  # allowed for qwen2 only
    del bad["models"]["a"]["seed"]
    bad["cpt"]["train"]["compile"] = True
    problems = profile_differences(paper, bad, "llama3")
    assert [p.split(":")[0] for p in problems] == [
        "cpt.train.batch_size", "cpt.train.compile", "models.a.seed", "pack.seq_len"], problems
    assert "missing in the rehearsal" in problems[2] and "not in the paper profile" in problems[1]
    assert profile_differences(paper, {**bad, "pack": {"seq_len": 4096}}, "qwen2")[0].startswith(
        "cpt.train.compile")
    both = json.loads(json.dumps(paper))
    both["crawl"]["local_per_month"] = 5
    assert profile_differences(both, ok, "llama3") == [
        "crawl.local_per_month: allowed only in the rehearsal, but the paper profile has it too"]


def test_every_allowed_key_exists_in_a_paper_profile():
    """A stale allow-list entry (a key renamed or dropped) would silently allow nothing."""
    for family in FAMILIES:
        paper = flatten(_load("paper", family))
        fams = _load("paper", family)["families"]
        for key in _expand({**ALLOWED, **ALLOWED_FOR.get(family, {})}, fams):
            assert key in paper, (family, key)
        for key in _expand(ONLY_IN_REHEARSAL, fams):
            assert key in flatten(_load("rehearsal", family)), (family, key)


# --- real-setting bugs the rehearsal found ------------------------------------------------------

_POOL_SCRIPT = """
import multiprocessing as mp, time
from freshllm.crawl.guards import Interrupts

def work(x):
    time.sleep(0.01)
    return x

if __name__ == "__main__":
    with Interrupts().installed():
        for _ in range(300):  # what fundus' CCNewsCrawler does per month with processes > 0
            with mp.Manager(), mp.Pool(3) as pool:
                pool.map_async(work, range(3))
            print("pool", flush=True)
    print("done", flush=True)
"""


@pytest.mark.skipif(not os.environ.get("FRESHLLM_REPRO_BUGS"), reason=(
    "known bug crawl-pool-hang, flaky (about 1 run in 3 here): with crawl.processes > 0 fundus "
    "closes a month's multiprocessing Pool early and Pool.terminate() can join a worker forever "
    "under crawl.guards.Interrupts (never without it); forked workers now get the previous "
    "SIGINT/SIGTERM handlers back (os.register_at_fork), which did not remove it. "
    "Set FRESHLLM_REPRO_BUGS=1 to run this reproduction"))
def test_fundus_pools_terminate_under_the_crawl_signal_guard(tmp_path):
    """The crawl stage's signal guard around what fundus does with processes > 0: many pools
    closed right after they start (a month's quota reached). Without the guard this takes
    ~10 s; with it, one of the pools hangs in Pool.terminate (observed within 100)."""
    import os
    import signal
    import sys

    script = tmp_path / "pools.py"
    script.write_text(_POOL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    import select

    lines: list[str] = []
    try:
        while True:  # a hang is no new pool for STALL_S (a loaded machine is slow, not stalled)
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            if not ready:
                pytest.fail(f"a multiprocessing pool hung in Pool.terminate under crawl's Interrupts "
                            f"guard (after {len(lines)} pools)")
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the script, its pool workers and managers
        proc.wait()
    assert proc.returncode == 0 and lines[-1:] == ["done"], lines[-3:]


# --- a shrunken rehearsal through the real stages (scripts/rehearsal.sh --shrunken) ------------

E2E_FAMILY = os.environ.get("FRESHLLM_REHEARSAL_FAMILY", "llama3")  # qwen2: ~2x the cpt time
BOS_LLAMA3 = 128000
HEADER = {"llama3": "<|start_header_id|>", "qwen2": "<|im_start|>"}


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """`bash scripts/rehearsal.sh llama3 DIR --shrunken` in a hermetic environment: stand-ins
    of LLaMA 3 / 3.1 (+ Instruct), then `dvc repro` of the whole grid in DIR (its own git repo)."""
    tmp = tmp_path_factory.mktemp("rehearsal")
    env = hermetic_env(tmp)
    env["NLTK_DATA"] = str(tmp / "nltk_data")
    reuse = os.environ.get("FRESHLLM_REHEARSAL_DIR")  # debugging: check a finished shrunken run
    if reuse:
        return Path(reuse), env, (Path(reuse) / "rehearsal-summary.txt").read_text()
    work = tmp / "repo"
    res = subprocess.run(["bash", str(ROOT / "scripts" / "rehearsal.sh"), E2E_FAMILY, str(work), "--shrunken"],
                         cwd=tmp, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, f"rehearsal failed:\n{res.stdout[-6000:]}\n{res.stderr[-4000:]}"
    return work, env, res.stdout


def _params(work: Path) -> dict:
    return yaml.safe_load((work / "params.yaml").read_text())


def _safetensors_dtypes(model_dir: Path) -> set[str]:
    return set(safetensors_dtypes(model_dir).values())


def _chat_template(model_dir: Path) -> str | None:
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    return json.loads((model_dir / "tokenizer_config.json").read_text()).get("chat_template")


@pytest.mark.e2e
def test_rehearsal_runs_every_stage(rehearsal):
    work, env, out = rehearsal
    stages = set(subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=work, env=env, check=True,
                                capture_output=True, text=True).stdout.split())
    ran = set(re.findall(r"Running stage '([^']+)'", (work / "rehearsal-repro.log").read_text()))
    assert stages and ran == stages, sorted(stages ^ ran)
    status = subprocess.run(["dvc", "status"], cwd=work, env=env, check=True, capture_output=True,
                            text=True).stdout
    assert "up to date" in status, status
    assert "peak RSS" in out and "stage wall times" in out
    times = (work / "rehearsal-times.tsv").read_text().splitlines()[1:]
    assert {line.split("\t")[0] for line in times} == stages


@pytest.mark.e2e
def test_rehearsal_packs_articles_with_the_real_tokenizers_framing(rehearsal):
    """LLaMA 3 articles start with <|begin_of_text|> (128000), Qwen ones with no BOS; every
    article ends with the base tokenizer's EOS; position ids restart at every article."""
    import numpy as np

    from freshllm.io.packed import PackedData

    work, _, _ = rehearsal
    p = _params(work)
    for budget in p["budgets"]:
        d = work / "data" / "packed" / budget
        info = json.loads((d / "info.json").read_text())
        eos = json.loads((work / "models" / p["target"] / "base" / "config.json").read_text())["eos_token_id"]
        assert info["eos_id"] == eos
        data = PackedData.open(d / "train")
        ids, pos = np.asarray(data.input_ids).ravel(), np.asarray(data.position_ids).ravel()
        starts = np.flatnonzero(pos == 0)
        assert len(starts) >= 2 and starts[0] == 0
        firsts = ids[starts]
        if E2E_FAMILY == "llama3":
            assert info["bos_added"] and info["bos_id"] == BOS_LLAMA3
            assert (firsts == BOS_LLAMA3).all()
        else:
            assert not info["bos_added"] and (firsts < 151643).all()  # ordinary text tokens
        assert (ids[starts[1:] - 1] == eos).all()  # the article before each start ended with EOS
        assert (ids == BOS_LLAMA3).sum() == len(starts) if E2E_FAMILY == "llama3" else True


@pytest.mark.e2e
def test_rehearsal_cpt_and_merged_models_are_bf16_on_disk(rehearsal):
    work, _, _ = rehearsal
    p = _params(work)
    for fam in p["families"]:
        assert _safetensors_dtypes(work / "models" / fam / "base") == {"BF16"}  # the stand-ins are
    dirs = [work / "models" / "cpt" / f"{v}-{b}" for v in ("base", "instruct") for b in p["budgets"]]
    dirs += [work / "models" / "merged" / f"{s}-{b}" for s in p["residual_sources"] for b in p["budgets"]]
    found = {d.relative_to(work).as_posix(): _safetensors_dtypes(d) for d in dirs}
    assert all(v == {"BF16"} for v in found.values()), found


@pytest.mark.e2e
def test_rehearsal_merged_models_keep_the_dtype_of_their_cpt_target(rehearsal):
    work, _, _ = rehearsal
    p = _params(work)
    for s in p["residual_sources"]:
        for b in p["budgets"]:
            assert (_safetensors_dtypes(work / "models" / "merged" / f"{s}-{b}")
                    == _safetensors_dtypes(work / "models" / "cpt" / f"base-{b}"))


@pytest.mark.e2e
def test_rehearsal_merged_models_carry_the_instruct_chat_template_and_generation_config(rehearsal):
    work, _, _ = rehearsal
    p = _params(work)
    for s in p["residual_sources"]:
        instruct = work / p["models"][s]["hub_instruct"]
        template = _chat_template(instruct)
        assert template and HEADER[E2E_FAMILY] in template
        gen = json.loads((instruct / "generation_config.json").read_text())
        for b in p["budgets"]:
            merged = work / "models" / "merged" / f"{s}-{b}"
            assert _chat_template(merged) == template, merged
            assert json.loads((merged / "generation_config.json").read_text()) == gen, merged
            tok = json.loads((merged / "tokenizer_config.json").read_text())
            assert tok["eos_token"] == json.loads((instruct / "tokenizer_config.json").read_text())["eos_token"]


def _sample_prompts(path: Path) -> list[str]:
    prompts = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        for arg in rec.get("arguments", {}).values() if isinstance(rec.get("arguments"), dict) else rec.get("arguments", []):
            first = arg.get("arg_0") if isinstance(arg, dict) else arg[0]
            prompts.append(first if isinstance(first, str) else json.dumps(first))
    assert prompts, path
    return prompts


@pytest.mark.e2e
def test_rehearsal_chat_models_are_prompted_as_the_profile_says(rehearsal):
    """With eval.chat_template auto (deployment), instruct / cpt-instruct / cpt-base-res get the
    instruct tokenizer's template (its header tokens in every prompt) and base / cpt-base plain
    prompts; with false (paper-faithful, the paper profiles' choice) every model gets plain
    prompts: no header token anywhere."""
    work, _, _ = rehearsal
    p = _params(work)
    header = HEADER[E2E_FAMILY]
    samples = work / "data" / "eval_samples"
    chat = [f"instruct-{f}" for f in p["families"]] + [f"cpt-instruct-{b}" for b in p["budgets"]]
    chat += [f"res-{s}-{b}" for s in p["residual_sources"] for b in p["budgets"]]
    plain = [f"base-{f}" for f in p["families"]] + [f"cpt-base-{b}" for b in p["budgets"]]
    if p["eval"]["chat_template"] is False:
        chat, plain = [], plain + chat
    for stem in chat:
        ev = json.loads((work / "metrics" / "eval" / f"{stem}.json").read_text())
        assert ev["chat_template"] is True, stem
        prompts = _sample_prompts(samples / f"{stem}.jsonl")
        assert all(header in t for t in prompts), (stem, [t[:200] for t in prompts if header not in t][:2])
    for stem in plain:
        ev = json.loads((work / "metrics" / "eval" / f"{stem}.json").read_text())
        assert ev["chat_template"] is False, stem
        assert not any(header in t for t in _sample_prompts(samples / f"{stem}.jsonl")), stem


@pytest.mark.e2e
def test_rehearsal_report_has_every_model_of_the_grid(rehearsal):
    from freshllm.names import load_grid

    work, _, out = rehearsal
    grid = load_grid(work / "params.yaml")
    models = set(grid.models())
    p = _params(work)
    expected = {f"{k}+{f}" for k in ("base", "instruct") for f in p["families"]}
    expected |= {f"{k}@{b}" for k in ("cpt-base", "cpt-instruct") for b in p["budgets"]}
    expected |= {f"cpt-base-res+{s}@{b}" for s in p["residual_sources"] for b in p["budgets"]}
    assert models == expected
    summary = json.loads((work / "metrics" / "summary.json").read_text())
    assert set(summary["avg"]) == expected, sorted(set(summary["avg"]) ^ expected)
    md = (work / "metrics" / "report.md").read_text()
    assert md in out  # the script prints the report
    for name in expected:
        assert name in md, name


def test_eval_generation_budget_is_not_overridden_by_the_checkpoint(tmp_path):
    from freshllm.config import build_config
    from freshllm.eval import EvalConfig, build_lm
    from freshllm.standins import build_standin

    d = build_standin("Qwen/Qwen2-1.5B", tmp_path / "qwen2", shrink="hidden=32,layers=1,intermediate=64,heads=2,kv_heads=1")
    assert json.loads((d / "generation_config.json").read_text()).get("max_new_tokens") == 2048  # as on the hub
    cfg = build_config(EvalConfig, {"batch_size": 1, "max_gen_toks": 8, "device": "cpu"}, "eval")
    lm, _ = build_lm(cfg, d)
    assert lm.model.generation_config.max_new_tokens is None


@pytest.mark.e2e
def test_rehearsal_chain_of_one_update(rehearsal):
    """The chained-updates mode on the rehearsal profile (stand-ins with the real tokenizer and
    vocabulary): one monthly update of the shrunken rehearsal through every chain stage, on top
    of the grid the rehearsal built (its models and residuals are reused)."""
    from freshllm.cards import read_lineage
    from freshllm.residual.artifact import weights_hash

    work, env, _ = rehearsal
    env = {**env, "PYTHONPATH": str(work / "src")}
    p = _params(work)
    target = p["target"]
    p["crawl"].update(local_per_month=20, min_articles=10)  # a one-month window of the shrunken crawl
    # a few held-out articles per window, and a window packs what it has (the grid's pack stages,
    # which read these too, are not among the chain's targets)
    p["pack"].update(val_fraction=0.2, allow_short=True)
    p["chains"] = ["main"]
    p["updates"] = {"2024-02": {"published_from": "2024-02-01", "published_to": "2024-02-29", "prev": "ancestor"}}
    p["chain"] = {"residual_source": target, "tokens": p["budgets"][0], "replay_tokens": None, "cpt_from": "previous",
                  "cpt": {"lr": p["cpt"]["lr"], "train": {**p["cpt"]["train"], "replay_fraction": 0.0}}}
    p["promote"] = {"instruction": "ifeval", "max_instruction_drop_se": 2.0, "fresh": "new",
                    "min_fresh_bpb_gain": 0.0, "max_forget_se": None}
    (work / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    # the served path (crawl, window, cpt-base, merge, its eval, the gate); the toy chain tests run
    # the rest (cpt-instruct, every eval, promote, the report) on the same stage code
    res = subprocess.run(["dvc", "repro", "gate@2024-02", "u-eval-cpt-base-res@2024-02"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, f"{res.stdout[-4000:]}\n{res.stderr[-3000:]}"
    ran = set(re.findall(r"Running stage '([^']+)'", res.stdout + res.stderr))
    assert {"chain-root@main", "u-window@2024-02", "u-cpt-base@2024-02", "u-merge@2024-02", "gate@2024-02"} <= ran
    assert not any(s.startswith(("models@", "residual-extract@")) for s in ran)  # reused from the grid
    merged = work / "models/updates/2024-02/cpt-base-res"
    lineage = read_lineage(merged)
    assert lineage["ancestors"]["base"] == weights_hash(work / f"models/{target}/base")
    assert _safetensors_dtypes(merged) == {"BF16"}
    assert _chat_template(merged) == _chat_template(work / f"models/{target}/instruct")
    ev = json.loads((work / "metrics/updates/2024-02/eval/cpt-base-res.json").read_text())
    assert "2024-02" in ev["windows"]["fresh_bpb"]
    gate = json.loads((work / "metrics/updates/2024-02/promote.json").read_text())
    assert weights_hash(work / "models/updates/2024-02/current") == gate["current"]["weights_sha256"]
    assert gate["validation"]["instruction_prompts"] == "the suite's own (no split)"  # the paper suite
