"""Stage reuse: a stage is skipped only when its fingerprint matches and its artifacts are intact."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from personas._core.stages import (code_fingerprint, read_stages, record_stage, reusable, stage_fingerprint,
                                   written_since)
from personas.study import NOTEBOOKS
from personas.study.reuse import plan_stage, resolve_force

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_fingerprints_are_canonical():
    assert stage_fingerprint(a=1, b=[1, 2]) == stage_fingerprint(b=[1, 2], a=1)
    assert stage_fingerprint(a=1) != stage_fingerprint(a=2)
    assert stage_fingerprint(p=Path("x")) == stage_fingerprint(p="x")


def test_code_fingerprint_follows_every_source_file(tmp_path):
    _write(tmp_path / "pkg" / "a.py", "x = 1\n")
    _write(tmp_path / "pkg" / "sub" / "b.py", "y = 2\n")
    _write(tmp_path / "pkg" / "notes.txt", "not code")
    before = code_fingerprint(tmp_path, ["pkg"])
    (tmp_path / "pkg" / "notes.txt").write_text("changed")
    assert code_fingerprint(tmp_path, ["pkg"]) == before  # only *.py of a folder
    (tmp_path / "pkg" / "sub" / "b.py").write_text("y = 3\n")
    assert code_fingerprint(tmp_path, ["pkg"]) != before


def test_a_recorded_stage_is_reused_until_an_artifact_or_input_changes(tmp_path):
    out = tmp_path / "study"
    started = time.time_ns()
    time.sleep(0.02)  # file times come from the kernel's coarse clock, up to a tick behind time.time_ns()
    _write(out / "tables" / "t.csv", "a,b\n1,2\n")
    _write(out / "figures" / "f.png", "png")
    _write(out / "study.json", "{}")  # the study's own file: no stage's artifact
    store = tmp_path / "activations" / "m.json"
    _write(store, "{}")
    record = record_stage(out, "one", "sha256:x", started_ns=started, seconds=1.234, extra=[store])
    assert set(record.files) == {"tables/t.csv", "figures/f.png", os.path.join("..", "activations", "m.json")}
    assert record.seconds == 1.2 and read_stages(out)["one"] == record
    assert reusable(out, "one", "sha256:x") == (True, "inputs, settings and code unchanged")
    assert reusable(out, "one", "sha256:y")[0] is False
    assert reusable(out, "two", "sha256:x") == (False, "not run before")
    (out / "tables" / "t.csv").write_text("a,b\n1,3\n")  # same size, other bytes
    ok, why = reusable(out, "one", "sha256:x")
    assert not ok and "tables/t.csv" in why
    (out / "tables" / "t.csv").write_text("a,b\n1,2\n")
    store.unlink()  # the store it stands on is gone
    assert reusable(out, "one", "sha256:x")[0] is False


def test_a_rerun_keeps_the_artifacts_it_reused_without_rewriting(tmp_path):
    out = tmp_path / "study"
    first = time.time_ns()
    time.sleep(0.02)  # file times come from the kernel's coarse clock, up to a tick behind time.time_ns()
    _write(out / "runs" / "a.jsonl", "run a")
    record_stage(out, "scan", "sha256:1", started_ns=first, seconds=1.0)
    time.sleep(0.02)
    second = time.time_ns()
    time.sleep(0.02)
    _write(out / "runs" / "b.jsonl", "run b")  # only b is written this time; a is reused as it is
    assert written_since(out, second) == ["runs/b.jsonl"]
    record = record_stage(out, "scan", "sha256:2", started_ns=second, seconds=1.0)
    assert set(record.files) == {"runs/a.jsonl", "runs/b.jsonl"}


def test_force_names_and_errors():
    assert resolve_force(None, NOTEBOOKS) == frozenset()
    assert resolve_force(["all"], NOTEBOOKS) == frozenset(NOTEBOOKS)
    assert resolve_force(["layers", "vis_top_nodes"], NOTEBOOKS) == {NOTEBOOKS[0], NOTEBOOKS[2]}
    with pytest.raises(ValueError, match="--force 'layer' names no stage; choose from"):
        resolve_force(["layer"], NOTEBOOKS)


def test_a_change_reaches_exactly_the_stages_downstream(tmp_path):
    """Planned on recorded stages: a parameter of the scans reruns the scans and (through their artifacts)
    the nodes; the layer stage is reused."""
    out = tmp_path / "study"
    params = {nb: {"seed": 0} for nb in NOTEBOOKS}

    def run_all(params, changed_artifacts=()):
        ran = []
        for i, nb in enumerate(NOTEBOOKS):
            plan = plan_stage(out, ROOT, nb, params[nb], upstream=NOTEBOOKS[:i], input_files={}, forced=False)
            if plan.run:
                ran.append(nb)
                started = time.time_ns()
                time.sleep(0.02)  # file times come from the kernel's coarse clock, up to a tick behind
                _write(out / f"{Path(nb).stem}.txt", changed_artifacts.get(nb, "same") if changed_artifacts else "same")
                record_stage(out, nb, plan.fingerprint, started_ns=started, seconds=0.1)
        return ran

    assert run_all(params) == list(NOTEBOOKS)
    assert run_all(params) == []
    params[NOTEBOOKS[1]] = {"seed": 0, "n_runs": 20}
    assert run_all(params, {NOTEBOOKS[1]: "other runs"}) == list(NOTEBOOKS[1:])
    params[NOTEBOOKS[2]] = {"seed": 0, "causal_alphas": [-1, 1]}
    assert run_all(params) == [NOTEBOOKS[2]]
    (out / f"{Path(NOTEBOOKS[0]).stem}.txt").unlink()  # a damaged first stage runs again
    assert run_all(params)[0] == NOTEBOOKS[0]


def test_a_failing_notebook_keeps_what_came_before_and_the_report_says_what_failed(tmp_path, monkeypatch, capsys):
    """The second notebook fails: the first one's artifacts and stage record stay, the third does not run,
    the report is written and names the failure, and the study raises StudyFailed."""
    import personas.study as study

    ran = []

    def fake_execute(notebook, out_dir, params, progress, **kernels):
        ran.append(notebook)
        if notebook == NOTEBOOKS[1]:
            raise RuntimeError("cell 7 raised\nValueError: the pools are empty")
        _write(out_dir / "tables" / "made_by_first.csv", "a\n1\n")

    monkeypatch.setattr(study, "_execute", fake_execute)
    params = study.study_parameters(name="broken", output=tmp_path, quick=True)
    with pytest.raises(study.StudyFailed, match="run_deepscan.ipynb failed"):
        study.run_study(params, progress=False)
    out = tmp_path / "broken"
    assert ran == list(NOTEBOOKS[:2])
    assert (out / "tables" / "made_by_first.csv").read_text() == "a\n1\n"
    assert set(read_stages(out)) == {NOTEBOOKS[0]}
    report = (out / "report.md").read_text()
    assert "`run_deepscan.ipynb` failed (RuntimeError: ValueError: the pools are empty)" in report
    assert "report:" in capsys.readouterr().out
    # the next run reuses the first notebook and retries the one that failed
    ran.clear()
    with pytest.raises(study.StudyFailed):
        study.run_study(params, progress=False)
    assert ran == [NOTEBOOKS[1]]
