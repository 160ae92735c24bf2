"""Run files: writer (atomic, resumable), JSON Lines reader, published-format reader, node layout."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from deepscan import RUN_COLUMNS, make_node_layout, node_to_layer_unit, open_run_file, read_run_file

CONFIG = {"persona": "agreeableness", "model": "m", "layers": [3, 5], "n_runs": 3, "seed": 7, "metadata": {"a": [1, 2]}}


def _run(i: int, precision=0.5) -> dict:
    return {
        "kind": "run", "run_id": i, "seed": 100 + i, "score": 1.5 + i, "alpha": 0.25,
        "sample_clean": [0, 1], "sample_anomalous": [2, 0],
        "records": [1, 2, 3], "records_pool_index": [1, 2, 0], "records_anomalous": [False, True, True],
        "nodes": [i, 10], "precision": precision, "recall": 1.0,
    }


def test_write_and_read_roundtrip(tmp_path):
    path = tmp_path / "r.jsonl"
    with open_run_file(path, CONFIG) as w:
        w.add(_run(1))
        w.add(_run(0, precision=None))
    rf = read_run_file(path)
    assert rf.format == "jsonl" and rf.n_skipped == 0
    assert rf.header["kind"] == "deepscan-run-file" and rf.header["format_version"] == 1
    assert rf.header["config"] == CONFIG
    assert set(rf.header["versions"]) == {"deepscan", "numpy", "python"} and rf.header["created"]
    assert list(rf.runs.columns) == RUN_COLUMNS
    assert rf.runs["run_id"].tolist() == [0, 1]  # sorted by run id
    assert math.isnan(rf.runs["precision"][0]) and rf.runs["precision"][1] == 0.5
    assert rf.runs["nodes"][1] == [1, 10] and rf.runs["records"][0] == [1, 2, 3]
    assert rf.runs["n_records"].tolist() == [3, 3] and rf.runs["n_nodes"].tolist() == [2, 2]
    assert rf.runs["records_anomalous"][0] == [False, True, True]
    assert rf.runs["records_pool_index"][0] == [1, 2, 0]
    assert rf.runs["seed"].tolist() == [100, 101] and rf.runs["sample_anomalous"][1] == [2, 0]
    # whole lines only, no temporary files left
    assert path.read_text().endswith("\n") and [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]


def test_resume_keeps_runs_and_rejects_other_config(tmp_path):
    path = tmp_path / "r.jsonl"
    with open_run_file(path, CONFIG) as w:
        w.add(_run(0))
    w2 = open_run_file(path, dict(CONFIG))
    assert w2.done == {0}
    with pytest.raises(ValueError, match="already"):
        w2.add(_run(0))
    w2.add(_run(2))
    w2.close()
    assert read_run_file(path).runs["run_id"].tolist() == [0, 2]
    with pytest.raises(ValueError, match=r"seed: file has 7, now 8.*overwrite=True"):
        open_run_file(path, {**CONFIG, "seed": 8})
    w3 = open_run_file(path, {**CONFIG, "seed": 8}, overwrite=True)
    assert w3.done == set()
    w3.close()
    assert read_run_file(path).runs.empty


def test_exception_inside_writer_keeps_finished_runs(tmp_path):
    path = tmp_path / "r.jsonl"
    with pytest.raises(RuntimeError):
        with open_run_file(path, CONFIG, flush_every=1e9) as w:
            w.add(_run(0))  # first add flushes (never flushed before)
            w.add(_run(1))  # not yet flushed ...
            raise RuntimeError("killed")
    assert read_run_file(path).runs["run_id"].tolist() == [0, 1]  # ... but flushed on the way out


def test_jsonl_reader_errors_and_skips(tmp_path):
    path = tmp_path / "r.jsonl"
    with open_run_file(path, CONFIG) as w:
        w.add(_run(0))
    text = path.read_text()
    (tmp_path / "skip.jsonl").write_text(text + json.dumps({"kind": "note", "x": 1}) + "\n\n")
    assert read_run_file(tmp_path / "skip.jsonl").n_skipped == 1
    (tmp_path / "torn.jsonl").write_text(text + '{"kind": "run", "run_')
    with pytest.raises(ValueError, match=r"torn.jsonl: line 3 is not valid JSON"):
        read_run_file(tmp_path / "torn.jsonl")
    (tmp_path / "dup.jsonl").write_text(text + text.splitlines()[1] + "\n")
    with pytest.raises(ValueError, match="appears twice"):
        read_run_file(tmp_path / "dup.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="empty.jsonl is empty"):
        read_run_file(tmp_path / "empty.jsonl")
    with pytest.raises(ValueError, match="does not exist"):
        read_run_file(tmp_path / "missing.jsonl")
    (tmp_path / "future.jsonl").write_text(text.replace('"format_version":1', '"format_version":99'))
    with pytest.raises(ValueError, match="format_version 99"):
        read_run_file(tmp_path / "future.jsonl")


def test_published_reader_keeps_every_run_line(tmp_path):
    lines = [
        "12.5 0.9 0.8 3 4 0.01 5,6,7,8 0,1,99",
        "3.25 None None 0 2 0.5 1,2 ",          # no records, precision/recall None
        "7.0 1.0 0.5 2 0 0.02  4,5",            # empty node list (two spaces)
        "hyperparams: {'a_max': 0.5}",
        "1.0 0.5 0.5 1 1 0.03 9 3",             # last line, no trailing newline
    ]
    path = tmp_path / "adv_output_x.out"
    path.write_text("\n".join(lines))
    rf = read_run_file(path)
    assert rf.format == "published" and rf.header is None and rf.n_skipped == 1
    runs = rf.runs
    assert list(runs.columns) == RUN_COLUMNS
    assert runs["run_id"].tolist() == [0, 1, 2, 3]
    assert runs["score"].tolist() == [12.5, 3.25, 7.0, 1.0]
    assert runs["alpha"].tolist() == [0.01, 0.5, 0.02, 0.03]
    assert runs["nodes"].tolist() == [[5, 6, 7, 8], [1, 2], [], [9]]
    assert runs["records"].tolist() == [[0, 1, 99], [], [4, 5], [3]]
    assert runs["n_records"].tolist() == [3, 0, 2, 1] and runs["n_nodes"].tolist() == [4, 2, 0, 1]
    assert np.isnan(runs["precision"][1]) and np.isnan(runs["recall"][1]) and runs["precision"][0] == 0.9
    for col in ("records_pool_index", "records_anomalous", "seed", "sample_clean", "sample_anomalous"):
        assert runs[col].isna().all()
    # stripped trailing whitespace still parses (counts say which list is empty)
    path.write_text("3.25 None None 0 2 0.5 1,2\n7.0 1.0 0.5 2 0 0.02 4,5\n2.0 0.1 0.1 0 0 0.5\n")
    rf = read_run_file(path)
    assert rf.runs["nodes"].tolist() == [[1, 2], [], []] and rf.runs["records"].tolist() == [[], [4, 5], []]
    path.write_text("hyperparams: only\n")
    with pytest.raises(ValueError, match="no run lines"):
        read_run_file(path)


def test_node_to_layer_unit():
    layout = make_node_layout([4, 7, 31], [3, 2, 5])
    assert layout == [{"layer": 4, "n_units": 3}, {"layer": 7, "n_units": 2}, {"layer": 31, "n_units": 5}]
    layers, units = node_to_layer_unit([0, 2, 3, 4, 5, 9], layout)
    assert layers.tolist() == [4, 4, 7, 7, 31, 31] and units.tolist() == [0, 2, 0, 1, 0, 4]
    layers, units = node_to_layer_unit(np.array([1]), [(2, 384)])
    assert layers.tolist() == [2] and units.tolist() == [1]
    assert node_to_layer_unit([], layout)[0].size == 0
    assert make_node_layout([1, 2], 384)[1] == {"layer": 2, "n_units": 384}
    with pytest.raises(ValueError, match="node 10 is outside"):
        node_to_layer_unit([10], layout)
    with pytest.raises(ValueError, match="no node layout"):
        node_to_layer_unit([1], None)
