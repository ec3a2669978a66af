import subprocess
import sys

HEAVY = ("torch", "lightning", "scvi", "networkx", "obonet", "sentence_transformers", "openai")


def test_import_loads_no_heavy_dependency_until_used():
    code = (
        "import sys, scanpy as sc, sc_genept\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(sc.tl.genept_embed) and callable(sc.tl.genept_annotate)\n"
        "assert sc_genept.model.GenePTClassifier.__name__ == 'GenePTClassifier'\n"
        "assert 'torch' in sys.modules\n"
        "assert sc_genept.ontology.CellOntology.load().version\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
