"""The heavy, shared parts of a media node: loaded once per process, warmed up before a call."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from media_nodes.asr.engine import Asr
from media_nodes.asr.engines import ASR_ENGINES
from media_nodes.audio import codec
from media_nodes.audio.end_of_turn import SmartTurnModel
from media_nodes.audio.vad import SileroModel
from media_nodes.tts.engines import TTS_ENGINES
from media_nodes.tts.voice import Voice
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Models:
    asr: Asr
    vad: SileroModel
    voice: Voice
    end_of_turn: SmartTurnModel | None = None

    def close(self) -> None:
        self.asr.close()


def load_models(settings: Settings) -> Models:
    started = time.perf_counter()
    codec.warm_up()
    vad = SileroModel()
    end_of_turn = SmartTurnModel() if settings.end_of_turn_model else None
    recognizer = ASR_ENGINES.pick(settings.asr_engine)
    asr = recognizer.create(settings)
    asr.warm_up()
    engine = TTS_ENGINES.load(settings.tts_engine, settings)
    engine.warm_up()
    log.info(
        "models ready in %.1f s (asr %s on %s, tts %s)",
        time.perf_counter() - started,
        recognizer.name,
        asr.device,
        engine.name,
    )
    return Models(asr=asr, vad=vad, voice=Voice(engine), end_of_turn=end_of_turn)
