"""One convention for every plot: data first, options keyword-only, name= and out_dir=, no pyplot."""

from __future__ import annotations

import inspect

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import personas.viz as viz  # noqa: E402
from personas.nodes import pairwise_overlaps  # noqa: E402

PLOTS = list(viz.PLOTS)
# the data, and for metric-vs-layer plots the metric they plot
POSITIONAL = {"plot_metric_by_layer": 2, "plot_metric_by_relative_depth": 2, "plot_pca_grid": 2, "plot_scatter_2d": 2,
              "plot_specificity": 2,  # data first: the specificity matrix and its permutation test
              "plot_models_by_relative_depth": 2}  # the models' layer results and their untrained controls


def test_every_plot_is_registered():
    """A ``plot_*`` function in any viz module is an entry of the plot registry, and the facade shows it."""
    import importlib
    import pkgutil

    import utils_viz

    found = set()
    for info in pkgutil.iter_modules(viz.__path__):
        module = importlib.import_module(f"personas.viz.{info.name}")
        found |= {n for n, f in vars(module).items()
                  if n.startswith("plot_") and callable(f) and f.__module__ == module.__name__}
    assert found == set(viz.PLOTS)
    assert set(viz.PLOTS) <= set(utils_viz.__all__)


@pytest.mark.parametrize("name", PLOTS)
def test_signature(name):
    params = list(inspect.signature(getattr(viz, name)).parameters.values())
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert len(positional) == POSITIONAL.get(name, 1), (name, positional)
    keyword = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    assert {"out_dir", "name"} <= keyword, name
    assert "colour" not in " ".join(p.name for p in params)  # color, as matplotlib spells it
    assert inspect.signature(getattr(viz, name)).return_annotation in (Figure, "Figure"), name


def test_plots_return_figures_outside_pyplot_and_save_under_name(tmp_path):
    plt.close("all")
    sets = {"a": {1, 2, 3}, "b": {2, 3, 4}, "c": {9}}
    summary = pd.DataFrame({
        "persona": ["a", "a"], "level": [2, 2], "method": ["deepscan", "lof"], "precision_mean": [0.9, 0.5],
        "precision_std": [0.1, 0.2], "recall_mean": [0.8, 0.4], "recall_std": [0.1, 0.1],
    })
    freq = pd.DataFrame({"persona": ["a"] * 4, "node": range(4), "frequency": [0.0, 0.5, 1.0, 0.25]})
    figures = {
        "u": viz.plot_upset(sets, out_dir=tmp_path, name="u"),
        "v": viz.plot_venn(sets, out_dir=tmp_path, name="v"),
        "h": viz.plot_overlap_heatmap(pairwise_overlaps(sets, 10), out_dir=tmp_path, name="h"),
        "f": viz.plot_node_frequency(freq, out_dir=tmp_path, name="f"),
        "p": viz.plot_precision_recall(summary, out_dir=tmp_path, name="p"),
    }
    assert plt.get_fignums() == []  # nothing left in pyplot's registry
    assert all(isinstance(f, Figure) for f in figures.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{k}.png" for k in figures)


def test_one_palette():
    colors = viz.persona_colors(["negative", "positive"])
    assert colors["positive"] == matplotlib.colors.to_rgba("tab:blue")  # fixed, whatever the order
    assert colors["negative"] == matplotlib.colors.to_rgba("tab:orange")
    many = viz.persona_colors([f"p{i}" for i in range(25)])
    assert len(set(many.values())) == 25
    assert viz.persona_colors(["x", "y"])["y"] == matplotlib.colormaps["tab10"](1)
    assert np.allclose(viz.persona_colors(["x"], "viridis")["x"], matplotlib.colormaps["viridis"](0.0))


def test_a_saved_figure_is_displayed_from_its_saved_bytes_until_it_changes(tmp_path):
    """A notebook draws a saved figure once: IPython shows the PNG ``save_figure`` wrote (at the size a fresh
    rendering would have); once the figure changes, it is drawn anew."""
    from IPython.core.interactiveshell import InteractiveShell

    from personas.viz.style import register_notebook_display

    shell = InteractiveShell.instance()
    assert register_notebook_display()
    fig = Figure(figsize=(4, 3), layout="constrained")
    ax = fig.subplots()
    ax.plot([1, 2, 3])
    target = tmp_path / "line.png"
    viz.style.finish_figure(fig, tmp_path, "line")
    data, meta = shell.display_formatter.format(fig)
    assert data["image/png"] == target.read_bytes()
    width, height = (int.from_bytes(target.read_bytes()[k:k + 4], "big") for k in (16, 20))
    assert meta["image/png"] == {"width": round(width * fig.dpi / 120), "height": round(height * fig.dpi / 120)}
    ax.set_title("changed after the save")
    data, meta = shell.display_formatter.format(fig)
    assert data["image/png"] != target.read_bytes() and "image/png" not in meta
