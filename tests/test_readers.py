"""Gene tables and texts from outside sources, read from local files."""

import pickle

import numpy as np
import pandas as pd
import pytest

import sc_genept
from sc_genept.genes import (
    GeneEmbeddings,
    SentenceTransformerEmbedder,
    UnsafePickleError,
    build_table,
    from_mapping,
    read_genept_pickle,
    text,
)

DATA = __import__("pathlib").Path(__file__).parent / "data"


@pytest.fixture
def genept_dict():
    rng = np.random.default_rng(0)
    return {s: rng.normal(size=12).tolist() for s in ["CD3E", "LYZ", "MS4A1", "NOTAGENE"]}


@pytest.mark.parametrize("as_arrays", [False, True])
def test_genept_pickle_round_trip(genept_dict, tmp_path, as_arrays):
    payload = {k: np.asarray(v) for k, v in genept_dict.items()} if as_arrays else genept_dict
    path = tmp_path / "GenePT_gene_embedding_ada_text.pickle"
    path.write_bytes(pickle.dumps(payload))
    table = read_genept_pickle(path)
    assert table.symbols.tolist() == list(genept_dict)
    np.testing.assert_allclose(table.embeddings, np.asarray(list(genept_dict.values())), rtol=1e-6)
    assert table.ensembl_ids.tolist() == [
        "ENSG00000198851",
        "ENSG00000090382",
        "ENSG00000156738",
        None,
    ]
    assert "GenePT" in table.provenance.text_source
    assert sc_genept.genes.load(path).n_genes == 4  # load() dispatches on the suffix


class _Exploit:
    """Unpickling this would run os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    "payload",
    [
        lambda m: {"CD3E": _Exploit(m)},
        lambda m: _Exploit(m),
        lambda m: {"CD3E": pd.Timestamp("2024-01-01")},
    ],
)
def test_other_pickles_are_refused_without_running(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps(payload(marker)))
    with pytest.raises(UnsafePickleError, match="Refusing"):
        read_genept_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [(["CD3E", [1.0]], "dict of gene symbols"), ({"CD3E": ["a", "b"]}, "numbers")],
)
def test_wrong_shapes_are_refused(tmp_path, payload, message):
    path = tmp_path / "odd.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UnsafePickleError, match=message):
        read_genept_pickle(path)


def test_parquet_in_hugging_face_layout(genept_dict, tmp_path):
    frame = pd.DataFrame({"gene_name": list(genept_dict), "embedding": list(genept_dict.values())})
    frame.to_parquet(tmp_path / "genept_tools.parquet")
    table = sc_genept.genes.load(tmp_path / "genept_tools.parquet")
    assert table.n_dims == 12 and table.symbols[0] == "CD3E"


def test_wide_csv_and_dict(genept_dict, tmp_path):
    frame = pd.DataFrame(genept_dict).T.reset_index(names="symbol")
    frame.to_csv(tmp_path / "table.csv", index=False)
    table = sc_genept.genes.load(tmp_path / "table.csv")
    np.testing.assert_allclose(table.embeddings, from_mapping(genept_dict).embeddings, rtol=1e-6)
    with pytest.raises(ValueError, match="Unknown gene-table format"):
        sc_genept.genes.read_table_file(tmp_path / "table.xlsx")


def test_ncbi_gene_info_with_summaries():
    texts = text.read_ncbi_gene_info(
        DATA / "gene_info_sample.tsv", summaries=DATA / "gene_summaries_sample.tsv"
    )
    assert texts["symbol"].tolist() == ["CD3E", "LYZ"]  # the microRNA is not protein-coding
    assert texts["ensembl_id"].tolist() == ["ENSG00000198851", "ENSG00000090382"]
    assert texts["text"][0].startswith(
        "CD3E: CD3 epsilon subunit of T-cell receptor complex. Also known as: T-cell"
    )
    assert texts["text"][0].endswith("forms the T-cell receptor-CD3 complex.")
    assert (
        texts["text"][1]
        == "LYZ: lysozyme. Also known as: lysozyme C; 1,4-beta-N-acetylmuramidase C."
    )


def test_mygene_json_and_texts_round_trip(tmp_path):
    texts = text.read_mygene_json(DATA / "mygene_sample.json")
    assert texts["symbol"].tolist() == ["MS4A1", "NKG7"]
    assert texts["ensembl_id"].tolist() == [
        "ENSG00000156738",
        "ENSG00000105374",
    ]  # NKG7 from the NCBI map
    assert (
        texts["text"][1]
        == "NKG7: natural killer cell granule protein 7. Enables granule exocytosis in natural killer cells."
    )
    for suffix in ("parquet", "csv", "tsv"):
        back = text.read_texts(text.write_texts(texts, tmp_path / f"t.{suffix}"))
        assert back["text"].tolist() == texts["text"].tolist()
    with pytest.raises(ValueError, match="lacks the column"):
        text.read_texts(text.write_texts(texts.drop(columns="text"), tmp_path / "bad.csv"))


def test_local_embedder_reproduces_the_bundled_table(default_table, tmp_path):
    texts = text.bundled().iloc[::500]  # 42 genes spread over the table
    table = build_table(
        texts, SentenceTransformerEmbedder(), text_source="bundled", cache_dir=tmp_path
    )
    rows = pd.Index(default_table.symbols).get_indexer(texts["symbol"])
    np.testing.assert_allclose(
        table.embeddings, default_table.embeddings[rows], atol=2e-3
    )  # float16 storage
    assert table.ensembl_ids.tolist() == default_table.ensembl_ids[rows].tolist()
    assert isinstance(table, GeneEmbeddings) and table.texts is not None


def test_index_and_id_columns_are_not_dimensions(genept_dict, tmp_path):
    frame = pd.DataFrame(genept_dict).T.reset_index(names="symbol")
    frame.insert(1, "entrez_id", [916, 4069, 931, 1])
    frame.to_csv(tmp_path / "with_index.csv")  # pandas writes its index as "Unnamed: 0"
    table = sc_genept.genes.load(tmp_path / "with_index.csv")
    assert table.n_dims == 12


def test_texts_with_gaps_are_refused(tmp_path):
    texts = pd.DataFrame({"symbol": ["CD3E", "LYZ"], "text": ["CD3E: a gene.", None]})
    with pytest.raises(ValueError, match="no symbol or no text"):
        build_table(texts, SentenceTransformerEmbedder(), text_source="x", cache_dir=tmp_path)
