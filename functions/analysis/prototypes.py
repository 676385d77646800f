"""The phrases the local model compares a caller's words with: a few ways each feeling and each
ending of a call is put into words. They are the model's whole knowledge, so they are kept
plain and varied; the labelled set in tests/functions/data is written apart from them (other
words, sarcasm, mixed calls) so that its accuracy says how the model does on calls it never saw.
"""

from __future__ import annotations

SENTIMENT: dict[str, tuple[str, ...]] = {
    "positive": (
        "thank you so much, that's great",
        "perfect, you've been really helpful",
        "wonderful, I really appreciate it",
        "that's excellent news, thanks",
        "awesome, that works for me",
        "I'm very happy with the service",
        "brilliant, you made my day",
        "lovely, thanks for sorting that out so quickly",
        "great job, that was easy",
        "fantastic, cheers",
        "I'm so relieved, thank you",
        "that's exactly what I needed, thanks a lot",
    ),
    "neutral": (
        "my order number is 4572",
        "I'd like to check the status of my order",
        "yes",
        "okay",
        "it's under the name Smith",
        "I want to ask about my bill",
        "the delivery address is 12 Main Street",
        "can you tell me your opening hours",
        "next Tuesday at ten",
        "no, that's all",
        "I'm calling about an appointment",
        "my account number is one two three four",
        # A polite goodbye is manners, not a feeling.
        "okay, thanks, bye",
        "alright, thank you",
        "right, noted, thanks",
    ),
    "negative": (
        "this is ridiculous, I'm really annoyed",
        "I'm very unhappy with this service",
        "that's terrible, nobody ever helps",
        "I've been waiting for weeks and I'm fed up",
        "this is the worst experience I've had",
        "you people are useless",
        "I'm angry, this keeps happening",
        "that's unacceptable",
        "I'm frustrated, you aren't listening to me",
        "this is a complete waste of my time",
        "I'm disappointed, I want to cancel",
        "stop wasting my time",
        # Sarcasm: praise for a failure.
        "oh great, it's late again, just what I needed",
        "thanks for nothing",
        "brilliant, another delay, I'm so impressed",
        "wonderful, so I have to do it all over again",
        "lovely, even more waiting",
        "fantastic service, really, not",
    ),
}

SUCCESS: dict[str, tuple[str, ...]] = {
    "resolved": (
        "great, that answers my question",
        "that solves it, thanks",
        "perfect, that's all I needed",
        "okay, so it arrives this afternoon, thanks",
        "got it, the appointment is booked",
        "thanks, my problem is fixed",
        "that's sorted then, goodbye",
        "brilliant, I have what I need",
        "okay, the refund is on its way, thank you",
        "that helps a lot, bye",
    ),
    "unresolved": (
        "that doesn't help me at all",
        "you still haven't answered my question",
        "I need to talk to a real person",
        "this didn't fix anything",
        "forget it, I'll call back later",
        "you don't understand what I'm asking",
        "so nobody can help me with this",
        "I'm hanging up, this is pointless",
        "that's not what I asked for",
        "I still don't know where my order is",
        "so you can't do it over the phone, I'll have to sort it out some other way",
        "okay, I'll try again another day",
        "great, so it's still not fixed",
    ),
}
