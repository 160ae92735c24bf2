"""Pools of the paper's DeepScan levels, the experiment driver and the baselines."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import deepscan
from personas.scans.baselines import baseline_runs
from personas.scans.driver import experiment_seed, run_file_name, run_persona_scans, scan_pools

TOPICS = {"T1": ["a", "b"], "T2": ["c"]}


def _meta(n_per_direction: int = 20) -> pd.DataFrame:
    rows = []
    for persona in ("a", "b", "c"):
        for direction in ("positive", "negative"):
            for i in range(n_per_direction):
                rows.append({"id": f"{persona}/{direction[0]}{i}", "persona": persona, "direction": direction})
    return pd.DataFrame(rows)


def _labels(meta, rows):
    return set(zip(meta["persona"].iloc[rows], meta["direction"].iloc[rows]))


@pytest.mark.parametrize("level", [2, 1, 0])
def test_pools_hold_what_each_level_says(level):
    meta = _meta()
    pools = scan_pools(meta, "a", level=level, topics=TOPICS, background_size=12, clean_size=5, anomalous_size=15, seed=3)
    assert (len(pools.background), len(pools.clean), len(pools.anomalous)) == (12, 5, 15)
    assert not set(pools.background) & set(pools.clean)  # the clean pool is never in its background
    assert _labels(meta, pools.anomalous) == {("a", "positive")}
    expected = {2: {("a", "negative")}, 1: {("b", "positive")}, 0: {("c", "positive")}}[level]
    assert _labels(meta, pools.background) | _labels(meta, pools.clean) == expected
    ids = pools.ids(meta)
    assert ids["anomalous_pool_ids"] == meta["id"].iloc[pools.anomalous].tolist()


def test_pools_are_seeded():
    meta = _meta()
    one = scan_pools(meta, "a", background_size=12, clean_size=5, anomalous_size=15, seed=1)
    two = scan_pools(meta, "a", background_size=12, clean_size=5, anomalous_size=15, seed=1)
    other = scan_pools(meta, "a", background_size=12, clean_size=5, anomalous_size=15, seed=2)
    assert np.array_equal(one.clean, two.clean) and not np.array_equal(one.clean, other.clean)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"persona": "zz"}, "not among the loaded personas"),
        ({"level": 3}, "level must be"),
        ({"level": 1, "topics": None}, "needs `topics`"),
        ({"background_size": 19, "clean_size": 5}, "20 '-' statements of a available"),
        ({"anomalous_size": 21}, r"has 20 '\+' statements"),
        ({"level": 0, "topics": {"T1": ["a", "b", "c"]}}, "needs other personas"),
    ],
)
def test_pool_errors_name_the_problem(kwargs, message):
    args = {"persona": "a", "level": 2, "topics": TOPICS, "background_size": 10, "clean_size": 5, "anomalous_size": 10}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        scan_pools(_meta(), args.pop("persona"), **args)


def test_experiment_seed_depends_on_name_not_position():
    assert experiment_seed(0, "a", 2) == experiment_seed(0, "a", 2)
    assert len({experiment_seed(0, "a", 2), experiment_seed(0, "b", 2), experiment_seed(0, "a", 1),
                experiment_seed(1, "a", 2)}) == 4
    assert run_file_name("anti-LGBTQ rights/x", 2, 31) == "level2_layer31_anti-LGBTQ_rights_x.jsonl"


def _planted(seed=0, n_nodes=30, shift=4.0):
    """Activations where persona a's '+' statements are shifted up on nodes 0..9."""
    meta = _meta(40)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(len(meta), n_nodes))
    plus_a = (meta["persona"] == "a") & (meta["direction"] == "positive")
    X[np.flatnonzero(plus_a)[:, None], np.arange(10)] += shift
    return X, meta


def test_run_persona_scans_finds_a_planted_persona(tmp_path):
    X, meta = _planted()
    summary = run_persona_scans(
        X, meta, ["a", "b"], layer=7, model="toy", runs_dir=tmp_path, levels=[2], background_size=30, clean_size=10,
        anomalous_size=40, clean_ssize=10, anom_ssize=10, n_runs=5, seed=0, baselines=["kmeans"], progress=False,
    )
    ds = summary[summary["method"] == "deepscan"].set_index("persona")
    assert ds.loc["a", "precision_mean"] > 0.95 and ds.loc["a", "recall_mean"] > 0.95
    assert ds.loc["a", "detection_auc"] == pytest.approx(1.0)
    assert ds.loc["b", "detection_auc"] < 0.9  # b has no signal
    km = summary[(summary["method"] == "kmeans") & (summary["persona"] == "a")].iloc[0]
    assert km["precision_mean"] == pytest.approx(1.0) and km["recall_mean"] == pytest.approx(1.0)
    index = json.loads((tmp_path / "index.json").read_text())
    assert {k: index[k] for k in ("layer", "model", "levels")} == {
        "layer": 7, "model": "toy", "levels": {"2": {"a": "level2_layer7_a.jsonl", "b": "level2_layer7_b.jsonl"}}}
    assert index["null"] == {"2": {"a": "level2_layer7_a.null.json", "b": "level2_layer7_b.null.json"}}
    run_file = deepscan.read_run_file(tmp_path / index["levels"]["2"]["a"])
    assert run_file.header["config"]["node_layout"] == [{"layer": 7, "n_units": 30}]
    assert run_file.header["config"]["metadata"]["level"] == 2
    nodes = set().union(*map(set, run_file.runs["nodes"]))
    assert set(range(10)) <= nodes  # the shifted nodes are found
    # rerun: resumed from the run files, the same summary
    again = run_persona_scans(
        X, meta, ["a", "b"], layer=7, model="toy", runs_dir=tmp_path, levels=[2], background_size=30, clean_size=10,
        anomalous_size=40, clean_ssize=10, anom_ssize=10, n_runs=5, seed=0, baselines=["kmeans"], progress=False,
    )
    pd.testing.assert_frame_equal(again, summary)


def test_baselines_count_precision_and_recall_exactly():
    rng = np.random.default_rng(0)
    background = rng.normal(size=(60, 5))
    clean = rng.normal(size=(10, 5))
    anomalous = rng.normal(size=(10, 5)) + 50.0  # far away: every detector flags exactly these
    table = baseline_runs(background, clean, anomalous, [(0, [0, 1, 2], [0, 1]), (1, [3], [2, 3, 4])], seed=0)
    assert list(table["method"]) == ["lof", "iforest", "kmeans"] * 2
    lof = table[table["method"] == "lof"].set_index("run_id")
    assert lof.loc[0, "recall"] == 1.0 and lof.loc[1, "recall"] == 1.0
    assert (table["n_flagged"] >= table["run_id"].map({0: 2, 1: 3})).all()
    km = table[table["method"] == "kmeans"].set_index("run_id")
    assert km.loc[0, "precision"] == 1.0 and km.loc[0, "n_flagged"] == 2
    assert km.loc[1, "precision"] == 1.0 and km.loc[1, "n_flagged"] == 3


def test_baseline_errors():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_runs(x, x, x, [], methods=["svm"])
    with pytest.raises(ValueError, match="node counts differ"):
        baseline_runs(x, np.zeros((5, 2)), x, [])
    with pytest.raises(ValueError, match="NaN or inf"):
        baseline_runs(np.full((5, 3), np.nan), x, x, [])
