"""Named gene-embedding tables that ship with the package."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

import pyarrow.parquet as pq

from ._readers import read_table_file
from ._table import GeneEmbeddings

#: Bundled tables by name. ``"default"`` is what :func:`sc_genept.tl.genept_embed` uses.
BUNDLED = {
    "go-minilm": "genes_go_minilm.parquet",
}
ALIASES = {"default": "go-minilm"}


def available() -> list[str]:
    """Names accepted by :func:`load` besides file paths."""
    return sorted([*BUNDLED, *ALIASES])


def load(name_or_path: str | Path = "default", *, with_texts: bool = False) -> GeneEmbeddings:
    """Load a gene-embedding table by name (see :func:`available`) or from a file.

    Parameters
    ----------
    name_or_path
        ``"default"`` (GO text embedded with all-MiniLM-L6-v2, 384 dims; see
        :doc:`/gene_tables`), another bundled name, or a file: a table written by
        :meth:`GeneEmbeddings.save`, another parquet table (e.g. GenePT-tools' layout), a
        GenePT pickle (read with a restricted unpickler), or CSV/TSV.
    with_texts
        Also load the gene texts, to re-embed them with another model.
    """
    name = ALIASES.get(str(name_or_path), str(name_or_path))
    if name in BUNDLED:
        with as_file(files("sc_genept") / "data" / BUNDLED[name]) as path:
            return GeneEmbeddings.read(path, with_texts=with_texts)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"No gene table named {str(name_or_path)!r}: pass one of {available()} or the "
            "path of a table file (.parquet, .pickle, .csv, .tsv)."
        )
    if path.suffix == ".parquet" and b"sc_genept" in (pq.read_schema(path).metadata or {}):
        return GeneEmbeddings.read(path, with_texts=with_texts)
    return read_table_file(path)
