"""The report states the settings the artifacts record, not the notebook parameters' names."""

from __future__ import annotations

import json
from pathlib import Path

from personas.report.study import build_report, recorded_settings


def _study(tmp_path: Path) -> Path:
    out = tmp_path / "study"
    (out / "tables").mkdir(parents=True)
    (out / "runs").mkdir()
    (out / "causal").mkdir()
    # what the user asked for, under parameter names the notebooks may rename later
    (out / "study.json").write_text(json.dumps({"parameters": {"n_folds": 10, "clean_ssize": 50, "anom_ssize": 50,
                                                               "model_name": "tiny"}, "timings_s": {}}))
    # what the artifacts say was done
    (out / "tables" / "layer_metrics.json").write_text(json.dumps({"parameters": {"n_folds": 3, "n_reps": 2,
                                                                                  "seed": 0}}))
    header = {"kind": "deepscan-run-file", "config": {"clean_ssize": 5, "anom_ssize": 7, "n_runs": 6, "tail": "two"}}
    (out / "runs" / "level2_layer3_a.jsonl").write_text(json.dumps(header) + "\n")
    (out / "runs" / "index.json").write_text(json.dumps({"layer": 3, "levels": {"2": {"a": "level2_layer3_a.jsonl"}}}))
    (out / "causal" / "causal_check.json").write_text(json.dumps({"personas": ["a"]}))
    return out


def test_recorded_settings_come_from_the_artifacts(tmp_path):
    out = _study(tmp_path)
    got = recorded_settings(out)
    assert got == {"n_folds": 3, "n_reps": 2, "levels": [2], "clean_ssize": 5, "anom_ssize": 7, "n_runs": 6,
                   "tail": "two", "causal_personas": ["a"]}
    report = build_report(out)
    assert "| n_folds | 3 |" in report and "| n_folds | 10 |" not in report
    assert "cross-validated on 3 folds" in report  # the trims follow what was done
    assert "| clean_ssize | 5 |" in report and "| anom_ssize | 7 |" in report


def test_no_artifact_no_recorded_settings(tmp_path):
    assert recorded_settings(tmp_path) == {}
