"""ASR engines by name: the registry (the same mechanism as TTS's), the setting naming one, what
the node says when it names none or one that cannot run, and an engine added as one module."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import media_nodes.asr.engines as asr_engines_package
from media_nodes.app import StartupError, check_engines, create_app
from media_nodes.asr.engine import AsrError
from media_nodes.asr.engines import ASR_ENGINES
from media_nodes.asr.engines.whisper import WhisperAsr
from media_nodes.cli import app as media_app
from media_nodes.engines import AUTO
from media_nodes.models import Models
from shared.settings import SettingsError, get_settings, load_settings

THROWAWAY = "throwaway"
# Everything a new engine is: this module, dropped into media_nodes/asr/engines/.
THROWAWAY_MODULE = '''
"""An ASR engine that hears the same words in any audio."""

from media_nodes.asr.engine import SAMPLE_RATE, Transcript
from media_nodes.asr.engines import ASR_ENGINES


class ThrowawayAsr:
    device = "cpu"

    def __init__(self, threads: int) -> None:
        self.threads = threads

    async def transcribe(self, audio):
        return Transcript("hello there", 1.0, 0.0, len(audio) / SAMPLE_RATE)

    def warm_up(self):
        pass

    def close(self):
        pass


ASR_ENGINES.register(
    "throwaway",
    lambda settings: ThrowawayAsr(settings.asr_threads),
    missing=lambda: None,
    auto_rank=0,
)
'''


@pytest.fixture
def throwaway_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The module above as one more file of the engines' package, gone after the test."""
    (tmp_path / f"{THROWAWAY}.py").write_text(textwrap.dedent(THROWAWAY_MODULE))
    monkeypatch.setattr(
        asr_engines_package, "__path__", [*asr_engines_package.__path__, str(tmp_path)]
    )
    monkeypatch.setattr(ASR_ENGINES, "_entries", dict(ASR_ENGINES._entries))
    try:
        yield THROWAWAY
    finally:
        sys.modules.pop(f"{ASR_ENGINES.package}.{THROWAWAY}", None)


def _cannot_run(monkeypatch: pytest.MonkeyPatch, name: str, why: str) -> None:
    entry = ASR_ENGINES.entry(name)
    monkeypatch.setitem(ASR_ENGINES._entries, name, dataclasses.replace(entry, missing=lambda: why))


def test_whisper_is_the_engine_auto_takes() -> None:
    assert "whisper" in ASR_ENGINES.names()
    for name in ASR_ENGINES.names():
        assert ASR_ENGINES.entry(name).name == name
    assert load_settings().asr_engine == AUTO
    assert ASR_ENGINES.pick(AUTO).name == "whisper"
    assert ASR_ENGINES.entry("whisper").missing() is None, "faster-whisper runs on the test machine"


async def test_an_engine_is_added_by_its_module_alone(throwaway_engine: str) -> None:
    assert throwaway_engine in ASR_ENGINES.names()
    settings = load_settings(asr_engine=throwaway_engine, asr_threads=3)
    check_engines(settings)  # the node would start with it
    asr = ASR_ENGINES.load(settings.asr_engine, settings)
    assert getattr(asr, "threads", None) == 3  # created from the node's settings
    transcript = await asr.transcribe(np.zeros(16000, dtype=np.float32))
    assert (transcript.text, transcript.audio_s) == ("hello there", 1.0)
    # Its auto_rank (0) comes before whisper's: auto takes it, with no other change.
    assert ASR_ENGINES.pick(AUTO).name == throwaway_engine


def test_the_node_refuses_an_unknown_engine_at_startup_and_names_the_known_ones() -> None:
    known = ", ".join([AUTO, *ASR_ENGINES.names()])
    with pytest.raises(StartupError) as info:
        create_app(load_settings(asr_engine="vosk"))
    assert f"PARLEY_ASR_ENGINE: unknown ASR engine 'vosk' (known: {known})" in str(info.value)
    with pytest.raises(AsrError, match=f"unknown ASR engine 'vosk' \\(known: {known}\\)"):
        ASR_ENGINES.load("vosk", load_settings())


def test_the_setting_refuses_what_cannot_be_an_engine_name() -> None:
    with pytest.raises(SettingsError, match="PARLEY_ASR_ENGINE: 'no/such' is not an engine"):
        load_settings(asr_engine="no/such")


def test_an_engine_that_cannot_run_is_refused_at_startup_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _cannot_run(monkeypatch, "whisper", "faster-whisper is not installed")
    with pytest.raises(StartupError, match="PARLEY_ASR_ENGINE=whisper but faster-whisper is not"):
        create_app(load_settings(asr_engine="whisper"))
    with pytest.raises(
        StartupError,
        match="PARLEY_ASR_ENGINE=auto but no ASR engine can run here: faster-whisper is not",
    ):
        create_app(load_settings())


def _serve(monkeypatch: pytest.MonkeyPatch, asr_engine: str) -> tuple[int, str]:
    cli = typer.Typer()
    cli.add_typer(media_app, name="media")
    monkeypatch.setenv("PARLEY_ASR_ENGINE", asr_engine)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["media", "serve", "--port", "1"])
    finally:
        get_settings.cache_clear()
    return result.exit_code, result.output


def test_serve_says_which_engine_is_wrong_without_a_stack_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outputs = []
    code, output = _serve(monkeypatch, "no/such")
    assert code == 2 and "PARLEY_ASR_ENGINE: 'no/such' is not an engine" in output
    outputs.append(output)
    code, output = _serve(monkeypatch, "vosk")
    assert code == 1 and "error: PARLEY_ASR_ENGINE: unknown ASR engine 'vosk'" in output
    outputs.append(output)
    _cannot_run(monkeypatch, "whisper", "faster-whisper is not installed")
    code, output = _serve(monkeypatch, "whisper")
    assert code == 1 and "PARLEY_ASR_ENGINE=whisper but faster-whisper is not installed" in output
    outputs.append(output)
    assert not any("Traceback" in o for o in outputs)


def test_the_node_loads_whisper_through_the_registry(models: Models) -> None:
    assert isinstance(models.asr, WhisperAsr)
