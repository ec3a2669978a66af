"""Sphinx configuration."""

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
autodoc_member_order = "groupwise"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
typehints_defaults = "braces"
bibtex_bibfiles = ["references.bib"]
myst_enable_extensions = ["colon_fence", "dollarmath"]
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
