import functools
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "lightning", "scvi", "networkx", "obonet", "sentence_transformers", "openai")


@pytest.mark.slow
def test_import_loads_no_heavy_dependency_until_used():
    code = (
        "import sys, scanpy as sc\n"
        f"before = {{m for m in {HEAVY!r} if m in sys.modules}}\n"  # scanpy's own (1.10: torch)
        "import sc_genept\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules and m not in before]\n"
        "assert not heavy, heavy\n"
        "assert callable(sc.tl.genept_embed) and callable(sc.tl.genept_annotate)\n"
        "assert sc_genept.model.GenePTClassifier.__name__ == 'GenePTClassifier'\n"
        "assert 'torch' in sys.modules\n"
        "assert sc_genept.ontology.CellOntology.load().version\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_registration_installs_no_hook_on_scanpy():
    # the tools are plain attributes of scanpy.tl once sc_genept is imported: nothing of
    # sc_genept waits in the import system or in scanpy.tl for scanpy to load
    code = (
        "import sys, sc_genept\n"
        "ours = [f for f in sys.meta_path if type(f).__module__.startswith('sc_genept')]\n"
        "assert not ours, ours\n"
        "tl = sys.modules['scanpy'].tl\n"
        "assert vars(tl)['genept_embed'] is sc_genept.tl.genept_embed\n"
        "getattr_ = vars(tl).get('__getattr__')\n"
        "assert getattr_ is None or getattr_.__module__.startswith('scanpy'), getattr_\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "first",
    [
        pytest.param("import scanpy as sc; import sc_genept", id="scanpy-first"),
        pytest.param("import sc_genept; import scanpy as sc", id="sc_genept-first"),
        pytest.param("import sc_genept.tl; import scanpy as sc", id="tl-first"),
        pytest.param("from sc_genept.tl import genept_embed; import scanpy as sc", id="from-tl"),
        pytest.param(
            "import sc_genept; from scanpy import tl; import scanpy as sc", id="scanpy-tl"
        ),
    ],
)
def test_tools_join_scanpy_whichever_is_imported_first(first):
    code = (
        f"{first}\n"
        "import sc_genept.tl as tl\n"
        "assert sc.tl.genept_embed is tl.genept_embed\n"
        "assert sc.tl.genept_annotate is tl.genept_annotate\n"
        "assert sc.tl.pca is sc.pp.pca\n"  # scanpy's own lazy attribute still works
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr[-2000:]


SCRIPT = Path(sys.executable).with_name("sc-genept")
#: What the help does not wait for (it does wait for scanpy: see sc_genept._scanpy).
NOT_FOR_HELP = ("torch", "lightning", "scvi", "networkx", "sentence_transformers", "openai")


@functools.cache
def not_for_help() -> tuple[str, ...]:
    """``NOT_FOR_HELP`` less what ``import scanpy`` itself loads (scanpy 1.10: torch)."""
    code = f"import sys, scanpy\nprint(' '.join(m for m in {NOT_FOR_HELP!r} if m in sys.modules))"
    result = _run(code)
    assert result.returncode == 0, result.stderr[-2000:]
    return tuple(m for m in NOT_FOR_HELP if m not in result.stdout.split())


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["annotate", "--help"],
        ["genes", "embed", "--help"],
        ["demo", "-h"],
    ],
    ids=" ".join,
)
def test_cli_help_and_version_import_no_heavy_module(argv):
    # the console script's own code path: `from sc_genept.cli import main; main()`
    code = (
        "import sys\n"
        f"sys.argv = ['sc-genept', *{argv!r}]\n"
        "from sc_genept.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit_:\n"
        "    assert exit_.code == 0, exit_.code\n"
        f"heavy = sorted(m for m in sys.modules if m.partition('.')[0] in {not_for_help()!r})\n"
        "assert not heavy, heavy\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(("usage: sc-genept", "sc-genept ")), result.stdout


def test_installed_script_help_imports_no_heavy_module():
    if not SCRIPT.exists():
        pytest.skip(f"{SCRIPT} is not installed")
    # -X importtime lists every module the script imports (on stderr)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(SCRIPT), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: sc-genept")
    modules = {line.rpartition("|")[2].strip() for line in result.stderr.splitlines()}
    assert "sc_genept._cli_parser" in modules
    heavy = sorted(m for m in modules if m.partition(".")[0] in not_for_help())
    assert not heavy, heavy


@pytest.mark.slow
@pytest.mark.parametrize(
    "call",
    [
        "sys.argv = ['sc-genept', 'annotate', IN, '--model', 'pbmc68k', '-o', OUT]\n"
        "from sc_genept.cli import main\nmain()",
        "import anndata, scanpy as sc, sc_genept\n"
        "adata = anndata.read_h5ad(IN)\nsc.tl.genept_annotate(adata, model='pbmc68k')\n"
        "assert adata.obs['genept_cell_type'].notna().all()",
    ],
    ids=["cli", "genept_annotate"],
)
def test_annotating_with_a_saved_model_imports_neither_torch_scvi_tools_lightning_nor_numba_loops(
    call, pbmc_small_h5ad, tmp_path
):
    # prediction runs the network in NumPy: the training machinery and torch cost seconds
    code = (
        f"import sys\nIN, OUT = {str(pbmc_small_h5ad)!r}, {str(tmp_path / 'out.h5ad')!r}\n"
        f"{call}\n"
        "heavy = sorted({m.partition('.')[0] for m in sys.modules} & {'torch', 'scvi', 'lightning'})\n"
        # nor numba's compiled loops: their first call costs more than they save on 100 cells
        "heavy += [m for m in ['sc_genept._numba_kernels'] if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture
def pbmc_small_h5ad(tmp_path):
    """Raw counts of 100 cells of pbmc68k_reduced, as a user's h5ad."""
    import sc_genept

    adata = sc_genept.datasets.pbmc68k_reduced()[:100]
    counts = adata.raw.to_adata()
    path = tmp_path / "cells.h5ad"
    counts.write_h5ad(path)
    return path
