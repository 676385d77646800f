"""Per-turn latency: where the time between the caller's last word and our first sound went."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from media_nodes.metrics import MediaMetrics
from shared import tracing
from shared.events.models import LatencyMeasured

log = logging.getLogger("parley.latency")


@dataclass
class TurnTiming:
    """Monotonic timestamps (seconds) of one turn; None where a stage did not happen."""

    turn_index: int
    last_voiced_at: float | None = None  # frame holding the caller's last voiced audio arrived
    confirmed_at: float | None = None  # endpointing decided the turn was over
    asr_s: float | None = None  # inference time of the transcript used
    dialogue_started_at: float | None = None
    first_text_at: float | None = None
    tts_started_at: float | None = None  # first piece of text handed to TTS
    tts_first_audio_at: float | None = None
    first_frame_at: float | None = None  # first agent frame sent
    recorded: bool = False

    @staticmethod
    def _ms(start: float | None, end: float | None) -> float | None:
        if start is None or end is None:
            return None
        return round(max(0.0, end - start) * 1000, 1)

    def event(self) -> LatencyMeasured:
        return LatencyMeasured(
            turn_index=self.turn_index,
            endpoint_ms=self._ms(self.last_voiced_at, self.confirmed_at),
            asr_ms=round(self.asr_s * 1000, 1) if self.asr_s is not None else None,
            dialogue_first_text_ms=self._ms(self.dialogue_started_at, self.first_text_at),
            tts_first_audio_ms=self._ms(self.tts_started_at, self.tts_first_audio_at),
            voice_to_voice_ms=self._ms(self.last_voiced_at, self.first_frame_at),
        )

    def observe(self, metrics: MediaMetrics, call_id: str) -> LatencyMeasured:
        """Record the histograms and the JSON log line; return the event to emit."""
        self.recorded = True
        event = self.event()
        pairs = (
            (metrics.endpoint_wait, event.endpoint_ms),
            (metrics.asr, event.asr_ms),
            (metrics.dialogue_first_text, event.dialogue_first_text_ms),
            (metrics.tts_first_audio, event.tts_first_audio_ms),
            (metrics.voice_to_voice, event.voice_to_voice_ms),
        )
        for histogram, value in pairs:
            if value is not None:
                histogram.observe(value / 1000)
        log.info(json.dumps({"msg": "turn latency", "call_id": call_id, **event.model_dump()}))
        self.trace(call_id)
        return event

    def stages(self) -> list[tuple[str, float, float]]:
        """(name, start, end) of each stage that happened, in monotonic seconds."""
        asr_end = self.dialogue_started_at or self.confirmed_at
        spans = [
            ("vad end of turn", self.last_voiced_at, self.confirmed_at),
            ("asr", asr_end - self.asr_s if asr_end and self.asr_s is not None else None, asr_end),
            ("dialogue first text", self.dialogue_started_at, self.first_text_at),
            ("tts first audio", self.tts_started_at, self.tts_first_audio_at),
            ("playout first frame", self.tts_first_audio_at, self.first_frame_at),
        ]
        return [(name, s, e) for name, s, e in spans if s is not None and e is not None]

    def trace(self, call_id: str) -> None:
        """The turn as spans under the call's, derived from the timestamps recorded here: the
        pipeline needs no tracing code of its own, and the spans match the recorded latency."""
        parent = tracing.call_context(call_id)
        stages = self.stages()
        if parent is None or not stages:
            return
        start = self.last_voiced_at if self.last_voiced_at is not None else stages[0][1]
        end = self.first_frame_at if self.first_frame_at is not None else stages[-1][2]
        turn = tracing.tracer.start_span(
            f"turn {self.turn_index}",
            context=parent,
            start_time=tracing.wall_ns(start),
            attributes={"call.id": call_id, "turn.index": self.turn_index},
        )
        inside = tracing.set_span_in_context(turn)
        for name, began, ended in stages:
            tracing.tracer.start_span(name, context=inside, start_time=tracing.wall_ns(began)).end(
                end_time=tracing.wall_ns(ended)
            )
        turn.end(end_time=tracing.wall_ns(end))
