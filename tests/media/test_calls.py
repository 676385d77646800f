"""Whole calls through a real media node: real audio, real models, the real dialogue engine.

Transcripts are checked on words (Whisper may punctuate or write digits differently), never on
exact strings, and no test asserts a wall-clock time (bench/latency.py measures those).
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import psycopg
from psycopg.rows import dict_row

from media_nodes.preparation import warm_fixed_texts
from media_nodes.simulator.caller import Press, Say, SimulatedCaller, call
from media_nodes.tts.voice import Voice
from shared.events.models import TurnAgent, TurnUser
from tests.media.conftest import MANIFEST, PATIENT, NodeFactory, clip, words

GREETING_WORDS = {"thanks", "calling", "acme", "shop"}


async def test_demo_call_reaches_postgres(start_node: NodeFactory, database_url: str) -> None:
    """Intent, slot, escalation: the transcript, intents, disposition and recording are stored."""
    async with start_node(project=True) as running:
        result = await call(
            running.url,
            [clip("order_status"), clip("order_number"), clip("yes"), clip("human")],
            parameters={"record": "true"},
            **PATIENT,
        )
        events = await running.wait_call_ended(result.call_sid)
        await asyncio.sleep(0.5)  # the projector commits in small batches

    assert result.closed_by_agent, "the agent hangs up after the transfer announcement"
    assert all(t.latency_ms is not None for t in result.turns), (
        result.to_dict(),
        [(e.type, getattr(e.payload, "text", "")) for e in events],
    )
    assert len(result.marks_echoed) >= 5
    caller_turns = [e.payload for e in events if isinstance(e.payload, TurnUser)]
    assert {"check", "status", "order"} <= words(caller_turns[0].text)
    assert {"real", "person"} <= words(caller_turns[-1].text)
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) == list(range(len(events)))

    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        row = conn.execute("SELECT * FROM calls WHERE call_id = %s", (result.call_sid,)).fetchone()
        turns = conn.execute(
            "SELECT speaker, turn_index, text, interrupted FROM call_turns WHERE call_id = %s"
            " ORDER BY turn_index, speaker",
            (result.call_sid,),
        ).fetchall()
        latency = conn.execute(
            "SELECT * FROM call_latency WHERE call_id = %s", (result.call_sid,)
        ).fetchall()
    assert row is not None
    assert row["agent_id"] == "acme-shop"
    assert row["disposition"] == "escalated_to_human"
    assert row["end_reason"] == "transferred"
    assert "order_status" in row["intents"] and "human" in row["intents"]
    assert row["slots"].get("order_number") == "4572"
    agent_turns = [t for t in turns if t["speaker"] == "agent"]
    assert GREETING_WORDS <= words(agent_turns[0]["text"])
    assert {"connect", "team"} <= words(agent_turns[-1]["text"])
    assert len([t for t in turns if t["speaker"] == "caller"]) == 4
    assert {r["turn_index"] for r in latency} == {1, 2, 3, 4}
    assert all(r["voice_to_voice_ms"] > 0 for r in latency)
    recording = Path(urlparse(row["recording_url"]).path)
    with wave.open(str(recording)) as wav:
        assert wav.getnchannels() == 2  # caller left, agent right
        assert wav.getnframes() / wav.getframerate() > 10


async def test_barge_in_clears_and_cuts_the_transcript(start_node: NodeFactory) -> None:
    """Speaking over the greeting: clear goes out, the agent turn keeps only what was heard."""
    async with start_node() as running:
        result = await call(running.url, [clip("interrupt", barge_in_after_ms=1500)], **PATIENT)
        events = await running.wait_call_ended(result.call_sid)

    assert result.clears >= 1
    assert result.turns[0].barge_in_clear_ms is not None
    greeting = next(
        e.payload for e in events if isinstance(e.payload, TurnAgent) and e.payload.turn_index == 0
    )
    assert greeting.interrupted
    assert greeting.planned_text and len(greeting.text) < len(greeting.planned_text)
    assert greeting.planned_text.startswith(greeting.text)
    user = next(e.payload for e in events if isinstance(e.payload, TurnUser))
    assert {"talk", "person"} <= words(user.text)
    assert any(e.type == "escalation.requested" for e in events), [
        (e.type, e.payload) for e in events
    ]


async def test_backchannel_does_not_stop_the_agent(start_node: NodeFactory) -> None:
    """A short "mm-hmm" under the agent's speech (default settings): the agent's audio is held
    while the caller speaks, then goes on from the sentence being heard; nothing is cut, and
    the caller's "mm-hmm" is still stored (no later turn took it in)."""
    async with start_node() as running:
        result = await call(running.url, [clip("backchannel", barge_in_after_ms=1200)], **PATIENT)
        events = await running.wait_call_ended(result.call_sid)
        backchannels = running.node.metrics.registry.get_sample_value("parley_backchannels_total")
        barge_ins = running.node.metrics.registry.get_sample_value("parley_barge_ins_total")

    assert backchannels == 1 and barge_ins == 0
    assert result.clears == 1, "the agent is held at once, as for a barge-in"
    assert len(result.back_after_clear_ms) == 1, "then its voice comes back"
    # ... only once the caller's turn was over: held, not a frame sent meanwhile.
    assert result.back_after_clear_ms[0] >= 400  # at least the endpoint wait
    greeting = next(e.payload for e in events if isinstance(e.payload, TurnAgent))
    assert not greeting.interrupted
    assert greeting.planned_text is None  # only a cut turn has a plan apart from its text
    assert GREETING_WORDS | {"help", "today"} <= words(greeting.text)
    said = [e.payload for e in events if isinstance(e.payload, TurnUser)]
    assert len(said) == 1 and words(said[0].text) & {"mm-hmm", "mmhmm", "mm", "hmm", "mhm"}, said


async def test_words_taken_for_a_backchannel_join_the_turn_they_begin(
    start_node: NodeFactory,
) -> None:
    """ "Mm-hmm." over the greeting, a pause long enough to end a turn, then a question: the
    first words let the agent go on, the question barges in, and the caller's turn holds both
    (nothing the caller said is lost between the two)."""
    first, second = clip("backchannel"), clip("opening_hours")
    pause = np.zeros(int(0.8 * 8000), dtype=np.int16)  # well past the 400 ms endpoint
    spoken = Say(
        np.concatenate([first.audio, pause, second.audio]),
        label="split",
        barge_in_after_ms=1200,
    )
    async with start_node(project=True) as running:
        result = await call(running.url, [spoken], **PATIENT)
        events = await running.wait_call_ended(result.call_sid)
        await asyncio.sleep(0.5)  # the projector commits in small batches
        with psycopg.connect(running.settings.database_url, row_factory=dict_row) as conn:
            stored = conn.execute(
                "SELECT turn_index, text FROM call_turns WHERE call_id = %s AND speaker = 'caller'",
                (result.call_sid,),
            ).fetchall()

    backchannels = running.node.metrics.registry.get_sample_value("parley_backchannels_total")
    assert backchannels == 1, "the first words were taken for a backchannel"
    said = [e.payload for e in events if isinstance(e.payload, TurnUser)]
    assert len(said) == 1, said
    heard = words(said[0].text)
    assert heard & {"mm-hmm", "mmhmm", "mm", "hmm", "mhm"}, said[0].text
    assert {"opening", "hours"} <= heard, said[0].text
    assert [(r["turn_index"], r["text"]) for r in stored] == [(said[0].turn_index, said[0].text)]


async def test_a_short_interruption_is_a_barge_in(start_node: NodeFactory) -> None:
    """ "No, stop." is as short as a backchannel, but its words make it a barge-in."""
    async with start_node() as running:
        result = await call(running.url, [clip("stop", barge_in_after_ms=1500)], **PATIENT)
        events = await running.wait_call_ended(result.call_sid)
        metrics = running.node.metrics.registry
        backchannels = metrics.get_sample_value("parley_backchannels_total")

    assert backchannels == 0
    assert metrics.get_sample_value("parley_barge_ins_total") == 1
    assert metrics.get_sample_value("parley_false_barge_ins_total") == 0  # its words were heard
    assert result.clears == 1
    greeting = next(e.payload for e in events if isinstance(e.payload, TurnAgent))
    assert greeting.interrupted
    assert greeting.planned_text and greeting.planned_text.startswith(greeting.text)
    assert len(greeting.text) < len(greeting.planned_text)
    user = next(e.payload for e in events if isinstance(e.payload, TurnUser))
    assert "stop" in words(user.text)


async def test_hanging_up_while_the_agent_is_held_keeps_both_sides(
    start_node: NodeFactory,
) -> None:
    """The caller talks over the agent and hangs up before their turn ends: the agent's turn
    is stored cut where it was held, and the caller's words are transcribed."""
    async with start_node() as running:
        say = clip("stop", barge_in_after_ms=1500, hang_up_after_ms=1250)
        result = await call(running.url, [say], **PATIENT)
        events = await running.wait_call_ended(result.call_sid)

    assert result.clears == 1
    greeting = next(e.payload for e in events if isinstance(e.payload, TurnAgent))
    assert greeting.interrupted and greeting.planned_text
    assert len(greeting.text) < len(greeting.planned_text)
    user = next(e.payload for e in events if isinstance(e.payload, TurnUser))
    assert "stop" in words(user.text)
    assert [e.type for e in events].count("disposition.set") == 1


async def test_dtmf_drives_the_dialogue(start_node: NodeFactory) -> None:
    async with start_node() as running:
        result = await call(running.url, [Press("1"), Press("4572#")], **PATIENT)
        events = await running.wait_call_ended(result.call_sid)

    keyed = [e.payload for e in events if isinstance(e.payload, TurnUser)]
    assert [t.source for t in keyed] == ["dtmf", "dtmf"], [(e.type, e.payload) for e in events]
    assert [t.text for t in keyed] == ["1", "4572"]
    intents = [e.payload for e in events if e.type == "intent.detected"]
    assert intents and intents[0].intent == "order_status"  # type: ignore[union-attr]
    replies = [e.payload for e in events if isinstance(e.payload, TurnAgent)]
    assert {"order", "number"} <= words(replies[1].text)
    assert "4" in replies[2].text or "four" in replies[2].text.lower()


async def test_marks_confirm_every_piece_played(start_node: NodeFactory) -> None:
    async with start_node() as running:
        caller = SimulatedCaller(running.url, **PATIENT)
        result = await caller.run([clip("opening_hours")])
        events = await running.wait_call_ended(result.call_sid)

    agent = [e.payload for e in events if isinstance(e.payload, TurnAgent)]
    assert agent and not any(t.interrupted for t in agent)
    assert len(set(result.marks_echoed)) == len(result.marks_echoed) >= 2
    assert all(name.startswith("t") for name in result.marks_echoed)
    assert result.clears == 0
    # The caller heard the agent's audio: the saved agent leg is mostly sound.
    assert len(result.agent_audio) / 8000 > 5


async def test_socket_drop_mid_sentence_saves_what_was_said(start_node: NodeFactory) -> None:
    async with start_node() as running:
        result = await call(running.url, [clip("order_status", hang_up_after_ms=2000)], **PATIENT)
        events = await running.wait_call_ended(result.call_sid)

    ended = next(e.payload for e in events if e.type == "call.ended")
    assert ended.reason == "caller_hung_up"  # type: ignore[union-attr]
    said = [e.payload for e in events if isinstance(e.payload, TurnUser)]
    assert said, "the interrupted utterance is transcribed, not lost"
    assert {"check", "status"} & words(said[0].text)
    assert [e.type for e in events].count("disposition.set") == 1


async def test_fixed_texts_are_synthesized_before_calls(start_node: NodeFactory) -> None:
    """Prompts the agent says word for word go into the TTS cache at startup (the greeting
    before the node is ready, the rest in the background)."""
    async with start_node() as running:
        node = running.node
        node.voice = Voice(node.voice.engine)  # an empty cache, as on a fresh node
        assert not node.voice.is_cached("Is there anything else I can help you with?", 8000)
        prepared = await warm_fixed_texts(node, "acme-shop")
    assert prepared > 10
    for rate in (8000, 16000):  # Twilio's phone line and WebRTC's wideband
        assert node.voice.is_cached("Is there anything else I can help you with?", rate)
        assert node.voice.is_cached("Let me connect you with one of our team.", rate)
    assert not any("{{" in text for _, text in node.voice._cache)


async def test_health_ready_and_metrics(start_node: NodeFactory) -> None:
    import shared.bus.durable  # noqa: F401  (registers the spool gauges, as with Kafka)

    async with start_node() as running:
        async with httpx.AsyncClient(base_url=running.http) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            ready = (await http.get("/readyz")).json()
            assert ready["ready"] and ready["capacity_left"] == running.settings.media_max_calls
            (entry,) = await running.registry.nodes()  # the voice webhook routes by this entry
            assert entry.node_id == running.node.node_id and not entry.draining
            assert entry.capacity == running.settings.media_max_calls
            await call(running.url, [clip("yes")], **PATIENT)
            metrics = (await http.get("/metrics")).text
    for name in (
        "parley_voice_to_voice_seconds_bucket",
        "parley_asr_seconds_count",
        "parley_tts_first_audio_seconds_count",
        "parley_dialogue_first_text_seconds_count",
        "parley_endpoint_wait_seconds_count",
        "parley_active_calls",
        "parley_calls_total 1.0",
    ):
        assert name in metrics, name


def test_manifest_matches_the_audio_files() -> None:
    for entry in MANIFEST.values():
        path = Path(__file__).resolve().parents[2] / "examples" / "audio" / entry["file"]
        with wave.open(str(path)) as wav:
            assert wav.getframerate() in (8000, 16000) and wav.getnchannels() == 1
            assert wav.getnframes() / wav.getframerate() < 6
