"""Background noise beds for simulated callers, made here (no recordings): babble of overlapped
synthesized sentences, street (rumble + hiss), mains hum and music-like tones. 8 kHz int16.

A bed is scaled to a signal-to-noise ratio against the caller's speech level
(:func:`scale_to_snr`) and mixed under every frame the caller sends, voiced or not.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

RATE = 8000
Pcm = npt.NDArray[np.int16]


def rms(audio: npt.NDArray[np.generic]) -> float:
    samples = np.asarray(audio, dtype=np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


def speech_rms(audio: Pcm) -> float:
    """Level of the voiced part (20 ms frames above a fifth of the loudest), as SNR is meant."""
    frames = np.asarray(audio[: len(audio) // 160 * 160], np.float64).reshape(-1, 160)
    levels = np.sqrt(np.mean(frames**2, axis=1))
    return float(np.sqrt(np.mean(levels[levels > levels.max() / 5] ** 2)))


def babble(sentences: list[Pcm], seconds: float, *, talkers: int = 4, seed: int = 0) -> Pcm:
    """Several talkers at once: each loops the sentences from its own offset."""
    rng = np.random.default_rng(seed)
    length = int(seconds * RATE)
    joined = np.concatenate(sentences).astype(np.float64)
    out = np.zeros(length)
    for _ in range(talkers):
        start = int(rng.integers(0, len(joined)))
        reps = length // len(joined) + 2
        out += np.tile(joined, reps)[start : start + length]
    return _as_pcm(out)


def street(seconds: float, *, seed: int = 0) -> Pcm:
    """Traffic rumble (integrated noise, mostly below 200 Hz) under a broadband hiss."""
    rng = np.random.default_rng(seed)
    length = int(seconds * RATE)
    rumble = np.cumsum(rng.standard_normal(length))
    rumble -= np.convolve(rumble, np.ones(400) / 400, mode="same")  # no DC drift
    rumble /= rumble.std() or 1.0
    return _as_pcm(rumble + 0.3 * rng.standard_normal(length))


def hum(seconds: float, *, mains_hz: float = 60.0) -> Pcm:
    t = np.arange(int(seconds * RATE)) / RATE
    wave = sum(np.sin(2 * np.pi * mains_hz * k * t) / k for k in (1, 2, 3, 5))
    return _as_pcm(np.asarray(wave))


def tones(seconds: float, *, seed: int = 0) -> Pcm:
    """Music-like: a melody of 250 ms notes with harmonics over a sustained chord."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.25 * RATE)) / RATE
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) * 40)
    notes = []
    for _ in range(int(seconds / 0.25) + 1):
        f = 220.0 * 2 ** (int(rng.integers(0, 24)) / 12)
        notes.append(envelope * sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3)))
    melody = np.concatenate(notes)[: int(seconds * RATE)]
    chord_t = np.arange(len(melody)) / RATE
    chord = sum(0.3 * np.sin(2 * np.pi * f * chord_t) for f in (130.8, 164.8, 196.0))
    return _as_pcm(melody + chord)


def scale_to_snr(bed: Pcm, speech_level: float, snr_db: float) -> Pcm:
    """``bed`` scaled so that speech at ``speech_level`` (RMS) is ``snr_db`` above it."""
    target = speech_level / 10 ** (snr_db / 20)
    return _as_pcm(bed.astype(np.float64) * (target / (rms(bed) or 1.0)), normalise=False)


def _as_pcm(samples: npt.NDArray[np.float64], *, normalise: bool = True) -> Pcm:
    if normalise:
        samples = samples / (np.abs(samples).max() or 1.0) * 8000
    return np.clip(np.round(samples), -32768, 32767).astype(np.int16)
