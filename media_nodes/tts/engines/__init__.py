"""The TTS engines, one module each, named as the engine is (``espeak.py`` is ``espeak``).

Each module registers its engine with :func:`media_nodes.tts.registry.register_engine` when it is
imported. The names are the modules' names, so they are known without importing (or loading) any
engine: settings check ``PARLEY_TTS_ENGINE`` against :func:`engine_names` cheaply, in any process.
"""

from __future__ import annotations

import pkgutil


def engine_names() -> list[str]:
    """Every engine's name, sorted; imports none of them."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
