#!/usr/bin/env python3
"""Generate the sample instruction data set shipped with tui-ft.

Run from anywhere::

    python sample_data/make_sample_data.py

It rewrites ``instructions.jsonl``, ``chat.jsonl`` and ``README.md`` next to
this file. The output is byte-identical on every run: all randomness comes
from ``random.Random(SEED)`` and nothing depends on dict/set iteration order
or hash randomization. Standard library only.

The functions are importable (the tests do so): ``generate()`` returns the
instruction records, ``generate_chat()`` the chat records, and
``check_answer(record)`` tells whether a record's ``output`` is the correct
answer to its ``instruction``/``input`` (useful to grade model outputs too).
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

SEED = 20240611
RECORDS_PER_TASK = 150
CHAT_RECORDS = 60

# Task prefixes, in the order they are generated (ids look like "arith-0001").
TASKS = [
    "arith",
    "units",
    "reverse",
    "sort",
    "count",
    "plural",
    "past",
    "antonym",
    "case",
    "seq",
]

# ---------------------------------------------------------------------------
# Word tables (lists of pairs, not dicts, so the order is explicit).
# ---------------------------------------------------------------------------

PLURALS = [
    ("child", "children"),
    ("man", "men"),
    ("woman", "women"),
    ("mouse", "mice"),
    ("goose", "geese"),
    ("tooth", "teeth"),
    ("foot", "feet"),
    ("person", "people"),
    ("ox", "oxen"),
    ("sheep", "sheep"),
    ("fish", "fish"),
    ("deer", "deer"),
    ("cactus", "cacti"),
    ("crisis", "crises"),
    ("analysis", "analyses"),
    ("knife", "knives"),
    ("leaf", "leaves"),
    ("wolf", "wolves"),
    ("life", "lives"),
    ("half", "halves"),
    ("shelf", "shelves"),
    ("box", "boxes"),
    ("fox", "foxes"),
    ("church", "churches"),
    ("bus", "buses"),
    ("glass", "glasses"),
    ("wish", "wishes"),
    ("city", "cities"),
    ("baby", "babies"),
    ("party", "parties"),
    ("story", "stories"),
    ("day", "days"),
    ("toy", "toys"),
    ("key", "keys"),
    ("potato", "potatoes"),
    ("tomato", "tomatoes"),
    ("hero", "heroes"),
    ("photo", "photos"),
    ("piano", "pianos"),
    ("cat", "cats"),
    ("book", "books"),
    ("house", "houses"),
    ("tree", "trees"),
    ("bridge", "bridges"),
]

PAST_TENSES = [
    ("go", "went"),
    ("eat", "ate"),
    ("see", "saw"),
    ("take", "took"),
    ("give", "gave"),
    ("write", "wrote"),
    ("run", "ran"),
    ("swim", "swam"),
    ("sing", "sang"),
    ("drink", "drank"),
    ("begin", "began"),
    ("bring", "brought"),
    ("buy", "bought"),
    ("think", "thought"),
    ("teach", "taught"),
    ("catch", "caught"),
    ("fly", "flew"),
    ("know", "knew"),
    ("draw", "drew"),
    ("drive", "drove"),
    ("ride", "rode"),
    ("speak", "spoke"),
    ("break", "broke"),
    ("choose", "chose"),
    ("fall", "fell"),
    ("feel", "felt"),
    ("keep", "kept"),
    ("sleep", "slept"),
    ("leave", "left"),
    ("meet", "met"),
    ("sit", "sat"),
    ("stand", "stood"),
    ("tell", "told"),
    ("sell", "sold"),
    ("find", "found"),
    ("put", "put"),
    ("cut", "cut"),
    ("read", "read"),
    ("walk", "walked"),
    ("play", "played"),
    ("jump", "jumped"),
    ("stop", "stopped"),
    ("plan", "planned"),
    ("try", "tried"),
    ("carry", "carried"),
    ("study", "studied"),
    ("like", "liked"),
    ("dance", "danced"),
    ("open", "opened"),
    ("visit", "visited"),
]

ANTONYMS = [
    ("hot", "cold"),
    ("big", "small"),
    ("tall", "short"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("light", "dark"),
    ("hard", "soft"),
    ("early", "late"),
    ("rich", "poor"),
    ("strong", "weak"),
    ("young", "old"),
    ("full", "empty"),
    ("wet", "dry"),
    ("open", "closed"),
    ("clean", "dirty"),
    ("loud", "quiet"),
    ("heavy", "light"),
    ("thick", "thin"),
    ("wide", "narrow"),
    ("deep", "shallow"),
    ("high", "low"),
    ("cheap", "expensive"),
    ("easy", "difficult"),
    ("safe", "dangerous"),
    ("true", "false"),
    ("good", "bad"),
    ("long", "short"),
    ("brave", "cowardly"),
    ("generous", "stingy"),
    ("ancient", "modern"),
    ("sharp", "blunt"),
    ("smooth", "rough"),
    ("sweet", "sour"),
    ("tight", "loose"),
    ("asleep", "awake"),
    ("visible", "invisible"),
    ("possible", "impossible"),
    ("polite", "rude"),
    ("fresh", "stale"),
    ("noisy", "silent"),
    ("friendly", "hostile"),
    ("guilty", "innocent"),
]

TABLES = {"plural": PLURALS, "past": PAST_TENSES, "antonym": ANTONYMS}

# Plain lowercase ASCII words for the reverse / sort / case tasks.
WORDS = [
    "apple", "river", "green", "stone", "quick", "brown", "fox", "jumps",
    "over", "lazy", "dog", "bright", "morning", "garden", "window", "silver",
    "cloud", "train", "yellow", "paper", "music", "ocean", "forest", "candle",
    "winter", "summer", "orange", "purple", "little", "house", "mountain",
    "bread", "butter", "coffee", "table", "chair", "pencil", "rabbit",
    "turtle", "planet", "rocket", "garage", "bottle", "violin", "dragon",
    "island", "market", "basket", "ladder", "tiger", "lemon", "honey",
    "castle", "meadow", "pepper", "cotton", "feather", "harbor", "lantern",
    "marble", "needle", "pillow", "puzzle", "saddle", "shadow", "spider",
    "thunder", "valley", "wagon", "zebra", "quiet", "happy", "gentle",
    "kitten", "wolf", "maple", "cherry", "desert", "anchor", "bridge",
]

# Words with repeated letters for the letter counting task.
COUNT_WORDS = [
    "banana", "mississippi", "excellence", "committee", "bookkeeper",
    "strawberry", "necessary", "parallel", "balloon", "letter", "coffee",
    "address", "possession", "assessment", "engineering", "referee",
    "pepper", "cinnamon", "millennium", "success", "tomorrow", "kangaroo",
    "avocado", "alphabet", "elephant", "umbrella", "chocolate", "pineapple",
    "butterfly", "programming", "statistics", "beekeeper", "peppermint",
    "mammal", "occurrence", "accommodate", "embarrass", "grammar", "giraffe",
    "hippopotamus", "papaya", "cucumber", "lemonade", "tennessee",
    "bubblegum", "onomatopoeia", "rhythm", "keyboard",
]

ALPHABET = "abcdefghijklmnopqrstuvwxyz"

# ---------------------------------------------------------------------------
# Task generators: each takes the rng and returns (instruction, input, output).
# Every template set has no-input templates (data in the instruction) and
# with-input templates (data in the input field); each call picks one of the
# two sets with probability 1/2.
# ---------------------------------------------------------------------------


def _pick(rng: random.Random, no_input: list, with_input: list):
    """Return (template, has_input)."""
    if rng.random() < 0.5:
        return rng.choice(no_input), False
    return rng.choice(with_input), True


ADD_NO_INPUT = [
    "What is {a} plus {b}?",
    "Add {a} and {b}.",
    "Compute the sum of {a} and {b}.",
    "Calculate {a} + {b}.",
    "What do you get when you add {a} to {b}?",
]
ADD_WITH_INPUT = [
    ("Add these two numbers.", "{a} and {b}"),
    ("Find the sum of the numbers below.", "{a}, {b}"),
    ("What is the total of these numbers?", "{a} + {b}"),
    ("Compute the sum.", "{a} + {b}"),
]
SUB_NO_INPUT = [
    "What is {a} minus {b}?",
    "Subtract {b} from {a}.",
    "Calculate {a} - {b}.",
    "What is the difference when {b} is taken away from {a}?",
    "Compute {a} minus {b}.",
]
SUB_WITH_INPUT = [
    ("Subtract the second number from the first.", "{a}, {b}"),
    ("What is the difference between these numbers?", "{a} - {b}"),
    ("Compute the result of this subtraction.", "{a} - {b}"),
    ("Take the second number away from the first.", "{a} and {b}"),
]
MUL_NO_INPUT = [
    "What is {a} times {b}?",
    "Multiply {a} by {b}.",
    "Compute the product of {a} and {b}.",
    "Calculate {a} × {b}.",
]
MUL_WITH_INPUT = [
    ("Multiply these two numbers.", "{a} and {b}"),
    ("Find the product of the numbers below.", "{a}, {b}"),
    ("What is the product?", "{a} × {b}"),
    ("Multiply the two numbers.", "{a} * {b}"),
]


def make_arith(rng: random.Random):
    op = rng.choice(["add", "sub", "mul"])
    if op == "add":
        a, b = rng.randint(2, 999), rng.randint(2, 999)
        result = a + b
        no_input, with_input = ADD_NO_INPUT, ADD_WITH_INPUT
    elif op == "sub":
        a = rng.randint(10, 999)
        b = rng.randint(1, a)
        result = a - b
        no_input, with_input = SUB_NO_INPUT, SUB_WITH_INPUT
    else:
        a, b = rng.randint(2, 25), rng.randint(2, 25)
        result = a * b
        no_input, with_input = MUL_NO_INPUT, MUL_WITH_INPUT
    template, has_input = _pick(rng, no_input, with_input)
    if has_input:
        instruction, inp = template[0], template[1].format(a=a, b=b)
    else:
        instruction, inp = template.format(a=a, b=b), ""
    return instruction, inp, str(result)


# (from abbreviation, to abbreviation, factor kind)
UNIT_CONVERSIONS = [
    ("km", "m"),
    ("m", "km"),
    ("kg", "g"),
    ("g", "kg"),
    ("h", "min"),
    ("min", "h"),
]
# abbreviation -> (singular name, plural name)
UNIT_NAMES = {
    "km": ("kilometre", "kilometres"),
    "m": ("metre", "metres"),
    "kg": ("kilogram", "kilograms"),
    "g": ("gram", "grams"),
    "h": ("hour", "hours"),
    "min": ("minute", "minutes"),
}
UNITS_NO_INPUT = [
    "Convert {q} to {to}.",
    "How many {to} are in {q}?",
    "Express {q} in {to}.",
    "What is {q} in {to}?",
]
UNITS_WITH_INPUT = [
    ("Convert the following quantity to {to}.", "{q}"),
    ("Express this amount in {to}.", "{q}"),
    ("How many {to} is this?", "{q}"),
    ("Convert to {to}.", "{q}"),
]


def _tenths(value: int) -> str:
    """Format an amount given in tenths: 25 -> "2.5", 30 -> "3"."""
    whole, frac = divmod(value, 10)
    return str(whole) if frac == 0 else f"{whole}.{frac}"


def make_units(rng: random.Random):
    src, dst = rng.choice(UNIT_CONVERSIONS)
    # Work in integer tenths so every answer is exact.
    if src in ("km", "kg"):
        src_tenths = rng.randint(1, 200)  # 0.1 .. 20.0
        dst_tenths = src_tenths * 1000
    elif src in ("m", "g"):
        src_tenths = rng.randint(1, 200) * 1000  # 100 .. 20000, step 100
        dst_tenths = src_tenths // 1000
    elif src == "h":
        src_tenths = rng.randint(1, 100)  # 0.1 .. 10.0 hours
        dst_tenths = src_tenths * 60  # minutes (integer)
    else:  # min
        src_tenths = rng.randint(1, 100) * 60  # 6 .. 600 minutes, step 6
        dst_tenths = src_tenths // 60
    src_text = _tenths(src_tenths)
    if rng.random() < 0.5:
        unit_word = src
    else:
        singular, plural = UNIT_NAMES[src]
        unit_word = singular if src_text == "1" else plural
    q = f"{src_text} {unit_word}"
    to = UNIT_NAMES[dst][1]
    template, has_input = _pick(rng, UNITS_NO_INPUT, UNITS_WITH_INPUT)
    if has_input:
        instruction, inp = template[0].format(to=to), template[1].format(q=q)
    else:
        instruction, inp = template.format(q=q, to=to), ""
    return instruction, inp, f"{_tenths(dst_tenths)} {dst}"


REVERSE_NO_INPUT = [
    'Reverse the order of the words in "{p}".',
    'Write the words of "{p}" in reverse order.',
    'Put the words in "{p}" in reverse order.',
    'What is "{p}" with its words in reverse order?',
]
REVERSE_WITH_INPUT = [
    "Reverse the order of the words.",
    "Write these words in reverse order.",
    "Reverse the word order of the following text.",
    "List the words below from last to first.",
]


def make_reverse(rng: random.Random):
    words = rng.sample(WORDS, rng.randint(3, 7))
    phrase = " ".join(words)
    template, has_input = _pick(rng, REVERSE_NO_INPUT, REVERSE_WITH_INPUT)
    if has_input:
        instruction, inp = template, phrase
    else:
        instruction, inp = template.format(p=phrase), ""
    return instruction, inp, " ".join(reversed(words))


SORT_NO_INPUT = [
    "Sort these words alphabetically: {l}",
    "Put the following words in alphabetical order: {l}",
    "Arrange in alphabetical order: {l}",
    "Alphabetize this list: {l}",
]
SORT_WITH_INPUT = [
    "Sort these words alphabetically.",
    "Put the words below in alphabetical order.",
    "Arrange the following words in alphabetical order.",
    "Alphabetize this list of words.",
]


def make_sort(rng: random.Random):
    words = rng.sample(WORDS, rng.randint(4, 7))
    listed = ", ".join(words)
    template, has_input = _pick(rng, SORT_NO_INPUT, SORT_WITH_INPUT)
    if has_input:
        instruction, inp = template, listed
    else:
        instruction, inp = template.format(l=listed), ""
    return instruction, inp, ", ".join(sorted(words))


COUNT_NO_INPUT = [
    'How many times does the letter "{c}" appear in "{w}"?',
    'Count the occurrences of the letter "{c}" in the word "{w}".',
    'In the word "{w}", how many times does "{c}" occur?',
    'How many "{c}" letters are there in "{w}"?',
]
COUNT_WITH_INPUT = [
    'How many times does the letter "{c}" appear in this word?',
    'Count the letter "{c}" in the word below.',
    'Count how many times "{c}" occurs in the following word.',
    'How often does the letter "{c}" appear in the word?',
]


def make_count(rng: random.Random):
    word = rng.choice(COUNT_WORDS)
    if rng.random() < 0.85:
        present = sorted(set(word))  # sorted: no set-order dependence
        letter = rng.choice(present)
    else:
        absent = [c for c in ALPHABET if c not in word]
        letter = rng.choice(absent)
    template, has_input = _pick(rng, COUNT_NO_INPUT, COUNT_WITH_INPUT)
    if has_input:
        instruction, inp = template.format(c=letter), word
    else:
        instruction, inp = template.format(c=letter, w=word), ""
    return instruction, inp, str(word.count(letter))


def _table_maker(no_input: list, with_input: list, table: list):
    def make(rng: random.Random):
        word, answer = rng.choice(table)
        template, has_input = _pick(rng, no_input, with_input)
        if has_input:
            return template, word, answer
        return template.format(w=word), "", answer

    return make


PLURAL_NO_INPUT = [
    'What is the plural of "{w}"?',
    'Give the plural form of the noun "{w}".',
    'Write the plural of "{w}".',
    'What is the plural form of the word "{w}"?',
]
PLURAL_WITH_INPUT = [
    "Give the plural form of this noun.",
    "What is the plural of the word below?",
    "Write the plural of the following noun.",
    "Turn this noun into its plural form.",
]
PAST_NO_INPUT = [
    'What is the past tense of "{w}"?',
    'Give the simple past form of the verb "{w}".',
    'Write the past tense of the verb "{w}".',
    'Change "{w}" to the simple past tense.',
]
PAST_WITH_INPUT = [
    "Give the past tense of this verb.",
    "What is the simple past form of the verb below?",
    "Write the past tense of the following verb.",
    "Put this verb into the simple past tense.",
]
ANTONYM_NO_INPUT = [
    'What is the opposite of "{w}"?',
    'Give an antonym of "{w}".',
    'Name the antonym of the adjective "{w}".',
    'Which word means the opposite of "{w}"?',
]
ANTONYM_WITH_INPUT = [
    "Give an antonym of this adjective.",
    "What is the opposite of the word below?",
    "Write the antonym of the following adjective.",
    "Name a word that means the opposite of this one.",
]

make_plural = _table_maker(PLURAL_NO_INPUT, PLURAL_WITH_INPUT, PLURALS)
make_past = _table_maker(PAST_NO_INPUT, PAST_WITH_INPUT, PAST_TENSES)
make_antonym = _table_maker(ANTONYM_NO_INPUT, ANTONYM_WITH_INPUT, ANTONYMS)


UPPER_NO_INPUT = [
    'Convert "{p}" to uppercase.',
    'Write "{p}" in capital letters.',
    'Rewrite "{p}" in all caps.',
    'What is "{p}" in upper case?',
]
UPPER_WITH_INPUT = [
    "Convert this text to uppercase.",
    "Write the following in capital letters.",
    "Rewrite the text below in all caps.",
    "Change this phrase to upper case.",
]
LOWER_NO_INPUT = [
    'Convert "{p}" to lowercase.',
    'Write "{p}" in small letters.',
    'Rewrite "{p}" using only lowercase letters.',
    'What is "{p}" in lower case?',
]
LOWER_WITH_INPUT = [
    "Convert this text to lowercase.",
    "Write the following in small letters.",
    "Rewrite the text below in lowercase.",
    "Change this phrase to lower case.",
]


def make_case(rng: random.Random):
    words = rng.sample(WORDS, rng.randint(2, 5))
    if rng.random() < 0.5:
        style = rng.choice(["lower", "title", "sentence"])
        no_input, with_input = UPPER_NO_INPUT, UPPER_WITH_INPUT
        convert = str.upper
    else:
        style = rng.choice(["upper", "title", "sentence"])
        no_input, with_input = LOWER_NO_INPUT, LOWER_WITH_INPUT
        convert = str.lower
    if style == "lower":
        phrase = " ".join(words)
    elif style == "upper":
        phrase = " ".join(words).upper()
    elif style == "title":
        phrase = " ".join(w.capitalize() for w in words)
    else:
        phrase = " ".join(words).capitalize()
    template, has_input = _pick(rng, no_input, with_input)
    if has_input:
        instruction, inp = template, phrase
    else:
        instruction, inp = template.format(p=phrase), ""
    return instruction, inp, convert(phrase)


SEQ_NO_INPUT = [
    "What is the next number in the sequence {s}?",
    "Continue the sequence {s} with one more number.",
    "Which number comes next: {s}?",
    "Find the next term of the arithmetic sequence {s}.",
]
SEQ_WITH_INPUT = [
    "What number comes next in this sequence?",
    "Give the next term of the arithmetic sequence.",
    "Find the next number in the sequence below.",
    "Continue this sequence by one term.",
]


def make_seq(rng: random.Random):
    start = rng.randint(0, 60)
    step = rng.choice([s for s in range(-9, 13) if s != 0])
    length = rng.randint(4, 6)
    terms = [start + i * step for i in range(length)]
    shown = ", ".join(str(t) for t in terms)
    template, has_input = _pick(rng, SEQ_NO_INPUT, SEQ_WITH_INPUT)
    if has_input:
        instruction, inp = template, shown
    else:
        instruction, inp = template.format(s=shown), ""
    return instruction, inp, str(start + length * step)


MAKERS = {
    "arith": make_arith,
    "units": make_units,
    "reverse": make_reverse,
    "sort": make_sort,
    "count": make_count,
    "plural": make_plural,
    "past": make_past,
    "antonym": make_antonym,
    "case": make_case,
    "seq": make_seq,
}

# ---------------------------------------------------------------------------
# Data set assembly
# ---------------------------------------------------------------------------


def generate(seed: int = SEED) -> list[dict]:
    """Return the instruction records (Alpaca format), in file order."""
    rng = random.Random(seed)
    seen: set[tuple[str, str]] = set()  # membership only, never iterated
    records: list[dict] = []
    for task in TASKS:
        make = MAKERS[task]
        for number in range(1, RECORDS_PER_TASK + 1):
            for _ in range(1000):
                instruction, inp, output = make(rng)
                if (instruction, inp) not in seen:
                    break
            else:  # pragma: no cover - the pools are far larger than needed
                raise RuntimeError(f"could not find a new {task} record")
            seen.add((instruction, inp))
            records.append(
                {
                    "id": f"{task}-{number:04d}",
                    "instruction": instruction,
                    "input": inp,
                    "output": output,
                }
            )
    # Interleave the tasks so any prefix of the file is a balanced mix.
    rng.shuffle(records)
    return records


SYSTEM_PROMPTS = [
    "You are a helpful assistant. Answer with the result only.",
    "You are a concise assistant that gives short, exact answers.",
    "Answer the user's question as briefly as possible.",
    "You are a careful tutor. Reply with just the answer.",
]


def _user_text(instruction: str, inp: str) -> str:
    return instruction if not inp else f"{instruction}\n\n{inp}"


def generate_chat(seed: int = SEED) -> list[dict]:
    """Return the chat records: single-turn, with system message, two-turn."""
    rng = random.Random(seed + 1)
    records: list[dict] = []
    for number in range(1, CHAT_RECORDS + 1):
        kind = (number - 1) % 3  # 0: single turn, 1: system + turn, 2: two turns
        messages: list[dict] = []
        if kind == 1 or (kind == 2 and rng.random() < 0.5):
            messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
        for _ in range(2 if kind == 2 else 1):
            instruction, inp, output = MAKERS[rng.choice(TASKS)](rng)
            messages.append({"role": "user", "content": _user_text(instruction, inp)})
            messages.append({"role": "assistant", "content": output})
        records.append({"id": f"chat-{number:04d}", "messages": messages})
    return records


def to_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


# ---------------------------------------------------------------------------
# Answer checking (also usable to grade model outputs)
# ---------------------------------------------------------------------------

_QUOTED = re.compile(r'"([^"]*)"')
_UNIT_TOKENS = {}
for _abbr, (_singular, _plural) in UNIT_NAMES.items():
    for _tok in (_abbr, _singular, _plural):
        _UNIT_TOKENS[_tok] = _abbr
_UNIT_PAIR = {"km": "m", "m": "km", "kg": "g", "g": "kg", "h": "min", "min": "h"}
_UNIT_FACTOR = {"km": 1000, "kg": 1000, "h": 60}  # bigger unit -> smaller unit


def _payload(record: dict) -> str:
    """The data part: the input, or the instruction's quoted text."""
    if record["input"]:
        return record["input"]
    return _QUOTED.findall(record["instruction"])[-1]


def reference_answer(record: dict) -> str:
    """Recompute the correct output for an instruction record."""
    task = record["id"].rsplit("-", 1)[0]
    instruction, inp = record["instruction"], record["input"]
    text = f"{instruction}\n{inp}"
    if task == "arith":
        a, b = (int(n) for n in re.findall(r"\d+", text))
        lowered = text.lower()
        if any(k in lowered for k in ("multiply", "product", "times", "×", "*")):
            return str(a * b)
        if any(k in lowered for k in ("minus", "subtract", "difference", "away", "-")):
            # "Subtract B from A" / "B is taken away from A" name B first.
            if re.search(r"\d+\D*\bfrom \d+", text):
                a, b = b, a
            return str(a - b)
        return str(a + b)
    if task == "units":
        value, token = re.search(r"(\d+(?:\.\d+)?) ([a-z]+)", text).groups()
        src = _UNIT_TOKENS[token]
        dst = _UNIT_PAIR[src]
        whole, _, frac = value.partition(".")
        tenths = int(whole) * 10 + int(frac or 0)
        if src in _UNIT_FACTOR:
            out = tenths * _UNIT_FACTOR[src]
        else:
            out, rem = divmod(tenths, _UNIT_FACTOR[dst])
            if rem:
                raise ValueError(f"inexact conversion in {record['id']}")
        return f"{_tenths(out)} {dst}"
    if task == "reverse":
        return " ".join(reversed(_payload(record).split()))
    if task == "sort":
        listed = inp if inp else instruction.split(": ", 1)[1]
        return ", ".join(sorted(w.strip() for w in listed.split(",")))
    if task == "count":
        quoted = _QUOTED.findall(instruction)
        letter = next(q for q in quoted if len(q) == 1)
        word = inp if inp else next(q for q in quoted if len(q) > 1)
        return str(word.count(letter))
    if task in TABLES:
        word = _payload(record)
        return next(answer for key, answer in TABLES[task] if key == word)
    if task == "case":
        phrase = _payload(record)
        command = _QUOTED.sub("", instruction).lower()
        if "upper" in command or "capital" in command or "all caps" in command:
            return phrase.upper()
        return phrase.lower()
    if task == "seq":
        terms = [int(n) for n in re.findall(r"-?\d+", text)]
        return str(terms[-1] + (terms[-1] - terms[-2]))
    raise ValueError(f"unknown task in id {record['id']!r}")


def check_answer(record: dict) -> bool:
    """True when the record's output is exactly the correct answer."""
    return record["output"] == reference_answer(record)


# ---------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------

TASK_DESCRIPTIONS = [
    ("arith", "Integer addition, subtraction (never negative) and multiplication of small numbers.", "The integer, e.g. `42`."),
    ("units", "Unit conversion: km <-> m, kg <-> g, hours <-> minutes.", "Number and unit abbreviation (`m`, `km`, `g`, `kg`, `min`, `h`), number as an integer or with one decimal, e.g. `2500 m`, `2.5 km`, `1.5 h`."),
    ("reverse", "Reverse the order of the words of a phrase.", "The words in reverse order, separated by single spaces."),
    ("sort", "Sort a comma-separated list of words alphabetically.", "The sorted words separated by `, `."),
    ("count", "Count how many times a letter occurs in a word (sometimes zero).", "The integer, e.g. `3`."),
    ("plural", "Plural of a noun (table of {n_plural} nouns, irregular forms included).", "The plural in lowercase, e.g. `children`."),
    ("past", "Simple past tense of a verb (table of {n_past} verbs, irregular forms included).", "The past tense in lowercase, e.g. `went`."),
    ("antonym", "Antonym of an adjective (table of {n_antonym} adjectives).", "The antonym in lowercase, e.g. `cold`."),
    ("case", "Convert a phrase to uppercase or to lowercase.", "The whole phrase converted, nothing else."),
    ("seq", "Next number of an arithmetic sequence (steps may be negative).", "The integer, e.g. `19` or `-4`."),
]


def render_readme(records: list[dict], chat: list[dict]) -> str:
    counts = {task: 0 for task in TASKS}
    with_input = 0
    for r in records:
        counts[r["id"].rsplit("-", 1)[0]] += 1
        with_input += bool(r["input"])
    rows = []
    for task, what, fmt in TASK_DESCRIPTIONS:
        what = what.format(
            n_plural=len(PLURALS), n_past=len(PAST_TENSES), n_antonym=len(ANTONYMS)
        )
        rows.append(f"| `{task}` | {counts[task]} | {what} | {fmt} |")
    kinds = [0, 0, 0]  # single turn, with system message, two turns
    for c in chat:
        roles = [m["role"] for m in c["messages"]]
        if roles.count("user") == 2:
            kinds[2] += 1
        elif "system" in roles:
            kinds[1] += 1
        else:
            kinds[0] += 1
    table = "\n".join(rows)
    return f"""# Sample data

Small, synthetic instruction-tuning data shipped with tui-ft so that the app
can be tried (and tested) without downloading anything.

**This file is generated** by `make_sample_data.py`; edit the generator, not
this file.

## Files

- `instructions.jsonl`: {len(records)} records in Alpaca format, one JSON
  object per line with the keys `id`, `instruction`, `input`, `output` (all
  strings, in that order). `input` is `""` for records without an input;
  {with_input} of the {len(records)} records have one. Ids are
  `<task>-<number>`, e.g. `arith-0001`; the records are shuffled so any
  prefix of the file mixes all tasks.
- `chat.jsonl`: {len(chat)} chat records
  `{{"id": ..., "messages": [{{"role": ..., "content": ...}}, ...]}}` built
  from the same task generators: {kinds[0]} single-turn (user, assistant),
  {kinds[1]} with a system message (system, user, assistant) and {kinds[2]}
  two-turn (an optional system message, then user, assistant, user,
  assistant). Every record ends with an assistant turn. A user turn is the
  instruction, followed by a blank line and the input when there is one.
- `make_sample_data.py`: the generator.

## Tasks and answer formats

Every answer can be checked mechanically, and outputs follow one strict
format per task so that exact-match grading works. Each task has at least
four phrasings with the data in the instruction and four with the data in
the `input` field; no (instruction, input) pair occurs twice.

| Task | Records | What | Output format |
| --- | --- | --- | --- |
{table}

`make_sample_data.check_answer(record)` recomputes the correct answer from a
record's id, instruction and input, and can be used to grade model outputs.

## How it was made

`make_sample_data.py` (Python 3.11, standard library only) draws everything
from `random.Random({SEED})`; the word tables are written by hand in the
generator. Regenerate with

```
python sample_data/make_sample_data.py
```

which rewrites `instructions.jsonl`, `chat.jsonl` and this README
byte-for-byte identically; `tests/test_sample_data.py` checks that the
committed files match.

## Licence

Created by the tui-ft project; released under the same licence as the
project, MIT.
"""


def outputs() -> dict[str, str]:
    """File name -> exact text of every generated file."""
    records = generate()
    chat = generate_chat()
    return {
        "instructions.jsonl": to_jsonl(records),
        "chat.jsonl": to_jsonl(chat),
        "README.md": render_readme(records, chat),
    }


def main() -> int:
    here = Path(__file__).resolve().parent
    for name, text in outputs().items():
        (here / name).write_bytes(text.encode("utf-8"))
        print(f"wrote {here / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
