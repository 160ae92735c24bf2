"""personas: where language models encode personas, and which activations carry them.

The implementation lives in small single-purpose modules here; the notebooks use
the three facades at the top of the repository (``utils_layers``, ``utils_nodes``,
``utils_viz``), which re-export the public functions of these modules.
"""

__version__ = "0.1.0"
