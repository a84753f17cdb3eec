"""The toy world's eval tasks (``eval.suite: toyworld``), written at run time.

``materialize(dest, tasks, world_seed)`` generates the data of the selected tasks from
the world seed (:mod:`freshllm.synthetic.toyworld`) into ``dest/toy_data`` and writes
the task YAMLs of ``twins/`` there with absolute paths:

* ``toy_ifeval``: a twin of lm-eval's stock ``ifeval`` task (``include:``), so
  generation, the IFEval instruction checkers and the 4 metrics are lm-eval's own; the
  prompts ask for facts about d1 entities under 1 or 2 verifiable instructions with real
  IFEval ids. Only prompts whose generated reference response passes lm-eval's strict
  checker are kept (every prompt is achievable). ``split="validation"`` gives the promotion
  gate's prompts instead (:func:`ifeval_split_rows`): the next ``val_ifeval_prompts`` of the same
  generator, disjoint from the eval's (test) prompts.
* ``toy_d2``: cloze multiple choice about the d2 events (the new knowledge);
* ``toy_d1``: cloze multiple choice about d1 facts (retention).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

TWINS_DIR = Path(__file__).resolve().parent / "twins"
TASKS = ("toy_ifeval", "toy_d2", "toy_d1")


def ifeval_reference_check(row: dict, response: str) -> bool:
    """lm-eval's strict IFEval check of ``response`` to the prompt ``row``."""
    from lm_eval.tasks.ifeval.utils import InputExample, test_instruction_following_strict

    inp = InputExample(key=row["key"], instruction_id_list=row["instruction_id_list"],
                       prompt=row["prompt"], kwargs=row["kwargs"])
    return test_instruction_following_strict(inp, response).follow_all_instructions


SPLITS = ("test", "validation")


def ifeval_split_rows(world_seed: int, ifeval_prompts: int, val_ifeval_prompts: int,
                      split: str) -> list[dict]:
    """The toy IFEval prompts of one split. ``test``: the eval's first ``ifeval_prompts`` of
    the generator; ``validation``: the ``val_ifeval_prompts`` after them (the generator is
    sequential and never repeats a prompt text, so the two share no prompt)."""
    from freshllm.synthetic import toyworld

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {list(SPLITS)}")
    import langdetect

    langdetect.DetectorFactory.seed = 0  # the capital/lowercase checks detect the language
    world = toyworld.make_world(world_seed)
    if split == "test":
        return toyworld.ifeval_prompts(world, ifeval_prompts, accept=ifeval_reference_check)
    rows = toyworld.ifeval_prompts(world, ifeval_prompts + val_ifeval_prompts, accept=ifeval_reference_check)
    return rows[ifeval_prompts:]


def task_rows(task: str, world_seed: int, ifeval_prompts: int = 120,
              d1_items: int | None = 128, split: str = "test", val_ifeval_prompts: int = 0) -> list[dict]:
    """The documents of one toy task (deterministic in the arguments; ``toy_ifeval``
    needs IFEval scoring ready, see :func:`freshllm.eval.prepare_ifeval_scoring`).
    ``split: validation`` (``toy_ifeval`` only): the gate's prompts, see :func:`ifeval_split_rows`."""
    from freshllm.synthetic import toyworld

    if split != "test" and task != "toy_ifeval":
        raise ValueError(f"toy task {task!r} has no {split!r} split (only toy_ifeval has validation prompts)")
    world = toyworld.make_world(world_seed)
    if task == "toy_ifeval":
        return ifeval_split_rows(world_seed, ifeval_prompts, val_ifeval_prompts, split)
    if task == "toy_d2":
        return toyworld.d2_quiz(world)
    if task == "toy_d1":
        return toyworld.d1_quiz(world, d1_items)
    raise ValueError(f"unknown toy task {task!r}; known: {list(TASKS)}")


def materialize(dest: str | Path, tasks: list[str], world_seed: int, ifeval_prompts: int = 120,
                d1_items: int | None = 128, split: str = "test", val_ifeval_prompts: int = 0) -> dict[str, Path]:
    """Write the data and YAMLs of ``tasks`` under ``dest``; returns ``{task: data file}``."""
    from freshllm.tasks import lm_eval_tasks_dir

    dest = Path(dest)
    data_dir = (dest / "toy_data").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    values = {"lm_eval_tasks": str(lm_eval_tasks_dir()), "data": str(data_dir)}
    written = {}
    for task in tasks:
        rows = task_rows(task, world_seed, ifeval_prompts, d1_items, split, val_ifeval_prompts)
        path = data_dir / f"{task}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        text = string.Template((TWINS_DIR / f"{task}.yaml").read_text(encoding="utf-8")).substitute(values)
        out = dest / "twins" / "toy" / f"{task}.yaml"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        written[task] = path
    return written
