"""Report stage: reproduces the paper's Table 2 averages and writes the summary, table and plots."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from freshllm.report import ROWS, main, order_models, pct

# Table 2, columns L3b org. / +100M / +500M, in the row order of the paper (= ROWS).
TABLE2 = {
    "base": [19.06, 17.87, 9.98, 9.06, 62.14, 34.51, 49.58, 49.20,
             73.16, 60.12, 79.22, 80.39, 77.78, 79.54, 80.74, 43.94],
    "cpt-base@100M": [17.75, 16.31, 9.61, 8.69, 63.76, 34.92, 48.14, 34.04,
                      72.14, 60.17, 78.62, 81.14, 80.30, 80.09, 81.56, 47.64],
    "cpt-base@500M": [19.30, 17.87, 10.54, 9.61, 63.77, 34.70, 47.54, 36.62,
                      71.59, 60.27, 78.20, 80.60, 79.67, 80.30, 81.34, 47.29],
}
EXPECTED = {  # (first Sub-Average, second Sub-Average, Average)
    "base": (31.43, 75.85, 51.64),
    "cpt-base@100M": (29.15, 76.29, 50.93),
    "cpt-base@500M": (29.99, 76.00, 51.20),
}


def write_eval(eval_dir, name, numbers, **extra):
    results: dict = {}
    for row, value in zip(ROWS, numbers, strict=True):
        results.setdefault(row.task, {})[row.key] = value / 100
    data = {"model": name, "model_hash": "0" * 64, "chat_template": False,
            "config": {"limit": None, "source": "local"}, "results": results, **extra}
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / f"{name}.json").write_text(json.dumps(data))


def run_report(tmp_path, *extra, report_params=None):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"report": report_params or {}, "world": {"kind": "news", "seed": 0}}))
    summary, markdown = tmp_path / "out" / "summary.json", tmp_path / "out" / "report.md"
    main(["--params", str(params), "--eval-dir", str(tmp_path / "eval"), "--summary",
          str(summary), "--markdown", str(markdown), *extra])
    return json.loads(summary.read_text()), markdown.read_text()


def test_rows_follow_table2():
    assert len(ROWS) == 16
    assert [(r.benchmark, r.metric) for r in ROWS][:8] == [
        ("IFEval", "ILL_acc"), ("", "ILS_acc"), ("", "PLL_acc"), ("", "PLS_acc"),
        ("MMLU", "acc"), ("MMLU-Pro", "EM"), ("GSM8K", "EM"), ("", "strict-EM")]
    assert [r.metric for r in ROWS[8:]] == ["acc", "acc", "acc_n", "acc", "acc_n", "acc", "acc_n", "acc"]


def test_reproduces_table2_averages(tmp_path):
    for name, numbers in TABLE2.items():
        write_eval(tmp_path / "eval", name, numbers)
    summary, md = run_report(tmp_path)
    for name, (sub1, sub2, avg) in EXPECTED.items():
        assert summary["ifeval_group"][name] == sub1
        assert summary["reasoning_group"][name] == sub2
        assert summary["avg"][name] == avg
    assert summary["table"]["gsm8k"]["exact_match_strict-match"]["base"] == 49.20
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| Benchmark"))
    assert header == "| Benchmark | Metric | base | cpt-base@100M | cpt-base@500M |"
    subs = [line for line in lines if line.startswith("| **Sub-Average**")]
    assert subs == ["| **Sub-Average** |  | **31.43** | **29.15** | **29.99** |",
                    "| **Sub-Average** |  | **75.85** | **76.29** | **76.00** |"]
    assert "| **Average** |  | **51.64** | **50.93** | **51.20** |" in lines
    assert "| IFEval | ILL_acc | 19.06 | 17.75 | 19.30 |" in lines
    assert "| T_mc2 | acc | 43.94 | 47.64 | 47.29 |" in lines
    start = lines.index(header)
    table = lines[start:lines.index("", start)]
    assert len(table) == 2 + 16 + 3  # header, rule, 16 metric rows, 2 Sub-Averages, Average


def test_columns_and_plots(tmp_path):
    numbers = TABLE2["base"]
    for name in ["cpt-base-res", "cpt-instruct", "instruct", "cpt-base", "base",
                 "cpt-base@1B", "cpt-base@100M", "other"]:
        write_eval(tmp_path / "eval", name, numbers)
    summary, md = run_report(tmp_path, "--plots-dir", str(tmp_path / "plots"),
                             "--cpt-tokens", "40K")
    header = next(line for line in md.splitlines() if line.startswith("| Benchmark"))
    assert header.split(" | ")[2:] == ["base", "instruct", "cpt-base", "cpt-base@100M",
                                       "cpt-base@1B", "cpt-instruct", "cpt-base-res", "other |"]
    assert summary["avg"]["cpt-base-res"] == 51.64
    with open(tmp_path / "plots" / "base.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["model"], int(r["new_tokens"])) for r in rows] == [
        ("base", 0), ("cpt-base", 40_000), ("cpt-base@100M", 100_000_000),
        ("cpt-base@1B", 1_000_000_000)]
    assert float(rows[0]["ifeval"]) == pct((0.1906 + 0.1787 + 0.0998 + 0.0906) / 4)
    assert float(rows[0]["avg"]) == 51.64
    with open(tmp_path / "plots" / "residual.csv") as fh:
        assert [r["model"] for r in csv.DictReader(fh)] == ["cpt-base-res"]


def test_missing_values_leave_averages_out(tmp_path):
    write_eval(tmp_path / "eval", "base", TABLE2["base"])
    data = json.loads((tmp_path / "eval" / "base.json").read_text())
    del data["results"]["truthfulqa_mc2"]
    (tmp_path / "eval" / "base.json").write_text(json.dumps(data))
    summary, md = run_report(tmp_path)
    assert summary["ifeval_group"]["base"] == 31.43 and "avg" not in summary
    assert "| T_mc2 | acc | – |" in md and "| **Average** |  | – |" in md


def test_order_models_unknown_kinds_last():
    assert order_models(["z", "cpt-base@5M", "base", "a@1M", "cpt-base"], ["base", "cpt-base"]) == [
        "base", "cpt-base", "cpt-base@5M", "a@1M", "z"]


def test_errors_are_clear(tmp_path):
    with pytest.raises(SystemExit, match="eval directory not found"):
        run_report(tmp_path)
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "bad.json").write_text("{not json")
    with pytest.raises(SystemExit, match="bad.json: not valid JSON"):
        run_report(tmp_path)


def test_grid_reports_exactly_the_params_grid(tmp_path, caplog, monkeypatch):
    """Eval files of models no longer in the grid (committed before `-S budgets=...`) are left
    out; a model the grid expects but has no results is an error naming it."""
    import logging


    # an earlier test's library may have reconfigured logging (dictConfig disables existing
    # loggers; logging.disable); the warning itself is what this test checks
    logger = logging.getLogger("freshllm.report")
    monkeypatch.setattr(logger, "disabled", False)
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logging.root.manager, "disable", logging.NOTSET)
    caplog.set_level(logging.WARNING, logger="freshllm.report")

    from freshllm.names import Grid

    grid = {"families": ["tiny"], "target": "tiny", "budgets": ["1K"], "residual_sources": ["tiny"]}
    names = Grid(**grid).models()
    assert names == ["base+tiny", "instruct+tiny", "cpt-base@1K", "cpt-instruct@1K", "cpt-base-res+tiny@1K"]
    for name in [*names, "cpt-base@2K"]:  # a stale budget
        write_eval(tmp_path / "eval", name, TABLE2["base"])
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**grid, "report": {}, "world": {"kind": "news", "seed": 0}}))
    argv = ["--params", str(params), "--grid", "--eval-dir", str(tmp_path / "eval"),
            "--summary", str(tmp_path / "s.json"), "--markdown", str(tmp_path / "r.md")]
    main(argv)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert set(summary["avg"]) == set(names)
    assert "cpt-base@2K" in caplog.text and "cpt-base@2K" not in (tmp_path / "r.md").read_text()
    (tmp_path / "eval" / "cpt-instruct@1K.json").unlink()
    with pytest.raises(SystemExit, match="no eval results .* for cpt-instruct@1K"):
        main(argv)
    params.write_text(yaml.safe_dump({"families": "tiny", "budgets": [], "report": {}, "world": {}}))
    with pytest.raises(SystemExit) as err:  # one message naming every bad key, no traceback
        main(argv)
    for key in ("families", "budgets", "residual_sources"):
        assert key in str(err.value)


def test_every_score_carries_its_standard_error(tmp_path):
    """lm-eval's standard errors reach every cell (value ± se), the sub-averages and the
    average (sqrt(sum se^2)/n), summary.json (`stderr`, `table_stderr`) and the plot CSVs."""
    se = [0.01 * (i % 4 + 1) for i in range(16)]  # fractions, as lm-eval reports them
    stderr: dict = {}
    for row, value in zip(ROWS, se, strict=True):
        stderr.setdefault(row.task, {})[row.key] = value
    write_eval(tmp_path / "eval", "base", TABLE2["base"], stderr=stderr)
    write_eval(tmp_path / "eval", "cpt-base@100M", TABLE2["cpt-base@100M"])  # no stderrs: no ±
    summary, md = run_report(tmp_path, "--plots-dir", str(tmp_path / "plots"))
    ifeval_se = pct((0.01**2 + 0.02**2 + 0.03**2 + 0.04**2) ** 0.5 / 4)
    assert summary["table_stderr"]["ifeval"]["inst_level_loose_acc"]["base"] == 1.0
    first8 = (sum(v * v for v in se[:8]) ** 0.5) / 8
    assert summary["stderr"]["ifeval_group"]["base"] == pct(first8)
    assert summary["stderr"]["avg"]["base"] == pct((sum(v * v for v in se) ** 0.5) / 16)
    assert summary["stderr"]["ifeval"]["base"] == ifeval_se
    assert "cpt-base@100M" not in summary["stderr"]["avg"]
    assert "| IFEval | ILL_acc | 19.06 ± 1.00 | 17.75 |" in md
    assert f"**31.43 ± {pct(first8):.2f}**" in md and "within the noise" in md
    rows = list(csv.DictReader(open(tmp_path / "plots" / "base.csv")))
    assert rows[0]["model"] == "base" and float(rows[0]["avg_se"]) == summary["stderr"]["avg"]["base"]
    assert rows[1]["avg_se"] == ""
