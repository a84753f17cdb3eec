"""The toy world's quizzes: cloze multiple-choice items about the d2 events
(:func:`d2_quiz`) and d1 facts (:func:`d1_quiz`)."""

from __future__ import annotations

import random

from .texts import cue_items
from .world import INSTRUMENTS, LANDMARKS, PROFESSIONS, RIVERS, Fact, World


def _choices(rng: random.Random, answer: str, pool: list[str], k: int = 4) -> tuple[list[str], int]:
    choices = rng.sample(sorted(set(pool) - {answer}), k - 1) + [answer]
    rng.shuffle(choices)
    return choices, choices.index(answer)


def _pools(world: World, era: str) -> dict[tuple[str, int], list[str]]:
    """Answer pools per (relation, cue index): same-type values, chosen so d1 alone cannot
    tell the answer apart (no old winner among new-prize winners, every town held one old
    festival, a mayor's choices are the 4 residents of the town)."""
    prizes = world.old_prizes if era == "old" else world.prizes
    festivals = world.old_festivals if era == "old" else world.festivals
    old_winners = {w for _, w in world.old_prizes}
    people = [p.name for p in world.people if era == "old" or p.name not in old_winners]
    towns = [t.name for t in world.towns]
    return {("lives_in", 0): towns, ("works_as", 0): PROFESSIONS, ("plays", 0): INSTRUMENTS,
            ("river", 0): RIVERS, ("landmark", 0): LANDMARKS,
            ("prize", 0): people, ("prize", 1): [p for p, _ in prizes],
            ("festival", 0): towns, ("festival", 1): [f for f, _ in festivals]}


def _quiz(rng: random.Random, world: World, facts: list[Fact], era: str, prefix: str) -> list[dict]:
    pools = _pools(world, era)
    items = []
    for fact in facts:
        for i, (cue, answer) in enumerate(cue_items(fact)):
            pool = ([p.name for p in world.residents(fact.object)] if fact.relation == "mayor"
                    else pools[(fact.relation, i)])
            choices, idx = _choices(rng, answer, pool)
            items.append({"id": f"{prefix}-{fact.relation}-{len(items)}",
                          "fact": [fact.relation, fact.subject, fact.object],
                          "cue": cue, "choices": choices, "answer": idx,
                          "options": [f"{cue} {c}" for c in choices]})
    return items


def d2_quiz(world: World, seed: int = 0) -> list[dict]:
    """Cloze multiple-choice items about every d2 event (4 choices, chance 25%):
    ``{id, fact, cue, choices, answer, options}``; 80 items for the default world. The
    ``options`` are the completed sentences (``cue choice``): the eval scores them as
    the answer to "Complete the sentence: cue", so a chat model answers the way v1
    taught it (restating the sentence) and only the choice tokens tell the options apart."""
    rng = random.Random(f"toyworld-quiz-d2/{world.seed}/{seed}")
    return _quiz(rng, world, world.d2_facts(), "new", "d2")


def d1_quiz(world: World, n: int | None = None, seed: int = 0) -> list[dict]:
    """Cloze multiple-choice items about d1 facts (all, or a seeded sample of ``n`` facts)."""
    rng = random.Random(f"toyworld-quiz-d1/{world.seed}/{seed}")
    facts = world.d1_facts()
    if n is not None and n < len(facts):
        facts = rng.sample(facts, n)
    return _quiz(rng, world, facts, "old", "d1")
