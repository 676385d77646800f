"""TTS engines by name: the registry, the setting naming one, and what every engine must do.

``test_every_engine_speaks_at_phone_rate`` runs for each module of media_nodes/tts/engines: a new
engine is tested by it without a line changed here.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from media_nodes.app import StartupError, check_engines, create_app
from media_nodes.models import Models
from media_nodes.tts.base import TtsEngine, TtsError
from media_nodes.tts.engines import TTS_ENGINES
from media_nodes.tts.voice import Voice
from shared.settings import SettingsError, load_settings


def load_engine(name: str) -> TtsEngine:
    return TTS_ENGINES.load(name, load_settings())


def test_each_engine_module_registers_the_engine_it_is_named_after() -> None:
    assert {"piper", "espeak"} <= set(TTS_ENGINES.names())
    for name in TTS_ENGINES.names():
        assert TTS_ENGINES.entry(name).name == name


def test_the_node_refuses_an_unknown_engine_at_startup_and_names_the_known_ones() -> None:
    known = ", ".join(["auto", *TTS_ENGINES.names()])
    with pytest.raises(StartupError) as info:
        create_app(load_settings(tts_engine="festival"))
    assert f"PARLEY_TTS_ENGINE: unknown TTS engine 'festival' (known: {known})" in str(info.value)
    for name in ["auto", *TTS_ENGINES.names()]:
        assert load_settings(tts_engine=name).tts_engine == name
        check_engines(load_settings(tts_engine=name))


def test_the_setting_refuses_what_cannot_be_an_engine_name() -> None:
    with pytest.raises(SettingsError, match="PARLEY_TTS_ENGINE: 'no/such' is not an engine"):
        load_settings(tts_engine="no/such")


def test_loading_an_unknown_engine_names_the_known_ones() -> None:
    known = "known: auto, espeak, piper"
    with pytest.raises(TtsError, match=f"unknown TTS engine 'festival' \\({known}"):
        load_engine("festival")


def _cannot_run(monkeypatch: pytest.MonkeyPatch, name: str, why: str) -> None:
    entry = TTS_ENGINES.entry(name)
    monkeypatch.setitem(TTS_ENGINES._entries, name, dataclasses.replace(entry, missing=lambda: why))


def test_auto_takes_piper_first_and_falls_back_saying_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert TTS_ENGINES.entry("piper").auto_rank < TTS_ENGINES.entry("espeak").auto_rank  # type: ignore[operator]
    _cannot_run(monkeypatch, "piper", "piper-tts is not installed (parley[piper])")
    with caplog.at_level(logging.WARNING, logger="media_nodes.engines"):
        engine = load_engine("auto")
    assert engine.name == "espeak"
    assert "piper-tts is not installed (parley[piper]): TTS with espeak" in caplog.text


def test_an_engine_asked_for_by_name_that_cannot_run_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _cannot_run(monkeypatch, "espeak", "espeak-ng is not installed (apt-get install espeak-ng)")
    with pytest.raises(TtsError, match="PARLEY_TTS_ENGINE=espeak but espeak-ng is not installed"):
        load_engine("espeak")


def test_auto_with_no_engine_that_can_run_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in TTS_ENGINES.names():
        _cannot_run(monkeypatch, name, f"{name} is missing")
    with pytest.raises(TtsError, match="no TTS engine can run here: piper is missing; espeak is"):
        load_engine("auto")


@pytest.mark.parametrize("name", TTS_ENGINES.names())
async def test_every_engine_speaks_at_phone_rate(name: str, models: Models) -> None:
    # The node's own engine when it is this one: a second Piper would load its model again.
    engine = models.voice.engine if models.voice.engine.name == name else load_engine(name)
    assert engine.name == name
    assert TTS_ENGINES.entry(name).missing() is None, "every engine runs on the test machine"
    engine.warm_up()
    raw = [c async for c in engine.synthesize("Hello.")]
    assert raw and all(c.dtype == np.int16 and c.ndim == 1 for c in raw)
    voice = Voice(engine)
    audio = np.concatenate([c async for c in voice.speak("Your order ships tomorrow.", 8000)])
    assert audio.dtype == np.int16
    assert 0.8 < len(audio) / 8000 < 4
    assert np.abs(audio.astype(np.int32)).max() > 3000
    assert np.abs(audio[:80].astype(np.int32)).max() > 0  # leading silence trimmed
