"""A reply's speech: cut so synthesis stays ahead of playback, and the gaps it must never leave."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import numpy as np
import numpy.typing as npt

from media_nodes.models import Models
from media_nodes.pipeline.playout import FRAME_S, Piece, Playout, PlayoutTurn
from media_nodes.tts.base import TtsError
from media_nodes.tts.sentences import FIRST_PIECE_CHARS, GROWTH, MIN_PIECE_CHARS, fit_pieces
from media_nodes.tts.streaming import PieceAudio, synthesize_ahead
from media_nodes.tts.voice import Voice, speakable_pieces

PHONE_RATE = 8000

READ_BACK = (
    "Let me read that back to you: your order number is 4 5 7 8 2 1, for two large pizzas and a "
    "bottle of lemonade, delivered to 14 Baker Street on Friday at six thirty in the evening, "
    "paid by card ending 0 4 2 7 and sent to the phone number 5 5 5 0 1 9 8 7 6 5."
)


class NullSink:
    rate = PHONE_RATE

    def __init__(self) -> None:
        self.frames = 0

    async def play(self, pcm: npt.NDArray[np.int16]) -> None:
        self.frames += 1

    async def mark(self, name: str) -> None:
        pass

    async def clear(self) -> None:
        pass


# ---- cutting ------------------------------------------------------------------------------------


def test_each_piece_is_at_most_growth_times_the_one_before() -> None:
    pieces = fit_pieces(READ_BACK, 0)
    assert len(pieces) >= 4
    assert len(pieces[0]) <= FIRST_PIECE_CHARS
    for before, after in itertools.pairwise(pieces):
        assert len(after) <= GROWTH * len(before) + MIN_PIECE_CHARS, (before, after)
    assert " ".join(pieces) == READ_BACK  # nothing lost, nothing added


def test_pieces_end_at_clause_breaks_before_words() -> None:
    pieces = fit_pieces(READ_BACK, 0)
    assert pieces[0] == "Let me read that back to you:"
    assert pieces[1] == "your order number is 4 5 7 8 2 1,"
    # No clause break in reach: the cut falls before a conjunction or preposition.
    assert fit_pieces("The store opens at nine in the morning and closes at eight tonight.", 0) == [
        "The store opens at nine in the morning",
        "and closes at eight tonight.",
    ]
    # After a one-word piece, the next is cut at the first break in reach, never inside a number.
    after_short = fit_pieces(READ_BACK, len("Sure."))
    assert after_short[:2] == ["Let me read that", "back to you:"]
    for before, after in itertools.pairwise(after_short):
        assert not (before[-1].isdigit() and after[0].isdigit()), (before, after)


def test_short_sentences_are_not_cut() -> None:
    assert fit_pieces("Yes.", 0) == ["Yes."]
    prompt = "Is there anything else I can help you with today?"
    assert fit_pieces(prompt, len(prompt)) == [prompt]
    assert fit_pieces("Averyveryverylongwordwithoutanywhitespaceatallinsideit.", 0) == [
        "Averyveryverylongwordwithoutanywhitespaceatallinsideit."
    ]


class CountingEngine:
    """One sample per character at 8 kHz x 400 (a character lasts 50 ms); fails on ``fail``."""

    name = "counting"
    sample_rate = PHONE_RATE

    def __init__(self, fail: str | None = None) -> None:
        self.spoken: list[str] = []
        self._fail = fail

    async def synthesize(self, text: str) -> AsyncIterator[npt.NDArray[np.int16]]:
        self.spoken.append(text)
        if text == self._fail:
            raise TtsError("engine down")
        yield np.full(len(text) * 400, 5000, dtype=np.int16)

    def warm_up(self) -> None:
        pass


async def test_a_cached_sentence_is_spoken_whole() -> None:
    prompt = "Thanks for calling, is there anything else I can help you with today?"
    voice = Voice(CountingEngine())
    await voice.prepare(prompt)
    assert speakable_pieces(voice, prompt, 0, PHONE_RATE) == [prompt]
    assert speakable_pieces(voice, prompt, 0, 16000) == [prompt], "prepared at every play rate"
    uncached = speakable_pieces(Voice(CountingEngine()), prompt, 0, PHONE_RATE)
    assert uncached == fit_pieces(prompt, 0)
    assert uncached[0] == "Thanks for calling,"


async def test_synthesis_runs_ahead_and_survives_a_failed_piece() -> None:
    engine = CountingEngine(fail=fit_pieces(READ_BACK, len("Sure."))[1])
    sentences: asyncio.Queue[str | None] = asyncio.Queue()
    audio: asyncio.Queue[PieceAudio[str] | None] = asyncio.Queue()
    for sentence in ("Sure.", READ_BACK, None):
        sentences.put_nowait(sentence)
    errors: list[TtsError] = []
    await synthesize_ahead(
        Voice(engine),
        PHONE_RATE,
        sentences,
        audio,
        new_piece=lambda text: text,
        on_audio=lambda piece, pcm: None,
        on_error=errors.append,
    )
    items = []
    while (item := audio.get_nowait()) is not None:
        items.append(item)
    ended = [piece for piece, pcm in items if pcm is None]
    assert ended == engine.spoken  # every piece ends, in order, the failed one too
    assert ended[0] == "Sure."
    assert len(errors) == 1
    # "Sure." is short, so the read-back's first piece is at most GROWTH times as long.
    assert len(ended[1]) <= GROWTH * len("Sure.") + MIN_PIECE_CHARS


# ---- gaps ---------------------------------------------------------------------------------------


async def test_playout_measures_the_longest_gap_on_its_audio_timeline() -> None:
    now = [100.0]
    playout = Playout(NullSink(), lead_s=0.3, clock=lambda: now[0])
    turn = PlayoutTurn(index=1)
    piece = playout.new_piece(turn, "one")
    frame = np.full(160, 4000, dtype=np.int16)
    await playout.send(turn, piece, np.tile(frame, 10))  # 200 ms of audio, all within the lead
    assert turn.longest_gap_s == 0.0
    now[0] += 0.2  # exactly played out: no gap yet
    await playout.send(turn, piece, frame)
    assert turn.longest_gap_s < 1e-9
    now[0] += FRAME_S + 0.75  # the next audio comes 750 ms after the last frame finished
    await playout.send(turn, piece, frame)
    assert abs(turn.longest_gap_s - 0.75) < 1e-9
    now[0] += FRAME_S + 0.1
    await playout.send(turn, piece, frame)
    assert abs(turn.longest_gap_s - 0.75) < 1e-9  # the longest, not the last


async def test_long_read_back_through_piper_plays_without_a_gap(models: Models) -> None:
    """Real Piper, the synthesis pipelined as a call runs it: the playout's audio timeline (what
    Twilio would be playing) never runs dry between the reply's first and last frame."""
    voice = Voice(models.voice.engine)  # a cold cache: every piece is synthesized
    sink = NullSink()
    playout = Playout(sink, lead_s=0.3)
    turn = PlayoutTurn(index=1)
    sentences: asyncio.Queue[str | None] = asyncio.Queue()
    audio: asyncio.Queue[PieceAudio[Piece] | None] = asyncio.Queue()
    for sentence in ("Sure.", READ_BACK, None):
        sentences.put_nowait(sentence)

    async def play() -> None:
        while (item := await audio.get()) is not None:
            piece, pcm = item
            if pcm is None:
                await playout.finish_piece(turn, piece)
            else:
                await playout.send(turn, piece, pcm)

    def fail(exc: TtsError) -> None:
        raise exc

    async with asyncio.TaskGroup() as group:
        group.create_task(
            synthesize_ahead(
                voice,
                PHONE_RATE,
                sentences,
                audio,
                new_piece=lambda text: playout.new_piece(turn, text),
                on_audio=lambda piece, pcm: None,
                on_error=fail,
            )
        )
        group.create_task(play())
    assert turn.planned_text() == "Sure. " + READ_BACK
    assert len(turn.pieces) >= 5
    total_s = sum(p.duration_s for p in turn.pieces)
    assert total_s > 12  # the whole read-back was synthesized and sent
    assert sink.frames * 160 == sum(p.samples for p in turn.pieces)
    # Jitter of the pacing loop aside (a frame or two), the caller never hears silence.
    assert turn.longest_gap_s <= 2 * FRAME_S, turn.longest_gap_s
