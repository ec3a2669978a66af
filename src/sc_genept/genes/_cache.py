"""Content-addressed on-disk cache for paid results (embeddings, LLM answers).

Every entry is one file named by the SHA-256 of what produced it (model, dimensions, text)
and holds the payload followed by the SHA-256 of the payload, so a truncated or corrupted
file is detected on read, dropped and recomputed. Writes go to a temporary file that is
renamed into place: a crash never leaves a half-written entry. Nothing secret is part of a
key or a payload.

:class:`JobRecords` keeps what was submitted to a paid service that answers later (Batch
API jobs): one JSON record per job, written durably before anything waits on the job.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from scanpy import logging as logg

from sc_genept._utils import atomic_path, write_atomic

_DIGEST = 32


def default_cache_dir() -> Path:
    """``$SC_GENEPT_CACHE`` or ``~/.cache/sc_genept``."""
    return Path(os.environ.get("SC_GENEPT_CACHE", Path.home() / ".cache" / "sc_genept"))


def cache_key(*parts: str | int | None) -> str:
    """A stable key from the parts that determine a result."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_folder(path: Path) -> Path:
    """``path``, created as a folder; a file (or a file above it) in its way is named."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        in_the_way = next(
            (p for p in (path, *path.parents) if os.path.lexists(p) and not p.is_dir()), path
        )
        raise NotADirectoryError(
            f"The cache folder {path} cannot be made: {in_the_way} is a file. Pass another "
            "cache_dir (or set $SC_GENEPT_CACHE), or move the file away."
        ) from None
    return path


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
        self.path = cache_folder(Path(root or default_cache_dir()) / namespace)
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
        except IsADirectoryError:
            raise IsADirectoryError(
                f"The cache entry {file} is a folder, not a file: something other than "
                "sc_genept wrote into the cache. Move it away (or pass another cache_dir)."
            ) from None
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


class JobRecords:
    """Records of submitted jobs in ``folder``: ``{key}.json`` each, written durably.

    A record is written (atomically, and flushed to disk) before the job it names is waited
    on, so a run killed at any moment leaves either no record or a whole one. Records hold
    ids and hashes, never credentials.
    """

    def __init__(self, folder: str | Path):
        self.path = cache_folder(Path(folder))

    def file(self, key: str) -> Path:
        """The file of the record ``key``."""
        return self.path / f"{key}.json"

    def put(self, key: str, record: dict) -> None:
        """Write ``record`` under ``key``, replacing any earlier one, durably."""
        file = self.file(key)
        with atomic_path(file) as tmp, open(tmp, "wb") as out:
            out.write(json.dumps(record).encode())
            out.flush()
            os.fsync(out.fileno())
        _fsync_folder(self.path)  # the rename itself survives a power cut

    def remove(self, key: str) -> None:
        """Forget the record ``key`` (its job is over)."""
        self.file(key).unlink(missing_ok=True)

    def items(self) -> list[tuple[str, dict]]:
        """``(key, record)`` of each readable record, by file name; unreadable ones are warned of."""
        found = []
        for file in sorted(self.path.glob("*.json")):
            try:
                record = json.loads(file.read_text())
            except (OSError, ValueError):
                record = None
            if not isinstance(record, dict):
                logg.warning(
                    f"the job record {file} is not a JSON object and is ignored; it may name "
                    "a job already paid for: read it, then delete it"
                )
                continue
            found.append((file.stem, record))
        return found


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open folders; its renames are durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
