"""The conda-forge recipe and pyproject.toml agree: same run requirements, bounds, version."""

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parent.parent
#: PyPI name → conda-forge name, where they differ.
CONDA_NAMES = {"torch": "pytorch", "igraph": "python-igraph"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _recipe() -> dict:
    return yaml.safe_load((ROOT / "recipe" / "recipe.yaml").read_text())


def _conda_requirements(lines: list[str], python_min: str) -> dict[str, str]:
    """``{name: specifier}`` of a recipe's run list (``${{ python_min }}`` substituted)."""
    out = {}
    for line in lines:
        name, _, spec = line.replace("${{ python_min }}", python_min).partition(" ")
        out[name] = spec.replace(" ", "")
    return out


def test_run_requirements_match_pyproject():
    recipe = _recipe()
    python_min = recipe["context"]["python_min"]
    run = _conda_requirements(recipe["requirements"]["run"], python_min)
    expected = {"python": f">={python_min}"}
    for line in _pyproject()["project"]["dependencies"]:
        requirement = Requirement(line)
        assert not requirement.marker and not requirement.extras, line  # noarch: none allowed
        name = CONDA_NAMES.get(requirement.name.lower(), requirement.name.lower())
        expected[name] = str(requirement.specifier)
    assert run == expected


def test_python_bound_version_and_entry_points_match():
    project, recipe = _pyproject()["project"], _recipe()
    assert project["requires-python"] == f">={recipe['context']['python_min']}"
    # the recipe names the release the dev version leads to
    assert Version(project["version"]).base_version == recipe["context"]["version"]
    scripts = [f"{k} = {v}" for k, v in project["scripts"].items()]
    assert recipe["build"]["python"]["entry_points"] == scripts
    assert recipe["build"]["noarch"] == "python"
    tests = recipe["tests"]
    assert tests[0]["python"]["pip_check"] is True
    assert "sc_genept" in tests[0]["python"]["imports"]
    license_name = (ROOT / "LICENSE").read_text().splitlines()[0]
    code, *data = recipe["about"]["license"].split(" AND ")
    assert re.sub(r"[- ]", "", code).lower() in re.sub(r"[- ]", "", license_name).lower()
    assert "CC-BY-SA-4.0" in data  # the default gene table carries HPA data
    for path in recipe["about"]["license_file"]:
        assert (ROOT / path).is_file()
