"""What a media node shares across calls: models, the dialogue factory, the bus, metrics."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Protocol

from media_nodes.asr.engine import Asr
from media_nodes.audio.end_of_turn import SmartTurnModel
from media_nodes.audio.vad import VadModel
from media_nodes.dialogue.protocol import DialogueFactory
from media_nodes.metrics import MediaMetrics
from media_nodes.recording.store import RecordingStore
from media_nodes.tts.voice import Voice
from shared.bus import EventBus
from shared.cache.memory import InProcessCache
from shared.cache.streams import StreamClaims
from shared.cache.verdicts import MachineVerdicts
from shared.settings import Settings

log = logging.getLogger(__name__)


class LiveCall(Protocol):
    """A call in progress, as the node sees it (a :class:`~media_nodes.pipeline.call.CallSession`):
    counted against capacity, found by id, hung up at shutdown."""

    @property
    def call_id(self) -> str: ...

    async def shut_down(self) -> None: ...


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class MediaNode:
    settings: Settings
    asr: Asr
    vad: VadModel
    voice: Voice
    dialogue: DialogueFactory
    bus: EventBus
    store: RecordingStore
    metrics: MediaMetrics
    node_id: str = field(default_factory=default_node_id)
    calls: set[LiveCall] = field(default_factory=set)
    # Which calls already had a stream; shared through Redis by every node in production.
    streams: StreamClaims = field(default_factory=lambda: StreamClaims(InProcessCache()))
    # Who decided a machine answered a call (this node or Twilio's AMD); shared the same way.
    verdicts: MachineVerdicts = field(default_factory=lambda: MachineVerdicts(InProcessCache()))
    draining: bool = False
    end_of_turn: SmartTurnModel | None = None  # None: turns end on silence alone

    @property
    def capacity_left(self) -> int:
        return max(0, self.settings.media_max_calls - len(self.calls))

    def accepting(self) -> bool:
        return not self.draining and self.capacity_left > 0
