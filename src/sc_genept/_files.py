"""Files read and written safely: one helper per kind of fault, shared by every entry point.

- Outputs (:func:`check_output`, used by :func:`sc_genept._utils.atomic_path`): the path is
  checked before any work (not a folder, its folder writable, not a read-only file), the
  file is written under a temporary name and appears complete or not at all, with the mode
  the umask gives (:func:`umask`). A signal whose handler raises (Ctrl-C) is never lost on
  the way (:func:`deferred_signals`): h5py swallows exceptions raised inside its weakref
  callbacks, so an interrupt during ``write_h5ad`` would otherwise let the write finish.
- Reads (:func:`read_limited`, :func:`parse_json`): a size cap before the bytes are read, a
  symbolic link or a special file (a FIFO would block) refused where asked, and JSON nested
  too deeply refused with the file's name (Python's parser raises ``RecursionError``).
- Downloads (:func:`download`): a byte cap and an overall time limit, not only a socket
  timeout, so a server that never stops (or trickles) cannot hold a process.
- Archives (:func:`unpack_archive`): plain files and folders only, inside the target, each
  once (no duplicate, no name both a file and a folder, none differing only in case), their
  total size capped before anything is written; a damaged archive (a bad CRC, a truncated
  stream or tar header) is the caller's error naming it, never a library's.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import threading
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Nesting JSON files sc_genept reads may have (a model's metadata needs fewer than 10).
MAX_JSON_DEPTH = 64
_UMASK_LOCK = threading.Lock()


class UnwritableOutputError(PermissionError):
    """An output cannot be written where asked: its folder is not writable, or it is read-only."""


class OutputIsAFolderError(IsADirectoryError):
    """An output path names a folder where a file is to be written."""


class DownloadError(OSError):
    """A download exceeded its byte cap or its time limit."""


# ---- outputs ---------------------------------------------------------------------------------


def umask() -> int:
    """The process umask, read without changing it where the system allows it (Linux).

    Elsewhere it is set and put back at once under a lock; :func:`os.umask` is the only
    portable way to read it.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)  # the strictest mask, for the instant it is in place
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode of a new file, as :func:`open` would create it: ``0o666`` less the umask."""
    return 0o666 & ~umask()


def folder_mode() -> int:
    """The mode of a new folder, as :func:`os.mkdir` would create it: ``0o777`` less the umask."""
    return 0o777 & ~umask()


def check_output(path: str | os.PathLike, what: str = "") -> Path:
    """``path`` as a :class:`~pathlib.Path`, once it is sure it can be written (before any work).

    Refused, with the path named: a folder; a path under a file; a path whose nearest
    existing folder is not writable; an existing file that is read-only (as ``cp`` does, it
    is not replaced: make it writable first). ``what`` (an option's name) starts the messages.
    """
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    if path.is_dir():
        raise OutputIsAFolderError(
            f"{label} is a folder: pass the path of the file to write, not a folder."
        )
    folder = path.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(
            f"{folder} is a file, not a folder: {label} cannot be written under it."
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UnwritableOutputError(
            f"{folder} is not writable: {label} cannot be written there. Choose another "
            "folder, or make it writable."
        )
    if path.exists() and (
        not os.access(path, os.W_OK) or not stat.S_IMODE(path.stat().st_mode) & 0o222
    ):
        raise UnwritableOutputError(
            f"{label} is read-only: it is not replaced. Make it writable (chmod u+w) to "
            "replace it, or choose another path."
        )
    return path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are one file: however spelled, or linked (hard or symbolic)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist: the same only if they resolve to the same path
        return Path(a).resolve() == Path(b).resolve()


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Re-raise, at the end of the block, a SIGINT or SIGTERM whose exception was swallowed.

    Only signals whose handler is a Python function (Ctrl-C's ``KeyboardInterrupt``, a
    command's SIGTERM handler) are watched; the handler runs as before, once, and if the
    exception it raised is swallowed (the block still ends normally) that exception is
    raised again. A handler that raises nothing is not run a second time. Handlers can be
    set in the main thread only: elsewhere the block runs as it is.
    """
    caught: list[BaseException] = []
    installed = {}
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(number)
            if callable(handler):

                def remember(signum, frame, handler=handler):
                    try:
                        handler(signum, frame)
                    except BaseException as raised:
                        caught.append(raised)
                        raise

                installed[number] = handler
                signal.signal(number, remember)
    try:
        yield
        if caught:
            raise caught[0]  # swallowed on its way up: raised here instead
    finally:
        if threading.current_thread() is threading.main_thread():
            for number, handler in installed.items():
                signal.signal(number, handler)


# ---- reads -----------------------------------------------------------------------------------


def size_text(n_bytes: int) -> str:
    """A size for a message: ``5.0 GiB``, ``1.0 MiB``, ``64.0 KiB`` or ``1000 bytes``."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= factor:
            return f"{n_bytes / factor:.1f} {unit}"
    return f"{n_bytes} bytes"


def read_limited(
    path: str | os.PathLike,
    max_bytes: int,
    *,
    error: type[Exception] = OSError,
    follow_links: bool = True,
    hint: str = "",
) -> bytes:
    """The bytes of the plain file ``path``, refused (``error``) past ``max_bytes``.

    The size is checked before reading, and the read stops one byte past the cap (a file
    growing meanwhile). With ``follow_links=False`` a symbolic link is refused, also one
    swapped in after the check (``O_NOFOLLOW``). A FIFO or device is refused without
    blocking on it (``O_NONBLOCK``). ``hint`` ends each message (what to do).
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    link = f"{path} is a symbolic link; it is refused wherever it points.{hint}"
    if not follow_links:
        if path.is_symlink():
            raise error(link)
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP and not follow_links:
            raise error(link) from None
        raise
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path} is not a plain file.{hint}")
        too_large = f"{path} is larger than {size_text(max_bytes)}: refused before reading it."
        if info.st_size > max_bytes:
            raise error(too_large + hint)
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(too_large + hint)
    return data


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of the file ``path``, read in blocks (an archive may be large)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_json(
    data: bytes | str,
    where: str,
    *,
    error: type[Exception] = ValueError,
    max_depth: int = MAX_JSON_DEPTH,
):
    """``json.loads(data)``, with ``error`` naming ``where`` for anything it cannot be.

    Invalid JSON, a number too long to convert, and nesting deeper than ``max_depth``
    (which would otherwise raise ``RecursionError``, here or in the code that walks it).
    """
    nested = f"{where} is nested more than {max_depth} levels deep, more than any file sc_genept writes: refused."
    try:
        value = json.loads(data)
    except RecursionError:
        raise error(nested) from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise error(f"{where} is not valid JSON ({err}).") from err
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise error(nested)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return value


# ---- downloads -------------------------------------------------------------------------------


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    max_bytes: int,
    timeout_s: float,
    limit: str | None = None,
    progress: bool = False,
) -> None:
    """Download ``url`` to ``dest``: at most ``max_bytes``, in at most ``timeout_s`` seconds.

    Raises :class:`DownloadError` when the server announces or sends more (``limit`` says
    what the cap is, for the message) or takes longer; ``dest`` may then hold a part of it,
    which the caller deletes. Each read waits at most 30 s, and the overall limit is checked
    after each one, so a server that trickles cannot hold the process either.
    """
    import urllib.request

    limit = limit or size_text(max_bytes)
    deadline = time.monotonic() + timeout_s
    _check_scheme(url, url)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=_ssl_context()), _http_redirects()
    )
    request = urllib.request.Request(url, headers={"User-Agent": "sc-genept"})
    with (
        opener.open(request, timeout=min(30.0, timeout_s)) as response,
        open(dest, "wb") as out,
    ):
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > max_bytes:
            raise DownloadError(
                f"{url} announces {size_text(int(length))}, more than {limit}: refused "
                "before downloading it."
            )
        bar = _progress_bar(int(length) if length.isdigit() else None, progress)
        got = 0
        while chunk := response.read1(1 << 16):
            got += len(chunk)
            if got > max_bytes:
                raise DownloadError(f"{url} sent more than {limit}: refused.")
            if time.monotonic() > deadline:
                raise DownloadError(
                    f"{url} did not finish within {timeout_s:g} s (got {size_text(got)}): "
                    "stopped. Try again on a faster connection."
                )
            out.write(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()


def _check_scheme(url: str, asked: str) -> None:
    from urllib.parse import urlsplit

    if urlsplit(url).scheme not in ("http", "https"):
        where = "" if url == asked else f" (where {asked} redirects)"
        raise DownloadError(f"{url}{where} is not an http:// or https:// address: refused.")


def _http_redirects():
    """The redirect handler of urllib, refusing a redirect to anything but http(s)."""
    import urllib.request
    from urllib.parse import urljoin

    class HttpRedirects(urllib.request.HTTPRedirectHandler):
        def http_error_302(self, req, fp, code, msg, headers):
            location = headers.get("location") or headers.get("uri")
            if location:
                _check_scheme(urljoin(req.full_url, location), req.full_url)
            return super().http_error_302(req, fp, code, msg, headers)

        http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    return HttpRedirects


def _ssl_context():
    """The certificates of certifi where installed (as requests uses), else the system's."""
    import ssl

    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _progress_bar(total: int | None, show: bool):
    if not show:
        return None
    from sc_genept._utils import progress_bar

    return progress_bar(total=total, unit="B", unit_scale=True, leave=False)


# ---- archives --------------------------------------------------------------------------------


def unpack_archive(archive: Path, root: Path, *, error: type[Exception], max_bytes: int) -> None:
    """Unpack the ``.zip``, ``.tar.gz`` or ``.tgz`` ``archive`` into the folder ``root``.

    Every member is checked before anything is written (see the module's docstring); a
    refused or damaged archive raises ``error`` naming it, and may leave part of ``root``
    written: unpack into a temporary folder.
    """
    import gzip
    import tarfile
    import zipfile
    import zlib

    name = archive.name.lower()
    unpack = _unzip if name.endswith(".zip") else _untar
    if not name.endswith((".zip", ".tar.gz", ".tgz")):
        raise error(f"{archive.name} is not a .zip, .tar.gz or .tgz archive.")
    try:
        unpack(archive, root, error, max_bytes)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        tarfile.TarError,
        gzip.BadGzipFile,
        EOFError,
        zlib.error,
        NotImplementedError,  # a compression method zipfile does not know
    ) as err:
        raise error(
            f"{archive.name} is damaged ({type(err).__name__}: {err}): nothing was unpacked. "
            "Download it again, or report it if it persists."
        ) from err


def _member_path(root: Path, name: str, archive: Path, error) -> tuple[Path, tuple[str, ...]]:
    """Where member ``name`` goes under ``root``, and its parts; leaving ``root`` is refused."""
    posix = name.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    if (
        not posix
        or posix.startswith("/")
        or ":" in posix  # a drive ("D:") anywhere, or a Windows alternate data stream
        or ".." in parts
        or "\x00" in posix
    ):
        raise error(
            f"{archive.name} holds a member named {name!r}, outside the model folder "
            "(absolute, or with '..'): the archive is refused and nothing was unpacked."
        )
    parts = tuple(p for p in parts if p not in ("", "."))
    return root.joinpath(*parts), parts


def _refuse(archive: Path, name: str, kind: str, error):
    raise error(
        f"{archive.name} holds {kind} {name!r}; a model archive holds plain files and folders "
        "only, so it is refused and nothing was unpacked."
    )


def _check_members(archive: Path, members: list[tuple[str, tuple, bool]], error) -> None:
    """Each member once: no duplicate, no name both a file and a folder, none only in case."""
    files, folders, spellings = {}, set(), {}
    for name, parts, is_dir in members:
        if is_dir:
            folders.add(parts)
            continue
        if parts in files:
            raise error(
                f"{archive.name} holds {name!r} twice: one copy would replace the other, so "
                "it is refused and nothing was unpacked."
            )
        files[parts] = name
        folders.update(parts[:i] for i in range(1, len(parts)))
    for parts, name in files.items():
        if parts in folders:
            raise error(
                f"{archive.name} holds {name!r} as both a file and a folder: it is refused "
                "and nothing was unpacked."
            )
    for parts in [*files, *folders]:
        other = spellings.setdefault(tuple(p.casefold() for p in parts), parts)
        if other != parts:
            raise error(
                f"{archive.name} holds {'/'.join(other)!r} and {'/'.join(parts)!r}, which "
                "differ only in case (one replaces the other on macOS and Windows): it is "
                "refused and nothing was unpacked."
            )


def _check_size(archive: Path, total: int, max_bytes: int, error) -> None:
    if total > max_bytes:
        raise error(
            f"{archive.name} would unpack to {size_text(total)}, more than a model folder "
            f"can be ({size_text(max_bytes)}): refused."
        )


def _unzip(archive: Path, root: Path, error, max_bytes: int) -> None:
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        plan = []
        for info in members:
            path, parts = _member_path(root, info.filename, archive, error)
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no type recorded, a file
            if kind == stat.S_IFLNK:
                _refuse(archive, info.filename, "a link", error)
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                _refuse(archive, info.filename, "a special file", error)
            plan.append((info, path, parts))
        _check_members(archive, [(i.filename, p, i.is_dir()) for i, _, p in plan], error)
        _check_size(archive, sum(info.file_size for info in members), max_bytes, error)
        # a bad CRC raises at the end of its member
        _write_members((i.is_dir(), path, lambda i=i: zf.open(i)) for i, path, _ in plan)


def _untar(archive: Path, root: Path, error, max_bytes: int) -> None:
    import tarfile

    with tarfile.open(archive, "r:*") as tf:
        members, total = [], 0
        for member in tf:  # a compressed stream is decompressed to reach the next header:
            total += member.size  # stop once the sizes pass the cap, not at the end
            _check_size(archive, total, max_bytes, error)
            members.append(member)
        _check_tar_end(tf, archive, error)
        plan = []
        for member in members:
            path, parts = _member_path(root, member.name, archive, error)
            if member.issym() or member.islnk():
                _refuse(archive, member.name, "a link", error)
            if not (member.isfile() or member.isdir()):
                _refuse(archive, member.name, "a special file", error)
            plan.append((member, path, parts))
        _check_members(archive, [(m.name, p, m.isdir()) for m, _, p in plan], error)
        _write_members((m.isdir(), path, lambda m=m: tf.extractfile(m)) for m, path, _ in plan)


def _write_members(members) -> None:
    """Write checked members, each ``(is_dir, path, open_member)``, creating each file anew."""
    import shutil

    for is_dir, path, open_member in members:
        if is_dir:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with open_member() as src, open(path, "xb") as dst:
            shutil.copyfileobj(src, dst)


def _check_tar_end(tf, archive: Path, error) -> None:
    """Only zeros (the end-of-archive blocks) may follow the last member.

    tarfile stops quietly at a header it cannot read unless it is the first, so a
    truncated or damaged archive would otherwise unpack as a shorter one.
    """
    tf.fileobj.seek(tf.offset)
    rest = tf.fileobj.read(1 << 20)
    if rest.count(0) != len(rest) or tf.fileobj.read(1):
        raise error(
            f"{archive.name} is damaged (an unreadable tar header at byte {tf.offset}, "
            "where only the end of the archive may be): nothing was unpacked. Download it "
            "again, or report it if it persists."
        )
