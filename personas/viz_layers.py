"""Deprecated: moved to :mod:`personas.viz.layers` (notebooks: ``utils_viz``)."""

from personas.viz.layers import (  # noqa: F401
    __all__,
    plot_classifier_heatmap,
    plot_metric_by_layer,
    plot_metric_by_relative_depth,
    plot_pca_grid,
    plot_scatter_2d,
)
