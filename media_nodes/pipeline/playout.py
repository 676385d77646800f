"""Agent audio out: 20 ms frames paced just ahead of real time, with a mark after each piece.

The frames are PCM at the transport's rate (:class:`~media_nodes.transports.port.AudioPort`);
a mark's :class:`~media_nodes.transports.port.Played` event says the caller heard it. A transport
plays what it is sent in real time and buffers the rest, so we keep only ``lead_s`` of audio
queued there: enough to ride out scheduling jitter, little enough that ``clear`` discards almost
nothing we must account for. The marks' events tell us which pieces the caller heard, and the
pacing clock says how far into the current piece playback had got when the caller barged in.

When the caller starts talking over the agent, the audio is *held*: ``clear`` stops it at once,
but every frame sent is kept, so if the caller only said "mm-hmm" the turn *resumes* from the
start of the piece they were hearing. Otherwise the hold is *dropped* and the turn is cut there.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from media_nodes.transports.port import FRAME_MS, AudioPort, Played, frame_samples

FRAME_S = FRAME_MS / 1000


@dataclass
class Piece:
    """One synthesized piece of an agent turn (usually a sentence)."""

    mark: str
    text: str
    rate: int  # of its samples: the transport's
    samples: int = 0  # sent
    # Synthesized, sent or not: how long the piece is while its end still waits to be sent (the
    # pacing keeps only lead_s ahead of playback), so what was heard of it is not overstated.
    synthesized: int = 0
    play_start: float | None = None  # monotonic time its first frame starts playing
    sent_all: bool = False
    played: bool = False
    frames: list[npt.NDArray[np.int16]] = field(default_factory=list, repr=False)  # for a resume

    @property
    def duration_s(self) -> float:
        return self.samples / self.rate


@dataclass
class PlayoutTurn:
    """The pieces of one agent turn, in order."""

    index: int
    pieces: list[Piece] = field(default_factory=list)
    first_frame_at: float | None = None
    started_at: float = field(default_factory=time.monotonic)
    # The longest silence the caller heard inside this turn: the audio ran dry (synthesis fell
    # behind playback) and the next frame came after the last one had finished playing.
    longest_gap_s: float = 0.0

    def planned_text(self) -> str:
        return " ".join(p.text for p in self.pieces)


class Playout:
    def __init__(
        self,
        port: AudioPort,
        *,
        lead_s: float = 0.3,
        on_audio: Callable[[npt.NDArray[np.int16]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._port = port
        self.rate = port.rate
        self._frame = frame_samples(port.rate)
        self._lead_s = lead_s
        self._on_audio = on_audio
        self._clock = clock
        self._play_until = 0.0  # when everything sent so far will have played
        self._marks: dict[str, Piece] = {}
        self._ids = itertools.count()
        self._drained = asyncio.Event()
        self._drained.set()
        self._remainder = np.zeros(0, dtype=np.int16)
        self._held_at: float | None = None
        self._resumed = asyncio.Event()  # cleared while held: the turn's sender waits on it
        self._resumed.set()

    # ---- sending ------------------------------------------------------------------------------

    def new_piece(self, turn: PlayoutTurn, text: str) -> Piece:
        piece = Piece(mark=f"t{turn.index}-p{next(self._ids)}", text=text, rate=self.rate)
        turn.pieces.append(piece)
        self._marks[piece.mark] = piece
        self._drained.clear()
        return piece

    async def send(self, turn: PlayoutTurn, piece: Piece, pcm: npt.NDArray[np.int16]) -> None:
        """Send ``pcm`` (at the port's rate) as paced 20 ms frames; the last partial frame waits
        for more."""
        audio = np.concatenate([self._remainder, pcm]) if len(self._remainder) else pcm
        whole = len(audio) - len(audio) % self._frame
        self._remainder = audio[whole:]
        for start in range(0, whole, self._frame):
            await self._send_frame(turn, piece, audio[start : start + self._frame])

    async def finish_piece(self, turn: PlayoutTurn, piece: Piece) -> None:
        """Flush the piece's last partial frame (padded with silence) and mark its end."""
        await self._resumed.wait()
        if len(self._remainder):
            frame = np.zeros(self._frame, dtype=np.int16)
            frame[: len(self._remainder)] = self._remainder
            self._remainder = np.zeros(0, dtype=np.int16)
            await self._send_frame(turn, piece, frame)
        piece.sent_all = True
        await self._port.mark(piece.mark)

    async def _send_frame(
        self, turn: PlayoutTurn, piece: Piece, frame: npt.NDArray[np.int16], *, replay: bool = False
    ) -> None:
        while True:  # a hold may come while we wait for the pacing clock: check again after
            if not replay:
                await self._resumed.wait()
            now = self._clock()
            ahead = self._play_until - now
            if ahead <= self._lead_s:
                break
            await asyncio.sleep(ahead - self._lead_s)
        if turn.first_frame_at is not None and not replay and now > self._play_until:
            turn.longest_gap_s = max(turn.longest_gap_s, now - self._play_until)
        self._play_until = max(self._play_until, now)
        if piece.play_start is None:
            piece.play_start = self._play_until
        if turn.first_frame_at is None:
            turn.first_frame_at = now
        await self._port.play(frame)
        if self._on_audio is not None:
            self._on_audio(frame)
        piece.samples += self._frame
        piece.frames.append(frame)
        self._play_until += FRAME_S

    # ---- feedback -----------------------------------------------------------------------------

    def on_playback(self, event: Played) -> bool:
        """Playback reached this mark; False for a mark we did not send (or no longer count)."""
        piece = self._marks.pop(event.mark, None)
        if piece is None:
            return False
        piece.played = True
        if not self._marks:
            self._drained.set()
        return True

    @property
    def speaking(self) -> bool:
        """Audio is queued or playing at the caller's end."""
        return bool(self._marks) or self._clock() < self._play_until

    async def wait_played(self, timeout_s: float) -> bool:
        """Wait until every mark sent has been echoed (all audio heard)."""
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def clear(self) -> None:
        """Barge-in: the transport drops its buffer; forget the marks it may still report."""
        await self._port.clear()
        self.forget()

    def forget(self) -> None:
        self._marks.clear()
        self._drained.set()
        self._remainder = np.zeros(0, dtype=np.int16)
        self._play_until = self._clock()
        self._held_at = None
        self._resumed.set()

    # ---- holding for the caller ---------------------------------------------------------------

    @property
    def held_at(self) -> float | None:
        """When the audio was held (the caller stopped hearing it), or None."""
        return self._held_at

    async def hold(self) -> float:
        """The caller talks over the agent: stop the audio now, keep it for a resume."""
        if self._held_at is None:
            self._held_at = self._clock()
            self._resumed.clear()
            await self._port.clear()
            # Twilio echoes the marks of the audio it discarded: they prove nothing now. The
            # turn is not drained either: its audio is still owed to the caller.
            for name, piece in list(self._marks.items()):
                if piece.sent_all:
                    del self._marks[name]
            self._play_until = self._held_at
        return self._held_at

    async def resume(self, turn: PlayoutTurn | None) -> None:
        """Only a backchannel: play ``turn`` again from the start of the piece being heard."""
        held_at = self._held_at
        if held_at is None:
            return
        self._held_at = None
        self._play_until = self._clock()
        if turn is not None and not await self._replay(turn, held_at):
            return  # held again meanwhile
        if not self._marks:
            self._drained.set()
        self._resumed.set()

    async def _replay(self, turn: PlayoutTurn, held_at: float) -> bool:
        replaying = False
        for piece in turn.pieces:
            if not replaying and self._heard_whole(piece, held_at):
                continue
            replaying = True
            frames, piece.frames = piece.frames, []
            piece.samples, piece.play_start, piece.played = 0, None, False
            for sent, frame in enumerate(frames):
                if self._held_at is not None:  # held again while replaying: keep the rest
                    piece.frames.extend(frames[sent:])
                    return False
                await self._send_frame(turn, piece, frame, replay=True)
            if piece.sent_all:
                # A new name: a late echo of the old mark (from the clear) must not count.
                self._marks.pop(piece.mark, None)
                piece.mark = f"t{turn.index}-p{next(self._ids)}"
                self._marks[piece.mark] = piece
                self._drained.clear()
                await self._port.mark(piece.mark)
        return self._held_at is None

    @staticmethod
    def _heard_whole(piece: Piece, at: float) -> bool:
        if piece.played:
            return True
        start = piece.play_start
        return piece.sent_all and start is not None and start + piece.duration_s <= at

    def heard_text(self, turn: PlayoutTurn, at: float | None = None) -> str:
        """What the caller heard of ``turn`` by time ``at``: whole pieces whose mark came back,
        then the words of the playing piece in proportion to its elapsed playback."""
        now = self._clock() if at is None else at
        words: list[str] = []
        for piece in turn.pieces:
            if piece.played:
                words.extend(piece.text.split())
                continue
            if piece.play_start is None or now <= piece.play_start or not piece.samples:
                break
            length_s = max(piece.samples, piece.synthesized) / piece.rate
            fraction = min(1.0, (now - piece.play_start) / length_s)
            piece_words = piece.text.split()
            words.extend(piece_words[: round(fraction * len(piece_words))])
            if fraction < 1.0:
                break
        return " ".join(words)
