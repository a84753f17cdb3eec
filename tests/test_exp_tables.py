"""The seeds table: mean ± spread over the experiments of a `dvc exp show --json`."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from freshllm.report import seeds

MODELS = ["base+toy", "instruct+toy", "cpt-base@20K", "cpt-instruct@20K", "cpt-base-res+toy@20K"]


def state(rev, seed, ifeval, d2, name=None):
    return {"rev": rev, "name": name, "data": {
        "params": {"params.yaml": {"data": {"models": {"toy": {"seed": seed}}, "cpt": {"train": {"seed": seed}}}}},
        "metrics": {"metrics/compare.json": {"data": {"ifeval": dict(zip(MODELS, ifeval)),
                                                      "d2": dict(zip(MODELS, d2))}}}}}


def shown(base_ifeval=(4, 50, 5, 10, 40)):
    head = state("abc1234", 0, base_ifeval, (20, 21, 50, 55, 40))
    workspace = {**state("workspace", 0, base_ifeval, (20, 21, 50, 55, 40)), "experiments": None}
    head["experiments"] = [{"executor": {"state": "success"}, "revs": [state("e1", 1, (5, 52, 6, 14, 44), (22, 20, 48, 60, 38), "exp-a")]},
                           {"revs": [state("e2", 2, (3, 47, 4, 8, 35), (19, 22, 53, 58, 41), "exp-b")]},
                           {"revs": [{"rev": "e3", "name": "failed", "data": None, "error": {"msg": "x"}}]},
                           # queued / running: the seed's params with the baseline's metrics
                           {"executor": {"state": "queued"}, "revs": [state("e4", 3, base_ifeval, (20, 21, 50, 55, 40))]},
                           {"executor": {"state": "running"}, "revs": [state("e5", 4, base_ifeval, (20, 21, 50, 55, 40))]}]
    return [workspace, head]


def test_one_run_per_seed_and_the_stats_by_hand():
    runs = seeds.runs_from_exp_show(shown(), ["models.toy.seed", "cpt.train.seed"])
    # the workspace = its commit; the failed one has no data; queued and running ones left out
    assert sorted(runs) == [(0, 0), (1, 1), (2, 2)]
    agg = seeds.aggregate(runs)
    st = agg["ifeval"]["cpt-base-res+toy@20K"]
    assert st["values"] == [40, 44, 35] and st["mean"] == pytest.approx(119 / 3)
    assert st["sd"] == pytest.approx(statistics.stdev([40, 44, 35]))
    assert st["sem"] == pytest.approx(st["sd"] / math.sqrt(3)) and (st["min"], st["max"]) == (35, 44)


def test_contrasts_count_seeds_and_tell_noise_from_a_finding():
    runs = seeds.runs_from_exp_show(shown(), ["models.toy.seed", "cpt.train.seed"])
    by = {(d["score"], d["a"], d["b"]): d for d in seeds.contrasts(runs)}
    res_vs_s1 = by[("ifeval", "cpt-base-res+toy@20K", "cpt-instruct@20K")]
    assert res_vs_s1["values"] == [30, 30, 27] and res_vs_s1["a_better_in"] == 3
    assert res_vs_s1["verdict"] == "better in 3/3 seeds, beyond the noise"
    # res vs base on d2: 40-20, 38-22, 41-19 -> better; cpt-base vs res on d2: 10, 10, 12 -> better
    gap = by[("d2", "cpt-base@20K", "cpt-base-res+toy@20K")]
    assert gap["values"] == [10, 10, 12] and "beyond the noise" in gap["verdict"]
    # instruct vs res: -10, -8, -12 -> res worse in every seed
    assert by[("ifeval", "cpt-base-res+toy@20K", "instruct+toy")]["verdict"] == "worse in 3/3 seeds, beyond the noise"


def test_a_sign_that_flips_is_within_the_noise():
    s = shown()
    # seed 2: Setting 1 above Setting 2 + residual
    s[1]["experiments"][1]["revs"][0] = state("e2", 2, (3, 47, 4, 50, 35), (19, 22, 53, 58, 41), "exp-b")
    runs = seeds.runs_from_exp_show(s, ["models.toy.seed", "cpt.train.seed"])
    d = next(d for d in seeds.contrasts(runs) if d["score"] == "ifeval" and d["b"] == "cpt-instruct@20K")
    assert d["a_better_in"] == 2 and d["verdict"] == "better in 2/3 seeds, within the noise"


def test_two_results_for_the_same_seed_are_refused():
    s = shown()
    s[0] = {**state("workspace", 0, (9, 9, 9, 9, 9), (1, 1, 1, 1, 1)), "experiments": None}
    with pytest.raises(seeds.ExpsError, match=r"two different results for .*models.toy.seed.: 0"):
        seeds.runs_from_exp_show(s, ["models.toy.seed", "cpt.train.seed"])


def test_cli_writes_table_and_json_and_names_a_missing_key(tmp_path):
    src = tmp_path / "exps.json"
    src.write_text(json.dumps(shown()))
    md, js = tmp_path / "seeds.md", tmp_path / "seeds.json"
    seeds.main(["--exp-json", str(src), "--markdown", str(md), "--json", str(js)])
    text = md.read_text()
    assert "# Scores over 3 training seeds" in text and "39.67 ± 4.51 (35.00–44.00)" in text
    assert json.loads(js.read_text())["runs"] == [{"models.toy.seed": 0, "cpt.train.seed": 0},
                                                  {"models.toy.seed": 1, "cpt.train.seed": 1},
                                                  {"models.toy.seed": 2, "cpt.train.seed": 2}]
    with pytest.raises(SystemExit, match="report.seeds: .*no key world.seed"):
        seeds.main(["--exp-json", str(src), "--keys", "world.seed", "--markdown", str(md), "--json", str(js)])
    with pytest.raises(SystemExit, match="3 distinct runs .* need at least 4"):
        seeds.main(["--exp-json", str(src), "--min-seeds", "4", "--markdown", str(md), "--json", str(js)])


# --- report.grid: the knowledge-gap grid over residual settings ---

from freshllm.report import grid  # noqa: E402


def summary(res_if, res_d2, res_bpb, se=1.0):
    names = ["base+toy", "instruct+toy", "cpt-base@200K", "cpt-base-res+toy@200K"]
    scores = {"ifeval": [4, 50, 5, res_if], "d2": [20, 21, 60, res_d2], "fresh_bpb": [0.9, 1.4, 0.3, res_bpb]}
    out = {k: dict(zip(names, v)) for k, v in scores.items()}
    out["stderr"] = {k: dict.fromkeys(names, se if k != "fresh_bpb" else 0.01) for k in scores}
    return out


def test_kept_shares_by_hand():
    k = grid.kept(summary(40, 50, 0.6), "toy", "200K")
    assert k["if_kept"] == pytest.approx(0.8) and k["d2_kept"] == pytest.approx(30 / 40)
    assert k["bpb_kept"] == pytest.approx(0.3 / 0.6) and k["both"] == pytest.approx(0.6)
    # delta method: se(a/b) = sqrt((sa/b)^2 + (a sb / b^2)^2), sa = sb = hypot(1, 1) for d2
    s = math.sqrt(2)
    assert k["d2_kept_se"] == pytest.approx(math.hypot(s / 40, 30 * s / 40**2))
    assert k["if_kept_se"] == pytest.approx(math.hypot(1 / 50, 40 / 50**2))
    with pytest.raises(seeds.ExpsError, match=r"no ifeval score .* for cpt-base-res\+toy@20K"):
        grid.kept(summary(40, 50, 0.6), "toy", "20K")


def test_grid_reads_each_experiments_summary_from_its_commit_and_ranks(tmp_path):
    import subprocess

    def git(*a):
        return subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True, text=True,
                              env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                                   "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}).stdout.strip()

    git("init", "-q")
    (tmp_path / "metrics").mkdir()
    revs = {}
    for alpha, (i, d, b) in {1.0: (40, 50, 0.6), 0.5: (30, 58, 0.4), 0.75: (38, 52, 0.5)}.items():
        (tmp_path / "metrics/summary.json").write_text(json.dumps(summary(i, d, b, se=0.5)))
        git("add", "-A")
        git("commit", "-qm", str(alpha))
        revs[alpha] = git("rev-parse", "HEAD")

    def st(alpha):
        return {"rev": revs[alpha], "name": f"a{alpha}", "data": {
            "params": {"params.yaml": {"data": {"residual": {"alpha": alpha}}}},
            "metrics": {"metrics/compare.json": {"data": {"avg": {}}}}}}

    shown = [{**st(1.0), "experiments": [{"revs": [st(0.5)]}, {"revs": [st(0.75)]}]}]
    (tmp_path / "exps.json").write_text(json.dumps(shown))
    (tmp_path / "params.yaml").write_text("residual:\n  alpha: 1.0\n")
    md, js = tmp_path / "grid.md", tmp_path / "grid.json"
    grid.main(["--exp-json", str(tmp_path / "exps.json"), "--repo", str(tmp_path), "--vary", "residual.alpha",
               "--budget", "200K", "--defaults", str(tmp_path / "params.yaml"), "--markdown", str(md),
               "--json", str(js)])
    table = json.loads(js.read_text())["rows"]
    # IF x d2 kept: 1.0 -> 0.8 x 0.75 = 0.6; 0.5 -> 0.6 x 0.95 = 0.57; 0.75 -> 0.76 x 0.8 = 0.608
    assert [r["setting"]["residual.alpha"] for r in table] == [0.75, 1.0, 0.5]
    assert [r["both"] for r in table] == pytest.approx([0.608, 0.6, 0.57])
    assert table[1]["default"] and table[0]["vs_default"] == "within the noise"
    assert "| 0.75 |" in md.read_text() and "(default)" in md.read_text()


def _chain_state(rev, seed, replay, ifeval_res, name=None):
    step = {f"{s}.ifeval.cpt-base-res": v for s, v in zip(("ancestor", "2024-01"), ifeval_res)}
    step.update({"ancestor.ifeval.cpt-instruct": 53.4, "2024-01.ifeval.cpt-instruct": 13.0,
                 "2024-01.bpb_mean.cpt-base-res": 1.2, "2024-01.quiz_mean.cpt-base-res": 0.5})
    return {"rev": rev, "name": name, "data": {
        "params": {"params.yaml": {"data": {"updates": {"2024-01": {}},
                                            "chain": {"cpt": {"train": {"seed": seed, "replay_fraction": replay}}}}}},
        "metrics": {"metrics/chain/compare.json": {"data": {
            "step": step, "promoted": {"ancestor": True, "2024-01": seed % 2 == 0},
            "final": {"bpb.cpt-base-res.2024-01": 1.1 + seed / 100, "quiz.cpt-base-res.2024-01": 0.4}}}}}}


def test_chain_seeds_group_by_replay_leave_out_queued_runs_and_render(tmp_path):
    """`report.seeds --chain` (was scripts/chain_seeds.py): mean ± SE over seeds per replay
    share, on report.exps' reading (a queued experiment's baseline metrics are not a seed)."""
    head = _chain_state("abc", 0, 0.0, (53.4, 48.0))
    head["experiments"] = [{"executor": {"state": "success"}, "revs": [_chain_state("e1", 1, 0.0, (53.4, 50.0))]},
                           {"revs": [_chain_state("e2", 0, 0.25, (53.4, 40.0))]},
                           {"executor": {"state": "queued"}, "revs": [_chain_state("e3", 2, 0.0, (53.4, 48.0))]}]
    groups, windows = seeds.chain_runs([head])
    assert windows == ["2024-01"] and sorted(groups) == [0.0, 0.25] and len(groups[0.0]) == 2
    md = seeds.render_chain(groups, windows)
    assert "| 2024-01 | 49.00 ± 1.00 | 13.00 ± 0.00 |" in md and "1/2 |" in md
    assert "| cpt-base-res | 1.1050 ± 0.0050 | 40.00 ± 0.00 |" in md
    exp = tmp_path / "exps.json"
    exp.write_text(json.dumps([head]))
    seeds.main(["--chain", "--exp-json", str(exp), "--markdown", str(tmp_path / "s.md")])
    assert (tmp_path / "s.md").read_text() == md
