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

Validation split (the promotion gate of chained updates, :mod:`freshllm.updates.gate`, calls
:func:`run` in-process with ``validation_prompts``): the toy IFEval prompts are then the next
``validation_prompts`` of the generator, disjoint from the eval's (``toy_ifeval_prompts``);
the record says ``config.split: validation``. Only the toy world has validation prompts.

Outputs: ``--out`` JSON ``{model, model_hash, model_files_sha256, chat_template, config, results,
stderr, samples}`` with ``results[task][metric]`` (see ``freshllm.tasks.SUITE`` for the keys) and
``--samples`` per-sample logs (JSONL, one line per document and filter; ``samples`` in the record
names the file and its sha256). ``--reuse``: see :mod:`.reuse`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .. import tasks as lm_tasks
from ..common import (atomic_file, combine_hashes, file_hashes, set_offline, setup_logging, use_runtime,
                      user_errors, write_json)
from ..config import WorldConfig, load_section
from ..io.hf import ModelDirError, check_model_dir
from ..names import KINDS, model_kind, model_name
from ..tasks.text import TEXT_TASKS, TextConfig, TextDataError
from ..tasks.text import load as load_text, read_rows
from ..tasks.text import load_windows

from .errors import EvalError
from .ifeval_data import (ensure_punkt_tab, needs_ifeval_scoring,  # noqa: F401
                          nltk_data_dir, prepare_ifeval_scoring)
from .reuse import model_files_hash, samples_info, try_reuse
from .results import (_effective, check_finite_loglikelihoods, check_finite_weights,  # noqa: F401
                      cluster_bootstrap_se, extract_results, extract_stderrs, rolling_bootstrap_se)

log = logging.getLogger(__name__)

DEFAULT_CHAT_MODELS = ["instruct", "cpt-instruct", "cpt-base-res"]


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


# ------------------------------------------------------------------- running

def lm_args(cfg: EvalConfig, model_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """lm-eval's model arguments and its batch size / device for ``model_dir``."""
    args = {"pretrained": str(model_dir), "dtype": cfg.dtype, **cfg.model_args}
    extra: dict[str, Any] = {"batch_size": cfg.batch_size}
    if cfg.backend == "hf":
        import torch

        extra["device"] = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    else:
        args.setdefault("seed", cfg.seed)
    return args, extra


def build_lm(cfg: EvalConfig, model_dir: Path):
    """The lm-eval model object for ``model_dir`` (hf or vllm backend)."""
    from lm_eval.api.registry import get_model

    args, extra = lm_args(cfg, model_dir)
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


def evaluate_suite(lm, cfg: EvalConfig, chat: bool, texts: dict[str, Path] | None = None,
                   validation_prompts: int | None = None) -> tuple[dict, dict]:
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
                                                    "d1_items": cfg.toy_d1_items,
                                                    **({"split": "validation",
                                                        "val_ifeval_prompts": validation_prompts}
                                                       if validation_prompts else {})},
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
        **({"split": "validation", "validation_prompts": validation_prompts} if validation_prompts else {}),
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
        chat_override: bool | None = None, texts: dict[str, Path] | None = None,
        validation_prompts: int | None = None, runtime: dict | None = None,
        reuse: list[Path] | None = None) -> dict:
    """Score ``model_dir`` on the suite and, given ``texts`` (``{fresh_bpb|known_bpb: JSONL}``,
    as dvc.yaml always passes), on the bits-per-byte tasks; write ``out_path`` / ``samples_path``.
    ``validation_prompts``: the toy IFEval validation split instead (see the module doc).
    ``reuse``: eval records to copy instead when one is of the same model (:mod:`.reuse`)."""
    if validation_prompts is not None:
        if cfg.suite != "toyworld":
            raise EvalError(f"validation prompts: only the toy world's suite has a validation split "
                            f"(this suite: {cfg.suite!r})")
        if validation_prompts <= 0:
            raise EvalError(f"validation prompts: must be > 0, got {validation_prompts}")
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
    hashes = file_hashes(model_dir)  # read once: the model's hash and that of what scoring reads
    model_hash = combine_hashes(hashes)
    log.info("model %s (%s): hash %s… in %.1fs; chat template: %s",
             name, model_dir, model_hash[:12], time.time() - t0, chat)
    if reuse and validation_prompts is None and os.environ.get("WORLD_SIZE", "1") == "1":  # one process
        args, extra = lm_args(cfg, model_dir)
        copied = try_reuse(reuse, cfg, model_dir, hashes, name, chat, texts,
                           {**{k: v for k, v in args.items() if k != "pretrained"}, **extra},
                           out_path, samples_path, runtime)
        if copied is not None:
            return copied
    if needs_ifeval_scoring(cfg.tasks):
        prepare_ifeval_scoring(cfg.seed)  # fail before loading the model
    lm, model_args = build_lm(cfg, model_dir)
    check_finite_weights(lm, name)
    t0 = time.time()
    out, settings = evaluate_suite(lm, cfg, chat, texts, validation_prompts)
    if out is None:
        log.info("%s: this process's share is done; rank 0 gathers and writes the results", name)
        return {}
    check_finite_loglikelihoods(out, name)
    scored = [*cfg.tasks, *texts]
    log.info("evaluated %s on %d tasks in %.1fs", name, len(scored), time.time() - t0)
    report = {
        "model": name,
        "model_hash": model_hash,
        "model_files_sha256": model_files_hash(hashes),
        "chat_template": chat,
        "config": {"backend": cfg.backend, "model_args": model_args, **settings,
                   "params": asdict(cfg)},
        "results": extract_results(out, scored),
        "stderr": extract_stderrs(out, scored, cfg.bootstrap_iters, cfg.seed),
    }
    if runtime is not None:
        report["runtime"] = runtime
    windows = window_scores(out, cfg, texts)
    if windows:
        report["windows"] = windows
    n = write_samples(samples_path, out.get("samples") or {})
    report["samples"] = samples_info(samples_path, n)
    write_json(out_path, report)
    log.info("wrote %s and %d samples to %s", out_path, n, samples_path)
    return report


def window_scores(out: dict, cfg: EvalConfig, texts: dict[str, Path]) -> dict:
    """Per publishing window of a chained update (:mod:`.windows`): ``fresh_bpb`` of each
    window named in the fresh text file, the toy d2 quiz per event slice; empty otherwise."""
    from .windows import fresh_windows, quiz_slices

    found: dict[str, dict] = {}
    samples = out.get("samples") or {}
    if "fresh_bpb" in texts:
        named = {text: w for text, w in load_windows(texts["fresh_bpb"], cfg.text) if w is not None}
        if named:
            found["fresh_bpb"] = fresh_windows(samples.get("fresh_bpb", []), named,
                                               cfg.bootstrap_iters, cfg.seed)
    if cfg.suite == "toyworld" and cfg.world.d2_slices > 1 and "toy_d2" in cfg.tasks:
        found["toy_d2"] = {"slices": cfg.world.d2_slices,
                           **quiz_slices(samples.get("toy_d2", []), cfg.world.seed, cfg.world.d2_slices)}
    return found


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
    ap.add_argument("--reuse", type=Path, nargs="+", default=None, metavar="RECORD",
                    help="eval records (--out of other evals) to copy instead of scoring when one is "
                         "of the same model: the same files but the card, params, texts (freshllm.eval.reuse)")
    args = ap.parse_args(argv)
    setup_logging()
    with user_errors("eval", EvalError, ModelDirError, ModuleNotFoundError, ValueError, TextDataError):
        name = args.name or model_name(args.kind, args.family, args.budget)
        cfg = load_section(EvalConfig, "eval", args.params)
        texts = {task: path for task, path in (("fresh_bpb", args.fresh_text), ("known_bpb", args.known_text))
                 if path is not None}
        for task, path in list(texts.items()):
            # e.g. a chain whose windows had no article yet, or held out only validation-half ones
            if path.is_file() and not read_rows(path):
                log.warning("%s has no test-split text: %s is not scored", path, task)
                del texts[task]
        if not texts:
            log.warning("no --fresh-text / --known-text: the bits-per-byte tasks are not scored")
        runtime = use_runtime(args.params)
        run(cfg, args.model, name, args.out, args.samples, args.chat, texts, runtime=runtime, reuse=args.reuse)

