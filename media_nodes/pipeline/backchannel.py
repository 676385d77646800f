"""Is what the caller said over the agent only a backchannel ("mm-hmm", "yeah, okay")?

A backchannel tells the agent to go on; anything else ("no, wait", "stop", a question) is a
barge-in. The transcript is cut into words (punctuation and case dropped) and must be made up
entirely of the configured backchannel words and two-word phrases ("got it"). Silence or a
sound Whisper writes no words for (a cough that held the agent) counts as a backchannel too.
"""

from __future__ import annotations

import re
from collections.abc import Collection

_WORD = re.compile(r"[a-z']+(?:-[a-z']+)*")


def is_backchannel(text: str, words: Collection[str]) -> bool:
    tokens = _WORD.findall(text.lower())
    at = 0
    while at < len(tokens):
        pair = " ".join(tokens[at : at + 2])
        if at + 1 < len(tokens) and pair in words:
            at += 2
        elif tokens[at] in words or tokens[at].replace("-", " ") in words:
            at += 1
        else:
            return False
    return True
