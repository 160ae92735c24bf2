"""Deprecated: moved to :mod:`personas.viz.nodes` (notebooks: ``utils_viz``)."""

from personas.viz.nodes import plot_node_frequency, plot_overlap_heatmap, plot_upset, plot_venn  # noqa: F401
from personas.viz.style import persona_colors  # noqa: F401

__all__ = ["persona_colors", "plot_upset", "plot_venn", "plot_overlap_heatmap", "plot_node_frequency"]
