"""Engines by name, for every kind the node has (ASR, TTS): one registry mechanism for all.

Each kind has a package of engine modules (``media_nodes/asr/engines/``,
``media_nodes/tts/engines/``) and one :class:`EngineRegistry` for it. A module's name is its
engine's name, so the names are listed without importing (or loading) any engine; the module
registers its engine when it is imported. ``auto`` (a setting's default) takes the first engine
that can run here, in the order of the engines' ``auto_rank``. Adding an engine is one module in
the kind's package (docs/architecture.md walks through both kinds): nothing here changes.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from shared.settings import Settings

log = logging.getLogger(__name__)

AUTO = "auto"

E = TypeVar("E")


@dataclass(frozen=True)
class EngineEntry(Generic[E]):
    name: str
    create: Callable[[Settings], E]  # the engine, configured from the node's settings
    # Why the engine cannot run in this process (a package or binary missing), None when it can.
    missing: Callable[[], str | None]
    auto_rank: int | None  # the order ``auto`` tries engines in (lowest first); None: never


class EngineRegistry(Generic[E]):
    """The engines of one kind: the modules of ``package``, chosen by the setting ``setting``.

    Every refusal raises ``error`` (the kind's own error, :class:`~media_nodes.tts.base.TtsError`
    or :class:`~media_nodes.asr.engine.AsrError`) with a message naming the setting and either the
    engines there are or why the one asked for cannot run.
    """

    def __init__(self, kind: str, package: str, *, setting: str, error: type[Exception]) -> None:
        self.kind = kind  # "TTS", "ASR": for messages
        self.package = package
        self.setting = setting  # the environment variable naming the engine
        self.error = error
        self._entries: dict[str, EngineEntry[E]] = {}

    def names(self) -> list[str]:
        """Every engine's name (its module's), sorted; imports none of them."""
        path = importlib.import_module(self.package).__path__
        return sorted(m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_"))

    def register(
        self,
        name: str,
        create: Callable[[Settings], E],
        *,
        missing: Callable[[], str | None],
        auto_rank: int | None = None,
    ) -> None:
        """Called by an engine's module, named ``name``, when it is imported."""
        known = self._entries.get(name)
        if known is not None and known.create is not create:
            raise ValueError(f"two {self.kind} engines registered as {name!r}")
        self._entries[name] = EngineEntry(name, create, missing, auto_rank)

    def entry(self, name: str) -> EngineEntry[E]:
        """The registration of engine ``name`` (importing its module)."""
        if name == AUTO or name not in self.names():
            raise self.error(
                f"{self.setting}: unknown {self.kind} engine {name!r} (known: {self._known()})"
            )
        importlib.import_module(f"{self.package}.{name}")
        entry = self._entries.get(name)
        if entry is None:
            raise self.error(f"{self.package}.{name} registers no engine named {name!r}")
        return entry

    def check(self, name: str) -> None:
        """Raise what :meth:`load` would refuse ``name`` for, loading nothing: the node checks its
        settings before it loads any model."""
        self._choose(name)

    def pick(self, name: str = AUTO) -> EngineEntry[E]:
        """The engine ``name``, or for ``auto`` the first that can run here (saying in the log
        why those before it cannot)."""
        entry, skipped = self._choose(name)
        if skipped:
            log.warning("%s: %s with %s", "; ".join(skipped), self.kind, entry.name)
        return entry

    def load(self, name: str, settings: Settings) -> E:
        """The engine :meth:`pick` chooses, created from ``settings``."""
        return self.pick(name).create(settings)

    def _known(self) -> str:
        return ", ".join([AUTO, *self.names()])

    def _choose(self, name: str) -> tuple[EngineEntry[E], list[str]]:
        """The engine for ``name`` and, for ``auto``, why each one ranked before it cannot run."""
        if name != AUTO:
            entry = self.entry(name)
            reason = entry.missing()
            if reason is not None:
                raise self.error(f"{self.setting}={name} but {reason}")
            return entry, []
        ranked = [e for e in map(self.entry, self.names()) if e.auto_rank is not None]
        skipped: list[str] = []
        for entry in sorted(ranked, key=lambda e: (e.auto_rank or 0, e.name)):
            reason = entry.missing()
            if reason is None:
                return entry, skipped
            skipped.append(reason)
        raise self.error(
            f"{self.setting}=auto but no {self.kind} engine can run here: "
            f"{'; '.join(skipped) or 'none registered'}"
        )
