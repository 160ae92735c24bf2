"""Reliability, round 2 (issue 33): each root checked through the public API or the command line.

- readouts and scorers return finite values of the right length or fail naming the readout; the gate
  never calls a constant or non-finite readout informative;
- one writer per folder: a lock naming its holder (pid, host, start), taken over when the holder died,
  group-writable, removed on release; the study refuses a locked folder before any notebook runs;
- the report cross-checks what it reads and names every missing, truncated or foreign artifact;
- one way of making file names (store, run files, null runs, figures), topic names checked;
- ``-p`` values checked up front by the settings objects, naming the parameter, the value and an example;
- ``extract_activations(statements=None)`` and a one-row DeepScan background.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import deepscan
from deepscan.locking import FileLock, LockHeld, StaleLockWarning, lock_holder, process_start
from personas._core.checks import check_scores
from personas._core.io import exclusive_lock, write_json
from personas._core.names import MAX_STEM, check_file_names, file_stem
from personas._core.parameters import ParameterError, check_parameters
from personas.causal.stats import auc_interval, is_informative
from personas.model.readouts import resolve_readout
from personas.report import build_report
from personas.report.checks import artifact_problems, problems_section
from personas.scans.null_runs import null_file_name, write_null_runs
from personas.scans.pools import experiment_seed, run_file_name
from personas.statements import study_inputs
from personas.store.paths import store_path
from personas.study import check_parameter_values, notebook_parameters

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["I like people.", "I dislike people.", "Kindness matters.", "Nobody matters."]
# the parameters the study sets itself and checks with check_inputs (the statements, topics and personas)
STUDY_KEYS = ("model_name", "personas", "layers", "store_dir", "out_dir", "statements_file", "topics_file", "prefer")


# --------------------------------------------------------------------------- readouts and the gate


def _scores_of(fn):
    return resolve_readout(fn).prepare(None, TEXTS).scores(None)


def test_a_user_readout_returning_nan_inf_or_the_wrong_length_is_an_error_naming_it():
    def my_margin(model, tokenizer, texts):
        return [0.5, float("nan"), 1.0, float("nan")]

    def my_inf(model, tokenizer, texts):
        return np.array([np.inf, 0.0, 0.0, -np.inf])

    def my_short(model, tokenizer, texts):
        return [1.0, 2.0]

    def my_words(model, tokenizer, texts):
        return ["high", "low", "high", "low"]

    with pytest.raises(ValueError, match=r"readout 'my_margin' returned 2 non-finite score\(s\) \(NaN or inf\) of 4, "
                                         r"first: #1 \(nan\) 'I dislike people.', #3 \(nan\) 'Nobody matters.'"):
        _scores_of(my_margin)
    with pytest.raises(ValueError, match=r"readout 'my_inf' returned 2 non-finite.*#0 \(inf\).*#3 \(-inf\)"):
        _scores_of(my_inf)
    with pytest.raises(ValueError, match=r"readout 'my_short' returned shape \(2,\); expected \(4,\)"):
        _scores_of(my_short)
    with pytest.raises(ValueError, match=r"readout 'my_words' returned list .*not numbers"):
        _scores_of(my_words)
    got = _scores_of(lambda model, tokenizer, texts: [1, 2, 3, 4])  # ints are fine, as float64
    assert got.dtype == np.float64 and got.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_check_scores_is_the_one_rule_for_scores():
    with pytest.raises(ValueError, match=r"readout 'likelihood' returned 1 non-finite score\(s\) .* of 3, first: #2"):
        check_scores([0.0, 1.0, np.nan], 3, name="likelihood")
    with pytest.raises(ValueError, match=r"returned shape \(\)"):
        check_scores(1.0, 1, name="x")  # one number is not one score per statement
    np.testing.assert_array_equal(check_scores(np.float32([1, 2]), 2, name="x"), [1.0, 2.0])


def _gate(scores, positive, n_boot=400, seed=0):
    rng = np.random.default_rng(seed)  # resampled within each direction, as the check does
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    boot = pos[rng.integers(0, len(pos), (n_boot, len(pos)))], neg[rng.integers(0, len(neg), (n_boot, len(neg)))]
    auc, lo, hi = auc_interval(np.asarray(scores, float), positive, boot)
    return auc, lo, hi, is_informative(auc, lo, hi, scores)


def test_the_gate_never_calls_a_constant_or_non_finite_readout_informative():
    positive = np.repeat([True, False], 20)
    rng = np.random.default_rng(0)
    separated = np.where(positive, 2.0, -2.0) + rng.normal(0, 0.1, 40)
    auc, lo, hi, informative = _gate(separated, positive)
    assert auc == 1.0 and lo == hi == 1.0 and informative  # the planted separation passes
    noise = rng.normal(0, 1, 40)
    _, lo, hi, informative = _gate(noise, positive)
    assert lo <= 0.5 <= hi and not informative
    assert _gate(np.full(40, 3.0), positive)[3] is False  # constant: AUC 0.5 whatever the interval
    # a constant readout cannot be informative even where an interval (e.g. a buggy one) excludes 0.5
    assert not is_informative(0.9, 0.8, 1.0, np.full(40, 3.0))
    assert not is_informative(float("nan"), 0.8, 1.0, separated)  # NaN AUC
    assert not is_informative(1.0, float("nan"), float("nan"), separated)
    with_nan = separated.copy()
    with_nan[3] = np.nan
    assert not is_informative(1.0, 0.9, 1.0, with_nan)
    assert is_informative(1.0, 0.9, 1.0, separated)


@pytest.fixture(scope="module")
def planted():
    from tests.tiny_models import persona_statements, planted_persona_model, planted_tokenizer

    tok = planted_tokenizer()
    statements = persona_statements()
    return planted_persona_model(tok, statements), tok, statements


@pytest.mark.usefixtures("one_torch_thread")
def test_causal_check_gates_a_constant_readout_out_and_stops_on_a_nan_one(planted):
    from personas.causal.check import causal_check
    from personas.causal.settings import CausalSettings
    from personas.model.extraction import ExtractionSettings

    model, tok, statements = planted

    def constant(model, tokenizer, texts):
        return np.zeros(len(texts))

    def broken(model, tokenizer, texts):
        out = np.ones(len(texts))
        out[2] = np.nan
        return out

    def settings(readout):
        return CausalSettings(readouts=(readout,), n_heldout=6, n_train=10, n_boot=100, n_random_directions=1,
                              n_random_nodes=1, n_specificity=0, n_dose_personas=0, rule="first",
                              extraction=ExtractionSettings(position="mean"))

    res = causal_check(model, tok, statements, {"agreeableness": [20, 3]}, 1, settings(constant), seed=0,
                       progress=False)
    gate = res.gate.iloc[0]
    assert gate["readout"] == "constant" and gate["auc"] == 0.5 and not gate["informative"]
    assert len(res.effects) == 0  # no intervention on an uninformative readout
    with pytest.raises(ValueError, match=r"readout 'broken' returned 1 non-finite score\(s\) \(NaN or inf\) of 12"):
        causal_check(model, tok, statements, {"agreeableness": [20, 3]}, 1, settings(broken), seed=0, progress=False)


# --------------------------------------------------------------------------- locks


def _holder_script(lock: Path, ready: Path) -> list[str]:
    code = ("import sys, time, pathlib\nfrom deepscan.locking import FileLock\n"
            f"lock = FileLock({str(lock)!r}, 'the test folder')\npathlib.Path({str(ready)!r}).write_text('x')\n"
            "time.sleep(60)\n")
    return [sys.executable, "-c", code]


def _start_holder(tmp_path: Path):
    lock, ready = tmp_path / ".x.lock", tmp_path / "ready"
    proc = subprocess.Popen(_holder_script(lock, ready), cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    for _ in range(600):
        if ready.exists():
            return proc, lock
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the lock holder did not start")


def test_a_second_writer_is_told_who_holds_the_lock_and_a_killed_holder_leaves_no_trap(tmp_path):
    proc, lock = _start_holder(tmp_path)
    try:
        holder = lock_holder(lock)
        assert holder["pid"] == proc.pid and holder["process_start"] == process_start(proc.pid)
        with pytest.raises(LockHeld, match=rf"the test folder is being written by another process: process "
                                           rf"{proc.pid} on .* \(holding it since 20.*\).*no need to delete it"):
            FileLock(lock, "the test folder")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lock.exists()  # left behind by the killed holder: harmless
    with pytest.warns(StaleLockWarning, match=rf"took over the lock .* left by process {proc.pid}"):
        taken = FileLock(lock, "the test folder")
    assert taken.taken_over["pid"] == proc.pid and lock_holder(lock)["pid"] == os.getpid()
    taken.release()
    assert not lock.exists()  # removed on release


def test_the_pid_and_start_time_tell_a_live_holder_where_the_flock_says_nothing(tmp_path):
    """A lock file naming a live process (same host, same start) is held even without an flock (network file
    systems); one naming a process that started at another time (a reused pid) is stale."""
    import socket

    lock = tmp_path / ".y.lock"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = {"pid": proc.pid, "host": socket.gethostname(), "started": "then",
                "process_start": process_start(proc.pid)}
        lock.write_text(json.dumps(live))
        with pytest.raises(LockHeld, match=rf"process {proc.pid}"):
            FileLock(lock, "the folder")
        lock.write_text(json.dumps({**live, "process_start": "proc:1"}))  # the pid, reused by another process
        with pytest.warns(StaleLockWarning):
            FileLock(lock, "the folder").release()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o664), (0o002, 0o664), (0o077, 0o600)])
def test_lock_files_are_group_writable_where_the_umask_lets_the_group_read(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        with exclusive_lock(tmp_path / ".z.lock", "the folder") as path:
            assert path.stat().st_mode & 0o777 == mode
            with pytest.raises(RuntimeError, match="the folder is being written by another process: process "
                                                   f"{os.getpid()}"):
                with exclusive_lock(path, "the folder"):
                    pass
        assert not path.exists()
    finally:
        os.umask(old)


def test_a_study_refuses_a_folder_another_study_writes_before_any_notebook_runs(tmp_path, monkeypatch):
    import personas.study as study

    params = study.study_parameters(name="busy", output=tmp_path, quick=True)
    ran = []
    monkeypatch.setattr(study, "_execute", lambda *a, **k: ran.append(a))
    with exclusive_lock(tmp_path / "busy" / study.STUDY_LOCK, "the study folder"):
        with pytest.raises(RuntimeError, match=rf"is being written by another process: process {os.getpid()} .*"
                                               r"--name OTHER or --output DIR"):
            study.run_study(params, progress=False)
    assert ran == [] and not (tmp_path / "busy" / "study.json").exists()


# --------------------------------------------------------------------------- the report's cross-checks


def _pools(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(30, 6)), rng.normal(size=(10, 6)), rng.normal(size=(10, 6)) + 1.0


def _study_dir(tmp_path: Path, *, run_seed_offset=0, scanned_layer=3, null_seed_offset=0, cut_runs=0):
    """A study directory with small, real artifacts: one level-2 run file with its null runs."""
    out = tmp_path / "study"
    params = {"model_name": "toy", "seed": 0, "n_runs": 6, "clean_ssize": 2, "anom_ssize": 2, "detection": True,
              "layer": None, "untrained_control": False, "causal": False, "n_folds": 3}
    write_json(out / "study.json", {"parameters": params, "notebook_defaults": {}})
    write_json(out / "chosen_layer.json", {"layer": 3, "relative_depth": 0.5, "metric": "silhouette"})
    (out / "tables" / "nodes").mkdir(parents=True)
    pd.DataFrame({"layer": [0, 3], "silhouette": [0.1, 0.4]}).to_csv(out / "tables" / "layer_metrics.csv", index=False)
    write_json(out / "tables" / "layer_metrics.json", {"model": "toy", "parameters": {"n_folds": 3, "seed": 0}})
    runs = out / "runs"
    name, null = run_file_name("a", 2, scanned_layer), null_file_name("a", 2, scanned_layer)
    bg, cl, an = _pools()
    kw = dict(clean_ssize=2, anom_ssize=2, n_runs=6, persona="a", model="toy", layers=[scanned_layer],
              metadata={"level": 2, "study_seed": 0})
    result = deepscan.run_experiment(bg, cl, an, seed=experiment_seed(0, "a", 2) + run_seed_offset,
                                     run_file=runs / name, **kw)
    power = deepscan.detection_power(bg, cl, an, clean_ssize=2, anom_ssize=2, n_runs=6,
                                     seed=experiment_seed(0, "a", 2) + null_seed_offset)
    header = result.header if not null_seed_offset else {**result.header, "config": {**result.header["config"],
                                                                                    "seed": 12345}}
    write_null_runs(runs / null, power, header, persona="a", level=2, layer=scanned_layer, model_name="toy",
                    node_layout=[{"layer": scanned_layer, "n_units": 6}], run_file=name)
    if cut_runs:
        lines = (runs / name).read_text().splitlines()
        (runs / name).write_text("\n".join(lines[:-cut_runs]) + "\n")
    write_json(runs / "index.json", {"layer": scanned_layer, "model": "toy", "levels": {"2": {"a": name}},
                                     "null": {"2": {"a": null}}})
    pd.DataFrame({"persona": ["a"], "level": [2]}).to_csv(out / "tables" / "deepscan_precision_recall.csv", index=False)
    pd.DataFrame({"persona": ["a"], "size": [3]}).to_csv(out / "tables" / "nodes" / "set_sizes.csv", index=False)
    return out, {**params}


def test_consistent_artifacts_have_no_problems(tmp_path):
    out, params = _study_dir(tmp_path)
    assert artifact_problems(out, params) == []
    assert problems_section([], True).startswith("Nothing: every artifact the settings call for is present and whole")
    # these tables hold too few columns for the report's sections: each says so, none fails the report
    section = build_report(out).split("## What failed or is missing", 1)[1].split("\n## ", 1)[0]
    assert "- the section 'DeepScan precision and recall' could not be built: 'method'" in section


def test_the_report_names_a_foreign_layer_seed_null_file_and_a_truncated_run_file(tmp_path):
    out, params = _study_dir(tmp_path, run_seed_offset=1, scanned_layer=2, null_seed_offset=1, cut_runs=2)
    problems = artifact_problems(out, params)
    name, null = run_file_name("a", 2, 2), null_file_name("a", 2, 2)
    expected = [
        "the run files scanned layer 2, but the chosen layer (chosen_layer.json) is 3",
        f"`runs/{name}` holds 4 of its 6 runs",
        f"`runs/{name}` scanned layer(s) [2], not the chosen layer 3",
        f"`runs/{name}` was made with seed = {experiment_seed(0, 'a', 2) + 1}, but study.json says "
        f"{experiment_seed(0, 'a', 2)}",
        f"`runs/{null}` does not belong to `runs/{name}`: it was made for another experiment",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in problems), (text, problems)
    assert len(problems) == len(expected)
    report = build_report(out)
    section = report.split("## What failed or is missing", 1)[1].split("\n## ", 1)[0]
    for text in expected:
        assert text in section


def test_a_missing_or_cut_artifact_is_named_and_the_report_still_builds(tmp_path):
    out, params = _study_dir(tmp_path)
    (out / "tables" / "deepscan_precision_recall.csv").unlink()
    text = (out / "chosen_layer.json").read_text()
    (out / "chosen_layer.json").write_text(text[: len(text) // 2])  # cut short, as a full disk would
    (out / "runs" / null_file_name("a", 2, 3)).unlink()
    problems = artifact_problems(out, params)
    assert "`tables/deepscan_precision_recall.csv` is missing" in problems
    assert any(p.startswith("`chosen_layer.json` cannot be read (truncated or damaged?)") for p in problems)
    assert any(p.startswith(f"`runs/{null_file_name('a', 2, 3)}` cannot be read") for p in problems)
    report = build_report(out)  # no exception: each section that needs a cut artifact says so
    assert "## Chosen layer\n\n_Could not be built from the artifacts" in report
    assert "the section 'Chosen layer' could not be built" in report


# --------------------------------------------------------------------------- file names


def test_file_stem_keeps_safe_names_and_hashes_every_other_so_names_never_collide():
    assert file_stem("agreeableness") == "agreeableness" and file_stem("Ethics") == "Ethics"
    names = ["a b", "a?b", "a-b", "a/b", "a_b", "a b ", "ab", "a-b-" + file_stem("a b")[-8:], "é", "!!", "x" * 300]
    stems = [file_stem(n) for n in names]
    assert len(set(stems)) == len(names)  # distinct names, distinct stems
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", s) and len(s) <= MAX_STEM for s in stems)
    assert re.fullmatch(r"a-b-[0-9a-f]{8}", file_stem("a b")) and file_stem("a-b") == "a-b"
    assert re.fullmatch(r"x-[0-9a-f]{8}", file_stem("!!"))


def test_store_run_files_null_runs_and_figures_make_names_one_way(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from personas.viz import plot_upset

    name = "anti-LGBTQ rights/x"
    stem = file_stem(name)
    assert store_path(tmp_path, "m", name)[0].name == f"{stem}.safetensors"
    assert run_file_name(name, 0, 7) == f"level0_layer7_{stem}.jsonl"
    assert null_file_name(name, 0, 7) == f"level0_layer7_{stem}.null.json"
    plot_upset({"p": {1, 2}, "q": {2, 3}}, out_dir=tmp_path, name=f"upset_{name}")
    assert (tmp_path / f"{file_stem('upset_' + name)}.png").exists()


def test_topic_names_are_checked_like_persona_names(tmp_path):
    topics = tmp_path / "topics.json"
    topics.write_text(json.dumps({"Ethics": ["subscribes-to-deontology"], "ethics": ["agreeableness"]}))
    with pytest.raises(ValueError, match=r"topics file .*: topic 'ethics' and the topic 'Ethics' would share file names"):
        study_inputs(["agreeableness", "subscribes-to-deontology"], topics_file=topics)
    topics.write_text(json.dumps({"???": ["agreeableness"]}))
    with pytest.raises(ValueError, match=r"topic name '\?\?\?' has no letters or digits"):
        study_inputs(["agreeableness"], topics_file=topics)
    with pytest.raises(ValueError, match="persona 'X' and the persona 'x'"):
        check_file_names(["x", "X"], "persona")


# --------------------------------------------------------------------------- -p values


def test_every_notebook_parameter_is_checked_up_front():
    """The root: each parameter of each notebook is read by a settings check (or is one the study checks itself)."""
    from personas.causal.parameters import NOTEBOOK_CHECKS as nodes
    from personas.layers.parameters import NOTEBOOK_CHECKS as layers
    from personas.scans.parameters import NOTEBOOK_CHECKS as scans

    for (nb, defaults), checks in zip(notebook_parameters().items(), (layers, scans, nodes)):
        covered = {n for c in checks for n in c.names}
        assert set(defaults) - set(STUDY_KEYS) == covered, nb
        check_parameters(defaults, defaults, checks)  # the notebook's own defaults pass
        for name in covered:  # and a value of the wrong kind fails, naming the parameter
            with pytest.raises(ParameterError, match=rf"parameter {name} = \{{'x': 1\}} is not valid: .* For "
                                                     rf"example: -p {name} "):
                check_parameters({name: {"x": 1}}, defaults, checks)


@pytest.mark.parametrize("name, value, message", [
    ("n_runs", "abc", r"parameter n_runs = 'abc' is not valid: sample_sizes.n_runs must be an int; got 'abc' \(str\)"
                      r"\. For example: -p n_runs 100"),
    ("causal_alphas", 3, r"parameter causal_alphas = 3 is not valid: alphas must be a sequence of numbers.*"
                         r"For example: -p causal_alphas '\[-0.25, 0.25\]'"),
    ("levels", 3, r"levels must be a list of levels, e.g. \[2, 1, 0\]; got 3"),
    ("baselines", ["svm"], r"unknown method\(s\) \['svm'\]"),
    ("min_fraction", 0.5, r"min_fraction .* goes with salient_method 'min_fraction'"),
    ("level", True, r"level must be an int"),
    ("scheduler", 8786, r"For example: -p scheduler tcp://host:8786"),
    ("dtype", "float33", r"dtype must be one of \['float32', 'float16', 'bfloat16', 'auto'\]"),
])
def test_bad_parameter_values_name_the_parameter_the_value_and_an_example(tmp_path, name, value, message):
    with pytest.raises(ValueError, match=message):
        check_parameter_values({name: value})


def test_values_that_only_clash_together_are_named_together():
    with pytest.raises(ParameterError, match=r"parameters n_folds = 3, control_folds = 4 do not fit together: "
                                             r"control_folds must be <= 3"):
        check_parameter_values({"n_folds": 3, "control_folds": 4})


@pytest.mark.parametrize("args, message", [
    (["-p", "n_runs", "abc"], r"parameter n_runs = 'abc' is not valid.*For example: -p n_runs 100"),
    (["-p", "causal_alphas", "3"], r"parameter causal_alphas = 3 is not valid"),
    (["--seed", "-1"], r"parameter seed = -1 is not valid: seed must be >= 0"),
])
def test_the_command_line_fails_fast_on_a_bad_value(tmp_path, args, message):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "personas.study", "--output", str(tmp_path), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert re.search(message, done.stderr), done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert time.perf_counter() - started < 120


@pytest.mark.usefixtures("one_torch_thread")
def test_the_store_mismatch_error_gives_advice_the_command_line_can_follow(tmp_path):
    from personas.model.extraction import ExtractionSettings, extract_to_store
    from personas.statements import load_statements
    from tests.tiny_models import make_model, make_tokenizer

    model, tok = make_model("llama"), make_tokenizer("llama3")
    df = load_statements(["openness"], n_per_direction=3)
    extract_to_store(model, tok, df, model_name="tiny", layers=[0, 1], store_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"made differently: position: .*--output OTHER_DIR.*overwrite=True"):
        extract_to_store(model, tok, df, model_name="tiny", layers=[0, 1], store_dir=tmp_path, progress=False,
                         settings=ExtractionSettings(position="mean"))


# --------------------------------------------------------------------------- extraction input, small backgrounds


@pytest.mark.usefixtures("one_torch_thread")
def test_extract_activations_without_statements_is_a_clear_error():
    from personas.model.extraction import extract_activations
    from tests.tiny_models import make_model, make_tokenizer

    model, tok = make_model("llama"), make_tokenizer("llama3")
    for bad in (None, 5):
        with pytest.raises(ValueError, match=r"statements must be a sequence of strings or a statements DataFrame"):
            extract_activations(model, tok, bad, [0], progress=False)


def test_a_one_row_background_warns_that_its_p_values_are_coarse():
    records = np.array([[-1.0, 0.5], [0.0, 2.0], [1.0, 1.0]])
    with pytest.warns(UserWarning, match=r"background has a single row: each p-value .* only be 0, 0.5 or 1"):
        p = deepscan.pvalue_ranges(np.array([[0.0, 1.0]]), records, "upper")
    assert set(np.unique(p)) <= {0.0, 0.5, 1.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deepscan.pvalue_ranges(np.array([[0.0, 1.0], [0.5, 0.2]]), records, "upper")  # two rows: no warning


def test_the_report_asks_for_the_causal_tables_not_a_summary_file(tmp_path):
    """The causal section is built from the saved tables: a missing gate table is named, an empty effects
    table (no informative readout) is not a problem, and no summary.md is expected."""
    from personas.report.checks import artifact_problems

    causal = tmp_path / "causal"
    causal.mkdir()
    (causal / "causal_check.json").write_text(json.dumps({"seed": 0, "layer": None, "settings": {}}))
    (causal / "causal_effects.csv").write_text("\n")
    (causal / "causal_comparisons.csv").write_text("\n")
    problems = artifact_problems(tmp_path, {"causal": True, "seed": 0})
    assert "`causal/causal_gate.csv` is missing" in problems
    assert not any("summary.md" in p or "effects" in p or "comparisons" in p for p in problems)
