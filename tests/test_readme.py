"""The README's Python examples run as written (so the README stays true)."""

import re
from pathlib import Path

import matplotlib

README = Path(__file__).parent.parent / "README.md"


def test_readme_examples_run(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # the examples save a model and checkpoints
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 2
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["query"].obs["genept_cell_type"].notna().all()
    assert (tmp_path / "pbmc_model" / "model.pt").exists() and (
        tmp_path / "ckpt" / "last.ckpt"
    ).exists()
