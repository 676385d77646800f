"""The ASR engines, one module each, named as the engine is (``whisper.py`` is ``whisper``).

Each module registers its engine with :data:`ASR_ENGINES` (a :class:`media_nodes.engines.
EngineRegistry`) when it is imported. ``auto`` takes faster-whisper.
"""

from __future__ import annotations

from media_nodes.asr.engine import Asr, AsrError
from media_nodes.engines import EngineRegistry

ASR_ENGINES: EngineRegistry[Asr] = EngineRegistry(
    "ASR", __name__, setting="PARLEY_ASR_ENGINE", error=AsrError
)
