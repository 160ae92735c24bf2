"""Layer plots: every function renders, is titled and labelled, draws its controls and writes a PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from personas._core.names import file_stem
from personas.layers import LayerProtocol, ProbeSettings, analyse_layers, combine_results, embed_2d, synthetic_activations
from personas.viz.layers import (
    plot_classifier_heatmap,
    plot_metric_by_layer,
    plot_metric_by_relative_depth,
    plot_pca_grid,
    plot_scatter_2d,
)

PLANTED = {2: 1.5, 3: 1.5}


@pytest.fixture(scope="module")
def data():
    return synthetic_activations(n_personas=3, n_per_direction=20, hidden_size=24, layers=range(4),
                                 persona_signal=PLANTED, direction_signal=PLANTED, seed=3)


@pytest.fixture(scope="module")
def table(data):
    acts, meta = data
    return analyse_layers(acts, meta, model_name="toy/model v1", n_blocks=3,
                          protocol=LayerProtocol(n_reps=2, n_per_cluster=10), probes=ProbeSettings(n_folds=3, n_trees=5),
                          n_jobs=1, progress=False)


def _png(path):
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def _no_temporaries(directory):
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]


def _labelled(ax):
    assert ax.get_xlabel() and ax.get_ylabel()


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_pca_grid(data, tmp_path):
    acts, meta = data
    fig = plot_pca_grid(acts, meta, persona="persona_01", layers=[0, 2], model_name="toy", out_dir=tmp_path)
    assert isinstance(fig, Figure)
    axes = np.array(fig.axes).reshape(2, 4)
    assert fig._suptitle.get_text() == "PCA of + and - statements: persona_01 (toy)"
    assert axes[1, 3].get_ylabel() == "PC3" and axes[1, 3].get_xlabel() == "PC0"
    assert axes[1, 2].get_title() == "layer 2: PC0 vs PC2"
    for ax in axes.ravel():
        _labelled(ax)
    # 20 + and 20 - points per scatter panel, coloured by direction
    assert sorted(len(c.get_offsets()) for c in axes[0, 1].collections) == [20, 20]
    assert set(_legend_texts(axes[0, -1])) == {"positive", "negative"}
    _png(tmp_path / "pca_grid_toy_persona_01.png")
    _no_temporaries(tmp_path)
    with pytest.raises(ValueError, match="several personas; pass persona="):
        plot_pca_grid(acts, meta)
    with pytest.raises(ValueError, match="available layers"):
        plot_pca_grid(acts, meta, persona="persona_01", layers=[7])


def test_metric_by_layer_draws_controls_and_log_distance(table, tmp_path):
    fig = plot_metric_by_layer(table, "centroid_distance", out_dir=tmp_path)
    ax = fig.axes[0]
    _labelled(ax)
    assert ax.get_yscale() == "log"
    assert "centroid distance by layer" in ax.get_title()
    texts = _legend_texts(ax)
    assert {"persona_00", "persona_01", "persona_02"} <= set(texts)
    assert "shuffled labels (control)" in texts and "embedding layer 0 (control)" in texts
    # persona lines cover layers 1..3 (layer 0 is the control line)
    line = next(li for li in ax.get_lines() if li.get_label() == "persona_00")
    assert list(line.get_xdata()) == [1, 2, 3]
    want = table[(table.metric == "centroid_distance") & (table.persona == "persona_00") & (table.control == "none")
                 & (table.layer > 0)].sort_values("layer")["mean"]
    np.testing.assert_allclose(line.get_ydata(), want)
    _png(tmp_path / f"{file_stem('metric_by_layer_toy/model v1_cluster_centroid_distance')}.png")  # hashed: not safe
    fig = plot_metric_by_layer(table, "accuracy", analysis="persona_classifier", classifier="logistic",
                               out_dir=tmp_path)
    assert fig.axes[0].get_yscale() == "linear"
    _png(tmp_path / f"{file_stem('metric_by_layer_toy/model v1_persona_classifier_logistic_accuracy')}.png")
    fig = plot_metric_by_layer(table, "davies_bouldin")
    assert "lower = more separated" in fig.axes[0].get_ylabel()
    _no_temporaries(tmp_path)


def test_metric_by_relative_depth_several_models(table, tmp_path):
    deeper = table.copy()
    deeper["model"] = "deeper"
    deeper["layer"] *= 2
    both = combine_results([table, deeper.assign(relative_depth=deeper.layer / 6)])
    fig = plot_metric_by_relative_depth(both, "silhouette", out_dir=tmp_path)
    ax = fig.axes[0]
    _labelled(ax)
    texts = _legend_texts(ax)
    assert {"toy/model v1", "deeper", "final third", "deeper, shuffled labels"} <= set(texts)
    span = next(p for p in ax.patches if p.get_label() == "final third")
    assert span.get_x() == pytest.approx(2 / 3)
    _png(tmp_path / "metric_by_relative_depth_cluster_silhouette.png")
    with pytest.raises(ValueError, match="several models"):
        plot_metric_by_layer(both, "silhouette")
    plot_metric_by_layer(both, "silhouette", model_name="deeper")  # picking one works


def test_classifier_heatmap_with_control(table, tmp_path):
    fig = plot_classifier_heatmap(table, out_dir=tmp_path)
    real, shuffled = fig.axes[:2]
    assert real.get_title() == "real labels" and shuffled.get_title() == "shuffled labels (control)"
    _labelled(real)
    assert [t.get_text() for t in real.get_xticklabels()] == ["0", "1", "2", "3"]
    data = real.get_images()[0].get_array()
    want = table[(table.analysis == "persona_classifier") & (table.classifier == "extra_trees")
                 & (table.control == "none") & (table.metric == "accuracy")].sort_values("layer")["mean"]
    np.testing.assert_allclose(data[0], want)
    assert "persona classifier (extra_trees)" in fig._suptitle.get_text()
    _png(tmp_path / f"{file_stem('classifier_heatmap_toy/model v1_persona_classifier_extra_trees')}.png")
    fig = plot_classifier_heatmap(table, analysis="direction_classifier", persona="persona_02", out_dir=tmp_path)
    assert "persona_02" in fig._suptitle.get_text()
    _png(tmp_path / f"{file_stem('classifier_heatmap_toy/model v1_direction_classifier_logistic')}.png")
    with pytest.raises(ValueError, match="metric 'auc'"):
        plot_classifier_heatmap(table, metrics=("auc",))


def test_scatter_pca_many_personas_generic_names(tmp_path):
    # 23 personas with arbitrary names: distinct colours, nothing hard-coded
    acts, meta = synthetic_activations(n_personas=23, n_per_direction=3, hidden_size=12, layers=[1],
                                       persona_signal=1.0)
    names = {f"persona_{i:02d}": f"trait {i} / ü" for i in range(23)}
    meta = meta.assign(persona=meta.persona.map(names))
    fig = plot_scatter_2d(acts[1], meta, color_by="persona", layer=1, model_name="m", out_dir=tmp_path)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "PC0" and ax.get_ylabel() == "PC1"
    colours = {tuple(c.get_facecolor()[0]) for c in ax.collections}
    assert len(ax.collections) == 23 and len(colours) == 23
    _png(tmp_path / "scatter_pca_m_layer1_persona.png")
    fig = plot_scatter_2d(acts[1], meta.direction.to_numpy(), color_by="direction")
    assert set(_legend_texts(fig.axes[0])) == {"positive", "negative"}
    with pytest.raises(ValueError, match="aligned"):
        plot_scatter_2d(acts[1], meta.direction.to_numpy()[:5])


def test_scatter_umap_seeded(tmp_path):
    # UMAP once, on small data (its import and compilation are the slow part)
    acts, meta = synthetic_activations(n_personas=2, n_per_direction=15, hidden_size=10, layers=[1],
                                       persona_signal=2.0)
    a = embed_2d(acts[1], "umap", seed=5, n_neighbors=8)
    b = embed_2d(acts[1], "umap", seed=5, n_neighbors=8)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (60, 2)
    fig = plot_scatter_2d(acts[1], meta, embedding="umap", color_by="direction", layer=1, seed=5, n_neighbors=8,
                          out_dir=tmp_path)
    assert fig.axes[0].get_xlabel() == "UMAP 1" and "UMAP of statements by direction" in fig.axes[0].get_title()
    _png(tmp_path / "scatter_umap_layer1_direction.png")


def test_bad_table():
    with pytest.raises(ValueError, match="lacks columns"):
        plot_metric_by_layer(pd.DataFrame({"metric": ["silhouette"]}))
    with pytest.raises(ValueError, match="results DataFrame"):
        plot_metric_by_relative_depth([1, 2])
