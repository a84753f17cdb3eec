"""Tokens an lm-eval run of the suite processes: an ESTIMATE, from the size of each stock task
(its evaluation split), the requests lm-eval makes per document and typical prompt lengths.

Loglikelihood tasks make one request per answer choice (context + choice), each a forward
pass over its tokens (no prefix caching counted); generative tasks (IFEval, MMLU-Pro, GSM8K)
are counted to their generation limit (``eval.max_gen_toks`` or the task's own: 1280 / 2048 /
256), an upper bound -- base models often run to it, instruct models stop earlier. Prompt lengths
include the few-shot examples (MMLU, MMLU-Pro, GSM8K 5-shot; TruthfulQA's 6-shot QA preamble).
Orders of magnitude, not counts: the plan labels them ``estimate``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskCost:
    docs: int                 # evaluation documents (all subtasks together)
    subtasks: int             # eval.limit applies per subtask
    requests: float           # requests per document (answer choices; 1 for generation)
    prompt_tokens: int        # tokens per request (few-shot context + question + choice)
    max_gen_tokens: int = 0   # the task's own generation limit (0: loglikelihood)


# split sizes: ifeval train 541; mmlu test 14042 (57 subjects); mmlu_pro test 12032 (14
# categories); gsm8k test 1319; winogrande validation 1267; hellaswag validation 10042;
# arc_easy test 2376; piqa validation 1838; truthfulqa_mc2 validation 817 (~7 true/false choices)
TASKS: dict[str, TaskCost] = {
    "ifeval": TaskCost(541, 1, 1, 60, 1280),
    "mmlu": TaskCost(14042, 57, 4, 600),
    "mmlu_pro": TaskCost(12032, 14, 1, 2000, 2048),
    "gsm8k": TaskCost(1319, 1, 1, 900, 256),
    "winogrande": TaskCost(1267, 1, 2, 30),
    "hellaswag": TaskCost(10042, 1, 4, 90),
    "arc_easy": TaskCost(2376, 1, 4, 45),
    "piqa": TaskCost(1838, 1, 2, 55),
    "truthfulqa_mc2": TaskCost(817, 1, 7, 280),
    # the toy world's suite (freshllm.tasks.toy): sizes from the eval section, see toy_tasks()
    "toy_d2": TaskCost(80, 1, 4, 30),
}


def toy_tasks(ifeval_prompts: int, d1_items: int | None) -> dict[str, TaskCost]:
    return {"toy_ifeval": TaskCost(ifeval_prompts, 1, 1, 40, 1280),
            "toy_d2": TASKS["toy_d2"],
            "toy_d1": TaskCost(d1_items or 200, 1, 4, 30)}


def suite_tokens(cfg) -> dict[str, dict[str, float]]:
    """``{task: {docs, prompt_tokens, gen_tokens, requests}}`` for an ``EvalConfig``."""
    table = {**TASKS, **toy_tasks(cfg.toy_ifeval_prompts, cfg.toy_d1_items)}
    out = {}
    for task in cfg.tasks:
        t = table.get(task)
        if t is None:
            continue
        docs = t.docs if cfg.limit is None else min(t.docs, cfg.limit * t.subtasks)
        requests = docs * t.requests
        gen_limit = (cfg.max_gen_toks or t.max_gen_tokens) if t.max_gen_tokens else 0
        out[task] = {"docs": docs, "requests": requests, "prompt_tokens": requests * t.prompt_tokens,
                     "gen_tokens": docs * gen_limit}
    return out
