"""Deprecated: moved to :mod:`personas.viz.scan` (notebooks: ``utils_viz``)."""

from personas.viz.scan import __all__, plot_precision_recall  # noqa: F401
