"""The README's Python examples run as written (so the README stays true)."""

import re
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import torch

README = Path(__file__).parent.parent / "README.md"


@pytest.mark.slow
def test_readme_examples_run(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # the examples save a model and checkpoints
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 2
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    query = namespace["query"]
    truth = query.obs["cell_type_ontology_term_id"].astype(str)
    called = query.obs["genept_cell_type_ontology_term_id"].astype(str)
    from sc_genept.metrics import evaluate

    scores = evaluate(truth, called)["value"]
    assert scores["sctab_accuracy"] > truth.value_counts(normalize=True).max() + 0.3
    # the saved model is the trained one, and the checkpoint is Lightning's, readable as data
    from sc_genept.model import GenePTClassifier

    loaded = GenePTClassifier.load(tmp_path / "pbmc_model")
    pd.testing.assert_frame_equal(
        loaded.predict(query), namespace["model"].predict(query), check_exact=False
    )
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] >= 1 and "state_dict" in checkpoint


def _first_install_command(text: str) -> str:
    install = text[text.index("## Install") :]
    return re.search(r"```bash\n(.*?)\n", install).group(1)


@pytest.mark.parametrize("doc", ["README.md", "docs/installation.md"])
def test_the_first_install_command_works_before_publication(doc):
    import tomllib

    root = README.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    text = (root / doc).read_text()
    # not on PyPI yet: `pip install sc-genept` would fail for a newcomer
    first = _first_install_command(text.replace("# Installation", "## Install", 1))
    assert first == f'pip install "{project["name"]} @ git+{project["urls"]["Source"]}"', first
