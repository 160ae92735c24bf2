"""Settings objects of the layer analyses: same results as the keywords they replace, checked fields."""

from __future__ import annotations

import pandas as pd
import pytest

from personas.layers import LayerProtocol, ProbeSettings, analyse_layers, direction_clusters, synthetic_activations


@pytest.fixture(scope="module")
def data():
    return synthetic_activations(n_personas=2, n_per_direction=12, hidden_size=10, layers=[0, 1, 2],
                                 persona_signal={2: 1.0}, direction_signal={2: 1.0}, seed=4)


def _run(data, **kw):
    acts, meta = data
    table = analyse_layers(acts, meta, model="toy", n_blocks=2, n_jobs=1, progress=False, **kw)
    return table, table.attrs["metadata"]["parameters"]


def test_paper_defaults():
    assert LayerProtocol() == LayerProtocol(n_components=4, n_reps=5, n_per_cluster=100)
    p = ProbeSettings()
    assert (p.classifiers, p.direction_classifiers, p.n_folds, p.n_trees) == (
        ("extra_trees", "logistic"), ("logistic",), 10, 20)


def test_settings_objects_equal_keywords(data):
    by_objects, params_a = _run(data, protocol=LayerProtocol(n_components=3, n_reps=2, n_per_cluster=8),
                                probes=ProbeSettings(classifiers=("logistic",), direction_classifiers=(), n_folds=3))
    by_keywords, params_b = _run(data, n_components=3, n_reps=2, n_per_cluster=8, classifiers=["logistic"],
                                 direction_classifiers=[], n_folds=3)
    pd.testing.assert_frame_equal(by_objects, by_keywords)
    assert params_a == params_b and params_a["n_per_cluster"] == 8 and params_a["n_folds"] == 3
    # a keyword overrides one field of the object it belongs to
    override, params_c = _run(data, protocol=LayerProtocol(n_components=3, n_reps=5, n_per_cluster=8), n_reps=2,
                              classifiers=("logistic",), direction_classifiers=(), n_folds=3)
    pd.testing.assert_frame_equal(override, by_objects)
    assert set(by_objects["analysis"]) == {"cluster", "persona_classifier"}
    assert set(by_objects.loc[by_objects["analysis"] == "cluster", "n"]) == {2}  # n_reps=2 repetitions


def test_deprecated_n_per_direction_is_n_per_cluster(data):
    acts, meta = data
    X, d = acts[2][meta.persona == "persona_00"], meta.direction[meta.persona == "persona_00"]
    new = direction_clusters(X, d, n_per_cluster=6, n_reps=2, seed=3)
    with pytest.warns(DeprecationWarning, match="n_per_direction= is deprecated; use n_per_cluster="):
        old = direction_clusters(X, d, n_per_direction=6, n_reps=2, seed=3)
    pd.testing.assert_frame_equal(new, old)
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="both n_per_cluster=5"):
        direction_clusters(X, d, n_per_cluster=5, n_per_direction=6)


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
    with pytest.raises(TypeError, match=r"unexpected keyword\(s\) \['n_rep'\].*LayerProtocol"):
        analyse_layers(acts, meta, model="toy", n_blocks=2, n_rep=2)
    with pytest.raises(TypeError, match="protocol must be a LayerProtocol"):
        analyse_layers(acts, meta, model="toy", n_blocks=2, protocol={"n_reps": 2})
