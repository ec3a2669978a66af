"""Pretrained models: the bundled one offline, remote ones over a real socket with pooch."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import stat
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import scanpy as sc

import sc_genept
from sc_genept.model import (
    GenePTClassifier,
    ModelFolderError,
    PretrainedModelError,
    available_models,
    register_pretrained,
    unregister_pretrained,
)
from sc_genept.model import _pretrained as pretrained

BUNDLED = "pbmc68k"
LABELS = "cell_type_ontology_term_id"
MODEL_FOLDER = Path(sc_genept.__file__).parent / "data" / "models" / BUNDLED


# ---- the bundled model ---------------------------------------------------------------------


def test_available_models_describe_the_bundled_model(cl, pbmc):
    table = available_models()
    assert BUNDLED in table.index
    row = table.loc[BUNDLED]
    assert row["source"] == "bundled" and bool(row["cached"])
    assert row["n_cells"] == 700
    assert "pbmc68k_reduced" in row["training_data"]
    assert sorted(row["labels"]) == sorted(set(pbmc.obs[LABELS].astype(str)))
    assert all(cl.name(t) == n for t, n in zip(row["labels"], row["label_names"], strict=True))
    assert sc_genept.genes.load("default").sha256 in row["gene_table"]
    assert row["inputs"] == ["X_genept", "X_genept_expression"]
    assert 0.5 < row["accuracy"] <= 1 and 0.4 < row["macro_f1"] <= 1
    assert "5-fold" in row["evaluation"]


def test_the_pancreas_model_knows_islets_and_survives_a_panel_of_blood_cells(cl, pbmc):
    row = available_models().loc["pancreas"]
    assert {"CL:0000169", "CL:0000171", "CL:0002064"} <= set(row["labels"])  # beta, alpha, acinar
    assert row["n_cells"] == 2142 and "Baron" in row["training_data"]
    assert row["macro_f1"] > 0.85 and "5-fold" in row["evaluation"]
    # PBMCs share 4 % of its 19k genes (scanpy's 765 highly variable ones): the model still
    # answers, and with immune terms (or, unsure, terms above them), never an islet or
    # exocrine type
    with pytest.warns(UserWarning, match=r"of the model's 19\d{3} genes \(4%\)"):
        sc.tl.genept_annotate(pbmc, model="pancreas")
    leukocyte = "CL:0000738"
    calls = pbmc.obs["genept_cell_type_ontology_term_id"].astype(str)
    immune = calls.map(lambda t: cl.is_ancestor(leukocyte, t))
    assert immune.mean() > 0.95
    assert calls[~immune].map(lambda t: cl.is_ancestor(t, leukocyte)).all()


def test_bundled_model_folder_is_small_and_loads_as_data():
    size = sum(p.stat().st_size for p in MODEL_FOLDER.iterdir())
    assert size < 2_000_000, size
    assert sorted(p.name for p in MODEL_FOLDER.iterdir()) == [
        "manifest.json",
        "model.json",
        "model.safetensors",
    ]
    model = GenePTClassifier.load_pretrained(BUNDLED)
    assert model.pretrained_name_ == BUNDLED
    assert model.is_trained_
    assert model.embedding_keys == ["X_genept", "X_genept_expression"]


def test_one_liner_annotates_with_the_bundled_model(pbmc, monkeypatch, tmp_path):
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
    sc.tl.genept_annotate(pbmc, model=BUNDLED)
    record = pbmc.uns["genept_cell_type"]
    assert record["pretrained_model"] == BUNDLED
    assert record["model_source"] == "pretrained"
    finest = pbmc.obs["genept_cell_type_finest_ontology_term_id"].astype(str)
    assert (finest == pbmc.obs[LABELS].astype(str)).mean() > 0.7  # its own training cells
    assert not (tmp_path / "cache").exists()  # nothing downloaded


def test_a_loaded_pretrained_model_object_is_recorded_too(pbmc):
    model = GenePTClassifier.load_pretrained(BUNDLED)
    out = sc.tl.genept_annotate(pbmc[:50].copy(), model, copy=True)
    assert out.uns["genept_cell_type"]["pretrained_model"] == BUNDLED


def test_the_bundled_registry_entry_pins_the_folder(tmp_path, monkeypatch):
    # a package whose model folder is not the one the registry lists is refused
    models = tmp_path / "sc_genept" / "data" / "models"
    shutil.copytree(MODEL_FOLDER.parent, models)
    manifest = models / BUNDLED / "manifest.json"
    manifest.write_text(manifest.read_text() + " ")
    monkeypatch.setattr(pretrained, "_models_dir", lambda: models)
    with pytest.raises(PretrainedModelError, match="not the one the registry lists"):
        GenePTClassifier.load_pretrained(BUNDLED)


def test_unknown_name_lists_the_pretrained_models(pbmc, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        KeyError, match=r"No pretrained model named 'pbmc86k'.*\['pancreas', 'pbmc68k'\]"
    ):
        GenePTClassifier.load_pretrained("pbmc86k")
    with pytest.raises(
        ModelFolderError, match=r"pbmc86k is not a folder.*\['pancreas', 'pbmc68k'\]"
    ):
        sc.tl.genept_annotate(pbmc, model="pbmc86k")


def test_an_existing_path_is_a_folder_even_when_it_is_a_name(pbmc, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    GenePTClassifier.load_pretrained(BUNDLED).save(tmp_path / BUNDLED)
    with pytest.warns(UserWarning, match="both a path here and a pretrained model's name"):
        out = sc.tl.genept_annotate(pbmc[:20].copy(), model=BUNDLED, copy=True)
    assert out.uns["genept_cell_type"]["model_source"] == "folder"
    assert "pretrained_model" not in out.uns["genept_cell_type"]


# ---- remote models: a real HTTP server on 127.0.0.1 ----------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(pretrained.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def registered():
    names = []

    def register(name, **kwargs):
        names.append(name)
        return register_pretrained(name, **kwargs)

    yield register
    for name in names:
        unregister_pretrained(name)


def _zip(members: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buffer.getvalue()


def _tar(members: dict[str, bytes], *, special: list[tarfile.TarInfo] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in special:
            tf.addfile(info)
    return buffer.getvalue()


def _model_files(prefix: str = "model/") -> dict[str, bytes]:
    return {prefix + p.name: p.read_bytes() for p in MODEL_FOLDER.iterdir()}


def _serve(server, name: str, data: bytes) -> tuple[str, str]:
    (server.root / name).write_bytes(data)
    return server.url(name), hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("archive", "make"),
    [
        ("model.zip", lambda: _zip(_model_files())),
        ("model.tar.gz", lambda: _tar(_model_files())),
        ("flat.zip", lambda: _zip(_model_files(prefix=""))),
    ],
)
def test_remote_model_is_downloaded_once_checked_and_loaded(
    archive, make, server, cache, registered, pbmc
):
    url, sha = _serve(server, archive, make())
    registered("remote", url=url, sha256=sha, training_data="test", accuracy=0.5)
    assert available_models().loc["remote", "source"] == url
    assert not available_models().loc["remote", "cached"]

    model = GenePTClassifier.load_pretrained("remote")
    assert model.pretrained_name_ == "remote" and model.is_trained_
    assert server.requests == [f"/{archive}"]
    unpacked = cache / "models" / f"remote-{sha[:16]}"
    assert sorted(p.name for p in unpacked.iterdir()) == [
        "manifest.json",
        "model.json",
        "model.safetensors",
    ]
    assert available_models().loc["remote", "cached"]

    # the one-liner uses the cached copy: no second request
    out = sc.tl.genept_annotate(pbmc[:30].copy(), model="remote", copy=True)
    assert out.uns["genept_cell_type"]["pretrained_model"] == "remote"
    assert server.requests == [f"/{archive}"]


def test_wrong_sha256_is_refused_and_nothing_is_kept(server, cache, registered):
    url, sha = _serve(server, "model.zip", _zip(_model_files()))
    wrong = hashlib.sha256(b"another archive").hexdigest()
    registered("remote", url=url, sha256=wrong)
    with pytest.raises(PretrainedModelError, match="does not have the sha256 its registry entry"):
        GenePTClassifier.load_pretrained("remote")
    assert server.requests == ["/model.zip"]  # it was downloaded, over the socket
    assert not (cache / "models").exists()  # and nothing unpacked
    assert not list((cache / "archives").glob("remote*"))  # nor kept


def test_a_changed_cached_copy_is_unpacked_again(server, cache, registered):
    url, sha = _serve(server, "model.zip", _zip(_model_files()))
    registered("remote", url=url, sha256=sha)
    GenePTClassifier.load_pretrained("remote")
    meta = cache / "models" / f"remote-{sha[:16]}" / "model.json"
    meta.write_text(meta.read_text().replace("GenePTClassifier", "Edited", 1))
    model = GenePTClassifier.load_pretrained("remote")  # from the verified archive again
    assert model.is_trained_
    assert server.requests == ["/model.zip"]


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _fifo(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.FIFOTYPE
    return info


UNSAFE = [
    pytest.param("evil.zip", lambda: _zip({**_model_files(), "../escaped": b"x"}), id="zip-dotdot"),
    pytest.param(
        "evil.zip", lambda: _zip({**_model_files(), "/tmp/escaped": b"x"}), id="zip-absolute"
    ),
    pytest.param(
        "evil.zip",
        lambda: _zip(_model_files(), links={"model/link": "/etc/passwd"}),
        id="zip-symlink",
    ),
    pytest.param(
        "evil.tar.gz", lambda: _tar({**_model_files(), "model/../../x": b"x"}), id="tar-dotdot"
    ),
    pytest.param(
        "evil.tar.gz", lambda: _tar({**_model_files(), "/abs/x": b"x"}), id="tar-absolute"
    ),
    pytest.param(
        "evil.tar.gz",
        lambda: _tar(_model_files(), special=[_link("model/link", "/etc/passwd")]),
        id="tar-symlink",
    ),
    pytest.param(
        "evil.tar.gz",
        lambda: _tar(_model_files(), special=[_link("model/hard", "/etc/passwd", tarfile.LNKTYPE)]),
        id="tar-hardlink",
    ),
    pytest.param(
        "evil.tar.gz", lambda: _tar(_model_files(), special=[_fifo("model/fifo")]), id="tar-fifo"
    ),
]


@pytest.mark.parametrize(("archive", "make"), UNSAFE)
def test_unsafe_archives_are_refused_before_anything_is_written(
    archive, make, server, cache, registered, tmp_path
):
    url, sha = _serve(server, archive, make())  # the hash is right: the content is not
    registered("remote", url=url, sha256=sha)
    with pytest.raises(PretrainedModelError, match="refused and nothing was unpacked"):
        GenePTClassifier.load_pretrained("remote")
    assert not (cache / "models" / f"remote-{sha[:16]}").exists()
    leftovers = list((cache / "models").iterdir()) if (cache / "models").exists() else []
    assert leftovers == []
    assert not (cache / "escaped").exists() and not (tmp_path / "escaped").exists()


def test_an_archive_without_a_model_folder_says_so(server, cache, registered):
    url, sha = _serve(server, "empty.zip", _zip({"readme.txt": b"hello"}))
    registered("remote", url=url, sha256=sha)
    with pytest.raises(PretrainedModelError, match=r"does not hold a model folder.*readme\.txt"):
        GenePTClassifier.load_pretrained("remote")


def test_a_server_that_is_down_says_what_failed(cache, registered):
    registered("remote", url="http://127.0.0.1:9/model.zip", sha256="0" * 64)
    with pytest.raises(PretrainedModelError, match=r"Could not download .*127\.0\.0\.1:9"):
        GenePTClassifier.load_pretrained("remote")


def test_hub_source_without_huggingface_hub_gives_the_install_hint(cache, registered, monkeypatch):
    registered(
        "remote",
        url="http://127.0.0.1:9/model.zip",
        sha256="0" * 64,
        hf_repo="sc-genept/models",
        hf_filename="model.zip",
    )
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    with pytest.raises(
        PretrainedModelError, match=r"the URL failed.*pip install 'sc-genept\[hub\]'"
    ):
        GenePTClassifier.load_pretrained("remote")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "a/b", "url": "http://x/m.zip"}, ValueError, "name must be letters"),
        ({"sha256": "abc"}, ValueError, "sha256 must be 64 hexadecimal digits"),
        ({"url": None}, ValueError, "Pass url= and/or hf_repo="),
        ({"url": "http://x/m.pt"}, ValueError, r"must be an archive .*\.zip"),
        ({"colour": "red"}, TypeError, r"Unknown registry fields \['colour'\]"),
        ({"name": BUNDLED}, ValueError, "exists; pass overwrite=True"),
    ],
)
def test_register_refuses_a_bad_entry(kwargs, error, match):
    arguments = {"name": "remote", "url": "http://x/m.zip", "sha256": "0" * 64, **kwargs}
    with pytest.raises(error, match=match):
        register_pretrained(**arguments)
    unregister_pretrained("remote")


def test_registry_file_is_plain_json():
    entries = json.loads((MODEL_FOLDER.parent / "registry.json").read_text())
    assert [e["name"] for e in entries] == ["pancreas", BUNDLED]
    assert all(e["folder"] == e["name"] for e in entries)


# ---- hostile servers, archives, registries and caches (issue 19) ----------------------------


def test_a_download_without_a_length_stops_at_the_cap(server, cache, registered, monkeypatch):
    monkeypatch.setattr(pretrained, "MAX_DOWNLOAD_BYTES", 2**20, raising=False)
    url = server.stream("endless.zip", count=400)  # 25 MiB, as if it never ended
    registered("remote", url=url, sha256="0" * 64)
    with pytest.raises(PretrainedModelError, match=r"endless\.zip.* more than 1\.0 MiB"):
        GenePTClassifier.load_pretrained("remote")
    assert not list((cache / "archives").iterdir())  # no partial download kept


def test_a_download_stops_at_the_size_its_entry_declares(server, cache, registered):
    url, sha = _serve(server, "model.zip", _zip(_model_files()))
    registered("remote", url=url, sha256=sha, size=1000)
    with pytest.raises(PretrainedModelError, match=r"more than the 1000 bytes its registry entry"):
        GenePTClassifier.load_pretrained("remote")


def test_a_download_that_announces_too_much_is_refused_before_it_is_read(server, cache, registered):
    url = server.stream("huge.zip", count=1, length=5 * 2**30)
    registered("remote", url=url, sha256="0" * 64)
    with pytest.raises(PretrainedModelError, match=r"announces 5\.0 GiB"):
        GenePTClassifier.load_pretrained("remote")


def test_a_slow_download_stops_at_the_time_limit(server, cache, registered, monkeypatch):
    monkeypatch.setattr(pretrained, "DOWNLOAD_TIMEOUT_S", 1.0, raising=False)
    url = server.stream("slow.zip", chunk=b"x" * 10, count=40, delay=0.1)  # 4 s in all
    registered("remote", url=url, sha256="0" * 64)
    with pytest.raises(PretrainedModelError, match=r"did not finish within 1 s"):
        GenePTClassifier.load_pretrained("remote")


@pytest.mark.parametrize("location", ["ftp://127.0.0.1:9/m.zip", "file:///etc/passwd"])
def test_a_redirect_away_from_http_is_refused(location, server, cache, registered):
    url = server.redirect("moved.zip", location)
    registered("remote", url=url, sha256="0" * 64)
    with pytest.raises(
        PretrainedModelError,
        match=rf"{re.escape(location)} \(where .*moved\.zip redirects\) is not",
    ):
        GenePTClassifier.load_pretrained("remote")


def _duplicated_zip() -> bytes:
    buffer = io.BytesIO()
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(buffer, "w") as zf:
        for name, data in _model_files().items():
            zf.writestr(name, data)
        zf.writestr("model/model.json", b"{}")
    return buffer.getvalue()


def _bad_crc_zip() -> bytes:
    data = bytearray(_zip(_model_files()))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("model/model.safetensors")
    start = (
        info.header_offset
        + 30
        + int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    )
    start += int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    data[start + 1000] ^= 0xFF  # one flipped byte of the stored weights
    return bytes(data)


def _truncated_tar(gzip_whole: bool) -> bytes:
    import gzip

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for name, data in _model_files().items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    if gzip_whole:
        return gzip.compress(raw)[:-2000]  # the gzip stream is cut
    first = tarfile.open(fileobj=io.BytesIO(raw)).getmembers()[0]
    second = first.offset_data + -(-first.size // 512) * 512
    return gzip.compress(raw[: second + 100])  # cut inside the second member's header


DAMAGED = [
    pytest.param("dup.zip", _duplicated_zip, "twice", id="zip-duplicate"),
    pytest.param(
        "dup.tar.gz",
        lambda: _tar({**_model_files()}, special=[tarfile.TarInfo("model/model.json")]),
        "twice",
        id="tar-duplicate",
    ),
    pytest.param(
        "clash.zip",
        lambda: _zip({**_model_files(), "model/model.json/x": b"x"}),
        "both a file and a folder",
        id="file-and-folder",
    ),
    pytest.param(
        "case.zip",
        lambda: _zip({**_model_files(), "model/MODEL.json": b"{}"}),
        "differ only in case",
        id="case-clash",
    ),
    pytest.param("crc.zip", _bad_crc_zip, "damaged", id="bad-crc"),
    pytest.param("cut.tar.gz", lambda: _truncated_tar(False), "damaged", id="tar-header-cut"),
    pytest.param("cut.tgz", lambda: _truncated_tar(True), "damaged", id="gzip-cut"),
]


@pytest.mark.parametrize(("archive", "make", "match"), DAMAGED)
def test_damaged_or_clashing_archives_are_sc_genepts_error(
    archive, make, match, server, cache, registered
):
    url, sha = _serve(server, archive, make())
    registered("remote", url=url, sha256=sha)
    on_disk = rf"remote-{sha[:16]}{re.escape(archive[archive.index('.') :])}"  # in the cache
    with pytest.raises(PretrainedModelError, match=rf"{on_disk} .*{match}"):
        GenePTClassifier.load_pretrained("remote")
    assert not (cache / "models" / f"remote-{sha[:16]}").exists()
    assert list((cache / "models").iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": "file:///tmp/m.zip"}, r"url must be an http:// or https:// address"),
        ({"url": "ftp://x/m.zip"}, r"url must be an http:// or https:// address"),
        ({"name": "m" * 250}, r"name must be at most 100 characters"),
        ({"labels": 42}, r"labels must be a list of Cell Ontology ids"),
        ({"labels": ["CL:0000084", 7]}, r"labels must be a list of Cell Ontology ids"),
        ({"label_names": "T cell"}, r"label_names must be a list of strings"),
        ({"n_cells": -3}, r"n_cells must be a whole number ≥ 0"),
        ({"accuracy": "high"}, r"accuracy must be a number in \[0, 1\]"),
        ({"description": 5}, r"description must be a string"),
        ({"hyperparameters": []}, r"hyperparameters must be a dict"),
        ({"size": 0}, r"size must be a whole number ≥ 1"),
        ({"hf_repo": "../x", "hf_filename": "m.zip"}, r"hf_repo must be 'owner/name'"),
    ],
)
def test_register_refuses_entries_that_cannot_work(kwargs, match):
    arguments = {"name": "remote", "url": "http://x/m.zip", "sha256": "0" * 64, **kwargs}
    try:
        with pytest.raises((ValueError, TypeError), match=match):
            register_pretrained(**arguments)
    finally:
        unregister_pretrained(arguments["name"])
    assert list(available_models().index) == ["pancreas", BUNDLED]  # every model still listed


@pytest.mark.parametrize(
    ("content", "match"),
    [("[" * 100_000 + "]" * 100_000, "nested"), ("[]" + " " * 20_000_000, "larger than")],
    ids=["nested", "huge"],
)
def test_a_hostile_bundled_registry_is_sc_genepts_error(content, match, tmp_path, monkeypatch):
    (tmp_path / "registry.json").write_text(content)
    monkeypatch.setattr(pretrained, "_models_dir", lambda: tmp_path)
    with pytest.raises(PretrainedModelError, match=rf"registry\.json .*{match}"):
        available_models()


@pytest.mark.parametrize(
    ("where", "kind"),
    [
        ("", "file"),
        ("models", "file"),
        ("models/remote-{sha16}", "file"),
        ("archives/remote-{sha16}.zip", "folder"),
    ],
    ids=["cache-is-a-file", "models-is-a-file", "entry-is-a-file", "archive-is-a-folder"],
)
def test_a_cache_of_the_wrong_kind_is_named(where, kind, server, cache, registered):
    url, sha = _serve(server, "model.zip", _zip(_model_files()))
    registered("remote", url=url, sha256=sha)
    path = cache / where.format(sha16=sha[:16]) if where else cache
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "file":
        path.write_text("not a folder")
    else:
        path.mkdir()
    with pytest.raises(PretrainedModelError, match=rf"{re.escape(str(path))} is a {kind}"):
        GenePTClassifier.load_pretrained("remote")
