"""Both legs of a call on one timeline, saved as a stereo WAV (left: caller, right: agent).

Both legs are at the call's transport rate (8 kHz for Twilio, 16 kHz for WebRTC). The caller leg
is the audio as received. Agent audio is placed where it was sent, which is where
it started playing give or take the pacing lead; a barge-in truncates what Twilio discarded.
"""

from __future__ import annotations

import io
import wave

import numpy as np
import numpy.typing as npt


class CallRecorder:
    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._caller: list[npt.NDArray[np.int16]] = []
        self._caller_samples = 0
        self._agent: list[npt.NDArray[np.int16]] = []
        self._agent_samples = 0

    def caller(self, pcm: npt.NDArray[np.int16]) -> None:
        self._caller.append(pcm)
        self._caller_samples += len(pcm)

    def agent(self, pcm: npt.NDArray[np.int16]) -> None:
        gap = self._caller_samples - self._agent_samples
        if gap > 0:
            self._agent.append(np.zeros(gap, dtype=np.int16))
            self._agent_samples += gap
        self._agent.append(pcm)
        self._agent_samples += len(pcm)

    def cut_agent(self) -> None:
        """Barge-in: agent audio queued beyond 'now' was never played."""
        excess = self._agent_samples - self._caller_samples
        if excess <= 0:
            return
        agent = np.concatenate(self._agent)[: self._caller_samples]
        self._agent = [agent]
        self._agent_samples = len(agent)

    @property
    def duration_s(self) -> float:
        return max(self._caller_samples, self._agent_samples) / self.rate

    def wav(self) -> bytes:
        length = max(self._caller_samples, self._agent_samples)
        stereo = np.zeros((length, 2), dtype=np.int16)
        if self._caller:
            caller = np.concatenate(self._caller)
            stereo[: len(caller), 0] = caller
        if self._agent:
            agent = np.concatenate(self._agent)
            stereo[: len(agent), 1] = agent
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(self.rate)
            wav.writeframes(stereo.tobytes())
        return out.getvalue()
