"""Content-addressed on-disk cache for paid results (embeddings, LLM answers).

Every entry is one file named by the SHA-256 of what produced it (model, dimensions, text)
and holds the payload followed by the SHA-256 of the payload, so a truncated or corrupted
file is detected on read, dropped and recomputed. Writes go to a temporary file that is
renamed into place: a crash never leaves a half-written entry. Nothing secret is part of a
key or a payload.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from sc_genept._utils import write_atomic

_DIGEST = 32


def default_cache_dir() -> Path:
    """``$SC_GENEPT_CACHE`` or ``~/.cache/sc_genept``."""
    return Path(os.environ.get("SC_GENEPT_CACHE", Path.home() / ".cache" / "sc_genept"))


def cache_key(*parts: str | int | None) -> str:
    """A stable key from the parts that determine a result."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()


class Cache:
    """A folder of checksummed entries under ``root/namespace``.

    Parameters
    ----------
    root
        Cache folder; default ``$SC_GENEPT_CACHE`` or ``~/.cache/sc_genept``.
    namespace
        Sub-folder (``"embeddings"``, ``"chat"``).
    """

    def __init__(self, root: str | Path | None = None, namespace: str = "embeddings"):
        self.path = Path(root or default_cache_dir()) / namespace
        self.path.mkdir(parents=True, exist_ok=True)
        self.n_corrupt = 0

    def _file(self, key: str) -> Path:
        return self.path / key[:2] / key

    def get_bytes(self, key: str) -> bytes | None:
        """The payload stored under ``key``, or ``None`` (absent, or corrupt and removed)."""
        file = self._file(key)
        try:
            blob = file.read_bytes()
        except FileNotFoundError:
            return None
        payload, digest = blob[:-_DIGEST], blob[-_DIGEST:]
        if len(blob) < _DIGEST or hashlib.sha256(payload).digest() != digest:
            self.n_corrupt += 1
            file.unlink(missing_ok=True)
            return None
        return payload

    def put_bytes(self, key: str, payload: bytes) -> None:
        """Store ``payload`` atomically."""
        write_atomic(self._file(key), payload + hashlib.sha256(payload).digest())

    def get_vector(self, key: str) -> np.ndarray | None:
        """A float32 vector, or ``None``."""
        payload = self.get_bytes(key)
        return None if payload is None else np.frombuffer(payload, dtype=np.float32).copy()

    def put_vector(self, key: str, vector) -> None:
        """Store a vector as float32."""
        self.put_bytes(key, np.asarray(vector, dtype=np.float32).tobytes())

    def get_text(self, key: str) -> str | None:
        """A string, or ``None``."""
        payload = self.get_bytes(key)
        return None if payload is None else payload.decode()

    def put_text(self, key: str, text: str) -> None:
        """Store a string."""
        self.put_bytes(key, text.encode())
