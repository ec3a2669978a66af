"""sc_genept uses other packages through their public API only (issue 18).

A private module or name (``scanpy.plotting._utils``, ``tiledbsoma_ml._distributed``) or an
override of a base class's private method (``_run_training_core``) breaks on the next
release of that package without a deprecation. The scan reads ``src/`` as syntax trees.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "sc_genept"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _external(module: str | None) -> bool:
    return bool(module) and module.partition(".")[0] not in {"sc_genept", "__future__"}


class _Scan(ast.NodeVisitor):
    """Private names of other packages that one module imports, reads or overrides."""

    def __init__(self, where: str):
        self.where = where
        self.found: list[str] = []
        self.aliases: dict[str, str] = {}  # local name -> external dotted name

    def _flag(self, node: ast.AST, what: str) -> None:
        self.found.append(f"{self.where}:{node.lineno}: {what}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if _external(alias.name):
                if any(_private(part) for part in alias.name.split(".")):
                    self._flag(node, f"import {alias.name}")
                self.aliases[alias.asname or alias.name.partition(".")[0]] = (
                    alias.name if alias.asname else alias.name.partition(".")[0]
                )

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not _external(node.module):
            return
        if any(_private(part) for part in node.module.split(".")):
            self._flag(node, f"from {node.module} import ...")
        for alias in node.names:
            if _private(alias.name):
                self._flag(node, f"from {node.module} import {alias.name}")
            self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if (
            isinstance(node.value, ast.Name)
            and node.value.id in self.aliases
            and _private(node.attr)
        ):
            self._flag(node, f"{self.aliases[node.value.id]}.{node.attr}")
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        bases = [self._resolve(base) for base in node.bases]
        for item in node.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and _private(item.name):
                for base in bases:
                    # an abstract method is the base's contract for subclasses to fill
                    # (scvi-tools' module contract: ``_get_inference_input``)
                    if base is not None and _overridable(base, item.name) is False:
                        self._flag(item, f"overrides {base.__qualname__}.{item.name}")
        self.generic_visit(node)

    def _resolve(self, base: ast.expr):
        """The external class a base expression names, imported; None for our own."""
        dotted = ast.unparse(base)
        head, _, rest = dotted.partition(".")
        if head not in self.aliases:
            return None
        target = self.aliases[head] + (f".{rest}" if rest else "")
        module, _, name = target.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError:  # an optional extra that is not installed
            return None


def _overridable(base: type, name: str) -> bool | None:
    """Whether ``base`` asks subclasses to define ``name`` (abstract); ``None``: it has none."""
    if not hasattr(base, name):
        return None
    return bool(getattr(getattr(base, name), "__isabstractmethod__", False))


def private_uses(source: str, where: str) -> list[str]:
    scan = _Scan(where)
    scan.visit(ast.parse(source))
    return scan.found


def test_src_uses_no_private_api_of_another_package():
    found = [
        use
        for path in sorted(SRC.rglob("*.py"))
        for use in private_uses(path.read_text(), str(path.relative_to(SRC.parent)))
    ]
    assert not found, "private API of another package:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "from scanpy.plotting._utils import savefig_or_show",
        "import tiledbsoma_ml._distributed",
        "from anndata import _io",
        "import scanpy as sc\nsc._settings",
        "from lightning.pytorch import Trainer\n"
        "class Quiet(Trainer):\n    def _run_stage(self):\n        pass\n",
    ],
)
def test_the_scan_finds_each_kind_of_private_use(source):
    assert private_uses(source, "example.py")


def test_the_scan_lets_public_and_own_names_pass():
    source = (
        "from __future__ import annotations\n"
        "from sc_genept._utils import warn_caller\n"
        "from scvi.module.base import BaseModuleClass\n"
        "class Module(BaseModuleClass):\n    def _get_inference_input(self, tensors):\n"
        "        return {}\n"
        "from scanpy import settings\n"
        "from lightning.pytorch import Trainer\n"
        "class Mine(Trainer):\n    def _our_helper(self):\n        return self.__class__\n"
    )
    assert private_uses(source, "example.py") == []
