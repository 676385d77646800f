"""Find and mask PII in transcript text, including the way people say it on the phone.

Speech recognisers write numbers both ways ("4111 1111 ..." and "four one one one ..."), so
numbers are found as runs of digit groups and number words; each run is turned into digits with
text2num (which also reads "forty one eleven") and classified with python-stdnum's checks:
13-19 digits passing Luhn is a card, 9 digits that are a valid SSN is an SSN, 10 digits (or 11
starting with 1) is a phone number. Written international phone numbers are found by
``phonenumbers``. Emails are found written ("a.b@c.com") and spoken ("a dot b at c dot com").
Only the PII spans change; the rest of the text is kept as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from stdnum import luhn
from stdnum.us import ssn
from text_to_num import alpha2digit

CARD, SSN, EMAIL, PHONE = "[CARD]", "[SSN]", "[EMAIL]", "[PHONE]"

_DIGIT_WORDS = {
    "zero",
    "oh",
    "o",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
}
_NUMBER_WORDS = _DIGIT_WORDS | {
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
    "hundred",
    "thousand",
}
_REPEATS = {"double": 2, "triple": 3}
_SEPARATORS = {"-", ".", ",", "(", ")", "/"}
_TOKEN = re.compile(r"\d+|[A-Za-z]+|[^\sA-Za-z\d]")
_MAX_GAP = 3  # characters of whitespace allowed between the tokens of one number

_WORD = r"[a-z0-9]+"
_LOCAL_SEP = r"(?:\s*[._-]\s*|\s+(?:dot|underscore|dash|hyphen|period)\s+)"
_LOCAL = rf"(?:(?:[a-z0-9]\s+){{1,40}}[a-z0-9]|{_WORD}(?:{_LOCAL_SEP}{_WORD})*)"
_DOMAIN_SEP = r"(?:\s*\.\s*|\s+(?:dot|period)\s+)"
_TLD = r"(?:com|net|org|edu|gov|mil|io|co|us|uk|ca|de|fr|info|biz|me|ai|app|dev)"
_EMAILS = (
    re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    re.compile(
        rf"\b{_LOCAL}\s*(?:@|\bat\b)\s*{_WORD}(?:{_DOMAIN_SEP}{_WORD})*?{_DOMAIN_SEP}{_TLD}\b",
        re.IGNORECASE,
    ),
)


@dataclass(frozen=True)
class Redacted:
    text: str
    found: tuple[str, ...]  # labels of what was masked, in order

    @property
    def changed(self) -> bool:
        return bool(self.found)


def redact_text(text: str) -> Redacted:
    """Mask cards, SSNs, emails and phone numbers in ``text``."""
    found: list[str] = []
    for pattern in _EMAILS:
        text = _sub(pattern, text, EMAIL, found)
    spans = _number_spans(text)
    text = _replace(text, spans, found)
    matches = phonenumbers.PhoneNumberMatcher(text, "US", leniency=phonenumbers.Leniency.POSSIBLE)
    text = _replace(text, [(m.start, m.end, PHONE) for m in matches], found)
    return Redacted(text, tuple(found))


def _sub(pattern: re.Pattern[str], text: str, label: str, found: list[str]) -> str:
    def mask(_: re.Match[str]) -> str:
        found.append(label)
        return label

    return pattern.sub(mask, text)


def _replace(text: str, spans: list[tuple[int, int, str]], found: list[str]) -> str:
    for start, end, label in sorted(spans, reverse=True):
        text = text[:start] + label + text[end:]
    found.extend(label for _, _, label in sorted(spans))
    return text


def _number_spans(text: str) -> list[tuple[int, int, str]]:
    spans: list[tuple[int, int, str]] = []
    for run in _runs(text):
        spans.extend(_classify_run(text, run))
    return spans


def _is_numeric(token: str) -> bool:
    word = token.lower()
    return token.isdigit() or word in _NUMBER_WORDS or word in _REPEATS


def _runs(text: str) -> list[list[re.Match[str]]]:
    """Maximal runs of number tokens (with separators between), split by other words."""
    runs: list[list[re.Match[str]]] = []
    current: list[re.Match[str]] = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        joins = current and match.start() - current[-1].end() <= _MAX_GAP
        if _is_numeric(token) or (token in _SEPARATORS and current):
            if current and not joins:
                runs.append(current)
                current = []
            current.append(match)
        else:
            if current:
                runs.append(current)
            current = []
    if current:
        runs.append(current)
    trimmed = []
    for run in runs:
        while run and not _is_numeric(run[-1].group()):
            run.pop()
        if run:
            trimmed.append(run)
    return trimmed


def _digits(tokens: list[re.Match[str]]) -> str:
    words: list[str] = []
    repeat = 1
    for match in tokens:
        token = match.group().lower()
        if token in _SEPARATORS:
            continue
        if token in _REPEATS:
            repeat = _REPEATS[token]
            continue
        if token in ("oh", "o"):
            token = "zero"
        words.extend([token] * repeat)
        repeat = 1
    return re.sub(r"\D", "", alpha2digit(" ".join(words), "en"))


def _classify(digits: str, international: bool) -> str | None:
    if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
        return CARD
    if len(digits) == 9 and ssn.is_valid(digits):
        return SSN
    if len(digits) == 10 or (len(digits) == 11 and digits[0] == "1"):
        return PHONE
    if international and 8 <= len(digits) <= 15:
        return PHONE
    return None


def _classify_run(text: str, run: list[re.Match[str]]) -> list[tuple[int, int, str]]:
    """Greedy: the longest PII window from each start, then go on after it."""
    numeric = [k for k, m in enumerate(run) if _is_numeric(m.group())]
    spans: list[tuple[int, int, str]] = []
    i = 0
    while i < len(numeric):
        hit = None
        for j in range(len(numeric) - 1, i - 1, -1):
            window = run[numeric[i] : numeric[j] + 1]
            start = window[0].start()
            plus = start > 0 and text[start - 1] == "+"
            label = _classify(_digits(window), plus)
            if label is not None:
                hit = (j, label)
                break
        if hit is None:
            i += 1
            continue
        j, label = hit
        start, end = run[numeric[i]].start(), run[numeric[j]].end()
        if start > 0 and text[start - 1] in "+(":
            start -= 1
        if label == PHONE and text[end : end + 1] == ")":
            end += 1
        spans.append((start, end, label))
        i = j + 1
    return spans
