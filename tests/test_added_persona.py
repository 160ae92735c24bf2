"""Adding one persona to a study recomputes only what depends on it (file modification times and the log)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from personas.scans.driver import check_runs_current, run_persona_scans
from personas.scans.pools import run_file_name
from personas.scans.settings import PoolSizes, SampleSizes, ScanPlan, ScanSettings
from personas.store.fingerprints import store_fingerprints
from personas.store.write import save_activations

N = 40  # statements per direction and persona


def _study(personas):
    """Planted activations of ``personas`` (each persona's rows fixed whatever the others) and their meta."""
    rows, blocks = [], []
    for k, persona in enumerate(personas):
        rng = np.random.default_rng(100 + int(persona[1:]))  # the persona's own stream: same rows in any study
        X = rng.normal(size=(2 * N, 12)).astype(np.float32)
        X[:N, k % 12] += 3.0  # its '+' statements shifted on one node
        blocks.append(X)
        rows += [{"id": f"{persona}/{d[0]}{i}", "persona": persona, "direction": d}
                 for d in ("positive", "negative") for i in range(N)]
    return np.concatenate(blocks), pd.DataFrame(rows)


def _scan(tmp_path, personas, topics, n_runs: int = 3):
    X, meta = _study(personas)
    info = {"hidden_size": X.shape[1], "n_blocks": 8, "position": "last", "n_tokens": []}
    store = tmp_path / "store"
    for persona, group in meta.groupby("persona", sort=False):
        if not (store / "toy" / f"{persona}.json").exists():  # an existing persona's activations are reused
            statements = group.assign(statement=[f"statement {i}" for i in group["id"]])
            save_activations(store, {7: X[group.index.to_numpy()]}, info, statements, model_name="toy",
                             persona=persona)
    plan = ScanPlan(personas, layer=7, levels=[2, 1, 0], topics=topics,
                    sources={"topics_file": {"path": "topics.json", "sha256": "0" * 64}})
    settings = ScanSettings(pool_sizes=PoolSizes(30, 10, 40), sample_sizes=SampleSizes(5, 5, n_runs), detection=True)
    return run_persona_scans(
        X, meta, plan, model_name="toy", runs_dir=tmp_path / "runs", settings=settings, progress=False,
        store_fingerprint=store_fingerprints(store, "toy", personas, [7]),
    )


def _mtimes(runs_dir):
    return {p.name: p.stat().st_mtime_ns for p in runs_dir.iterdir() if p.name != "index.json"}


def test_an_added_persona_recomputes_only_what_depends_on_it(tmp_path, capsys):
    before_topics = {"T1": ["p1", "p2"], "T2": ["p3"]}
    with pytest.warns(UserWarning, match=r"level 1 \(within topic\) skipped for \['p3'\]"):
        _scan(tmp_path, ["p1", "p2", "p3"], before_topics)
    first = _mtimes(tmp_path / "runs")
    assert "run files: 7 computed" in capsys.readouterr().out  # 3 at level 2, 2 at level 1, 2 topics at level 0

    after_topics = {"T1": ["p1", "p2"], "T2": ["p3", "p4"]}
    _scan(tmp_path, ["p1", "p2", "p3", "p4"], after_topics)
    second = _mtimes(tmp_path / "runs")
    index = json.loads((tmp_path / "runs" / "index.json").read_text())
    status = index["status"]
    # untouched: the old personas' level 2 and T1's level 1 (their pools hold the same statements)
    for name in ("level2/p1", "level2/p2", "level2/p3", "level1/p1", "level1/p2"):
        assert status[name] == "reused", name
    for name in ("level2_layer7_p1.jsonl", "level2_layer7_p2.jsonl", "level2_layer7_p3.jsonl",
                 "level1_layer7_p1.jsonl", "level1_layer7_p2.jsonl"):
        assert second[name] == first[name], name
        null = name.replace(".jsonl", ".null.json")  # their detection power is reused, not recomputed
        assert second[null] == first[null], null
    # new: p4 at levels 2 and 1, p3 at level 1 (p4 is its topic's second persona)
    for name in ("level2/p4", "level1/p3", "level1/p4"):
        assert status[name] == "computed", name
    # recomputed: both topics at level 0 (T2's anomalous pool and T1's background now hold p4)
    assert status["level0/T1+"] == status["level0/T2+"] == "recomputed"
    level0 = run_file_name("T1+", 0, 7)  # a topic's level-0 run file: the checked, collision-proof name
    assert level0.startswith("level0_layer7_T1-") and second[level0] != first[level0]
    out = capsys.readouterr().out
    assert "run files: 5 reused; 3 computed; 2 recomputed (level0/T1+, level0/T2+: their pools changed)" in out
    # the null runs of reused experiments are reused too, and the index checks against the store per persona
    assert set(index["store_fingerprints"]) == {"p1", "p2", "p3", "p4"}
    check_runs_current(index, tmp_path / "store", "toy")
    header = json.loads((tmp_path / "runs" / "level2_layer7_p4.jsonl").read_text().splitlines()[0])
    assert header["provenance"]["topics_file"]["sha256"] == "0" * 64


def test_an_added_persona_is_the_only_one_extracted(tmp_path):
    from personas.model.extraction import extract_to_store
    from personas.statements import study_inputs
    from tests.tiny_models import make_model, make_tokenizer

    rows = [{"persona": p, "direction": d, "statement": f"{p} statement {d} number {i}"}
            for p in ("mine-a", "mine-b") for d in ("positive", "negative") for i in range(6)]
    path = tmp_path / "mine.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    model, tok = make_model("llama"), make_tokenizer("llama3")
    store = tmp_path / "store"

    def extract(personas):
        inputs = study_inputs(personas, statements_file=path, n_per_direction=6)
        from personas.statements import load_statements

        statements = load_statements(inputs.personas, n_per_direction=6, source=inputs.table)
        return extract_to_store(model, tok, statements, model_name="tiny", layers=[0, 2], store_dir=store,
                                progress=False, sources=inputs.files)

    first = extract(["agreeableness", "mine-a"])
    assert list(first["status"]) == ["computed", "computed"]
    manifest = store / "tiny" / "mine-a.json"
    stamp = manifest.stat().st_mtime_ns
    second = extract(["agreeableness", "mine-a", "mine-b"])
    assert list(second["status"]) == ["reused", "reused", "computed"]
    assert manifest.stat().st_mtime_ns == stamp
    recorded = json.loads((store / "tiny" / "mine-b.json").read_text())["sources"]["statements_file"]
    import hashlib

    assert recorded["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_other_scan_settings_recompute_the_study_s_run_files(tmp_path, capsys):
    """``-p n_runs 4`` after a study with 3 runs: the study's run files of every experiment are made again with 4
    runs (not an error naming the old configuration), and the next run with 4 reuses them."""
    topics = {"T1": ["p1", "p2"], "T2": ["p3"]}
    with pytest.warns(UserWarning, match="level 1"):
        _scan(tmp_path, ["p1", "p2", "p3"], topics)
    capsys.readouterr()
    with pytest.warns(UserWarning, match="level 1"):
        _scan(tmp_path, ["p1", "p2", "p3"], topics, n_runs=4)
    index = json.loads((tmp_path / "runs" / "index.json").read_text())
    assert set(index["status"].values()) == {"recomputed"}
    header, *runs = (tmp_path / "runs" / "level2_layer7_p1.jsonl").read_text().splitlines()
    assert json.loads(header)["config"]["n_runs"] == 4 and len(runs) == 4
    first = _mtimes(tmp_path / "runs")
    with pytest.warns(UserWarning, match="level 1"):
        _scan(tmp_path, ["p1", "p2", "p3"], topics, n_runs=4)
    assert _mtimes(tmp_path / "runs") == first
