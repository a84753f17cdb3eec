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

The package is split by concern, each module importing only the ones before it:
:mod:`.world` (the world and its words), :mod:`.texts` (fact sentences, quiz cues, news
articles, d1), :mod:`.instructions` (v1 chats and IFEval-style prompts) and
:mod:`.quizzes`; this module re-exports their public names.
"""

from __future__ import annotations

from .instructions import (CLOZE_PREFIX, END_PHRASES, INSTRUCTIONS, KEYWORDS, ifeval_item,
                           ifeval_prompts, respond, sft_chats)
from .quizzes import d1_quiz, d2_quiz
from .texts import (CUES, MONTHS, OLD_YEARS, TEMPLATES, WEEKDAYS, cue_items, d1_documents,
                    d2_article, d2_articles, d2_slice_of_month, d2_slices, known_documents,
                    month_number, news_paragraphs, sentence)
from .world import INSTRUMENTS, LANDMARKS, PROFESSIONS, RIVERS, Fact, Person, Town, World, make_world

__all__ = [
    "CLOZE_PREFIX", "CUES", "END_PHRASES", "INSTRUCTIONS", "INSTRUMENTS", "KEYWORDS", "LANDMARKS",
    "MONTHS", "OLD_YEARS", "PROFESSIONS", "RIVERS", "TEMPLATES", "WEEKDAYS", "Fact", "Person",
    "Town", "World", "cue_items", "d1_documents", "d1_quiz", "d2_article", "d2_articles",
    "d2_quiz", "d2_slice_of_month", "d2_slices", "ifeval_item", "ifeval_prompts", "known_documents", "make_world", "month_number", "news_paragraphs", "respond",
    "sentence", "sft_chats",
]
