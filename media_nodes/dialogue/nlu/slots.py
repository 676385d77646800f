"""Slot parsers: typed values from what the caller said, as speech recognition wrote it.

``parse_slot(slot, "my order is four five six seven")`` returns ``Parsed("4567")`` or
``Unparsed(reason)``. Values are plain JSON types (digits and dates as strings) so they travel
in events unchanged. :func:`speakable` turns a value back into words TTS reads naturally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

import phonenumbers

from media_nodes.dialogue.nlu.spoken import numbers_to_digits, spoken_digits, words
from shared.agents.models import Slot


@dataclass(frozen=True)
class Parsed:
    value: Any


@dataclass(frozen=True)
class Unparsed:
    reason: str


ParseResult = Parsed | Unparsed

YES = {
    "yes",
    "yeah",
    "yea",
    "yep",
    "yup",
    "ya",
    "yah",
    "yes'm",
    "sure",
    "correct",
    "right",
    "affirmative",
    "absolutely",
    "definitely",
    "ok",
    "okay",
    "exactly",
    "indeed",
    "certainly",
    "perfect",
    "uh-huh",
    "mhm",
}
NO = {"no", "nope", "nah", "not", "incorrect", "wrong", "negative", "don't", "dont", "never"}
YES_PHRASES = (
    "that's right",
    "that is right",
    "that's correct",
    "that is correct",
    "go ahead",
    "of course",
    "please do",
    "yes please",
    "sounds good",
    "that's it",
    "you got it",
    "i do",
    "uh huh",
    "mm hmm",
)
NO_PHRASES = (
    "that's wrong",
    "that is wrong",
    "not right",
    "not correct",
    "no thanks",
    "i don't want",
    "i don't think so",
    "not really",
    "don't do",
)
# Not knowing is no answer at all: "um, I don't know" must not count as a no.
UNSURE_PHRASES = (
    "don't know",
    "dont know",
    "do not know",
    "not sure",
    "no idea",
    "not certain",
    "can't remember",
    "don't remember",
    "cannot remember",
    "i'm unsure",
    "maybe",
    "let me check",
    "let me think",
    "hold on",
    "one second",
    "one moment",
    "just a second",
    "just a moment",
)
# Words that may surround a plain yes or no without adding any meaning of their own.
FILLERS = {
    "um",
    "uh",
    "uhm",
    "erm",
    "er",
    "hmm",
    "oh",
    "ah",
    "well",
    "so",
    "and",
    "thanks",
    "thank",
    "you",
    "please",
    "that's",
    "thats",
    "that",
    "is",
    "it",
    "it's",
    "its",
    "all",
    "sir",
    "ma'am",
    "very",
    "much",
    "good",
    "great",
    "fine",
    "cool",
    "alright",
    "i",
    "think",
}


def _normal(text: str) -> str:
    return " ".join(w for w in words(text.replace("\u2019", "'")) if w != ".")


def _has(phrase: str, normal: str) -> bool:
    return re.search(rf"(?<![\w']){re.escape(phrase)}(?![\w'])", normal) is not None


def parse_yes_no(text: str) -> bool | None:
    """True for yes, False for no, None when the caller said neither, or is not sure."""
    lowered = _normal(text)
    if any(_has(phrase, lowered) for phrase in UNSURE_PHRASES):
        return None
    if any(_has(phrase, lowered) for phrase in NO_PHRASES):
        return False
    if any(_has(phrase, lowered) for phrase in YES_PHRASES):
        return True
    for token in lowered.split():
        if token in NO:
            return False
        if token in YES:
            return True
    return None


def is_plain_yes(text: str) -> bool:
    """Only affirmation and filler ("yes", "yeah that's right, thanks"): nothing else is meant.

    A confirmation takes this without asking the classifier: no other intent hides in it.
    """
    lowered = _normal(text)
    if parse_yes_no(lowered) is not True:
        return False
    for phrase in YES_PHRASES:
        lowered = re.sub(rf"(?<![\w']){re.escape(phrase)}(?![\w'])", " ", lowered)
    return all(token in YES or token in FILLERS for token in lowered.split())


def is_plain_answer(text: str) -> bool:
    """A plain yes or a plain no ("no", "nope, thanks"): a value, never another intent."""
    if is_plain_yes(text):
        return True
    lowered = _normal(text)
    if parse_yes_no(lowered) is not False:
        return False
    return all(t in NO or t in FILLERS for t in lowered.split())


def _digits(slot: Slot, text: str) -> ParseResult:
    digits = spoken_digits(text)
    if not digits:
        return Unparsed("no digits heard")
    if slot.min_length and len(digits) < slot.min_length:
        return Unparsed(f"only {len(digits)} digits, need at least {slot.min_length}")
    if slot.max_length and len(digits) > slot.max_length:
        return Unparsed(f"{len(digits)} digits, at most {slot.max_length} allowed")
    return Parsed(digits)


NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _number(slot: Slot, text: str) -> ParseResult:
    converted = numbers_to_digits(text.replace(" point ", "."))
    match = NUMBER.search(converted.replace(",", ""))
    if not match:
        return Unparsed("no number heard")
    raw = match.group()
    value: int | float = float(raw) if "." in raw else int(raw)
    if slot.minimum is not None and value < slot.minimum:
        return Unparsed(f"{value} is below {slot.minimum:g}")
    if slot.maximum is not None and value > slot.maximum:
        return Unparsed(f"{value} is above {slot.maximum:g}")
    return Parsed(value)


def _date(slot: Slot, text: str, now: datetime) -> ParseResult:
    import dateparser.search  # slow to import; only agents with date slots pay for it

    converted = numbers_to_digits(text)
    found = dateparser.search.search_dates(
        converted,
        languages=["en"],
        settings={"PREFER_DATES_FROM": "future", "RELATIVE_BASE": now},
    )
    if not found:
        return Unparsed("no date heard")
    return Parsed(found[-1][1].date().isoformat())


HOUR_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}
PM = re.compile(r"\b(p\.?\s?m\b\.?|afternoon|evening|tonight|night)")
AM = re.compile(r"\b(a\.?\s?m\b\.?|morning)")
CLOCK = re.compile(r"\b(\d{1,2})(?:(?::|\.|\s)(\d{2}))?(\s*oclock)?(?!\d)")


def _time(slot: Slot, text: str) -> ParseResult:
    lowered = re.sub(r"\bo\s?'?\s?clock\b", " oclock", text.lower())
    lowered = numbers_to_digits(lowered)
    lowered = re.sub(
        r"\b(" + "|".join(HOUR_WORDS) + r")\b", lambda m: HOUR_WORDS[m.group(1)], lowered
    )
    if re.search(r"\b(noon|midday)\b", lowered):
        return Parsed("12:00")
    if re.search(r"\bmidnight\b", lowered):
        return Parsed("00:00")
    pm, am = PM.search(lowered), AM.search(lowered)
    relative = re.search(r"\b(half|quarter) (past|to) (\d{1,2})\b", lowered)
    if relative:
        hour = int(relative.group(3)) % 24
        minutes = 30 if relative.group(1) == "half" else 15
        if relative.group(2) == "to":
            hour, minutes = (hour - 1) % 24, 60 - minutes
    else:
        # A bare number is a time only with minutes, "o'clock", or am/pm around it.
        found = next(
            (m for m in CLOCK.finditer(lowered) if m.group(2) or m.group(3) or pm or am), None
        )
        if found is None:
            return Unparsed("no time heard")
        hour, minutes = int(found.group(1)), int(found.group(2) or 0)
        if hour > 23 or minutes > 59:
            return Unparsed("not a time of day")
    if pm and hour < 12:
        hour += 12
    elif am and hour == 12:
        hour = 0
    return Parsed(time(hour % 24, minutes).strftime("%H:%M"))


SEPARATORS = {"dot": ".", "period": ".", "underscore": "_", "dash": "-", "hyphen": "-"}
AT_WORDS = {"at", "@"}


def _email(slot: Slot, text: str) -> ParseResult:
    lowered = text.lower().strip().rstrip(".!?")
    direct = re.search(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", lowered)
    if direct:
        return _check_email(direct.group())
    tokens = re.findall(r"[\w+'-]+|@|\.", lowered.replace("at sign", "at"))
    tokens = [t for t in tokens if t != "'"]
    at_positions = [i for i, t in enumerate(tokens) if t in AT_WORDS]
    if not at_positions:
        return Unparsed("no email address heard (say it like 'name at example dot com')")
    at = at_positions[-1]
    local = _local_part(tokens[:at])
    domain = _domain_part(tokens[at + 1 :])
    if not local or not domain:
        return Unparsed("incomplete email address")
    return _check_email(f"{local}@{domain}")


def _local_part(tokens: list[str]) -> str:
    """Walk back from 'at': spelled letters join up; 'dot'/'underscore' join words."""
    parts: list[str] = []
    i = len(tokens) - 1
    while i >= 0:
        token = SEPARATORS.get(tokens[i], tokens[i])
        if not parts:
            parts.insert(0, token)
        elif token in (".", "_", "-"):
            parts.insert(0, token)
        elif parts[0] in (".", "_", "-") or (len(token) == 1 and len(parts[0]) == 1):
            parts.insert(0, token)
        else:
            break
        i -= 1
    return "".join(parts).strip("._-")


def _domain_part(tokens: list[str]) -> str:
    """Labels joined by 'dot' ('-' for 'dash'); spelled letters join; stops at other words."""
    labels: list[str] = [""]
    spelled = False
    for token in tokens:
        token = SEPARATORS.get(token, token)
        label = labels[-1]
        if token == ".":
            if not label:
                break
            labels.append("")
        elif token in ("-", "_"):
            labels[-1] += token
        elif not label or label.endswith(("-", "_")):
            labels[-1] += token
            spelled = len(token) == 1
        elif len(token) == 1 and spelled:
            labels[-1] += token  # spelled out: e x a m p l e
        else:
            break
    labels = [label for label in labels if label]
    return ".".join(labels) if len(labels) >= 2 else ""


EMAIL = re.compile(r"^[a-z0-9][a-z0-9._+-]*@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$")


def _check_email(candidate: str) -> ParseResult:
    if EMAIL.match(candidate):
        return Parsed(candidate)
    return Unparsed(f"'{candidate}' is not an email address")


def _phone(slot: Slot, text: str) -> ParseResult:
    converted = numbers_to_digits(re.sub(r"\bplus\b", "+", text.lower()))
    plus = "+" if re.search(r"\+\s*\d", converted) else ""
    digits = spoken_digits(converted)
    if len(digits) < 7:
        return Unparsed("not enough digits for a phone number")
    try:
        number = phonenumbers.parse(plus + digits, slot.region)
    except phonenumbers.NumberParseException as exc:
        return Unparsed(f"not a phone number: {exc}")
    if not phonenumbers.is_possible_number(number):
        return Unparsed("not a possible phone number")
    return Parsed(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _choice(slot: Slot, text: str) -> ParseResult:
    assert slot.choices is not None
    said = " " + " ".join(words(numbers_to_digits(text))) + " "
    best: tuple[int, str] | None = None
    for option, synonyms in slot.choices.items():
        for phrase in [option.replace("_", " "), *synonyms]:
            normal = " ".join(words(phrase))
            if normal and f" {normal} " in said and (best is None or len(normal) > best[0]):
                best = (len(normal), option)
    if best is None:
        options = ", ".join(o.replace("_", " ") for o in slot.choices)
        return Unparsed(f"none of the options heard ({options})")
    return Parsed(best[1])


def _free_text(slot: Slot, text: str) -> ParseResult:
    cleaned = " ".join(text.split())
    if not any(ch.isalnum() for ch in cleaned):
        return Unparsed("nothing said")
    return Parsed(cleaned[:1000])


def parse_slot(slot: Slot, text: str, *, now: datetime | None = None) -> ParseResult:
    """Parse ``text`` as the value of ``slot``; never raises on odd input."""
    if not text or not text.strip():
        return Unparsed("nothing said")
    text = text[:2000]
    match slot.type:
        case "digits":
            return _digits(slot, text)
        case "number":
            return _number(slot, text)
        case "date":
            return _date(slot, text, now or datetime.now())
        case "time":
            return _time(slot, text)
        case "yes_no":
            answer = parse_yes_no(text)
            return Unparsed("neither yes nor no") if answer is None else Parsed(answer)
        case "email":
            return _email(slot, text)
        case "phone":
            return _phone(slot, text)
        case "choice":
            return _choice(slot, text)
        case "free_text":
            return _free_text(slot, text)
    return Unparsed(f"unknown slot type {slot.type}")


def parse_dtmf(slot: Slot, digits: str) -> ParseResult:
    """Keypad input for a slot: digits, numbers and phones take keys ('#' ends entry)."""
    keys = digits.rstrip("#")
    if slot.type in ("digits", "number", "phone"):
        return parse_slot(slot, keys)
    if slot.type == "yes_no" and keys in ("1", "2"):
        return Parsed(keys == "1")
    return Unparsed(f"keypad input does not fit a {slot.type} slot")


def speakable(slot_type: str, value: Any) -> str:
    """A value as TTS should read it: digits one by one, emails with 'at' and 'dot'."""
    if value is None:
        return ""
    if slot_type in ("digits", "phone"):
        return " ".join(str(value).lstrip("+"))
    if slot_type == "email":
        return str(value).replace("@", " at ").replace(".", " dot ")
    if slot_type == "yes_no":
        return "yes" if value else "no"
    if slot_type == "choice":
        return str(value).replace("_", " ")
    if slot_type == "date":
        try:
            day = date.fromisoformat(str(value))
        except ValueError:
            return str(value)
        return f"{day:%A}, {day:%B} {day.day}"
    if slot_type == "time":
        try:
            moment = time.fromisoformat(str(value))
        except ValueError:
            return str(value)
        return moment.strftime("%I:%M %p").lstrip("0").replace(":00", "")
    return str(value)
