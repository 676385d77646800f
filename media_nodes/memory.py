"""Give a finished call's memory back: to Python, then to the OS.

A call's objects form reference cycles (tasks and their coroutines, callbacks, tracebacks), so
they are freed only by the cyclic collector's full collection. With the models' and libraries'
~260,000 objects tracked, Python runs that rarely (each costs ~130 ms, an audio glitch for
every call) and each call's buffers (~1 MB) lingered: the node grew call after call. So the
objects that live as long as the process are frozen once at startup (``gc.freeze``), after
which a full collection takes well under a millisecond and runs after calls end.

Whisper (CTranslate2), Piper (onnxruntime) and numpy allocate from glibc's per-thread arenas;
freed blocks stay in those arenas, so ``malloc_trim`` returns them; it costs a few ms, runs in
a worker thread, at most once every few seconds.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import time
from typing import Any

MIN_INTERVAL_S = 5.0

_libc: Any = None
_last = 0.0


def _trim() -> None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name) if name else False
    if _libc and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)


def freeze_startup_objects() -> None:
    """Everything alive now (models, modules, settings) stays: keep it out of collections."""
    gc.collect()  # garbage frozen now would never be collected
    gc.freeze()


async def release_memory() -> None:
    """Collect the calls' cycles (here, on the event loop: finalizers of asyncio objects must
    run on it), then trim the native heap (glibc only; a no-op elsewhere). Rate-limited."""
    global _last
    now = time.monotonic()
    if now - _last < MIN_INTERVAL_S:
        return
    _last = now
    gc.collect()
    await asyncio.to_thread(_trim)
