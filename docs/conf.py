"""Sphinx configuration."""

import os
from datetime import date
from importlib.metadata import metadata

info = metadata("sc-genept")
project = "sc_genept"
author = info["Author"] or "sc_genept developers"
copyright = f"{date.today().year}, {author}"
release = info["Version"]

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",
    "sphinxcontrib.bibtex",
]
autosummary_generate = True
templates_path = ["_templates"]
nitpicky = True  # every cross-reference must resolve (CI builds with -n -W)
nitpick_ignore = [
    ("py:class", "sentence_transformers.SentenceTransformer"),  # publishes no inventory
    ("py:data", "Ellipsis"),  # tuple[int, ...] in signatures
]
autodoc_member_order = "groupwise"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_use_ivar = True  # "Attributes" sections: fields, not a second description
typehints_defaults = "braces"
bibtex_bibfiles = ["references.bib"]
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
nb_execution_mode = "auto"  # tutorials run offline on bundled data
nb_execution_timeout = 600
nb_execution_raise_on_error = True
intersphinx_mapping = {
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "python": ("https://docs.python.org/3", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
}
html_theme = "sphinx_book_theme"
html_title = project
exclude_patterns = ["_build", "**/pbmc_model"]
# Offline (the CI machine reaches only the package index), the other projects' inventories
# cannot be fetched, so references into them cannot resolve; readthedocs builds online and
# checks them all. Our own references are checked in both.
if os.environ.get("SC_GENEPT_DOCS_OFFLINE"):
    intersphinx_mapping = {}
    nitpick_ignore_regex = [
        (
            r"py:.*",
            r"(anndata|numpy|pandas|scipy|scanpy|scvi|torch|lightning|matplotlib|networkx)\..*",
        ),
        (r"py:.*", r"(pathlib|collections|typing|os|io|datetime|dataclasses)\..*"),
    ]


def _public_bases(app, name, obj, options, bases):
    """Leave sc_genept's private base classes (code organisation, not API) out of "Bases"."""
    bases[:] = [
        base
        for base in bases
        if not (
            base.__module__.startswith("sc_genept.")
            and any(part.startswith("_") for part in base.__module__.split("."))
        )
    ]


def _own_members_only(app, what, name, obj, skip, options):
    """Document what sc_genept defines (also through its own base classes), not what a class
    inherits from scvi-tools, Lightning or torch: their pages document that."""
    if what != "class":
        return None
    function = getattr(obj, "fget", None) or getattr(obj, "__func__", None) or obj
    module = getattr(function, "__module__", None)
    if callable(function) and module is not None and not module.startswith("sc_genept"):
        return True
    return None


def setup(app):
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("autodoc-skip-member", _own_members_only)
