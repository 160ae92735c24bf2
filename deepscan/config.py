"""Scan configuration and the published-code compatibility preset (docs/deepscan.md, sections 3, 5, 6)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Callable

from ._conventions import PRESET_DEFAULTS, PRESETS, canonical_preset, canonical_tail
from .scores import get_score, score_name

__all__ = ["ScanConfig", "PRESETS", "canonical_preset", "THRESHOLD_MODES", "GRID_SIZE", "as_scan_config"]

THRESHOLD_MODES = ("exact", "grid")
GRID_SIZE = 50

_DEFAULTS = {"score": "hc", "tail": "upper", "thresholds": "exact", "a_max": 0.5, "restarts": 1}


@dataclass(frozen=True)
class ScanConfig:
    """How to scan. Fields left as None take the default (or the preset's value).

    Parameters
    ----------
    score : str or callable, default 'hc'
        'hc', 'bj', 'ks' (or their long names), or ``f(n_alpha, n, alpha) -> score``
        vectorised over numpy arrays.
    tail : {'upper', 'lower', 'two'}, default 'upper'
    thresholds : {'exact', 'grid'}, default 'exact'
        'exact': every distinct p-value <= a_max, plus a_max; 'grid': 50 values
        ``linspace(a_max/50, a_max, 50)``.
    a_max : float in (0, 1], default 0.5
    restarts : int >= 1, default 1
        Restart 0 starts from all records, 1 from all nodes, later ones from random node subsets.
    preset : {None, 'ibm-2025'}
        'ibm-2025' reproduces the code published with Cintas et al. 2025 bit for bit. It
        fixes conventions only (``PRESETS``: lower tail as ``1 - upper``, pmin counting on
        the 50-point grid to a_max 0.5, first maximum from -10000, individual scans over
        every distinct stored pmax <= a_max); those fields cannot be overridden. Score
        (any, default 'hc' as in the persona runs) and restarts stay free: restarts 0
        and 1 are deterministic and equal the published ones; restarts from 2 on are
        drawn from the scan's seeded generator (the published code used numpy's unseeded
        global generator, so those cannot match bit for bit).

    Examples
    --------
    >>> ScanConfig()                      # consistent method: upper tail, pmax counting, exact thresholds, HC
    >>> ScanConfig(score="bj", restarts=5)
    >>> ScanConfig.from_preset("ibm-2025")
    >>> ScanConfig(preset="ibm-2025", score="bj", restarts=10)
    """

    score: str | Callable | None = None
    tail: str | None = None
    thresholds: str | None = None
    a_max: float | None = None
    restarts: int | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        preset = canonical_preset(self.preset)
        fixed = PRESETS.get(preset, {})
        defaults = {**_DEFAULTS, **PRESET_DEFAULTS.get(preset, {}), **fixed}
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("preset", preset)
        for key, default in defaults.items():
            if getattr(self, key) is None:
                set_(key, default)
        # validate and canonicalise
        if not callable(self.score):
            set_("score", score_name(self.score))
        else:
            get_score(self.score)
        set_("tail", canonical_tail(self.tail))
        if self.thresholds not in THRESHOLD_MODES:
            raise ValueError(f"unknown thresholds {self.thresholds!r}; use 'exact' or 'grid'")
        try:
            a_max = float(self.a_max)
        except (TypeError, ValueError):
            raise ValueError(f"a_max must be a number in (0, 1], got {self.a_max!r}") from None
        if not (math.isfinite(a_max) and 0.0 < a_max <= 1.0):
            raise ValueError(f"a_max must be in (0, 1], got {self.a_max!r}; 0.5 is the usual choice")
        set_("a_max", a_max)
        if isinstance(self.restarts, bool) or not isinstance(self.restarts, numbers.Integral) or self.restarts < 1:
            raise ValueError(f"restarts must be an integer >= 1, got {self.restarts!r}")
        set_("restarts", int(self.restarts))
        for key, value in fixed.items():
            have = getattr(self, key)
            if have != value:
                raise ValueError(
                    f"preset {preset!r} fixes {key}={value!r}, got {key}={have!r}; "
                    f"leave {key} unset with the preset, or drop the preset to change it"
                )

    @classmethod
    def from_preset(cls, preset: str) -> "ScanConfig":
        """The configuration of a named preset, e.g. ``ScanConfig.from_preset("ibm-2025")``."""
        return cls(preset=preset)

    @property
    def score_name(self) -> str:
        return score_name(self.score)

    @property
    def score_function(self) -> Callable:
        return get_score(self.score)

    @property
    def count_with(self) -> str:
        """Which end of the p-value range the group scan counts: 'pmax' (default) or 'pmin' (ibm-2025)."""
        return "pmin" if self.preset == "ibm-2025" else "pmax"

    def to_dict(self) -> dict:
        """JSON-ready fields (a callable score is stored by name)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["score"] = self.score_name
        return d


def as_scan_config(config) -> ScanConfig:
    """A :class:`ScanConfig` from None (the defaults), a ScanConfig, a preset name or a dict of its fields."""
    if config is None:
        return ScanConfig()
    if isinstance(config, ScanConfig):
        return config
    if isinstance(config, str):
        return ScanConfig(preset=config)
    if isinstance(config, dict):
        return ScanConfig(**config)
    raise ValueError(f"config must be a ScanConfig, a preset name or a dict of its fields, got {type(config).__name__}")
