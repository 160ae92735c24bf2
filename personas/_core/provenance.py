"""What every artifact records about how it was made: package versions, time, derived seeds.

One place for them, so every manifest, table sidecar and report says the same thing the
same way.
"""

from __future__ import annotations

import datetime as _dt
import platform
import zlib
from importlib import metadata
from typing import Any

import numpy as np

from personas._core.checks import check_seed

__all__ = ["package_versions", "now_iso", "derive_seed", "derive_rng", "seeded_rng"]

_PACKAGES = ("personas", "numpy", "scipy", "pandas", "scikit-learn", "torch", "transformers", "safetensors")


def package_versions(packages: tuple[str, ...] = _PACKAGES) -> dict[str, str]:
    """``{package: version}`` for the packages given that are installed, plus ``python``."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-12-01T20:17:05+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _entropy(seed: int, keys: tuple) -> list[int]:
    return [check_seed(seed)] + [
        zlib.crc32(k.encode("utf-8")) if isinstance(k, str) else int(k) & 0xFFFFFFFF for k in keys
    ]


def derive_seed(seed: int, *keys: Any) -> int:
    """A 32-bit seed derived from ``seed`` and stable keys.

    Strings are hashed with CRC32 (never Python's salted ``hash``) and ints used as
    they are, so the seed of, say, a persona depends on its *name*, not on its
    position in a list: adding personas never changes the others' draws.
    """
    return int(np.random.SeedSequence(_entropy(seed, keys)).generate_state(1)[0])


def derive_rng(seed: int, *keys: Any) -> np.random.Generator:
    """A generator seeded with the same entropy as :func:`derive_seed` (``SeedSequence([seed, *keys])``)."""
    return np.random.default_rng(np.random.SeedSequence(_entropy(seed, keys)))


def seeded_rng(seed: int, *keys: Any) -> np.random.Generator:
    """``default_rng(derive_seed(seed, *keys))``: the generator of the layer analyses.

    Its stream differs from :func:`derive_rng`'s (one 32-bit derived seed instead of the whole
    entropy); the layer tables' samples, folds and shuffles are drawn from it, so moving them to
    :func:`derive_rng` would redraw every layer table.
    """
    return np.random.default_rng(derive_seed(seed, *keys))
