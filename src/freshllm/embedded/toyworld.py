"""The toy world: a small generated world with quizzable facts, for reproducing the
paper's finding on a CPU (profile ``profiles/toyworld.yaml``).

Everything is produced by code from a seed; nothing is copied from anywhere.

* **d1** (the ancestor's pre-training text): encyclopedia-style documents about the
  world's towns (river, landmark, residents) and people (home town, profession,
  instrument). :func:`d1_documents`.
* **v1** (the instruction set of the instruct model): single-turn chats whose
  instructions are verifiable with lm-eval's IFEval checkers (capital letters, exactly
  N bullet points, end phrase, keyword, JSON, lowercase, quotation marks, no commas,
  postscript, title, fewer than N sentences), with responses about d1 facts, plus
  "complete the sentence" chats about d1 facts. :func:`sft_chats`.
* **d2** (the "new news"): articles reporting events of 2024 that d1 never mentions:
  who won which (new) prize, who was elected mayor of which town, which town held
  which (new) festival. :func:`d2_articles` returns
  :class:`~freshllm.embedded.news.NewsArticle` objects, so the embedded CC-NEWS archive
  serves them through the same WARC and publisher-page code as the default news.
* **Quizzes**: cloze multiple-choice items about d2 events (:func:`d2_quiz`) and d1
  facts (:func:`d1_quiz`), and IFEval-style prompts about d1 entities
  (:func:`ifeval_prompts`) whose ``instruction_id_list`` / ``kwargs`` use real IFEval ids.

Every fact is a :class:`Fact` ``(relation, subject, object)``; the quizzes are built
from the facts and the texts from templates that state them, so a test can check that
every quizzed fact is stated in its corpus and that no d2 fact or d2 vocabulary
appears in d1 or in v1.

    >>> w = make_world(0)
    >>> len(w.people), len(w.towns), len(w.d2_facts())
    (64, 16, 48)
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache

from .news import NewsArticle

# --- building blocks (invented) --------------------------------------------------------

_FIRST = ["Ada", "Tomas", "Ines", "Rafael", "Mina", "Jonah", "Lena", "Omar", "Priya", "Victor",
          "Greta", "Samir", "Nadia", "Oskar", "Elif", "Callum", "Wren", "Soren", "Marek", "Yusuf",
          "Idris", "Noor", "Fenna", "Anton", "Keziah", "Matteo", "Selin", "Bram", "Talia", "Hugo",
          "Ilse", "Desmond"]
_LAST = ["Merrow", "Vell", "Calloway", "Ortun", "Sato", "Pike", "Hartvig", "Quill", "Das", "Lune",
         "Holm", "Adeyemi", "Brandt", "Colewick", "Draysen", "Eckley", "Fairholt", "Galloway",
         "Ivesby", "Kellman", "Lornett", "Meadow", "Norrby", "Pellham", "Randow", "Stavely",
         "Thornby", "Vailson", "Wynford", "Ashcombe"]
_TOWN_HEADS = ["Varn", "Quess", "Tira", "Oster", "Malv", "Dren", "Sola", "Penn", "Kett", "Ulm",
               "Brack", "Fen", "Lind", "Hav", "Grun", "Wex", "Dun", "Carr", "Mar", "Roth"]
_TOWN_TAILS = ["holm", "ly", "bond", "hal", "ern", "ick", "vi", "march", "ford", "sted",
               "water", "wyck", "mouth", "dale", "berg", "mere"]
# professions start with a consonant, so "works as a" needs no article choice
PROFESSIONS = ["baker", "carpenter", "teacher", "fisher", "weaver", "doctor", "painter",
               "potter", "sailor", "farmer", "librarian", "tailor", "blacksmith", "gardener",
               "musician", "builder"]
INSTRUMENTS = ["violin", "flute", "drum", "harp", "cello", "trumpet", "guitar", "piano",
               "accordion", "banjo", "clarinet", "lute"]
RIVERS = ["Tessa", "Vollen", "Marrow", "Kenning", "Aldra", "Brisk", "Orla", "Semmel", "Dunne",
          "Lissen", "Carrow", "Embry", "Halse", "Ruddle", "Tamber", "Weir"]
LANDMARKS = ["old lighthouse", "stone bridge", "clock tower", "salt market", "glass library",
             "red mill", "round harbour", "hill observatory", "copper fountain", "long pier",
             "twin chapels", "iron gate", "willow park", "grain tower", "rope walk",
             "painted steps"]
# d2-only names (never in d1 or v1): prizes and festivals
_PRIZE_HEADS = ["Amber", "Silver", "Cobalt", "Jade", "Scarlet", "Ivory", "Saffron", "Onyx",
                "Coral", "Indigo", "Russet", "Pearl", "Topaz", "Umber", "Violet", "Ochre"]
_PRIZE_TAILS = ["Quill", "Heron", "Compass", "Kestrel", "Anchor", "Lantern", "Falcon", "Thistle",
                "Otter", "Beacon", "Sparrow", "Acorn", "Kite", "Bell", "Fern", "Lynx"]
_FEST_HEADS = ["Zephyra", "Morvane", "Kalistra", "Orrowin", "Belmira", "Sundara", "Quorvel",
               "Tavirra", "Elmorra", "Vasquin", "Draventa", "Noralis", "Perrowin", "Istavel",
               "Lumora", "Ganthera"]
# words that only d2 uses: tests check they never occur in d1 or v1
D2_WORDS = ("prize", "mayor", "festival", "elected", "election", "won", "winner", "held", "voters",
            "2024")
KEYWORDS = ["bread", "music", "winter", "boats", "lamps", "gardens", "stones", "wool", "maps",
            "bells", "clocks", "apples"]
END_PHRASES = ["Is there anything else I can help with?", "That is all I know.",
               "Let me know if you have additional questions.", "Hope this helps."]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


# --- the world -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    name: str
    town: str
    profession: str
    instrument: str


@dataclass(frozen=True)
class Town:
    name: str
    river: str
    landmark: str


@dataclass(frozen=True)
class Fact:
    relation: str  # d1: lives_in works_as plays river landmark | d2: prize mayor festival
    subject: str
    object: str


@dataclass(frozen=True)
class World:
    seed: int
    towns: tuple[Town, ...]
    people: tuple[Person, ...]
    prizes: tuple[tuple[str, str], ...]  # (prize, winner)
    mayors: tuple[tuple[str, str], ...]  # (town, new mayor: one of its residents)
    festivals: tuple[tuple[str, str], ...]  # (festival, town that held it)

    def town(self, name: str) -> Town:
        return next(t for t in self.towns if t.name == name)

    def person(self, name: str) -> Person:
        return next(p for p in self.people if p.name == name)

    def residents(self, town: str) -> list[Person]:
        return [p for p in self.people if p.town == town]

    def d1_facts(self) -> list[Fact]:
        facts = []
        for p in self.people:
            facts += [Fact("lives_in", p.name, p.town), Fact("works_as", p.name, p.profession),
                      Fact("plays", p.name, p.instrument)]
        for t in self.towns:
            facts += [Fact("river", t.name, t.river), Fact("landmark", t.name, t.landmark)]
        return facts

    def d2_facts(self) -> list[Fact]:
        return ([Fact("prize", w, p) for p, w in self.prizes]
                + [Fact("mayor", m, t) for t, m in self.mayors]
                + [Fact("festival", f, t) for f, t in self.festivals])


def _distinct(rng: random.Random, n: int, make) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        x = make()
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


@lru_cache(maxsize=8)
def make_world(seed: int, n_towns: int = 16, residents: int = 4) -> World:
    """The world of ``seed``: ``n_towns`` towns with ``residents`` people each, and the
    d2 events (one prize per ``n_towns`` winners, a new mayor per town, a festival per town)."""
    if not 4 <= n_towns <= min(len(RIVERS), len(LANDMARKS), len(_PRIZE_HEADS), len(_FEST_HEADS)):
        raise ValueError(f"n_towns must be in 4..16, got {n_towns}")
    if residents < 4:
        raise ValueError("residents must be >= 4 (a mayor quiz offers 4 residents)")
    rng = random.Random(f"toyworld/{seed}")
    town_names = [h + rng.choice(_TOWN_TAILS) for h in rng.sample(_TOWN_HEADS, n_towns)]
    rivers, landmarks = rng.sample(RIVERS, n_towns), rng.sample(LANDMARKS, n_towns)
    towns = tuple(Town(n, r, m) for n, r, m in zip(town_names, rivers, landmarks))
    names = _distinct(rng, n_towns * residents, lambda: f"{rng.choice(_FIRST)} {rng.choice(_LAST)}")
    people = tuple(Person(name, town_names[i // residents], rng.choice(PROFESSIONS),
                          rng.choice(INSTRUMENTS)) for i, name in enumerate(names))
    prize_names = [f"{h} {t} Prize" for h, t in zip(rng.sample(_PRIZE_HEADS, n_towns),
                                                   rng.sample(_PRIZE_TAILS, n_towns))]
    mayors = tuple((t, rng.choice([p.name for p in people if p.town == t])) for t in town_names)
    mayor_names = {m for _, m in mayors}
    winners = rng.sample([p.name for p in people if p.name not in mayor_names], n_towns)
    festivals = tuple((f"{h} Festival", t) for h, t in zip(rng.sample(_FEST_HEADS, n_towns),
                                                          rng.sample(town_names, n_towns)))
    return World(seed=seed, towns=towns, people=people, prizes=tuple(zip(prize_names, winners)),
                 mayors=mayors, festivals=festivals)


# --- d1: the ancestor's pre-training text ----------------------------------------------------

# templates stating one d1 fact; the first of each relation is the quiz cue (+ " {object}")
D1_TEMPLATES: dict[str, list[str]] = {
    "lives_in": ["{s} lives in the town of {o}.", "{s}, who lives in {o}, is well known there.",
                 "The home of {s} is in {o}.", "In {o}, {s} has a small house near the square."],
    "works_as": ["By profession, {s} is a {o}.", "{s} works as a {o}.",
                 "{s} has been a {o} for many years.", "People know {s} as a {o}."],
    "plays": ["In the evenings, {s} plays the {o}.", "{s} plays the {o}.",
              "{s} learned to play the {o} as a child.", "The favourite instrument of {s} is the {o}."],
    "river": ["The town of {s} lies on the river {o}.", "{s} lies on the river {o}.",
              "The river {o} flows through {s}.", "Boats on the river {o} pass through {s}."],
    "landmark": ["The town of {s} is known for its {o}.", "{s} is famous for its {o}.",
                 "Visitors to {s} often see the {o}.", "The {o} of {s} is its best known sight."],
}
D1_CUES = {rel: forms[0].split("{o}")[0].rstrip() for rel, forms in D1_TEMPLATES.items()}

_D1_FILLER = [
    "The streets are narrow, and the houses are painted in bright colours.",
    "Most families keep a garden behind the house.",
    "In winter, the roads are often covered with snow.",
    "The market opens early, and it closes before noon.",
    "Children walk to school along the river path.",
    "Travellers say the bread there is very good.",
    "The old road to the coast is still used by carts.",
    "Many songs from the region are about boats, rain and the sea.",
    "The town keeps a small museum of old maps.",
    "On quiet days, you can hear the bells from far away.",
    "Older people like to sit by the water and talk.",
    "The summers are short, but the evenings are long and warm.",
]


def d1_sentence(rng: random.Random, fact: Fact) -> str:
    return rng.choice(D1_TEMPLATES[fact.relation]).format(s=fact.subject, o=fact.object)


def _person_doc(rng: random.Random, world: World, p: Person) -> list[str]:
    t = world.town(p.town)
    facts = [Fact("lives_in", p.name, p.town), Fact("works_as", p.name, p.profession),
             Fact("plays", p.name, p.instrument)]
    rng.shuffle(facts)
    out = [d1_sentence(rng, f) for f in facts]
    if rng.random() < 0.6:
        out.append(d1_sentence(rng, rng.choice([Fact("river", t.name, t.river),
                                                Fact("landmark", t.name, t.landmark)])))
    if rng.random() < 0.5:
        out.insert(rng.randint(1, len(out)), rng.choice(_D1_FILLER))
    return out


def _town_doc(rng: random.Random, world: World, t: Town) -> list[str]:
    out = [d1_sentence(rng, Fact("river", t.name, t.river)),
           d1_sentence(rng, Fact("landmark", t.name, t.landmark))]
    rng.shuffle(out)
    for p in rng.sample(world.residents(t.name), k=rng.randint(1, 3)):
        rel = rng.choice(["works_as", "plays"])
        out.append(d1_sentence(rng, Fact("lives_in", p.name, t.name)))
        out.append(d1_sentence(rng, Fact(rel, p.name, p.profession if rel == "works_as" else p.instrument)))
    if rng.random() < 0.7:
        out.insert(rng.randint(1, len(out)), rng.choice(_D1_FILLER))
    return out


def d1_documents(world: World, n: int, seed: int = 0) -> list[str]:
    """``n`` encyclopedia-style paragraphs; two thirds about a person, one third about a town."""
    rng = random.Random(f"toyworld-d1/{world.seed}/{seed}")
    docs = []
    for i in range(n):
        if i % 3 == 2:
            sents = _town_doc(rng, world, rng.choice(world.towns))
        else:
            sents = _person_doc(rng, world, rng.choice(world.people))
        docs.append(" ".join(sents))
    return docs


# --- v1: verifiable instructions (IFEval ids) and d1 knowledge chats ----------------------------

IFEVAL_KWARGS = (
    "num_highlights", "relation", "num_words", "num_placeholders", "prompt_to_repeat",
    "num_bullets", "section_spliter", "num_sections", "capital_relation", "capital_frequency",
    "keywords", "num_paragraphs", "language", "let_relation", "letter", "let_frequency",
    "end_phrase", "forbidden_words", "keyword", "frequency", "num_sentences",
    "postscript_marker", "first_word", "nth_paragraph",
)

# instruction id -> (group: at most one per prompt, description template) ; wording as in IFEval
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
# pairs that cannot both be satisfied sensibly (besides two of the same group)
_CONFLICTS = {
    frozenset({"detectable_format:json_format", "punctuation:no_comma"}),
    frozenset({"detectable_format:json_format", "detectable_format:title"}),
    frozenset({"detectable_format:json_format", "startend:end_checker"}),
    frozenset({"detectable_format:json_format", "detectable_content:postscript"}),
    frozenset({"detectable_format:json_format", "length_constraints:number_sentences"}),
    frozenset({"startend:quotation", "detectable_format:title"}),
    frozenset({"startend:quotation", "detectable_content:postscript"}),
    frozenset({"detectable_format:number_bullet_lists", "length_constraints:number_sentences"}),
    frozenset({"startend:end_checker", "length_constraints:number_sentences"}),
    frozenset({"detectable_content:postscript", "length_constraints:number_sentences"}),
}
# task sentences of the v1 chats and (held out, so no eval prompt is a v1 prompt) of the eval
_TASKS = {
    ("person", "train"): ["Tell me about {s}.", "Write a short note about {s}.", "Describe {s}.",
                          "What do you know about {s}?", "Write a few facts about {s}."],
    ("town", "train"): ["Tell me about the town of {s}.", "Write a short note about {s}.",
                        "Describe the town of {s}.", "What do you know about {s}?",
                        "Write a few facts about {s}."],
    ("person", "eval"): ["Give a short description of {s}.", "Please write a little about {s}."],
    ("town", "eval"): ["Give a short travel note about {s}.", "Please write a little about the town of {s}."],
}
CLOZE_PREFIX = "Complete the sentence: "


def _subject_facts(world: World, kind: str, name: str) -> list[Fact]:
    if kind == "person":
        p = world.person(name)
        t = world.town(p.town)
        return [Fact("lives_in", p.name, p.town), Fact("works_as", p.name, p.profession),
                Fact("plays", p.name, p.instrument), Fact("river", t.name, t.river),
                Fact("landmark", t.name, t.landmark)]
    t = world.town(name)
    facts = [Fact("river", t.name, t.river), Fact("landmark", t.name, t.landmark)]
    for p in world.residents(name):
        facts += [Fact("lives_in", p.name, t.name), Fact("works_as", p.name, p.profession)]
    return facts


def _pick_instructions(rng: random.Random, k: int) -> list[str]:
    ids = list(INSTRUCTIONS)
    while True:
        chosen = rng.sample(ids, k)
        groups = [INSTRUCTIONS[i][0] for i in chosen]
        if len(set(groups)) == k and not any(frozenset(pair) in _CONFLICTS
                                             for pair in _pairs(chosen)):
            return chosen


def _pairs(items: list[str]):
    return [(a, b) for i, a in enumerate(items) for b in items[i + 1:]]


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
    values = {**kw}
    if "keywords" in values:
        values["keywords"] = ", ".join(values["keywords"])
    return INSTRUCTIONS[iid][1].format(**values)


def _respond(rng: random.Random, world: World, kind: str, name: str,
             instructions: list[tuple[str, dict]]) -> str:
    """A response about ``name`` that follows every instruction (checked by the tests)."""
    ids = {iid: kw for iid, kw in instructions}
    facts = _subject_facts(world, kind, name)
    rng.shuffle(facts)
    n = rng.randint(2, 4)
    if "detectable_format:number_bullet_lists" in ids:
        n = ids["detectable_format:number_bullet_lists"]["num_bullets"]
        facts = (facts * 2)[:n] if len(facts) < n else facts[:n]
    elif "length_constraints:number_sentences" in ids:
        n = min(n, ids["length_constraints:number_sentences"]["num_sentences"] - 1)
    elif "change_case:english_capital" in ids:
        n = rng.randint(3, 4)  # langdetect misreads short upper-case English more often
    sentences = [d1_sentence(rng, f) for f in facts[:n]]
    if "keywords:existence" in ids:
        kw = ids["keywords:existence"]["keywords"][0]
        extra = f"People there like {kw} very much."
        if "detectable_format:number_bullet_lists" in ids or "length_constraints:number_sentences" in ids:
            sentences[-1] = sentences[-1].rstrip(".") + f" and likes {kw}."
        else:
            sentences.append(extra)
    if "punctuation:no_comma" in ids:
        sentences = [s.replace(",", "") for s in sentences]
    if "detectable_format:json_format" in ids:
        key = "person" if kind == "person" else "town"
        body = json.dumps({key: name, "facts": sentences}, ensure_ascii=False, indent=1)
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
        text = f"{text}\nP.S. {rng.choice(['Thank you for asking.', 'Ask me about any other town.', 'I like this place.'])}"
    if "startend:quotation" in ids:
        text = f'"{text}"'
    if "change_case:english_capital" in ids:
        text = text.upper()
    elif "change_case:english_lowercase" in ids:
        text = text.lower()
    return text


def ifeval_item(rng: random.Random, world: World, n_instructions: int, split: str = "train"
                ) -> tuple[str, list[tuple[str, dict]], str, str]:
    """(prompt, [(instruction id, kwargs)], subject kind, subject name); ``split`` "train"
    (v1) or "eval" picks the task sentences, which differ between the two."""
    kind = "person" if rng.random() < 0.6 else "town"
    name = rng.choice(world.people).name if kind == "person" else rng.choice(world.towns).name
    task = rng.choice(_TASKS[(kind, split)]).format(s=name)
    ids = _pick_instructions(rng, n_instructions)
    instructions = [(iid, _kwargs_for(rng, iid)) for iid in ids]
    prompt = " ".join([task, *(_describe(iid, kw) for iid, kw in instructions)])
    return prompt, instructions, kind, name


def _cloze_chat(rng: random.Random, world: World) -> list[dict[str, str]]:
    fact = rng.choice(world.d1_facts())
    cue = D1_CUES[fact.relation].format(s=fact.subject)
    if rng.random() < 0.5:
        return [{"role": "user", "content": CLOZE_PREFIX + cue},
                {"role": "assistant", "content": f"{fact.object}."}]
    question = {"lives_in": "Where does {s} live?", "works_as": "What does {s} do for a living?",
                "plays": "Which instrument does {s} play?", "river": "Which river does {s} lie on?",
                "landmark": "What is {s} known for?"}[fact.relation].format(s=fact.subject)
    return [{"role": "user", "content": question},
            {"role": "assistant", "content": d1_sentence(rng, fact)}]


def sft_chats(world: World, n: int, seed: int = 0, knowledge_fraction: float = 0.25
              ) -> list[list[dict[str, str]]]:
    """``n`` single-turn chats: IFEval-style ones (1 or 2 verifiable instructions, about
    d1 subjects) and a ``knowledge_fraction`` of d1 cloze / question chats."""
    rng = random.Random(f"toyworld-v1/{world.seed}/{seed}")
    out = []
    while len(out) < n:
        if rng.random() < knowledge_fraction:
            out.append(_cloze_chat(rng, world))
            continue
        prompt, instructions, kind, name = ifeval_item(rng, world, 1 if rng.random() < 0.6 else 2)
        out.append([{"role": "user", "content": prompt},
                    {"role": "assistant", "content": _respond(rng, world, kind, name, instructions)}])
    return out


def ifeval_prompts(world: World, n: int, seed: int = 0, accept=None) -> list[dict]:
    """``n`` eval prompts in the google/IFEval schema (real instruction ids), half with
    one instruction and half with two, about d1 subjects; their task sentences are held
    out of v1, so no eval prompt is a v1 prompt. ``accept(row, reference_response)``, if
    given, keeps only prompts whose generated reference response it accepts (the eval
    passes lm-eval's strict checker: every kept prompt is achievable)."""
    rng = random.Random(f"toyworld-ifeval/{world.seed}/{seed}")
    rows, seen = [], set()
    while len(rows) < n:
        prompt, instructions, kind, name = ifeval_item(rng, world, 1 + len(rows) % 2, split="eval")
        reference = _respond(rng, world, kind, name, instructions)
        if prompt in seen:
            continue
        row = {
            "key": 5001 + len(rows),
            "prompt": prompt,
            "instruction_id_list": [iid for iid, _ in instructions],
            "kwargs": [{k: kw.get(k) for k in IFEVAL_KWARGS} for _, kw in instructions],
        }
        if accept is not None and not accept(row, reference):
            continue
        seen.add(prompt)
        rows.append(row)
    return rows


# --- d2: the new news --------------------------------------------------------------------------

# templates stating one d2 fact; the first of each relation is the quiz cue (+ " {object}")
D2_TEMPLATES: dict[str, list[str]] = {
    "prize": ["The {o} was won by {s}.", "{s} won the {o}.", "The {o} went to {s} this year.",
              "Judges gave the {o} to {s}.", "{s}, winner of the {o}, thanked the judges."],
    "mayor": ["The new mayor of {o} is {s}.", "{s} was elected mayor of {o}.",
              "Voters in {o} elected {s} as their new mayor.", "{s} is now the mayor of {o}."],
    "festival": ["The {s} was held in {o}.", "{o} held the {s} this year.",
                 "Thousands of visitors came to {o} for the {s}.", "The {s} in {o} ended on Sunday."],
}
# quiz cues: (relation, direction) -> (cue template, answer is subject or object)
D2_CUES = {
    ("prize", "fwd"): ("The {o} was won by", "s"),
    ("prize", "rev"): ("{s} won the", "o"),
    ("mayor", "fwd"): ("The new mayor of {o} is", "s"),
    ("festival", "fwd"): ("The {s} was held in", "o"),
    ("festival", "rev"): ("{o} held the", "s"),
}
_TITLES = {
    "prize": ["{s} wins the {o}", "{o} goes to {s}", "Judges name {s} for the {o}"],
    "mayor": ["{s} elected mayor of {o}", "{o} has a new mayor", "Voters in {o} choose {s}"],
    "festival": ["{s} comes to {o}", "Crowds fill {o} for the {s}", "{o} celebrates the {s}"],
}
_D2_FILLER = [
    "The ceremony took place on a {weekday} evening and lasted about {n} hours.",
    "Local reporters said the mood in the town was cheerful.",
    "Around {n}00 people followed the news in the town square.",
    "Shops in the centre stayed open late that {weekday}.",
    "Officials said more details would follow in {month}.",
    "Several neighbours said they had expected the result.",
    "The weather stayed dry for most of the day.",
    "Photographs of the day were shown in the town hall.",
    "Many families travelled from nearby towns to be there.",
    "A short speech was followed by music and food.",
    "The news was the main topic in the cafes on {weekday}.",
    "Organisers thanked the volunteers who helped on the day.",
]
_AUTHORS = ["Lena Ashcombe", "Oskar Fairholt", "Priya Stavely", "Hugo Norrby", "Talia Brandt"]


def d2_sentence(rng: random.Random, fact: Fact) -> str:
    return rng.choice(D2_TEMPLATES[fact.relation]).format(s=fact.subject, o=fact.object)


def _d2_background(rng: random.Random, world: World, fact: Fact) -> list[str]:
    """d1 facts about the event's people and towns (news restates context)."""
    if fact.relation == "festival":
        t = world.town(fact.object)
        cands = [Fact("river", t.name, t.river), Fact("landmark", t.name, t.landmark)]
    else:
        p = world.person(fact.subject)
        cands = [Fact("works_as", p.name, p.profession), Fact("lives_in", p.name, p.town),
                 Fact("plays", p.name, p.instrument)]
    return [d1_sentence(rng, f) for f in rng.sample(cands, k=rng.randint(1, len(cands)))]


def d2_article(rng: random.Random, world: World, fact: Fact, published: datetime, index: int) -> NewsArticle:
    """One news article reporting ``fact`` (2-3 statements of it, d1 background, filler)."""
    forms = rng.sample(D2_TEMPLATES[fact.relation], k=rng.randint(2, 3))
    statements = [f.format(s=fact.subject, o=fact.object) for f in forms]
    filler = [s.format(weekday=rng.choice(WEEKDAYS), month=rng.choice(MONTHS), n=rng.randint(2, 9))
              for s in rng.sample(_D2_FILLER, k=rng.randint(3, 5))]
    background = _d2_background(rng, world, fact)
    month = MONTHS[published.month - 1]
    lead = f"{statements[0][:-1]}, according to reports published in {month} 2024."
    body = background + filler[:2] + statements[1:]
    rng.shuffle(body)
    paragraphs = [lead, " ".join(body[: len(body) // 2]), " ".join(body[len(body) // 2:]),
                  " ".join(filler[2:])]
    title = rng.choice(_TITLES[fact.relation]).format(s=fact.subject, o=fact.object)
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:70].rstrip("-")
    return NewsArticle(slug=f"{slug}-{index:05d}", section="local", title=title,
                       paragraphs=tuple(p for p in paragraphs if p), author=rng.choice(_AUTHORS),
                       published=published, language="en")


def d2_articles(world: World, count: int, start: date, end: date, *, seed: int = 0,
                first_index: int = 0) -> list[NewsArticle]:
    """``count`` distinct articles published in ``start``..``end``, cycling through the
    d2 facts in a seeded order so every event is reported about equally often."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    rng = random.Random(f"toyworld-d2/{world.seed}/{seed}/{start}/{end}/{first_index}")
    facts = world.d2_facts()
    begin = datetime.combine(start, time(0, 0), tzinfo=timezone.utc)
    span = (datetime.combine(end, time(23, 59), tzinfo=timezone.utc) - begin).total_seconds()
    order: list[Fact] = []
    seen: set[str] = set()
    out: list[NewsArticle] = []
    while len(out) < count:
        if not order:
            order = rng.sample(facts, len(facts))
        fact = order.pop()
        published = begin + timedelta(seconds=int(rng.random() * span))
        art = d2_article(rng, world, fact, published, first_index + len(out))
        digest = hashlib.sha1(art.text.encode()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        out.append(art)
    return sorted(out, key=lambda a: (a.published, a.slug))


# --- quizzes ---------------------------------------------------------------------------------

def _choices(rng: random.Random, answer: str, pool: list[str], k: int = 4) -> tuple[list[str], int]:
    others = rng.sample(sorted(set(pool) - {answer}), k - 1)
    choices = others + [answer]
    rng.shuffle(choices)
    return choices, choices.index(answer)


def d2_quiz(world: World, seed: int = 0) -> list[dict]:
    """Cloze multiple-choice items about every d2 event (both directions where the answer
    cannot be guessed from d1): ``{id, fact, cue, choices, answer}``."""
    rng = random.Random(f"toyworld-quiz-d2/{world.seed}/{seed}")
    people = [p.name for p in world.people]
    prizes = [p for p, _ in world.prizes]
    festivals = [f for f, _ in world.festivals]
    towns = [t.name for t in world.towns]
    items = []
    for fact in world.d2_facts():
        for (rel, direction), (cue, answer_side) in D2_CUES.items():
            if rel != fact.relation:
                continue
            answer = fact.subject if answer_side == "s" else fact.object
            if rel == "mayor":  # the 4 choices are residents of the town: d1 cannot tell them apart
                pool = [p.name for p in world.residents(fact.object)]
            elif rel == "prize":
                pool = people if direction == "fwd" else prizes
            else:
                pool = towns if direction == "fwd" else festivals
            choices, idx = _choices(rng, answer, pool)
            items.append({"id": f"d2-{rel}-{direction}-{len(items)}", "fact": [fact.relation, fact.subject, fact.object],
                          "cue": cue.format(s=fact.subject, o=fact.object), "choices": choices, "answer": idx})
    return items


def d1_quiz(world: World, n: int | None = None, seed: int = 0) -> list[dict]:
    """Cloze multiple-choice items about d1 facts (all, or a seeded sample of ``n``)."""
    rng = random.Random(f"toyworld-quiz-d1/{world.seed}/{seed}")
    pools = {"lives_in": [t.name for t in world.towns], "works_as": PROFESSIONS, "plays": INSTRUMENTS,
             "river": RIVERS, "landmark": LANDMARKS}
    facts = world.d1_facts()
    if n is not None and n < len(facts):
        facts = rng.sample(facts, n)
    items = []
    for fact in facts:
        choices, idx = _choices(rng, fact.object, pools[fact.relation])
        items.append({"id": f"d1-{fact.relation}-{len(items)}", "fact": [fact.relation, fact.subject, fact.object],
                      "cue": D1_CUES[fact.relation].format(s=fact.subject), "choices": choices, "answer": idx})
    return items
