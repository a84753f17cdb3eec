"""The paper's evaluation suite (Tables 1-3) and its offline local-data twins.

``SUITE`` is the one place that says which lm-eval task or group each benchmark
is, how many shots it gets (paper 3.1.2: MMLU, MMLU-Pro and GSM8K 5-shot, the rest
0-shot), which lm-eval result keys are reported and under which Table 2 labels.

``materialize`` writes, into a scratch directory, an lm-eval group YAML
``freshllm_suite`` that lists the selected benchmarks with their shots, and (for
``source: local``) the local-data twins: YAMLs that ``include:`` the installed
stock task YAMLs and override only the data source with the small synthetic
sets shipped in ``data/`` (absolute paths, hence written at run time).

``TOY_SUITE`` is the toy world's suite (top-level ``world: {kind: toyworld}``, see
:mod:`freshllm.tasks.toy`): instruction following scored by lm-eval's IFEval checkers on
generated prompts (``toy_ifeval``, a twin of the stock ``ifeval`` task), knowledge of
the d2 news (``toy_d2``) and retention of d1 facts (``toy_d1``), both cloze multiple
choice; their data is generated from the world seed at run time.

``TEXT_SUITE`` is scored for every model on every suite (:mod:`freshllm.tasks.text`): bits
per byte on the held-out fresh news (``fresh_bpb``) and on older text the ancestor knew
(``known_bpb``), lower is better, reported in their own block and never averaged.
"""

from __future__ import annotations

import importlib.util
import re
import string
from dataclasses import dataclass
from pathlib import Path

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent
TWINS_DIR = PACKAGE_DIR / "twins"
DATA_DIR = PACKAGE_DIR / "data"
SUITE_GROUP = "freshllm_suite"


@dataclass(frozen=True)
class Metric:
    key: str  # key under results[task] in the eval JSON
    lm_eval: str  # lm-eval result key "<metric>,<filter>"
    label: str  # Table 2 metric label


@dataclass(frozen=True)
class Benchmark:
    task: str  # lm-eval task or group name
    label: str  # Table 2 benchmark label
    num_fewshot: int
    section: str  # instruction | reasoning | truthfulness (Table 1 / Table 2 blocks)
    metrics: tuple[Metric, ...]
    group: bool = False  # an lm-eval group (mmlu, mmlu_pro) rather than a single task
    ifeval_scoring: bool = False  # scored with lm-eval's IFEval checkers (needs punkt_tab)
    rolling: bool = False  # loglikelihood_rolling: per-sample (loglikelihood, count) pairs


SUITE: tuple[Benchmark, ...] = (
    Benchmark("ifeval", "IFEval", 0, "instruction", (
        Metric("inst_level_loose_acc", "inst_level_loose_acc,none", "ILL_acc"),
        Metric("inst_level_strict_acc", "inst_level_strict_acc,none", "ILS_acc"),
        Metric("prompt_level_loose_acc", "prompt_level_loose_acc,none", "PLL_acc"),
        Metric("prompt_level_strict_acc", "prompt_level_strict_acc,none", "PLS_acc"),
    ), ifeval_scoring=True),
    Benchmark("mmlu", "MMLU", 5, "instruction", (
        Metric("acc", "acc,none", "acc"),
    ), group=True),
    Benchmark("mmlu_pro", "MMLU-Pro", 5, "instruction", (
        Metric("exact_match", "exact_match,custom-extract", "EM"),
    ), group=True),
    Benchmark("gsm8k", "GSM8K", 5, "instruction", (
        Metric("exact_match_flexible-extract", "exact_match,flexible-extract", "EM"),
        Metric("exact_match_strict-match", "exact_match,strict-match", "strict-EM"),
    )),
    Benchmark("winogrande", "Winogrande", 0, "reasoning", (
        Metric("acc", "acc,none", "acc"),
    )),
    Benchmark("hellaswag", "Hellaswag", 0, "reasoning", (
        Metric("acc", "acc,none", "acc"),
        Metric("acc_norm", "acc_norm,none", "acc_n"),
    )),
    Benchmark("arc_easy", "ARC_easy", 0, "reasoning", (
        Metric("acc", "acc,none", "acc"),
        Metric("acc_norm", "acc_norm,none", "acc_n"),
    )),
    Benchmark("piqa", "Piqa", 0, "reasoning", (
        Metric("acc", "acc,none", "acc"),
        Metric("acc_norm", "acc_norm,none", "acc_n"),
    )),
    Benchmark("truthfulqa_mc2", "T_mc2", 0, "truthfulness", (
        Metric("acc", "acc,none", "acc"),
    )),
)
BENCHMARKS: dict[str, Benchmark] = {b.task: b for b in SUITE}
TASK_NAMES: tuple[str, ...] = tuple(BENCHMARKS)

# The toy world's suite (world.kind: toyworld): data generated at run time by freshllm.tasks.toy
TOY_SUITE: tuple[Benchmark, ...] = (
    Benchmark("toy_ifeval", "Toy IFEval", 0, "instruction", tuple(
        Metric(m.key, m.lm_eval, m.label) for m in BENCHMARKS["ifeval"].metrics), ifeval_scoring=True),
    Benchmark("toy_d2", "d2 news (new)", 0, "knowledge", (
        Metric("acc", "acc,none", "acc"),
    )),
    Benchmark("toy_d1", "d1 facts (kept)", 0, "knowledge", (
        Metric("acc", "acc,none", "acc"),
    )),
)
# The toy world's suite also takes the paper suite's local twins (items about the real world):
# for a real trained model on the toy world (profiles/real-smollm2.yaml) they measure what it
# keeps of what it knew. The toy report's table lays out the toy tasks; the twins' scores are in
# each eval JSON (freshllm.report.real tabulates them).
SUITES: dict[str, tuple[Benchmark, ...]] = {"paper": SUITE, "toyworld": TOY_SUITE + SUITE}
# the suite each kind of the top-level `world` is scored on
SUITE_OF_WORLD: dict[str, str] = {"news": "paper", "toyworld": "toyworld"}

# Scored on every suite (freshllm.tasks.text): what the update is for. Lower is better.
_ROLLING_METRICS = (
    Metric("bits_per_byte", "bits_per_byte,none", "bpb"),
    Metric("byte_perplexity", "byte_perplexity,none", "byte_ppl"),
    Metric("word_perplexity", "word_perplexity,none", "word_ppl"),
)
TEXT_SUITE: tuple[Benchmark, ...] = (
    Benchmark("fresh_bpb", "fresh news (held out)", 0, "text", _ROLLING_METRICS, rolling=True),
    Benchmark("known_bpb", "known text", 0, "text", _ROLLING_METRICS, rolling=True),
)
ALL_BENCHMARKS: dict[str, Benchmark] = {b.task: b for s in (*SUITES.values(), TEXT_SUITE) for b in s}


def suite_benchmarks(name: str) -> dict[str, Benchmark]:
    """``{task: Benchmark}`` of the suite ``name`` (paper | toyworld)."""
    if name not in SUITES:
        raise ValueError(f"unknown eval suite {name!r}; known: {list(SUITES)}")
    return {b.task: b for b in SUITES[name]}


def lm_eval_tasks_dir() -> Path:
    """Directory of the installed lm-eval stock task YAMLs (found without importing lm_eval)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("lm-eval is not installed (pip install 'lm-eval[ifeval]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "tasks"
    if not path.is_dir():
        raise FileNotFoundError(f"lm-eval stock task directory not found: {path}")
    return path


def suite_config(tasks: list[str]) -> dict:
    """The ``freshllm_suite`` lm-eval group: the selected benchmarks with their shots."""
    entries = []
    for name in tasks:
        bench = ALL_BENCHMARKS[name]
        kind = "group" if bench.group else "task"
        entries.append({kind: bench.task, "num_fewshot": bench.num_fewshot})
    return {"group": SUITE_GROUP, "task": entries, "metadata": {"version": 1}}


_DATA_REF = re.compile(r"\$\{data\}/(\S+)")


def twin_data_files(task: str) -> list[Path]:
    """Absolute paths of the shipped data files the local twins of ``task`` read."""
    files = []
    for template in sorted((TWINS_DIR / task).glob("*.yaml")):
        files += [DATA_DIR / rel for rel in _DATA_REF.findall(template.read_text(encoding="utf-8"))]
    return files


def check_local_data(tasks: list[str]) -> None:
    """Raise ``FileNotFoundError`` naming every shipped data file the twins of ``tasks`` lack."""
    missing = [str(p) for t in tasks for p in twin_data_files(t) if not p.is_file()]
    if missing:
        raise FileNotFoundError("eval data file(s) not found: " + ", ".join(missing))


def _write_twins(dest: Path, tasks: list[str]) -> None:
    """The local-data twins of ``tasks`` (paper suite) under ``dest / "twins"``."""
    if not tasks:
        return
    stock = lm_eval_tasks_dir()
    check_local_data(tasks)
    values = {"lm_eval_tasks": str(stock), "data": str(DATA_DIR)}
    for task in tasks:
        for template in sorted((TWINS_DIR / task).glob("*.yaml")):
            text = string.Template(template.read_text(encoding="utf-8")).substitute(values)
            include = yaml.safe_load(text).get("include")
            if include and not Path(include).is_file():
                raise FileNotFoundError(
                    f"stock lm-eval task YAML not found: {include} "
                    f"(twin {template.name}; lm-eval version mismatch?)"
                )
            out = dest / "twins" / task / template.name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")


def materialize(dest: str | Path, tasks: list[str], source: str = "local", suite_name: str = "paper",
                world_seed: int = 0, toy_sizes: dict | None = None, texts: dict[str, Path] | None = None,
                text_cfg=None) -> dict:
    """Write the suite group (and, for ``source: local``, the twins) into ``dest``.

    ``suite_name: toyworld`` writes the toy tasks and their data generated from ``world_seed``
    (``toy_sizes``: keyword arguments of :func:`freshllm.tasks.toy.materialize`).
    ``texts`` (``{fresh_bpb|known_bpb: JSONL}``) adds the bits-per-byte tasks on those files,
    prepared by ``text_cfg`` (:class:`freshllm.tasks.text.TextConfig`), whatever the source.
    Returns the suite group config (``text_data``: what each text task scores). Raises
    ``FileNotFoundError`` naming every missing data file or stock YAML before anything runs.
    """
    dest = Path(dest)
    known = suite_benchmarks(suite_name)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ValueError(f"unknown eval task(s) {unknown} for suite {suite_name!r}; known: {list(known)}")
    if suite_name == "toyworld":
        if source != "local":
            raise ValueError("the toyworld suite is generated locally: use source 'local'")
        from .toy import materialize as materialize_toy

        toy = {b.task for b in TOY_SUITE}
        materialize_toy(dest, [t for t in tasks if t in toy], world_seed, **(toy_sizes or {}))
        _write_twins(dest, [t for t in tasks if t not in toy])
    elif source == "local":
        _write_twins(dest, tasks)
    elif source != "hub":
        raise ValueError(f"source must be 'local' or 'hub', got {source!r}")
    text_info = {}
    if texts:
        from .text import TextConfig
        from .text import materialize as materialize_text

        text_info = materialize_text(dest, texts, text_cfg or TextConfig())
    group = suite_config([*tasks, *(texts or {})])
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{SUITE_GROUP}.yaml").write_text(yaml.safe_dump(group, sort_keys=False), encoding="utf-8")
    return {**group, **({"text_data": text_info} if text_info else {})}


