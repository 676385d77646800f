"""TTS engines by name: each engine module registers itself; the node asks for one by name.

``auto`` (the default) takes the first engine that can run here, in the order of the engines'
``auto_rank`` (Piper, then espeak-ng). Adding an engine is one module in
:mod:`media_nodes.tts.engines` (docs/media.md walks through it): nothing here changes.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from media_nodes.tts.base import TtsEngine, TtsError
from media_nodes.tts.engines import engine_names

log = logging.getLogger(__name__)

AUTO = "auto"
ENGINES_PACKAGE = "media_nodes.tts.engines"


@dataclass(frozen=True)
class EngineEntry:
    name: str
    create: Callable[[], TtsEngine]
    # Why the engine cannot run in this process (a package or binary missing), None when it can.
    missing: Callable[[], str | None]
    auto_rank: int | None  # the order ``auto`` tries engines in (lowest first); None: never


_registered: dict[str, EngineEntry] = {}


def register_engine(
    name: str,
    create: Callable[[], TtsEngine],
    *,
    missing: Callable[[], str | None],
    auto_rank: int | None = None,
) -> None:
    """Called by an engine's module, named ``name``, when it is imported."""
    known = _registered.get(name)
    if known is not None and known.create is not create:
        raise ValueError(f"two TTS engines registered as {name!r}")
    _registered[name] = EngineEntry(name, create, missing, auto_rank)


def engine_entry(name: str) -> EngineEntry:
    """The registration of engine ``name`` (importing its module)."""
    if name == AUTO or name not in engine_names():
        raise TtsError(f"unknown TTS engine {name!r} (known: {', '.join(engine_names())})")
    importlib.import_module(f"{ENGINES_PACKAGE}.{name}")
    entry = _registered.get(name)
    if entry is None:
        raise TtsError(f"{ENGINES_PACKAGE}.{name} registers no engine named {name!r}")
    return entry


def load_engine(name: str = AUTO) -> TtsEngine:
    """The engine ``name``, or for ``auto`` the first that can run here (Piper, else espeak-ng)."""
    if name != AUTO:
        entry = engine_entry(name)
        reason = entry.missing()
        if reason is not None:
            raise TtsError(f"PARLEY_TTS_ENGINE={name} but {reason}")
        return entry.create()
    ranked = [e for e in map(engine_entry, engine_names()) if e.auto_rank is not None]
    skipped: list[str] = []
    for entry in sorted(ranked, key=lambda e: (e.auto_rank or 0, e.name)):
        reason = entry.missing()
        if reason is None:
            if skipped:
                log.warning("%s: speaking with %s", "; ".join(skipped), entry.name)
            return entry.create()
        skipped.append(reason)
    raise TtsError(f"no TTS engine can run here: {'; '.join(skipped) or 'none registered'}")
