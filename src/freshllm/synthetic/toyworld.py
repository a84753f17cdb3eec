"""The toy world: a small generated world with quizzable facts, for reproducing the
paper's finding on a CPU (profile ``profiles/toyworld.yaml``).

Everything is produced by code from a seed; nothing is copied from anywhere.

* **d1** (the ancestor's pre-training text, :func:`d1_documents`): encyclopedia-style
  paragraphs about the world's towns (river, landmark, residents) and people (home town,
  profession, instrument), and *old news* (2019-2023) in the same article style as d2:
  who won which prize, which town held which festival.
* **v1** (the instruct model's instruction set, :func:`sft_chats`): single-turn chats
  whose instructions are verifiable with lm-eval's IFEval checkers (capital letters,
  exactly N bullet points, end phrase, keyword, JSON, lowercase, quotation marks, no
  commas, postscript, title, fewer than N sentences), with responses made of d1 facts,
  plus "complete the sentence" / question chats about d1 facts.
* **d2** (the "new news" of 2024, :func:`d2_articles`): articles reporting events d1
  never contains: new prizes (new names) and their winners, new festivals (new names)
  and the towns that held them, and the new mayor of every town (d1 has no mayors).
  They are :class:`~freshllm.synthetic.news.NewsArticle` objects, so the local
  CC-NEWS archive serves them through the same WARC and publisher-page code as the
  default news, and fundus parses them.
* **Quizzes**: cloze multiple-choice items about the d2 events (:func:`d2_quiz`) and d1
  facts (:func:`d1_quiz`), and IFEval-style prompts about d1 subjects
  (:func:`ifeval_prompts`, real IFEval instruction ids and kwargs).

Every fact is a :class:`Fact` ``(relation, subject, object)``; texts state facts through
templates and quizzes are built from the facts, so tests can check that every quizzed
fact is stated in its corpus and that no d2 fact or d2-only name appears in d1 or v1.

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

from ..tasks.build_data import ifeval_row
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
# prize and festival names: the old ones (d1) and the new ones (d2 only) share no word
_PRIZE_HEADS = {"old": ["Amber", "Silver", "Cobalt", "Jade", "Scarlet", "Ivory", "Saffron", "Onyx",
                        "Coral", "Indigo", "Russet", "Pearl", "Topaz", "Umber", "Violet", "Ochre"],
                "new": ["Azure", "Golden", "Crimson", "Emerald", "Copper", "Marble", "Ruby", "Slate",
                        "Bronze", "Lilac", "Cedar", "Opal", "Garnet", "Sable", "Teal", "Quartz"]}
_PRIZE_TAILS = {"old": ["Quill", "Heron", "Compass", "Kestrel", "Anchor", "Lantern", "Falcon",
                        "Thistle", "Otter", "Beacon", "Sparrow", "Acorn", "Kite", "Bell", "Fern", "Lynx"],
                "new": ["Owl", "Harp", "Crane", "Wren", "Sail", "Torch", "Badger", "Clover",
                        "Swan", "Arrow", "Robin", "Pine", "Hawk", "Drum", "Lily", "Fox"]}
_FEST_NAMES = {"old": ["Zephyra", "Morvane", "Kalistra", "Orrowin", "Belmira", "Sundara", "Quorvel",
                       "Tavirra", "Elmorra", "Vasquin", "Draventa", "Noralis", "Perrowin", "Istavel",
                       "Lumora", "Ganthera"],
               "new": ["Amaranth", "Brisolde", "Corvanta", "Delmiro", "Esperil", "Falundra",
                       "Gorvessa", "Hylantis", "Imbrosa", "Jorvalle", "Kestrova", "Lorimund",
                       "Marvessa", "Nimbrova", "Ostralis", "Pelluvia"]}
OLD_YEARS = (2019, 2020, 2021, 2022, 2023)
KEYWORDS = ["bread", "music", "winter", "boats", "lamps", "gardens", "stones", "wool", "maps",
            "bells", "clocks", "apples"]
END_PHRASES = ["Is there anything else I can help with?", "That is all I know.",
               "Let me know if you have additional questions.", "Hope this helps."]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CLOZE_PREFIX = "Complete the sentence: "


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
    """``relation``: lives_in, works_as, plays, river, landmark (d1 only); prize (subject won
    the object), festival (subject was held in the object): old in d1, new in d2; mayor
    (subject is the new mayor of the object, d2 only)."""

    relation: str
    subject: str
    object: str


@dataclass(frozen=True)
class World:
    seed: int
    towns: tuple[Town, ...]
    people: tuple[Person, ...]
    old_prizes: tuple[tuple[str, str], ...]  # (prize, winner), d1
    old_festivals: tuple[tuple[str, str], ...]  # (festival, town), d1: one per town
    prizes: tuple[tuple[str, str], ...]  # (prize, winner), d2
    mayors: tuple[tuple[str, str], ...]  # (town, new mayor: one of its residents), d2
    festivals: tuple[tuple[str, str], ...]  # (festival, town), d2: one per town

    def town(self, name: str) -> Town:
        return next(t for t in self.towns if t.name == name)

    def person(self, name: str) -> Person:
        return next(p for p in self.people if p.name == name)

    def residents(self, town: str) -> list[Person]:
        return [p for p in self.people if p.town == town]

    def old_event_facts(self) -> list[Fact]:
        return ([Fact("prize", w, p) for p, w in self.old_prizes]
                + [Fact("festival", f, t) for f, t in self.old_festivals])

    def d1_facts(self) -> list[Fact]:
        facts = []
        for p in self.people:
            facts += [Fact("lives_in", p.name, p.town), Fact("works_as", p.name, p.profession),
                      Fact("plays", p.name, p.instrument)]
        for t in self.towns:
            facts += [Fact("river", t.name, t.river), Fact("landmark", t.name, t.landmark)]
        return facts + self.old_event_facts()

    def d2_facts(self) -> list[Fact]:
        return ([Fact("prize", w, p) for p, w in self.prizes]
                + [Fact("mayor", m, t) for t, m in self.mayors]
                + [Fact("festival", f, t) for f, t in self.festivals])

    def d2_names(self) -> list[str]:
        """Strings only d2 contains: the new prizes and festivals, and the word mayor."""
        return [p for p, _ in self.prizes] + [f for f, _ in self.festivals] + ["mayor"]


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
    """The world of ``seed``: ``n_towns`` towns with ``residents`` people each; old events
    (d1: ``n_towns`` prizes, a festival per town) and new ones (d2: ``n_towns`` prizes won
    by other people, a new mayor per town, a new festival per town)."""
    if not 4 <= n_towns <= 16:
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

    def prizes(era: str) -> list[str]:
        return [f"{h} {t} Prize" for h, t in zip(rng.sample(_PRIZE_HEADS[era], n_towns),
                                               rng.sample(_PRIZE_TAILS[era], n_towns))]

    def festivals(era: str) -> tuple[tuple[str, str], ...]:
        return tuple((f"{h} Festival", t) for h, t in zip(rng.sample(_FEST_NAMES[era], n_towns),
                                                         rng.sample(town_names, n_towns)))

    mayors = tuple((t, rng.choice([p.name for p in people if p.town == t])) for t in town_names)
    mayor_names = {m for _, m in mayors}
    free = [p.name for p in people if p.name not in mayor_names]
    winners = rng.sample(free, 2 * n_towns)  # old and new winners: disjoint, never mayors
    return World(seed=seed, towns=towns, people=people,
                 old_prizes=tuple(zip(prizes("old"), winners[:n_towns])),
                 old_festivals=festivals("old"),
                 prizes=tuple(zip(prizes("new"), winners[n_towns:])),
                 mayors=mayors, festivals=festivals("new"))


# --- templates ---------------------------------------------------------------------------------

# sentences stating one fact ({s} subject, {o} object)
TEMPLATES: dict[str, list[str]] = {
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
    "prize": ["The {o} was won by {s}.", "{s} won the {o}.", "The {o} went to {s} that year.",
              "Judges gave the {o} to {s}.", "{s}, winner of the {o}, thanked the judges."],
    "festival": ["The {s} was held in {o}.", "{o} held the {s} that year.",
                 "Thousands of visitors came to {o} for the {s}.", "The {s} in {o} ended on a Sunday."],
    "mayor": ["The new mayor of {o} is {s}.", "{s} was elected mayor of {o}.",
              "Voters in {o} elected {s} as their new mayor.", "{s} is now the mayor of {o}."],
}
# quiz cues per relation: (cue, side of the fact that answers it); the cue + " " + answer is
# the first template of the relation (or, for reverse cues, a prefix of another template)
CUES: dict[str, list[tuple[str, str]]] = {
    "lives_in": [("{s} lives in the town of", "o")],
    "works_as": [("By profession, {s} is a", "o")],
    "plays": [("In the evenings, {s} plays the", "o")],
    "river": [("The town of {s} lies on the river", "o")],
    "landmark": [("The town of {s} is known for its", "o")],
    "prize": [("The {o} was won by", "s"), ("{s} won the", "o")],
    "festival": [("The {s} was held in", "o"), ("{o} held the", "s")],
    "mayor": [("The new mayor of {o} is", "s")],
}
_QUESTIONS = {"lives_in": "Where does {s} live?", "works_as": "What does {s} do for a living?",
              "plays": "Which instrument does {s} play?", "river": "Which river does {s} lie on?",
              "landmark": "What is {s} known for?", "prize": "Who won the {o}?",
              "festival": "Where was the {s} held?"}
_FILLER = [
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
# news filler (old and new news alike)
_NEWS_FILLER = [
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
_TITLES = {
    "prize": ["{s} wins the {o}", "{o} goes to {s}", "Judges name {s} for the {o}"],
    "mayor": ["{s} elected mayor of {o}", "{o} has a new mayor", "Voters in {o} choose {s}"],
    "festival": ["{s} comes to {o}", "Crowds fill {o} for the {s}", "{o} celebrates the {s}"],
}
_AUTHORS = ["Lena Ashcombe", "Oskar Fairholt", "Priya Stavely", "Hugo Norrby", "Talia Brandt"]


def sentence(rng: random.Random, fact: Fact) -> str:
    """One sentence stating ``fact`` (a random template of its relation)."""
    return rng.choice(TEMPLATES[fact.relation]).format(s=fact.subject, o=fact.object)


def cue_items(fact: Fact) -> list[tuple[str, str]]:
    """(cue, answer) of every quiz cue of ``fact``."""
    return [(cue.format(s=fact.subject, o=fact.object), fact.subject if side == "s" else fact.object)
            for cue, side in CUES[fact.relation]]


# --- news articles (old ones in d1, new ones in d2) -----------------------------------------------

def _background(rng: random.Random, world: World, fact: Fact) -> list[str]:
    """d1 facts about the event's person or town (news restates context)."""
    if fact.relation == "festival":
        t = world.town(fact.object)
        cands = [Fact("river", t.name, t.river), Fact("landmark", t.name, t.landmark)]
    else:
        p = world.person(fact.subject)
        cands = [Fact("works_as", p.name, p.profession), Fact("lives_in", p.name, p.town),
                 Fact("plays", p.name, p.instrument)]
    return [sentence(rng, f) for f in rng.sample(cands, k=rng.randint(1, len(cands)))]


def news_paragraphs(rng: random.Random, world: World, fact: Fact, month: str, year: int
                    ) -> tuple[str, list[str]]:
    """(title, paragraphs) of an article reporting ``fact``: 2-3 statements of it, d1
    background about its people or town, and news filler."""
    forms = rng.sample(TEMPLATES[fact.relation], k=rng.randint(2, 3))
    statements = [f.format(s=fact.subject, o=fact.object) for f in forms]
    filler = [s.format(weekday=rng.choice(WEEKDAYS), month=rng.choice(MONTHS), n=rng.randint(2, 9))
              for s in rng.sample(_NEWS_FILLER, k=rng.randint(3, 5))]
    lead = f"{statements[0][:-1]}, according to reports published in {month} {year}."
    body = _background(rng, world, fact) + filler[:2] + statements[1:]
    rng.shuffle(body)
    half = len(body) // 2
    paragraphs = [lead, " ".join(body[:half]), " ".join(body[half:]), " ".join(filler[2:])]
    title = rng.choice(_TITLES[fact.relation]).format(s=fact.subject, o=fact.object)
    return title, [p for p in paragraphs if p]


def d2_article(rng: random.Random, world: World, fact: Fact, published: datetime, index: int) -> NewsArticle:
    """One news article reporting the d2 event ``fact``, published at ``published``."""
    title, paragraphs = news_paragraphs(rng, world, fact, MONTHS[published.month - 1], published.year)
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:70].rstrip("-")
    return NewsArticle(slug=f"{slug}-{index:05d}", section="local", title=title,
                       paragraphs=tuple(paragraphs), author=rng.choice(_AUTHORS),
                       published=published, language="en")


def d2_articles(world: World, count: int, start: date, end: date, *, seed: int = 0,
                first_index: int = 0) -> list[NewsArticle]:
    """``count`` distinct articles published in ``start``..``end``, cycling through the
    d2 events in a seeded order so every event is reported about equally often."""
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


# --- d1: the ancestor's pre-training text ----------------------------------------------------

def _person_doc(rng: random.Random, world: World, p: Person) -> list[str]:
    t = world.town(p.town)
    facts = [Fact("lives_in", p.name, p.town), Fact("works_as", p.name, p.profession),
             Fact("plays", p.name, p.instrument)]
    rng.shuffle(facts)
    out = [sentence(rng, f) for f in facts]
    if rng.random() < 0.6:
        out.append(sentence(rng, rng.choice([Fact("river", t.name, t.river),
                                             Fact("landmark", t.name, t.landmark)])))
    if rng.random() < 0.5:
        out.insert(rng.randint(1, len(out)), rng.choice(_FILLER))
    return out


def _town_doc(rng: random.Random, world: World, t: Town) -> list[str]:
    out = [sentence(rng, Fact("river", t.name, t.river)), sentence(rng, Fact("landmark", t.name, t.landmark))]
    rng.shuffle(out)
    for p in rng.sample(world.residents(t.name), k=rng.randint(1, 3)):
        rel = rng.choice(["works_as", "plays"])
        out.append(sentence(rng, Fact("lives_in", p.name, t.name)))
        out.append(sentence(rng, Fact(rel, p.name, p.profession if rel == "works_as" else p.instrument)))
    if rng.random() < 0.7:
        out.insert(rng.randint(1, len(out)), rng.choice(_FILLER))
    return out


def d1_documents(world: World, n: int, seed: int = 0, news_fraction: float = 0.3) -> list[str]:
    """``n`` documents: a ``news_fraction`` of old-news articles (2019-2023, paragraphs
    joined like a crawled article's text), the rest encyclopedia paragraphs (two thirds
    about a person, one third about a town)."""
    rng = random.Random(f"toyworld-d1/{world.seed}/{seed}")
    old = world.old_event_facts()
    docs = []
    for i in range(n):
        if rng.random() < news_fraction:
            _, paragraphs = news_paragraphs(rng, world, rng.choice(old), rng.choice(MONTHS),
                                            rng.choice(OLD_YEARS))
            docs.append("\n\n".join(paragraphs))
        elif i % 3 == 2:
            docs.append(" ".join(_town_doc(rng, world, rng.choice(world.towns))))
        else:
            docs.append(" ".join(_person_doc(rng, world, rng.choice(world.people))))
    return docs


# --- v1: verifiable instructions (IFEval ids) and d1 knowledge chats ----------------------------


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


# --- quizzes ---------------------------------------------------------------------------------

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
