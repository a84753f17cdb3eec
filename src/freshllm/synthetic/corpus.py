"""Generated text for the local profile: the ancestor's pre-training text (d1) and a
small chat dataset with verifiable instructions (the "v1" instruction set).

Everything is produced by code from a seed; nothing is copied from anywhere.
"""

from __future__ import annotations

import random

PLACES = ["Varnholm", "Quessly", "Tirabond", "Osterhal", "Malvern Cove", "Drennick", "Solavi",
          "Pennmarch", "Kettering Rise", "Ulmsted", "Brackwater", "Fenwyck"]
PEOPLE = ["Ada Merrow", "Tomas Vell", "Ines Calloway", "Rafael Ortun", "Mina Sato", "Jonah Pike",
          "Lena Hartvig", "Omar Quill", "Priya Das", "Victor Lune", "Greta Holm", "Samir Adeyemi"]
THINGS = ["river", "bridge", "library", "harbour", "orchard", "observatory", "railway", "market",
          "school", "museum", "lighthouse", "garden", "factory", "festival", "council"]
ADJ = ["old", "quiet", "busy", "famous", "small", "large", "green", "northern", "ancient", "modern"]
VERBS = ["built", "restored", "visited", "described", "painted", "studied", "opened", "mapped"]
TOPICS = ["weather", "trade", "music", "farming", "sailing", "astronomy", "cooking", "history"]
KEYWORDS = ["lantern", "harvest", "compass", "meadow", "signal", "copper", "voyage", "anchor"]
PHRASES = ["Is there anything else I can help with?", "That is all.", "Hope this helps."]


def _sentence(rng: random.Random) -> str:
    p, q = rng.choice(PLACES), rng.choice(PLACES)
    who, thing, adj = rng.choice(PEOPLE), rng.choice(THINGS), rng.choice(ADJ)
    year = rng.randint(1700, 1990)
    forms = [
        f"The {adj} {thing} of {p} was {rng.choice(VERBS)} by {who} in {year}.",
        f"{who} lived in {p} and wrote about {rng.choice(TOPICS)} for many years.",
        f"{p} lies {rng.randint(2, 90)} kilometres from {q}, beside a {adj} {thing}.",
        f"In {year}, the people of {p} held a {rng.choice(TOPICS)} fair near the {thing}.",
        f"Many travellers say the {thing} in {p} is the most {adj} place in the region.",
        f"{who} {rng.choice(VERBS)} the {thing} of {q} and later moved to {p}.",
        f"The {thing} has {rng.randint(2, 40)} rooms, and {rng.randint(3, 900)} people visit it each week.",
        f"Records from {year} show that {p} traded {rng.choice(TOPICS)} goods with {q}.",
    ]
    return rng.choice(forms)


def d1_documents(seed: int, n: int) -> list[str]:
    """``n`` encyclopedia-style paragraphs about a fictional world (the ancestor's d1)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        docs.append(" ".join(_sentence(rng) for _ in range(rng.randint(3, 8))))
    return docs


def known_documents(n: int, world_seed: int = 0) -> list[str]:
    """``n`` paragraphs of the ancestor's kind of text (d1) that its pre-training did not see:
    the same generator as :func:`d1_documents`, on a random stream that no pre-training seed
    (an integer, ``models.<family>.seed``) produces. The "known text" of the eval stage."""
    return d1_documents(f"known-text/{world_seed}", n)  # type: ignore[arg-type]  # a str seed


def _bullets(rng: random.Random, k: int, topic: str) -> str:
    return "\n".join(f"* {_sentence(rng).rstrip('.')} ({topic})." for _ in range(k))


def chat_examples(seed: int, n: int) -> list[list[dict[str, str]]]:
    """``n`` single-turn chats whose instructions are verifiable (IFEval-style)."""
    rng = random.Random(seed + 7919)
    out = []
    for _ in range(n):
        place, topic = rng.choice(PLACES), rng.choice(TOPICS)
        body = " ".join(_sentence(rng) for _ in range(rng.randint(2, 3)))
        kind = rng.randrange(6)
        if kind == 0:
            prompt = f"Write a short note about {topic} in {place}. Your entire response should be in English, and in all capital letters."
            answer = body.upper()
        elif kind == 1:
            k = rng.randint(2, 4)
            prompt = f"List facts about {place}. Your answer must contain exactly {k} bullet points. Use the markdown bullet points such as:\n* This is point 1."
            answer = _bullets(rng, k, topic)
        elif kind == 2:
            phrase = rng.choice(PHRASES)
            prompt = f"Tell me about {topic} in {place}. Finish your response with this exact phrase {phrase}. No other words should follow this phrase."
            answer = f"{body} {phrase}"
        elif kind == 3:
            kw = rng.choice(KEYWORDS)
            prompt = f"Describe {place}. Include the keyword {kw} in the response."
            answer = f"{body} The {kw} of {place} is well known."
        elif kind == 4:
            prompt = f"Describe {topic} in {place}. Your entire response should be in English, and in all lowercase letters. No capital letters are allowed."
            answer = body.lower()
        else:
            prompt = f"Give a fact about {place}. Wrap your entire response with double quotation marks."
            answer = f'"{body}"'
        out.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
    return out
