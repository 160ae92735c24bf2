"""Loads the optional compiled kernels (:mod:`deepscan._kernels`) on first use.

numba is imported only when a kernel is first asked for, so ``import deepscan`` stays
fast and works without numba. ``DEEPSCAN_NUMBA=0`` (or false/no/off) in the
environment switches the kernels off; the numpy path then gives the same results.
"""

from __future__ import annotations

import importlib
import os
import threading
from types import ModuleType

__all__ = ["kernels", "available", "switched_off"]

_lock = threading.Lock()
_loaded: list = []  # [module or None] once tried


def switched_off() -> bool:
    """Whether ``DEEPSCAN_NUMBA`` asks for the numpy path."""
    return os.environ.get("DEEPSCAN_NUMBA", "1").strip().lower() in ("0", "false", "no", "off")


def kernels() -> ModuleType | None:
    """The kernels module, or None when numba does not import or ``DEEPSCAN_NUMBA`` is 0."""
    with _lock:
        if not _loaded:
            module = None
            if not switched_off():
                try:  # numba is imported here, once
                    module = importlib.import_module("._kernels", __package__)
                except ImportError:  # numba is optional
                    module = None
            _loaded.append(module)
        return _loaded[0]


def available() -> bool:
    """Whether the compiled kernels can run."""
    return kernels() is not None
