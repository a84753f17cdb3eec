"""The ``merges:`` grid: its loader (overlay, every bad key named), ``residual apply --merge``,
the dvc stages it expands to, and the method table (report.methods) over one and several runs."""

import json
import math

import pytest
import torch
import yaml

from conftest import ROOT, dvc_stage_names, profile_file
from freshllm.config import ConfigError
from freshllm.residual import ResidualConfig, extract, load_merges, overlay
from test_merge_methods import _cpt, reference
from test_residual import _cli, _pair, cfg, state

# ------------------------------------------------------------------------------ loader


def _params(tmp_path, merges, residual=None, **top):
    p = tmp_path / "params.yaml"
    data = {"budgets": ["20K", "200K"], "merge_budget": "200K", "target": "toy",
            "residual": residual if residual is not None else {"alpha": 1.0, "shard_size": "20KB"},
            "merges": merges, **top}
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def test_load_merges_overlays_each_entry_on_the_residual_section(tmp_path):
    p = _params(tmp_path, {"b050": {"beta": 0.5}, "ties": {"method": "ties_dr", "density": 0.3},
                           "same": {}}, residual={"alpha": 0.8, "shard_size": "20KB"})
    got = load_merges(p)
    assert list(got) == ["b050", "ties", "same"]
    assert got["b050"] == ResidualConfig(alpha=0.8, beta=0.5, shard_size="20KB")
    assert (got["ties"].method, got["ties"].density, got["ties"].alpha) == ("ties_dr", 0.3, 0.8)
    assert got["same"] == ResidualConfig(alpha=0.8, shard_size="20KB")
    assert load_merges(_params(tmp_path, {})) == {}


def test_every_bad_entry_and_key_is_named_at_once(tmp_path):
    p = _params(tmp_path, {"ok": {"beta": 0.5}, "bad": {"beta": "half", "densty": 0.5},
                           "ties": {"method": "ties", "beta": 0.5}, "beta0.5": {"beta": 0.5},
                           "notamap": [1, 2]}, merge_budget="300K")
    with pytest.raises(ConfigError) as exc:
        load_merges(p)
    keys = [x.split(":")[0] for x in exc.value.problems]
    assert keys == ["merges.bad.densty", "merges.bad.beta", "merges.ties.beta", "merges.beta0.5",
                    "merges.notamap", "merge_budget"]
    assert "expected a number, got 'half'" in exc.value.problems[1]
    assert "has no effect with method: ties" in exc.value.problems[2]
    assert "no '.'" in exc.value.problems[3]
    assert "'300K' is not in budgets ['20K', '200K']" in exc.value.problems[5]


def test_overlay_is_the_public_helper_the_gate_reuses():
    base = ResidualConfig(alpha=0.9)
    assert overlay(base, {"beta": 0.25, "method": "magmax"}, "promote.merge") == ResidualConfig(
        alpha=0.9, beta=0.25, method="magmax")
    with pytest.raises(ConfigError) as exc:
        overlay(base, {"gamma": 0.5, "alpa": 1}, "promote.merge")
    assert [x.split(":")[0] for x in exc.value.problems] == ["promote.merge.alpa", "promote.merge.gamma"]
    with pytest.raises(ConfigError, match=r"promote\.merge: expected a mapping of residual keys"):
        overlay(base, [1], "promote.merge")


# ----------------------------------------------------------------- apply --merge NAME

def test_apply_merge_name_applies_that_setting(tmp_path, tokenizers_pair, capsys):
    b, i = _pair(tmp_path, tokenizers_pair, dtype=torch.float32, name="g")
    extract(b, i, tmp_path / "R", cfg())
    t_dir = _cpt(b, tmp_path / "T")
    settings = {"b050": {"beta": 0.5, "alpha": 1.25}, "ties": {"method": "ties_dr", "density": 0.4},
                "magmax": {"method": "magmax"}}
    p = _params(tmp_path, settings)
    bs, ts, rs = state(b), state(t_dir), state(tmp_path / "R")
    from freshllm.residual.__main__ import main

    for name, over in settings.items():
        main([str(a) for a in ("--params", p, "apply", "--merge", name, "--residual", tmp_path / "R",
                               "--target", t_dir, "--base", b, "--out", tmp_path / name,
                               "--metrics", tmp_path / f"{name}.json")])
        m = json.loads((tmp_path / f"{name}.json").read_text())
        assert m["merge"] == name and m["config"]["method"] == over.get("method", "plain")
        assert set(m["drift"]) == {"mean", "max", "per_layer"}
        new = state(tmp_path / name)
        method = over.get("method", "plain")
        kw = {k: v for k, v in over.items() if k != "method"}
        for n in ts:
            torch.testing.assert_close(new[n], reference(method, bs[n], ts[n], rs[n], n, **kw),
                                       atol=2e-7, rtol=2e-6)
    code, err = _cli(capsys, "--params", p, "apply", "--merge", "nope", "--residual", tmp_path / "R",
                     "--target", t_dir, "--base", b, "--out", tmp_path / "nope")
    assert code == 1 and "merges.nope: no such merge setting (have: b050, ties, magmax)" in err


def test_the_merges_profile_expands_to_one_merge_and_eval_stage_per_setting(tmp_path):
    prof = profile_file("merges-toyworld")
    settings = load_merges(prof)
    assert len(settings) >= 10
    methods = {c.method for c in settings.values()}
    assert {"plain", "ties_dr", "dare_dr", "magmax", "breadcrumbs_dr"} <= methods
    assert {c.beta for c in settings.values()} >= {1.0, 0.75, 0.5} and {c.alpha for c in settings.values()} >= {1.0, 1.25}
    names = dvc_stage_names(tmp_path, prof)
    assert {f"merge@{n}" for n in settings} <= set(names) and {f"eval-merge@{n}" for n in settings} <= set(names)
    assert "methods-report@methods" in names
    default = ROOT / "params.yaml"
    assert load_merges(default) == {}
    names = dvc_stage_names(tmp_path / "d", default) if (tmp_path / "d").mkdir() is None else None
    assert not [n for n in names if n.startswith(("merge@", "eval-merge@", "methods-report"))]
    base = yaml.safe_load(default.read_text())
    prof_data = yaml.safe_load(prof.read_text())
    assert {k: v for k, v in prof_data.items() if k not in ("merges", "merge_tables")} == {
        k: v for k, v in base.items() if k not in ("merges", "merge_tables")}  # params.yaml + the grid


# ----------------------------------------------------------------------- method table

def _eval(eval_dir, fname, model, ifeval, d2, bpb, if_se=0.01, d2_se=0.02, bpb_se=0.01):
    from freshllm.report import LAYOUTS

    results, stderr = {}, {}
    for r in LAYOUTS["toyworld"].rows:
        v, s = ({"toy_d2": (d2, d2_se), "toy_d1": (0.5, 0.01)}.get(r.task) or (ifeval, if_se))
        results.setdefault(r.task, {})[r.key] = v
        stderr.setdefault(r.task, {})[r.key] = s
    results["fresh_bpb"], stderr["fresh_bpb"] = {"bits_per_byte": bpb}, {"bits_per_byte": bpb_se}
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / fname).write_text(json.dumps({"model": model, "config": {}, "results": results, "stderr": stderr}))


def _run(root, merge_if, with_res=True):
    """A run directory as the pipeline leaves it: params, metrics/eval, metrics/merges/eval."""
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump({
        "target": "toy", "budgets": ["20K", "200K"], "merge_budget": "200K",
        "world": {"kind": "toyworld", "seed": 0}, "report": {},
        "merges": {"good": {"beta": 0.75}, "worse": {"method": "magmax"}}}))
    ev, mv = root / "metrics/eval", root / "metrics/merges/eval"
    _eval(ev, "base-toy.json", "base+toy", 0.2, 0.25, 2.0)
    _eval(ev, "instruct-toy.json", "instruct+toy", 0.6, 0.3, 1.9)
    _eval(ev, "cpt-base-200K.json", "cpt-base@200K", 0.1, 0.65, 1.0)
    _eval(ev, "cpt-base-20K.json", "cpt-base@20K", 0.1, 0.4, 1.5)  # another budget: not read
    if with_res:
        _eval(ev, "res-toy-200K.json", "cpt-base-res+toy@200K", 0.35, 0.5, 1.3)
    _eval(mv, "good.json", "cpt-base-res+toy@200K~good", merge_if, 0.45, 1.5)
    _eval(mv, "worse.json", "cpt-base-res+toy@200K~worse", 0.30, 0.41, 1.6)
    return root


def test_method_table_kept_ratios_and_delta_method_errors_by_hand(tmp_path):
    from freshllm.report.methods import main

    run = _run(tmp_path / "run", 0.45)
    out = tmp_path / "out"
    main(["--run", str(run), "--markdown", str(out / "t.md"), "--json", str(out / "t.json"),
          "--figure", str(out / "p.png")])
    data = json.loads((out / "t.json").read_text())
    rows = data["rows"]
    assert set(rows) == {"instruct", "cpt-base", "residual", "good", "worse"}
    g = rows["good"]
    assert g["model"] == "cpt-base-res+toy@200K~good" and g["n_runs"] == 1
    assert g["ifeval"] == 45.0 and g["ifeval_se"] == 0.5  # 4 metrics of se 0.01: sqrt(4) * 1 / 4
    assert g["if_kept"] == pytest.approx(45 / 60)
    assert g["if_kept_se"] == pytest.approx(math.hypot(0.5 / 60, 45 * 0.5 / 60**2))
    assert g["d2_kept"] == pytest.approx((45 - 25) / (65 - 25))
    assert g["d2_kept_se"] == pytest.approx(math.hypot(math.hypot(2, 2) / 40, 20 * math.hypot(2, 2) / 40**2))
    assert g["bpb_kept"] == pytest.approx((2.0 - 1.5) / (2.0 - 1.0))
    se_b = math.hypot(math.hypot(0.01, 0.01) / 1.0, 0.5 * math.hypot(0.01, 0.01) / 1.0)
    assert g["bpb_kept_se"] == pytest.approx(se_b)
    assert g["knowledge_kept"] == pytest.approx(0.5)
    assert g["knowledge_kept_se"] == pytest.approx(math.hypot(g["d2_kept_se"], se_b) / 2)
    assert rows["instruct"]["if_kept"] == pytest.approx(1.0) and rows["cpt-base"]["knowledge_kept"] == pytest.approx(1.0)
    # the front: good (0.75, 0.5) dominates worse (0.5, 0.4); residual (0.58, 0.6) is not dominated
    assert (g["front"], rows["worse"]["front"], rows["residual"]["front"]) == (True, False, True)
    assert not rows["instruct"]["front"] and rows["instruct"]["reference"]
    md = (out / "t.md").read_text()
    assert "| good | beta: 0.75 | 45.00 ± 0.50 | 0.75 ± 0.01 | 0.50 ± 0.08 | 0.50 ± 0.02 | 0.50 ± 0.04 | yes |" in md
    assert "| worse | method: magmax |" in md and "| *residual* (reference) | cpt-base-res+toy@200K |" in md
    order = [ln.split(" | ")[0] for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert order == ["| *instruct* (reference)", "| *cpt-base* (reference)", "| *residual* (reference)",
                     "| good", "| worse"]  # references, then the settings in params order
    assert (out / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_method_table_over_runs_is_the_mean_and_its_standard_error(tmp_path):
    from freshllm.report.methods import run

    runs = [_run(tmp_path / "s0", 0.45), _run(tmp_path / "s1", 0.39)]
    rows = run(runs, tmp_path / "t.md", tmp_path / "t.json", tmp_path / "p.png")
    g = rows["good"]
    assert g["n_runs"] == 2 and g["if_kept_runs"] == pytest.approx([0.75, 0.65])
    assert g["if_kept"] == pytest.approx(0.70)
    assert g["if_kept_se"] == pytest.approx(0.05)  # sd 0.0707 / sqrt(2)
    assert g["d2_kept_se"] == 0.0  # the same in both runs
    assert "mean ± standard error over 2 runs" in (tmp_path / "t.md").read_text()


def test_method_table_names_what_is_missing(tmp_path):
    from freshllm.report.methods import main

    run = _run(tmp_path / "run", 0.45)
    (run / "metrics/merges/eval/worse.json").unlink()
    argv = ["--run", str(run), "--markdown", str(tmp_path / "t.md"), "--json", str(tmp_path / "t.json"),
            "--figure", str(tmp_path / "p.png")]
    with pytest.raises(SystemExit, match=r"report\.methods: no eval results for cpt-base-res\+toy@200K~worse"):
        main(argv)
    _eval(run / "metrics/merges/eval", "worse.json", "cpt-base-res+toy@200K~worse", 0.30, 0.41, 1.6)
    other = _run(tmp_path / "other", 0.45, with_res=False)
    with pytest.raises(SystemExit, match=r"run 2 has rows .*: the runs must have the same merge settings"):
        main(argv[:2] + ["--run", str(other)] + argv[2:])


# ----------------------------------------------------------------------- sizes

def test_size_table_groups_runs_by_size_and_checks_the_goal_beyond_the_noise(tmp_path):
    from freshllm.report.sizes import main

    small = [_run(tmp_path / "1M-s0", 0.45), _run(tmp_path / "1M-s1", 0.39)]
    big = _run(tmp_path / "7M-s0", 0.60)
    (big / "metrics/models").mkdir(parents=True)
    (big / "metrics/models/toy.json").write_text(json.dumps({"parameters": 6557952}))
    out = tmp_path / "out"
    main(["--group", "1M=" + ",".join(map(str, small)), "--group", f"7M={big}", "--settings", "residual,good",
          "--if-goal", "0.9", "--knowledge-goal", "0.4",
          "--markdown", str(out / "s.md"), "--json", str(out / "s.json"), "--figure", str(out / "s.png")])
    rows = {(r["size"], r["setting"]): r for r in json.loads((out / "s.json").read_text())["rows"]}
    assert set(rows) == {("1M", "residual"), ("1M", "good"), ("7M", "residual"), ("7M", "good")}
    assert rows[("1M", "good")]["n_runs"] == 2 and rows[("1M", "good")]["if_kept"] == pytest.approx(0.70)
    assert rows[("7M", "good")]["parameters"] == 6557952 and rows[("1M", "good")]["parameters"] is None
    # 7M good: IF kept 60/60 = 1.0 (± 0.012), d2 kept 0.5 (± 0.08: 0.5 - 0.16 < 0.4), bpb kept 0.5 (± 0.02)
    assert rows[("7M", "good")]["if_kept"] == pytest.approx(1.0)
    assert rows[("7M", "good")]["goal"] == "not: d2"
    assert rows[("1M", "good")]["goal"] == "not: if"  # d2 kept 0.5 in both runs: SE 0 over runs
    md = (out / "s.md").read_text()
    assert "| good | 7M | 6557952 | 1 | 60.00 ± 0.50 | 1.00 ± 0.01 |" in md
    assert (out / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):
        main(["--group", f"7M={big}", "--settings", "nope", "--markdown", str(out / "x.md"),
              "--json", str(out / "x.json"), "--figure", str(out / "x.png")])
