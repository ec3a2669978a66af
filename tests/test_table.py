import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sc_genept
from sc_genept.genes import GeneEmbeddings


def test_save_load_round_trip(tiny_table, tmp_path):
    path = tiny_table.save(tmp_path / "t.parquet")
    back = GeneEmbeddings.read(path, with_texts=True)
    np.testing.assert_array_equal(back.embeddings, tiny_table.embeddings)
    assert back.symbols.tolist() == tiny_table.symbols.tolist()
    assert back.ensembl_ids.tolist() == tiny_table.ensembl_ids.tolist()
    assert back.texts.tolist() == tiny_table.texts.tolist()
    assert back.provenance == tiny_table.provenance
    assert GeneEmbeddings.read(path).texts is None
    assert sc_genept.genes.load(path).n_genes == 5


def test_float16_storage_is_close(default_table, tmp_path):
    sub = GeneEmbeddings(
        default_table.symbols[:50], default_table.embeddings[:50].astype(np.float64) * 1.001
    )
    back = GeneEmbeddings.read(sub.save(tmp_path / "t.parquet", dtype="float16"))
    np.testing.assert_allclose(back.embeddings, sub.embeddings, atol=1e-3)


def test_truncate_renormalises_first_dims(tiny_table):
    short = tiny_table.truncate(2)
    assert short.n_dims == 2 and short.provenance.truncated_from == 4
    np.testing.assert_allclose(short.embeddings[4], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(short.embeddings[2], [0, 0])  # nothing left to normalise
    assert short.truncate(1).provenance.truncated_from == 4
    with pytest.raises(ValueError, match="between 1 and 4"):
        tiny_table.truncate(5)


@pytest.mark.parametrize(
    ("symbols", "vectors", "message"),
    [
        (["A", "A"], np.eye(2), "unique"),
        (["A", "B"], [[0.0, np.nan], [1, 1]], "NaN"),
        (["A"], np.eye(2), "one symbol per embedding row"),
        (["A", ""], np.eye(2), "non-empty"),
        (["A", None], np.eye(2), r"1 of 2 are missing or blank \(rows \[1\]"),
        (["A", "B"], [[0.0, np.inf], [1, 1]], r"1 genes \(e.g. \['A'\]"),
        ([], np.zeros((0, 3)), "at least one gene"),
        (["A"], np.zeros((1, 0)), "at least one gene and one dimension"),
        (["A", "B"], [[1.0], [1.0, 2.0]], "one row of equal length per gene"),
    ],
)
def test_bad_tables_are_refused(symbols, vectors, message):
    with pytest.raises(ValueError, match=message):
        GeneEmbeddings(symbols, vectors)


def test_ensembl_versions_are_stripped():
    table = GeneEmbeddings(["A", "B"], np.eye(2), ensembl_ids=["ENSG00000141510.17", None])
    assert table.ensembl_ids.tolist() == ["ENSG00000141510", None]


def test_foreign_parquet_is_refused(tmp_path):
    pq.write_table(pa.table({"gene": ["A"], "x": [1.0]}), tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="not an sc_genept gene table"):
        GeneEmbeddings.read(tmp_path / "other.parquet")


def test_unknown_table_name_says_what_exists():
    with pytest.raises(FileNotFoundError, match="default"):
        sc_genept.genes.load("no-such-table")


def test_default_table_is_what_the_docs_say(default_table):
    assert default_table.n_dims == 384
    # every human protein-coding gene, and other genes the sources describe (e.g. MALAT1)
    assert 20_500 <= default_table.n_genes <= 24_000
    assert {"CD3E", "INS", "MALAT1"} <= set(default_table.symbols)
    assert np.mean([e is not None for e in default_table.ensembl_ids]) > 0.9
    np.testing.assert_allclose(np.linalg.norm(default_table.embeddings, axis=1), 1, atol=2e-3)
    p = default_table.provenance
    assert "MiniLM" in p.embedding_model and "HPA" in p.text_source
    assert "CC BY-SA 4.0" in p.license and "Human Protein Atlas" in p.license


def test_default_table_ships_no_text_of_unshippable_sources():
    """CellMarker and PanglaoDB (no open licence, shared/SOURCE.md) never enter the package."""
    table = sc_genept.genes.load("default", with_texts=True)
    extra = table.provenance.extra
    assert set(extra["sources"]) <= {"blood", "tissue", "refseq"}
    assert {"cellmarker", "panglaodb"} <= set(extra["not_shipped_sources"])
    assert extra["builder"] == "scripts/build_knowledge_table.py"
    # the wording of those sources' texts: "X is a reported marker of …", "X is a marker gene of"
    assert not any(
        "is a reported marker of" in t or "is a marker gene of" in t for t in table.texts
    )


def test_default_table_ships_its_texts():
    table = sc_genept.genes.load("default", with_texts=True)
    text = dict(zip(table.symbols, table.texts, strict=True))["CD3E"]
    assert text.startswith("CD3E: CD3 epsilon subunit of T-cell receptor complex. CD3E RNA")
    assert "Across blood lineages: group enriched in T cells" in text


def test_former_default_stays_loadable():
    table = sc_genept.genes.load("go-minilm", with_texts=True)
    assert table is not sc_genept.genes.load("default", with_texts=True)
    text = dict(zip(table.symbols, table.texts, strict=True))["CD3E"]
    assert text.startswith("CD3E: CD3 epsilon subunit of T-cell receptor complex. Gene Ontology:")
    assert "biological_process" not in text  # GO roots are dropped


def test_bundled_table_is_read_once_and_shared_read_only(monkeypatch):
    from sc_genept.genes import _registry

    monkeypatch.setattr(_registry, "_loaded", {})  # start cold, leave the real cache alone
    reads = []
    read = GeneEmbeddings.read.__func__
    monkeypatch.setattr(
        GeneEmbeddings,
        "read",
        classmethod(lambda cls, *a, **k: reads.append(a) or read(cls, *a, **k)),
    )
    first = sc_genept.genes.load("default")
    assert sc_genept.genes.load("default") is first
    assert sc_genept.genes.load("knowledge-minilm") is first
    assert len(reads) == 1
    with pytest.raises(ValueError, match="read-only"):
        first.embeddings[0, 0] = 1.0  # no caller can change what the next one gets
    with pytest.raises(ValueError, match="read-only"):
        first.symbols[0] = "NOTAGENE"
    sc_genept.genes.load("default", with_texts=True)
    assert len(reads) == 2  # the table with texts is another entry


def test_gene_index_is_built_once_per_table(monkeypatch, tiny_table):
    from sc_genept.genes import match_genes
    from sc_genept.genes._ids import _TableIndex

    builds = []
    init = _TableIndex.__init__
    monkeypatch.setattr(_TableIndex, "__init__", lambda self, t: builds.append(t) or init(self, t))
    for _ in range(3):
        match_genes(["CD3E", "LYZ"], tiny_table)
    match_genes(["CD3E"], tiny_table.truncate(2))  # same genes: the index is shared
    assert len(builds) == 1


def test_damaged_tables_say_so(tiny_table, tmp_path):
    path = tiny_table.save(tmp_path / "t.parquet")
    table = pq.read_table(path)
    vectors = table.column("embedding").combine_chunks()
    holed = pa.FixedSizeListArray.from_arrays(
        vectors.values, 4, mask=pa.array([False, True, False, False, False])
    )
    (tmp_path / "cut.parquet").write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="not a readable parquet file"):
        sc_genept.genes.load(tmp_path / "cut.parquet")
    try:
        pq.write_table(table.set_column(3, "embedding", holed), tmp_path / "holed.parquet")
    except pa.ArrowNotImplementedError:  # older pyarrow cannot write null vectors at all
        pytest.skip(f"pyarrow {pa.__version__} cannot write a table with a null vector")
    with pytest.raises(ValueError, match="damaged sc_genept gene table .1 genes have no vector"):
        sc_genept.genes.load(tmp_path / "holed.parquet")


def test_nonsense_table_arguments_are_refused(tiny_table, tmp_path):
    with pytest.raises(TypeError, match="n_dims must be a whole number"):
        tiny_table.truncate(2.5)
    with pytest.raises(ValueError, match="n_dims must be ≥ 1"):
        tiny_table.truncate(0)
    with pytest.raises(ValueError, match='dtype must be "float32" or "float16"'):
        tiny_table.save(tmp_path / "t.parquet", dtype="int8")
    with pytest.raises(TypeError, match="table name"):
        sc_genept.genes.load(None)
