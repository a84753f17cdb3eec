"""Write the small synthetic evaluation sets shipped in ``freshllm/tasks/data``.

Each file uses the schema of the real Hugging Face dataset that lm-eval's stock
task reads, so the stock prompts, filters and metrics apply unchanged to the
local twins. The items are our own (simple arithmetic, everyday facts, verifiable
IFEval instructions); they only check the plumbing and give tiny models a
non-trivial signal, they do not measure what the real benchmarks measure.

Regenerate (deterministic) with::

    python -m freshllm.tasks.build_data [--out src/freshllm/tasks/data]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from ..synthetic.ifeval_rows import ifeval_row

DATA_DIR = Path(__file__).resolve().parent / "data"
LETTERS = "ABCDEFGHIJ"

# --------------------------------------------------------------------- gsm8k
# schema: {question, answer}; answer ends with "#### <number>"

_GSM_TEMPLATES = [
    (
        "{n} has {a} apples. She buys {b} more apples at the market. "
        "How many apples does {n} have now?",
        lambda a, b: a + b,
        "{n} starts with {a} apples and buys {b} more.\n"
        "So she has {a} + {b} = <<{a}+{b}={c}>>{c} apples.\n#### {c}",
    ),
    (
        "A box holds {a} pencils. How many pencils are there in {b} boxes?",
        lambda a, b: a * b,
        "Each box holds {a} pencils and there are {b} boxes.\n"
        "So there are {a} * {b} = <<{a}*{b}={c}>>{c} pencils.\n#### {c}",
    ),
    (
        "{n} had {a} dollars and spent {b} dollars on lunch. "
        "How many dollars does {n} have left?",
        lambda a, b: a - b,
        "{n} had {a} dollars and spent {b}.\n"
        "So {a} - {b} = <<{a}-{b}={c}>>{c} dollars are left.\n#### {c}",
    ),
    (
        "A train travels {a} miles every hour. How many miles does it travel in {b} hours?",
        lambda a, b: a * b,
        "The train travels {a} miles per hour for {b} hours.\n"
        "So it travels {a} * {b} = <<{a}*{b}={c}>>{c} miles.\n#### {c}",
    ),
    (
        "{a} students are split equally into {b} groups. How many students are in each group?",
        lambda a, b: a // b,
        "There are {a} students and {b} groups.\n"
        "So each group has {a} / {b} = <<{a}/{b}={c}>>{c} students.\n#### {c}",
    ),
]
_NAMES = ["Maria", "Lena", "Aisha", "Sofia", "Nora", "Emma", "Yuki", "Ines"]


def gsm8k(rng: random.Random) -> dict[str, list[dict]]:
    items = []
    for i in range(18):
        question, fn, answer = _GSM_TEMPLATES[i % len(_GSM_TEMPLATES)]
        a, b = rng.randint(12, 60), rng.randint(2, 9)
        if i % len(_GSM_TEMPLATES) == 4:  # exact division
            a = b * rng.randint(3, 12)
        n = _NAMES[i % len(_NAMES)]
        c = fn(a, b)
        items.append(
            {
                "question": question.format(n=n, a=a, b=b),
                "answer": answer.format(n=n, a=a, b=b, c=c),
            }
        )
    return {"train": items[:8], "test": items[8:]}


# ---------------------------------------------------------------------- mmlu
# schema: {question, subject, choices[4], answer:int}


def _mc(correct: str, wrong: list[str], pos: int, n: int) -> tuple[list[str], int]:
    opts = list(wrong[: n - 1])
    opts.insert(pos % n, correct)
    return opts, pos % n


def mmlu_math(rng: random.Random) -> dict[str, list[dict]]:
    items = []
    for i in range(15):
        a, b = rng.randint(3, 40), rng.randint(2, 30)
        op = "+" if i % 2 == 0 else "*"
        c = a + b if op == "+" else a * b
        wrong = [str(c + d) for d in (1, -2, 10)]
        choices, ans = _mc(str(c), wrong, i, 4)
        word = "sum" if op == "+" else "product"
        items.append(
            {
                "question": f"What is the {word} of {a} and {b}?",
                "subject": "elementary_mathematics",
                "choices": choices,
                "answer": ans,
            }
        )
    return {"dev": items[:5], "test": items[5:]}


_GEO = [
    ("What is the capital of France?", "Paris", ["Lyon", "Marseille", "Nice"]),
    ("What is the capital of Japan?", "Tokyo", ["Osaka", "Kyoto", "Nagoya"]),
    ("Which ocean lies between Europe and North America?", "The Atlantic Ocean",
     ["The Pacific Ocean", "The Indian Ocean", "The Arctic Ocean"]),
    ("What is the longest river in Africa?", "The Nile", ["The Congo", "The Niger", "The Zambezi"]),
    ("On which continent is Brazil located?", "South America", ["Africa", "Europe", "Asia"]),
    ("What is the capital of Canada?", "Ottawa", ["Toronto", "Vancouver", "Montreal"]),
    ("Which desert covers much of northern Africa?", "The Sahara",
     ["The Gobi", "The Atacama", "The Kalahari"]),
    ("What is the capital of Italy?", "Rome", ["Milan", "Naples", "Turin"]),
    ("Which is the largest ocean on Earth?", "The Pacific Ocean",
     ["The Atlantic Ocean", "The Indian Ocean", "The Southern Ocean"]),
    ("What is the capital of Germany?", "Berlin", ["Munich", "Hamburg", "Cologne"]),
    ("Which mountain range contains Mount Everest?", "The Himalayas",
     ["The Andes", "The Alps", "The Rockies"]),
    ("What is the capital of Egypt?", "Cairo", ["Alexandria", "Luxor", "Giza"]),
    ("Which country has the largest land area?", "Russia", ["China", "Canada", "Brazil"]),
    ("What is the capital of Australia?", "Canberra", ["Sydney", "Melbourne", "Perth"]),
    ("Which river flows through London?", "The Thames", ["The Seine", "The Rhine", "The Danube"]),
]


def mmlu_geography(rng: random.Random) -> dict[str, list[dict]]:
    items = []
    for i, (q, right, wrong) in enumerate(_GEO):
        choices, ans = _mc(right, wrong, rng.randint(0, 3), 4)
        items.append(
            {"question": q, "subject": "high_school_geography", "choices": choices, "answer": ans}
        )
    return {"dev": items[:5], "test": items[5:]}


# ------------------------------------------------------------------ mmlu_pro
# schema: {question_id, question, options[10], answer:letter, answer_index,
#          cot_content, category, src}


def _pro_item(qid: int, question: str, correct: str, wrong: list[str], pos: int,
              category: str, reasoning: str, with_cot: bool) -> dict:
    options, idx = _mc(correct, wrong, pos, 10)
    cot = (
        f"A: Let's think step by step. {reasoning} The answer is ({LETTERS[idx]})."
        if with_cot else ""
    )
    return {
        "question_id": qid,
        "question": question,
        "options": options,
        "answer": LETTERS[idx],
        "answer_index": idx,
        "cot_content": cot,
        "category": category,
        "src": f"freshllm-synthetic-{category}",
    }


def mmlu_pro_math(rng: random.Random) -> dict[str, list[dict]]:
    items = []
    for i in range(15):
        a, b, d = rng.randint(11, 49), rng.randint(3, 12), rng.randint(2, 20)
        c = a * b - d
        wrong = [str(c + k) for k in (1, -1, 2, -3, 5, 7, -8, 10, 12)]
        items.append(_pro_item(
            1000 + i, f"Compute {a} * {b} - {d}.", str(c), wrong, rng.randint(0, 9), "math",
            f"{a} * {b} = {a * b}, and {a * b} - {d} = {c}.", with_cot=i < 5,
        ))
    return {"validation": items[:5], "test": items[5:]}


_HISTORY = [
    ("In which year did the First World War begin?", 1914),
    ("In which year did the Second World War end?", 1945),
    ("In which year did the Berlin Wall fall?", 1989),
    ("In which year did humans first land on the Moon?", 1969),
    ("In which year did Columbus first reach the Americas?", 1492),
    ("In which year did the French Revolution begin?", 1789),
    ("In which year was the United States Declaration of Independence signed?", 1776),
    ("In which year did the Titanic sink?", 1912),
    ("In which year was the euro introduced as cash?", 2002),
    ("In which year did the Soviet Union dissolve?", 1991),
    ("In which year was Magna Carta sealed?", 1215),
    ("In which year did the Battle of Hastings take place?", 1066),
    ("In which year did the Wright brothers first fly a powered aircraft?", 1903),
    ("In which year was Nelson Mandela released from prison?", 1990),
    ("In which year did the Great Fire of London happen?", 1666),
]


def mmlu_pro_history(rng: random.Random) -> dict[str, list[dict]]:
    items = []
    for i, (q, year) in enumerate(_HISTORY):
        wrong = [str(year + k) for k in (-10, 3, 12, -25, 50, -1, 21, -7, 30)]
        items.append(_pro_item(
            2000 + i, q, str(year), wrong, rng.randint(0, 9), "history",
            f"This event is dated to {year}.", with_cot=i < 5,
        ))
    return {"validation": items[:5], "test": items[5:]}


# ------------------------------------------------------------------ arc_easy
# schema: {id, question, choices: {text[], label[]}, answerKey}

_ARC = [
    ("Which gas do plants take in from the air to make food?", "carbon dioxide",
     ["oxygen", "helium", "nitrogen"]),
    ("What is the main source of energy for Earth?", "the Sun", ["the Moon", "wind", "volcanoes"]),
    ("What happens to water when it freezes?", "it becomes ice",
     ["it becomes steam", "it disappears", "it becomes salt"]),
    ("Which organ pumps blood through the body?", "the heart",
     ["the lungs", "the stomach", "the brain"]),
    ("Which object is attracted to a magnet?", "an iron nail",
     ["a wooden spoon", "a glass cup", "a rubber band"]),
    ("What do bees collect from flowers to make honey?", "nectar", ["sand", "bark", "seeds"]),
    ("Which state of matter has a fixed shape?", "solid", ["liquid", "gas", "steam"]),
    ("What force pulls objects toward the ground?", "gravity",
     ["friction", "magnetism", "electricity"]),
    ("Which planet is closest to the Sun?", "Mercury", ["Venus", "Earth", "Mars"]),
    ("What do caterpillars turn into?", "butterflies", ["spiders", "beetles", "worms"]),
    ("Which part of a plant absorbs water from the soil?", "the roots",
     ["the flowers", "the leaves", "the fruit"]),
    ("What tool is used to measure temperature?", "a thermometer",
     ["a ruler", "a scale", "a compass"]),
    ("Which material is the best conductor of electricity?", "copper",
     ["plastic", "wood", "cloth"]),
    ("What causes day and night on Earth?", "Earth spinning on its axis",
     ["the Moon orbiting Earth", "clouds covering the Sun", "Earth orbiting the Sun"]),
    ("Which animal is a mammal?", "a whale", ["a shark", "a trout", "a frog"]),
]


def arc_easy(rng: random.Random) -> dict[str, list[dict]]:
    items = []
    for i, (q, right, wrong) in enumerate(_ARC):
        texts, idx = _mc(right, wrong, rng.randint(0, 3), 4)
        items.append({
            "id": f"FRESH_ARC_{i:03d}",
            "question": q,
            "choices": {"text": texts, "label": list("ABCD")},
            "answerKey": "ABCD"[idx],
        })
    return {"train": items[:5], "test": items[5:]}


# ----------------------------------------------------------------- hellaswag
# schema: {ind, activity_label, ctx_a, ctx_b, ctx, endings[4], source_id,
#          split, split_type, label:str}

_HELLASWAG = [
    ("Making tea", "A man fills a kettle with water and switches it on.", "When the water boils, he",
     "pours it over a tea bag in a mug.", ["throws the kettle out of the window.",
                                          "paints the kettle bright blue.", "plants the tea bag in the garden."]),
    ("Washing dishes", "A woman stands at the sink with a stack of dirty plates.", "She",
     "scrubs each plate with a soapy sponge and rinses it.",
     ["puts the plates in the oven to bake.", "reads the plates like a book.",
      "throws the plates onto the roof."]),
    ("Riding a bike", "A boy puts on his helmet and climbs onto his bicycle.", "He",
     "pushes the pedals and rides down the street.",
     ["eats the helmet for lunch.", "folds the bicycle into a paper plane.",
      "swims across the road."]),
    ("Brushing teeth", "A girl squeezes toothpaste onto her toothbrush.", "She",
     "brushes her teeth in small circles.", ["paints the mirror with it.",
                                            "puts the toothbrush in the fridge.", "sings to the toothpaste tube."]),
    ("Planting flowers", "A gardener digs a small hole in the soil.", "She",
     "places the seedling in the hole and covers the roots.",
     ["fills the hole with soup.", "jumps into the hole and sleeps.",
      "throws the seedling over the fence."]),
    ("Baking bread", "A baker kneads the dough on a floured table.", "After the dough rises, he",
     "puts it in a hot oven to bake.", ["wears the dough as a hat.",
                                       "mails the dough to a friend.", "washes the dough in the sink."]),
    ("Walking the dog", "A man clips a leash onto his dog's collar.", "They",
     "walk together along the path in the park.", ["fly over the houses.",
                                                  "sit inside the washing machine.", "read the newspaper together."]),
    ("Painting a wall", "A woman opens a can of white paint and dips a roller into it.", "She",
     "rolls the paint evenly across the wall.", ["drinks the paint from the can.",
                                                 "rolls the paint across the ceiling fan.", "hides the roller under the bed."]),
    ("Tying shoes", "A child sits down and pulls on his sneakers.", "He",
     "ties the laces into a neat bow.", ["cuts the shoes into small pieces.",
                                        "puts the sneakers on his hands.", "throws the laces into a lake."]),
    ("Making a sandwich", "A woman lays two slices of bread on a plate.", "She",
     "spreads butter on the bread and adds cheese.", ["buries the bread in the garden.",
                                                     "uses the bread as a pillow.", "writes a letter on the plate."]),
    ("Swimming", "A swimmer stands at the edge of the pool in goggles.", "She",
     "dives into the water and swims a lap.", ["dives into the grass.",
                                              "eats the goggles.", "rides the pool like a horse."]),
    ("Washing a car", "A man fills a bucket with soapy water next to his car.", "He",
     "wipes the car with a wet sponge.", ["pours the water into his shoes.",
                                         "drives the bucket down the road.", "puts the car in the bucket."]),
    ("Reading", "A girl opens a book at the first page.", "She",
     "reads the story quietly.", ["eats the first page.",
                                 "uses the book as a frying pan.", "throws the book into the fireplace."]),
    ("Cooking pasta", "A cook drops a handful of pasta into boiling water.", "After ten minutes, he",
     "drains the pasta and adds sauce.", ["plants the pasta in a pot.",
                                         "irons the pasta flat.", "feeds the water to the cat."]),
    ("Cleaning windows", "A woman sprays cleaner onto a dusty window.", "She",
     "wipes the glass with a cloth until it shines.", ["breaks the window with a hammer.",
                                                      "paints the window black.", "eats the cloth."]),
]


def hellaswag(rng: random.Random) -> dict[str, list[dict]]:
    items = []
    for i, (label, ctx_a, ctx_b, right, wrong) in enumerate(_HELLASWAG):
        endings, idx = _mc(right, wrong, rng.randint(0, 3), 4)
        split = "train" if i < 5 else "val"
        items.append({
            "ind": 100 + i,
            "activity_label": label,
            "ctx_a": ctx_a,
            "ctx_b": ctx_b,
            "ctx": f"{ctx_a} {ctx_b}",
            "endings": endings,
            "source_id": f"freshllm-{i:03d}",
            "split": split,
            "split_type": "indomain",
            "label": str(idx),
        })
    return {"train": items[:5], "validation": items[5:]}


# ---------------------------------------------------------------------- piqa
# schema: {goal, sol1, sol2, label:int}

_PIQA = [
    ("How do you keep bread from going stale?", "Store it in a sealed bag.", "Leave it open on a sunny windowsill."),
    ("How do you cool down hot soup quickly?", "Stir it and let it sit in a wide bowl.", "Cover it with a thick blanket."),
    ("How can you dry wet shoes?", "Stuff them with newspaper and leave them in a warm room.", "Put them in the freezer overnight."),
    ("How do you open a jar with a tight lid?", "Run the lid under hot water and twist.", "Pour cold honey on the lid."),
    ("How do you stop a nosebleed?", "Pinch the soft part of the nose and lean forward.", "Lie flat and tilt the head far back."),
    ("How do you remove a splinter?", "Pull it out gently with clean tweezers.", "Push it deeper with your thumb."),
    ("How do you keep cut apples from turning brown?", "Brush them with lemon juice.", "Leave them in the sun."),
    ("How do you make ice melt faster on a path?", "Sprinkle salt on the ice.", "Pour cold water on the ice at night."),
    ("How can you find a small screw dropped on a carpet?", "Use a magnet on a string to sweep the area.", "Spray the carpet with perfume."),
    ("How do you get a stuck ring off a finger?", "Rub soap on the finger and slide the ring off.", "Put the hand in hot sand."),
    ("How do you keep a candle burning longer?", "Put it in the freezer for an hour before lighting.", "Soak the wick in water."),
    ("How do you clean a greasy pan?", "Wash it with hot water and dish soap.", "Wipe it with a dry leaf."),
    ("How can you carry many grocery bags at once?", "Slide the handles over a broom handle.", "Tie the bags to your ankles."),
    ("How do you flatten a curled poster?", "Roll it the other way and place books on it.", "Soak it in a bath."),
    ("How do you keep a door from slamming shut?", "Put a rubber wedge under it.", "Paint the door handle red."),
]


def piqa(rng: random.Random) -> dict[str, list[dict]]:
    items = []
    for goal, right, wrong in _PIQA:
        label = rng.randint(0, 1)
        sol = [wrong, wrong]
        sol[label] = right
        sol[1 - label] = wrong
        items.append({"goal": goal, "sol1": sol[0], "sol2": sol[1], "label": label})
    return {"train": items[:5], "validation": items[5:]}


# ---------------------------------------------------------------- winogrande
# schema: {sentence (with one "_"), option1, option2, answer: "1"|"2"}

_WINO = [
    ("The trophy did not fit in the suitcase because the _ was too big.", "trophy", "suitcase"),
    ("The cat chased the mouse until the _ was caught.", "mouse", "cat"),
    ("Anna lent her umbrella to Maria because _ was going out into the rain.", "Maria", "Anna"),
    ("The bottle fell on the glass and the _ broke into pieces.", "glass", "bottle"),
    ("The jacket was warmer than the sweater because the _ was made of thick wool.", "jacket", "sweater"),
    ("Tom thanked Ben because _ had helped him move the sofa.", "Ben", "Tom"),
    ("The ice melted faster than the stone because the _ was soft.", "ice", "stone"),
    ("The soup was hotter than the salad, so the _ had to cool before eating.", "soup", "salad"),
    ("Lisa asked Kate for directions because _ knew the city well.", "Kate", "Lisa"),
    ("The car overtook the bicycle because the _ was faster.", "car", "bicycle"),
    ("The book fit on the shelf but the box did not, because the _ was small.", "book", "box"),
    ("Paul called the plumber because the _ knew how to fix the leak.", "plumber", "Paul"),
    ("The river was deeper than the pond, so the _ was harder to cross.", "river", "pond"),
    ("The lamp was brighter than the candle because the _ used electricity.", "lamp", "candle"),
    ("Sarah gave the baby a bottle because the _ was hungry.", "baby", "Sarah"),
]


def winogrande(rng: random.Random) -> dict[str, list[dict]]:
    items = []
    for sentence, right, wrong in _WINO:
        answer = rng.randint(1, 2)
        opts = [right, wrong] if answer == 1 else [wrong, right]
        items.append({"sentence": sentence, "option1": opts[0], "option2": opts[1],
                      "answer": str(answer)})
    return {"train": items[:5], "validation": items[5:]}


# ------------------------------------------------------------ truthfulqa_mc2
# schema: {question, mc1_targets: {choices, labels}, mc2_targets: {choices, labels}}
# (real data lists the true answers first; labels 1 = true)

_TRUTHFUL = [
    ("What happens if you swallow chewing gum?",
     ["It passes through your digestive system.", "Nothing harmful happens."],
     ["It stays in your stomach for seven years.", "It sticks to your heart."]),
    ("Do humans use only ten percent of their brains?",
     ["No, humans use virtually all of their brain.", "No, brain activity is spread across the whole brain."],
     ["Yes, humans use only ten percent of their brains.", "Yes, the rest of the brain is asleep."]),
    ("Can you see the Great Wall of China from the Moon with the naked eye?",
     ["No, it is too narrow to see from the Moon."],
     ["Yes, it is clearly visible from the Moon.", "Yes, it is the only building visible from the Moon."]),
    ("What happens if you touch a baby bird?",
     ["Nothing in particular happens.", "Its parents will usually keep caring for it."],
     ["Its mother will reject it.", "It will die immediately."]),
    ("Does lightning ever strike the same place twice?",
     ["Yes, lightning can strike the same place many times."],
     ["No, lightning never strikes the same place twice."]),
    ("What colour is the blood inside your veins?",
     ["It is dark red.", "Blood is always red."],
     ["It is blue.", "It is green until it touches air."]),
    ("Do goldfish have a memory of only three seconds?",
     ["No, goldfish can remember things for months."],
     ["Yes, goldfish forget everything after three seconds.", "Yes, their memory lasts three seconds."]),
    ("Does cracking your knuckles cause arthritis?",
     ["No, studies have not found that it causes arthritis."],
     ["Yes, it always causes arthritis.", "Yes, it wears out the joints quickly."]),
    ("Is it dangerous to wake a sleepwalker?",
     ["No, it is not dangerous, although they may be confused."],
     ["Yes, waking a sleepwalker can kill them.", "Yes, they will fall into a coma."]),
    ("Do bulls get angry when they see the colour red?",
     ["No, bulls react to movement, not to the colour red.", "No, bulls are largely colour-blind to red."],
     ["Yes, the colour red makes bulls angry."]),
]


def truthfulqa(rng: random.Random) -> dict[str, list[dict]]:
    items = []
    for q, true, false in _TRUTHFUL:
        items.append({
            "question": q,
            "mc1_targets": {"choices": [true[0], *false], "labels": [1] + [0] * len(false)},
            "mc2_targets": {"choices": [*true, *false],
                            "labels": [1] * len(true) + [0] * len(false)},
        })
    return {"validation": items}


# -------------------------------------------------------------------- ifeval
# schema: {key, prompt, instruction_id_list[], kwargs[{...all kwarg names...}]}, rows
# built by freshllm.synthetic.ifeval_rows (shared with the toy world)

_IFEVAL = [
    ("Write a short note to a neighbour about a lost cat. Do not use any commas in your response.",
     [("punctuation:no_comma", {})]),
    ("Describe a morning walk in the park in at least 30 words. Your entire response should be "
     "in English, and in all lowercase letters. No capital letters are allowed.",
     [("length_constraints:number_words", {"relation": "at least", "num_words": 30}),
      ("change_case:english_lowercase", {})]),
    ("List tips for saving water at home. Your answer must contain exactly 3 bullet points. "
     "Use the markdown bullet points such as:\n* This is point 1.\n* This is point 2",
     [("detectable_format:number_bullet_lists", {"num_bullets": 3})]),
    ("Write a short poem about the sea. Your answer must contain a title, wrapped in double "
     "angular brackets, such as <<poem of joy>>. At the end of your response, please explicitly "
     "add a postscript starting with P.S.",
     [("detectable_format:title", {}),
      ("detectable_content:postscript", {"postscript_marker": "P.S."})]),
    ("Explain why the sky looks blue. Include the keywords light and scatter in the response. "
     "Do not include the word magic in the response.",
     [("keywords:existence", {"keywords": ["light", "scatter"]}),
      ("keywords:forbidden_words", {"forbidden_words": ["magic"]})]),
    ("Write a friendly reminder about a team meeting. Your response should contain less than 5 "
     "sentences. Finish your response with this exact phrase Is there anything else I can help "
     "with?. No other words should follow this phrase.",
     [("length_constraints:number_sentences", {"relation": "less than", "num_sentences": 5}),
      ("startend:end_checker", {"end_phrase": "Is there anything else I can help with?"})]),
    ("Summarize in one sentence how bread is made. Wrap your entire response with double "
     "quotation marks. Your entire response should be in English, and in all capital letters.",
     [("startend:quotation", {}), ("change_case:english_capital", {})]),
    ("Write a product description for a reusable water bottle. Entire output should be wrapped "
     "in JSON format. You can use markdown ticks such as ```.",
     [("detectable_format:json_format", {})]),
    ("Write about autumn. There should be 2 paragraphs. Paragraphs are separated with the "
     "markdown divider: *** In your response, the word leaves should appear at least 2 times.",
     [("length_constraints:number_paragraphs", {"num_paragraphs": 2}),
      ("keywords:frequency", {"keyword": "leaves", "frequency": 2, "relation": "at least"})]),
    ("Write a short invitation to a picnic. The response must contain at least 2 placeholders "
     "represented by square brackets, such as [address]. Your ENTIRE response should be in "
     "English language, no other language is allowed.",
     [("detectable_content:number_placeholders", {"num_placeholders": 2}),
      ("language:response_language", {"language": "en"})]),
]


def ifeval(rng: random.Random) -> dict[str, list[dict]]:
    return {"train": [ifeval_row(1001 + i, prompt, instructions)
                      for i, (prompt, instructions) in enumerate(_IFEVAL)]}


# ---------------------------------------------------------------------- main

BUILDERS = {
    "gsm8k": gsm8k,
    "mmlu/elementary_mathematics": mmlu_math,
    "mmlu/high_school_geography": mmlu_geography,
    "mmlu_pro/math": mmlu_pro_math,
    "mmlu_pro/history": mmlu_pro_history,
    "arc_easy": arc_easy,
    "hellaswag": hellaswag,
    "piqa": piqa,
    "winogrande": winogrande,
    "truthfulqa": truthfulqa,
    "ifeval": ifeval,
}


def build(out: Path = DATA_DIR) -> list[Path]:
    """Write every split of every set as ``<out>/<name>/<split>.jsonl``; return the paths."""
    written = []
    for name, builder in BUILDERS.items():
        rng = random.Random(f"freshllm-eval-{name}")
        for split, rows in builder(rng).items():
            path = out / name / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DATA_DIR)
    args = ap.parse_args(argv)
    for path in build(args.out):
        print(path)


if __name__ == "__main__":
    main()
