"""Rows in the google/IFEval schema ``{key, prompt, instruction_id_list[], kwargs[{...}]}``,
shared by the shipped IFEval twin (:mod:`freshllm.tasks.build_data`) and the toy world's
generated prompts (:mod:`freshllm.synthetic.toyworld`)."""

from __future__ import annotations

# every kwarg name of the dataset: each row's kwargs dicts carry all of them
IFEVAL_KWARGS = (
    "num_highlights", "relation", "num_words", "num_placeholders", "prompt_to_repeat",
    "num_bullets", "section_spliter", "num_sections", "capital_relation", "capital_frequency",
    "keywords", "num_paragraphs", "language", "let_relation", "letter", "let_frequency",
    "end_phrase", "forbidden_words", "keyword", "frequency", "num_sentences",
    "postscript_marker", "first_word", "nth_paragraph",
)


def ifeval_row(key: int, prompt: str, instructions) -> dict:
    """A google/IFEval row from ``[(instruction_id, kwargs), ...]``; every kwarg name is
    present in every kwargs dict (None where unused), as in the dataset."""
    return {
        "key": key,
        "prompt": prompt,
        "instruction_id_list": [iid for iid, _ in instructions],
        "kwargs": [{k: kw.get(k) for k in IFEVAL_KWARGS} for _, kw in instructions],
    }
