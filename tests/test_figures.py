from freshllm.figures import main


def test_figures_render_pngs_offline(tmp_path):
    plots, live = tmp_path / "plots", tmp_path / "live/cpt-base-1K/plots/metrics/train"
    plots.mkdir()
    live.mkdir(parents=True)
    header = "model,new_tokens,ifeval,ifeval_group,reasoning_group,avg\n"
    (plots / "base.csv").write_text(header + "base,0,10,11,50,30\ncpt-base@1K,1000,9,10,51,29\n")
    (plots / "residual.csv").write_text(header + "cpt-base-res@1K,1000,40,35,50,42\n")
    (live / "loss.tsv").write_text("timestamp\tstep\tloss\n1\t1\t5.0\n2\t2\t4.0\n")
    main(["--plots-dir", str(plots), "--live-dir", str(tmp_path / "live"), "--out", str(tmp_path / "fig")])
    for name in ("figure1.png", "loss.png"):
        data = (tmp_path / "fig" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_panels_follow_the_report_columns(tmp_path):
    from pathlib import Path
    from freshllm.figures import panel_columns

    data = {Path("base.csv"): [{"model": "base", "new_tokens": "0", "ifeval": "5", "ifeval_group": "5",
                                "reasoning_group": "", "d2": "22.5", "d1": "100", "avg": "23"}],
            Path("residual.csv"): [{"model": "res@1K", "new_tokens": "1000", "ifeval": "50", "ifeval_group": "50",
                                    "reasoning_group": "", "d2": "45", "d1": "98", "avg": "55"}]}
    # the empty reasoning column and the copy of ifeval are skipped; d2 / d1 get their own panels
    assert panel_columns(data) == ["ifeval", "d2", "d1", "avg"]
    data[Path("residual.csv")][0]["ifeval_group"] = "49"
    assert panel_columns(data) == ["ifeval", "ifeval_group", "d2", "d1", "avg"]


def test_loss_curves_of_the_grid_only(tmp_path):
    from freshllm.figures import grid_runs, loss_curves, read_plots

    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "base.csv").write_text("model,new_tokens,ifeval\nbase+tiny,0,5\ncpt-base@3K,3000,4\n")
    (plots / "instruct.csv").write_text("model,new_tokens,ifeval\ncpt-instruct@3K,3000,20\n")
    (plots / "residual.csv").write_text("model,new_tokens,ifeval\ncpt-base-res+tiny@3K,3000,40\n")
    assert grid_runs(read_plots(plots)) == {"cpt-base-3K", "cpt-instruct-3K"}
    for run in ("cpt-base-3K", "cpt-instruct-3K", "cpt-base-1K"):  # 1K: a budget no longer in the grid
        live = tmp_path / "live" / run / "plots/metrics/train"
        live.mkdir(parents=True)
        (live / "loss.tsv").write_text("timestamp\tstep\tloss\n1\t1\t5.0\n2\t2\t4.0\n")
    drawn = loss_curves(tmp_path / "live", tmp_path / "loss.png", grid_runs(read_plots(plots)))
    assert drawn == ["cpt-base-3K", "cpt-instruct-3K"]
    assert len(loss_curves(tmp_path / "live", tmp_path / "all.png")) == 3
    for f in plots.glob("*.csv"):
        f.write_text("model,new_tokens,ifeval\nbase+tiny,0,5\n")
    assert grid_runs(read_plots(plots)) is None  # no cpt model named: every run is drawn


def test_standard_error_columns_are_error_bars_not_panels(tmp_path):
    from pathlib import Path

    from freshllm.figures import figure1, panel_columns

    rows = [{"model": "base", "new_tokens": "0", "ifeval": "5", "ifeval_se": "1.5", "avg": "20", "avg_se": "2"},
            {"model": "cpt-base@10K", "new_tokens": "10000", "ifeval": "6", "ifeval_se": "1.2", "avg": "21",
             "avg_se": "2"},
            {"model": "cpt-base@100K", "new_tokens": "100000", "ifeval": "4", "ifeval_se": "", "avg": "22",
             "avg_se": ""}]
    data = {Path("base.csv"): rows}
    assert panel_columns(data) == ["ifeval", "avg"]
    figure1(data, tmp_path / "f.png")  # budgets 10x apart: symlog x, error bars where known
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_bits_per_byte_panels_sit_next_to_instruction_following(tmp_path, monkeypatch):
    """The report's fresh_bpb / known_bpb columns are panels of Figure 1 (with their _se error
    bars), labelled as bits per byte, lower is better, not as scores x100."""
    from pathlib import Path

    from freshllm import figures

    rows = [{"model": "base", "new_tokens": "0", "ifeval": "5", "avg": "20", "fresh_bpb": "2.1",
             "fresh_bpb_se": "0.1", "known_bpb": "0.5", "known_bpb_se": "0.02"},
            {"model": "cpt-base@10K", "new_tokens": "10000", "ifeval": "6", "avg": "21", "fresh_bpb": "1.7",
             "fresh_bpb_se": "0.1", "known_bpb": "0.6", "known_bpb_se": ""}]
    data = {Path("base.csv"): rows}
    assert figures.panel_columns(data) == ["ifeval", "avg", "fresh_bpb", "known_bpb"]
    saved = {}
    monkeypatch.setattr(figures, "_save", lambda fig, out: saved.setdefault("fig", fig))
    figures.figure1(data, tmp_path / "f.png")
    labels = {ax.get_title(): ax.get_ylabel() for ax in saved["fig"].axes}
    assert labels["fresh news (held out), bits per byte"] == "bits per byte (lower is better)"
    assert labels["known text, bits per byte"] == "bits per byte (lower is better)"
    assert labels["IFEval (mean of 4 metrics)"] == "score x100"


def test_line_panels_draw_lines_with_gaps_error_bars_and_step_labels(tmp_path, monkeypatch):
    """The general multi-panel line plot (the chain report's steps.png): one panel per entry,
    a line per label (a line without points is left out, a missing y is a gap), the x tick labels
    on every panel; it writes a PNG, and a figure with no panel is an error."""
    import pytest

    from freshllm import figures

    panels = [{"title": "a", "ylabel": "score", "lines": {"x": [(0, 1.0, 0.1), (1, None, None), (2, 3.0, None)],
                                                          "empty": []}},
              {"title": "b", "lines": {"y": [(1, 0.5, 0.01), (2, 0.4, 0.02)]}}]
    figures.line_panels(panels, tmp_path / "steps.png", xticks=["ancestor", "w1", "w2"], xlabel="update step")
    data = (tmp_path / "steps.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    saved = {}
    monkeypatch.setattr(figures, "_save", lambda fig, out: saved.setdefault("fig", fig))
    figures.line_panels(panels, tmp_path / "x.png", xticks=["ancestor", "w1", "w2"], xlabel="update step")
    a, b = saved["fig"].axes
    assert (a.get_title(), a.get_ylabel(), b.get_title(), b.get_xlabel()) == ("a", "score", "b", "update step")
    assert [t.get_text() for t in a.get_legend().get_texts()] == ["x"]  # "empty" has no point
    assert [t.get_text() for t in b.get_xticklabels()] == ["ancestor", "w1", "w2"]
    with pytest.raises(ValueError, match="no panel"):
        figures.line_panels([], tmp_path / "none.png")
