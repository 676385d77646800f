"""Learned end of turn: Smart Turn v3.2 says whether the caller's last words sound finished.

The model (BSD-2-Clause, Daily) ships inside the ``pipecat-ai`` wheel, installed without its
dependencies; we locate the ONNX file through the package's installed-file list and never import
``pipecat``. It reads the last 8 s of 16 kHz audio as Whisper log-mel features (80 x 800);
faster-whisper's feature extractor computes exactly those (the waveform is normalised to zero
mean and unit variance first, as the model was trained). One inference is ~100-250 ms of one
core, so it runs in a worker thread, never on the event loop.

:func:`endpoint_wait_ms` is the pure rule that turns a verdict, how the words so far read and
what the dialogue expects into how long a pause must last before the turn ends.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnxruntime
from faster_whisper.feature_extractor import FeatureExtractor

SAMPLE_RATE = 16000
WINDOW_S = 8
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_S
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
MODEL_DISTRIBUTION = "pipecat_ai"  # the wheel's distribution name, as importlib.metadata reads it
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


def smart_turn_model_path() -> Path:
    """The Smart Turn ONNX file inside the installed ``pipecat-ai`` distribution."""
    try:
        installed = importlib.metadata.files(MODEL_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"{MODEL_DISTRIBUTION} is not installed (requirements/no-deps.txt)"
        ) from exc
    for entry in installed:
        if entry.name == MODEL_FILE:
            return Path(str(entry.locate()))
    raise FileNotFoundError(f"{MODEL_DISTRIBUTION} ships no {MODEL_FILE}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SmartTurnModel:
    """One ONNX session per process, shared by every call (one inference at a time each)."""

    def __init__(self, path: Path | None = None) -> None:
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 4
        self.session = onnxruntime.InferenceSession(
            str(path or smart_turn_model_path()),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self._features = FeatureExtractor(feature_size=80, chunk_length=WINDOW_S)
        # The extractor keeps no per-call state, but one lock keeps two calls' threads from
        # running the session at once: on a 2-core node a second parallel inference only slows
        # the ASR and VAD of every other call.
        self._lock = threading.Lock()

    def features(self, audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """80 x 800 log-mel of the last 8 s, zero-padded at the front when shorter."""
        tail = audio[-WINDOW_SAMPLES:].astype(np.float32)
        if tail.size < WINDOW_SAMPLES:
            tail = np.pad(tail, (WINDOW_SAMPLES - tail.size, 0))
        normalised = (tail - tail.mean()) / np.sqrt(tail.var() + 1e-7)
        mel = self._features(normalised, padding=0)
        return np.asarray(mel[:, : WINDOW_SAMPLES // 160], dtype=np.float32)

    def complete_probability(self, audio: npt.NDArray[np.float32]) -> float:
        """Probability that the turn in ``audio`` (16 kHz, ending now) is finished. Blocking."""
        features = self.features(audio)[np.newaxis]
        with self._lock:
            (out,) = self.session.run(None, {"input_features": features})[:1]
        return float(np.asarray(out).reshape(-1)[0])


Expectation = Literal["digits", "yes_no"] | None
"""What the dialogue waits for, as far as the wait is concerned (None: anything)."""


@dataclass(frozen=True)
class WaitPolicy:
    """How long a pause must last to end the caller's turn, in ms of caller audio.

    ``base_ms`` applies while no verdict has come; a verdict of complete shortens it to
    ``complete_ms``, incomplete lengthens it to ``incomplete_ms``, and so does a transcript
    that breaks off mid-clause (:func:`media_nodes.asr.unfinished.reads_unfinished`).
    Whatever the model says, a pause of ``cap_ms`` ends the turn, so a caller is never left
    unanswered.
    While a number is being read, pauses between digit groups are normal: ``digits_ms``
    is the least wait, even when the model calls the turn complete.
    """

    base_ms: int = 400
    # Not shorter than the base: callers pause 220-330 ms at a comma ("Yes, that's right." in
    # examples/audio) and the model calls "Yes," complete, so a shorter wait splits the turn and
    # the second half barges into the answer. The model's gain is the longer wait on
    # "incomplete"; a shorter complete_ms / yes_no_ms is for agents whose callers answer in
    # single words.
    complete_ms: int = 400
    incomplete_ms: int = 900
    cap_ms: int = 1400
    digits_ms: int = 1100
    yes_no_ms: int = 400
    complete_threshold: float = 0.5


def endpoint_wait_ms(
    policy: WaitPolicy,
    probability: float | None,
    expectation: Expectation,
    *,
    words_unfinished: bool = False,
) -> int:
    """The pause that ends the turn, given the model's verdict (None: not in yet) and whether
    the words so far break off mid-clause."""
    if probability is None:
        wait = policy.base_ms
    elif probability >= policy.complete_threshold:
        wait = policy.yes_no_ms if expectation == "yes_no" else policy.complete_ms
    else:
        wait = policy.incomplete_ms
    if words_unfinished:
        wait = max(wait, policy.incomplete_ms)
    if expectation == "digits":
        wait = max(wait, policy.digits_ms)
    return min(wait, policy.cap_ms)
