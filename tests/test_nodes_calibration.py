"""Calibrated salient nodes, stability and overlap claims, on planted node selections."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import deepscan
import personas.nodes as pn
from personas.nodes.calibration import _bh_reject, fisher_table
from personas.nodes.overlaps import adjust_p_values, intersection_p_value
from personas.scans.driver import run_persona_scans
from personas.scans.pools import experiment_seed, scan_pools
from personas.scans.settings import PoolSizes, SampleSizes, ScanPlan, ScanSettings


def simulate(seed, topics, *, n_nodes=300, n_runs=100, shared=None, own=12, p_planted=0.6):
    """Run node selections with planted sets.

    Each topic's personas share ``shared[topic]`` planted nodes and each has ``own`` more; a run
    picks each planted node with probability ``p_planted`` and every other node with its base rate
    (uniform in [0.02, 0.3], the same in the null runs): a non-uniform null, as scans have.
    Persona "noise" (if listed) has no planted node.
    """
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.02, 0.3, n_nodes)
    order = rng.permutation(n_nodes)
    pos, planted = 0, {}
    for topic, members in topics.items():
        k = (shared or {}).get(topic, 10)
        common = order[pos:pos + k].tolist()
        pos += k
        for persona in members:
            planted[persona] = set() if persona == "noise" else set(common) | set(order[pos:pos + own].tolist())
            pos += 0 if persona == "noise" else own
    runs, nulls = {}, {}
    for persona, nodes in planted.items():
        prob = base.copy()
        prob[list(nodes)] = p_planted
        chosen = rng.random((n_runs, n_nodes)) < prob
        runs[persona] = pd.DataFrame({"nodes": [np.flatnonzero(r).tolist() for r in chosen]})
        null = rng.random((n_runs, n_nodes)) < base
        nulls[persona] = [np.flatnonzero(r).tolist() for r in null]
    return runs, nulls, planted


TOPICS = {"T1": ["a", "b"], "T2": ["c", "noise"]}


def test_fisher_table_and_bh_match_scipy():
    table = fisher_table(12, 9)
    for k, k0 in [(0, 0), (5, 1), (12, 0), (3, 9), (7, 4)]:
        expected = stats.fisher_exact([[k, 12 - k], [k0, 9 - k0]], alternative="greater").pvalue
        assert table[k, k0] == pytest.approx(expected, rel=1e-10)
    p = np.random.default_rng(1).random((3, 40)) ** 3
    qv, rejected = _bh_reject(p, 0.1)
    for row in range(3):
        np.testing.assert_allclose(qv[row], adjust_p_values(p[row]), rtol=1e-12)
        np.testing.assert_array_equal(rejected[row], adjust_p_values(p[row]) <= 0.1)


def test_calibrated_recovers_planted_sets_where_union_does_not():
    recalls, fdps, union_precision = [], [], []
    for seed in range(5):
        runs, nulls, planted = simulate(seed, TOPICS)
        cal = pn.salient_sets(runs, method="calibrated", nulls=nulls, q=0.05, n_nodes=300)
        union = pn.salient_sets(runs, n_nodes=300)
        assert cal.method == "calibrated" and union.method == "union"
        for persona in ("a", "b", "c"):
            found, truth = cal[persona], planted[persona]
            recalls.append(len(found & truth) / len(truth))
            fdps.append(len(found - truth) / max(len(found), 1))
            union_precision.append(len(union[persona] & truth) / len(union[persona]))
        fdps.append(len(cal["noise"]) / max(len(cal["noise"]), 1))  # every discovery of noise is false
    assert np.mean(recalls) >= 0.9
    assert np.mean(fdps) <= 0.05 + 0.05
    assert np.mean(union_precision) < 0.2  # the union holds nearly every node


def test_node_calibration_table_by_brute_force():
    runs, nulls, planted = simulate(0, TOPICS)
    table = pn.node_calibration(runs["a"], nulls["a"], n_nodes=300, q=0.05)
    assert list(table.columns) == ["node", "layer", "unit", "k", "n_runs", "freq", "k_null", "n_null", "null_freq",
                                   "ratio", "p", "q", "salient"]
    node = sorted(planted["a"])[0]
    k = sum(node in r for r in runs["a"]["nodes"])
    k0 = sum(node in r for r in nulls["a"])
    row = table.iloc[node]
    assert (row["k"], row["k_null"]) == (k, k0)
    assert row["p"] == pytest.approx(stats.fisher_exact([[k, 100 - k], [k0, 100 - k0]], alternative="greater").pvalue)
    assert row["ratio"] == pytest.approx(((k + 0.5) / 101) / ((k0 + 0.5) / 101))
    np.testing.assert_allclose(table["q"], adjust_p_values(table["p"].to_numpy()))
    assert set(table.loc[table["salient"], "node"]) == pn.salient_sets(
        runs, method="calibrated", nulls=nulls, n_nodes=300)["a"]


def test_methods_are_explicit_and_recorded():
    runs, nulls, _ = simulate(0, TOPICS)
    sets = pn.salient_sets(runs, method="calibrated", nulls=nulls, n_nodes=300)
    assert set(pn.overlap_table(sets, 300, topics=TOPICS)["method"]) == {"calibrated"}
    assert set(pn.pairwise_overlaps(sets, 300)["method"]) == {"calibrated"}
    assert set(pn.set_sizes(pn.salient_sets(runs, 0.5), 300)["method"]) == {"min_fraction"}
    assert pn.set_sizes({"x": {1}}, 10)["method"].iloc[0] == "unspecified"
    with pytest.raises(ValueError, match="needs the null runs"):
        pn.salient_sets(runs, method="calibrated")
    with pytest.raises(ValueError, match="needs min_fraction"):
        pn.salient_sets(runs, method="min_fraction")
    with pytest.raises(ValueError, match="method must be one of"):
        pn.salient_sets(runs, method="intersection")


def test_split_half_and_bootstrap():
    runs, nulls, planted = simulate(2, TOPICS)
    boot = pn.bootstrap_sets(runs, nulls, method="calibrated", n_boot=50, seed=3, n_nodes=300)
    again = pn.bootstrap_sets(runs, nulls, method="calibrated", n_boot=50, seed=3, n_nodes=300)
    np.testing.assert_array_equal(boot.replicates, again.replicates)  # seeded
    table = pn.stability_table(boot).set_index("persona")
    assert table.loc["a", "split_half_jaccard"] >= 0.8  # planted sets are found in both halves
    noise = table.loc["noise", "split_half_jaccard"]
    assert np.isnan(noise) or noise < 0.2
    # halves by brute force: runs 0-49 and 50-99
    half = pn.salient_sets({"a": runs["a"].iloc[:50]}, method="calibrated", nulls={"a": nulls["a"][:50]}, n_nodes=300)
    assert set(np.flatnonzero(boot.first_half[0])) == half["a"]
    lo, hi = table.loc["a", ["size_low", "size_high"]]
    assert lo - 3 <= len(planted["a"]) <= hi and hi - lo <= 10  # a tight interval around the planted size
    # union: split halves agree on noise too (both halves cover nearly everything): not a stability measure
    union = pn.stability_table(pn.bootstrap_sets(runs, method="union", n_boot=20, n_nodes=300)).set_index("persona")
    assert union.loc["noise", "split_half_jaccard"] > 0.8


def test_shared_excess_and_overlap_stability():
    member = np.zeros((3, 20), dtype=bool)
    member[0, :10] = member[1, 5:15] = member[2, [5, 6, 7, 19]] = True
    shared, expected, excess = pn.shared_excess(member)
    assert shared == 3
    assert expected == pytest.approx(intersection_p_value([10, 10, 4], 20, 3)[0])
    assert excess == pytest.approx((3 - expected) / 20)
    runs, nulls, _ = simulate(0, {"T1": ["a", "b"], "T2": ["c", "d"]}, shared={"T1": 20, "T2": 0})
    boot = pn.bootstrap_sets(runs, nulls, method="calibrated", n_boot=100, n_nodes=300)
    table = pn.overlap_stability(boot, {"T1": ["a", "b"], "T2": ["c", "d"]}).set_index("group")
    assert table.loc["T1", "stable"] and table.loc["T1", "verdict"] == "above chance"
    assert table.loc["T1", "excess_low"] > 0
    pairs = pn.pairwise_stability(boot).set_index(["persona_a", "persona_b"])
    assert pairs.loc[("a", "b"), "jaccard_low"] > pairs.loc[("c", "d"), "jaccard_high"]


def test_claims_planted_difference_and_equal_sets():
    topics = {"A": ["a1", "a2", "a3", "a4"], "B": ["b1", "b2", "b3", "b4"]}
    runs, nulls, _ = simulate(4, topics, shared={"A": 25, "B": 3})
    boot = pn.bootstrap_sets(runs, nulls, method="calibrated", n_boot=100, n_nodes=300)
    row = pn.compare_shared(boot, topics, "A", "B").iloc[0]
    assert row["permutation"] == "exact" and row["n_splits"] == 70
    assert row["p_permutation"] <= 1 / 70 + 1e-12 and row["ci_low"] > 0 and row["supported"]
    assert row["p_bootstrap"] < 0.05
    # the permutation p-value by brute force over all 70 splits
    sets = boot.sets()
    pool = [*topics["A"], *topics["B"]]

    def excess(group):
        member = np.array([[n in sets[p] for n in range(300)] for p in group])
        return pn.shared_excess(member)[2]
    observed = excess(topics["A"]) - excess(topics["B"])
    diffs = [excess(c) - excess([p for p in pool if p not in c]) for c in itertools.combinations(pool, 4)]
    assert row["p_permutation"] == pytest.approx(np.mean(np.array(diffs) >= observed - 1e-12))
    # equal planted overlaps: no supported difference
    runs, nulls, _ = simulate(5, topics, shared={"A": 15, "B": 15})
    boot = pn.bootstrap_sets(runs, nulls, method="calibrated", n_boot=100, n_nodes=300)
    row = pn.compare_shared(boot, topics, "A", "B", alternative="two-sided").iloc[0]
    assert row["p_permutation"] > 0.05 and row["ci_low"] < 0 < row["ci_high"] and not row["supported"]
    assert len(pn.topic_claims(boot, topics)) == 1


def test_run_persona_scans_writes_null_runs(tmp_path):
    rng = np.random.default_rng(0)
    meta = pd.DataFrame([{"id": f"{p}/{d[0]}{i}", "persona": p, "direction": d}
                         for p in ("a", "b") for d in ("positive", "negative") for i in range(40)])
    X = rng.normal(size=(len(meta), 12))
    X[np.flatnonzero((meta["persona"] == "a") & (meta["direction"] == "positive"))[:, None], np.arange(4)] += 4.0
    settings = ScanSettings(pool_sizes=PoolSizes(30, 10, 40), sample_sizes=SampleSizes(clean=10, anomalous=10, n_runs=6))
    run_persona_scans(X, meta, ScanPlan(["a", "b"], layer=3, levels=[2]), model_name="toy", runs_dir=tmp_path,
                      settings=settings, seed=0, progress=False)
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["levels"]["2"] == {"a": "level2_layer3_a.jsonl", "b": "level2_layer3_b.jsonl"}
    assert index["null"]["2"] == {"a": "level2_layer3_a.null.json", "b": "level2_layer3_b.null.json"}
    nulls = pn.load_null_runs({p: tmp_path / f for p, f in index["null"]["2"].items()})
    null = nulls["a"]
    assert null.n_runs == 6 and null.header["n_nodes"] == 12 and null.header["level"] == 2
    # the very clean-only scans of deepscan.detection_power on the experiment's pools
    pools = scan_pools(meta, "a", level=2, sizes=PoolSizes(30, 10, 40), seed=0)
    power = deepscan.detection_power(X[pools.background], X[pools.clean], X[pools.anomalous], clean_ssize=10,
                                     anom_ssize=10, n_runs=6, seed=experiment_seed(0, "a", 2), progress=False)
    assert null.nodes_clean == [x.tolist() for x in power.nodes_clean]
    assert null.nodes_anomalous == [x.tolist() for x in power.nodes_anomalous]
    assert null.header["scores_clean"] == pytest.approx(power.scores_clean.tolist())
    run_files = pn.load_runs({p: tmp_path / f for p, f in index["levels"]["2"].items()})
    table = pn.node_calibrations(run_files, nulls)
    assert table["n_null"].eq(6).all() and len(table) == 24
    written = pn.save_calibration_report(run_files, nulls, tmp_path / "tables", topics={"T": ["a", "b"]}, n_boot=20)
    assert {"calibrated_sizes", "node_calibration", "stability", "overlap_stability", "pairwise_stability",
            "metadata"} <= set(written)
    assert "claims" not in written  # one topic: nothing to compare it with
    sizes = pd.read_csv(written["calibrated_sizes"])
    assert {"union_size", "calibrated_size", "n_null"} <= set(sizes.columns)
