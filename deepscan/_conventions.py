"""Names shared by several modules: tails and presets (no dependencies, so no import cycles)."""

from __future__ import annotations

from typing import Any

__all__ = ["TAILS", "canonical_tail", "PRESETS", "PRESET_DEFAULTS", "canonical_preset"]

TAILS = ("upper", "lower", "two")
_TAIL_ALIASES = {
    "upper": "upper", "right": "upper", "greater": "upper",
    "lower": "lower", "left": "lower", "less": "lower",
    "two": "two", "two-tailed": "two", "two_tailed": "two", "two-sided": "two", "two_sided": "two", "both": "two",
}

#: Presets: the conventions each one fixes (docs/deepscan.md, section 6). "ibm-2025" is the code published
#: with Cintas et al. 2025: lower tail computed as 1 - upper, pmin counting in the group scan on
#: the 50-point grid to a_max 0.5, first maximum from -10000, individual scans over every
#: distinct stored pmax <= a_max. Score and restarts stay free parameters.
PRESETS: dict[str, dict[str, Any]] = {
    "ibm-2025": {"tail": "lower", "thresholds": "grid", "a_max": 0.5},
}
#: Defaults of the free parameters under a preset (the persona runs used HC; the published
#: code's own default score was BJ).
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "ibm-2025": {"score": "hc", "restarts": 1},
}


def canonical_tail(tail: str) -> str:
    """'upper', 'lower' or 'two' for a tail name or alias."""
    try:
        return _TAIL_ALIASES[str(tail).lower()]
    except KeyError:
        raise ValueError(f"unknown tail {tail!r}; use 'upper', 'lower' or 'two'") from None


def canonical_preset(preset: str | None) -> str | None:
    """The preset's canonical name ('ibm-2025'), or None."""
    if preset is None:
        return None
    key = str(preset).lower().replace("_", "-")
    if key not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; available: {sorted(PRESETS)} or None (the consistent default)")
    return key
