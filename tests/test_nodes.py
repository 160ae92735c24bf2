"""Tests of personas.nodes: run files -> node frequencies, salient sets, overlaps.

Synthetic run files are written by hand in the DeepScan run-file format
(docs/run-files.md) with known node sets, so every count, intersection, Jaccard value
and frequency is checked exactly. Published-format fixtures live in
tests/fixtures/published (see its README).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from personas import nodes as N

FIXTURES = Path(__file__).parent / "fixtures" / "published"


# ----------------------------------------------------------------------------- helpers


def write_run_file(
    path: Path,
    runs: list[dict],
    *,
    persona: str | None = "persona",
    n_nodes: int = 12,
    layers: list[int] | None = None,
    node_layout: list[dict] | None = None,
    metadata: dict | None = None,
) -> Path:
    """Write a DeepScan JSON Lines run file by hand (header + one line per run).

    Each run dict needs ``nodes``; ``records_pool_index``/``records_anomalous``,
    ``precision``, ``recall``, ``score`` are optional.
    """
    header = {
        "kind": "deepscan-run-file",
        "format_version": 1,
        "config": {
            "persona": persona,
            "model": "tiny-test-model",
            "layers": layers,
            "node_layout": node_layout,
            "n_nodes": n_nodes,
            "background_size": 20,
            "clean_pool_size": 4,
            "anomalous_pool_size": 6,
            "clean_ssize": 2,
            "anom_ssize": 3,
            "n_runs": len(runs),
            "seed": 0,
            "score": "hc",
            "tail": "right",
            "thresholds": "all",
            "a_max": 0.5,
            "restarts": 1,
            "preset": None,
            "metadata": metadata or {},
        },
        "versions": {"deepscan": "1.0.0", "numpy": np.__version__, "python": "3.11"},
        "created": "2025-01-01T00:00:00+00:00",
    }
    lines = [json.dumps(header)]
    for i, run in enumerate(runs):
        pool_index = run.get("records_pool_index", [])
        anomalous = run.get("records_anomalous", [])
        lines.append(
            json.dumps(
                {
                    "kind": "run",
                    "run_id": i,
                    "seed": 100 + i,
                    "score": run.get("score", float(i)),
                    "alpha": run.get("alpha", 0.1),
                    "sample_clean": run.get("sample_clean", [0, 1]),
                    "sample_anomalous": run.get("sample_anomalous", [0, 1, 2]),
                    "records": list(range(len(pool_index))),
                    "records_pool_index": pool_index,
                    "records_anomalous": anomalous,
                    "nodes": run["nodes"],
                    "precision": run.get("precision", 1.0),
                    "recall": run.get("recall", 1.0),
                }
            )
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# Three personas with known node sets over 12 nodes. Names with spaces and
# slashes: nothing may depend on a persona's name.
RUNS = {
    "alpha persona": [[0, 1, 2], [1, 2, 3], [2]],
    "Beta/2": [[2, 3, 4, 5], [4, 5]],
    "gamma": [[5, 6, 7, 8, 9]],
}
UNIONS = {"alpha persona": {0, 1, 2, 3}, "Beta/2": {2, 3, 4, 5}, "gamma": {5, 6, 7, 8, 9}}


@pytest.fixture
def run_paths(tmp_path):
    return {
        persona: write_run_file(tmp_path / f"{i}.jsonl", [{"nodes": n} for n in runs], persona=persona)
        for i, (persona, runs) in enumerate(RUNS.items())
    }


@pytest.fixture
def run_files(run_paths):
    return N.load_runs(run_paths)


def brute_pairwise(sets, n_nodes):
    rows = []
    for a, b in itertools.combinations(sets, 2):
        k = len(sets[a] & sets[b])
        u = len(sets[a] | sets[b])
        rows.append((a, b, k, u, k / u if u else math.nan))
    return rows


# ------------------------------------------------------------------ loading and frequency


def test_load_runs_keeps_order_and_every_run(run_files):
    assert list(run_files) == list(RUNS)
    for persona, runs in RUNS.items():
        assert len(run_files[persona].runs) == len(runs)
        assert N.node_space(run_files) == N.NodeSpace(12, None)


def test_load_runs_from_list_names_by_header_persona(run_paths):
    loaded = N.load_runs(list(run_paths.values()))
    assert list(loaded) == list(RUNS)


def test_node_frequency_exact(run_files):
    table = N.node_frequency(run_files["alpha persona"])
    assert list(table.columns) == ["node", "layer", "unit", "n_runs", "frequency"]
    assert table["node"].tolist() == list(range(12))
    expected = [1, 2, 3, 1] + [0] * 8
    assert table["n_runs"].tolist() == expected
    np.testing.assert_allclose(table["frequency"], np.array(expected) / 3)
    assert (table["layer"] == -1).all() and table["unit"].tolist() == list(range(12))


def test_node_frequency_counts_a_node_once_per_run(tmp_path):
    path = write_run_file(tmp_path / "dup.jsonl", [{"nodes": [1, 1, 2]}, {"nodes": [1]}])
    table = N.node_frequency(N.load_runs({"p": path})["p"])
    assert table.loc[1, "n_runs"] == 2 and table.loc[1, "frequency"] == 1.0


def test_node_frequencies_long_table(run_files):
    table = N.node_frequencies(run_files)
    assert list(table.columns) == ["persona", "node", "layer", "unit", "n_runs", "frequency"]
    assert len(table) == 3 * 12
    gamma = table[table["persona"] == "gamma"]
    assert gamma.loc[gamma["n_runs"] > 0, "node"].tolist() == [5, 6, 7, 8, 9]
    # total choices = total length of node lists
    for persona, runs in RUNS.items():
        assert table.loc[table["persona"] == persona, "n_runs"].sum() == sum(len(r) for r in runs)


def test_salient_nodes_union_and_fraction(run_files):
    alpha = run_files["alpha persona"]
    np.testing.assert_array_equal(N.salient_nodes(alpha), [0, 1, 2, 3])
    np.testing.assert_array_equal(N.salient_nodes(alpha, min_fraction=2 / 3), [1, 2])
    np.testing.assert_array_equal(N.salient_nodes(alpha, min_fraction=0.5), [1, 2])
    np.testing.assert_array_equal(N.salient_nodes(alpha, min_fraction=1.0), [2])
    assert N.salient_nodes(alpha).dtype == np.int64
    assert N.salient_sets(run_files) == UNIONS
    strict = N.salient_sets(run_files, min_fraction=1.0)
    assert strict == {"alpha persona": {2}, "Beta/2": {4, 5}, "gamma": UNIONS["gamma"]}
    with pytest.raises(ValueError, match="min_fraction"):
        N.salient_nodes(alpha, min_fraction=0)
    with pytest.raises(ValueError, match="min_fraction"):
        N.salient_sets(run_files, min_fraction=1.5)


def test_runs_dataframe_accepted_directly(run_files):
    runs = run_files["Beta/2"].runs
    np.testing.assert_array_equal(N.salient_nodes(runs), [2, 3, 4, 5])
    table = N.node_frequency(runs)  # a bare table has no header: only chosen nodes are listed
    assert table["node"].tolist() == [2, 3, 4, 5] and table["n_runs"].tolist() == [1, 1, 2, 2]
    assert N.node_frequency(runs, n_nodes=6)["n_runs"].tolist() == [0, 0, 1, 1, 2, 2]


def test_layers_mapped_with_node_layout(tmp_path):
    layout = [{"layer": 3, "n_units": 4}, {"layer": 7, "n_units": 4}]
    path = write_run_file(tmp_path / "multi.jsonl", [{"nodes": [0, 3, 4, 7]}, {"nodes": [3, 5]}], n_nodes=8,
                          layers=[3, 7], node_layout=layout)
    rf = N.load_runs({"p": path})["p"]
    table = N.node_frequency(rf)
    assert table["layer"].tolist() == [3] * 4 + [7] * 4
    assert table["unit"].tolist() == [0, 1, 2, 3] * 2
    assert table["n_runs"].tolist() == [1, 0, 0, 2, 1, 1, 0, 1]
    counts = N.layer_counts({"p": N.salient_nodes(rf)}, layout)
    assert counts["n_salient"].tolist() == [2, 3]
    assert counts["fraction"].tolist() == [0.5, 0.75]


def test_single_layer_header_without_layout(tmp_path):
    path = write_run_file(tmp_path / "one.jsonl", [{"nodes": [1, 2]}], n_nodes=4, layers=[31])
    table = N.node_frequency(N.load_runs({"p": path})["p"])
    assert table["layer"].tolist() == [31] * 4 and table["unit"].tolist() == [0, 1, 2, 3]


# ------------------------------------------------------------------------ published files


def test_published_fixtures_keep_every_run_line():
    first = FIXTURES / "adv_output_first-persona.out"
    second = FIXTURES / "adv_output_second-persona.out"
    loaded = N.load_runs([first, second], n_nodes=16)
    assert list(loaded) == ["first-persona", "second-persona"]  # named from adv_output_<persona>.out
    a, b = loaded["first-persona"], loaded["second-persona"]
    assert a.format == "published" and len(a.runs) == 4 and a.n_skipped == 1  # hyperparams line skipped
    assert len(b.runs) == 2  # last line has no newline and is kept
    assert a.runs["nodes"].tolist() == [[1, 4, 7], [4, 9], [], [0, 1, 4, 15]]
    freq = N.node_frequency(a, n_nodes=16)
    assert freq.set_index("node")["n_runs"].to_dict() == {
        **{i: 0 for i in range(16)}, 0: 1, 1: 2, 4: 3, 7: 1, 9: 1, 15: 1
    }
    np.testing.assert_allclose(freq.loc[4, "frequency"], 0.75)
    sets = N.salient_sets(loaded)
    assert sets == {"first-persona": {0, 1, 4, 7, 9, 15}, "second-persona": {1, 4, 8, 12}}
    pair = N.pairwise_overlaps(sets, 16).iloc[0]
    assert (pair["intersection"], pair["union"], pair["jaccard"]) == (2, 8, 0.25)


def test_published_none_precision_is_counted_not_dropped():
    loaded = N.load_runs({"a": FIXTURES / "adv_output_first-persona.out"}, n_nodes=16)
    row = N.precision_recall_summary(loaded).iloc[0]
    assert row["n_runs"] == 4 and row["precision_n_none"] == 1 and row["recall_n_none"] == 0
    assert row["precision_mean"] == pytest.approx((0.9 + 1.0 + 0.75) / 3)
    assert row["precision_std"] == pytest.approx(np.std([0.9, 1.0, 0.75]))
    assert row["recall_mean"] == pytest.approx((0.8 + 0.0 + 0.5 + 0.6) / 4)
    as_zero = N.precision_recall_summary(loaded, none_as=0.0).iloc[0]
    assert as_zero["precision_mean"] == pytest.approx((0.9 + 0.0 + 1.0 + 0.75) / 4)
    assert as_zero["precision_n_none"] == 1
    sample_std = N.precision_recall_summary(loaded, ddof=1).iloc[0]
    assert sample_std["recall_std"] == pytest.approx(np.std([0.8, 0.0, 0.5, 0.6], ddof=1))


def test_published_collapsed_empty_lists():
    rf = N.load_runs({"c": FIXTURES / "adv_output_collapsed-spaces.out"}, n_nodes=8)["c"]
    assert rf.runs["nodes"].tolist() == [[3, 5], [], [5]]
    assert N.node_frequency(rf, n_nodes=8)["n_runs"].tolist() == [0, 0, 0, 1, 0, 2, 0, 0]


def test_published_without_n_nodes_lists_chosen_nodes_only():
    rf = N.load_runs({"b": FIXTURES / "adv_output_second-persona.out"})["b"]
    table = N.node_frequency(rf)
    assert table["node"].tolist() == [1, 4, 8, 12] and table["n_runs"].tolist() == [1, 1, 2, 1]


def test_published_has_no_flagged_statements():
    rf = N.load_runs({"b": FIXTURES / "adv_output_second-persona.out"})["b"]
    with pytest.raises(ValueError, match="adv_output_second-persona.out.*published"):
        N.flagged_statements(rf)


# ------------------------------------------------------------------------------ bad input


def test_missing_file_named(tmp_path):
    with pytest.raises(ValueError, match="nope.jsonl"):
        N.load_runs({"p": tmp_path / "nope.jsonl"})


def test_empty_file_named(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty.jsonl"):
        N.load_runs({"p": tmp_path / "empty.jsonl"})


def test_unreadable_file_named(tmp_path):
    (tmp_path / "binary.out").write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(ValueError, match="binary.out"):
        N.load_runs({"p": tmp_path / "binary.out"})


def test_header_without_runs_named(tmp_path):
    path = write_run_file(tmp_path / "noruns.jsonl", [])
    with pytest.raises(ValueError, match="noruns.jsonl.*no runs"):
        N.load_runs({"p": path})


def test_mismatched_n_nodes_names_file(tmp_path):
    a = write_run_file(tmp_path / "a.jsonl", [{"nodes": [1]}], n_nodes=12)
    b = write_run_file(tmp_path / "b.jsonl", [{"nodes": [1]}], n_nodes=16)
    with pytest.raises(ValueError, match=r"b\.jsonl.*16 nodes.*12"):
        N.load_runs({"a": a, "b": b})
    with pytest.raises(ValueError, match=r"a\.jsonl.*12 nodes.*n_nodes argument"):
        N.load_runs({"a": a}, n_nodes=16)


def test_mismatched_layouts_names_file(tmp_path):
    a = write_run_file(tmp_path / "a.jsonl", [{"nodes": [1]}], n_nodes=8, node_layout=[{"layer": 1, "n_units": 8}])
    b = write_run_file(tmp_path / "b.jsonl", [{"nodes": [1]}], n_nodes=8, node_layout=[{"layer": 2, "n_units": 8}])
    with pytest.raises(ValueError, match=r"b\.jsonl.*node_layout"):
        N.load_runs({"a": a, "b": b})


def test_published_node_outside_n_nodes_names_file():
    with pytest.raises(ValueError, match=r"adv_output_first-persona\.out.*node 15.*only 10"):
        N.load_runs({"a": FIXTURES / "adv_output_first-persona.out"}, n_nodes=10)


def test_duplicate_persona_from_list(run_paths):
    path = run_paths["gamma"]
    with pytest.raises(ValueError, match="given twice"):
        N.load_runs([path, path])


# ---------------------------------------------------------------------------- overlaps


def test_set_sizes(run_files):
    sizes = N.set_sizes(N.salient_sets(run_files), n_nodes=12)
    assert sizes["persona"].tolist() == list(RUNS)
    assert sizes["size"].tolist() == [4, 4, 5]
    np.testing.assert_allclose(sizes["fraction"], [4 / 12, 4 / 12, 5 / 12])


def test_exclusive_intersections_exact():
    table = N.exclusive_intersections(UNIONS, with_nodes=True)
    assert list(table.columns) == ["alpha persona", "Beta/2", "gamma", "degree", "size", "nodes"]
    got = {tuple(r[:3]): (r[4], r[5]) for r in table.itertuples(index=False)}
    assert got == {
        (False, False, True): (4, [6, 7, 8, 9]),
        (True, False, False): (2, [0, 1]),
        (True, True, False): (2, [2, 3]),
        (False, True, False): (1, [4]),
        (False, True, True): (1, [5]),
    }
    assert table["size"].tolist() == [4, 2, 2, 1, 1]  # largest first
    assert table["size"].sum() == len(set().union(*UNIONS.values()))
    by_degree = N.exclusive_intersections(UNIONS, sort_by="degree")
    assert by_degree["degree"].tolist() == [1, 1, 1, 2, 2]


def test_exclusive_intersections_partition_random_sets():
    rng = np.random.default_rng(1)
    sets = {f"p{i}": set(rng.choice(60, rng.integers(0, 40), replace=False).tolist()) for i in range(5)}
    table = N.exclusive_intersections(sets, with_nodes=True)
    names = list(sets)
    for row in table.itertuples(index=False):
        members = [n for n, flag in zip(names, row[:5]) if flag]
        others = set().union(*(sets[n] for n in names if n not in members))
        expected = set.intersection(*(sets[m] for m in members)) - others
        assert set(row.nodes) == expected and row.size == len(expected) and row.degree == len(members)
    assert table["size"].sum() == len(set().union(*sets.values()))


def test_reserved_persona_name_rejected():
    with pytest.raises(ValueError, match="size"):
        N.exclusive_intersections({"size": {1}, "b": {2}})


def test_pairwise_overlaps_exact():
    table = N.pairwise_overlaps(UNIONS, n_nodes=12)
    assert table[["persona_a", "persona_b"]].values.tolist() == [
        ["alpha persona", "Beta/2"], ["alpha persona", "gamma"], ["Beta/2", "gamma"]
    ]
    assert table["intersection"].tolist() == [2, 0, 1]
    assert table["union"].tolist() == [6, 9, 8]
    np.testing.assert_allclose(table["jaccard"], [1 / 3, 0.0, 1 / 8])
    np.testing.assert_allclose(table["overlap_coefficient"], [2 / 4, 0.0, 1 / 4])
    np.testing.assert_allclose(table["expected"], [16 / 12, 20 / 12, 20 / 12])
    np.testing.assert_allclose(table["ratio"], [2 / (16 / 12), 0.0, 1 / (20 / 12)])
    np.testing.assert_allclose(
        table["p_value"],
        [stats.hypergeom.sf(1, 12, 4, 4), 1.0, stats.hypergeom.sf(0, 12, 4, 5)],
        rtol=1e-12,
    )


def test_pairwise_overlaps_match_brute_force_on_random_sets():
    rng = np.random.default_rng(2)
    sets = {f"s{i}": set(rng.choice(50, rng.integers(1, 30), replace=False).tolist()) for i in range(6)}
    table = N.pairwise_overlaps(sets, 50)
    for row, (a, b, k, u, j) in zip(table.itertuples(index=False), brute_pairwise(sets, 50)):
        assert (row.persona_a, row.persona_b, row.intersection, row.union) == (a, b, k, u)
        assert row.jaccard == pytest.approx(j)
        assert row.p_value == pytest.approx(stats.hypergeom.sf(k - 1, 50, len(sets[a]), len(sets[b])), rel=1e-12)


def test_hypergeometric_p_value_by_enumeration():
    # all pairs of subsets of sizes 3 and 4 of 7 nodes: P(|A ∩ B| >= k)
    m, a = 7, set(range(3))
    inter = [len(a & set(b)) for b in itertools.combinations(range(m), 4)]
    for k in range(4):
        exact = np.mean(np.array(inter) >= k)
        _, p = N.intersection_p_value([3, 4], m, k)
        assert p == pytest.approx(exact, rel=1e-12)
        assert p == pytest.approx(stats.hypergeom.sf(k - 1, m, 3, 4), rel=1e-12)


def test_multiway_p_value_by_enumeration():
    # three independent random subsets of sizes 2, 3, 4 of 6 nodes
    m, sizes = 6, (2, 3, 4)
    counts = np.zeros(3)
    total = 0
    for a in itertools.combinations(range(m), sizes[0]):
        for b in itertools.combinations(range(m), sizes[1]):
            for c in itertools.combinations(range(m), sizes[2]):
                counts[len(set(a) & set(b) & set(c))] += 1
                total += 1
    for k in range(3):
        expected, p = N.intersection_p_value(sizes, m, k)
        assert p == pytest.approx(counts[k:].sum() / total, rel=1e-12)
        assert expected == pytest.approx(m * (2 / 6) * (3 / 6) * (4 / 6))


def test_multiway_p_value_matches_scipy_chain():
    # larger case: the same chain built from scipy's hypergeometric pmf
    m, sizes = 300, (120, 150, 180, 200)
    pmf = np.zeros(sizes[0] + 1)
    pmf[-1] = 1.0
    for s in sizes[1:]:
        x = np.arange(pmf.size)[:, None]
        pmf = pmf @ stats.hypergeom.pmf(np.arange(pmf.size)[None, :], m, x, s)
    for observed in (10, 24, 40, 60):
        _, p = N.intersection_p_value(sizes, m, observed)
        assert p == pytest.approx(pmf[observed:].sum(), rel=1e-9)


def test_intersection_p_value_rejects_impossible():
    with pytest.raises(ValueError, match="impossible"):
        N.intersection_p_value([3, 4], 10, 5)
    with pytest.raises(ValueError, match="at least 2"):
        N.intersection_p_value([3], 10, 1)


def test_adjust_p_values():
    p = np.array([0.01, 0.04, 0.03, 0.5, np.nan])
    bh = N.adjust_p_values(p)
    # by hand: sorted 0.01, 0.03, 0.04, 0.5 (m=4) scale to 0.04, 0.06, 0.0533, 0.5; running min from the top
    np.testing.assert_allclose(bh[:4], [0.04, 0.16 / 3, 0.16 / 3, 0.5], rtol=1e-12)
    np.testing.assert_allclose(bh[:4], stats.false_discovery_control(p[:4], method="bh"), rtol=1e-12)
    assert np.isnan(bh[4])
    np.testing.assert_allclose(N.adjust_p_values(p, "bonferroni")[:4], [0.04, 0.16, 0.12, 1.0])
    np.testing.assert_allclose(N.adjust_p_values(p, "none")[:4], p[:4])
    rng = np.random.default_rng(3)
    q = rng.uniform(size=50) ** 3
    np.testing.assert_allclose(N.adjust_p_values(q), stats.false_discovery_control(q, method="bh"), rtol=1e-12)
    with pytest.raises(ValueError, match="correction"):
        N.adjust_p_values(p, "holm")


def test_pairwise_correction_applied():
    table = N.pairwise_overlaps(UNIONS, 12, correction="bonferroni")
    np.testing.assert_allclose(table["p_adjusted"], np.minimum(table["p_value"] * 3, 1))


def test_shared_by_all():
    assert N.shared_by_all(UNIONS).tolist() == []
    assert N.shared_by_all({"a": {1, 2, 3}, "b": [3, 2, 9], "c": np.array([2, 3])}).tolist() == [2, 3]


def test_overlap_checks_n_nodes():
    with pytest.raises(ValueError, match="n_nodes"):
        N.pairwise_overlaps(UNIONS, n_nodes=8)
    with pytest.raises(ValueError, match="at least 2"):
        N.pairwise_overlaps({"a": {1}}, n_nodes=8)


# ------------------------------------------------------------------------------ topics


TOPICS = {"Ethics-like": ["alpha persona", "Beta/2"], "Other": ["gamma", "absent persona"]}


def test_topic_sets():
    with pytest.raises(ValueError, match="absent persona"):
        N.topic_sets(UNIONS, TOPICS)
    grouped = N.topic_sets(UNIONS, TOPICS, missing="ignore")
    assert grouped == {"Ethics-like": {"alpha persona": UNIONS["alpha persona"], "Beta/2": UNIONS["Beta/2"]},
                       "Other": {"gamma": UNIONS["gamma"]}}
    # the whole data/paper_personas.json layout is accepted too
    assert N.topic_sets(UNIONS, {"topics": TOPICS, "short_names": {}}, missing="ignore") == grouped


def test_overlap_table_exact():
    table = N.overlap_table(UNIONS, 12, topics=TOPICS).set_index("group")
    assert table.index.tolist() == ["Ethics-like", "Other", "ALL"]
    ethics = table.loc["Ethics-like"]
    assert ethics["n_personas"] == 2 and ethics["personas"] == "alpha persona;Beta/2"
    assert (ethics["union"], ethics["shared_by_all"]) == (6, 2)
    assert ethics["shared_fraction"] == pytest.approx(2 / 12)
    assert ethics["shared_expected"] == pytest.approx(16 / 12)
    assert ethics["shared_p_value"] == pytest.approx(stats.hypergeom.sf(1, 12, 4, 4))
    assert ethics["jaccard_mean"] == pytest.approx(1 / 3)
    other = table.loc["Other"]
    assert other["n_personas"] == 1 and other["shared_by_all"] == 5 and np.isnan(other["shared_p_value"])
    everyone = table.loc["ALL"]
    assert (everyone["union"], everyone["shared_by_all"]) == (10, 0)
    assert everyone["shared_p_value"] == pytest.approx(1.0)
    assert everyone["jaccard_mean"] == pytest.approx((1 / 3 + 0 + 1 / 8) / 3)
    assert everyone["jaccard_min"] == 0 and everyone["jaccard_max"] == pytest.approx(1 / 3)
    # BH over the two defined p-values
    defined = table["shared_p_value"].dropna()
    np.testing.assert_allclose(table["shared_p_adjusted"].dropna(), N.adjust_p_values(defined.to_numpy()))


# ---------------------------------------------------------------- flagged statements


def test_flagged_statements_exact(tmp_path):
    metadata = {"anomalous_pool_ids": ["t/0", "t/1", "t/2"], "clean_pool_ids": ["t/10", "t/11"]}
    runs = [
        {"nodes": [1], "records_pool_index": [0, 2, 1], "records_anomalous": [True, True, False],
         "sample_anomalous": [0, 1, 2], "sample_clean": [0, 1]},
        {"nodes": [1], "records_pool_index": [2, 1], "records_anomalous": [True, False],
         "sample_anomalous": [2, 0, 1], "sample_clean": [1, 0]},
        {"nodes": [2], "records_pool_index": [2], "records_anomalous": [True],
         "sample_anomalous": [2, 1, 0], "sample_clean": [0, 1]},
    ]
    path = write_run_file(tmp_path / "f.jsonl", runs, metadata=metadata)
    rf = N.load_runs({"p": path})["p"]
    statements = pd.DataFrame({"id": ["t/0", "t/1", "t/2", "t/10", "t/11"],
                               "statement": ["zero", "one", "two", "ten", "eleven"]})
    table = N.flagged_statements(rf, statements=statements, top=None)
    assert table[["pool", "pool_index", "statement_id", "n_flagged"]].values.tolist() == [
        ["anomalous", 2, "t/2", 3],
        ["clean", 1, "t/11", 2],
        ["anomalous", 0, "t/0", 1],
    ]
    np.testing.assert_allclose(table["flag_frequency"], [1.0, 2 / 3, 1 / 3])
    assert table["statement"].tolist() == ["two", "eleven", "zero"]
    assert N.flagged_statements(rf, top=1)["statement_id"].tolist() == ["t/2"]


def test_flagged_statements_rate_from_samples():
    # a runs table that also records the samples gives how often each statement was drawn
    runs = pd.DataFrame({
        "nodes": [[1], [2]],
        "records_pool_index": [[0, 1], [0]],
        "records_anomalous": [[True, False], [True]],
        "sample_anomalous": [[0, 2], [0, 1]],
        "sample_clean": [[1, 0], [0, 2]],
    })
    table = N.flagged_statements(runs, top=None)
    assert table[["pool", "pool_index", "n_flagged", "n_sampled"]].values.tolist() == [
        ["anomalous", 0, 2, 2], ["clean", 1, 1, 1]
    ]
    np.testing.assert_allclose(table["flag_rate"], [1.0, 1.0])


def test_flagged_statements_without_ids(tmp_path):
    runs = [{"nodes": [1], "records_pool_index": [1], "records_anomalous": [False]}]
    path = write_run_file(tmp_path / "f.jsonl", runs)
    rf = N.load_runs({"p": path})["p"]
    table = N.flagged_statements(rf)
    assert "statement_id" not in table.columns and table["pool"].tolist() == ["clean"]
    with pytest.raises(ValueError, match=r"f\.jsonl.*pool_ids"):
        N.flagged_statements(rf, statements=pd.DataFrame({"id": [], "statement": []}))


def test_flagged_statements_index_outside_ids(tmp_path):
    runs = [{"nodes": [1], "records_pool_index": [5], "records_anomalous": [True]}]
    path = write_run_file(tmp_path / "bad.jsonl", runs, metadata={"anomalous_pool_ids": ["a"], "clean_pool_ids": []})
    with pytest.raises(ValueError, match=r"bad\.jsonl.*index 5"):
        N.flagged_statements(N.load_runs({"p": path})["p"])


# ----------------------------------------------------------------------------- reports


def test_save_node_report(run_files, tmp_path):
    out = tmp_path / "report"
    written = N.save_node_report(run_files, out, N.salient_sets(run_files), topics=TOPICS)
    names = {p.name for p in out.iterdir()}
    assert names == {
        "precision_recall.csv", "node_frequency.csv", "set_sizes.csv", "exclusive_intersections.csv",
        "overlap_table.csv", "pairwise_overlaps.csv", "flagged_statements.csv", "salient_sets.json",
        "node_report.json",
    }
    assert json.loads((out / "salient_sets.json").read_text()) == {p: sorted(s) for p, s in UNIONS.items()}
    pairwise = pd.read_csv(written["pairwise_overlaps"])
    assert pairwise["intersection"].tolist() == [2, 0, 1]
    meta = json.loads((out / "node_report.json").read_text())
    assert meta["n_nodes"] == 12 and meta["personas"] == list(RUNS) and meta["salient_rule"] == "union over runs"
    assert not any(name.startswith(".") for name in names)  # no temporary files left behind
    with pytest.raises(ValueError, match="sets cover"):
        N.save_node_report(run_files, out, N.salient_sets(dict(list(run_files.items())[:1])))


def test_save_node_report_published_needs_n_nodes(tmp_path):
    loaded = N.load_runs([FIXTURES / "adv_output_first-persona.out", FIXTURES / "adv_output_second-persona.out"])
    with pytest.raises(ValueError, match="n_nodes"):
        N.save_node_report(loaded, tmp_path / "r")
    assert not (tmp_path / "r").exists()
    written = N.save_node_report(loaded, tmp_path / "r", n_nodes=16)
    assert "flagged_statements" not in written
    assert "published" in json.loads(written["metadata"].read_text())["notes"][0]
