"""Slot parsers: typed values from what the caller said, as speech recognition wrote it.

``parse_slot(slot, "my order is four five six seven")`` returns ``Parsed("4567")`` or
``Unparsed(reason)``. Values are plain JSON types (digits and dates as strings) so they travel
in events unchanged. :func:`speakable` turns a value back into words TTS reads naturally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, get_args

import phonenumbers

from media_nodes.dialogue.nlu.spoken import numbers_to_digits, spoken_digits, words
from media_nodes.dialogue.nlu.when import find_date, find_time, parse_hours, within
from shared.agents.models import Slot, SlotType


@dataclass(frozen=True)
class Parsed:
    value: Any


@dataclass(frozen=True)
class Unparsed:
    reason: str
    refused: bool = False  # a value was heard, but a rule of the slot refused it


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
        return Unparsed(f"only {len(digits)} digits, need at least {slot.min_length}", True)
    if slot.max_length and len(digits) > slot.max_length:
        return Unparsed(f"{len(digits)} digits, at most {slot.max_length} allowed", True)
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
        return Unparsed(f"{value} is below {slot.minimum:g}", True)
    if slot.maximum is not None and value > slot.maximum:
        return Unparsed(f"{value} is above {slot.maximum:g}", True)
    return Parsed(value)


def _date(slot: Slot, text: str, today: date) -> ParseResult:
    found = find_date(text, today)
    if found.day is None:
        return Unparsed(found.problem)
    if slot.future_only and found.day < today:
        return Unparsed(f"{found.day} is in the past", True)
    if slot.weekdays_only and found.day.weekday() >= 5:
        return Unparsed(f"{found.day} is on a weekend", True)
    return Parsed(found.day.isoformat())


def _time(slot: Slot, text: str) -> ParseResult:
    found = find_time(text, business_hours=slot.business_hours)
    if found.moment is None:
        if found.part_of_day and slot.parts_of_day:
            return Parsed(found.part_of_day)
        return Unparsed(found.problem or "a part of the day, not a time")
    hours = parse_hours(slot.business_hours)
    if hours is not None and not within(found.moment, hours):
        return Unparsed(
            f"{found.moment:%H:%M} is outside business hours {slot.business_hours}", True
        )
    return Parsed(found.moment.strftime("%H:%M"))


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
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        return Unparsed("a local number without its area code")
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
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


LEADING_FILLERS = re.compile(r"^(?:(?:um+|uh+|er+m?|hmm+|so|well|oh)\b[\s,.]*)+", re.IGNORECASE)


def clean_text(text: str) -> str:
    """What the caller said without recognition noise: repeated runs, leading fillers, spaces."""
    cleaned = LEADING_FILLERS.sub("", " ".join(text.split()))
    return collapse_repeats(cleaned).strip()


def collapse_repeats(text: str) -> str:
    """Whisper may loop on a phrase ("Maria Lopez Maria Lopez Maria Lopez"): keep it once."""
    tokens = text.split()
    keys = [re.sub(r"\W", "", t.lower()) for t in tokens]
    for size in range(1, len(tokens) // 2 + 1):
        i = 0
        out: list[str] = []
        out_keys: list[str] = []
        while i < len(tokens):
            chunk = keys[i : i + size]
            if len(chunk) == size and out_keys[-size:] == chunk and any(chunk):
                i += size
                continue
            out.append(tokens[i])
            out_keys.append(keys[i])
            i += 1
        tokens, keys = out, out_keys
    return " ".join(tokens)


def _free_text(slot: Slot, text: str) -> ParseResult:
    cleaned = clean_text(text)
    if not any(ch.isalnum() for ch in cleaned):
        return Unparsed("nothing said")
    return Parsed(cleaned[:1000])


NAME_LEAD_INS = re.compile(
    r"^(?:(?:yes|yeah|sure|ok(?:ay)?|hi|hello)\b[\s,.]*)*"
    r"(?:it'?s|it is|this is|that'?s|that is|my name is|my name'?s|the name is|name'?s|"
    r"i'?m|i am|call me|you can call me|surname is|last name is|first name is)\b[\s,]*",
    re.IGNORECASE,
)
SPELLED = re.compile(r"\b(?:[A-Za-z][\s.-]+){1,}[A-Za-z]\b")
NOT_NAMES = {"i", "don't", "dont", "know", "what", "why", "sorry", "no", "not", "the", "a"}


def _name(slot: Slot, text: str) -> ParseResult:
    said = clean_text(text.replace("\u2019", "'"))
    said = NAME_LEAD_INS.sub("", said).strip()
    # Spelled letters ("L-O-P-E-Z", "l o p e z"): joined into one word.
    said = SPELLED.sub(lambda m: re.sub(r"[\s.-]", "", m.group()), said)
    said = re.sub(r"[.!?,;:]+$", "", said).strip(" ,.")
    said = collapse_repeats(said)
    words_ = [w for w in re.split(r"\s+", said) if w]
    # "Lopez, L O P E Z": the spelling repeats the name before it.
    if len(words_) >= 2 and words_[-1].lower() == re.sub(r"\W", "", words_[-2]).lower():
        words_ = words_[:-1]
    words_ = [w.strip(",.") for w in words_ if w.strip(",.")]
    if not words_ or len(words_) > 5:
        return Unparsed("no name heard")
    if any(w.lower() in NOT_NAMES for w in words_) or any(ch.isdigit() for ch in said):
        return Unparsed("no name heard")
    return Parsed(" ".join(_capitalised(w) for w in words_))


def _capitalised(word: str) -> str:
    parts = re.split(r"([-'])", word)
    return "".join(p[:1].upper() + p[1:].lower() if p not in "-'" else p for p in parts)


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
            return _date(slot, text, (now or datetime.now()).date())
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
        case "name":
            return _name(slot, text)
    return Unparsed(f"unknown slot type {slot.type}")


# One utterance per slot type, each parsed once at start-up by :func:`warm_parsers`.
WARM_UP_UTTERANCES: dict[str, str] = {
    "digits": "four five six seven",
    "number": "twenty three point five",
    "date": "next tuesday, the fifth of june",
    "time": "half past three in the afternoon",
    "yes_no": "yes that's right",
    "email": "jane dot doe at example dot com",
    "phone": "plus one four one five five five five one two three four",
    "choice": "the second one",
    "free_text": "hello",
    "name": "it's maria lopez, l o p e z",
}


def warm_parsers() -> list[str]:
    """Parse a sample of every slot type once, so the libraries behind them load their data
    (phone-number metadata, number words, the date and time patterns) before a caller's turn needs
    it; returns the slot types warmed. Meant for start-up, off the event loop."""
    warmed = []
    for slot_type in get_args(SlotType):  # every type: a new one needs its utterance above
        choices = {"second": ["the second one"]} if slot_type == "choice" else None
        slot = Slot(name="warm_up", type=slot_type, prompt="-", choices=choices)
        parse_slot(slot, WARM_UP_UTTERANCES[slot_type])
        warmed.append(str(slot_type))
    return warmed


def parse_dtmf(slot: Slot, digits: str, *, now: datetime | None = None) -> ParseResult:
    """Keypad input for a slot: digits, numbers and phones take keys ('#' ends entry)."""
    keys = digits.rstrip("#")
    if slot.type in ("digits", "number", "phone"):
        return parse_slot(slot, keys, now=now)
    if slot.type == "yes_no" and keys in ("1", "2"):
        return Parsed(keys == "1")
    return Unparsed(f"keypad input does not fit a {slot.type} slot")


def spoken_phone(value: str, region: str = "US") -> str:
    """Grouped as people say a number ("5 5 5, 1 2 3, 4 5 6 7"); the country code only for a
    number from another country than the caller's region."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return " ".join(value.lstrip("+"))
    local = number.country_code == phonenumbers.country_code_for_region(region.upper())
    style = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if local
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    groups = [g for g in re.split(r"[^\d+]+", phonenumbers.format_number(number, style)) if g]
    spoken = [("plus " + " ".join(g[1:])) if g.startswith("+") else " ".join(g) for g in groups]
    return ", ".join(spoken)


def speakable(slot_type: str, value: Any, *, region: str = "US") -> str:
    """A value as TTS should read it: digits one by one, phone numbers grouped, emails with
    'at' and 'dot', dates and times as said."""
    if value is None:
        return ""
    if slot_type == "phone":
        return spoken_phone(str(value), region)
    if slot_type == "digits":
        return " ".join(str(value).lstrip("+"))
    if slot_type == "email":
        return str(value).replace("@", " at ").replace(".", " dot ")
    if slot_type == "yes_no":
        return "yes" if value else "no"
    if slot_type == "choice":
        return str(value).replace("_", " ")
    if slot_type == "spell":
        return " ".join(ch for ch in str(value) if not ch.isspace())
    if slot_type == "date":
        try:
            day = date.fromisoformat(str(value))
        except ValueError:
            return str(value)
        return f"{day:%A}, {day:%B} {day.day}"
    if slot_type == "time":
        if value in ("morning", "afternoon", "evening"):
            return f"in the {value}"
        try:
            moment = time.fromisoformat(str(value))
        except ValueError:
            return str(value)
        if moment == time(12, 0):
            return "noon"
        return moment.strftime("%I:%M %p").lstrip("0").replace(":00", "")
    return str(value)
