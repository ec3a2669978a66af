"""What a model folder's metadata must be, checked against its weights before any work.

A folder passes its manifest's hashes when it was saved as it is, not when it was saved
by sc_genept: metadata written by hand or by another tool is checked here for types,
ranges and agreement with the weights' shapes before a network is built from it (a
``n_members`` of 200,000 would otherwise build for minutes), and the weights for NaN
(a NaN temperature calls every cell "cell", silently).
"""

from __future__ import annotations

from numbers import Real
from typing import TYPE_CHECKING

import numpy as np

from sc_genept.model._folder import ModelFolderError
from sc_genept.model._numpy_network import layer_names

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Bounds of a network's sizes: far beyond any model that trains here, far below harm.
_MAX = {"n_hidden": 65_536, "n_layers": 64, "n_members": 256}
#: Weights that may hold NaN: a novelty space not fitted (models saved before it).
_MAY_BE_NAN = {"novelty_centroids"}
#: Weights a folder may lack: the novelty space (saved before it existed: the check is
#: then off) and what only training reads.
_OPTIONAL = {"novelty_variance", "novelty_centroids", "is_gene"}


def check_meta(meta: dict, state: Mapping[str, np.ndarray], where: str) -> dict:
    """The network's options from ``meta``, once ``meta`` and the weights ``state`` agree.

    Every weight of ``state`` is then one the network has, of its shape, and every weight
    it needs is there (only the novelty space and the training-only ``is_gene`` may lack).

    Raises :class:`~sc_genept.model.ModelFolderError` naming the field and what it holds.
    """
    options = _network_options(_field(meta, "init_params", dict, where), where)
    for name, kind in (
        ("is_trained", bool),
        ("embedding_provenance", dict),
        ("gene_sets", dict),
        ("history", dict),
    ):
        _field(meta, name, kind, where)
    if meta.get("calibration") is not None:
        _field(meta, "calibration", dict, where)
    widths, terms = _registry_shapes(_field(meta, "registry", dict, where), where)
    unknown = [t for t in terms if t not in meta["ontology"]["terms"]]  # a dict: read_folder
    if unknown:
        raise ModelFolderError(
            f"{where}: the label set names {unknown[:5]}, which the folder's own Cell Ontology "
            "terms lack: the metadata was edited. Save the model again."
        )
    _check_weights(state, options, sum(widths), len(terms), where)
    return options


def _field(parent: dict, name: str, kind: type, where: str):
    value = parent.get(name)
    # bool is an int to Python, and "false" a str: neither passes for the other
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ModelFolderError(
            f"{where}: {name} must be {_KIND_NAMES.get(kind, kind.__name__)}, got {value!r} "
            f"({type(value).__name__}). The file was not written by GenePTClassifier.save: "
            "save the model again."
        )
    return value


_KIND_NAMES = {bool: "true or false", dict: "a JSON object", list: "a list", int: "an integer"}


def _network_options(init_params: dict, where: str) -> dict:
    options = dict(_field(init_params, "non_kwargs", dict, f"{where} init_params"))
    expected = {"n_hidden", "n_layers", "dropout", "n_members", "loss"}
    if set(options) != expected:
        raise ModelFolderError(
            f"{where}: init_params.non_kwargs must have exactly {sorted(expected)}, got "
            f"{sorted(options)}."
        )
    for name, low in (("n_hidden", 1), ("n_layers", 0), ("n_members", 1)):
        value = _field(options, name, int, f"{where} init_params")
        if not low <= value <= _MAX[name]:
            raise ModelFolderError(
                f"{where}: init_params {name}={value} is outside [{low}, {_MAX[name]}]."
            )
    dropout = options["dropout"]
    if not isinstance(dropout, Real) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ModelFolderError(f"{where}: init_params dropout={dropout!r} is not in [0, 1).")
    if options["loss"] not in ("hierarchical", "flat"):
        raise ModelFolderError(
            f"{where}: init_params loss={options['loss']!r} is not 'hierarchical' or 'flat'."
        )
    return options


def _registry_shapes(registry: dict, where: str) -> tuple[list[int], list[str]]:
    """Input widths and the label set (CL ids) the registry describes."""
    keys = _field(_field(registry, "setup_args", dict, where), "embedding_keys", list, where)
    fields = _field(registry, "field_registries", dict, where)
    try:
        terms = fields["labels"]["state_registry"]["categorical_mapping"]
        widths = [fields[f"input_{i}"]["summary_stats"][f"n_input_{i}"] for i in range(len(keys))]
    except (KeyError, TypeError) as err:
        raise ModelFolderError(f"{where}: the registry lacks {err}.") from None
    if isinstance(terms, dict):  # a numpy array, as the registry's JSON form tags it
        terms = terms.get("__ndarray__")
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ModelFolderError(f"{where}: embedding_keys must be a list of names, got {keys!r}.")
    if not isinstance(terms, list) or not terms or not all(isinstance(t, str) for t in terms):
        raise ModelFolderError(f"{where}: the label set must be a list of CL ids.")
    if not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ModelFolderError(f"{where}: input widths must be positive integers, got {widths}.")
    return widths, terms


def _member_shapes(options: dict, n_input: int, n_terms: int) -> dict[str, tuple]:
    """The shape of every weight of the members ``options`` describe."""
    shapes, n_hidden = {}, options["n_hidden"]
    for member in range(options["n_members"]):
        width = n_input
        for linear, norm in layer_names(f"members.{member}", options["n_layers"]):
            out = n_hidden if norm else n_terms
            shapes |= {f"{linear}.weight": (out, width), f"{linear}.bias": (out,)}
            if norm:
                shapes |= {f"{norm}.weight": (n_hidden,), f"{norm}.bias": (n_hidden,)}
            width = n_hidden
    return shapes


def _check_weights(state, options: dict, n_input: int, n_terms: int, where: str) -> None:
    """The weights' shapes are the network the options describe; their values are numbers."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    expected = {
        "input_mean": (n_input,),
        "input_std": (n_input,),
        "subtree": (n_terms, n_terms),
        "temperature": (),
        "is_gene": (n_input,),
        "novelty_variance": (n_input,),
        "novelty_centroids": (n_terms, n_input),
        **_member_shapes(options, n_input, n_terms),
    }
    wrong = {
        k: shapes.get(k)
        for k, shape in expected.items()
        if shapes.get(k) != shape and (k in shapes or k not in _OPTIONAL)
    }
    extra = sorted(set(shapes) - set(expected))
    if wrong or extra:
        shown = dict(list(wrong.items())[:4])
        raise ModelFolderError(
            f"{where} describes {options['n_members']} member(s) of {options['n_layers']} "
            f"hidden layer(s) of {options['n_hidden']} over {n_input} inputs and {n_terms} "
            f"terms, but the weights hold {shown or 'extra ' + str(extra[:4])}"
            + (f" (expected {[expected[k] for k in shown]})" if shown else "")
            + ": the metadata and the weights are of different models."
        )
    broken = [
        k
        for k, v in state.items()
        if k not in _MAY_BE_NAN and v.dtype.kind == "f" and not np.isfinite(v).all()
    ]
    if broken:
        raise ModelFolderError(
            f"{where}: the weights {broken[:5]} hold NaN or infinite values; a model with them "
            "would call every cell at the root with NaN confidence. Train and save it again."
        )
    if float(state["temperature"]) <= 0:
        raise ModelFolderError(f"{where}: the temperature must be positive.")
