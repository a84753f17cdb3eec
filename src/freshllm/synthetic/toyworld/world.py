"""The toy world itself: its people, towns and the facts about them, drawn from a seed
(:func:`make_world`), and the invented words they are made of."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

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
