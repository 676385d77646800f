"""Whether a transcript stops where an English sentence cannot: the caller is mid-clause.

At a pause the speculative transcript is in before the wait is over. Words like "the", "and",
"to" or "um" at the very end, or Whisper's trailing comma, dash or ellipsis, mean the caller
paused to think ("I'd like to, um, ..."), so the turn waits longer instead of answering half a
sentence. The rule only ever lengthens a wait: a transcript that reads finished proves nothing
(callers pause 160-450 ms between sentences of one turn, as long as at its end), so it never
shortens one.

Only words that almost never end a spoken sentence count: articles, possessives, conjunctions,
fillers and the two prepositions that strand least ("to" and "of"). A sentence that does end on
one ("Yes, I'd love to.") waits the longer pause once; no caller is cut off either way.
"""

from __future__ import annotations

import re

CANNOT_END = frozenset(
    {
        # articles and possessives: a noun must follow
        "a",
        "an",
        "the",
        "my",
        "your",
        "our",
        "their",
        # conjunctions: a clause must follow
        "and",
        "but",
        "or",
        "because",
        "if",
        "than",
        "unless",
        "whether",
        "although",
        # the prepositions that strand least
        "to",
        "of",
        # fillers: the caller is thinking
        "um",
        "uh",
        "er",
        "erm",
        "uhm",
    }
)
TRAILING_OFF = ("...", "\u2026", ",", "-", "\u2014", "\u2013")  # ellipsis, em and en dash
_WORD = re.compile(r"[a-z']+")


def reads_unfinished(text: str) -> bool:
    """True when ``text`` (a transcript up to a pause) breaks off mid-clause."""
    stripped = text.strip()
    if not stripped:
        return False
    if stripped.endswith(TRAILING_OFF):
        return True
    words = _WORD.findall(stripped.lower())
    return bool(words) and words[-1] in CANNOT_END
