"""One precision/recall summary: checked by hand, against deepscan's own, and in the scan table."""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import pytest

import deepscan
from personas.nodes import precision_recall_summary
from personas.scans.summary import summarise_runs

RUNS = pd.DataFrame({
    "precision": [1.0, 0.5, None, 0.25, 0.75],  # run 2 chose no records
    "recall": [0.5, 0.5, 0.0, 1.0, None],  # run 4 had no anomalous records
    "score": [3.0, 2.0, 0.0, 1.0, 4.0],
    "nodes": [[1], [2], [], [3], [4]],
})


def test_by_hand():
    got = summarise_runs(RUNS)
    p, r = [1.0, 0.5, 0.25, 0.75], [0.5, 0.5, 0.0, 1.0]
    assert got == pytest.approx({
        "n_runs": 5, "precision_mean": statistics.fmean(p), "precision_std": statistics.pstdev(p),
        "precision_n_none": 1, "recall_mean": statistics.fmean(r), "recall_std": statistics.pstdev(r),
        "recall_n_none": 1,
    })
    as_zero = summarise_runs(RUNS, none_as=0.0, ddof=1)
    assert as_zero["precision_mean"] == pytest.approx(2.5 / 5)
    assert as_zero["precision_std"] == pytest.approx(statistics.stdev([1.0, 0.5, 0.0, 0.25, 0.75]))
    assert as_zero["precision_n_none"] == 1  # still counted as undefined
    one = summarise_runs(RUNS.iloc[:1], ddof=1)
    assert one["precision_mean"] == 1.0 and np.isnan(one["precision_std"])  # no sample std of one run


def test_per_persona_summary_is_summarise_runs():
    table = precision_recall_summary({"a": RUNS, "b": RUNS.iloc[:2]})
    assert list(table["persona"]) == ["a", "b"]
    for persona, runs in (("a", RUNS), ("b", RUNS.iloc[:2])):
        row = table.set_index("persona").loc[persona]
        for key, value in summarise_runs(runs).items():
            assert row[key] == pytest.approx(value, nan_ok=True), key
    assert table.loc[0, "score_mean"] == pytest.approx(2.0)


def test_agrees_with_deepscan_experiment_summary_at_ddof_1():
    rng = np.random.default_rng(0)
    background = rng.standard_normal((40, 6))
    clean = rng.standard_normal((10, 6))
    anomalous = rng.standard_normal((10, 6)) + np.array([3.0, 3.0, 0, 0, 0, 0])
    result = deepscan.run_experiment(background, clean, anomalous, clean_ssize=5, anom_ssize=5, n_runs=6, seed=1,
                                     progress=False)
    ours, theirs = summarise_runs(result.runs, ddof=1), result.summary()
    assert ours["n_runs"] == theirs["n_runs"] == 6
    for key in ("precision_mean", "precision_std", "recall_mean", "recall_std"):
        assert ours[key] == pytest.approx(theirs[key], nan_ok=True), key


def test_rejects_a_table_without_precision():
    with pytest.raises(ValueError, match=r"lacks columns \['precision'\]"):
        summarise_runs(pd.DataFrame({"recall": [1.0]}))
