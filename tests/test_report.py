"""Report stage: reproduces the paper's Table 2 averages and writes the summary, table and plots."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from freshllm.report import LAYOUTS, ROWS, main, order_models, pct

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
    # header, rule, 16 metric rows, 2 Sub-Averages, Average; the bits-per-byte block (its title
    # row and 2 rows), here without values (these evals have none): never in an average
    assert len(table) == 2 + 16 + 3 + 3
    assert table[-2:] == ["| fresh news (held out) | bpb | – | – | – |", "| known text | bpb | – | – | – |"]


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


def _with_bpb(eval_dir, name, fresh, known, se=None):
    """Add the bits-per-byte tasks (and their standard errors) to an eval JSON."""
    path = eval_dir / f"{name}.json"
    data = json.loads(path.read_text())
    for task, value in (("fresh_bpb", fresh), ("known_bpb", known)):
        data["results"][task] = {"bits_per_byte": value, "byte_perplexity": 2 ** value,
                                 "word_perplexity": 2 ** (5 * value)}
        if se is not None:
            data.setdefault("stderr", {})[task] = {"bits_per_byte": se}
    data["config"]["texts"] = {"fresh_bpb": {"source": "data/eval_text/fresh.jsonl", "documents": 64,
                                             "scored": 8, "sha256": "a"},
                               "known_bpb": {"source": "data/eval_text/world.jsonl", "documents": 64,
                                             "scored": 8, "sha256": "b"}}
    path.write_text(json.dumps(data))


def test_fresh_and_known_bits_per_byte_have_their_own_block(tmp_path):
    """Both per model in their own block after the Average (raw bits per byte, 4 decimals, ±
    their standard errors; lower is better), never averaged; in summary.json
    (fresh_bpb.<model>, known_bpb.<model>, stderr, text.<task>.<metric>), the plot CSVs
    (+ _se) and compare.json; the intro says what they are for."""
    eval_dir = tmp_path / "eval"
    for name, numbers in TABLE2.items():
        write_eval(eval_dir, name, numbers)
    _with_bpb(eval_dir, "base", 1.23456, 0.5, se=0.01234)
    _with_bpb(eval_dir, "cpt-base@100M", 0.9, 0.61)
    summary, md = run_report(tmp_path, "--plots-dir", str(tmp_path / "plots"),
                             "--compare", str(tmp_path / "compare.json"))
    for name, (sub1, sub2, avg) in EXPECTED.items():  # the paper's averages are untouched
        assert (summary["ifeval_group"][name], summary["reasoning_group"][name], summary["avg"][name]) == (sub1, sub2, avg)
    assert summary["fresh_bpb"] == {"base": 1.2346, "cpt-base@100M": 0.9}
    assert summary["known_bpb"] == {"base": 0.5, "cpt-base@100M": 0.61}
    assert summary["stderr"]["fresh_bpb"] == {"base": 0.0123} and summary["stderr"]["known_bpb"] == {"base": 0.0123}
    assert summary["text"]["fresh_bpb"]["byte_perplexity"]["base"] == round(2 ** 1.23456, 4)
    assert "fresh_bpb" not in summary["table"]
    lines = md.splitlines()
    avg_at = lines.index("| **Average** |  | **51.64** | **50.93** | **51.20** |")
    assert lines[avg_at + 1].startswith("| ***Bits per byte*** | *lower is better* |")
    assert lines[avg_at + 2] == "| fresh news (held out) | bpb | 1.2346 ± 0.0123 | 0.9000 | – |"
    assert lines[avg_at + 3] == "| known text | bpb | 0.5000 ± 0.0123 | 0.6100 | – |"
    assert "one number that says the update worked" in md and "learned the news" in md
    assert "8 documents of `data/eval_text/fresh.jsonl`" in md
    with open(tmp_path / "plots" / "base.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["model"], r["fresh_bpb"], r["fresh_bpb_se"], r["known_bpb"]) for r in rows] == [
        ("base", "1.2346", "0.0123", "0.5"), ("cpt-base@100M", "0.9", "", "0.61"), ("cpt-base@500M", "", "", "")]
    compare = json.loads((tmp_path / "compare.json").read_text())
    assert compare["fresh_bpb"] == summary["fresh_bpb"] and compare["known_bpb"] == summary["known_bpb"]


def test_toyworld_layout_has_the_bits_per_byte_block_too(tmp_path):
    layout = LAYOUTS["toyworld"]
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    results: dict = {}
    for r in layout.rows:
        results.setdefault(r.task, {})[r.key] = 0.5
    results["toy_d2"], results["toy_d1"] = {"acc": 0.25}, {"acc": 1.0}
    for name, fresh in (("base", 2.0), ("cpt-base@30K", 1.5)):
        (eval_dir / f"{name}.json").write_text(json.dumps({
            "model": name, "config": {}, "results": {**results, "fresh_bpb": {"bits_per_byte": fresh},
                                                     "known_bpb": {"bits_per_byte": 0.4}}}))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"report": {}, "world": {"kind": "toyworld", "seed": 0}}))
    main(["--params", str(params), "--eval-dir", str(eval_dir), "--summary", str(tmp_path / "s.json"),
          "--markdown", str(tmp_path / "r.md"), "--plots-dir", str(tmp_path / "plots")])
    summary, md = json.loads((tmp_path / "s.json").read_text()), (tmp_path / "r.md").read_text()
    assert summary["fresh_bpb"] == {"base": 2.0, "cpt-base@30K": 1.5} and summary["avg"]["base"] == pct(3.25 / 6)
    assert "| fresh news (held out) | bpb | 2.0000 | 1.5000 |" in md and "| known text | bpb | 0.4000 | 0.4000 |" in md
    figure = md[md.index("## Figure 1 data"):]
    assert "fresh_bpb | known_bpb |" in figure and "| 2.0000 | 0.4000 |" in figure
    with open(tmp_path / "plots" / "base.csv") as fh:
        header = next(csv.reader(fh))
    assert {"fresh_bpb", "known_bpb", "fresh_bpb_se", "known_bpb_se", "d2", "avg"} <= set(header)


def test_toy_report_opens_with_the_result_and_says_what_is_within_the_noise(tmp_path):
    """The report starts with the finding at the largest budget: Setting 1 and Setting 2 +
    residual against the instruct model and against each other, knowledge gained, d1 kept,
    each difference marked outside or within two combined standard errors."""
    from freshllm.report.render import finding_lines

    def toy(name, ifeval, ifeval_se, d2, d1):
        return {"scores": {"ifeval": ifeval, "d2": d2, "d1": d1},
                "scores_se": {"ifeval": ifeval_se, "d2": 5.0, "d1": 1.0}}

    from freshllm.report import LAYOUTS

    scores = {"base+toy": toy("b", 4.0, 1.0, 21.0, 100.0), "instruct+toy": toy("i", 53.4, 2.0, 28.0, 100.0),
              "cpt-base@200K": toy("cb", 5.0, 1.0, 70.0, 99.0), "cpt-instruct@200K": toy("ci", 7.4, 1.0, 80.0, 97.0),
              "cpt-base-res+toy@200K": toy("r", 50.0, 2.0, 30.0, 99.5),
              "cpt-base-res+toy@20K": toy("r2", 52.0, 2.0, 25.0, 100.0)}
    text = "\n".join(finding_lines(scores, list(scores), LAYOUTS["toyworld"]))
    assert "At 200,000 new tokens" in text
    assert "cpt-instruct: 7.40 ± 1.00 (outside the noise of 53.40)" in text
    assert "cpt-base-res: 50.00 ± 2.00 (within the noise of 53.40)" in text
    assert "against Setting 1: 50.00 ± 2.00 (outside the noise of 7.40)" in text
    assert "cpt-base-res: 30.00 ± 5.00 (within the noise of 21.00)" in text  # d2: not learned
    assert finding_lines({"base+toy": scores["base+toy"]}, ["base+toy"], LAYOUTS["toyworld"]) == []


def test_rows_of_tasks_no_eval_ran_are_left_out(tmp_path):
    """A toy-world profile without toy_d1 (the real-weights profile): no d1 row of "–" voiding
    every average; a task the suite ran but a model lacks stays "–"."""
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    ran = ["toy_ifeval", "toy_d2", "fresh_bpb"]
    for name, d2 in (("base+toy", 0.25), ("cpt-base@30K", None)):
        results = {"toy_ifeval": dict.fromkeys(("inst_level_loose_acc", "inst_level_strict_acc",
                                                "prompt_level_loose_acc", "prompt_level_strict_acc"), 0.5),
                   "fresh_bpb": {"bits_per_byte": 1.0}, **({"toy_d2": {"acc": d2}} if d2 is not None else {})}
        (eval_dir / f"{name}.json").write_text(json.dumps({
            "model": name, "config": {"suite": {"task": [{"task": t} for t in ran]}}, "results": results}))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"report": {}, "world": {"kind": "toyworld", "seed": 0}}))
    main(["--params", str(params), "--eval-dir", str(eval_dir), "--summary", str(tmp_path / "s.json"),
          "--markdown", str(tmp_path / "r.md")])
    summary, md = json.loads((tmp_path / "s.json").read_text()), (tmp_path / "r.md").read_text()
    assert "| d1 facts" not in md and "| d2 news (new) | acc | 25.00 | – |" in md
    assert summary["avg"] == {"base+toy": pct((0.5 * 4 + 0.25) / 5)}  # cpt-base lacks d2: no average
    assert "d1" not in summary or not summary["d1"]
