"""Plots (being split out of ``personas.viz_*``)."""
from personas.viz_layers import *  # noqa: F401,F403
from personas.viz_nodes import *  # noqa: F401,F403
from personas.viz_scan import *  # noqa: F401,F403
