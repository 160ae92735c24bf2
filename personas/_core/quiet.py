"""Third-party warnings that carry nothing for the study's user, filtered while the study runs.

By category and module, never globally: inside ``warnings.catch_warnings()`` for the study's own
process, and through ``PYTHONWARNINGS`` (restored afterwards) for its child processes, the
notebook kernels and their workers.
"""

from __future__ import annotations

import contextlib
import os
import warnings

__all__ = ["NOISE", "CHILD_NOISE", "quiet_third_parties"]

# Third-party warnings that carry nothing for the user of the study: (category, module regex).
NOISE = (
    (DeprecationWarning, r"(jupyter_client|jupyter_core|nbclient|nbformat|papermill|traitlets|zmq)(\.|$)"),
    (PendingDeprecationWarning, r"(jupyter_client|nbclient|papermill|zmq)(\.|$)"),
    (RuntimeWarning, r"(jupyter_client|nbclient|zmq)(\.|$)"),  # e.g. "coroutine was never awaited" at shutdown
)
# The same for the study's child processes (kernels and their workers), through their environment: loky's
# resource tracker warns of "leaked" semaphores when a kernel that used joblib workers is shut down.
CHILD_NOISE = ("ignore::UserWarning:joblib.externals.loky.backend.resource_tracker",)


@contextlib.contextmanager
def quiet_third_parties():
    """``NOISE`` ignored in this process and ``CHILD_NOISE`` in its children, while the block runs."""
    before = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [before, *CHILD_NOISE]))
    try:
        with warnings.catch_warnings():
            for category, module in NOISE:
                warnings.filterwarnings("ignore", category=category, module=module)
            yield
    finally:
        if before is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = before
