"""Overlap claims as tests: "topic A's personas share more nodes than topic B's".

The paper reads two overlaps side by side ("ethics perspectives overlap, political ideologies
are more distinct"). That reading is a claim about a *difference*, so it gets one test of the
difference of the two topics' shared-by-all excess over chance (``(shared - expected) /
n_nodes``, see ``personas.nodes.stability.shared_excess``):

- a bootstrap over runs (the replicates of a ``SetBootstrap``): a percentile interval of the
  difference and a one-sided bootstrap p-value ``(1 + #{difference <= 0}) / (1 + n_boot)``;
- a permutation test of persona labels: the personas of both topics are pooled and split
  again into groups of the two topics' sizes (every split when there are at most ``n_perm``,
  else ``n_perm`` random ones); the p-value is the share of splits whose difference is at least
  the observed one (two-sided: in absolute value).

- ``compare_shared``: one pair of topics, one row.
- ``topic_claims``: several pairs (default: every pair of topics, two-sided), one row each.
"""

from __future__ import annotations

import itertools
import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from personas._core.checks import check_choice, check_float, check_int, check_seed
from personas.nodes.overlaps import topics_dict
from personas.nodes.stability import SetBootstrap, bootstrap_interval, shared_excess
from personas._core.parallel import one_blas_thread
from personas._core.provenance import derive_rng

__all__ = ["compare_shared", "topic_claims"]

_ALTERNATIVES = ("greater", "two-sided")


def _split_excess(member: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Shared-by-all excess of the personas chosen by each mask.

    member : bool (n_personas, n_nodes); masks : bool (n_splits, n_personas). Returns (n_splits,).
    """
    n_nodes = member.shape[1]
    misses = masks.astype(np.float32) @ (~member).astype(np.float32)  # chosen personas lacking each node
    shared = (misses == 0).sum(1)
    sizes = member.sum(1)
    logf = np.log(np.where(sizes > 0, sizes, 1) / n_nodes)
    has_empty = masks @ (sizes == 0) > 0
    expected = np.where(has_empty, 0.0, n_nodes * np.exp(masks.astype(np.float64) @ logf))
    return (shared - expected) / n_nodes


def compare_shared(
    boot: SetBootstrap,
    topics: Mapping[str, Sequence[str]],
    topic_a: str,
    topic_b: str,
    *,
    alternative: str = "greater",
    n_perm: int = 10000,
    seed: int = 0,
    ci: float = 0.95,
    significance: float = 0.05,
) -> pd.DataFrame:
    """Test "``topic_a``'s personas share more nodes, beyond chance, than ``topic_b``'s".

    Parameters
    ----------
    boot : SetBootstrap
        Sets of (at least) both topics' personas, from :func:`personas.nodes.bootstrap_sets`.
    topics : dict
        ``{topic: [persona, ...]}``; personas not in ``boot`` are left out.
    topic_a, topic_b : str
        The claim is ``excess(topic_a) > excess(topic_b)``.
    alternative : {"greater", "two-sided"}
        "greater" tests the claim as stated; "two-sided" any difference.
    n_perm : int
        Permutation splits: all of them when there are at most ``n_perm``, else ``n_perm`` random ones.
    seed : int
        Seed of the random splits.
    ci : float
        Confidence level of the bootstrap interval.
    significance : float
        Significance level of the ``supported`` column.

    Returns
    -------
    pandas.DataFrame
        One row: ``topic_a, topic_b, method, n_personas_a, n_personas_b, excess_a, excess_b,
        difference, ci_low, ci_high, p_bootstrap, p_permutation, n_splits, permutation ("exact" |
        "sampled"), n_boot, alternative, supported`` (``p_permutation <= significance`` and an
        interval excluding 0 on the claimed side: this test's own flag; the report's verdict comes
        from the numbers by the rule of ``personas.report.verdicts``, with an inconclusive band).
    """
    alternative = check_choice(alternative, "alternative", _ALTERNATIVES)
    n_perm = check_int(n_perm, "n_perm", min_val=1)
    seed = check_seed(seed)
    ci = check_float(ci, "ci", min_val=0.0, max_val=1.0, include_min=False, include_max=False)
    significance = check_float(significance, "significance", min_val=0.0, max_val=1.0, include_min=False)
    a, b = _claim_members(boot, topics, topic_a, topic_b)
    ia, ib = boot.index(a), boot.index(b)
    _, _, ex_a = shared_excess(boot.observed[ia])
    _, _, ex_b = shared_excess(boot.observed[ib])
    diff = float(ex_a - ex_b)
    reps = shared_excess(boot.replicates[:, ia])[2] - shared_excess(boot.replicates[:, ib])[2]
    lo, hi = bootstrap_interval(reps, ci)
    if alternative == "greater":
        p_boot = (1 + np.count_nonzero(reps <= 0)) / (1 + reps.size)
    else:
        p_boot = min(1.0, 2 * (1 + min(np.count_nonzero(reps <= 0), np.count_nonzero(reps >= 0))) / (1 + reps.size))
    p_perm, n_splits, kind = _permutation_test(boot.observed, ia, ib, diff, alternative, n_perm,
                                               derive_rng(seed, "claims", topic_a, topic_b))
    side_ok = lo > 0 if alternative == "greater" else (lo > 0 or hi < 0)
    return pd.DataFrame([{
        "topic_a": topic_a, "topic_b": topic_b, "method": boot.method, "n_personas_a": len(a),
        "n_personas_b": len(b), "excess_a": float(ex_a), "excess_b": float(ex_b), "difference": diff,
        "ci_low": float(lo), "ci_high": float(hi), "p_bootstrap": float(p_boot), "p_permutation": float(p_perm),
        "n_splits": n_splits, "permutation": kind, "n_boot": boot.n_boot, "alternative": alternative,
        "supported": bool(p_perm <= significance and side_ok),
    }])


def _claim_members(boot: SetBootstrap, topics, topic_a: str, topic_b: str) -> tuple[list[str], list[str]]:
    """The personas of the two topics present in ``boot``, checked: two each, none shared."""
    groups = topics_dict(topics)
    for t in (topic_a, topic_b):
        if t not in groups:
            raise ValueError(f"topic {t!r} is not one of {sorted(groups)}")
    if topic_a == topic_b:
        raise ValueError(f"compare two different topics, got {topic_a!r} twice")
    a = [p for p in groups[topic_a] if p in boot.personas]
    b = [p for p in groups[topic_b] if p in boot.personas]
    for t, members in ((topic_a, a), (topic_b, b)):
        if len(members) < 2:
            raise ValueError(f"topic {t!r} has {len(members)} persona(s) in the bootstrap; shared-by-all needs >= 2")
    if set(a) & set(b):
        raise ValueError(f"topics {topic_a!r} and {topic_b!r} share personas {sorted(set(a) & set(b))}")
    return a, b


def _permutation_test(observed: np.ndarray, ia: np.ndarray, ib: np.ndarray, diff: float, alternative: str,
                      n_perm: int, rng: np.random.Generator) -> tuple[float, int, str]:
    """P-value of the observed difference over splits of the pooled personas: (p, n_splits, "exact" | "sampled").

    ``rng`` is used only when there are more than ``n_perm`` splits (then ``n_perm`` random ones).
    """
    pool = np.concatenate([ia, ib])
    member = observed[pool]
    n_pool, n_a = len(pool), len(ia)
    total = math.comb(n_pool, n_a)
    if total <= n_perm:
        masks = np.zeros((total, n_pool), dtype=bool)
        for row, chosen in enumerate(itertools.combinations(range(n_pool), n_a)):
            masks[row, list(chosen)] = True
        kind = "exact"
    else:
        order = np.argsort(rng.random((n_perm, n_pool)), axis=1)
        masks = np.zeros((n_perm, n_pool), dtype=bool)
        np.put_along_axis(masks, order[:, :n_a], True, axis=1)
        kind = "sampled"
    with one_blas_thread():  # small products: BLAS threads only cost
        perm = _split_excess(member, masks) - _split_excess(member, ~masks)
    tol = 1e-12  # the observed split itself must count as "at least as extreme"
    extreme = perm >= diff - tol if alternative == "greater" else np.abs(perm) >= abs(diff) - tol
    hits = int(np.count_nonzero(extreme))
    p_perm = hits / total if kind == "exact" else (1 + hits) / (1 + n_perm)
    return p_perm, int(masks.shape[0]), kind


def topic_claims(
    boot: SetBootstrap,
    topics: Mapping[str, Sequence[str]],
    pairs: Sequence[tuple[str, str]] | None = None,
    **kwargs,
) -> pd.DataFrame:
    """:func:`compare_shared` for several pairs of topics, one row each.

    ``pairs`` default: every pair of topics with at least two personas in ``boot``, in the order of
    ``topics``, tested two-sided (no direction was claimed in advance); given pairs are tested as
    ``kwargs["alternative"]`` says (default "greater").
    """
    groups = topics_dict(topics)
    if pairs is None:
        usable = [t for t, members in groups.items() if sum(p in boot.personas for p in members) >= 2]
        pairs = list(itertools.combinations(usable, 2))
        kwargs.setdefault("alternative", "two-sided")
    if not pairs:
        return pd.DataFrame()
    return pd.concat([compare_shared(boot, groups, a, b, **kwargs) for a, b in pairs], ignore_index=True)
