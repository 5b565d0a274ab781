"""Deterministic embedding vectors: a pure function of (seed, text, dims), unit norm by default."""

from __future__ import annotations

import base64
import hashlib

import numpy as np


class Embedder:
    def __init__(self, seed: int, dims: int) -> None:
        self._key = f"flotilla-simulator seed={seed}".encode()[:64]
        self.dims = dims

    def vector(self, text: str, *, normalize: bool = True) -> np.ndarray:
        digest = hashlib.blake2b(text.encode(), digest_size=16, key=self._key).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        vector = rng.standard_normal(self.dims, dtype=np.float32)
        vector /= np.linalg.norm(vector)
        if not normalize:
            # A raw model output has some norm of its own; pick a stable one per text.
            vector *= np.float32(1.0 + 9.0 * digest[8] / 255.0)
        return vector


def to_base64(vector: np.ndarray) -> str:
    """The OpenAI `encoding_format: "base64"` form: little-endian float32 bytes, base64."""
    return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
