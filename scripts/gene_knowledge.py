"""Mine the Cell Ontology for gene → cell type knowledge (marker genes and products).

Cell Ontology (CL, CC BY 4.0) term names, exact synonyms and definitions name the genes that
mark a cell type: "CD14-positive monocyte", "CD56-bright natural killer cell", "a monocyte
that expresses CD14 and is negative for the lineage markers CD3, CD19, and CD20", "secretes
insulin". This script finds those mentions, keeps the positive ones and maps them to human
genes. Precision goes before recall:

* Marker words are read only where the text marks them: ``X-positive``, ``X-high``,
  ``X-bright``, ``X+`` (positive); ``X-negative``, ``X-low``, ``X-dim``, ``X-`` (negative);
  lists after ``expresses``/``has (plasma membrane) part some`` and, for products, after
  ``secretes``/``produces``/``synthesizes`` (positive); lists after ``negative for``,
  ``lacks``, ``does not express`` (negative). A gene said to be negative or low anywhere in a
  term is never kept as positive for that term (CL has typos such as a "CD4-negative" term
  with a "CD4-positive" synonym).
* A mention maps to a gene in this order: (1) an official symbol of a protein-coding gene,
  after upper-casing, Greek letters to Latin (``PDGFRα`` → ``PDGFRA``), dropping ``c-``
  (``c-Kit``) and, failing that, dropping hyphens (``CTLA-4`` → ``CTLA4``); (2) the curated
  tables below: CD antigens that name a complex or a family one antibody detects (CD3, CD8,
  CD16, CD32), CD names whose NCBI alias also sits on an unrelated gene (CD20 is also
  "cytokeratin 20" on KRT20), and immunoglobulin isotypes (NCBI types IGH genes "other");
  (3) a CD name (``CD\\d+`` plus one optional letter, CD45 isoform suffixes RA/RB/RC/RO
  dropped) that is an NCBI alias of exactly one protein-coding gene; (4) the exact full
  name of exactly one protein-coding gene ("insulin" → INS), when the frame has a ``name``
  column. Other aliases are never used: they collide too often (``IgM`` is an alias of
  CD40LG, ``Sca-1`` of CASP3, ``MR`` of NR3C2).

    python scripts/gene_knowledge.py [--org-hs-sqlite PATH] [--out scripts/_work/gene_cell_types.tsv]
"""

from __future__ import annotations

import argparse
import gzip
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "src" / "sc_genept" / "data"
# org.Hs.eg.db 3.16 from Debian: apt-get download r-bioc-org.hs.eg.db; dpkg -x *.deb scripts/_work/x
ORG_HS = ROOT / "scripts/_work/x/usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite"

# CD names kept for several genes: the subunits or paralogues that the one CD antibody binds.
COMPLEXES = {
    "CD3": ("CD3D", "CD3E", "CD3G"),
    "CD8": ("CD8A", "CD8B"),
    "CD16": ("FCGR3A", "FCGR3B"),
    "CD32": ("FCGR2A", "FCGR2B", "FCGR2C"),
}
# CD names whose NCBI alias list also names an unrelated gene, resolved to the CD antigen.
CD_OVERRIDES = {"CD20": "MS4A1", "CD25": "IL2RA", "CD182": "CXCR2", "CD205": "LY75"}
# Immunoglobulin isotypes (IGH constant genes are gene_type "other" in NCBI Gene).
IMMUNOGLOBULINS = {
    "IGM": ("IGHM",),
    "IGD": ("IGHD",),
    "IGE": ("IGHE",),
    "IGA": ("IGHA1", "IGHA2"),
    "IGG": ("IGHG1", "IGHG2", "IGHG3", "IGHG4"),
    "IGG1": ("IGHG1",),
    "IGG2": ("IGHG2",),
    "IGG3": ("IGHG3",),
    "IGG4": ("IGHG4",),
    "IGA1": ("IGHA1",),
    "IGA2": ("IGHA2",),
}
GREEK = str.maketrans({"α": "A", "β": "B", "γ": "G", "δ": "D", "ε": "E", "κ": "K", "λ": "L"})

POS_SUFFIX = r"positive|postive|pos|high|hi|bright|\+"
NEG_SUFFIX = r"negative|neg|low|lo|dim|/low|-/low|-"
TOKEN = r"[A-Za-z0-9αβγδεκλ][\w.αβγδεκλ/]*?(?:-[0-9A-Za-z]+?)*?"
# "CD14-positive", "CD56 bright", "IgD-postive", "CD11b-/low", "CD4+CD25+" / "CD123-".
SUFFIX_RE = re.compile(
    rf"(?<![\w-])(?:(?P<tok>{TOKEN})(?:[- ](?P<pos>{POS_SUFFIX})|[- ](?P<neg>{NEG_SUFFIX})"
    rf"|(?P<plus>\+)|(?P<minus>-))|(?P<tok2>[A-Z][A-Za-z]*\d+)(?:(?P<pos2>hi|high|bright)"
    rf"|(?P<neg2>lo|low|dim)))(?=[\s,;.)/]|$|[A-Z])"
)
# A marker followed by a plural cell noun names other cells: "presents antigen to CD8-positive
# T cells". Ions are not genes: "Ca2+".
OTHER_CELLS = re.compile(
    r"^(?:[\s,]+[\w/+-]+){0,5}?\s+(?:cells|lymphocytes|thymocytes|monocytes|macrophages"
    r"|progenitors|precursors|neurons)\b",
    re.IGNORECASE,
)
IONS = {"Ca", "Ca2", "Mg", "Mg2", "Zn", "Zn2", "Na", "K", "Cl", "H", "Fe", "Fe2", "Fe3", "Cu"}
POS_LIST = (
    r"express(?:es|ing|ed)?|has (?:high )?(?:plasma membrane )?(?:part|amount) some"
    r"|secret(?:es|ing|e)|produc(?:es|ing|e)|synthesi[sz](?:es|ing|e)"
)
NEG_LIST = (
    r"negative for|lack(?:s|ing)?(?: plasma membrane part some)?|does not express"
    r"|not express(?:ing)?|has low (?:plasma membrane )?amount some|absence of"
)
LIST_RE = re.compile(
    rf"(?P<neg>{NEG_LIST})|(?P<pos>{POS_LIST})\s+(?P<items>[^.;:()]+)", re.IGNORECASE
)
NEG_ITEMS_RE = re.compile(rf"(?:{NEG_LIST})\s+(?P<items>[^.;:()]+)", re.IGNORECASE)
LIST_STOP = re.compile(
    r",? (?:and|but|while|which|that|whereas) (?:is|are|has|lacks|does)\b|,? "
    r"(?:but|while|whereas|which|that|in|on|at|from|during|upon|after)\b"
)
ITEM_SPLIT = re.compile(r",\s*(?:and |or )?|\s+and\s+|\s+or\s+|\s*/\s*")
LEADING = re.compile(
    r"^(?:(?:the|a|an|both|either|high|low|levels?|of|surface|cell-surface|cell|markers?|lineage"
    r"|amounts?|transcription|factors?|protein|hormones?|peptides?|enzymes?|some)\s+)+",
    re.IGNORECASE,
)
TRAILING = re.compile(r"\s+(?:molecules?|proteins?|antigens?|co-?receptors?|genes?|mRNA)$")


def symbol_index(genes: pd.DataFrame) -> tuple[dict[str, str], dict[str, set[str]], dict]:
    """Index a gene table by upper-case symbol, CD alias and full name.

    Parameters
    ----------
    genes
        Columns ``symbol``, ``gene_type``, ``aliases`` (list-like) and optionally ``name``.

    Returns
    -------
    tuple
        Protein-coding symbols (upper → symbol), CD aliases (upper → symbols) and full names
        (lower → symbols).
    """
    coding = genes[genes["gene_type"] == "protein-coding"]
    symbols = {s.upper(): s for s in coding["symbol"]}
    symbols.update({s: s for v in IMMUNOGLOBULINS.values() for s in v})
    cd_alias: dict[str, set[str]] = {}
    for sym, aliases in zip(coding["symbol"], coding["aliases"], strict=True):
        for alias in aliases if aliases is not None else ():
            if re.fullmatch(r"CD\d+[A-Z]?", alias.upper()):
                cd_alias.setdefault(alias.upper(), set()).add(sym)
    names: dict[str, set[str]] = {}
    if "name" in coding:
        for sym, name in zip(coding["symbol"], coding["name"], strict=True):
            if isinstance(name, str):
                names.setdefault(name.lower(), set()).add(sym)
    return symbols, cd_alias, names


def resolve(mention: str, index: tuple) -> tuple[str, ...]:
    """Map one mention to gene symbols under the module's rules; ``()`` when not sure."""
    symbols, cd_alias, names = index
    text = TRAILING.sub("", LEADING.sub("", mention.strip()))
    key = re.sub(r"^C-", "", text.translate(GREEK).upper())
    if " " not in key:
        for cand in (key, key.replace("-", "")):
            if cand in symbols and cand not in IMMUNOGLOBULINS:
                return (symbols[cand],)
        cd = re.sub(r"^(CD45)R[ABCO]$", r"\1", key.replace("-", ""))
        for table in (COMPLEXES, IMMUNOGLOBULINS):
            if cd in table:
                return table[cd]
        if cd in CD_OVERRIDES:
            return (CD_OVERRIDES[cd],)
        if len(cd_alias.get(cd, ())) == 1:
            return tuple(cd_alias[cd])
    hits = names.get(text.lower(), set())
    return tuple(hits) if len(hits) == 1 else ()


def read_obo(path: str | Path) -> Iterator[dict]:
    """Yield ``{"id", "name", "def", "synonym": [...]}`` for each ``[Term]`` of an OBO file."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for block in fh.read().split("\n[")[1:]:
            if not block.startswith("Term]"):
                continue
            term: dict = {"synonym": []}
            for line in block.splitlines()[1:]:
                tag, _, value = line.partition(": ")
                if tag in ("id", "name"):
                    term[tag] = value
                elif tag == "def":
                    term["def"] = value.split('" [')[0].strip('"')
                elif tag == "synonym" and value.split('" ')[-1].startswith("EXACT"):
                    term["synonym"].append(value.split('" ')[0].strip('"'))
            yield term


def mentions(text: str) -> Iterator[tuple[str, bool, str]]:
    """Yield ``(mention, positive, phrase)`` for each marked gene mention in ``text``."""
    for m in SUFFIX_RE.finditer(text):
        token = m["tok"] or m["tok2"]
        if token in IONS or OTHER_CELLS.match(text[m.end() :]):
            continue
        yield token, bool(m["pos"] or m["plus"] or m["pos2"]), m[0]
    for m in NEG_ITEMS_RE.finditer(text):
        items = LIST_STOP.split(m["items"])[0]
        for item in ITEM_SPLIT.split(items):
            yield item, False, m[0]
    for m in LIST_RE.finditer(text):
        if m["pos"]:
            items = LIST_STOP.split(m["items"])[0]
            for item in ITEM_SPLIT.split(items):
                yield item, True, f"{m['pos']} {items}".strip()


def cell_type_mentions(cl_obo_path: str | Path, gene_ids_frame: pd.DataFrame) -> pd.DataFrame:
    """Genes named as positive markers or products of Cell Ontology terms.

    Parameters
    ----------
    cl_obo_path
        Cell Ontology in OBO format (plain or ``.gz``).
    gene_ids_frame
        Human genes: ``symbol``, ``gene_type``, ``aliases`` (list-like) and, to match
        products by full name ("insulin"), an optional ``name`` column.

    Returns
    -------
    pandas.DataFrame
        One row per (symbol, term, field, phrase): ``symbol``, ``cl_id``, ``cl_name``,
        ``field`` (name, synonym or def), ``mention`` and ``phrase`` (the matched text).
    """
    index = symbol_index(gene_ids_frame)
    rows = []
    for term in read_obo(cl_obo_path):
        texts = [("name", term.get("name", ""))] + [("synonym", s) for s in term["synonym"]]
        texts.append(("def", term.get("def", "")))
        found, negative = [], set()
        for field, text in texts:
            for mention, positive, phrase in mentions(text):
                genes = resolve(mention, index)
                if positive:
                    found += [(g, field, mention.strip(), phrase) for g in genes]
                else:
                    negative.update(genes)
        for gene, field, mention, phrase in found:
            if gene not in negative:
                rows.append((gene, term["id"], term.get("name", ""), field, mention, phrase))
    columns = ["symbol", "cl_id", "cl_name", "field", "mention", "phrase"]
    return pd.DataFrame(rows, columns=columns).drop_duplicates(ignore_index=True)


def gene_table(org_hs_sqlite: Path | None) -> pd.DataFrame:
    """The repo's gene table, with full names from org.Hs.eg.db when its SQLite is given."""
    genes = pd.read_parquet(DATA / "gene_ids.parquet")
    if org_hs_sqlite is not None and org_hs_sqlite.exists():
        with sqlite3.connect(org_hs_sqlite) as con:
            names = pd.read_sql("SELECT symbol, gene_name AS name FROM gene_info", con)
        genes = genes.merge(names.drop_duplicates("symbol"), on="symbol", how="left")
    return genes


PBMC = (
    "CD3D CD3E CD4 CD8A CD8B CD14 FCGR3A MS4A1 CD19 CD79A NCAM1 KLRD1 IL7R IL2RA FOXP3 CCR7 "
    "SELL CD1C CLEC4C IL3RA ITGAX CD34 PTPRC LYZ GNLY NKG7 PPBP"
).split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cl", type=Path, default=DATA / "cl.obo.gz")
    parser.add_argument("--org-hs-sqlite", type=Path, default=ORG_HS)
    parser.add_argument("--out", type=Path, default=ROOT / "scripts/_work/gene_cell_types.tsv")
    args = parser.parse_args()
    table = cell_type_mentions(args.cl, gene_table(args.org_hs_sqlite))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False)
    per_gene = table.drop_duplicates(["symbol", "cl_id"]).groupby("symbol")["cl_name"]
    print(
        f"{len(table)} rows; {per_gene.ngroups} genes with >=1 cell type; "
        f"{table['cl_id'].nunique()} CL terms; written to {args.out}"
    )
    print("\nTop 30 genes by number of CL terms:")
    print(per_gene.size().sort_values(ascending=False).head(30).to_string())
    print("\nPBMC markers:")
    for gene in PBMC:
        names = sorted(per_gene.get_group(gene)) if gene in per_gene.groups else []
        print(f"{gene} ({len(names)}): {'; '.join(names[:8])}{' …' if len(names) > 8 else ''}")


if __name__ == "__main__":
    main()
