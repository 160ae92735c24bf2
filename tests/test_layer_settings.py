"""Settings objects of the layer analyses: the paper's defaults, passed down unchanged, checked fields."""

from __future__ import annotations

import pandas as pd
import pytest

from personas.layers import (
    LayerControls,
    LayerProtocol,
    ProbeSettings,
    analyse_layers,
    cluster_separation,
    direction_clusters,
    synthetic_activations,
)


@pytest.fixture(scope="module")
def data():
    return synthetic_activations(n_personas=2, n_per_direction=12, hidden_size=10, layers=[0, 1, 2],
                                 persona_signal={2: 1.0}, direction_signal={2: 1.0}, seed=4)


def _run(data, **kw):
    acts, meta = data
    table = analyse_layers(acts, meta, model_name="toy", n_blocks=2, n_jobs=1, progress=False, **kw)
    return table, table.attrs["metadata"]["parameters"]


def test_paper_defaults():
    assert LayerProtocol() == LayerProtocol(n_components=4, n_reps=5, n_per_cluster=100)
    p = ProbeSettings()
    assert (p.classifiers, p.direction_classifiers, p.n_folds, p.n_trees) == (
        ("extra_trees", "logistic"), ("logistic",), 10, 20)


def test_settings_objects_reach_every_analysis(data):
    protocol = LayerProtocol(n_components=3, n_reps=2, n_per_cluster=8)
    probes = ProbeSettings(classifiers=("logistic",), direction_classifiers=(), n_folds=3)
    table, params = _run(data, protocol=protocol, probes=probes, controls=LayerControls(baseline=False))
    assert params["n_per_cluster"] == 8 and params["n_folds"] == 3 and params["controls"] is False
    assert set(table["analysis"]) == {"cluster", "persona_classifier"}
    assert set(table.loc[table["analysis"] == "cluster", "n"]) == {2}  # n_reps=2 repetitions
    assert set(table.loc[table["analysis"] == "persona_classifier", "n"]) == {3}  # n_folds=3 folds
    assert set(table["control"]) == {"none"} and set(table["layer"]) == {0, 1, 2}
    # the driver's cluster rows are cluster_separation's, computed with the same protocol
    acts, meta = data
    alone = cluster_separation(acts, meta, model_name="toy", n_blocks=2, protocol=protocol, controls=False,
                               n_jobs=1, progress=False)
    pd.testing.assert_frame_equal(table[table["analysis"] == "cluster"].reset_index(drop=True), alone)
    X, d = acts[2][meta.persona == "persona_00"], meta.direction[meta.persona == "persona_00"]
    long = direction_clusters(X, d, protocol, seed=0, shuffled_control=False, sample_key="persona_00")
    want = long.groupby("metric", sort=False)["value"].mean()
    got = alone[(alone.layer == 2) & (alone.persona == "persona_00")].set_index("metric")["mean"]
    pd.testing.assert_series_equal(got[want.index], want, check_names=False)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="n_reps must be >= 1"):
        LayerProtocol(n_reps=0)
    with pytest.raises(TypeError, match="n_per_cluster must be an int"):
        LayerProtocol(n_per_cluster=2.5)
    with pytest.raises(ValueError, match="n_folds must be >= 2"):
        ProbeSettings(n_folds=1)
    with pytest.raises(ValueError, match="unknown classifier"):
        ProbeSettings(classifiers=("svm",))
    with pytest.raises(ValueError, match="probe_C must be > 0"):
        ProbeSettings(probe_C=0)
    assert ProbeSettings(classifiers=["logistic"]) == ProbeSettings(classifiers=("logistic",))


def test_unknown_setting_names_the_fields(data):
    acts, meta = data
    with pytest.raises(TypeError, match="n_reps"):
        analyse_layers(acts, meta, model_name="toy", n_blocks=2, n_reps=2)  # settings only through objects
    with pytest.raises(TypeError, match="protocol must be a LayerProtocol"):
        analyse_layers(acts, meta, model_name="toy", n_blocks=2, protocol={"n_reps": 2})
    with pytest.raises(TypeError, match="controls must be a LayerControls"):
        analyse_layers(acts, meta, model_name="toy", n_blocks=2, controls=True)
