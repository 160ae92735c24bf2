"""Every plot of the project, for the notebooks.

Re-exported from ``personas.viz_layers`` (PCA grids, metric-vs-layer curves,
classifier heatmaps, UMAP) and ``personas.viz_nodes`` (UpSet, Venn, overlap
heatmaps, node frequencies) and ``personas.viz_scan`` (precision and recall of
DeepScan against the baselines). Every function returns its figure and, given a
directory, saves it there atomically.
"""

from personas.viz_layers import *  # noqa: F401,F403
from personas.viz_nodes import *  # noqa: F401,F403
from personas.viz_scan import *  # noqa: F401,F403
