"""Prometheus metrics of a media node (names are fixed: dashboards depend on them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0)
# A whole LLM answer (summaries, streamed replies) takes longer than one pipeline stage.
LLM_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0)


class MediaMetrics:
    """One set of metrics per registry (tests give each app its own registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.voice_to_voice = Histogram(
            "parley_voice_to_voice_seconds",
            "Last voiced caller frame received -> first agent frame sent.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.asr = Histogram(
            "parley_asr_seconds",
            "Whisper inference time per turn.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tts_first_audio = Histogram(
            "parley_tts_first_audio_seconds",
            "Text handed to TTS -> its first audio.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.dialogue_first_text = Histogram(
            "parley_dialogue_first_text_seconds",
            "User input handed to the dialogue -> its first text.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reply_gap = Histogram(
            "parley_reply_gap_seconds",
            "Longest silence inside one agent reply (its audio ran dry while playing).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.speculative_replies = Counter(
            "parley_speculative_replies",
            "Replies prepared during the endpoint wait, by what became of them: used (the turn "
            "was confirmed as tried), dropped (the caller went on or said more), refused (the "
            "reply needed an action with outside effects).",
            ["result"],
            registry=r,
        )
        self.endpoint_wait = Histogram(
            "parley_endpoint_wait_seconds",
            "Last voiced caller frame -> turn confirmed.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.active_calls = Gauge("parley_active_calls", "Calls in progress.", registry=r)
        self.calls = Counter("parley_calls", "Calls answered.", registry=r)
        self.dropped_frames = Counter(
            "parley_dropped_frames", "Inbound frames dropped, by reason.", ["reason"], registry=r
        )
        self.asr_errors = Counter("parley_asr_errors", "Failed transcriptions.", registry=r)
        self.tts_errors = Counter("parley_tts_errors", "Failed syntheses.", registry=r)
        self.turns_cut = Counter(
            "parley_turns_cut", "Turns whose text exceeded an event's bound.", registry=r
        )
        self.backchannels = Counter(
            "parley_backchannels", "Speech over the agent that let it go on.", registry=r
        )
        self.calls_ended = Counter(
            "parley_calls_ended", "Calls that ended, by end reason.", ["reason"], registry=r
        )
        self.barge_ins = Counter(
            "parley_barge_ins",
            "Agent replies cut because the caller spoke or pressed a key.",
            registry=r,
        )
        self.false_barge_ins = Counter(
            "parley_false_barge_ins",
            "Barge-ins by speech after which the caller's turn came to nothing (noise, or no "
            "words heard): the agent was cut for no reason.",
            registry=r,
        )
        self.llm_seconds = Histogram(
            "parley_llm_seconds",
            "One LLM request, asked -> answered (a streamed answer: -> its last token).",
            buckets=LLM_BUCKETS,
            registry=r,
        )
        self.llm_first_token = Histogram(
            "parley_llm_first_token_seconds",
            "A streamed LLM answer: asked -> its first token.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.llm_errors = Counter(
            "parley_llm_errors",
            "LLM requests that failed, by reason (timeout, error, guardrail, invalid).",
            ["reason"],
            registry=r,
        )

    def llm_request(
        self, seconds: float | None, *, first_token_s: float | None, failure: str | None
    ) -> None:
        """One LLM request finished (media_nodes.dialogue.llm.LlmObserver); ``seconds`` is None
        for an answer the call stopped before its end (a barge-in)."""
        if seconds is not None:
            self.llm_seconds.observe(seconds)
        if first_token_s is not None:
            self.llm_first_token.observe(first_token_s)
        if failure is not None:
            self.llm_errors.labels(failure).inc()
