"""A saved model is a folder of data: weights that cannot carry code, JSON, and their hashes.

Models travel between labs and are downloaded from the internet, so loading one must never
run code, read another file or reach the network:

- ``model.safetensors``: the weights, in a format that holds tensors and nothing else;
- ``model.json``: everything else, including the part of the Cell Ontology the model uses
  (names and ``is_a`` parents), so that nothing in the folder names another location;
- ``manifest.json``: the format and the sha256 of both files. A file that changed after
  saving (a damaged download, an edit) is refused before it is parsed.

The bytes that are hashed are the bytes that are parsed: each file is read once, as a
plain file of the folder (a symbolic link is refused wherever it points), its size capped
before it is read, and JSON nested deeper than any model's is refused.

A folder is written whole or not at all: built under a temporary name beside the target,
then renamed into place (a rename is atomic), so two processes saving into the same new
folder leave one model or the other, never one's weights beside the other's manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sc_genept._files import deferred_signals, folder_mode, parse_json, read_limited
from sc_genept._utils import write_atomic

if TYPE_CHECKING:
    import numpy as np
    import torch

FORMAT = "sc_genept model folder"
FORMAT_VERSION = 2
WEIGHTS, METADATA, MANIFEST = "model.safetensors", "model.json", "manifest.json"
#: What a model's ``setup_args["ontology"]`` says once saved: the CL subset in model.json.
OWN_ONTOLOGY = "model"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PATH = re.compile(r"^(/|~|\.{1,2}[/\\]|\\\\|[A-Za-z]:[/\\])|[/\\]\.\.[/\\]")
#: Sizes a file of a model folder may have; larger is refused before it is read.
MAX_BYTES = {MANIFEST: 64 * 1024, METADATA: 256 * 1024**2, WEIGHTS: 2 * 1024**3}


class ModelFolderError(ValueError):
    """A model folder is missing, damaged, edited or not self-contained."""


def write_folder(
    path: Path, state: dict[str, torch.Tensor], meta: dict, *, overwrite: bool
) -> None:
    """Write weights, metadata and the manifest that hashes them: the whole folder at once.

    The files are written into a temporary folder beside ``path``, which is then renamed
    to ``path``. A folder already at ``path`` (another process's, saved meanwhile) is
    swapped out whole with ``overwrite``, keeping the files in it that a model does not
    write, and refused (:class:`FileExistsError`) without.
    """
    from safetensors.torch import save

    check_self_contained(meta, where="the model to save")
    files = {
        WEIGHTS: save({k: v.detach().cpu().contiguous() for k, v in state.items()}),
        METADATA: json.dumps(meta, indent=1).encode(),
    }
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sha256": {name: _sha256(data) for name, data in files.items()},
    }
    files[MANIFEST] = json.dumps(manifest, indent=1).encode()
    path = Path(os.path.abspath(path))  # "." has no name to build a sibling from
    if path.is_symlink():
        raise ModelFolderError(
            f"{path} is a symbolic link: save the model into the folder it points to."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if _holds_working_folder(path):  # renaming it away would pull the process's cwd away
        _write_in_place(path, files)
        return
    try:
        build = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    except PermissionError:  # the folder may be writable where its parent is not
        _write_in_place(path, files)
        return
    try:
        for name, data in files.items():
            (build / name).write_bytes(data)  # a new file: the umask applies
        build.chmod(folder_mode())  # mkdtemp makes it private
        with deferred_signals():  # an interrupt is not lost between the renames
            _move_into_place(build, path, overwrite)
    except _CannotSwap:  # a mount point, or a folder in use: the files one by one
        _write_in_place(path, files)
    finally:
        shutil.rmtree(build, ignore_errors=True)


class _CannotSwap(Exception):
    """The folder at the target cannot be renamed away (a mount point, in use)."""


def _holds_working_folder(path: Path) -> bool:
    cwd = Path(os.getcwd())
    return cwd == path or path in cwd.parents


def _write_in_place(path: Path, files: dict[str, bytes]) -> None:
    """Write the files into ``path`` one by one, each atomically, the manifest last.

    For a folder that cannot be swapped whole: until the manifest is replaced, the folder
    does not load (its hashes disagree), so it is never taken for a whole model.
    """
    path.mkdir(exist_ok=True)
    for name in (WEIGHTS, METADATA, MANIFEST):
        write_atomic(path / name, files[name])


def _move_into_place(build: Path, path: Path, overwrite: bool) -> None:
    """Rename the finished folder ``build`` to ``path``, swapping out a folder found there.

    Each step is one rename, so ``path`` is at every moment absent or one whole model. A
    folder swapped out is deleted once the files the user keeps beside a model (notes, a
    model card) are moved into the new one.
    """
    swapped = []
    try:
        for _ in range(5):  # another process may fill ``path`` again between two renames
            try:
                os.rename(build, path)  # atomic; replaces an empty folder on POSIX
                break
            except OSError:
                if not path.is_dir():
                    raise
            if not any(path.iterdir()):  # an empty folder the user made (Windows will not rename)
                path.rmdir()
            elif not overwrite:
                raise FileExistsError(
                    f"{path} was filled while this model was saved (another process saving "
                    "there?); it is kept as it is. Pass overwrite=True to replace it."
                )
            else:
                swapped.append(path.with_name(f".{path.name}.{secrets.token_hex(4)}.old"))
                try:
                    os.rename(path, swapped[-1])
                except OSError as err:
                    swapped.pop()
                    raise _CannotSwap from err
        else:
            raise FileExistsError(f"{path} kept being replaced by another process: not saved.")
    except BaseException:
        if swapped and not os.path.lexists(path):
            os.rename(swapped.pop(), path)  # put the previous model back
        raise
    for old in swapped:
        for kept in old.iterdir():
            if kept.name not in (WEIGHTS, METADATA, MANIFEST) and not (path / kept.name).exists():
                os.rename(kept, path / kept.name)
        shutil.rmtree(old, ignore_errors=True)


def read_folder(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and the weights (NumPy arrays) of a model folder, checked against the manifest."""
    if not path.is_dir():
        raise ModelFolderError(
            f"{path} is not a folder: pass the folder that GenePTClassifier.save wrote."
        )
    manifest = _json(path, MANIFEST, _read(path, MANIFEST))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFolderError(f"{path / MANIFEST} is not the manifest of an sc_genept model.")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelFolderError(
            f"{path} holds model format {manifest.get('format_version')!r}; this sc_genept "
            f"reads format {FORMAT_VERSION}. Install the sc_genept that saved it, or train again."
        )
    hashes = manifest.get("sha256")
    if not isinstance(hashes, dict) or set(hashes) != {WEIGHTS, METADATA}:
        raise ModelFolderError(
            f"{path / MANIFEST} must list the hashes of {WEIGHTS} and {METADATA}."
        )
    files = {name: _read(path, name) for name in (METADATA, WEIGHTS)}
    changed = [name for name, data in files.items() if _sha256(data) != hashes[name]]
    if changed:
        raise ModelFolderError(
            f"{', '.join(changed)} in {path} changed after the model was saved (its sha256 is "
            "not the manifest's): the download is damaged or the file was edited. Fetch or "
            "save the model again."
        )
    meta = _json(path, METADATA, files[METADATA])
    if not isinstance(meta, dict):
        raise ModelFolderError(f"{path / METADATA} must hold a JSON object.")
    check_self_contained(meta, where=str(path / METADATA))
    return meta, _weights(path, files[WEIGHTS])


def check_self_contained(meta: dict, *, where: str) -> None:
    """Refuse metadata that would make a loader look anywhere but the folder itself."""
    ontology = meta.get("ontology")
    if not isinstance(ontology, dict) or not isinstance(ontology.get("terms"), dict):
        raise ModelFolderError(
            f"{where} does not carry its Cell Ontology terms; a model folder must hold "
            "everything it needs to predict."
        )
    setup = meta.get("registry", {}).get("setup_args", {})
    if setup.get("ontology") != OWN_ONTOLOGY:
        raise ModelFolderError(
            f"{where} names an ontology source ({setup.get('ontology')!r}) where a model "
            f"folder says {OWN_ONTOLOGY!r}: a model never reads files or URLs besides its own."
        )
    for field in ("registry", "init_params"):
        for key, value in _strings(meta.get(field, {}), field):
            if _URL.match(value) or _PATH.search(value):
                raise ModelFolderError(
                    f"{where} names a location in {key} ({value!r}); a model folder must be "
                    "self-contained and is refused."
                )


def _weights(path: Path, data: bytes) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        state = load(data)
    except SafetensorError as err:
        raise ModelFolderError(
            f"{path / WEIGHTS} is not a readable safetensors file: {err}."
        ) from err
    except (KeyError, TypeError) as err:  # a dtype NumPy lacks: bfloat16, float8
        raise ModelFolderError(
            f"{path / WEIGHTS} holds weights of type {err}, which sc_genept does not read: "
            "GenePTClassifier.save writes float32; convert the weights to float32 and save again."
        ) from None
    return state


def _read(path: Path, name: str) -> bytes:
    file = path / name
    if not os.path.lexists(file):
        present = sorted(p.name for p in path.iterdir())
        hint = (
            " It looks like a model saved by an earlier sc_genept (pickled model.pt); train "
            "it again and save it with this version."
            if "model.pt" in present
            else ""
        )
        raise ModelFolderError(
            f"{path} has no {name} (it holds {present}): not a complete model folder.{hint}"
        )
    hint = (
        " A model folder holds its own plain files, of a model's size: save or fetch it "
        "again (a Hugging Face snapshot: download it with local_dir=, which writes files)."
    )
    if not file.is_symlink() and file.resolve().parent != path.resolve():
        raise ModelFolderError(f"{file} is outside the folder {path}.{hint}")
    return read_limited(
        file, MAX_BYTES[name], error=ModelFolderError, follow_links=False, hint=hint
    )


def _json(path: Path, name: str, data: bytes):
    return parse_json(data, str(path / name), error=ModelFolderError)


def _strings(value, key: str):
    """``(where, string)`` for every string in nested dicts and lists."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{key}[{k!r}]")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{key}[{i}]")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
