"""Every plot of the project, one module per kind of result.

- ``layers``: PCA grids, metric-by-layer curves with controls, classifier heatmaps, 2-D views.
- ``nodes``: UpSet, Venn, overlap heatmaps and node frequencies of salient node sets.
- ``scan``: precision and recall of DeepScan against the baselines.
- ``causal``: the causal check's dose response, specificity heat map and salient-ablation null.
- ``tokens``: a text's tokens coloured by their score on a direction (HTML for notebooks, a figure).
- ``style``: the one palette (``persona_colors``), figure file names and the figure saver.

One convention for all: the data first (and, for metric plots, the metric), every option
keyword-only; each function builds a ``matplotlib.figure.Figure`` without pyplot and returns it,
and, given ``out_dir``, saves it there atomically as ``<name>.png`` (``name=`` overrides the
descriptive default stem).
"""

from personas.viz.causal import causal_figures, plot_ablation_null, plot_dose_response, plot_specificity
from personas.viz.layers import (
    plot_classifier_heatmap,
    plot_metric_by_layer,
    plot_metric_by_relative_depth,
    plot_pca_grid,
    plot_scatter_2d,
)
from personas.viz.models import plot_models_by_relative_depth
from personas.viz.nodes import plot_node_frequency, plot_overlap_heatmap, plot_upset, plot_venn
from personas.viz.scan import plot_precision_recall
from personas.viz.style import persona_colors, register_notebook_display
from personas.viz.tokens import plot_token_scores, token_heatmap_html

register_notebook_display()  # pyplot-free figures render as images in Jupyter

#: Every plot, by name: the plot registry. A new plot is a function in the module of its stage,
#: written to the convention above, plus one entry here (``docs/extending.md``);
#: tests/test_viz_convention.py holds every entry to the convention.
PLOTS = {f.__name__: f for f in (
    plot_pca_grid, plot_metric_by_layer, plot_metric_by_relative_depth, plot_classifier_heatmap, plot_scatter_2d,
    plot_models_by_relative_depth,
    plot_upset, plot_venn, plot_overlap_heatmap, plot_node_frequency,
    plot_precision_recall,
    plot_dose_response, plot_ablation_null, plot_specificity,
    plot_token_scores,
)}

__all__ = ["persona_colors", "PLOTS", *PLOTS, "token_heatmap_html", "causal_figures"]
