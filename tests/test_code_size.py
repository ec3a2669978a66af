"""Short functions and files in ``src/`` (issue 18): a reader sees a whole unit at once.

Lines of code are those that are not blank, not comment-only and not the docstring.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "sc_genept"
MAX_FUNCTION = 100  # lines of code
MAX_FILE = 600  # lines


def _docstring_lines(node: ast.AST) -> set[int]:
    body = getattr(node, "body", None)
    first = body[0] if body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return set(range(first.lineno, first.end_lineno + 1))
    return set()


def long_functions(source: str, limit: int = MAX_FUNCTION) -> dict[str, int]:
    """Functions of ``source`` with more than ``limit`` lines of code, and their count."""
    lines = source.splitlines()
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = _docstring_lines(node)
            code = [
                number
                for number in range(node.lineno, node.end_lineno + 1)
                if number not in docstring
                and lines[number - 1].strip()
                and not lines[number - 1].lstrip().startswith("#")
            ]
            if len(code) > limit:
                found[f"{node.name} (line {node.lineno})"] = len(code)
    return found


def _sources():
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_files_and_functions_are_short(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_FILE
    assert long_functions(source) == {}


def test_the_count_leaves_out_docstrings_comments_and_blank_lines():
    body = "\n".join(["    # a comment", "", "    x = 1"] * 3)
    source = f'def f():\n    """Doc.\n\n    More.\n    """\n{body}\n'
    assert long_functions(source, limit=4) == {}  # the def line and three statements
    assert long_functions(source, limit=3) == {"f (line 1)": 4}
