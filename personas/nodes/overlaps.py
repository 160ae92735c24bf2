"""Overlaps of persona node sets and their statistics.

Set sizes, exclusive intersections (what an UpSet plot shows), nodes shared by all, pairwise
intersections with Jaccard index and an exact hypergeometric test against chance, p-value
corrections, and the same grouped by topic.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from personas._core.checks import check_choice, check_int

__all__ = [
    "set_sizes",
    "exclusive_intersections",
    "shared_by_all",
    "adjust_p_values",
    "intersection_p_value",
    "pairwise_overlaps",
    "topic_sets",
    "overlap_table",
]


# Columns of exclusive_intersections besides the persona columns.
_RESERVED_COLUMNS = ("degree", "size", "nodes")


CORRECTIONS = ("fdr_bh", "bonferroni", "none")


def check_n_nodes(n_nodes: Any) -> int:
    """``n_nodes`` (the number of scanned nodes) as a positive int (``check_int``); None is an error."""
    if n_nodes is None:
        raise ValueError("n_nodes (the number of scanned nodes) is unknown; pass it, e.g. the layer's hidden size")
    return check_int(n_nodes, "n_nodes", min_val=1)


def check_sets(sets: Mapping[str, Iterable[int]], min_sets: int = 1) -> dict[str, set[int]]:
    """Validate ``{persona: nodes}`` and return it as ``{str: set of int}``."""
    if not isinstance(sets, Mapping):
        raise TypeError(f"sets must be a dict {{persona: nodes}}, got {type(sets).__name__}")
    if len(sets) < min_sets:
        raise ValueError(f"need at least {min_sets} node sets, got {len(sets)}")
    out: dict[str, set[int]] = {}
    for persona, nodes in sets.items():
        arr = np.asarray(list(nodes) if isinstance(nodes, (set, frozenset)) else nodes).ravel()
        if arr.size and not (
            arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr % 1 == 0))
        ):
            raise ValueError(f"nodes of persona {persona!r} must be integer node indices, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.size and arr.min() < 0:
            raise ValueError(f"persona {persona!r} has a negative node index {int(arr.min())}")
        out[str(persona)] = set(arr.tolist())
    if len(out) != len(sets):
        raise ValueError("persona names must be distinct as strings")
    return out


def _method_of(sets: Any, method: str | None) -> str:
    """The salient-set method a table records: the argument, else the sets' own (``SalientSets``)."""
    if method is not None:
        return str(method)
    return str(getattr(sets, "method", None) or "unspecified")


def set_sizes(sets: Mapping[str, Iterable[int]], n_nodes: int | None = None, *, method: str | None = None) -> pd.DataFrame:
    """Size of each persona's node set.

    ``method`` names how the sets were made (default: ``sets.method`` of a ``SalientSets``, else
    "unspecified"); every overlap table records it in a ``method`` column.

    Returns
    -------
    pandas.DataFrame
        Columns ``persona, size``, with ``n_nodes`` ``fraction`` (size / n_nodes), then ``method``.
    """
    label = _method_of(sets, method)
    sets = check_sets(sets)
    table = pd.DataFrame({"persona": list(sets), "size": [len(s) for s in sets.values()]})
    if n_nodes is not None:
        table["fraction"] = table["size"] / n_nodes
    table["method"] = label
    return table


def _membership(sets: dict[str, set[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Nodes of the union and their membership matrix.

    Returns
    -------
    nodes : ndarray of int64, shape (n_union,)
    member : ndarray of bool, shape (n_union, n_sets)
    """
    nodes = np.array(sorted(set().union(*sets.values())), dtype=np.int64)
    member = np.zeros((nodes.size, len(sets)), dtype=bool)
    for j, s in enumerate(sets.values()):
        member[:, j] = np.isin(nodes, np.fromiter(s, np.int64, len(s)))
    return nodes, member


def exclusive_intersections(
    sets: Mapping[str, Iterable[int]],
    sort_by: str = "size",
    with_nodes: bool = False,
) -> pd.DataFrame:
    """Exclusive intersections: how many nodes have each exact membership pattern.

    A node counts once, in the row of exactly the personas whose sets hold it:
    the bars of an UpSet plot. Rows partition the union of the sets.

    Parameters
    ----------
    sets : dict
        ``{persona: nodes}``, any number of personas.
    sort_by : {"size", "degree"}
        "size": largest first; "degree": by number of personas, then size.
    with_nodes : bool
        Add a ``nodes`` column (sorted list of node indices per row).

    Returns
    -------
    pandas.DataFrame
        One bool column per persona (in the order given), then ``degree``
        (number of personas in the pattern) and ``size``; one row per non-empty
        pattern.
    """
    label = _method_of(sets, None)
    sets = check_sets(sets)
    clash = [p for p in sets if p in _RESERVED_COLUMNS]
    if clash:
        raise ValueError(f"persona names {clash} clash with the table's columns {_RESERVED_COLUMNS}; rename them")
    check_choice(sort_by, "sort_by", ("size", "degree"))
    names = list(sets)
    nodes, member = _membership(sets)
    if len(names) > 62:
        raise ValueError(f"at most 62 sets are supported, got {len(names)}")
    codes = member.astype(np.int64) @ (np.int64(1) << np.arange(len(names), dtype=np.int64))
    patterns, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    bits = ((patterns[:, None] >> np.arange(len(names), dtype=np.int64)) & 1).astype(bool)
    table = pd.DataFrame(bits, columns=names)
    table["degree"] = bits.sum(axis=1).astype(np.int64)
    table["size"] = counts.astype(np.int64)
    if with_nodes:
        # nodes grouped by pattern (nodes are sorted, the stable sort keeps them sorted within a group)
        grouped = nodes[np.argsort(inverse, kind="stable")]
        table["nodes"] = [chunk.tolist() for chunk in np.split(grouped, np.cumsum(counts)[:-1])] if len(counts) else []
    # deterministic order: the sort key, then the membership pattern
    table["_code"] = patterns
    keys = ["size", "degree", "_code"] if sort_by == "size" else ["degree", "size", "_code"]
    asc = [False, True, True] if sort_by == "size" else [True, False, True]
    table = table.sort_values(keys, ascending=asc).drop(columns="_code").reset_index(drop=True)
    table.attrs["method"] = label  # persona columns leave no room for a method column
    return table


def shared_by_all(sets: Mapping[str, Iterable[int]]) -> np.ndarray:
    """Nodes in every persona's set, sorted (shape ``(n_shared,)``, int64)."""
    sets = check_sets(sets)
    common = set.intersection(*sets.values())
    return np.array(sorted(common), dtype=np.int64)


def adjust_p_values(p_values: Sequence[float] | np.ndarray, correction: str = "fdr_bh") -> np.ndarray:
    """Correct p-values for multiple testing.

    Parameters
    ----------
    p_values : array-like of float, shape (n_tests,)
        NaN entries are left as NaN and not counted as tests.
    correction : {"fdr_bh", "bonferroni", "none"}
        Benjamini-Hochberg false discovery rate (adjusted p-values, monotone in
        p), Bonferroni family-wise error, or no correction.

    Returns
    -------
    ndarray of float, shape (n_tests,)
    """
    check_choice(correction, "correction", CORRECTIONS)
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    if q.size and (q.min() < 0 or q.max() > 1):
        raise ValueError("p-values must lie in [0, 1]")
    m = q.size
    if correction == "none" or m == 0:
        out[ok] = q
    elif correction == "bonferroni":
        out[ok] = np.minimum(q * m, 1.0)
    else:
        order = np.argsort(q, kind="stable")
        scaled = q[order] * m / np.arange(1, m + 1)
        adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
        back = np.empty(m)
        back[order] = np.minimum(adjusted, 1.0)
        out[ok] = back
    return out


def intersection_p_value(sizes: Sequence[int], n_nodes: int, observed: int) -> tuple[float, float]:
    """Chance of a common intersection at least as large as observed.

    Null model: each set is an independent uniformly random subset of
    ``n_nodes`` nodes with its given size. For two sets the intersection size is
    hypergeometric (``scipy.stats.hypergeom.sf(observed - 1, n_nodes, a, b)``);
    for more, the exact distribution is built one set at a time
    (``|S1 ∩ ... ∩ Sj+1|`` given ``|S1 ∩ ... ∩ Sj| = x`` is hypergeometric).

    Parameters
    ----------
    sizes : sequence of int
        Set sizes, at least 2.
    n_nodes : int
        Number of nodes all sets are drawn from.
    observed : int
        Observed size of the intersection of all sets.

    Returns
    -------
    expected : float
        Expected intersection size, ``n_nodes * prod(size / n_nodes)``.
    p_value : float
        ``P(intersection >= observed)``.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2:
        raise ValueError(f"need at least 2 set sizes, got {sizes}")
    n_nodes = check_n_nodes(n_nodes)
    if min(sizes) < 0 or max(sizes) > n_nodes:
        raise ValueError(f"set sizes {sizes} must lie in [0, n_nodes={n_nodes}]")
    if observed < 0 or observed > min(sizes):
        raise ValueError(f"observed intersection {observed} is impossible for set sizes {sizes}")
    expected = float(n_nodes) * float(np.prod(np.asarray(sizes, float) / n_nodes))
    if len(sizes) == 2:
        return expected, float(stats.hypergeom.sf(observed - 1, n_nodes, sizes[0], sizes[1]))
    # distribution of the running intersection size over 0..current maximum;
    # hypergeometric log-pmf from a log-factorial table (vectorised, far faster than
    # scipy's per-element pmf), only over sizes whose probability has not underflowed
    log_fact = special.gammaln(np.arange(n_nodes + 2, dtype=float) + 1.0)
    pmf = np.zeros(sizes[0] + 1)
    pmf[sizes[0]] = 1.0
    for size in sizes[1:]:
        xs = np.flatnonzero(pmf > 0)
        y_lo = max(0, int(xs.min()) + size - n_nodes)
        ys = np.arange(y_lo, min(int(xs.max()), size) + 1)
        x, y = xs[:, None], ys[None, :]
        valid = (y <= x) & (size - y <= n_nodes - x)
        xc, yc = np.where(valid, x, 0), np.where(valid, y, 0)
        log_p = (
            log_fact[xc] - log_fact[yc] - log_fact[xc - yc]
            + log_fact[n_nodes - xc] - log_fact[size - yc] - log_fact[np.maximum(n_nodes - xc - size + yc, 0)]
            - (log_fact[n_nodes] - log_fact[size] - log_fact[n_nodes - size])
        )
        transition = np.where(valid, np.exp(np.where(valid, log_p, -np.inf)), 0.0)
        new = np.zeros(min(int(xs.max()), size) + 1)
        new[ys] = pmf[xs] @ transition
        pmf = new
    return expected, float(min(1.0, pmf[observed:].sum()))


def pairwise_overlaps(
    sets: Mapping[str, Iterable[int]],
    n_nodes: int,
    correction: str = "fdr_bh",
    *,
    method: str | None = None,
) -> pd.DataFrame:
    """Overlap of every pair of personas, with a test against chance.

    Parameters
    ----------
    sets : dict
        ``{persona: nodes}``, at least 2.
    n_nodes : int
        Number of nodes the sets are drawn from (the scanned nodes).
    correction : {"fdr_bh", "bonferroni", "none"}
        Multiple-testing correction over all pairs.

    Returns
    -------
    pandas.DataFrame
        One row per unordered pair (in the order given): ``persona_a, persona_b,
        size_a, size_b, intersection, union, jaccard`` (intersection / union, NaN
        for two empty sets), ``overlap_coefficient`` (intersection / smaller size),
        ``expected`` (size_a * size_b / n_nodes), ``ratio`` (intersection /
        expected), ``p_value`` (hypergeometric, overlap >= observed) and
        ``p_adjusted``, then ``method`` (how the sets were made, see :func:`set_sizes`).
    """
    label = _method_of(sets, method)
    sets = check_sets(sets, min_sets=2)
    n_nodes = check_n_nodes(n_nodes)
    n_nodes = int(n_nodes)
    for persona, s in sets.items():
        if s and max(s) >= n_nodes:
            raise ValueError(f"persona {persona!r} has node {max(s)} but n_nodes={n_nodes}; pass the right n_nodes")
    names = list(sets)
    _, member = _membership(sets)
    m = member.astype(np.int64)
    inter = m.T @ m  # (n_sets, n_sets) pairwise intersection sizes
    sizes = np.diag(inter)
    ia, ib = np.triu_indices(len(names), k=1)
    k = inter[ia, ib]
    sa, sb = sizes[ia], sizes[ib]
    union = sa + sb - k
    with np.errstate(divide="ignore", invalid="ignore"):
        jaccard = np.where(union > 0, k / np.maximum(union, 1), np.nan)
        smaller = np.minimum(sa, sb)
        overlap = np.where(smaller > 0, k / np.maximum(smaller, 1), np.nan)
        expected = sa * sb / n_nodes
        ratio = np.where(expected > 0, k / np.where(expected > 0, expected, 1), np.nan)
    p = stats.hypergeom.sf(k - 1, n_nodes, sa, sb)
    return pd.DataFrame(
        {
            "persona_a": [names[i] for i in ia],
            "persona_b": [names[i] for i in ib],
            "size_a": sa,
            "size_b": sb,
            "intersection": k,
            "union": union,
            "jaccard": jaccard,
            "overlap_coefficient": overlap,
            "expected": expected,
            "ratio": ratio,
            "p_value": p,
            "p_adjusted": adjust_p_values(p, correction),
            "method": label,
        }
    )


def topics_dict(topics: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    # accept the whole data/paper_personas.json as well as its "topics" entry
    if isinstance(topics, Mapping) and isinstance(topics.get("topics"), Mapping):
        topics = topics["topics"]
    if not isinstance(topics, Mapping) or not topics:
        raise ValueError("topics must be a non-empty dict {topic: [persona, ...]}")
    out = {}
    for topic, members in topics.items():
        if isinstance(members, str) or not isinstance(members, Iterable):
            raise ValueError(f"topic {topic!r} must map to a list of personas, got {members!r}")
        out[str(topic)] = [str(m) for m in members]
    return out


def topic_sets(
    sets: Mapping[str, Iterable[int]],
    topics: Mapping[str, Sequence[str]],
    missing: str = "raise",
) -> dict[str, dict[str, set[int]]]:
    """Group persona node sets by topic.

    Parameters
    ----------
    sets : dict
        ``{persona: nodes}``.
    topics : dict
        ``{topic: [persona, ...]}``, e.g. ``read_json("data/paper_personas.json")["topics"]``
        (the whole file is accepted too).
    missing : {"raise", "ignore"}
        What to do with a topic persona that has no set: error, or leave it out
        (topics left with no persona are dropped).

    Returns
    -------
    dict
        ``{topic: {persona: set of nodes}}``, topics and personas in the order of ``topics``.
    """
    check_choice(missing, "missing", ("raise", "ignore"))
    sets = check_sets(sets)
    grouped: dict[str, dict[str, set[int]]] = {}
    for topic, members in topics_dict(topics).items():
        absent = [m for m in members if m not in sets]
        if absent and missing == "raise":
            raise ValueError(
                f"topic {topic!r} lists personas without node sets: {absent} (have: {list(sets)}); "
                "pass missing='ignore' to leave them out"
            )
        present = {m: sets[m] for m in members if m in sets}
        if present:
            grouped[topic] = present
    return grouped


def overlap_table(
    sets: Mapping[str, Iterable[int]],
    n_nodes: int,
    topics: Mapping[str, Sequence[str]] | None = None,
    all_label: str = "ALL",
    correction: str = "fdr_bh",
    *,
    method: str | None = None,
) -> pd.DataFrame:
    """One row per group of personas (each topic, and all personas together).

    For each group: how many nodes its personas share, whether that is more than
    chance (exact test, see :func:`intersection_p_value`), and the spread of
    pairwise Jaccard indices, as in the paper's "shared by all five ethics
    personas: 719 (17.55%)".

    Parameters
    ----------
    sets : dict
        ``{persona: nodes}``.
    n_nodes : int
        Number of scanned nodes.
    topics : dict, optional
        ``{topic: [persona, ...]}``; personas without a set are left out.
    all_label : str
        Group name of the row with every persona.
    correction : {"fdr_bh", "bonferroni", "none"}
        Correction over the groups' p-values.

    Returns
    -------
    pandas.DataFrame
        Columns ``group, n_personas, personas`` (";"-joined), ``union,
        union_fraction, shared_by_all, shared_fraction, shared_expected,
        shared_p_value, shared_p_adjusted, jaccard_mean, jaccard_min, jaccard_max, method``
        (how the sets were made, see :func:`set_sizes`).
    """
    label = _method_of(sets, method)
    sets = check_sets(sets)
    n_nodes = check_n_nodes(n_nodes)
    groups: dict[str, dict[str, set[int]]] = {}
    if topics is not None:
        groups.update(topic_sets(sets, topics, missing="ignore"))
    if all_label in groups:
        raise ValueError(f"a topic is named {all_label!r} like the all-personas row; pass another all_label")
    groups[all_label] = sets
    rows = [_group_row(group, members, n_nodes) for group, members in groups.items()]
    table = pd.DataFrame(rows)
    table.insert(
        table.columns.get_loc("shared_p_value") + 1,
        "shared_p_adjusted",
        adjust_p_values(table["shared_p_value"].to_numpy(), correction),
    )
    table["method"] = label
    return table


def _group_row(group: str, members: Mapping[str, set[int]], n_nodes: int) -> dict[str, Any]:
    """One row of :func:`overlap_table`: the group's union, shared-by-all with its test, pairwise Jaccard."""
    union = len(set().union(*members.values()))
    row: dict[str, Any] = {"group": group, "n_personas": len(members), "personas": ";".join(members),
                           "union": union, "union_fraction": union / n_nodes}
    if len(members) >= 2:
        shared = len(set.intersection(*members.values()))
        expected, p = intersection_p_value([len(s) for s in members.values()], n_nodes, shared)
        jac = pairwise_overlaps(members, n_nodes, correction="none")["jaccard"]
        row.update(shared_by_all=shared, shared_fraction=shared / n_nodes, shared_expected=expected,
                   shared_p_value=p, jaccard_mean=float(jac.mean()), jaccard_min=float(jac.min()),
                   jaccard_max=float(jac.max()))
    else:
        only = next(iter(members.values()))
        row.update(shared_by_all=len(only), shared_fraction=len(only) / n_nodes, shared_expected=np.nan,
                   shared_p_value=np.nan, jaccard_mean=np.nan, jaccard_min=np.nan, jaccard_max=np.nan)
    return row
