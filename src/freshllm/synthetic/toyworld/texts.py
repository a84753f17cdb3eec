"""The toy world's texts: one sentence per fact (:data:`TEMPLATES`) and the quiz cues
that complete them (:data:`CUES`), news articles about events (old ones in d1, the new
ones of d2: :func:`d2_articles`) and d1, the ancestor's pre-training text
(:func:`d1_documents`)."""

from __future__ import annotations

import hashlib
import random
import re
from datetime import date, datetime, time, timedelta, timezone

from ..news import NewsArticle
from .world import Fact, Person, Town, World

# years of the old news (d1)
OLD_YEARS = (2019, 2020, 2021, 2022, 2023)
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


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


def month_number(month: str) -> int:
    """Months since 2024-01 of ``YYYY-MM`` (negative before)."""
    year, mon = (int(x) for x in month.split("-")[:2])
    return (year - 2024) * 12 + mon - 1


def d2_slice_of_month(month: str, slices: int) -> int:
    """The d2 event slice a month reports (:func:`d2_slices`): month number mod ``slices``."""
    return month_number(month) % slices


def d2_slices(world: World, slices: int) -> list[list[Fact]]:
    """The d2 events split into ``slices`` disjoint slices of (nearly) equal size, in a seeded
    order (each slice mixes prizes, mayors and festivals); ``slices`` 1: all of them."""
    facts = world.d2_facts()
    if slices <= 1:
        return [facts]
    order = random.Random(f"toyworld-d2-slices/{world.seed}/{slices}").sample(facts, len(facts))
    return [order[k::slices] for k in range(slices)]


def d2_articles(world: World, count: int, start: date, end: date, *, seed: int = 0,
                first_index: int = 0, facts: list[Fact] | None = None) -> list[NewsArticle]:
    """``count`` distinct articles published in ``start``..``end``, cycling through the
    d2 events (``facts``: a slice of them, default all) in a seeded order so every event is
    reported about equally often."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    rng = random.Random(f"toyworld-d2/{world.seed}/{seed}/{start}/{end}/{first_index}")
    facts = world.d2_facts() if facts is None else list(facts)
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


def known_documents(world: World, n: int) -> list[str]:
    """``n`` d1 documents the ancestor's pre-training did not draw: :func:`d1_documents` on a
    random stream no integer pre-training seed (``models.<family>.seed``) produces. The same
    d1 facts in new combinations: the eval stage's "known text" (forgetting shows as a rising
    bits per byte on it)."""
    return d1_documents(world, n, seed="known-text")  # type: ignore[arg-type]  # a str seed
