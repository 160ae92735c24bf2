"""Run files that trust data, not names: input fingerprints, strict readers, one writer, umask modes."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

import deepscan.experiment as exp_mod
from deepscan import ScanConfig, open_run_file, read_published_run_file, read_run_file, run_experiment
from deepscan.fingerprint import array_fingerprint, score_fingerprint

M = 12
KW = dict(clean_ssize=4, anom_ssize=4, n_runs=5, seed=3, progress=False)
CONFIG = {"n_runs": 3, "seed": 7, "n_nodes": 20, "clean_ssize": 2, "anom_ssize": 2}


def _pools(seed=0):
    rng = np.random.default_rng(seed)
    bg = rng.standard_normal((20, M)).astype(np.float32)
    clean = rng.standard_normal((8, M)).astype(np.float32)
    anom = rng.standard_normal((8, M)).astype(np.float32) + 1.0
    return bg, clean, anom


def _hc_like(n_alpha, n, alpha):
    return (n_alpha - n * alpha) / np.sqrt(n * alpha * (1 - alpha))


def _snapshot(path):
    return path.read_bytes(), path.stat().st_mtime_ns


# --------------------------------------------------------------------------- fingerprints


def test_same_shape_other_data_is_refused_and_the_file_untouched(tmp_path):
    bg, clean, anom = _pools(0)
    path = tmp_path / "r.jsonl"
    first = run_experiment(bg, clean, anom, **KW, run_file=path)
    assert first.header["inputs"]["background"] == array_fingerprint(bg)
    before = _snapshot(path)
    other_bg = bg.copy()
    other_bg[0, 0] += 1e-3  # same shape, one value different
    with pytest.raises(ValueError, match=r"other inputs \(background: file has 'sha256:.*overwrite=True"):
        run_experiment(other_bg, clean, anom, **KW, run_file=path)
    with pytest.raises(ValueError, match=r"anomalous_pool: file has"):
        run_experiment(bg, clean, anom[::-1].copy(), **KW, run_file=path)
    assert _snapshot(path) == before
    # the same data resumes (nothing to compute) and overwrite=True replaces
    assert run_experiment(bg, clean, anom, **KW, run_file=path).runs.equals(first.runs)
    redone = run_experiment(other_bg, clean, anom, **KW, run_file=path, overwrite=True)
    assert redone.header["inputs"]["background"] == array_fingerprint(other_bg)


def test_interrupted_on_data_a_is_not_resumed_on_data_b(tmp_path, monkeypatch):
    bg, clean, anom = _pools(0)
    orig = exp_mod.one_run

    def dies_at_3(run_id, *a, **k):
        if run_id == 3:
            raise KeyboardInterrupt("killed")
        return orig(run_id, *a, **k)

    monkeypatch.setattr(exp_mod, "one_run", dies_at_3)
    path = tmp_path / "r.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(bg, clean, anom, **KW, run_file=path)
    monkeypatch.setattr(exp_mod, "one_run", orig)
    assert read_run_file(path).runs["run_id"].tolist() == [0, 1, 2]
    bg_b, clean_b, anom_b = _pools(1)
    with pytest.raises(ValueError, match="background.*clean_pool"):
        run_experiment(bg_b, clean_b, anom_b, **KW, run_file=path)
    assert read_run_file(path).runs["run_id"].tolist() == [0, 1, 2]  # no runs on B mixed in


def test_two_custom_scores_are_told_apart(tmp_path):
    bg, clean, anom = _pools(0)
    path = tmp_path / "r.jsonl"
    score_a = lambda n_alpha, n, alpha: _hc_like(n_alpha, n, alpha)  # noqa: E731
    score_b = lambda n_alpha, n, alpha: 2.0 * _hc_like(n_alpha, n, alpha) + 1.0  # noqa: E731
    # both are recorded as custom:<lambda> in the config ...
    assert ScanConfig(score=score_a).to_dict()["score"] == ScanConfig(score=score_b).to_dict()["score"]
    run_experiment(bg, clean, anom, **KW, config=ScanConfig(score=score_a), run_file=path)
    before = _snapshot(path)
    # ... but not in the inputs
    with pytest.raises(ValueError, match=r"score: file has 'code-sha256:"):
        run_experiment(bg, clean, anom, **KW, config=ScanConfig(score=score_b), run_file=path)
    assert _snapshot(path) == before
    # the same code (a fresh but identical lambda) resumes
    again = lambda n_alpha, n, alpha: _hc_like(n_alpha, n, alpha)  # noqa: E731
    assert score_fingerprint(again) == score_fingerprint(score_a) != score_fingerprint(score_b)
    run_experiment(bg, clean, anom, **KW, config=ScanConfig(score=again), run_file=path)
    assert _snapshot(path)[0] == before[0]
    # closure values count: the same code with another constant is another score
    def scaled(k):
        return lambda n_alpha, n, alpha: k * _hc_like(n_alpha, n, alpha)

    assert score_fingerprint(scaled(1.0)) != score_fingerprint(scaled(2.0))
    assert score_fingerprint(scaled(2.0)) == score_fingerprint(scaled(2.0))


def test_named_custom_score_and_upstream_inputs(tmp_path):
    bg, clean, anom = _pools(0)
    path = tmp_path / "r.jsonl"
    score_a = lambda n_alpha, n, alpha: _hc_like(n_alpha, n, alpha)  # noqa: E731
    res = run_experiment(bg, clean, anom, **KW, config=ScanConfig(score=score_a), score_id="hc-v1", run_file=path,
                         inputs={"store": "sha256:aaa"})
    assert res.header["inputs"]["score"] == "name:hc-v1" and res.header["inputs"]["store"] == "sha256:aaa"
    # a name stands for the function: another lambda with the same name resumes
    other = lambda n_alpha, n, alpha: _hc_like(n_alpha, n, alpha) + 0.0  # noqa: E731
    other.deepscan_id = "hc-v1"
    run_experiment(bg, clean, anom, **KW, config=ScanConfig(score=other), run_file=path, inputs={"store": "sha256:aaa"})
    with pytest.raises(ValueError, match=r"score: file has 'name:hc-v1', now 'name:hc-v2'"):
        run_experiment(bg, clean, anom, **KW, config=ScanConfig(score=score_a), score_id="hc-v2", run_file=path,
                       inputs={"store": "sha256:aaa"})
    with pytest.raises(ValueError, match=r"store: file has 'sha256:aaa', now 'sha256:bbb'"):
        run_experiment(bg, clean, anom, **KW, config=ScanConfig(score=score_a), score_id="hc-v1", run_file=path,
                       inputs={"store": "sha256:bbb"})
    with pytest.raises(ValueError, match="reserved"):
        run_experiment(bg, clean, anom, **KW, inputs={"background": "x"})
    with pytest.raises(ValueError, match="built-in"):
        run_experiment(bg, clean, anom, **KW, score_id="mine")


def test_run_file_without_fingerprints_is_not_resumed(tmp_path):
    bg, clean, anom = _pools(0)
    path = tmp_path / "r.jsonl"
    run_experiment(bg, clean, anom, **KW, run_file=path)
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    del header["inputs"]  # as written before fingerprints existed
    path.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    before = _snapshot(path)
    with pytest.raises(ValueError, match="no input fingerprints.*overwrite=True"):
        run_experiment(bg, clean, anom, **KW, run_file=path)
    assert _snapshot(path) == before


# --------------------------------------------------------------------------- published reader

GOOD = ["12.5 0.9 0.8 3 2 0.05 1,4 0,1,2", "9.0 None 0.0 0 2 0.1 4,9 "]


def _published(tmp_path, lines, name="adv_output_x.out"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_published_line_with_a_lost_list_is_an_error_not_a_hyperparams_line(tmp_path):
    lines = GOOD + ["7.0 1.0 0.5 2 2 0.2 3,5", "hyperparams: {'a_max': 0.5}", "1.0 0.5 0.5 1 1 0.03 9 3"]
    path = _published(tmp_path, lines)
    with pytest.raises(ValueError, match=r"adv_output_x.out: line 3 looks like a run.*a list is missing"):
        read_run_file(path)
    rf = read_run_file(path, strict=False)
    assert rf.n_damaged == 1 and rf.n_skipped == 1 and rf.damaged[0].startswith("line 3:")
    assert rf.runs["run_id"].tolist() == [0, 1, 3]  # the damaged run keeps its id: no renumbering
    assert rf.runs["score"].tolist() == [12.5, 9.0, 1.0]
    assert read_published_run_file(path, strict=False).n_damaged == 1


@pytest.mark.parametrize(
    "last, why",
    [
        ("7.75 0.75 0.6 4 4 0.15 0,1,4,15 2,5", "lists hold 4 nodes and 2 records"),  # cut inside the records
        ("7.75 0.75 0.6 4 4 0.15 0,1,4,15 2,5,", "not a comma-separated list"),  # cut after a comma
        ("7.75 0.75 0.6 3 4 0.15 0,1,4,15 2,5,8,9", "n_records=3"),  # count disagrees with the list
        ("7.75 0.75 0.6 4 5 0.15 0,1,4,15 2,5,8,9", "n_nodes=5"),
        ("7.75 0.75 0.6 4 4 0.15 0,1,x,15 2,5,8,9", "not a comma-separated list"),
    ],
)
def test_published_cut_or_inconsistent_line_is_an_error(tmp_path, last, why):
    path = _published(tmp_path, GOOD + [last])
    with pytest.raises(ValueError, match=rf"line 3 looks like a run.*{why}"):
        read_run_file(path)
    rf = read_run_file(path, strict=False)
    assert len(rf.runs) == 2 and rf.n_damaged == 1 and rf.n_skipped == 0


# --------------------------------------------------------------------------- JSON Lines reader


def _run(i, **change):
    run = {"kind": "run", "run_id": i, "seed": 100 + i, "score": 1.5 + i, "alpha": 0.25,
           "sample_clean": [0, 1], "sample_anomalous": [1, 0], "records": [1, 2, 3],
           "records_pool_index": [1, 1, 0], "records_anomalous": [False, True, True],
           "nodes": [i, 10], "precision": 0.5, "recall": 1.0}
    run.update(change)
    return run


def _jsonl(tmp_path, runs, bom=False):
    path = tmp_path / "r.jsonl"
    with open_run_file(path, CONFIG) as w:
        w.add(_run(0))
    header = path.read_text().splitlines()[0]
    text = "\n".join([header] + [json.dumps(r) for r in runs]) + "\n"
    path.write_bytes(("\ufeff" if bom else "").encode("utf-8") + text.encode("utf-8"))
    return path


def test_jsonl_with_a_byte_order_mark_reads(tmp_path):
    path = _jsonl(tmp_path, [_run(0), _run(1)], bom=True)
    rf = read_run_file(path)
    assert rf.format == "jsonl" and rf.runs["run_id"].tolist() == [0, 1] and rf.header["config"]["seed"] == 7
    with open_run_file(path, CONFIG) as w:  # and resumes
        assert w.done == {0, 1}


@pytest.mark.parametrize(
    "change, why",
    [
        (dict(run_id=2.7), "run_id must be a non-negative int, got 2.7"),
        (dict(run_id=True), "run_id must be a non-negative int, got True"),
        (dict(run_id="1"), "run_id must be"),
        (dict(nodes=[1, 20]), r"nodes holds 20, outside 0..19"),  # n_nodes is 20
        (dict(nodes=[1.0, 2]), "nodes must hold non-negative ints"),
        (dict(records=[1, 4]), r"records holds 4, outside 0..3"),  # samples have 2 + 2 records
        (dict(n_records=2), "n_records is 2 but records has 3"),
        (dict(n_nodes=5), "n_nodes is 5 but nodes has 2"),
        (dict(score=True), "score must be a number"),
        (dict(records_anomalous=[1, 0, 1]), "records_anomalous must be a list of true/false"),
        (dict(records_pool_index=[1, 2]), "records_pool_index has 2 entries"),
        (dict(seed=1.5), "seed must be an int"),
    ],
)
def test_jsonl_mistyped_or_inconsistent_run_is_an_error(tmp_path, change, why):
    path = _jsonl(tmp_path, [_run(0), _run(1, **change)])
    with pytest.raises(ValueError, match=rf"r.jsonl: line 3 is a run with a missing or bad field \({why}"):
        read_run_file(path)
    rf = read_run_file(path, strict=False)
    assert rf.runs["run_id"].tolist() == [0] and rf.n_damaged == 1 and rf.n_skipped == 0


def test_jsonl_damaged_line_skipped_only_when_asked(tmp_path):
    path = _jsonl(tmp_path, [_run(0), _run(1)])
    path.write_text(path.read_text() + '{"kind": "note"}\n{"kind": "run", "run_id": 2, "sco\n')
    with pytest.raises(ValueError, match="line 5 is not valid JSON"):
        read_run_file(path)
    rf = read_run_file(path, strict=False)
    assert rf.runs["run_id"].tolist() == [0, 1] and rf.n_damaged == 1 and rf.n_skipped == 1
    with pytest.raises(TypeError, match="strict"):
        read_run_file(path, strict="no")


def test_salient_nodes_input_beyond_n_nodes_rejected_by_reader(tmp_path):
    # what salient_nodes and node_frequency read: the reader refuses a node past n_nodes
    path = _jsonl(tmp_path, [_run(0, nodes=[3, 19]), _run(1, nodes=[25])])
    with pytest.raises(ValueError, match="line 3.*nodes holds 25"):
        read_run_file(path)


# --------------------------------------------------------------------------- one writer, readable files


def test_second_writer_gets_a_clear_error(tmp_path):
    bg, clean, anom = _pools(0)
    path = tmp_path / "r.jsonl"
    first = open_run_file(path, CONFIG)
    first.add(_run(0))
    first.flush()
    with pytest.raises(RuntimeError, match=r"run file .*r.jsonl is being written by another process"):
        open_run_file(path, CONFIG, overwrite=True)
    with pytest.raises(RuntimeError, match="being written"):
        run_experiment(bg, clean, anom, **KW, run_file=path, overwrite=True)
    first.add(_run(1))
    first.close()
    assert read_run_file(path).runs["run_id"].tolist() == [0, 1]  # the first writer's runs survive
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]  # lock released and removed
    with open_run_file(path, CONFIG) as again:  # free again
        assert again.done == {0, 1}
    # a refused resume releases the lock too
    with pytest.raises(ValueError, match="seed"):
        open_run_file(path, {**CONFIG, "seed": 8})
    open_run_file(path, CONFIG).close()
    # run_experiment releases it also when nothing is left to compute
    run_experiment(bg, clean, anom, **KW, run_file=tmp_path / "e.jsonl")
    run_experiment(bg, clean, anom, **KW, run_file=tmp_path / "e.jsonl")
    open_run_file(tmp_path / "x.jsonl", CONFIG).close()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".lock")]


def test_run_files_honour_the_umask(tmp_path):
    bg, clean, anom = _pools(0)
    old = os.umask(0o022)
    try:
        run_experiment(bg, clean, anom, **KW, run_file=tmp_path / "r.jsonl")
        os.umask(0o002)
        run_experiment(bg, clean, anom, **KW, run_file=tmp_path / "g.jsonl")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.jsonl").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "g.jsonl").stat().st_mode) == 0o664
