from sc_genept import cli


def test_demo_embeds_plots_and_annotates(tmp_path, capsys):
    path = cli.demo(tmp_path / "demo", max_epochs=20)
    assert path.exists() and path.stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "736 of 765 genes matched" in out
    assert "sctab_accuracy" in out and "annotated 143" in out


def test_genes_text_and_info(tmp_path, capsys):
    from pathlib import Path

    sample = Path(__file__).parent / "data" / "mygene_sample.json"
    assert (
        cli.main(
            ["genes", "text", "--from", "mygene", str(sample), "--out", str(tmp_path / "t.parquet")]
        )
        == 0
    )
    assert (tmp_path / "t.parquet").exists()
    assert cli.main(["genes", "info", "default"]) == 0
    out = capsys.readouterr().out
    assert "2 gene texts from mygene" in out
    assert "genes: 20,598; with an Ensembl id: 94.5%; texts: yes" in out
