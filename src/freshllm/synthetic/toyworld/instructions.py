"""v1, the instruct model's instruction set: chats whose instructions are verifiable
with lm-eval's IFEval checkers (real instruction ids and kwargs), with responses made of
d1 facts (:func:`respond`, :func:`sft_chats`), the d1 cloze / question chats, and the
held-out IFEval-style eval prompts (:func:`ifeval_prompts`)."""

from __future__ import annotations

import json
import random

from ..ifeval_rows import ifeval_row
from .texts import TEMPLATES, cue_items, sentence
from .world import Fact, World

# kwargs values of the instructions, and the d1 knowledge chats' cloze prompts and questions
KEYWORDS = ["bread", "music", "winter", "boats", "lamps", "gardens", "stones", "wool", "maps",
            "bells", "clocks", "apples"]
END_PHRASES = ["Is there anything else I can help with?", "That is all I know.",
               "Let me know if you have additional questions.", "Hope this helps."]
CLOZE_PREFIX = "Complete the sentence: "
_QUESTIONS = {"lives_in": "Where does {s} live?", "works_as": "What does {s} do for a living?",
              "plays": "Which instrument does {s} play?", "river": "Which river does {s} lie on?",
              "landmark": "What is {s} known for?", "prize": "Who won the {o}?",
              "festival": "Where was the {s} held?"}

# instruction id -> (group: at most one per prompt, description as IFEval words it)
INSTRUCTIONS: dict[str, tuple[str, str]] = {
    "change_case:english_capital": ("case", "Your entire response should be in English, and in all capital letters."),
    "change_case:english_lowercase": ("case", "Your entire response should be in English, and in all lowercase letters. No capital letters are allowed."),
    "detectable_format:number_bullet_lists": ("structure", "Your answer must contain exactly {num_bullets} bullet points. Use the markdown bullet points such as:\n* This is point 1. \n* This is point 2"),
    "detectable_format:json_format": ("structure", "Entire output should be wrapped in JSON format. You can use markdown ticks such as ```."),
    "startend:quotation": ("structure", "Wrap your entire response with double quotation marks."),
    "startend:end_checker": ("ending", "Finish your response with this exact phrase {end_phrase}. No other words should follow this phrase."),
    "detectable_content:postscript": ("ending", "At the end of your response, please explicitly add a postscript starting with {postscript_marker}"),
    "keywords:existence": ("keywords", "Include keywords {keywords} in the response."),
    "punctuation:no_comma": ("comma", "In your entire response, refrain from the use of any commas."),
    "detectable_format:title": ("title", "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>."),
    "length_constraints:number_sentences": ("length", "Your response should contain less than {num_sentences} sentences."),
}
# pairs that cannot both be followed sensibly (besides two of the same group)
_CONFLICTS = {frozenset(p) for p in [
    ("detectable_format:json_format", "punctuation:no_comma"),
    ("detectable_format:json_format", "detectable_format:title"),
    ("detectable_format:json_format", "startend:end_checker"),
    ("detectable_format:json_format", "detectable_content:postscript"),
    ("detectable_format:json_format", "length_constraints:number_sentences"),
    ("startend:quotation", "detectable_format:title"),
    ("startend:quotation", "detectable_content:postscript"),
    ("detectable_format:number_bullet_lists", "length_constraints:number_sentences"),
    ("startend:end_checker", "length_constraints:number_sentences"),
    ("detectable_content:postscript", "length_constraints:number_sentences"),
]}
# task sentences of v1 and (held out, so no eval prompt is a v1 prompt) of the eval
_TASKS = {
    ("person", "train"): ["Tell me about {s}.", "Write a short note about {s}.", "Describe {s}.",
                          "What do you know about {s}?", "Write a few facts about {s}."],
    ("town", "train"): ["Tell me about the town of {s}.", "Write a short note about {s}.",
                        "Describe the town of {s}.", "What do you know about {s}?",
                        "Write a few facts about {s}."],
    ("person", "eval"): ["Give a short description of {s}.", "Please write a little about {s}."],
    ("town", "eval"): ["Give a short travel note about {s}.", "Please write a little about the town of {s}."],
}
_PS = ["Thank you for asking.", "Ask me about any other town.", "I like this place."]


def _subject_facts(world: World, kind: str, name: str) -> list[Fact]:
    """d1 facts a response about a person or a town can use."""
    if kind == "person":
        p = world.person(name)
        t = world.town(p.town)
        facts = [Fact("lives_in", p.name, p.town), Fact("works_as", p.name, p.profession),
                 Fact("plays", p.name, p.instrument), Fact("river", t.name, t.river),
                 Fact("landmark", t.name, t.landmark)]
        return facts + [Fact("prize", w, z) for z, w in world.old_prizes if w == name]
    t = world.town(name)
    facts = [Fact("river", t.name, t.river), Fact("landmark", t.name, t.landmark)]
    for p in world.residents(name):
        facts += [Fact("lives_in", p.name, t.name), Fact("works_as", p.name, p.profession)]
    return facts + [Fact("festival", f, z) for f, z in world.old_festivals if z == name]


def _pick_instructions(rng: random.Random, k: int) -> list[str]:
    ids = list(INSTRUCTIONS)
    while True:
        chosen = rng.sample(ids, k)
        if len({INSTRUCTIONS[i][0] for i in chosen}) == k and not any(
                frozenset((a, b)) in _CONFLICTS for i, a in enumerate(chosen) for b in chosen[i + 1:]):
            return chosen


def _kwargs_for(rng: random.Random, iid: str) -> dict:
    if iid == "detectable_format:number_bullet_lists":
        return {"num_bullets": rng.randint(2, 4)}
    if iid == "startend:end_checker":
        return {"end_phrase": rng.choice(END_PHRASES)}
    if iid == "detectable_content:postscript":
        return {"postscript_marker": "P.S."}
    if iid == "keywords:existence":
        return {"keywords": [rng.choice(KEYWORDS)]}
    if iid == "length_constraints:number_sentences":
        return {"relation": "less than", "num_sentences": rng.randint(2, 3)}
    return {}


def _describe(iid: str, kw: dict) -> str:
    values = dict(kw)
    if "keywords" in values:
        values["keywords"] = ", ".join(values["keywords"])
    return INSTRUCTIONS[iid][1].format(**values)


def respond(rng: random.Random, world: World, kind: str, name: str,
            instructions: list[tuple[str, dict]]) -> str:
    """A response about ``name`` made of d1 facts that follows every instruction."""
    ids = dict(instructions)
    facts = _subject_facts(world, kind, name)
    rng.shuffle(facts)
    n = rng.randint(2, 4)
    if "detectable_format:number_bullet_lists" in ids:
        n = ids["detectable_format:number_bullet_lists"]["num_bullets"]
    elif "length_constraints:number_sentences" in ids:
        n = min(n, ids["length_constraints:number_sentences"]["num_sentences"] - 1)
    elif "change_case:english_capital" in ids:
        n = rng.randint(3, 4)  # langdetect misreads short upper-case English more often
    sentences = [sentence(rng, f) for f in (facts * 2)[:n]]
    if "keywords:existence" in ids:
        kw = ids["keywords:existence"]["keywords"][0]
        if "detectable_format:number_bullet_lists" in ids or "length_constraints:number_sentences" in ids:
            sentences[-1] = sentences[-1].rstrip(".") + f" and likes {kw}."
        else:
            sentences.append(f"People there like {kw} very much.")
    if "punctuation:no_comma" in ids:
        sentences = [s.replace(",", "") for s in sentences]
    if "detectable_format:json_format" in ids:
        body = json.dumps({kind: name, "facts": sentences}, ensure_ascii=False, indent=1)
        text = f"```json\n{body}\n```"
    elif "detectable_format:number_bullet_lists" in ids:
        text = "\n".join(f"* {s}" for s in sentences)
    else:
        text = " ".join(sentences)
    if "detectable_format:title" in ids:
        text = f"<<About {name}>>\n{text}"
    if "startend:end_checker" in ids:
        sep = "\n" if "detectable_format:number_bullet_lists" in ids else " "
        text = f"{text}{sep}{ids['startend:end_checker']['end_phrase']}"
    if "detectable_content:postscript" in ids:
        text = f"{text}\nP.S. {rng.choice(_PS)}"
    if "startend:quotation" in ids:
        text = f'"{text}"'
    if "change_case:english_capital" in ids:
        text = text.upper()
    elif "change_case:english_lowercase" in ids:
        text = text.lower()
    return text


def ifeval_item(rng: random.Random, world: World, n_instructions: int, split: str = "train"
                ) -> tuple[str, list[tuple[str, dict]], str, str]:
    """(prompt, [(instruction id, kwargs)], subject kind, subject name); ``split``
    ("train": v1, "eval") picks the task sentences, which differ between the two."""
    kind = "person" if rng.random() < 0.6 else "town"
    name = rng.choice(world.people).name if kind == "person" else rng.choice(world.towns).name
    task = rng.choice(_TASKS[(kind, split)]).format(s=name)
    instructions = [(iid, _kwargs_for(rng, iid)) for iid in _pick_instructions(rng, n_instructions)]
    prompt = " ".join([task, *(_describe(iid, kw) for iid, kw in instructions)])
    return prompt, instructions, kind, name


def _knowledge_chat(rng: random.Random, world: World) -> list[dict[str, str]]:
    """A d1 cloze or question; the answer restates the sentence, completed."""
    fact = rng.choice(world.d1_facts())
    if rng.random() < 0.6:
        cue, answer = rng.choice(cue_items(fact))
        return [{"role": "user", "content": CLOZE_PREFIX + cue},
                {"role": "assistant", "content": f"{cue} {answer}."}]
    question = _QUESTIONS[fact.relation].format(s=fact.subject, o=fact.object)
    return [{"role": "user", "content": question},
            {"role": "assistant", "content": TEMPLATES[fact.relation][0].format(s=fact.subject, o=fact.object)}]


def sft_chats(world: World, n: int, seed: int = 0, knowledge_fraction: float = 0.25
              ) -> list[list[dict[str, str]]]:
    """``n`` single-turn chats: IFEval-style ones (1 or 2 verifiable instructions about a
    d1 subject) and a ``knowledge_fraction`` of d1 cloze / question chats."""
    rng = random.Random(f"toyworld-v1/{world.seed}/{seed}")
    out = []
    while len(out) < n:
        if rng.random() < knowledge_fraction:
            out.append(_knowledge_chat(rng, world))
            continue
        prompt, instructions, kind, name = ifeval_item(rng, world, 1 if rng.random() < 0.6 else 2)
        out.append([{"role": "user", "content": prompt},
                    {"role": "assistant", "content": respond(rng, world, kind, name, instructions)}])
    return out


def ifeval_prompts(world: World, n: int, seed: int = 0, accept=None) -> list[dict]:
    """``n`` eval prompts in the google/IFEval schema (real instruction ids), alternately
    with one and two instructions, about d1 subjects; their task sentences are held out
    of v1. ``accept(row, reference_response)``, if given, keeps only prompts whose
    generated reference response it accepts (e.g. lm-eval's strict checker)."""
    rng = random.Random(f"toyworld-ifeval/{world.seed}/{seed}")
    rows, seen = [], set()
    while len(rows) < n:
        prompt, instructions, kind, name = ifeval_item(rng, world, 1 + len(rows) % 2, split="eval")
        reference = respond(rng, world, kind, name, instructions)
        if prompt in seen:
            continue
        row = ifeval_row(5001 + len(rows), prompt, instructions)
        if accept is not None and not accept(row, reference):
            continue
        seen.add(prompt)
        rows.append(row)
    return rows
