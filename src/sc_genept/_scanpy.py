"""Expose the tools as ``sc.tl.genept_*`` so they read like the rest of a scanpy analysis.

This module imports only the standard library: ``import sc_genept`` must stay cheap for
the ``sc-genept`` command, whose ``--help`` should not wait for scanpy (about 1.5 s).
The tools are attached to :mod:`scanpy.tl` as soon as both packages are imported, in
either order: at once if scanpy is already imported, else right after scanpy's own
import finishes (see :func:`register_when_scanpy_loads`).
"""

from __future__ import annotations

import sys
import warnings
from importlib.abc import MetaPathFinder
from importlib.util import find_spec


def register() -> None:
    """Attach every public tool of :mod:`sc_genept.tl` to :mod:`scanpy.tl` (idempotent).

    When ``sc_genept.tl`` is itself being imported (``import sc_genept.tl`` is what
    imported scanpy), its tools do not exist yet: then ``scanpy.tl`` gets a fallback
    ``__getattr__`` that fetches them on first use.
    """
    import scanpy as sc

    from . import tl

    names = getattr(tl, "__all__", None)
    if names is None or not all(hasattr(tl, name) for name in names):
        _register_on_first_use(sc.tl)
        return
    for name in names:
        setattr(sc.tl, name, getattr(tl, name))


def _register_on_first_use(module) -> None:
    """Make ``module.genept_*`` look the tool up in :mod:`sc_genept.tl` (and keep it)."""
    previous = getattr(module, "__getattr__", None)
    if getattr(previous, "_sc_genept", False):
        return

    def __getattr__(name: str):
        if name.startswith("genept_"):
            from . import tl

            if name in tl.__all__:
                setattr(module, name, getattr(tl, name))
                return getattr(tl, name)
        if previous is not None:
            return previous(name)
        raise AttributeError(name)

    __getattr__._sc_genept = True
    module.__getattr__ = __getattr__


class _AfterScanpyImport(MetaPathFinder):
    """Finds ``scanpy`` like the other finders do, and registers once its import ends.

    It answers for the top-level ``scanpy`` only, once: it takes itself off
    :data:`sys.meta_path`, asks the remaining finders for scanpy's spec, and wraps that
    spec's loader so that :func:`register` runs right after scanpy's ``__init__``.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "scanpy":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = find_spec("scanpy")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            try:
                register()
            except Exception as err:  # noqa: BLE001 (never break `import scanpy` itself)
                warnings.warn(
                    f"sc_genept could not add its tools to scanpy.tl ({type(err).__name__}: "
                    f"{err}); call them as sc_genept.tl.genept_* instead.",
                    ImportWarning,
                    stacklevel=2,
                )

        # this loader object belongs to this spec alone (finders make one per find)
        spec.loader.exec_module = exec_then_register
        return spec


def register_when_scanpy_loads() -> None:
    """Register now if scanpy is imported, else as soon as it is (idempotent)."""
    scanpy = sys.modules.get("scanpy")
    if scanpy is not None and hasattr(scanpy, "tl"):
        register()
    elif scanpy is None and not any(isinstance(f, _AfterScanpyImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterScanpyImport())
