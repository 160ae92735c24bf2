"""Settings of the paper's DeepScan experiments: pool sizes and sample sizes, with the paper's defaults.

- ``PoolSizes``: how many statements form the background, the clean pool and the anomalous pool.
- ``SampleSizes``: how many records each run draws from the clean and the anomalous pool, and
  how many runs.

One word, one meaning: a *pool* is a set of statements an experiment draws from; a *sample* is
what one run draws from the pools (``deepscan`` calls its sizes ``clean_ssize`` and ``anom_ssize``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from personas._core.checks import check_int

__all__ = ["PoolSizes", "SampleSizes"]


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
            check_int(getattr(self, f.name), f"pools.{f.name}", min_val=1)


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
        check_int(self.clean, "samples.clean", min_val=0)
        check_int(self.anomalous, "samples.anomalous", min_val=0)
        check_int(self.n_runs, "samples.n_runs", min_val=1)
