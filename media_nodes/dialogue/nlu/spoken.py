"""Normalises spoken text as speech recognition writes it ("four five six seven", "1 2 3 4").

Number words become digits with ``text2num`` (alpha2digit); what it leaves alone on purpose
(a lone "one", "oh" for zero, "double five") is handled here for digit strings only.
"""

from __future__ import annotations

import re

from text_to_num import alpha2digit

DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
REPEATS = {"double": 2, "triple": 3}
WORD = re.compile(r"[a-z0-9@+#*']+|[.]")


def words(text: str) -> list[str]:
    """Lower-case word tokens; punctuation other than '.' between words is dropped."""
    return WORD.findall(text.lower())


def numbers_to_digits(text: str) -> str:
    """'my order is four five six seven' -> 'my order is 4 5 6 7'; keeps everything else."""
    cleaned = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,234 -> 1234
    try:
        return str(alpha2digit(cleaned, "en"))
    except Exception:  # the library is strict about odd input; the text stays usable as is
        return cleaned


def spoken_digits(text: str) -> str:
    """Every digit the caller said, in order: '4 5 6 7', 'double five one' -> '551'."""
    converted = numbers_to_digits(text)
    out: list[str] = []
    repeat = 1
    for token in words(converted):
        if token in REPEATS:
            repeat = REPEATS[token]
            continue
        if token.isdigit():
            out.append(token[0] * repeat + token[1:])
        elif token in DIGIT_WORDS and (token not in {"o", "oh"} or out or repeat > 1):
            out.append(DIGIT_WORDS[token] * repeat)
        elif re.fullmatch(r"\d+(st|nd|rd|th)", token):
            out.append(token[:-2])
        repeat = 1
    return "".join(out)
