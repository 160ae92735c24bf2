"""The helpers that keep the notebooks thin: extraction plan, chosen layer, scan settings, node inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import deepscan
from personas.layers.results import read_chosen_layer, save_chosen_layer
from personas.model.plan import extraction_plan
from personas.nodes.frequencies import salient_sets
from personas.nodes.inputs import level0_sets, read_level, statement_table
from personas.nodes.runs import load_runs
from personas.scans.driver import run_persona_scans
from personas.scans.null_runs import load_null_runs
from personas.scans.settings import PoolSizes, SampleSizes, ScanPlan, ScanSettings, scan_config
from personas.store.write import save_activations
from tiny_models import make_model


def test_extraction_plan_adds_layer_0_and_resolves_the_position():
    decoder, encoder = make_model("llama"), make_model("bert")
    n_blocks = decoder.config.num_hidden_layers
    plan = extraction_plan(decoder, [2], "auto")
    assert plan.layers == (0, 2) and plan.position == "last" and plan.n_blocks == n_blocks
    assert extraction_plan(decoder, "all", "mean").layers == tuple(range(n_blocks + 1))
    assert extraction_plan(encoder, [1]).position == "mean"  # an encoder's last token is [SEP]
    with pytest.raises(ValueError, match="position"):
        extraction_plan(decoder, [1], "first")


def test_chosen_layer_round_trips(tmp_path):
    path = save_chosen_layer({"layer": 7, "metric": "silhouette"}, tmp_path)
    assert json.loads(path.read_text())["layer"] == 7 and read_chosen_layer(tmp_path) == 7
    with pytest.raises(FileNotFoundError, match="representation_extraction"):
        read_chosen_layer(tmp_path / "elsewhere")


def test_scan_config_is_the_preset_or_the_fields():
    assert scan_config("ibm-2025") == deepscan.ScanConfig.from_preset("ibm-2025")
    assert scan_config(None, score="bj", a_max=0.3) == deepscan.ScanConfig(score="bj", a_max=0.3)


def test_scan_settings_are_checked():
    assert ScanSettings(baselines=["lof"], baseline_levels=[2]).baselines == ("lof",)
    assert ScanPlan(["a", "b"], layer=3, topics={"T": ("a", "b")}).topics == {"T": ["a", "b"]}
    with pytest.raises(ValueError, match=r"baseline_levels: unknown level\(s\) \[5\]"):
        ScanSettings(baseline_levels=[5])
    with pytest.raises(TypeError, match="detection"):
        ScanSettings(detection="yes")
    with pytest.raises(ValueError, match="layer"):
        ScanPlan(["a"], layer=-1)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """Level 2 and level 0 of three personas in two topics; persona a's '+' planted on nodes 0..3."""
    tmp = tmp_path_factory.mktemp("scan")
    meta = pd.DataFrame([{"id": f"{p}/{d[0]}{i}", "persona": p, "direction": d}
                         for p in ("a", "b", "c") for d in ("positive", "negative") for i in range(30)])
    X = np.random.default_rng(0).normal(size=(len(meta), 8))
    X[np.flatnonzero((meta["persona"] == "a") & (meta["direction"] == "positive"))[:, None], np.arange(4)] += 4.0
    topics = {"T1": ["a", "b"], "T2": ["c"]}
    settings = ScanSettings(pool_sizes=PoolSizes(20, 8, 20), sample_sizes=SampleSizes(6, 6, 4))
    run_persona_scans(X, meta, ScanPlan(["a", "b", "c"], layer=2, levels=[2, 0], topics=topics), model_name="toy",
                      runs_dir=tmp / "runs", settings=settings, progress=False)
    return tmp, meta, X, topics


def test_read_level_reads_what_the_index_names(scanned):
    tmp, *_ = scanned
    index = json.loads((tmp / "runs" / "index.json").read_text())
    runs = read_level(tmp / "runs", 2)
    assert list(runs.run_files) == ["a", "b", "c"] and runs.index == index and runs.level == 2
    by_hand = load_runs({p: tmp / "runs" / f for p, f in index["levels"]["2"].items()})
    for p in by_hand:
        pd.testing.assert_frame_equal(runs.run_files[p].runs, by_hand[p].runs)
    nulls = load_null_runs({p: tmp / "runs" / f for p, f in index["null"]["2"].items()})
    assert {p: n.nodes_clean for p, n in runs.nulls.items()} == {p: n.nodes_clean for p, n in nulls.items()}
    assert list(read_level(tmp / "runs", 2, ["c", "a"]).run_files) == ["c", "a"]
    with pytest.raises(ValueError, match=r"asked for \['zz'\]"):
        read_level(tmp / "runs", 2, ["a", "zz"])
    with pytest.raises(ValueError, match="level 1"):
        read_level(tmp / "runs", 1)


def test_level0_sets_are_the_topic_sets(scanned):
    tmp, *_ = scanned
    runs = read_level(tmp / "runs", 0)
    assert list(runs.run_files) == ["T1+", "T2+"]
    got = level0_sets(tmp / "runs", "union")
    assert dict(got) == dict(salient_sets(runs.run_files)) and got.method == "union"
    assert level0_sets(tmp / "runs", "calibrated").method == "calibrated"  # null runs exist
    (tmp / "one").mkdir()
    (tmp / "one" / "index.json").write_text(json.dumps({"levels": {"0": {"T1+": "x.jsonl"}}}))
    assert level0_sets(tmp / "one", "union") is None  # one topic: no level-0 comparison


def test_statement_table_reads_the_stored_statements(tmp_path):
    meta = pd.DataFrame({"id": ["a/1", "a/2", "b/1"], "persona": ["a", "a", "b"],
                         "direction": ["positive", "negative", "positive"], "statement": ["x", "y", "z"]})
    info = {"hidden_size": 2, "n_blocks": 1, "position": "last", "n_tokens": []}
    for persona, group in meta.groupby("persona", sort=False):
        save_activations(tmp_path, {1: np.zeros((len(group), 2), np.float32)}, info, group, model_name="toy",
                         persona=persona)
    table = statement_table(tmp_path, "toy", ["b", "a"])
    assert table.to_dict("list") == {"id": ["b/1", "a/1", "a/2"], "statement": ["z", "x", "y"]}
