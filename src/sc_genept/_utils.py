"""Small helpers shared across the package."""

from __future__ import annotations

import inspect
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sc_genept._files import UnwritableOutputError, check_output, deferred_signals, file_mode

if TYPE_CHECKING:
    from collections.abc import Iterator

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def h5ad_safe(value):
    """Drop ``None`` entries from nested dicts, so ``adata.write_h5ad`` can store them in ``uns``."""
    if isinstance(value, dict):
        return {k: h5ad_safe(v) for k, v in value.items() if v is not None}
    return value


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it only when the block succeeds.

    Write to the yielded path. ``path`` is checked first, before the block runs (see
    :func:`sc_genept._files.check_output`): a folder, an unwritable folder and a read-only
    file are refused with the path named (a read-only file is never replaced, as ``cp``
    would not). A crash, an exception or an interrupt leaves ``path`` as it was and no
    temporary file behind; the interrupt still reaches the caller, even when a library
    swallowed it during the block (h5py does). The file gets the mode the umask gives a
    new file (``mkstemp`` makes it private), and the temporary file is in the same folder,
    so the final :func:`os.replace` is atomic.
    """
    path = check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise UnwritableOutputError(
            f"{path} cannot be written ({err.strerror} in {path.parent})."
        ) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        with deferred_signals():
            yield tmp
        # a new file follows the umask; a replaced one keeps its mode (a private file stays so)
        tmp.chmod(path.stat().st_mode & 0o777 if path.exists() else file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (text is UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def progress_bar(*args, **kwargs):
    """A tqdm bar: a notebook widget where Jupyter can draw one, else text.

    ``tqdm.auto`` picks the widget in any notebook and, without ipywidgets installed there,
    warns ("IProgress not found") on every bar; the text bar needs nothing.
    """
    from importlib.util import find_spec

    if find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(*args, **kwargs)


def warn_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """:func:`warnings.warn` pointing at the user's line: the first frame outside sc_genept.

    A fixed ``stacklevel`` is right for one call path only; the same check runs under
    ``genept_embed`` and ``genept_annotate`` at different depths.
    """
    frame, level = inspect.currentframe().f_back, 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
