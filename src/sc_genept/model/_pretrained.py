"""Pretrained models by name: one bundled with the package, others fetched safely.

A pretrained model is a model folder (see :mod:`sc_genept.model._folder`) with a registry
entry that describes it: what it was trained on, its label set (CL terms), its gene table
and its measured accuracy. The bundled entries live in ``data/models/registry.json`` (written
by ``scripts/build_pretrained.py``) beside their folders; others are added with
:func:`register_pretrained`.

A remote model is an archive (``.zip``, ``.tar.gz`` or ``.tgz``) of its folder, known by
URL and sha256. It is downloaded with pooch (hash-checked; kept in the cache folder, so it is
fetched once), or, as a second source, from the Hugging Face hub (``huggingface_hub``, an
optional dependency). The archive is unpacked member by member, refusing absolute paths,
``..``, links and anything else that is not a plain file or folder, and the folder is then
read only by :meth:`GenePTClassifier.load`, which checks its own sha256 manifest and never
runs code.
"""

from __future__ import annotations

import logging
import os
import re
import reprlib
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pandas as pd
from scanpy import logging as logg

from sc_genept._files import (
    DownloadError,
    download,
    folder_mode,
    parse_json,
    read_limited,
    sha256_file,
    unpack_archive,
)

#: Environment variable naming the cache folder of downloaded models.
CACHE_ENV = "SC_GENEPT_CACHE"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Longest model name: it names files and folders in the cache (255 bytes at most).
MAX_NAME = 100
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HF_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_ARCHIVES = (".zip", ".tar.gz", ".tgz")
#: Unpacked size a model archive may not exceed (a model is a few MB; this stops a zip bomb).
MAX_UNPACKED_BYTES = 2 * 1024**3
#: Largest download of an archive whose registry entry declares no ``size``.
MAX_DOWNLOAD_BYTES = 1024**3
#: Seconds a download may take in all, however slowly the server sends it.
DOWNLOAD_TIMEOUT_S = 600.0
#: Largest registry file read.
MAX_REGISTRY_BYTES = 16 * 1024**2


class PretrainedModelError(ValueError):
    """A pretrained model could not be fetched, checked or unpacked."""


@dataclass(frozen=True)
class PretrainedModel:
    """A registry entry: where a pretrained model is and what it is.

    ``folder`` (inside the package) for a bundled model; ``url`` and/or ``hf_repo`` +
    ``hf_filename``, with ``sha256`` of the archive (and its ``size`` in bytes, which
    caps the download), for a remote one. An entry that could not work (a field of the
    wrong type, a URL that is not http(s)) is refused when it is made.
    """

    name: str
    description: str = ""
    training_data: str = ""
    n_cells: int | None = None
    labels: tuple[str, ...] = ()
    label_names: tuple[str, ...] = ()
    gene_table: str = ""
    inputs: tuple[str, ...] = ()
    accuracy: float | None = None
    macro_f1: float | None = None
    evaluation: str = ""
    hyperparameters: dict = field(default_factory=dict)
    folder: str | None = None
    manifest_sha256: str | None = None
    url: str | None = None
    sha256: str | None = None
    hf_repo: str | None = None
    hf_filename: str | None = None
    hf_revision: str | None = None
    size: int | None = None

    def __post_init__(self):
        _check_card(self)
        _check_source(self)

    @property
    def source(self) -> str:
        """Where the model comes from (``bundled``, the URL, or the hub file)."""
        if self.folder is not None:
            return "bundled"
        hub = f"hf://{self.hf_repo}/{self.hf_filename}" if self.hf_repo else None
        return " or ".join(s for s in (self.url, hub) if s)


_USER: dict[str, PretrainedModel] = {}


def _models_dir() -> Path:
    return Path(str(files("sc_genept") / "data" / "models"))


def _bundled() -> dict[str, PretrainedModel]:
    path = _models_dir() / "registry.json"
    if not path.is_file():
        return {}
    hint = " Reinstall sc-genept."
    data = read_limited(path, MAX_REGISTRY_BYTES, error=PretrainedModelError, hint=hint)
    entries = parse_json(data, str(path), error=PretrainedModelError)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise PretrainedModelError(f"{path} must hold a list of registry entries.{hint}")
    out = {}
    for entry in entries:
        try:
            out[entry.get("name")] = PretrainedModel(**entry)
        except (TypeError, ValueError) as err:
            raise PretrainedModelError(
                f"{path} holds an entry that cannot work: {err}{hint}"
            ) from err
    return out


def _check_name(name) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"name must be letters, digits, '.', '_' or '-' (starting with a letter or digit), "
            f"got {reprlib.repr(name)}."
        )
    if len(name) > MAX_NAME:
        raise ValueError(
            f"name must be at most {MAX_NAME} characters (it names files in the cache), got "
            f"{len(name)}."
        )


def _check_card(model: PretrainedModel) -> None:
    """Refuse card fields of the wrong type: one bad entry would break available_models()."""
    _check_name(model.name)
    for key in ("description", "training_data", "gene_table", "evaluation"):
        if not isinstance(getattr(model, key), str):
            raise TypeError(f"{key} must be a string, got {reprlib.repr(getattr(model, key))}.")
    for key, what in (
        ("labels", "Cell Ontology ids (strings such as 'CL:0000084')"),
        ("label_names", "strings"),
        ("inputs", "strings"),
    ):
        value = getattr(model, key)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise TypeError(f"{key} must be a list of {what}, got {reprlib.repr(value)}.")
        object.__setattr__(model, key, tuple(value))  # frozen: set once, here
    if model.labels and model.label_names and len(model.labels) != len(model.label_names):
        raise ValueError("labels and label_names must be as long as each other.")
    for key, low, high, whole in (
        ("n_cells", 0, None, True),
        ("size", 1, None, True),
        ("accuracy", 0, 1, False),
        ("macro_f1", 0, 1, False),
    ):
        value = getattr(model, key)
        number = isinstance(value, int) if whole else isinstance(value, int | float)
        if value is None:
            continue
        if isinstance(value, bool) or not number or value < low or (high and value > high):
            what = f"a whole number ≥ {low}" if whole else f"a number in [{low}, {high}]"
            raise ValueError(f"{key} must be {what} or None, got {reprlib.repr(value)}.")
    if not isinstance(model.hyperparameters, dict):
        raise TypeError(
            f"hyperparameters must be a dict, got {type(model.hyperparameters).__name__}."
        )


def _check_source(model: PretrainedModel) -> None:
    """Refuse a source that cannot work: a URL that is not http(s), a hub path with '..'."""
    for key in ("sha256", "manifest_sha256"):
        value = getattr(model, key)
        if value is not None and not (isinstance(value, str) and _SHA256.match(value)):
            raise ValueError(f"{key} must be 64 lower-case hexadecimal digits, got {value!r}.")
    if model.folder is not None and not (
        isinstance(model.folder, str) and _NAME.match(model.folder)
    ):
        raise ValueError(
            f"folder must be the name of a bundled model's folder, got {model.folder!r}."
        )
    url = model.url
    if url is not None and (
        not isinstance(url, str)
        or urlsplit(url).scheme not in ("http", "https")
        or not urlsplit(url).hostname
    ):
        raise ValueError(
            f"url must be an http:// or https:// address of the archive, got {reprlib.repr(url)}."
        )
    if model.hf_repo is not None and not (
        isinstance(model.hf_repo, str)
        and _HF_REPO.match(model.hf_repo)
        and ".." not in model.hf_repo
    ):
        raise ValueError(
            f"hf_repo must be 'owner/name' on the Hugging Face hub, got {model.hf_repo!r}."
        )
    name = model.hf_filename
    if name is not None and (
        not isinstance(name, str) or name.startswith("/") or ".." in PurePosixPath(name).parts
    ):
        raise ValueError(f"hf_filename must be a path inside the hub repository, got {name!r}.")
    if model.hf_revision is not None and not isinstance(model.hf_revision, str):
        raise TypeError(f"hf_revision must be a string, got {model.hf_revision!r}.")


def _registry() -> dict[str, PretrainedModel]:
    return {**_bundled(), **_USER}


def names() -> list[str]:
    """The names of the pretrained models."""
    return sorted(_registry())


def is_pretrained(name) -> bool:
    """Whether ``name`` is the name of a pretrained model."""
    return isinstance(name, str) and name in _registry()


def entry(name: str) -> PretrainedModel:
    """The registry entry of ``name``; an unknown name raises a KeyError listing the names."""
    registry = _registry()
    if not isinstance(name, str) or name not in registry:
        raise KeyError(
            f"No pretrained model named {name!r}. Pretrained models: {sorted(registry)} "
            "(sc_genept.model.available_models() describes them); a model you saved is "
            "loaded from its folder with GenePTClassifier.load(folder)."
        )
    return registry[name]


def available_models() -> pd.DataFrame:
    """The pretrained models: one row each, with what they were trained on and how well they do.

    Returns
    -------
    A frame indexed by ``name`` with ``description``, ``training_data``, ``n_cells``,
    ``labels`` (the CL ids it predicts), ``label_names``, ``gene_table`` (the gene table
    its inputs are embedded with), ``inputs``, ``accuracy`` and ``macro_f1`` (measured as
    ``evaluation`` says), ``source`` (``bundled``, or where it is downloaded from) and
    ``cached`` (whether it can be loaded without a download).

    Examples
    --------
    >>> sc_genept.model.available_models()[["training_data", "accuracy"]]
    >>> sc.tl.genept_annotate(adata, model="pbmc68k")
    """
    rows = []
    for _, model in sorted(_registry().items()):
        row = asdict(model)
        row.pop("hyperparameters")
        row["labels"], row["label_names"], row["inputs"] = (
            list(model.labels),
            list(model.label_names),
            list(model.inputs),
        )
        row["source"] = model.source
        row["cached"] = model.folder is not None or _unpacked(model).is_dir()
        rows.append(row)
    columns = (
        "name description training_data n_cells labels label_names gene_table inputs "
        "accuracy macro_f1 evaluation source cached"
    ).split()
    return pd.DataFrame(rows, columns=columns).set_index("name")


def register_pretrained(
    name: str,
    *,
    sha256: str,
    url: str | None = None,
    hf_repo: str | None = None,
    hf_filename: str | None = None,
    hf_revision: str | None = None,
    overwrite: bool = False,
    **card,
) -> PretrainedModel:
    """Add a remote pretrained model to the registry (for this Python session).

    Parameters
    ----------
    name
        The name to load it by (letters, digits, ``.``, ``_``, ``-``).
    sha256
        The sha256 of the archive: a download with another hash is refused.
    url
        Where the archive (``.zip``, ``.tar.gz`` or ``.tgz`` of a model folder) is.
    hf_repo, hf_filename, hf_revision
        The same archive on the Hugging Face hub (a model repository): tried when ``url``
        fails, or alone. Needs ``huggingface_hub``.
    overwrite
        Replace an entry of the same name.
    **card
        What :func:`available_models` shows: ``description``, ``training_data``,
        ``n_cells``, ``labels``, ``label_names``, ``gene_table``, ``inputs``,
        ``accuracy``, ``macro_f1``, ``evaluation``; and ``size``, the archive's size in
        bytes, which caps its download (without it: ``MAX_DOWNLOAD_BYTES``).

    Raises
    ------
    ValueError or TypeError
        For an entry that could not work, before it is added: a URL that is not http(s),
        a name longer than ``MAX_NAME``, a card field of the wrong type.
    """
    _check_name(name)
    if name in _registry() and not overwrite:
        raise ValueError(f"A pretrained model named {name!r} exists; pass overwrite=True.")
    if not isinstance(sha256, str) or not _SHA256.match(sha256.lower()):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}.")
    if url is None and hf_repo is None:
        raise ValueError("Pass url= and/or hf_repo= with hf_filename=: where the archive is.")
    if (hf_repo is None) != (hf_filename is None):
        raise ValueError("hf_repo= and hf_filename= go together.")
    archive = url if url is not None else hf_filename
    if not str(archive).lower().endswith(_ARCHIVES):
        raise ValueError(
            f"{archive!r} must be an archive of the model folder ending in one of {_ARCHIVES}."
        )
    known = {f.name for f in PretrainedModel.__dataclass_fields__.values()}
    unknown = set(card) - known
    if unknown:
        raise TypeError(f"Unknown registry fields {sorted(unknown)}; known: {sorted(known)}.")
    if "folder" in card or "manifest_sha256" in card:
        raise TypeError("Only bundled models have a folder; a registered model has a url.")
    model = PretrainedModel(
        name=name,
        url=url,
        sha256=sha256.lower(),
        hf_repo=hf_repo,
        hf_filename=hf_filename,
        hf_revision=hf_revision,
        **card,
    )
    _USER[name] = model
    return model


def unregister_pretrained(name: str) -> None:
    """Remove a model added with :func:`register_pretrained` (bundled ones stay)."""
    _USER.pop(name, None)


# ---- fetching --------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where downloaded models are kept: ``$SC_GENEPT_CACHE``, else pooch's user cache folder."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("sc_genept"))


def fetch(name: str) -> Path:
    """The folder of the pretrained model ``name``: bundled, cached, or downloaded now."""
    model = entry(name)
    if model.folder is not None:
        folder = _models_dir() / model.folder
        if not folder.is_dir():
            raise PretrainedModelError(
                f"The bundled model {name!r} is missing from the installed package ({folder}): "
                "reinstall sc-genept."
            )
        if model.manifest_sha256 and sha256_file(folder / "manifest.json") != (
            model.manifest_sha256
        ):
            raise PretrainedModelError(
                f"The bundled model {name!r} in {folder} is not the one the registry lists "
                "(its manifest's sha256 differs): reinstall sc-genept."
            )
        return folder
    target = _unpacked(model)
    if os.path.lexists(target) and (target.is_symlink() or not target.is_dir()):
        raise PretrainedModelError(
            f"{target} is a {'symbolic link' if target.is_symlink() else 'file'} where the "
            f"cache keeps the unpacked model {name!r} (a folder): remove it, and the model "
            "is unpacked again."
        )
    if target.is_dir():
        return target
    _cache_folder("models", make=False)  # before a download that could not be unpacked
    archive = _download(model)
    _unpack(archive, target)
    return target


def _cache_folder(name: str, make: bool = True) -> Path:
    """The folder ``name`` of the cache, made if missing (``make``); a file in the way is named."""
    folder = cache_dir() / name
    for path in (folder.parent, folder):
        if os.path.lexists(path) and not path.is_dir():
            raise PretrainedModelError(
                f"{path} is a file where the cache of downloaded models needs a folder: move "
                f"it away, or set {CACHE_ENV} to another folder."
            )
    if make:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def load_model(cls, name: str, adata=None, *, device: str = "cpu"):
    """``cls.load`` of the folder of ``name``; a damaged cached copy is unpacked again once."""
    from sc_genept.model._folder import ModelFolderError

    folder = fetch(name)
    try:
        model = cls.load(folder, adata, device=device)
    except ModelFolderError:
        if entry(name).folder is not None or not folder.is_dir():
            raise
        # the unpacked copy changed since it was unpacked: unpack the (hash-checked) archive again
        logg.warning(f"the cached copy of {name!r} in {folder} is damaged; unpacking it again")
        shutil.rmtree(folder)
        model = cls.load(fetch(name), adata, device=device)
    model.pretrained_name_ = name
    return model


def _unpacked(model: PretrainedModel) -> Path:
    return cache_dir() / "models" / f"{model.name}-{model.sha256[:16]}"


def _suffix(model: PretrainedModel) -> str:
    archive = (model.url or model.hf_filename or "").lower()
    return next(s for s in _ARCHIVES if archive.endswith(s))


def _download(model: PretrainedModel) -> Path:
    """The model's archive, hash-checked: from its URL (pooch), else from the hub."""
    errors = []
    if model.url is not None:
        try:
            return _pooch_download(model)
        except PretrainedModelError:
            raise  # a wrong hash is not fixed by another source
        except Exception as err:  # network errors come in many types
            # a cap or time limit says what happened; a library's error needs its type
            reason = str(err) if isinstance(err, DownloadError) else f"{type(err).__name__}: {err}"
            errors.append(f"{model.url}: {reason}")
            if model.hf_repo is None:
                hint = (
                    "" if isinstance(err, DownloadError) else " Check the connection and try again."
                )
                raise PretrainedModelError(
                    f"Could not download the pretrained model {model.name!r} from {model.url} "
                    f"({reason}).{hint} A partial download is not kept."
                ) from err
            logg.warning(f"could not download {model.url}; trying the Hugging Face hub")
    return _hub_download(model, errors)


@contextmanager
def _pooch_logger():
    """Quiet pooch's per-download INFO line: shown at scanpy's verbosity "info" and above only."""
    import pooch
    import scanpy as sc

    logger = pooch.get_logger()  # not registered with logging.getLogger
    level = logger.level
    if int(sc.settings.verbosity) < 2:
        logger.setLevel(logging.WARNING)
    try:
        yield int(sc.settings.verbosity) >= 2
    finally:
        logger.setLevel(level)


def _pooch_download(model: PretrainedModel) -> Path:
    import pooch

    folder = _cache_folder("archives")
    fname = f"{model.name}-{model.sha256[:16]}{_suffix(model)}"
    if os.path.lexists(folder / fname) and not (folder / fname).is_file():
        raise PretrainedModelError(
            f"{folder / fname} is a folder where the cache keeps the archive of {model.name!r} "
            "(a file): remove it, and the archive is downloaded again."
        )
    if model.size is not None:
        cap, limit = model.size, f"the {model.size} bytes its registry entry declares"
    else:
        cap, limit = MAX_DOWNLOAD_BYTES, None
    logg.info(f"fetching the pretrained model {model.name!r} from {model.url}")
    with _pooch_logger() as show:

        def downloader(url, output_file, pooch_object, check_only=False):
            # pooch's own downloader has a socket timeout only: no byte cap, no time limit
            download(
                url,
                output_file,
                max_bytes=cap,
                timeout_s=DOWNLOAD_TIMEOUT_S,
                limit=limit,
                progress=show,
            )

        try:
            path = pooch.retrieve(
                model.url,
                known_hash=f"sha256:{model.sha256}",
                fname=fname,
                path=folder,
                downloader=downloader,
            )
        except ValueError as err:
            if "hash" not in str(err).lower():
                raise
            raise PretrainedModelError(
                f"The archive of the pretrained model {model.name!r} downloaded from "
                f"{model.url} does not have the sha256 its registry entry holds "
                f"({model.sha256}): the download is damaged or the file was changed. It was "
                "deleted and nothing was unpacked; try again, or report it if it persists."
            ) from err
    return Path(path)


def _hub_download(model: PretrainedModel, errors: list[str]) -> Path:
    tried = f" (the URL failed: {errors[0]})" if errors else ""
    if model.hf_repo is None:
        raise PretrainedModelError(f"The pretrained model {model.name!r} has no source{tried}.")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise PretrainedModelError(
            f"The pretrained model {model.name!r} is on the Hugging Face hub "
            f"({model.hf_repo}){tried}, which needs huggingface_hub: pip install "
            "'sc-genept[hub]' (or pip install huggingface_hub)."
        ) from None
    logg.info(f"fetching the pretrained model {model.name!r} from hf://{model.hf_repo}")
    path = Path(
        hf_hub_download(
            model.hf_repo,
            model.hf_filename,
            revision=model.hf_revision,
            cache_dir=cache_dir() / "huggingface",
        )
    )
    got = sha256_file(path)
    if got != model.sha256:
        raise PretrainedModelError(
            f"The archive of the pretrained model {model.name!r} from hf://{model.hf_repo}/"
            f"{model.hf_filename} has sha256 {got}, not the registry's {model.sha256}: it "
            "was changed or damaged, and nothing was unpacked."
        )
    return path


# ---- unpacking -------------------------------------------------------------------------------


def _unpack(archive: Path, target: Path) -> None:
    """Unpack a model archive into ``target`` (atomically), refusing anything but plain files."""
    tmp = Path(tempfile.mkdtemp(dir=_cache_folder("models"), prefix=f".{target.name}."))
    try:
        unpack_archive(archive, tmp, error=PretrainedModelError, max_bytes=MAX_UNPACKED_BYTES)
        folder = _model_root(tmp, archive)
        folder.chmod(folder_mode())  # mkdtemp makes it private; a shared cache is not
        try:
            os.replace(folder, target)
        except OSError:
            if not target.is_dir():  # not another process that unpacked it first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _model_root(root: Path, archive: Path) -> Path:
    """The model folder in an unpacked archive: its top level, or its one top-level folder."""
    if (root / "manifest.json").is_file():
        return root
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "manifest.json").is_file():
        return entries[0]
    raise PretrainedModelError(
        f"{archive.name} does not hold a model folder (manifest.json at its top, or in its one "
        f"top-level folder); it holds {sorted(p.name for p in entries)[:10]}."
    )
