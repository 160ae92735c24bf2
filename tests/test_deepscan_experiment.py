"""Experiments: reproducibility (same seed, serial = parallel, resume), run files, detection power, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import deepscan.experiment as exp_mod
from deepscan import (
    RUN_COLUMNS,
    ScanConfig,
    detection_power,
    make_node_layout,
    node_to_layer_unit,
    read_run_file,
    roc_auc,
    run_experiment,
    run_seed,
)

M = 48
PLANTED = np.arange(10, 22)


def _pools(seed=0, shift=3.0):
    rng = np.random.default_rng(seed)
    bg = rng.standard_normal((60, M)).astype(np.float32)
    clean = rng.standard_normal((25, M)).astype(np.float32)
    anom = rng.standard_normal((30, M)).astype(np.float32)
    anom[:, PLANTED] += shift
    return bg, clean, anom


KW = dict(clean_ssize=10, anom_ssize=10, n_runs=12, seed=3, progress=False)


def test_planted_signal_precision_recall_and_run_fields(tmp_path):
    bg, clean, anom = _pools()
    meta = {"persona": "agreeableness", "clean_pool_ids": [f"c{i}" for i in range(25)]}
    res = run_experiment(bg, clean, anom, **KW, run_file=tmp_path / "r.jsonl", metadata=meta,
                         node_layout=make_node_layout([4, 7], [16, 32]), model="tiny")
    runs = res.runs
    assert list(runs.columns) == RUN_COLUMNS and runs["run_id"].tolist() == list(range(12))
    assert runs["precision"].mean() > 0.95 and runs["recall"].mean() > 0.95
    assert runs["seed"].tolist() == [run_seed(3, i) for i in range(12)] and len(runs["sample_clean"][0]) == 10
    cfg = res.config
    assert cfg["persona"] == "agreeableness" and cfg["model"] == "tiny" and cfg["layers"] == [4, 7]
    assert cfg["n_nodes"] == M and cfg["background_size"] == 60 and cfg["clean_pool_size"] == 25
    assert cfg["score"] == "hc" and cfg["tail"] == "upper" and cfg["thresholds"] == "exact" and cfg["preset"] is None
    assert cfg["metadata"]["clean_pool_ids"][3] == "c3"
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    for line in lines[1:]:
        assert line["seed"] == run_seed(3, line["run_id"])
        pos = np.array(line["records"])
        assert (np.diff(pos) > 0).all() and line["records_anomalous"] == (pos >= 10).tolist()
        sample = np.array(line["sample_clean"] + line["sample_anomalous"])
        assert line["records_pool_index"] == sample[pos].tolist()
        hits = sum(line["records_anomalous"])
        assert line["precision"] == hits / len(pos) and line["recall"] == hits / 10
    layers, units = node_to_layer_unit(runs["nodes"][0], cfg["node_layout"])
    assert set(layers.tolist()) <= {4, 7} and np.isin(np.asarray(runs["nodes"][0]), PLANTED).mean() > 0.8
    assert (layers == 4).sum() == np.sum(np.asarray(runs["nodes"][0]) < 16)
    # in-memory result equals what the file holds
    pd.testing.assert_frame_equal(runs, read_run_file(tmp_path / "r.jsonl").runs)


def test_same_seed_same_runs_and_serial_equals_parallel(tmp_path):
    bg, clean, anom = _pools()
    cfg = ScanConfig(restarts=3)  # random restarts use the run's generator too
    a = run_experiment(bg, clean, anom, **KW, config=cfg, run_file=tmp_path / "a.jsonl")
    b = run_experiment(bg, clean, anom, **KW, config=cfg, run_file=tmp_path / "b.jsonl", n_jobs=2)
    c = run_experiment(bg, clean, anom, **KW, config=cfg)
    pd.testing.assert_frame_equal(a.runs, b.runs)
    pd.testing.assert_frame_equal(a.runs, c.runs)
    body = lambda p: p.read_text().splitlines()[1:]  # noqa: E731 (header holds the creation time)
    assert body(tmp_path / "a.jsonl") == body(tmp_path / "b.jsonl")
    d = run_experiment(bg, clean, anom, **{**KW, "seed": 4}, config=cfg)
    assert not a.runs["score"].equals(d.runs["score"])
    # seeds are SeedSequence(seed).spawn(n)[i]
    child = np.random.SeedSequence(3).spawn(12)[5].generate_state(2, np.uint32)
    assert run_seed(3, 5) == (int(child[0]) << 32 | int(child[1])) & ((1 << 63) - 1)


def test_killed_experiment_resumes_without_duplicates_or_losses(tmp_path, monkeypatch):
    bg, clean, anom = _pools()
    full = run_experiment(bg, clean, anom, **KW, run_file=tmp_path / "full.jsonl")
    orig = exp_mod.one_run

    def dies_at_7(run_id, *a, **k):
        if run_id == 7:
            raise KeyboardInterrupt("killed")
        return orig(run_id, *a, **k)

    monkeypatch.setattr(exp_mod, "one_run", dies_at_7)
    path = tmp_path / "r.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(bg, clean, anom, **KW, run_file=path)
    partial = read_run_file(path)
    assert partial.runs["run_id"].tolist() == list(range(7))  # whole runs, nothing torn
    monkeypatch.setattr(exp_mod, "one_run", orig)
    resumed = run_experiment(bg, clean, anom, **KW, run_file=path)
    pd.testing.assert_frame_equal(resumed.runs, full.runs)
    assert resumed.header["created"] == partial.header["created"]
    # a file cut after k runs (a kill between flushes) resumes the same way
    text = (tmp_path / "full.jsonl").read_text().splitlines()
    (tmp_path / "cut.jsonl").write_text("\n".join(text[:1] + text[1:4] + text[9:11]) + "\n")
    again = run_experiment(bg, clean, anom, **KW, run_file=tmp_path / "cut.jsonl", n_jobs=2)
    pd.testing.assert_frame_equal(again.runs, full.runs)
    assert len((tmp_path / "cut.jsonl").read_text().splitlines()) == 13


def test_other_configuration_is_refused_with_the_difference(tmp_path):
    bg, clean, anom = _pools()
    path = tmp_path / "r.jsonl"
    run_experiment(bg, clean, anom, **KW, run_file=path)
    with pytest.raises(ValueError, match=r"score: file has 'hc', now 'bj'.*overwrite=True"):
        run_experiment(bg, clean, anom, **KW, run_file=path, config=ScanConfig(score="bj"))
    res = run_experiment(bg, clean, anom, **KW, run_file=path, config=ScanConfig(score="bj"), overwrite=True)
    assert read_run_file(path).config["score"] == "bj" and len(res.runs) == 12


def test_preset_experiment_counts_pmin_on_the_lower_tail():
    bg, clean, anom = _pools(shift=-3.0)  # the preset looks for small activations
    res = run_experiment(bg, clean, anom, **KW, config="ibm-2025")
    assert res.config["preset"] == "ibm-2025" and res.config["tail"] == "lower" and res.config["thresholds"] == "grid"
    assert res.runs["precision"].mean() > 0.9 and res.runs["recall"].mean() > 0.9
    assert set(np.round(res.runs["alpha"], 10)) <= set(np.round(np.linspace(0.01, 0.5, 50), 10))


def test_detection_power_null_and_planted():
    bg, clean, anom = _pools(shift=0.0)  # anomalous pool drawn like the background
    kw = dict(clean_ssize=8, anom_ssize=8, n_runs=40, seed=1, progress=False)
    null = detection_power(bg, clean, anom, **kw)
    assert 0.3 < null.auc < 0.7 and null.scores_clean.shape == (40,)
    bg, clean, anom = _pools(shift=2.0)
    strong = detection_power(bg, clean, anom, **{**kw, "n_runs": 15})
    assert strong.auc > 0.97 and strong.config["background_size"] == 60 + 25 - 16
    par = detection_power(bg, clean, anom, **{**kw, "n_runs": 15}, n_jobs=2)
    np.testing.assert_array_equal(par.scores_anomalous, strong.scores_anomalous)
    np.testing.assert_array_equal(par.scores_clean, strong.scores_clean)
    with pytest.raises(ValueError, match="leave no background"):
        detection_power(bg[:5], clean[:5], anom, **{**kw, "clean_ssize": 5, "anom_ssize": 5})


def test_roc_auc():
    assert roc_auc([3, 4], [1, 2]) == 1.0 and roc_auc([1], [2]) == 0.0
    assert roc_auc([1, 2], [1, 2]) == 0.5 and roc_auc([2, 2, 0], [2]) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(clean_pool=np.full((25, M), np.nan)), "clean_pool holds NaN or inf"),
        (dict(anomalous_pool=np.zeros((30, M + 1))), "anomalous_pool have 49 nodes but background has 48"),
        (dict(clean_pool=np.zeros((0, M))), "clean_pool is empty"),
        (dict(clean_ssize=26), "clean_ssize=26 is larger than the clean pool"),
        (dict(anom_ssize=31), "anom_ssize=31 is larger than the anomalous pool"),
        (dict(clean_ssize=0, anom_ssize=0), "at least one record"),
        (dict(n_runs=0), "n_runs must be an integer >= 1"),
        (dict(seed=-1), "seed must be an integer >= 0"),
        (dict(config=dict(a_max=1.5)), r"a_max must be in \(0, 1\]"),
        (dict(config=dict(score="nope")), "unknown score 'nope'"),
        (dict(node_layout=[{"layer": 1, "n_units": 40}]), "node_layout covers 40 nodes"),
        (dict(n_jobs=0), "n_jobs must be a non-zero integer"),
        (dict(metadata={"ids": {1, 2}}), "metadata must be JSON serialisable"),
    ],
)
def test_bad_input_raises_before_any_work(tmp_path, change, message):
    bg, clean, anom = _pools()
    args = dict(background=bg, clean_pool=clean, anomalous_pool=anom)
    kw = dict(KW)
    for key in list(change):
        (args if key in args else kw)[key] = change[key]
    path = tmp_path / "r.jsonl"
    with pytest.raises(ValueError, match=message):
        run_experiment(args["background"], args["clean_pool"], args["anomalous_pool"], **kw, run_file=path)
    assert not path.exists() and list(tmp_path.iterdir()) == []
