"""Settings of the paper's DeepScan experiments: pool sizes and sample sizes, with the paper's defaults.

- ``PoolSizes``: how many statements form the background, the clean pool and the anomalous pool.
- ``SampleSizes``: how many records each run draws from the clean and the anomalous pool, and
  how many runs.
- ``ScanPlan``: what is scanned: the personas, the layer, the levels and the topic grouping.
- ``ScanSettings``: how each experiment is run: pool and sample sizes, the DeepScan settings,
  detection power and baselines.
- ``scan_config``: the DeepScan settings from a preset name or explicit fields.

One word, one meaning: a *pool* is a set of statements an experiment draws from; a *sample* is
what one run draws from the pools (``deepscan`` calls its sizes ``clean_ssize`` and ``anom_ssize``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Sequence

from personas._core.checks import check_bool, check_int
from personas.scans.baselines import BASELINES

__all__ = ["PoolSizes", "SampleSizes", "ScanPlan", "ScanSettings", "scan_config"]

LEVELS = (2, 1, 0)


@dataclass(frozen=True)
class PoolSizes:
    """Statements in each pool of one experiment (the paper: 250 ``-``, 50 ``-``, 300 ``+`` at level 2).

    Attributes
    ----------
    background : int
        Statements that define "normal".
    clean : int
        Statements from the background's distribution, never part of the background.
    anomalous : int
        The persona's ``+`` statements.
    """

    background: int = 250
    clean: int = 50
    anomalous: int = 300

    def __post_init__(self) -> None:
        for f in fields(self):
            check_int(getattr(self, f.name), f"pool_sizes.{f.name}", min_val=1)


@dataclass(frozen=True)
class SampleSizes:
    """What each run draws from the pools (the paper: 50 clean + 50 anomalous records, 100 runs).

    Attributes
    ----------
    clean, anomalous : int
        Records per run from the clean and the anomalous pool (``deepscan``'s ``clean_ssize``
        and ``anom_ssize``).
    n_runs : int
        Runs per experiment.
    """

    clean: int = 50
    anomalous: int = 50
    n_runs: int = 100

    def __post_init__(self) -> None:
        check_int(self.clean, "sample_sizes.clean", min_val=0)
        check_int(self.anomalous, "sample_sizes.anomalous", min_val=0)
        check_int(self.n_runs, "sample_sizes.n_runs", min_val=1)


def _levels(levels: Any, name: str) -> tuple[int, ...]:
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__iter__"):
        raise TypeError(f"{name} must be a list of levels, e.g. [2, 1, 0]; got {levels!r}")
    levels = tuple(levels)
    bad = [lv for lv in levels if isinstance(lv, bool) or lv not in LEVELS]
    if bad:
        raise ValueError(f"{name}: unknown level(s) {bad}; choose from {list(LEVELS)} (2: within persona, "
                         "1: within topic, 0: between topics)")
    return levels


@dataclass(frozen=True)
class ScanPlan:
    """What the scans cover: the experiments of the paper's Table 2 for these personas at one layer.

    Attributes
    ----------
    personas : tuple of str
        Dataset names of the personas scanned.
    layer : int
        The layer scanned (recorded in the run files' node layout).
    levels : tuple of {2, 1, 0}
        2: within persona, 1: within topic, 0: between topics (one experiment per topic).
        Default: all three, as the paper.
    topics : dict, optional
        Topic -> personas (``load_topics()``); needed for levels 1 and 0.
    sources : dict, optional
        Where the statements and topics came from (``study_inputs(...).files``: paths and
        sha256), recorded in new run files' headers as ``provenance``; never compared.
    """

    personas: Sequence[str]
    layer: int
    levels: Sequence[int] = LEVELS
    topics: Mapping[str, Sequence[str]] | None = None
    sources: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.personas, str):
            raise TypeError(f"personas must be a list of names, got the string {self.personas!r}; "
                            f"use [{self.personas!r}]")
        object.__setattr__(self, "personas", tuple(self.personas))
        check_int(self.layer, "layer", min_val=0)
        object.__setattr__(self, "levels", _levels(self.levels, "levels"))
        if self.topics is not None:
            object.__setattr__(self, "topics", {t: list(m) for t, m in self.topics.items()})
        if self.sources is not None:
            object.__setattr__(self, "sources", dict(self.sources))


@dataclass(frozen=True)
class ScanSettings:
    """How each experiment runs: its pools, samples, DeepScan settings, detection power, baselines.

    Attributes
    ----------
    pool_sizes : PoolSizes
        Statements in the background, clean and anomalous pool (default: the paper's 250, 50, 300).
    sample_sizes : SampleSizes
        Records per run from the clean and the anomalous pool, and runs (default: 50, 50, 100).
    config : deepscan.ScanConfig, str or dict, optional
        Scan settings (default: deepscan's consistent method); see :func:`scan_config`.
    detection : bool
        Also compute the detection power (``deepscan.detection_power``, ``sample_sizes.n_runs`` pairs).
    baselines : tuple of str
        Any of "lof", "iforest", "kmeans", run on the very samples of the DeepScan runs.
    baseline_levels : tuple of int, optional
        The levels the baselines run at (default: every level of the plan).
    """

    pool_sizes: PoolSizes = field(default_factory=PoolSizes)
    sample_sizes: SampleSizes = field(default_factory=SampleSizes)
    config: Any = None
    detection: bool = True
    baselines: Sequence[str] = ()
    baseline_levels: Sequence[int] | None = None

    def __post_init__(self) -> None:
        for name, cls in (("pool_sizes", PoolSizes), ("sample_sizes", SampleSizes)):
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"{name} must be a {cls.__name__}; got {type(getattr(self, name)).__name__}")
        check_bool(self.detection, "detection")
        if isinstance(self.baselines, str):
            raise TypeError(f"baselines must be a list of names, got the string {self.baselines!r}")
        object.__setattr__(self, "baselines", tuple(self.baselines))
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"baselines: unknown method(s) {unknown}; choose from {list(BASELINES)}")
        if self.baseline_levels is not None:
            object.__setattr__(self, "baseline_levels", _levels(self.baseline_levels, "baseline_levels"))


def scan_config(preset: str | None = None, **fields: Any):
    """The DeepScan settings: a named preset (``"ibm-2025"``), or else ``deepscan.ScanConfig(**fields)``.

        config = scan_config(None, score="hc", tail="two", thresholds="exact", a_max=0.5, restarts=1)
        config = scan_config("ibm-2025")     # the published code; the fields are then not used
    """
    import deepscan

    return deepscan.ScanConfig.from_preset(preset) if preset else deepscan.ScanConfig(**fields)
