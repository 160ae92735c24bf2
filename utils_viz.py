"""Every plot of the project, for the notebooks.

The notebook API is exactly the names below (``__all__``), defined in ``personas.viz``:
PCA grids, metric-vs-layer curves, classifier heatmaps and 2-D views of statements
(``personas.viz.layers``); UpSet, Venn, overlap heatmaps and node frequencies
(``personas.viz.nodes``); precision and recall of DeepScan against the baselines
(``personas.viz.scan``); the causal check's dose-response, specificity and ablation plots
(``personas.viz.causal``); a text's tokens coloured by their score on a persona direction
(``personas.viz.tokens``). One convention for all: the data first, every option keyword-only;
each ``plot_*`` function returns a ``matplotlib.figure.Figure`` built without pyplot (show it
with ``display(fig)``), and, given ``out_dir``, saves it there atomically as ``<name>.png``;
``token_heatmap_html`` returns HTML that Jupyter renders. Everything else (``save_figure``, ...) stays
importable from ``personas.viz`` and ``personas._core.io``.
"""

from personas.viz import (
    causal_figures,
    persona_colors,
    plot_ablation_null,
    plot_classifier_heatmap,
    plot_dose_response,
    plot_metric_by_layer,
    plot_metric_by_relative_depth,
    plot_models_by_relative_depth,
    plot_node_frequency,
    plot_overlap_heatmap,
    plot_pca_grid,
    plot_precision_recall,
    plot_scatter_2d,
    plot_specificity,
    plot_token_scores,
    plot_upset,
    plot_venn,
    token_heatmap_html,
)

__all__ = [
    "persona_colors",
    # layers
    "plot_pca_grid", "plot_metric_by_layer", "plot_metric_by_relative_depth", "plot_classifier_heatmap",
    "plot_scatter_2d", "plot_models_by_relative_depth",
    # nodes
    "plot_upset", "plot_venn", "plot_overlap_heatmap", "plot_node_frequency",
    # scan
    "plot_precision_recall",
    # causal check
    "plot_dose_response", "plot_ablation_null", "plot_specificity", "causal_figures",
    # scores of texts on a direction, token by token
    "plot_token_scores", "token_heatmap_html",
]
