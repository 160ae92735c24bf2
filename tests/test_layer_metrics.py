"""Layer localisation metrics: golden values, equality with scikit-learn, planted signals, controls, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from personas.layers import (
    RESULT_COLUMNS,
    analyse_layers,
    cluster_scores,
    cluster_separation,
    combine_results,
    cross_validate_classifier,
    direction_classification,
    direction_clusters,
    embed_2d,
    load_results,
    persona_classification,
    most_divergent_layers,
    pca_projections,
    relative_depth,
    save_results,
    synthetic_activations,
)
from personas.layers import LayerProtocol, ProbeSettings, analyses
from personas.model.hooks import resolve_layers
from personas.layers.classifiers import _probe_features
from personas.layers.pca import pca_scores
from personas._core.provenance import derive_seed

PLANTED = {3: 1.5, 4: 1.5}  # separation planted at layers 3 and 4 of 0..5
N_BLOCKS = 5
SMALL = dict(protocol=LayerProtocol(n_reps=2, n_per_cluster=20), probes=ProbeSettings(n_folds=3, n_trees=10),
             n_jobs=1, progress=False)


@pytest.fixture(scope="module")
def planted():
    acts, meta = synthetic_activations(
        n_personas=3, n_per_direction=30, hidden_size=48, layers=range(6),
        persona_signal=PLANTED, direction_signal=PLANTED, signal_fraction=0.25, seed=1,
    )
    return acts, meta


@pytest.fixture(scope="module")
def table(planted):
    acts, meta = planted
    return analyse_layers(acts, meta, model_name="toy", n_blocks=N_BLOCKS, **SMALL)


# ----------------------------------------------------------------------------- golden values and sklearn


def test_cluster_scores_golden_square():
    # two pairs of points, 4 apart: every metric by hand
    Z = np.array([[0.0, 0.0], [0.0, 2.0], [4.0, 0.0], [4.0, 2.0]])
    labels = np.array(["positive", "positive", "negative", "negative"])
    got = cluster_scores(Z, labels)
    b = (4.0 + np.sqrt(20.0)) / 2  # mean distance to the other pair
    assert got["silhouette"] == pytest.approx((b - 2.0) / b)
    assert got["calinski_harabasz"] == pytest.approx(8.0)  # (16 / 1) / (4 / 2)
    assert got["davies_bouldin"] == pytest.approx(0.5)  # (1 + 1) / 4
    assert got["centroid_distance"] == pytest.approx(4.0)


def test_cluster_scores_equal_sklearn():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(40, 4))
    y = np.repeat([0, 1], 20)
    Z[y == 1] += 1.5
    got = cluster_scores(Z, y)
    assert got["silhouette"] == pytest.approx(silhouette_score(Z, y), rel=1e-12)
    assert got["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(Z, y), rel=1e-12)
    assert got["davies_bouldin"] == pytest.approx(davies_bouldin_score(Z, y), rel=1e-12)
    assert got["centroid_distance"] == pytest.approx(np.linalg.norm(Z[y == 0].mean(0) - Z[y == 1].mean(0)))


@pytest.mark.parametrize("shape", [(30, 50), (60, 8)])  # fewer statements than nodes, and more
def test_pca_projections_equal_sklearn_up_to_sign(shape):
    X = np.random.default_rng(1).normal(size=shape) * np.linspace(3, 1, shape[1])
    got = pca_projections(X, 4)
    want = PCA(4, svd_solver="full").fit_transform(X)
    np.testing.assert_allclose(np.abs(got), np.abs(want), atol=1e-9)
    # signs are deterministic: the largest-magnitude projection of each component is positive
    assert (got[np.argmax(np.abs(got), axis=0), range(4)] > 0).all()


def test_randomized_pca_path_is_accurate():
    # the path taken above 1024 statements and nodes, forced here on a small matrix
    rng = np.random.default_rng(2)
    X = (rng.normal(size=(300, 6)) * [9, 7, 5, 3, 2, 1]) @ rng.normal(size=(6, 200)) + rng.normal(size=(300, 200))
    Z = X - X.mean(0)
    got, new = pca_scores(Z, 3, Z_new=Z[:5], exact=False, n_iter=4)
    want = PCA(3, svd_solver="full").fit_transform(X)
    np.testing.assert_allclose(np.abs(got), np.abs(want), rtol=1e-6, atol=1e-6 * np.abs(want).max())
    np.testing.assert_allclose(np.abs(new), np.abs(want[:5]), rtol=1e-6, atol=1e-6 * np.abs(want).max())


def test_direction_clusters_equal_manual_pipeline():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(24, 30))
    d = np.repeat(["positive", "negative"], 12)
    X[d == "positive", :5] += 2.0
    # all statements in one repetition: the sample is the whole set, in a shuffled order
    got = direction_clusters(X, d, LayerProtocol(n_components=3, n_reps=1, n_per_cluster=None),
                             shuffled_control=False)
    Z = PCA(3, svd_solver="full").fit_transform(X)
    want = {
        "silhouette": silhouette_score(Z, d),
        "calinski_harabasz": calinski_harabasz_score(Z, d),
        "davies_bouldin": davies_bouldin_score(Z, d),
        "centroid_distance": np.linalg.norm(Z[d == "positive"].mean(0) - Z[d == "negative"].mean(0)),
    }
    values = got.set_index("metric")["value"]
    for metric, value in want.items():
        assert values[metric] == pytest.approx(value, rel=1e-9)


def _folds(X, y, n_folds, seed, key=""):
    return list(StratifiedKFold(n_folds, shuffle=True, random_state=derive_seed(seed, "folds", key)).split(X, y))


def test_extra_trees_one_pass_equals_sklearn_cross_validate():
    rng = np.random.default_rng(4)
    y = np.repeat(["a", "b", "c"], 20)
    X = rng.normal(size=(60, 12)).astype(np.float32)
    X[:, 0] += (y == "a") * 1.5
    X[:, 1] += (y == "b") * 1.5
    got = cross_validate_classifier(X, y, ProbeSettings(n_folds=4, n_trees=8), classifiers=("extra_trees",), seed=7,
                                    shuffled_control=False)
    # the published scorers, in scikit-learn's own cross-validation, with our folds and seed
    clf = ExtraTreesClassifier(n_estimators=8, random_state=derive_seed(7, "extra_trees", ""))
    want = cross_validate(clf, X, y, cv=_folds(X, y, 4, 7),
                          scoring=["accuracy", "precision_weighted", "f1_weighted"])
    for metric in ("accuracy", "precision_weighted", "f1_weighted"):
        values = got[got.metric == metric].sort_values("fold")["value"].to_numpy()
        np.testing.assert_allclose(values, want[f"test_{metric}"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("components", [3, None])
def test_probe_equals_sklearn_pipeline(components):
    rng = np.random.default_rng(5)
    y = np.repeat([0, 1, 2], 12)
    X = rng.normal(size=(36, 50))  # fewer statements than nodes: None uses the exact span reduction
    X[:, :3] += np.eye(3)[y] * 1.2
    probes = ProbeSettings(n_folds=3, probe_components=components, probe_C=0.5, probe_tol=1e-12,
                           probe_max_iter=20000)
    got = cross_validate_classifier(X, y, probes, classifiers=("logistic",), seed=2, shuffled_control=False)
    steps = [StandardScaler()] + ([PCA(components, svd_solver="full")] if components else [])
    pipe = make_pipeline(*steps, LogisticRegression(C=0.5, tol=1e-12, max_iter=20000))
    for i, (train, test) in enumerate(_folds(X, y, 3, 2)):
        pred = pipe.fit(X[train], y[train]).predict(X[test])
        acc = got[(got.fold == i) & (got.metric == "accuracy")]["value"].item()
        assert acc == pytest.approx(np.mean(pred == y[test]))
    # the decision values themselves match, not only the accuracy
    train, test = _folds(X, y, 3, 2)[0]
    Ftr, Fte = _probe_features(X, train, test, components, 0, 2)
    mine = LogisticRegression(C=0.5, tol=1e-12, max_iter=20000).fit(Ftr, y[train]).decision_function(Fte)
    np.testing.assert_allclose(mine, pipe.fit(X[train], y[train]).decision_function(X[test]), atol=1e-5)


def test_seeds_reproduce_and_differ():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(40, 10))
    d = np.repeat(["positive", "negative"], 20)
    protocol = LayerProtocol(n_per_cluster=10, n_reps=3)
    a = direction_clusters(X, d, protocol, seed=1)
    b = direction_clusters(X, d, protocol, seed=1)
    c = direction_clusters(X, d, protocol, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["value"], c["value"])
    probes = ProbeSettings(classifiers=("extra_trees", "logistic"), n_folds=4, n_trees=5)
    e = cross_validate_classifier(X, d, probes, seed=3)
    f = cross_validate_classifier(X, d, probes, seed=3)
    pd.testing.assert_frame_equal(e, f)


# ----------------------------------------------------------------------------- planted separation and controls


def test_table_columns_and_relative_depth(table, planted):
    assert list(table.columns) == RESULT_COLUMNS
    assert set(table.analysis) == {"cluster", "persona_classifier", "direction_classifier"}
    assert set(table.control) == {"none", "shuffled_labels"}
    assert sorted(table.layer.unique()) == list(range(6))
    np.testing.assert_allclose(table.relative_depth, table.layer / N_BLOCKS)
    assert set(table.loc[table.analysis == "persona_classifier", "persona"]) == {"ALL"}
    assert set(table.loc[table.analysis == "cluster", "persona"]) == set(planted[1].persona)
    assert (table.loc[table.analysis == "cluster", "n"] == SMALL["protocol"].n_reps).all()
    assert (table.loc[table.analysis != "cluster", "n"] == SMALL["probes"].n_folds).all()
    md = table.attrs["metadata"]
    assert md["model"] == "toy" and md["layers"] == list(range(6)) and md["parameters"]["n_folds"] == 3


def _by_layer(table, analysis, metric, control="none", classifier=None):
    sub = table[(table.analysis == analysis) & (table.metric == metric) & (table.control == control)]
    if classifier:
        sub = sub[sub.classifier == classifier]
    return sub.groupby("layer")["mean"].mean()


def test_planted_layers_separate_and_others_do_not(table):
    sil = _by_layer(table, "cluster", "silhouette")
    assert (sil[[3, 4]] > 0.3).all() and (sil.drop([3, 4]).abs() < 0.1).all()
    dist = _by_layer(table, "cluster", "centroid_distance")
    assert dist[[3, 4]].min() > 3 * dist.drop([3, 4]).max()
    for clf in ("extra_trees", "logistic"):
        acc = _by_layer(table, "persona_classifier", "accuracy", classifier=clf)
        assert (acc[[3, 4]] > 0.9).all(), clf
        assert (acc.drop([3, 4]) < 0.6).all(), clf
    acc = _by_layer(table, "direction_classifier", "accuracy")
    assert (acc[[3, 4]] > 0.9).all()


def test_shuffled_controls_stay_at_chance(table):
    sil = _by_layer(table, "cluster", "silhouette", control="shuffled_labels")
    assert sil.abs().max() < 0.05
    for analysis, chance in (("persona_classifier", 1 / 3), ("direction_classifier", 1 / 2)):
        acc = _by_layer(table, analysis, "accuracy", control="shuffled_labels")
        assert abs(acc.mean() - chance) < 0.08, analysis
        assert acc.max() < chance + 0.25, analysis


def test_most_divergent_layers_finds_planted(table):
    for metric in ("silhouette", "centroid_distance", "calinski_harabasz", "davies_bouldin", "accuracy"):
        top = most_divergent_layers(table, metric, k=2)
        assert set(top.layer) == {3, 4}, metric
        assert list(top["rank"]) == [1, 2]
    top = most_divergent_layers(table, "silhouette", k=3)
    assert list(top.columns) == ["model", "rank", "layer", "relative_depth", "metric", "score", "shuffled",
                                 "embedding", "in_final_third"]
    row = top.set_index("layer").loc[4]
    assert row.relative_depth == pytest.approx(0.8) and row.in_final_third
    assert not top.set_index("layer").loc[3].in_final_third  # 3/5 = 0.6 < 2/3
    assert abs(row.shuffled) < 0.05 and abs(row.embedding) < 0.1
    # Davies-Bouldin: lower is more separated, so the best layer has the smallest score
    db = most_divergent_layers(table, "davies_bouldin", k=6)
    assert db.score.is_monotonic_increasing
    assert 0 not in set(db.layer)  # the embedding layer is the control, not a candidate
    assert 0 in set(most_divergent_layers(table, "silhouette", k=6, include_embedding=True).layer)
    one = most_divergent_layers(table, "accuracy", k=1, analysis="direction_classifier", persona="persona_01")
    assert one.layer.item() in (3, 4)


def test_n_jobs_does_not_change_results(planted, monkeypatch):
    # seeds come from keys (persona, fold, repetition), never from the worker or the order of work;
    # threads stand in for the worker processes here (starting those costs seconds per test run)
    from joblib import parallel_config

    monkeypatch.setattr("personas._core.parallel.SMALL_WORK", 0)  # this small matrix still goes to workers
    acts, meta = planted
    sub = {layer: acts[layer] for layer in (0, 4)}
    kw = dict(model_name="toy", n_blocks=N_BLOCKS, progress=False)
    probes = ProbeSettings(n_folds=3, direction_classifiers=("extra_trees", "logistic"), n_trees=5)
    for fn, extra in ((cluster_separation, dict(protocol=LayerProtocol(n_reps=2, n_per_cluster=20))),
                      (direction_classification, dict(probes=probes)),
                      (persona_classification, dict(probes=probes))):  # a layer per worker
        one = fn(sub, meta, n_jobs=1, **kw, **extra)
        with parallel_config(backend="threading"):
            two = fn(sub, meta, n_jobs=2, **kw, **extra)
        pd.testing.assert_frame_equal(one, two)


def test_layer_zero_added_as_control_and_warned_when_missing(planted):
    acts, meta = planted
    protocol = LayerProtocol(n_reps=1, n_per_cluster=10)
    out = cluster_separation(acts, meta, model_name="toy", n_blocks=N_BLOCKS, layers=[4], protocol=protocol,
                             n_jobs=1, progress=False)
    assert sorted(out.layer.unique()) == [0, 4]
    with pytest.warns(UserWarning, match="layer 0"):
        cluster_separation({4: acts[4]}, meta, model_name="toy", n_blocks=N_BLOCKS, protocol=protocol,
                           n_jobs=1, progress=False)


# ----------------------------------------------------------------------------- tables


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_save_and_load_round_trip(table, tmp_path, suffix):
    path = save_results(table, tmp_path / f"layers{suffix}")
    back = load_results(path)
    pd.testing.assert_frame_equal(back, table.reset_index(drop=True), check_dtype=False)
    assert back.attrs["metadata"]["model"] == "toy"
    assert (tmp_path / "layers.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_save_results_rejects_bad_suffix_and_table(table, tmp_path):
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        save_results(table, tmp_path / "layers.xlsx")
    with pytest.raises(ValueError, match="lacks columns"):
        save_results(table.drop(columns=["metric"]), tmp_path / "layers.csv")
    assert list(tmp_path.iterdir()) == []


def test_combine_results_two_models(table):
    other = table.copy()
    other["model"] = "deeper"
    other["layer"] = other["layer"] * 2
    other["relative_depth"] = other["layer"] / 10
    both = combine_results([table, other])
    assert set(both.model) == {"toy", "deeper"} and len(both) == 2 * len(table)
    top = most_divergent_layers(both, "silhouette", k=1)
    assert dict(zip(top.model, top.layer)) in ({"toy": 3, "deeper": 6}, {"toy": 4, "deeper": 8},
                                               {"toy": 3, "deeper": 8}, {"toy": 4, "deeper": 6})
    with pytest.raises(ValueError, match="duplicated"):
        combine_results([table, table])


# ----------------------------------------------------------------------------- bad input


def test_resolve_layers_against_available_layers():
    assert resolve_layers([4, 1, 4], available={1: None, 4: None, 7: None}) == [1, 4]
    assert resolve_layers(None, available=[7, 1]) == [1, 7]
    assert resolve_layers([4], available=[0, 4], add_control=True) == [0, 4]
    with pytest.warns(UserWarning, match="layer 0"):
        assert resolve_layers([4], available=[1, 4], add_control=True) == [4]
    with pytest.raises(ValueError, match=r"layers \[5\] are not in the store; available layers: \[1, 4, 7\]"):
        resolve_layers([1, 5], available={1: None, 4: None, 7: None})
    with pytest.raises(ValueError, match="list of ints"):
        resolve_layers(["1"], available=[1])
    with pytest.raises(ValueError, match="list of ints"):
        resolve_layers([True], available=[1])


def test_resolve_layers_against_the_model():
    assert resolve_layers([3, 1], 4, add_control=True) == [0, 1, 3]  # the notebook's extraction rule
    assert resolve_layers("default", 4, add_control=True) == [0, 1, 3]
    with pytest.raises(ValueError, match="out of range"):
        resolve_layers([5], 4)
    with pytest.raises(ValueError, match="list of ints"):
        resolve_layers([2.0], 4)


def test_missing_layers_in_analysis(planted):
    acts, meta = planted
    with pytest.raises(ValueError, match=r"available layers: \[0, 1, 2, 3, 4, 5\]"):
        cluster_separation(acts, meta, model_name="toy", n_blocks=N_BLOCKS, layers=[2, 9], progress=False)


def test_one_class_only_is_an_error():
    X = np.random.default_rng(0).normal(size=(20, 5))
    with pytest.raises(ValueError, match="only one class"):
        cross_validate_classifier(X, np.repeat("agreeableness", 20), ProbeSettings(n_folds=2))
    with pytest.raises(ValueError, match="only one class"):
        direction_clusters(X, np.repeat("positive", 20), LayerProtocol(n_per_cluster=5))
    with pytest.raises(ValueError, match="only one class"):
        cluster_scores(X[:, :2], np.zeros(20))


def test_fewer_samples_than_folds_is_an_error(planted):
    X = np.random.default_rng(0).normal(size=(12, 5))
    y = np.array(["a"] * 9 + ["b"] * 3)
    with pytest.raises(ValueError, match=r"'b' has only 3 statements.*fewer than n_folds=4"):
        cross_validate_classifier(X, y, ProbeSettings(n_folds=4))
    acts, meta = planted
    with pytest.raises(ValueError, match="fewer than n_folds=40"):
        analyse_layers(acts, meta, model_name="toy", n_blocks=N_BLOCKS, **{**SMALL, "probes": ProbeSettings(n_folds=40)})


def test_other_bad_input(planted):
    acts, meta = planted
    kw = dict(model_name="toy", n_blocks=N_BLOCKS, **SMALL)
    with pytest.raises(ValueError, match="n_per_cluster=100"):
        analyse_layers(acts, meta, **{**kw, "protocol": LayerProtocol(n_per_cluster=100)})
    with pytest.raises(ValueError, match="meta has 10 rows"):
        analyse_layers(acts, meta.iloc[:10], **kw)
    with pytest.raises(ValueError, match="lacks columns"):
        analyse_layers(acts, meta.drop(columns=["direction"]), **kw)
    bad = meta.assign(direction=meta.direction.replace({"negative": "-"}))
    with pytest.raises(ValueError, match=r"'positive' or 'negative'; got \['-'\]"):
        analyse_layers(acts, bad, **kw)
    with pytest.raises(ValueError, match="outside"):
        analyse_layers(acts, meta, **{**kw, "n_blocks": 3})
    nan = {**acts, 2: np.where(np.eye(*acts[2].shape, dtype=bool), np.nan, acts[2])}
    with pytest.raises(ValueError, match="NaN"):
        analyse_layers(nan, meta, **kw)
    with pytest.raises(ValueError, match="unknown classifier"):
        ProbeSettings(classifiers=("svm",))
    with pytest.raises(ValueError, match="2-D"):
        pca_projections(np.zeros(5))
    with pytest.raises(ValueError, match="n_components=9"):
        pca_projections(np.ones((8, 3)), 9)
    with pytest.raises(ValueError, match="outside"):
        relative_depth(40, 32)
    with pytest.raises(ValueError, match="metric 'accuracy_x'"):
        most_divergent_layers(pd.DataFrame({c: [] for c in RESULT_COLUMNS}), "accuracy_x")


# ----------------------------------------------------------------------------- small helpers


def test_embed_2d_pca_and_bad_method():
    X = np.random.default_rng(0).normal(size=(30, 6))
    np.testing.assert_allclose(np.abs(embed_2d(X, "pca")), np.abs(PCA(2).fit_transform(X)), atol=1e-9)
    with pytest.raises(ValueError, match="'pca' or 'umap'"):
        embed_2d(X, "tsne")


def test_synthetic_activations_shape_and_meta():
    acts, meta = synthetic_activations(n_personas=2, n_per_direction=5, hidden_size=16, layers=[0, 2])
    assert sorted(acts) == [0, 2] and acts[2].shape == (20, 16) and acts[2].dtype == np.float32
    assert list(meta.columns) == ["id", "persona", "direction", "statement"]
    assert meta.groupby(["persona", "direction"]).size().eq(5).all()
    again, _ = synthetic_activations(n_personas=2, n_per_direction=5, hidden_size=16, layers=[0, 2])
    np.testing.assert_array_equal(acts[2], again[2])


def test_probe_iteration_cap_is_counted():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(40, 30))
    y = np.repeat([0, 1], 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # convergence warnings are counted, not raised
        out = cross_validate_classifier(X, y, ProbeSettings(n_folds=2, probe_max_iter=1, probe_components=None),
                                        classifiers=("logistic",))
    assert out.attrs["n_not_converged"] == 4  # 2 folds x (real + control)
