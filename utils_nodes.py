"""Node-side API for the notebooks: DeepScan run files -> salient node sets, frequencies, overlaps.

Re-exported from ``personas.nodes``; run files are read with ``deepscan.read_run_file``.
"""

from personas.nodes import *  # noqa: F401,F403
