"""Named gene-embedding tables that ship with the package."""

from __future__ import annotations

import threading
from importlib.resources import as_file, files
from pathlib import Path

from ._readers import is_sc_genept_parquet, read_table_file
from ._table import GeneEmbeddings

#: Bundled tables by name. ``"default"`` is what :func:`sc_genept.tl.genept_embed` uses.
BUNDLED = {
    "knowledge-minilm": "genes_knowledge_minilm.parquet",
    "go-minilm": "genes_go_minilm.parquet",
}
ALIASES = {"default": "knowledge-minilm"}

# Bundled tables once read, by (name, with_texts) → (file mtime, table). Every
# ``genept_embed(adata)`` loads "default": without this each call re-read the parquet file
# and rebuilt the gene index (~0.8 s). The arrays are made read-only, so no caller can
# change what the next one gets; the mtime lets a reinstalled package be read afresh.
_loaded: dict[tuple[str, bool], tuple[int, GeneEmbeddings]] = {}
_lock = threading.Lock()


def available() -> list[str]:
    """Names accepted by :func:`~sc_genept.genes.load` besides file paths."""
    return sorted([*BUNDLED, *ALIASES])


def load(name_or_path: str | Path = "default", *, with_texts: bool = False) -> GeneEmbeddings:
    """Load a gene-embedding table by name (see :func:`~sc_genept.genes.available`) or from a file.

    Parameters
    ----------
    name_or_path
        ``"default"`` (``"knowledge-minilm"``: each gene's name, where it is expressed
        among blood cells and tissues (Human Protein Atlas) and its NCBI RefSeq summary,
        embedded with all-MiniLM-L6-v2, 384 dims; see :doc:`/gene_tables`),
        ``"go-minilm"`` (the former default: name and Gene Ontology terms), or a file: a table written by
        :meth:`GeneEmbeddings.save`, another parquet table (e.g. GenePT-tools' layout), a
        GenePT pickle (read with a restricted unpickler), or CSV/TSV.
    with_texts
        Also load the gene texts, to re-embed them with another model.

    Notes
    -----
    A bundled table is read once per process and shared: repeated calls return the same
    object, whose arrays are read-only (copy one, e.g. ``table.embeddings.copy()``, to
    change it). Files are read on every call.
    """
    if not isinstance(name_or_path, str | Path):
        raise TypeError(
            f"name_or_path must be a table name ({available()}) or a file path, got "
            f"{type(name_or_path).__name__}."
        )
    name = ALIASES.get(str(name_or_path), str(name_or_path))
    if name in BUNDLED:
        return _bundled(name, with_texts=bool(with_texts))
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"No gene table named {str(name_or_path)!r}: pass one of {available()} or the "
            "path of a table file (.parquet, .pickle, .csv, .tsv)."
        )
    if path.suffix.lower() == ".parquet" and is_sc_genept_parquet(path):
        return GeneEmbeddings.read(path, with_texts=with_texts)
    return read_table_file(path)


def _bundled(name: str, *, with_texts: bool) -> GeneEmbeddings:
    """A bundled table, read on first use and then served from memory (see :data:`_loaded`)."""
    with as_file(files("sc_genept") / "data" / BUNDLED[name]) as path:
        mtime = path.stat().st_mtime_ns
        with _lock:  # two threads loading at once read the file once
            cached = _loaded.get((name, with_texts))
            if cached is None or cached[0] != mtime:
                table = GeneEmbeddings.read(path, with_texts=with_texts).read_only()
                cached = _loaded[name, with_texts] = (mtime, table)
    return cached[1]
