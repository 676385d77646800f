"""espeak-ng as a subprocess: robotic but light and instant; the fallback when Piper is absent."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator

import numpy as np
import numpy.typing as npt

from media_nodes.tts.base import TtsError
from media_nodes.tts.engines import TTS_ENGINES
from shared.settings import Settings

WAV_HEADER_BYTES = 44
READ_BYTES = 4096


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


class EspeakTts:
    name = "espeak"
    sample_rate = 22050

    def __init__(self, voice: str = "en-us", words_per_minute: int = 165) -> None:
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise TtsError("espeak-ng is not installed (apt-get install espeak-ng)")
        self._argv = [binary, "--stdout", "-v", voice, "-s", str(words_per_minute)]

    async def synthesize(self, text: str) -> AsyncIterator[npt.NDArray[np.int16]]:
        process = await asyncio.create_subprocess_exec(
            *self._argv,
            "--",
            text,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert process.stdout is not None
        try:
            await process.stdout.readexactly(WAV_HEADER_BYTES)
            leftover = b""
            while data := await process.stdout.read(READ_BYTES):
                data = leftover + data
                usable = len(data) - len(data) % 2
                leftover = data[usable:]
                if usable:
                    yield np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
        except asyncio.IncompleteReadError as exc:
            raise TtsError("espeak-ng produced no audio") from exc
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()

    def warm_up(self) -> None:
        """Nothing to load."""


def _missing() -> str | None:
    return None if espeak_available() else "espeak-ng is not installed (apt-get install espeak-ng)"


def _create(settings: Settings) -> EspeakTts:
    return EspeakTts()


TTS_ENGINES.register("espeak", _create, missing=_missing, auto_rank=2)
