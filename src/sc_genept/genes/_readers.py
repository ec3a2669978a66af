"""Files from elsewhere: gene tables (GenePT's pickles, parquet, CSV/TSV, dicts) and h5ad files.

GenePT's published tables (Zenodo 10030426 / 10833191) are pickled ``dict`` symbol →
vector. Unpickling runs code named in the file, so :func:`read_genept_pickle` uses an
unpickler that resolves no global except NumPy's array reconstruction, then checks that
what came out is a dict of strings to equal-length float vectors. Anything else is refused
with an error before any foreign code runs.

:func:`read_h5ad` is the one way sc_genept reads an AnnData file a user names: a file that
is not one (a CSV, a truncated download, another HDF5 layout) is refused with an error that
names the file and says what it is, instead of HDF5's own words.
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import pyarrow.lib
import pyarrow.parquet as pq

from sc_genept._utils import warn_caller
from sc_genept.genes._ids import primary_ensembl_ids
from sc_genept.genes._table import GeneEmbeddings, Provenance

if TYPE_CHECKING:
    from anndata import AnnData

# the only globals a pickle of plain floats or NumPy float arrays needs
_NUMPY_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}
_SYMBOL_COLUMNS = ("symbol", "gene_symbol", "gene_name", "gene", "genes", "feature_name")
_EMBEDDING_COLUMNS = ("embedding", "embeddings", "vector", "emb")


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle holds something other than a GenePT table; nothing in it was run."""


class _TableUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"Refusing to load {module}.{name} from the pickle: a GenePT table is a dict of gene "
            "symbols to lists or arrays of floats, and nothing else is unpickled."
        )


#: Bytes a value takes in a pickle at the least (a float32 array's own bytes); a table that
#: would take far more memory than its file shares one vector among many genes.
_MIN_BYTES_PER_VALUE = 4
_EXPANSION_SLACK = 2**20


def _check_expansion(table: dict, n_bytes: int, path) -> None:
    """Refuse a pickle whose vectors would take far more memory than its file holds.

    Pickles share objects by reference: a small file can name one long vector for a million
    genes, which becomes gigabytes when the table is built.
    """
    n_values = sum(len(v) if hasattr(v, "__len__") else 1 for v in table.values())
    if n_values * _MIN_BYTES_PER_VALUE > 2 * n_bytes + _EXPANSION_SLACK:
        raise UnsafePickleError(
            f"{path} ({n_bytes:,} bytes) names {n_values:,} values for {len(table):,} genes, "
            f"{n_values * 4 / 2**30:.1f} GiB as a table: its genes share vectors by reference, "
            "which a GenePT table does not. Refusing to build it."
        )


def read_genept_pickle(path: str | Path, *, provenance: Provenance | None = None) -> GeneEmbeddings:
    """Read one of GenePT's pickled tables (``dict`` symbol → vector) safely.

    Parameters
    ----------
    path
        E.g. ``GenePT_gene_embedding_ada_text.pickle`` (1536 dims) or
        ``GenePT_gene_protein_embedding_model_3_text.pickle`` (3072 dims).
    provenance
        Recorded with the table; default: GenePT, NCBI summaries, unknown model.
    """
    data = Path(path).read_bytes()
    try:
        table = _TableUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # noqa: BLE001 (any malformed stream)
        raise UnsafePickleError(f"{path} is not a readable pickle: {err}") from None
    if not isinstance(table, dict) or not all(isinstance(k, str) for k in table):
        raise UnsafePickleError(
            f"{path} does not hold a dict of gene symbols (got {type(table).__name__})."
        )
    _check_expansion(table, len(data), path)
    return from_mapping(
        table,
        provenance=provenance
        or Provenance(
            text_source="GenePT: NCBI gene summaries (Chen & Zou 2024)",
            embedding_model=f"GenePT published table ({Path(path).name})",
            license="GenePT, CC BY 4.0 (Zenodo 10030426 / 10833191)",
        ),
    )


def from_mapping(
    mapping: Mapping[str, object], *, provenance: Provenance | None = None
) -> GeneEmbeddings:
    """A table from ``{symbol: vector}``; Ensembl ids come from the bundled NCBI map."""
    symbols = list(mapping)
    if not symbols:
        raise ValueError("The mapping holds no genes: a gene table needs at least one.")
    vectors = []
    for symbol in symbols:
        try:
            vector = np.asarray(mapping[symbol])
        except ValueError as err:  # a ragged nested list
            raise UnsafePickleError(
                f"The vector of {symbol!r} is not a 1-D array of numbers."
            ) from err
        if vector.ndim != 1 or vector.dtype.kind not in "fiu":
            raise UnsafePickleError(f"The vector of {symbol!r} is not a 1-D array of numbers.")
        vectors.append(vector.astype(np.float32))
    _check_lengths(symbols, vectors)
    return GeneEmbeddings(
        symbols,
        np.stack(vectors),
        ensembl_ids=primary_ensembl_ids(symbols),
        provenance=provenance,
    )


def from_frame(
    frame: pd.DataFrame,
    *,
    symbol_column: str | None = None,
    embedding_column: str | None = None,
    provenance: Provenance | None = None,
) -> GeneEmbeddings:
    """A table from a DataFrame with a symbol column and vectors.

    Vectors are either one column of lists (the Hugging Face layout of GenePT-tools'
    tables) or one numeric column per dimension. ``ensembl_id`` and ``text`` columns are
    kept when present.
    """
    for name, column in (("symbol_column", symbol_column), ("embedding_column", embedding_column)):
        if column is not None and column not in frame.columns:
            raise ValueError(
                f"{name}={column!r} is not a column of the table; it has {list(frame.columns)}."
            )
    if len(frame) == 0:
        raise ValueError("The gene table has no rows: is the file empty?")
    symbol_column = symbol_column or _find_column(frame, _SYMBOL_COLUMNS, "gene symbols")
    embedding_column = embedding_column or next(
        (c for c in _EMBEDDING_COLUMNS if c in frame.columns), None
    )
    if embedding_column is not None:
        vector_columns = frame[[embedding_column]]
        has_vector = frame[embedding_column].map(_is_present)
    else:
        ignored = [c for c in frame.columns if c == symbol_column or _is_id_column(c)]
        _check_numeric(frame.drop(columns=ignored))
        vector_columns = frame.drop(columns=ignored).select_dtypes("number")
        if vector_columns.shape[1] == 0:
            raise ValueError(
                f"No embedding column ({_EMBEDDING_COLUMNS}) and no numeric columns in the table; "
                "pass embedding_column= or one numeric column per dimension."
            )
        has_vector = vector_columns.notna().any(axis=1)
    has_symbol = frame[symbol_column].map(_is_present)
    # a row with neither symbol nor vector carries nothing (a blank line of a CSV, a spacer
    # row of a spreadsheet): dropped, and said so; a row with only one of them is an error
    empty = ~has_symbol & ~has_vector
    if empty.any():
        warn_caller(
            f"Dropped {int(empty.sum())} of {len(frame)} rows of the gene table that have "
            "neither a gene symbol nor a vector."
        )
        frame, has_vector, has_symbol = frame[~empty], has_vector[~empty], has_symbol[~empty]
        vector_columns = vector_columns[~empty]
    if len(frame) == 0:
        raise ValueError("The gene table has no rows with a gene: is the file empty?")
    _check_present(frame, ~has_symbol, "no gene symbol", "fill in their symbols")
    symbols = frame[symbol_column].astype(str).to_numpy()
    _check_present(frame, ~has_vector, "no vector", "drop those genes or embed their texts")
    if embedding_column is not None:
        vectors = [_as_vector(v, s) for v, s in zip(frame[embedding_column], symbols, strict=True)]
        _check_lengths(symbols, vectors)
        vectors = np.stack(vectors)
    else:
        vectors = vector_columns.to_numpy(np.float32)
    ensembl = (
        frame["ensembl_id"].to_numpy() if "ensembl_id" in frame else primary_ensembl_ids(symbols)
    )
    texts = frame["text"].to_numpy() if "text" in frame else None
    return GeneEmbeddings(symbols, vectors, ensembl_ids=ensembl, texts=texts, provenance=provenance)


def read_table_file(path: str | Path, *, provenance: Provenance | None = None) -> GeneEmbeddings:
    """Read any supported file by its suffix: sc_genept or other parquet, pickle, CSV/TSV."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No gene table at {path}: the file does not exist. Pass the path of a .parquet, "
            ".pickle/.pkl, .csv or .tsv table, or a name from sc_genept.genes.available()."
        )
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() in (".pkl", ".pickle"):
        return read_genept_pickle(path, provenance=provenance)
    if path.suffix.lower() == ".parquet":
        if is_sc_genept_parquet(path):
            return GeneEmbeddings.read(path)
        try:
            frame = pd.read_parquet(path)
        except (pyarrow.lib.ArrowException, OSError, ValueError) as err:
            raise ValueError(f"{path} is not a readable parquet file: {err}") from err
        return from_frame(
            frame, provenance=provenance or Provenance(text_source=f"file {path.name}")
        )
    if any(s in suffixes for s in (".csv", ".tsv", ".txt")):
        sep = "\t" if ".tsv" in suffixes or ".txt" in suffixes else ","
        try:
            frame = pd.read_csv(path, sep=sep)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            # e.g. a row with more fields than the header: vectors of different lengths
            raise ValueError(
                f"{path} is not a readable {'TSV' if sep == chr(9) else 'CSV'} gene table: "
                f"{str(err).strip()}. Every row needs a symbol and the same number of values."
            ) from err
        return from_frame(
            frame, provenance=provenance or Provenance(text_source=f"file {path.name}")
        )
    raise ValueError(
        f"Unknown gene-table format {path.suffix!r}: use .parquet, .pickle/.pkl, .csv or .tsv."
    )


def from_huggingface(
    repo_id: str, filename: str, *, revision: str | None = None, repo_type: str = "dataset"
) -> GeneEmbeddings:
    """Download a table file from the Hugging Face hub (cached locally) and read it.

    Needs ``huggingface_hub``. E.g. the LLM-enriched GenePT-tools tables are parquet files
    with a gene-name column and an ``embedding`` column.
    """
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(repo_id, filename, revision=revision, repo_type=repo_type)
    return read_table_file(
        path,
        provenance=Provenance(
            text_source=f"hf://{repo_type}s/{repo_id}/{filename}",
            extra={"revision": revision or "main"},
        ),
    )


def is_sc_genept_parquet(path: Path) -> bool:
    """Whether ``path`` is a parquet file written by :meth:`GeneEmbeddings.save`."""
    try:
        return b"sc_genept" in (pq.read_schema(path).metadata or {})
    except (pyarrow.lib.ArrowException, OSError) as err:
        raise ValueError(f"{path} is not a readable parquet file: {err}") from err


def _is_present(value) -> bool:
    """Whether a cell holds something (not None/NaN/empty); list cells are always present."""
    if isinstance(value, str):
        return bool(value.strip())
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    return not (isinstance(value, np.ndarray | list | tuple) and len(value) == 0)


def _check_numeric(frame: pd.DataFrame) -> None:
    """Refuse a vector column that holds numbers and something else (a typo, a unit).

    Text columns (a gene's name, a description) hold no numbers and are left out of the
    vectors; a column of numbers with a stray word in it would silently lose a dimension.
    """
    for column in frame.select_dtypes(exclude="number").columns:
        values = frame[column].dropna()
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().any() and numbers.isna().any():
            bad = values[numbers.isna()]
            raise ValueError(
                f"Column {column!r} of the gene table holds numbers but {len(bad)} value(s) are "
                f"not a number, e.g. {bad.iloc[0]!r} in row {bad.index[0]}: fix those cells, "
                "or pass embedding_column= for a table with one vector column."
            )


def _check_present(frame: pd.DataFrame, lacking: pd.Series, what: str, fix: str) -> None:
    if lacking.any():
        rows = frame.index[lacking.to_numpy()].tolist()
        raise ValueError(
            f"{len(rows)} of {len(frame)} rows of the gene table have {what} (rows "
            f"{rows[:5]}): {fix}, or drop those rows."
        )


def _as_vector(value, symbol: str) -> np.ndarray:
    """One cell of an embedding column as a float32 vector, or a clear error."""
    vector = np.asarray(value)
    if vector.ndim != 1 or vector.dtype.kind not in "fiu":
        raise ValueError(
            f"The vector of {symbol!r} is not a list of numbers (got {str(value)[:60]!r})."
        )
    return vector.astype(np.float32)


def _check_lengths(symbols, vectors: list[np.ndarray]) -> None:
    """All vectors one length, or an error naming the odd ones."""
    lengths = pd.Series([len(v) for v in vectors], index=symbols)
    if lengths.nunique() > 1:
        usual = int(lengths.mode()[0])
        odd = lengths[lengths != usual]
        raise ValueError(
            f"Gene vectors have different lengths: most have {usual}, but {len(odd)} do not "
            f"(e.g. { {k: int(n) for k, n in odd.head(5).items()} }). Every gene needs a vector of the same length."
        )


_ID_COLUMNS = {
    "index",
    "entrez",
    "entrez_id",
    "gene_id",
    "geneid",
    "ncbi_gene_id",
    "ensembl_id",
    "ensembl",
}


def _is_id_column(name) -> bool:
    """Index and id columns that must not become embedding dimensions."""
    name = str(name)
    return name.startswith("Unnamed:") or name.lower() in _ID_COLUMNS


def _find_column(frame: pd.DataFrame, candidates, what: str) -> str:
    lower = {c.lower(): c for c in frame.columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    raise ValueError(f"No column of {what} found (looked for {candidates}); pass symbol_column=.")


# ---- h5ad files --------------------------------------------------------------------------

#: Bytes of a file looked at to say what it is when it is not HDF5.
_HEAD_BYTES = 4096


class H5adFileError(OSError, ValueError):
    """A file given as an AnnData ``.h5ad`` file is not one, or is damaged; it was only read.

    An :class:`OSError` (as h5py's own error for such a file) and a :class:`ValueError` (the
    file's content is wrong), so that code catching either still catches it.
    """


def read_h5ad(
    path: str | Path, *, what: str = "The file", backed: Literal["r", "r+"] | None = None
) -> AnnData:
    """Read an AnnData ``.h5ad`` file, or say what the file is instead.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    what
        How messages name the file (e.g. ``"INPUT"``, ``"--reference"``).
    backed
        As in :func:`anndata.read_h5ad`: ``"r"`` leaves the matrix on disk.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    H5adFileError
        If the file is a folder, empty, not HDF5 (a CSV, a zip), damaged or truncated,
        an HDF5 file of another layout (a 10x ``.h5``, a loom file), or an AnnData file
        this anndata cannot decode; the message names the file and says which.
    """
    import anndata

    path = Path(path)
    label = f"{what} {path}"
    if not path.exists():
        raise FileNotFoundError(f"{label} does not exist: pass the path of an .h5ad file.")
    if path.is_dir():
        raise H5adFileError(
            f"{label} is a folder, not an .h5ad file (a .zarr store is read with "
            "anndata.read_zarr): pass the path of an .h5ad file."
        )
    _check_is_anndata_hdf5(path, label)
    try:
        return anndata.read_h5ad(path, backed=backed)
    except (MemoryError, RecursionError):
        raise
    except Exception as err:  # whatever anndata's decoders raise
        raise H5adFileError(
            f"{label} has AnnData's layout but anndata {_version('anndata')} cannot read it "
            f"({type(err).__name__}: {err}). Was it written by a newer anndata, or changed "
            "by another tool? Write it again with AnnData.write_h5ad."
        ) from err


def _check_is_anndata_hdf5(path: Path, label: str) -> None:
    """Refuse a file that is not HDF5, cannot be opened, or holds another HDF5 layout."""
    import h5py

    try:
        with path.open("rb") as file:
            head = file.read(_HEAD_BYTES)
    except PermissionError:
        raise PermissionError(
            f"{label} cannot be read (permission denied): ask its owner, or copy it to a "
            "folder of yours."
        ) from None
    if not h5py.is_hdf5(path):
        raise H5adFileError(f"{label} is not an HDF5 file, so not an .h5ad file: {_what_is(head)}")
    try:
        with h5py.File(path, "r") as file:
            keys = sorted(file.keys())
            encoding = file.attrs.get("encoding-type")
    except OSError as err:
        detail = _hdf5_reason(err)
        if "unable to lock" in detail.lower():
            raise H5adFileError(
                f"{label} is locked by another process (HDF5: {detail}): close it there, or "
                "set HDF5_USE_FILE_LOCKING=FALSE where the file system does not support locks."
            ) from None
        raise H5adFileError(
            f"{label} is damaged or truncated: it starts as an HDF5 file but cannot be opened "
            f"(HDF5: {detail}). Was its download or copy cut short? Fetch or write it again."
        ) from None
    if isinstance(encoding, bytes):
        encoding = encoding.decode(errors="replace")
    if encoding == "anndata" or {"obs", "var"} <= set(keys):  # older files lack the attribute
        return
    raise H5adFileError(
        f"{label} is an HDF5 file but not an AnnData (.h5ad) file: it holds {keys[:10]}, "
        f"without AnnData's obs and var. {_other_layout(keys)}"
    )


def _what_is(head: bytes) -> str:
    """What a file that is not HDF5 looks like, from its first bytes, and what to do."""
    if not head:
        return "it is empty (0 bytes). Was its download or write cut short?"
    for magic, kind, fix in (
        (b"PK\x03\x04", "a zip archive", "unzip it, or read a zipped .zarr with anndata"),
        (b"\x1f\x8b", "gzip-compressed", "decompress it first (gunzip)"),
        (b"PAR1", "a parquet file", "read it with pandas.read_parquet"),
        (b"\x89PNG", "a PNG image", "pass the .h5ad file itself"),
    ):
        if head.startswith(magic):
            return f"it is {kind}: {fix}."
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "its first bytes match no format sc_genept knows. Pass an .h5ad file."
    if text.lstrip().startswith(("<!DOCTYPE", "<html", "<HTML")):
        return "it looks like a web page (a download that returned an error page?)."
    return (
        "it looks like text (a CSV or TSV table?). Read a table of counts with "
        "scanpy.read_csv or pandas, make an AnnData and write it with write_h5ad."
    )


def _other_layout(keys: list[str]) -> str:
    if "matrix" in keys and "row_attrs" in keys:
        return "It looks like a loom file: read it with scanpy.read_loom, then write_h5ad."
    if "matrix" in keys or any(k.startswith("GRCh") or k.startswith("mm10") for k in keys):
        return (
            "It looks like a 10x Genomics .h5 file: read it with scanpy.read_10x_h5, then "
            "write_h5ad."
        )
    return "Pass an .h5ad file written by AnnData.write_h5ad."


def _hdf5_reason(err: OSError) -> str:
    """The reason inside h5py's 'Unable to synchronously open file (reason)'."""
    found = re.search(r"\((.*)\)\s*$", str(err))
    return found.group(1) if found else str(err)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)
