"""Fingerprints of what runs are computed from: the ``inputs`` of a run file's header.

- :func:`array_fingerprint`: SHA-256 of an array's dtype, shape and bytes;
- :func:`score_fingerprint`: what identifies a custom score function (a name, or a hash of its code);
- :func:`input_fingerprints`: the header's ``inputs`` of an experiment (the pools, the score, the caller's own).

A run file is resumed only when its fingerprints equal the new ones, so runs on other
data are never mixed in.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from typing import Any, Mapping

import numpy as np

from ._util import jsonable
from .config import ScanConfig

__all__ = ["array_fingerprint", "score_fingerprint", "input_fingerprints", "RESERVED_INPUTS"]


def array_fingerprint(a: np.ndarray) -> str:
    """``"sha256:<hex>"`` of an array's dtype, shape and bytes (C order)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B") if a.size else b"")
    return "sha256:" + h.hexdigest()


def _value_digest(h, value: Any, depth: int = 0) -> None:
    """Feed a stable description of a callable's constant, default or closure value to ``h``."""
    if depth > 20:
        h.update(b"<deep>")
    elif inspect.iscode(value):
        _code_digest(h, value, depth + 1)
    elif callable(value) and hasattr(value, "__code__"):
        _function_digest(h, value, depth + 1)
    elif isinstance(value, np.ndarray):
        h.update(array_fingerprint(value).encode())
    elif isinstance(value, (tuple, list, frozenset, set)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        h.update(f"{type(value).__name__}[".encode())
        for v in items:
            _value_digest(h, v, depth + 1)
            h.update(b",")
        h.update(b"]")
    elif isinstance(value, dict):
        h.update(b"{")
        for k in sorted(value, key=repr):
            h.update(repr(k).encode())
            _value_digest(h, value[k], depth + 1)
        h.update(b"}")
    else:
        h.update(repr(value).encode())  # numbers, strings, None: stable across processes


def _code_digest(h, code, depth: int) -> None:
    h.update(code.co_code)
    h.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
    for const in code.co_consts:
        _value_digest(h, const, depth + 1)


def _function_digest(h, fn, depth: int) -> None:
    _code_digest(h, fn.__code__, depth)
    _value_digest(h, fn.__defaults__, depth + 1)
    _value_digest(h, fn.__kwdefaults__, depth + 1)
    for cell in fn.__closure__ or ():
        try:
            _value_digest(h, cell.cell_contents, depth + 1)
        except ValueError:  # an empty cell
            h.update(b"<empty>")


def score_fingerprint(score: Any, name: str | None = None) -> str | None:
    """What identifies a custom score function in a run file's ``inputs`` (None for a built-in score).

    ``name`` (or the function's ``deepscan_id`` attribute) is used as given:
    ``"name:<name>"``; choose one that changes when the function does. Otherwise
    ``"code-sha256:<hex>"`` over the function's bytecode, constants, defaults and
    closure values (functools.partial and callable objects: their function and
    arguments). Globals the function reads are not included: give a name when the
    behaviour depends on them, or when the hash is not stable across processes
    (a closure over an object without a stable ``repr``).
    """
    if name is None:
        name = getattr(score, "deepscan_id", None)
    if name is not None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a score's name (score_id or deepscan_id) must be a non-empty string, got {name!r}")
        return f"name:{name}"
    if not callable(score):
        return None
    h = hashlib.sha256()
    if isinstance(score, functools.partial):
        _value_digest(h, (score.func, score.args, score.keywords))
    elif hasattr(score, "__code__"):
        _function_digest(h, score, 0)
    else:  # a callable object: its class's __call__ and its attributes
        call = getattr(type(score), "__call__", None)
        h.update(f"{type(score).__module__}.{type(score).__qualname__}".encode())
        if hasattr(call, "__code__"):
            _function_digest(h, call, 0)
        _value_digest(h, getattr(score, "__dict__", {}))
    return "code-sha256:" + h.hexdigest()


#: Keys of ``inputs`` that deepscan fills itself.
RESERVED_INPUTS = ("background", "clean_pool", "anomalous_pool", "score")


def input_fingerprints(bg, cl, an, config: ScanConfig, inputs: Mapping | None, score_id: str | None) -> dict:
    """The header's ``inputs``: what the runs were computed from, beyond the configuration.

    ``bg``, ``cl``, ``an``: the checked pools; ``inputs``: the caller's own fingerprints
    (keys :data:`RESERVED_INPUTS` refused); ``score_id``: a name for a custom score.
    """
    if not isinstance(inputs, (Mapping, type(None))):
        raise ValueError(f"inputs must be a mapping of fingerprints, got {type(inputs).__name__}")
    extra = {} if inputs is None else dict(inputs)
    clash = [k for k in extra if k in RESERVED_INPUTS]
    if clash:
        raise ValueError(f"inputs keys {clash} are reserved (deepscan fills {list(RESERVED_INPUTS)}); rename them")
    if score_id is not None and not callable(config.score):
        raise ValueError(f"score_id names a custom score function, but the score is the built-in {config.score!r}")
    out = {
        "background": array_fingerprint(bg),
        "clean_pool": array_fingerprint(cl),
        "anomalous_pool": array_fingerprint(an),
        "score": score_fingerprint(config.score, score_id) if callable(config.score) else None,
        **extra,
    }
    try:
        return jsonable(out)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"inputs must be JSON serialisable: {exc}") from None
