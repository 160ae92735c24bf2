"""Parameter checks shared by every module: one rule and one message per kind of value.

In the style of scikit-learn's ``check_scalar``: each check takes the value and the
parameter's name, returns the value as the canonical Python type, and otherwise
raises ``ValueError`` (or ``TypeError`` for the wrong type) naming the parameter,
the bad value and what is allowed. ``bool`` is never accepted where a number is
expected (``True`` is not 1 statement), and strings are never coerced to numbers.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "check_int",
    "check_float",
    "check_seed",
    "check_bool",
    "check_choice",
    "check_str",
    "check_matrix",
    "check_labels",
    "check_classes",
    "check_directions",
    "check_meta",
    "check_settings",
    "check_scores",
]

# the two directions of a persona's statements (as personas.statements.DIRECTIONS)
_DIRECTIONS: tuple[str, str] = ("positive", "negative")


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def check_int(value: Any, name: str, *, min_val: int | None = None, max_val: int | None = None) -> int:
    """``value`` as an ``int`` in ``[min_val, max_val]``.

    Accepts Python and numpy integers (not bools, floats or strings, even ``2.0`` or ``"2"``).
    """
    if _is_bool(value) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an int; got {value!r} ({type(value).__name__})")
    value = int(value)
    if min_val is not None and value < min_val:
        raise ValueError(f"{name} must be >= {min_val}; got {value}")
    if max_val is not None and value > max_val:
        raise ValueError(f"{name} must be <= {max_val}; got {value}")
    return value


def check_float(
    value: Any,
    name: str,
    *,
    min_val: float | None = None,
    max_val: float | None = None,
    include_min: bool = True,
    include_max: bool = True,
) -> float:
    """``value`` as a finite ``float`` in the interval given (closed ends by default).

    Accepts ints and floats (Python or numpy), never bools or strings such as ``"0.9"``.
    """
    if _is_bool(value) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number; got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    if min_val is not None and (value < min_val or (not include_min and value == min_val)):
        raise ValueError(f"{name} must be {'>=' if include_min else '>'} {min_val}; got {value}")
    if max_val is not None and (value > max_val or (not include_max and value == max_val)):
        raise ValueError(f"{name} must be {'<=' if include_max else '<'} {max_val}; got {value}")
    return value


def check_seed(seed: Any, name: str = "seed") -> int:
    """A seed: an int in ``[0, 2**32 - 1]`` (what ``numpy.random.SeedSequence`` entropy words hold)."""
    return check_int(seed, name, min_val=0, max_val=2**32 - 1)


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a ``bool``; only ``True``/``False`` (Python or numpy) are accepted."""
    if not _is_bool(value):
        raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__})")
    return bool(value)


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``; the message lists them."""
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:  # unhashable or incomparable values are simply not a choice
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value


def check_str(value: Any, name: str, *, allow_empty: bool = False) -> str:
    """``value`` as a ``str`` (stripped of nothing); empty strings only when allowed."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string; got {value!r} ({type(value).__name__})")
    if not allow_empty and not value.strip():
        raise ValueError(f"{name} must be a non-empty string; got {value!r}")
    return value


# ----------------------------------------------------------------------------- arrays and tables


def _py(x: Any) -> Any:
    """A numpy scalar as the Python value (so messages read 'b', not np.str_('b'))."""
    return x.item() if isinstance(x, np.generic) else x


def check_matrix(X: Any, name: str = "X") -> np.ndarray:
    """``X`` as a finite 2-D float array ``(n_statements, hidden_size)``.

    Integer and bool arrays become float32; floating arrays keep their dtype. Raises
    ``ValueError`` for other shapes, empty arrays, non-numbers, NaN or infinity.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_statements, hidden_size); got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape}); pass at least one statement and one node")
    if not np.issubdtype(X.dtype, np.floating):
        if not (np.issubdtype(X.dtype, np.integer) or X.dtype == bool):
            raise ValueError(f"{name} must hold numbers; got dtype {X.dtype}")
        X = X.astype(np.float32)
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values; drop or repair those statements first")
    return X


def check_labels(labels: Any, n: int, name: str) -> np.ndarray:
    """``labels`` as a 1-D array with one label per statement (``n`` of them)."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D with one label per statement; got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} labels but there are {n} statements; they must be aligned row for row")
    return y


def check_classes(y: np.ndarray, name: str, min_count: int = 1, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Classes and counts of ``y``: at least two classes, each with ``min_count`` rows (the folds).

    ``what`` is appended to the message (e.g. ``" for persona 'x'"``).
    """
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        only = _py(classes[0]) if len(classes) else "nothing"
        raise ValueError(
            f"{name} has only one class ({only!r}){what}: separating needs at least two; "
            "pass statements of several personas / both directions"
        )
    if counts.min() < min_count:
        small = _py(classes[int(np.argmin(counts))])
        raise ValueError(
            f"{name}: class {small!r} has only {counts.min()} statements{what}, fewer than n_folds={min_count}; "
            "lower n_folds or add statements"
        )
    return classes, counts


def check_directions(directions: np.ndarray, name: str = "direction") -> None:
    """Raise unless every value is "positive" or "negative"."""
    bad = sorted({str(d) for d in np.unique(directions)} - set(_DIRECTIONS))
    if bad:
        raise ValueError(f"{name} values must be 'positive' or 'negative'; got {bad}")


def check_meta(meta: Any, n: int, columns: Sequence[str]):
    """The statements table ``meta``: a DataFrame of ``n`` rows with ``columns``, none missing.

    ``n`` is the number of activation rows it must align with; a ``direction`` column is
    checked with :func:`check_directions`.
    """
    import pandas as pd

    if not isinstance(meta, pd.DataFrame):
        raise ValueError(
            "meta must be a pandas DataFrame with columns "
            f"{list(columns)} aligned with the activation rows (as personas.store.load_layers returns); "
            f"got {type(meta).__name__}"
        )
    missing = [c for c in columns if c not in meta.columns]
    if missing:
        raise ValueError(f"meta lacks columns {missing}; it has {list(meta.columns)}")
    if len(meta) != n:
        raise ValueError(f"meta has {len(meta)} rows but the activations have {n}; they must be aligned row for row")
    if meta[list(columns)].isna().any().any():
        raise ValueError(f"meta has missing values in {list(columns)}")
    if "direction" in columns:
        check_directions(meta["direction"].to_numpy())
    return meta


def check_settings(given: Any, cls: type, name: str, *, required: bool = False) -> Any:
    """A settings object: ``given`` when it is a ``cls``, ``cls()`` (its defaults) when None.

    Raises
    ------
    TypeError
        If ``given`` is another type, or None while ``required``; the message names the parameter
        and the class to pass (settings are frozen dataclasses checked in their ``__post_init__``).
    """
    if given is None and not required:
        return cls()
    if not isinstance(given, cls):
        article = "an" if cls.__name__[:1].upper() in "AEIOU" else "a"
        raise TypeError(f"{name} must be {article} {cls.__name__} (e.g. {name}={cls.__name__}(...)); "
                        f"got {type(given).__name__}")
    return given
def check_scores(values: Any, n: int, *, name: str, statements: Sequence[str] | None = None) -> np.ndarray:
    """``values`` as a finite float64 array ``(n,)``: one score per statement, from readout or scorer ``name``.

    Parameters
    ----------
    values : array-like ``(n,)``
        What the readout or scorer returned.
    n : int
        The number of statements it scored.
    name : str
        The readout's or scorer's name, for the message.
    statements : sequence of str ``(n,)``, optional
        The statements, so the message can quote the first ones scored NaN or infinite.

    Raises
    ------
    ValueError
        For values that are not numbers, the wrong shape, NaN or infinity; the message
        names ``name``, the count of bad scores and the first offending statements.
    """
    try:
        scores = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"readout {name!r} returned {type(values).__name__} {_short(values)}, not numbers; "
                         f"it must return {n} finite scores, one per statement") from None
    if scores.shape != (n,):
        raise ValueError(f"readout {name!r} returned shape {scores.shape}; expected ({n},), one score per statement "
                         "in the order given")
    bad = np.flatnonzero(~np.isfinite(scores))
    if len(bad):
        first = ", ".join(f"#{i} ({scores[i]:g})" + (f" {_short(statements[i])}" if statements is not None else "")
                          for i in bad[:3])
        raise ValueError(f"readout {name!r} returned {len(bad)} non-finite score(s) (NaN or inf) of {n}, first: "
                         f"{first}; a readout must return a finite score for every statement")
    return scores


def _short(x: Any, width: int = 60) -> str:
    text = repr(x)
    return text if len(text) <= width else text[: width - 3] + "..."
