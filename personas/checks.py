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
from typing import Any, Iterable

import numpy as np

__all__ = ["check_int", "check_float", "check_seed", "check_bool", "check_choice", "check_str"]


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
