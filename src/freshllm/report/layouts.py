"""The tables the report lays out: rows (benchmark x metric) per suite, the blocks with
a Sub-Average, the score names of the summary and plots, the bits-per-byte block."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..tasks import SUITE, TEXT_SUITE, TOY_SUITE

SECTIONS = {"instruction": "ifeval_group", "reasoning": "reasoning_group"}
SCORES = ("ifeval", "ifeval_group", "reasoning_group", "avg")


@dataclass(frozen=True)
class Row:
    benchmark: str  # Table 2 label, shown on the first row of a benchmark
    metric: str
    task: str
    key: str
    section: str


def _rows(benchmarks) -> tuple[Row, ...]:
    return tuple(Row(b.label if i == 0 else "", m.label, b.task, m.key, b.section)
                 for b in benchmarks for i, m in enumerate(b.metrics))


ROWS: tuple[Row, ...] = _rows(SUITE)
# The bits-per-byte block (both layouts): score name = task, its bits_per_byte; lower is better.
TEXT_ROWS: tuple[Row, ...] = tuple(Row(b.label, "bpb", b.task, "bits_per_byte", b.section) for b in TEXT_SUITE)
TEXT_SCORES: tuple[str, ...] = tuple(r.task for r in TEXT_ROWS)
TEXT_INTRO = (
    "The last block is what the update is for: bits per byte (lower is better) on fresh news "
    "no model trained on (the crawled articles the pack stage holds out by url hash) and on "
    "older text the ancestor knew. Fresh-news bpb falling below the original model's says it "
    "learned the news; known-text bpb rising says it forgot. They are not in any average.")
PAPER_TEXT_INTRO = (
    " The paper's suite measures general skills, not the news: on the paper profiles the "
    "fresh-news bits per byte is the one number that says the update worked.")


@dataclass(frozen=True)
class Layout:
    """What the table of one eval suite shows: rows, blocks with a Sub-Average, scores."""

    rows: tuple[Row, ...]
    sections: dict[str, str]  # section -> score name of its Sub-Average
    scores: tuple[str, ...]  # summary / plot score names
    intro: str
    singles: dict[str, tuple[str, str]] = field(default_factory=dict)  # score -> (task, key)
    text_rows: tuple[Row, ...] = TEXT_ROWS  # the bits-per-byte block (raw values, never averaged)

    @property
    def text_scores(self) -> tuple[str, ...]:
        return tuple(r.task for r in self.text_rows)

    def evaluated(self, evals: dict[str, dict]) -> Layout:
        """This layout without the rows of tasks that no model's eval suite ran (each eval JSON
        lists its suite's tasks in ``config.suite``), e.g. a toy-world profile whose ``eval.tasks``
        leaves out ``toy_d1``: those rows would only show "–" and void every average. A task the
        suite ran but a model has no value for stays (shown "–", its averages left out). Evals
        that do not record their suite keep the whole layout."""
        ran: set[str] = set()
        for rec in evals.values():
            suite = (rec.get("config") or {}).get("suite")
            if not isinstance(suite, dict) or not isinstance(suite.get("task"), list):
                return self
            ran |= {t.get("task") or t.get("group") for t in suite["task"] if isinstance(t, dict)}
        rows = tuple(r for r in self.rows if r.task in ran)
        if not rows or len(rows) == len(self.rows):
            return self
        # the first row of a benchmark carries its label
        labelled = tuple(Row(next(b.benchmark for b in self.rows if b.task == r.task and b.benchmark)
                             if i == 0 or rows[i - 1].task != r.task else "", r.metric, r.task, r.key, r.section)
                         for i, r in enumerate(rows))
        return replace(self, rows=labelled)  # singles of a task left out score None

    @property
    def plot_scores(self) -> tuple[str, ...]:
        """Score columns of the plot CSVs: the averages, then the bits per byte."""
        return (*self.scores, *self.text_scores)


LAYOUTS: dict[str, Layout] = {
    "paper": Layout(ROWS, SECTIONS, SCORES, (
        "Scores x100 in the layout of the paper's Table 2. The first Sub-Average is the "
        "mean of the 8 instruction-following numbers above it (IFEval x4, MMLU, MMLU-Pro, "
        "GSM8K x2), the second the mean of the 7 reasoning numbers, Average the mean of all "
        "16 numbers; – marks a missing value (its averages are left out). " + TEXT_INTRO
        + PAPER_TEXT_INTRO)),
    "toyworld": Layout(
        _rows(TOY_SUITE), {"instruction": "ifeval_group", "knowledge": "knowledge_group"},
        ("ifeval", "ifeval_group", "knowledge_group", "d2", "d1", "avg"), (
            "Toy world, scores x100 in the layout of the paper's Table 2: instruction following "
            "on generated IFEval-style prompts scored by lm-eval's IFEval checkers (4 metrics), "
            "knowledge of the d2 news (events after the ancestor's pre-training; cloze multiple "
            "choice, chance 25) and retention of d1 facts (chance 25). The first Sub-Average is "
            "the mean of the 4 IFEval numbers, the second of the 2 knowledge numbers, Average "
            "the mean of all 6; – marks a missing value (its averages are left out). " + TEXT_INTRO),
        singles={"d2": ("toy_d2", "acc"), "d1": ("toy_d1", "acc")}),
}
