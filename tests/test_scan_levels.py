"""Pools of the paper's DeepScan levels (per persona and per topic), the experiment driver, stale run files, baselines."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

import deepscan
from personas.scans.baselines import baseline_runs
from personas.scans.driver import check_runs_current, run_persona_scans
from personas.scans.pools import experiment_seed, run_file_name, scan_pools, topic_pools
from personas.scans.settings import PoolSizes, SampleSizes, ScanPlan, ScanSettings
from personas.store.fingerprints import store_fingerprint
from personas.store.write import save_activations

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
    pools = scan_pools(meta, "a", level=level, topics=TOPICS, sizes=PoolSizes(12, 5, 15), seed=3)
    assert (len(pools.background), len(pools.clean), len(pools.anomalous)) == (12, 5, 15)
    assert not set(pools.background) & set(pools.clean)  # the clean pool is never in its background
    assert _labels(meta, pools.anomalous) == {("a", "positive")}
    expected = {2: {("a", "negative")}, 1: {("b", "positive")}, 0: {("c", "positive")}}[level]
    assert _labels(meta, pools.background) | _labels(meta, pools.clean) == expected
    ids = pools.ids(meta)
    assert ids["anomalous_pool_ids"] == meta["id"].iloc[pools.anomalous].tolist()


def test_pools_are_seeded():
    meta = _meta()
    sizes = PoolSizes(background=12, clean=5, anomalous=15)
    one = scan_pools(meta, "a", sizes=sizes, seed=1)
    two = scan_pools(meta, "a", sizes=sizes, seed=1)
    other = scan_pools(meta, "a", sizes=sizes, seed=2)
    assert np.array_equal(one.clean, two.clean) and not np.array_equal(one.clean, other.clean)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"persona": "zz"}, "not among the loaded personas"),
        ({"level": 3}, "level must be"),
        ({"level": 1, "topics": None}, "needs `topics`"),
        ({"sizes": PoolSizes(19, 5, 10)}, "20 '-' statements of a available"),
        ({"sizes": PoolSizes(10, 5, 21)}, r"has 20 '\+' statements"),
        ({"level": 0, "topics": {"T1": ["a", "b", "c"]}}, "needs other personas"),
    ],
)
def test_pool_errors_name_the_problem(kwargs, message):
    args = {"persona": "a", "level": 2, "topics": TOPICS, "sizes": PoolSizes(10, 5, 10)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        scan_pools(_meta(), args.pop("persona"), **args)


def test_experiment_seed_depends_on_name_not_position():
    assert experiment_seed(0, "a", 2) == experiment_seed(0, "a", 2)
    assert len({experiment_seed(0, "a", 2), experiment_seed(0, "b", 2), experiment_seed(0, "a", 1),
                experiment_seed(1, "a", 2)}) == 4
    # an unsafe name keeps its safe part and gets a hash of itself: never the file of another name
    name = run_file_name("anti-LGBTQ rights/x", 2, 31)
    assert re.fullmatch(r"level2_layer31_anti-LGBTQ-rights-x-[0-9a-f]{8}\.jsonl", name)
    assert name != run_file_name("anti-LGBTQ-rights-x", 2, 31) == "level2_layer31_anti-LGBTQ-rights-x.jsonl"


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
    settings = ScanSettings(pool_sizes=PoolSizes(30, 10, 40), sample_sizes=SampleSizes(clean=10, anomalous=10, n_runs=5),
                            baselines=["kmeans"])
    plan = ScanPlan(["a", "b"], layer=7, levels=[2])
    kw = dict(model_name="toy", runs_dir=tmp_path, settings=settings, seed=0, progress=False)
    summary = run_persona_scans(X, meta, plan, **kw)
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
    again = run_persona_scans(X, meta, plan, **kw)
    pd.testing.assert_frame_equal(again, summary)
    with pytest.raises(TypeError, match="pool_sizes must be a PoolSizes"):
        ScanSettings(pool_sizes={"background": 30})
    with pytest.raises(TypeError, match="pools"):
        run_persona_scans(X, meta, plan, **kw, pools=PoolSizes())  # sizes only through the settings objects


def test_topic_pools_are_the_papers_level_0_rows():
    meta = _meta()
    topics = {"T1": ["a", "b"], "T2": ["c"], "T3": ["zz"]}  # zz is not loaded: ignored
    pools = topic_pools(meta, "T1", topics, sizes=PoolSizes(background=12, clean=5, anomalous=30), seed=3)
    assert pools.persona == "T1+" and pools.level == 0
    assert (len(pools.background), len(pools.clean), len(pools.anomalous)) == (12, 5, 30)
    # anomalous: '+' of every T1 persona (40 rows, 30 drawn); reference: '+' of the other topics only
    assert _labels(meta, pools.anomalous) == {("a", "positive"), ("b", "positive")}
    assert _labels(meta, pools.background) | _labels(meta, pools.clean) == {("c", "positive")}
    assert not set(pools.background) & set(pools.clean)
    # the very rows: a permutation drawn from default_rng(seed), reference first, then the anomalous rows
    rng = np.random.default_rng(3)
    reference = rng.permutation(np.flatnonzero((meta.persona == "c") & (meta.direction == "positive")))
    anomalous = rng.permutation(np.flatnonzero(meta.persona.isin(["a", "b"]) & (meta.direction == "positive")))
    np.testing.assert_array_equal(pools.background, np.sort(reference[:12]))
    np.testing.assert_array_equal(pools.clean, np.sort(reference[12:17]))
    np.testing.assert_array_equal(pools.anomalous, np.sort(anomalous[:30]))
    assert "outside T1" in pools.description
    with pytest.raises(ValueError, match="is not one of"):
        topic_pools(meta, "T9", topics)
    with pytest.raises(ValueError, match="none of its personas"):
        topic_pools(meta, "T3", topics, sizes=PoolSizes(5, 5, 5))
    with pytest.raises(ValueError, match="needs personas of other topics"):
        topic_pools(meta, "T1", {"T1": ["a", "b", "c"]}, sizes=PoolSizes(5, 5, 5))
    with pytest.raises(ValueError, match=r"20 '\+' statements of personas outside T1 available"):
        topic_pools(meta, "T1", topics, sizes=PoolSizes(background=16, clean=5, anomalous=30))


def _store(store_dir, meta, X, shift=0.0):
    info = {"hidden_size": X.shape[1], "n_blocks": 8, "position": "last", "n_tokens": []}
    for persona, group in meta.groupby("persona", sort=False):
        rows = group.index.to_numpy()
        statements = group.assign(statement=[f"statement {i}" for i in group["id"]])
        save_activations(store_dir, {7: X[rows] + shift}, info, statements, model_name="toy", persona=persona)


def test_check_runs_current_refuses_run_files_of_other_activations(tmp_path):
    X, meta = _planted(n_nodes=12)
    X = X.astype(np.float32)
    _store(tmp_path / "store", meta, X)
    fingerprint = store_fingerprint(tmp_path / "store", "toy", ["a", "b"], [7])
    run_persona_scans(X, meta, ScanPlan(["a", "b"], layer=7, levels=[2]), model_name="toy",
                      runs_dir=tmp_path / "runs", settings=ScanSettings(PoolSizes(30, 10, 40), SampleSizes(5, 5, 2),
                                                                        detection=False),
                      progress=False, store_fingerprint=fingerprint)
    index = json.loads((tmp_path / "runs" / "index.json").read_text())
    assert index["store_fingerprint"] == fingerprint and index["personas"] == ["a", "b"]
    check_runs_current(index, tmp_path / "store", "toy")  # the store as it was: accepted
    check_runs_current({**index, "store_fingerprint": None}, tmp_path / "store", "toy")  # nothing recorded
    _store(tmp_path / "store", meta, X, shift=1.0)  # re-extracted: other activations, same names
    with pytest.raises(ValueError, match="other activations than .* now holds for 'toy'"):
        check_runs_current(index, tmp_path / "store", "toy")
    with pytest.raises(ValueError, match="not the personas it covers"):
        check_runs_current({**index, "personas": []}, tmp_path / "store", "toy")


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


def test_baselines_flag_each_run_as_predicting_its_own_sample_does():
    """The novelty detectors predict each pool record once; a run's flags must equal predicting its sample."""
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor

    rng = np.random.default_rng(3)
    background = rng.normal(size=(80, 6))
    clean, anomalous = rng.normal(size=(30, 6)), rng.normal(size=(40, 6)) * 2.5
    samples = [(k, rng.choice(30, 8, replace=False), rng.choice(40, 12, replace=False)) for k in range(6)]
    table = baseline_runs(background, clean, anomalous, samples, methods=["lof", "iforest"], seed=4).set_index(
        ["run_id", "method"])
    detectors = {"lof": LocalOutlierFactor(n_neighbors=20, novelty=True).fit(background),
                 "iforest": IsolationForest(random_state=4).fit(background)}
    for run_id, c, a in samples:
        sample = np.concatenate([clean[c], anomalous[a]])
        for name, det in detectors.items():
            flagged = det.predict(sample) == -1
            row = table.loc[(run_id, name)]
            assert row["n_flagged"] == flagged.sum()
            hits = flagged[len(c):].sum()
            assert row["recall"] == hits / len(a)
            assert (row["precision"] is None or np.isnan(row["precision"])) if not flagged.any() else \
                row["precision"] == hits / flagged.sum()
