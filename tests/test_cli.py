from sc_genept import cli


def test_demo_embeds_plots_and_annotates(tmp_path, capsys):
    path = cli.demo(tmp_path / "demo", max_epochs=20)
    assert path.exists() and path.stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "736 of 765 genes matched" in out
    assert "sctab_accuracy" in out and "annotated 143" in out
