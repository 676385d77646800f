"""The TTS engines, one module each, named as the engine is (``espeak.py`` is ``espeak``).

Each module registers its engine with :data:`TTS_ENGINES` (a :class:`media_nodes.engines.
EngineRegistry`) when it is imported. ``auto`` takes Piper when it is installed, else espeak-ng.
"""

from __future__ import annotations

from media_nodes.engines import EngineRegistry
from media_nodes.tts.base import TtsEngine, TtsError

TTS_ENGINES: EngineRegistry[TtsEngine] = EngineRegistry(
    "TTS", __name__, setting="PARLEY_TTS_ENGINE", error=TtsError
)
