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
    head["experiments"] = [{"revs": [state("e1", 1, (5, 52, 6, 14, 44), (22, 20, 48, 60, 38), "exp-a")]},
                           {"revs": [state("e2", 2, (3, 47, 4, 8, 35), (19, 22, 53, 58, 41), "exp-b")]},
                           {"revs": [{"rev": "e3", "name": "failed", "data": None, "error": {"msg": "x"}}]}]
    return [workspace, head]


def test_one_run_per_seed_and_the_stats_by_hand():
    runs = seeds.runs_from_exp_show(shown(), ["models.toy.seed", "cpt.train.seed"])
    assert sorted(runs) == [(0, 0), (1, 1), (2, 2)]  # the workspace = its commit; the failed one has no data
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
    with pytest.raises(seeds.SeedsError, match=r"two different results for .*models.toy.seed.: 0"):
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
