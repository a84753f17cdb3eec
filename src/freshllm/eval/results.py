"""From lm-eval's output to the eval record: the suite's metrics, their standard errors
(lm-eval's, or a bootstrap over documents where it gives none), and the checks that refuse
non-finite weights and log-likelihoods."""

from __future__ import annotations

import math

from .. import tasks as lm_tasks
from .errors import EvalError


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


def _bootstrap_ratios(num, den, iters: int, seed: int):
    """sum(num) / sum(den) over ``iters`` resamples of the documents (with replacement)."""
    import numpy as np

    idx = np.random.default_rng(seed).integers(0, len(num), size=(iters, len(num)))
    return num[idx].sum(1) / den[idx].sum(1)


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
    return float(_bootstrap_ratios(hits, counts, iters, seed).std(ddof=1))


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
    mean = _bootstrap_ratios(ll, count, iters, seed)
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
