"""Files under hostile input and faults: outputs, model folders, JSON (issue 19).

An output appears complete or not at all, readable as the umask says, never over a
read-only file; an interrupt is never swallowed. A model folder is never half one model,
half another, and loading one reads its own plain files only, bounded before parsing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import scanpy as sc
from conftest import rehash

import sc_genept
from sc_genept._utils import atomic_path, write_atomic
from sc_genept.model import GenePTClassifier, ModelFolderError

MODEL_FOLDER = Path(sc_genept.__file__).parent / "data" / "models" / "pbmc68k"


@pytest.fixture
def umask():
    """Set the process umask for one test; restored after."""
    old = os.umask(0o022)
    os.umask(old)

    def set_to(mask: int) -> None:
        os.umask(mask)

    yield set_to
    os.umask(old)


@pytest.fixture
def read_only(monkeypatch):
    """Make a folder read-only, for root too (root may write anywhere: access() says no)."""
    made = []

    def make(folder: Path) -> Path:
        folder.chmod(0o555)
        made.append(folder)
        if os.geteuid() == 0:
            real = os.access

            def access(path, mode, *args, **kwargs):
                if Path(path) == folder and mode & os.W_OK:
                    return False
                return real(path, mode, *args, **kwargs)

            monkeypatch.setattr(os, "access", access)
        return folder

    yield make
    for folder in made:
        folder.chmod(0o755)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# ---- one atomic write ----------------------------------------------------------------------


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664)])
def test_an_output_follows_the_umask(mask, expected, tmp_path, umask):
    umask(mask)
    write_atomic(tmp_path / "new.txt", "x")
    (tmp_path / "old.txt").write_text("old")
    write_atomic(tmp_path / "old.txt", "new")  # a replacement too
    assert (_mode(tmp_path / "new.txt"), _mode(tmp_path / "old.txt")) == (expected, expected)


def test_a_read_only_output_is_not_replaced(tmp_path):
    target = tmp_path / "kept.txt"
    target.write_text("precious")
    target.chmod(0o444)
    with pytest.raises(PermissionError, match=r"kept\.txt is read-only"):
        write_atomic(target, "replaced")
    assert target.read_text() == "precious"
    assert os.listdir(tmp_path) == ["kept.txt"]


def test_an_output_that_is_a_folder_is_refused_before_the_block_runs(tmp_path):
    (tmp_path / "out.bin").mkdir()
    ran = []
    with pytest.raises(IsADirectoryError, match=r"out\.bin is a folder"):
        with atomic_path(tmp_path / "out.bin"):
            ran.append(True)
    assert ran == [] and os.listdir(tmp_path) == ["out.bin"]


def test_a_read_only_folder_is_named_not_a_temporary_file(tmp_path, read_only):
    (tmp_path / "ro").mkdir()
    folder = read_only(tmp_path / "ro")
    with pytest.raises(PermissionError) as err:
        with atomic_path(folder / "out.bin") as tmp:
            tmp.write_bytes(b"x")
    assert f"{folder} is not writable" in str(err.value)
    assert ".tmp" not in str(err.value)
    assert os.listdir(folder) == []


def test_an_interrupt_swallowed_during_a_write_still_stops_it(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                pass  # what h5py's weakref callbacks do with it ("Exception ignored")
            tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


# ---- out_file (genept_embed writes it through the same helper) -----------------------------


def test_out_file_follows_the_umask(pbmc, tmp_path, umask):
    umask(0o022)
    sc.tl.genept_embed(pbmc, use_raw=True, out_file=tmp_path / "e.npy")
    assert _mode(tmp_path / "e.npy") == 0o644


def test_out_file_read_only_or_a_folder_is_refused_and_kept(pbmc, tmp_path):
    kept = tmp_path / "kept.npy"
    kept.write_bytes(b"precious")
    kept.chmod(0o444)
    with pytest.raises(PermissionError, match=r"kept\.npy is read-only"):
        sc.tl.genept_embed(pbmc, use_raw=True, out_file=kept)
    assert kept.read_bytes() == b"precious"
    (tmp_path / "folder.npy").mkdir()
    with pytest.raises(IsADirectoryError, match=r"folder\.npy is a folder"):
        sc.tl.genept_embed(pbmc, use_raw=True, out_file=tmp_path / "folder.npy")
    assert sorted(os.listdir(tmp_path)) == ["folder.npy", "kept.npy"]
    assert "X_genept" not in pbmc.obsm


# ---- model folders: saving -----------------------------------------------------------------


@pytest.fixture
def pbmc_model():
    return GenePTClassifier.load(MODEL_FOLDER)


def test_a_saved_model_folder_follows_the_umask(pbmc_model, tmp_path, umask):
    umask(0o022)
    pbmc_model.save(tmp_path / "m")
    folder = tmp_path / "m"
    assert _mode(folder) == 0o755
    assert {p.name: _mode(p) for p in folder.iterdir()} == {
        "manifest.json": 0o644,
        "model.json": 0o644,
        "model.safetensors": 0o644,
    }


def test_overwriting_a_model_keeps_files_it_did_not_write(pbmc_model, tmp_path):
    folder = tmp_path / "m"
    pbmc_model.save(folder)
    (folder / "notes.txt").write_text("mine")
    pbmc_model.save(folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folder left
    GenePTClassifier.load(folder)


@pytest.mark.parametrize("where", [".", "cwd"])
def test_a_model_saved_into_the_working_folder_leaves_it_in_place(
    pbmc_model, tmp_path, monkeypatch, where
):
    folder = tmp_path / "m"
    pbmc_model.save(folder)
    monkeypatch.chdir(folder)
    pbmc_model.save("." if where == "." else os.getcwd(), overwrite=True)
    assert Path(os.getcwd()) == folder and Path("model.json").exists()  # cwd still usable
    GenePTClassifier.load(folder)


def test_an_interrupt_between_the_renames_keeps_the_previous_model(
    pbmc_model, tmp_path, monkeypatch
):
    from sc_genept.model import _folder

    folder = tmp_path / "m"
    pbmc_model.save(folder)
    before = (folder / "model.safetensors").read_bytes()
    renames, rename = [], os.rename

    def interrupted(src, dst):
        renames.append((src, dst))
        if len(renames) == 3:  # build → m failed, m → .old done; now build → m
            raise KeyboardInterrupt
        rename(src, dst)

    monkeypatch.setattr(_folder.os, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pbmc_model.save(folder, overwrite=True)
    monkeypatch.setattr(_folder.os, "rename", rename)
    assert (folder / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    GenePTClassifier.load(folder)


RACE = """
import random, sys, time
from pathlib import Path
import torch
from sc_genept.model import GenePTClassifier

name, root, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
model = GenePTClassifier.load_pretrained("pbmc68k")
with torch.no_grad():  # two models of one size, told apart by their weights
    next(model.module.parameters()).mul_(1 if name == "a" else 2)

# slow, uneven storage (a network file system): each file takes 0-20 ms to write
write_bytes, jitter = Path.write_bytes, random.Random(name)


def slow_write(self, data):
    written = write_bytes(self, data)
    time.sleep(jitter.uniform(0, 0.02))
    return written


Path.write_bytes = slow_write


def together(step):
    # both processes reach this step, then go (a barrier made of files)
    (root / f"at-{step}-{name}").touch()
    while len(list(root.glob(f"at-{step}-*"))) < 2:
        time.sleep(0.0005)


for i in range(n):
    together(i)
    try:
        model.save(root / f"m{i}")
    except FileExistsError:
        pass  # the other process got there first: refused, as it should be
"""


@pytest.mark.slow
def test_two_processes_saving_into_the_same_new_folders_never_mix(tmp_path):
    n = 20
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, name, str(tmp_path), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    first = next(GenePTClassifier.load(MODEL_FOLDER).module.parameters())
    for i in range(n):
        folder = tmp_path / f"m{i}"
        assert sorted(p.name for p in folder.iterdir()) == [
            "manifest.json",
            "model.json",
            "model.safetensors",
        ]
        weights = next(GenePTClassifier.load(folder).module.parameters())  # one model, whole
        assert weights.equal(first) or weights.equal(2 * first)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---- model folders: loading reads the folder's own plain files, bounded --------------------


@pytest.fixture
def folder(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(MODEL_FOLDER, copy)
    return copy


@pytest.mark.parametrize("name", ["model.safetensors", "model.json", "manifest.json"])
@pytest.mark.parametrize("where", ["outside", "inside"])
def test_a_file_that_is_a_symbolic_link_is_refused(name, where, folder, tmp_path):
    real = tmp_path / ("elsewhere" if where == "outside" else "model") / f"real-{name}"
    real.parent.mkdir(exist_ok=True)
    shutil.move(folder / name, real)
    (folder / name).symlink_to(real)
    with pytest.raises(ModelFolderError, match=rf"{name} .*is a symbolic link"):
        GenePTClassifier.load(folder)


def test_a_huge_manifest_is_refused_before_it_is_parsed(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps(manifest) + " " * 5_000_000)
    with pytest.raises(ModelFolderError, match=r"manifest\.json is larger than"):
        GenePTClassifier.load(folder)


@pytest.mark.parametrize("name", ["manifest.json", "model.json"])
def test_deeply_nested_json_is_sc_genepts_error(name, folder):
    (folder / name).write_text("[" * 20_000 + "]" * 20_000)
    if name == "model.json":
        rehash(folder)  # the hash is right: the content is hostile
    with pytest.raises(ModelFolderError, match=rf"{name} .*nested"):
        GenePTClassifier.load(folder)


def test_json_nested_past_the_limit_but_parsable_is_refused(folder):
    meta = json.loads((folder / "model.json").read_text())
    deep = "x"
    for _ in range(500):
        deep = [deep]
    meta["history"]["deep"] = deep
    (folder / "model.json").write_text(json.dumps(meta))
    rehash(folder)
    with pytest.raises(ModelFolderError, match=r"model\.json .*nested"):
        GenePTClassifier.load(folder)


SIGTERM = """
import os, signal, sys
from pathlib import Path
import anndata as ad
import sc_genept.tl
from sc_genept import cli

def annotate(adata, *args, key_added="genept_cell_type", **kwargs):
    adata.obs[key_added] = "T cell"
    adata.obs[f"{key_added}_confidence"] = 0.9

def killed_while_writing(self, path, **kwargs):
    Path(path).write_bytes(b"partial")
    os.kill(os.getpid(), signal.SIGTERM)
    Path(path).write_bytes(b"complete")

sc_genept.tl.genept_annotate = annotate
ad.AnnData.write_h5ad = killed_while_writing
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigterm_during_the_cli_write_leaves_no_partial_file(tmp_path):
    import anndata as ad
    import numpy as np

    ad.AnnData(np.ones((3, 2), dtype=np.float32)).write_h5ad(tmp_path / "in.h5ad")
    out = tmp_path / "out" / "annotated.h5ad"
    out.parent.mkdir()
    argv = ["annotate", str(tmp_path / "in.h5ad"), "-o", str(out), "--model", "pbmc68k"]
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SIGTERM), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 128 + signal.SIGTERM, (run.returncode, run.stderr)
    assert "terminated" in run.stderr
    assert os.listdir(out.parent) == []


def test_a_replaced_private_file_stays_private(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "secret.h5ad"
    target.write_text("old")
    target.chmod(0o600)
    write_atomic(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o600


@pytest.mark.parametrize("name", ["model/D:/x.json", "model/a:stream"])
def test_an_archive_member_naming_a_drive_or_a_stream_is_refused(tmp_path, name):
    import zipfile

    from sc_genept._files import unpack_archive

    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(name, "{}")
    with pytest.raises(ValueError, match="m.zip"):
        unpack_archive(archive, tmp_path / "out", error=ValueError, max_bytes=2**20)
    assert not any((tmp_path / "out").rglob("*.json"))


def test_a_signal_handler_that_raises_nothing_runs_once(monkeypatch):
    from sc_genept._files import deferred_signals

    calls = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGTERM)
        assert calls == [signal.SIGTERM]  # a graceful handler is not escalated by a rerun
    finally:
        signal.signal(signal.SIGTERM, previous)
