"""Argument checks shared by sc_genept's public functions: one message per kind of mistake.

Each raises a :class:`ValueError` (or :class:`TypeError` for the wrong type) that names the
argument, what it got and what it takes, before anything is read, loaded or paid for.
"""

from __future__ import annotations

import numbers


def positive_int(name: str, value, *, allow_none: bool = False) -> int | None:
    """``value`` as an int ≥ 1 (``None`` passes where ``allow_none``)."""
    if value is None and allow_none:
        return None
    # bool is an int to Python, but True as a batch size is a mistake, not a 1
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be a whole number ≥ 1{_or_none(allow_none)}, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be ≥ 1{_or_none(allow_none)}, got {value}.")
    return int(value)


def non_negative_int(name: str, value) -> int:
    """``value`` as an int ≥ 0."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be a whole number ≥ 0, got {value!r}.")
    if value < 0:
        raise ValueError(f"{name} must be ≥ 0, got {value}.")
    return int(value)


def positive_number(name: str, value, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (or ≥ 0 where ``allow_zero``)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}.")
    value = float(value)
    if not (value >= 0 if allow_zero else value > 0) or value == float("inf"):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}.")
    return value


def non_empty_str(name: str, value) -> str:
    """``value`` as a string with something in it."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}.")
    return value


def check_fraction(name: str, value, interval: str) -> float:
    """``value`` as a float in ``interval`` (``"(0, 1]"``, ``"[0, 1)"`` or ``"[0, 1]"``).

    Raises :class:`TypeError` for a non-number (a string, a bool) and :class:`ValueError`
    outside the interval, NaN included, naming the argument and what it takes.
    """
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number in {interval}, got {value!r}.")
    number = float(value)
    above = number > 0 if interval[0] == "(" else number >= 0
    below = number < 1 if interval[-1] == ")" else number <= 1
    if not (above and below):  # NaN fails both
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}.")
    return number


def _or_none(allow_none: bool) -> str:
    return " (or None for the default)" if allow_none else ""


def check_adata(adata, name: str = "adata", *, empty_ok: bool = True) -> None:
    """Refuse anything but an AnnData, and one without cells unless ``empty_ok``.

    Runs before any attribute of ``adata`` is read, so the error is sc_genept's own.
    """
    from anndata import AnnData

    if not isinstance(adata, AnnData):
        raise TypeError(
            f"{name} must be an AnnData (cells × genes), got {type(adata).__name__}: pass the "
            "AnnData object itself."
        )
    if not empty_ok and adata.n_obs == 0:
        raise ValueError(
            f"{name} has no cells: pass an AnnData with cells (check the subsetting that made it)."
        )


#: The two kinds of expression values :func:`check_value_kind` tells apart.
_KINDS = {True: "integer counts", False: "non-integer (normalised) values"}


def check_value_kind(first: str, counts: bool | None, here: str, here_counts: bool | None) -> None:
    """Refuse values of another kind than the first values with any (counts or normalised).

    ``first`` and ``here`` name the two stretches of the matrix (e.g. ``"rows 0–25"``);
    ``counts`` and ``here_counts`` say whether each holds integer counts (``None``: no
    non-zero value, nothing to tell). Counts are log-normalised and normalised values are
    used as they are, so a matrix holding both would be embedded two ways at once: the one
    check the in-memory, Dask and SOMA paths share.
    """
    if counts is None or here_counts is None or counts == here_counts:
        return
    raise ValueError(
        f"{first} hold {_KINDS[counts]} but {here} hold {_KINDS[here_counts]}: the matrix "
        "mixes raw counts with normalised values. Pass normalize=False to embed the values "
        "as they are, or a layer that is all counts."
    )


def check_numeric(matrix, source: str, fix: str) -> None:
    """Refuse a matrix of anything but numbers (text, Python objects) before it is read.

    GenePT-w weights each gene's vector by its expression value: strings or objects (a
    table read as text, an ``object`` array) cannot, and NumPy's own error on them names
    neither the matrix nor the fix. ``fix`` is the conversion to suggest.
    """
    import numpy as np

    dtype = getattr(matrix, "dtype", None)
    if dtype is None or np.dtype(dtype).kind in "biuf":
        return
    raise TypeError(
        f"{source} has dtype {np.dtype(dtype)}, not numbers: GenePT-w weights each gene's "
        f"vector by its expression value. If the entries are numbers stored as text or "
        f"objects, convert them first ({fix}); else pass the matrix of counts (layer= or "
        "use_raw=True)."
    )
