from collections import Counter

import numpy as np
import pytest

from sc_genept.genes import GeneEmbeddings, gene_map, match_genes
from sc_genept.genes._ids import detect_id_type, is_ensembl_id, strip_ensembl_version


def matched_symbols(match, names, table):
    return {
        names[v]: table.symbols[r] for v, r in zip(match.var_index, match.table_index, strict=True)
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ENSG00000141510", True),
        ("ENSG00000141510.17", True),
        ("ensg00000141510", True),
        ("ENSMUSG00000059552", True),
        ("ENSG00000002586.20_PAR_Y", True),
        ("TP53", False),
        ("ENSG0000014151", False),
    ],
)
def test_is_ensembl_id(name, expected):
    assert is_ensembl_id(name) is expected


def test_strip_version_and_detect():
    assert strip_ensembl_version(["ENSG00000141510.17", "TP53", None]).tolist() == [
        "ENSG00000141510",
        "TP53",
        None,
    ]
    assert detect_id_type(["ENSG00000141510.1", "ENSG00000141511", "TP53"]) == "ensembl"
    assert detect_id_type(["TP53", "CD3E"]) == "symbol"


def test_symbols_match_case_insensitively(tiny_table):
    names = ["cd3e", "Ms4a1", "UNKNOWN"]
    match = match_genes(names, tiny_table)
    assert matched_symbols(match, names, tiny_table) == {"cd3e": "CD3E", "Ms4a1": "MS4A1"}
    assert match.matched_by["symbol"] == 2 and match.n_vars == 3


def test_ensembl_ids_with_versions_and_mixed_names(tiny_table):
    names = ["ENSG00000198851.9", "ENSG00000156738", "LYZ"]
    match = match_genes(names, tiny_table)
    assert matched_symbols(match, names, tiny_table) == {
        "ENSG00000198851.9": "CD3E",
        "ENSG00000156738": "MS4A1",
        "LYZ": "LYZ",
    }
    assert match.id_type == "ensembl"


def test_unambiguous_alias_matches_unless_gene_present(default_table):
    match = match_genes(["IGJ", "CD3E"], default_table)  # IGJ is JCHAIN's previous symbol
    assert matched_symbols(match, ["IGJ", "CD3E"], default_table) == {
        "IGJ": "JCHAIN",
        "CD3E": "CD3E",
    }
    assert match.matched_by["alias"] == 1
    both = match_genes(["IGJ", "JCHAIN"], default_table)
    assert matched_symbols(both, ["IGJ", "JCHAIN"], default_table) == {"JCHAIN": "JCHAIN"}


def test_ambiguous_aliases_never_match(default_table):
    ncbi = gene_map()
    in_table = set(default_table.symbols)
    genes_per_alias = Counter(a.upper() for aliases in ncbi["aliases"] for a in set(aliases))
    official = set(ncbi["symbol"].str.upper())
    shared = next(
        a
        for symbol, aliases in zip(ncbi["symbol"], ncbi["aliases"], strict=True)
        if symbol in in_table
        for a in aliases
        if genes_per_alias[a.upper()] > 1 and a.upper() not in official
    )
    match = match_genes([shared], default_table)
    assert match.n_matched == 0 and match.ambiguous == [shared]


def test_alias_that_is_another_genes_symbol_is_not_used(default_table):
    ncbi = gene_map()
    symbol_of = dict(zip(ncbi["symbol"].str.upper(), ncbi["gene_type"], strict=True))
    # a non-coding gene's official symbol that is also an alias of a protein-coding gene
    name = next(
        a
        for s, aliases in zip(ncbi["symbol"], ncbi["aliases"], strict=True)
        if s in set(default_table.symbols)
        for a in aliases
        if symbol_of.get(a.upper(), "protein-coding") != "protein-coding"
    )
    assert match_genes([name], default_table).n_matched == 0


def test_duplicate_ensembl_in_table_is_ambiguous():
    table = GeneEmbeddings(
        ["A", "B"], np.eye(2), ensembl_ids=["ENSG00000000001", "ENSG00000000001"]
    )
    match = match_genes(["ENSG00000000001.3"], table)
    assert match.n_matched == 0 and match.ambiguous == ["ENSG00000000001.3"]


def test_missing_names_never_match_and_rows_are_taken_once(default_table):
    names = ["TP53", "ENSG00000141510.2", np.nan, "nan", "NA", "", "ABG", "GAB"]
    match = match_genes(names, default_table)
    assert matched_symbols(match, [str(n) for n in names], default_table) == {
        "TP53": "TP53",
        "ABG": "A1BG",
    }
    assert match.duplicates == ["ENSG00000141510.2", "GAB"]  # TP53 and A1BG were taken already
    assert match.summary()["n_duplicates"] == 2


def test_the_best_name_takes_a_row(default_table):
    names = ["Cd3e", "CD3E", "ENSG00000141510.2", "TP53"]
    match = match_genes(names, default_table)
    # exact-case symbol beats the case-insensitive one; the table's own Ensembl id and its
    # exact symbol rank alike, so var order decides
    assert matched_symbols(match, names, default_table) == {
        "CD3E": "CD3E",
        "ENSG00000141510.2": "TP53",
    }
    assert sorted(match.duplicates) == ["Cd3e", "TP53"]


def test_case_only_matches_are_counted(default_table):
    assert match_genes(["Cd3e", "Lyz2", "Ms4a1", "CD19"], default_table).n_case_differs == 2


def test_ortholog_map_keeps_one_to_one_pairs(tmp_path):
    import pandas as pd

    from sc_genept.genes import ortholog_map

    pairs = {"Cd3e": "CD3E", "Ins1": "INS", "Ins2": "INS", "Nan": None}
    # several data genes may share one ortholog (their expression is summed into it)
    assert ortholog_map(pairs) == {"Cd3e": "CD3E", "Ins1": "INS", "Ins2": "INS"}
    # a data gene with two orthologs is left to the other rules
    frame = pd.DataFrame({"mouse": ["Cd3e", "Cd3e", "Ms4a1"], "human": ["CD3E", "CD3D", "MS4A1"]})
    assert ortholog_map(frame) == {"Ms4a1": "MS4A1"}
    path = tmp_path / "orthologs.tsv"
    frame.iloc[1:].to_csv(path, sep="\t", index=False)
    assert ortholog_map(path) == {"Cd3e": "CD3D", "Ms4a1": "MS4A1"}
    with pytest.raises(ValueError, match="exactly two columns"):
        ortholog_map(frame.assign(extra=1))
    with pytest.raises(FileNotFoundError, match="no such file"):
        ortholog_map(tmp_path / "missing.csv")
    with pytest.raises(TypeError, match="orthologs must be a mapping"):
        ortholog_map(42)


def test_orthologs_match_genes_named_differently(default_table):
    names = ["H2-Aa", "Cd3e", "Ptprc"]
    plain = match_genes(names, default_table)
    assert set(matched_symbols(plain, names, default_table)) == {"Cd3e", "Ptprc"}
    assert plain.n_case_differs == 2 and plain.matched_by["ortholog"] == 0
    crossed = match_genes(names, default_table, orthologs={"H2-Aa": "HLA-DQA1", "Cd3e": "CD3E"})
    assert matched_symbols(crossed, names, default_table) == {
        "H2-Aa": "HLA-DQA1",
        "Cd3e": "CD3E",
        "Ptprc": "PTPRC",
    }
    assert crossed.matched_by["ortholog"] == 2 and crossed.summary()["n_symbol_case_differs"] == 1
