"""Warm kernels: every notebook of a study runs in a fresh kernel, started while the notebook before it runs.

A kernel's start and the first cell's imports (torch, transformers, scikit-learn, matplotlib: 5 to 10 s
on 2 cores) would otherwise sit between every two notebooks, six times in a quick study with its
replicate. ``KernelPool.take`` hands out a kernel that was started earlier and starts the next one
at once; the new kernel imports the project's facades and transformers' model code at start-up
(``IPKernelApp.exec_lines``, in a namespace of its own: nothing is defined in the notebook's), on the
core the running notebook leaves idle. Each notebook still gets a kernel of its own, never used
before: only modules are imported ahead of time, as its first cell would import them. Where this
process may restore priorities (root, or ``RLIMIT_NICE``), a spare kernel runs at niceness 19 until it
is taken, so its imports take no time from the running notebook. A released kernel exits (about a
second) while the next notebook runs; the pool waits for it later.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["WARM_MODULES", "MODEL_MODULES", "KernelPool"]

#: What a kernel imports at start-up by default: the facades the notebooks import.
WARM_MODULES = ("utils_layers", "utils_nodes", "utils_viz")
#: What a notebook that loads a model also imports: transformers' model, tokenizer and generation code
#: (6 to 7 s of the first ``load_model`` otherwise).
MODEL_MODULES = ("transformers.modeling_utils", "transformers.tokenization_utils_tokenizers",
                 "transformers.generation.utils", "gguf")
KERNEL_NAME = "python3"
SPARE_NICE = 19  # a spare kernel imports only on a core the running notebook leaves idle
READY_TIMEOUT_S = 300  # a kernel importing torch and transformers on two busy cores


def _warm_line(modules) -> str:
    """One line for ``IPKernelApp.exec_lines``: import ``modules`` in a namespace of its own (a failed
    import is left to the notebook's own cell to report)."""
    body = "\n".join(["import importlib", f"for _m in {tuple(modules)!r}:", "    try:",
                      "        importlib.import_module(_m)", "    except Exception:", "        pass"])
    return f"exec({body!r}, {{}})"


class KernelPool:
    """Kernels for a study's notebooks: ``take`` one (started earlier when it could be), ``release`` it after.

        with KernelPool(repo_root, ["--IPKernelApp.log_level=ERROR"]) as pool:
            km = pool.take(WARM_MODULES + MODEL_MODULES, after=WARM_MODULES)  # the next kernel starts now
            papermill.execute_notebook(..., km=km)
            pool.release(km)               # asked to shut down; it exits while the next notebook runs

    State is real here (the spare kernel, the kernels shutting down), hence a class. Leaving the
    ``with`` shuts the spare down and waits for every kernel it released.
    """

    def __init__(self, cwd: str | Path, arguments: list[str]):
        self.cwd, self.arguments = str(cwd), list(arguments)
        self._spare = None
        self._closing: list = []  # kernels asked to shut down that the pool has not waited for yet

    @property
    def spare(self):
        """The kernel manager started for the next notebook, or None."""
        return self._spare

    def _start(self, modules, spare: bool = False):
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        km = AsyncKernelManager(kernel_name=KERNEL_NAME)
        warm = [f"--IPKernelApp.exec_lines={_warm_line(modules)}"] if modules else []
        run_sync(km.start_kernel)(cwd=self.cwd, extra_arguments=self.arguments + warm)
        if spare and _can_restore_priority():  # imports on the core the running notebook leaves idle
            _set_nice(km, SPARE_NICE)
        return km

    def take(self, modules=WARM_MODULES, after=None):
        """A started kernel's manager for the next notebook (importing ``modules`` when it has to be
        started now); ``after``: the modules of the notebook after it, whose kernel starts once this
        one is ready (None: no notebook follows)."""
        km, self._spare = self._spare, None
        if km is not None and not _alive(km):  # a spare that died while waiting
            self.release(km)
            km = None
        if km is not None and _can_restore_priority():
            _set_nice(km, os.getpriority(os.PRIO_PROCESS, 0))  # the notebook runs at the study's priority
        if km is None:
            km = self._start(modules)
            if after is not None:  # one kernel importing at a time: the notebook waits for this one anyway
                _wait_ready(km)
        if after is not None:
            self._spare = self._start(after, spare=True)
        return km

    def release(self, km) -> None:
        """Ask ``km``'s kernel to shut down (a notebook that finished or failed with it), without waiting
        the second or so its process takes to exit: it exits while the next notebook runs. The pool waits
        for it (and, past ``shutdown_wait_time``, terminates it) at the next ``release`` or on closing."""
        from jupyter_core.utils import run_sync

        self._finish_closing()
        try:
            if _alive(km):
                run_sync(km.request_shutdown)()
        except Exception as exc:  # a kernel that died on its own: nothing left to ask
            logging.getLogger(__name__).debug("kernel shutdown request: %s", exc)
        self._closing.append(km)

    def _finish_closing(self) -> None:
        closing, self._closing = self._closing, []
        for km in closing:
            _finish_shutdown(km)

    def close(self) -> None:
        if self._spare is not None:
            spare, self._spare = self._spare, None
            self.release(spare)
        self._finish_closing()

    def __enter__(self) -> "KernelPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _can_restore_priority() -> bool:
    """Whether this process may give a kernel it lowered back its own priority (root, or ``RLIMIT_NICE``)."""
    if not hasattr(os, "setpriority"):
        return False
    import resource

    own = os.getpriority(os.PRIO_PROCESS, 0)
    return os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_NICE)[0] >= 20 - own


def _set_nice(km, nice: int) -> None:
    """Give every thread of ``km``'s kernel the niceness ``nice`` (Linux keeps one per thread); best effort."""
    pid = getattr(getattr(km, "provisioner", None), "pid", None)
    if pid is None:
        return
    tasks = Path(f"/proc/{pid}/task")
    ids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid]
    for tid in ids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:  # a thread that ended, or no permission: it keeps its priority
            pass


def _wait_ready(km) -> None:
    """Block until ``km``'s kernel answers (its start-up imports done)."""
    from jupyter_core.utils import run_sync

    kc = km.client()
    kc.start_channels()
    try:
        run_sync(kc.wait_for_ready)(timeout=READY_TIMEOUT_S)
    finally:
        kc.stop_channels()


def _finish_shutdown(km) -> None:
    """Wait for a kernel asked to shut down to exit (terminated, then killed, past its wait time); free
    its connection files and sockets."""
    from jupyter_core.utils import run_sync

    try:
        if _alive(km):
            run_sync(km.finish_shutdown)()
    except Exception as exc:  # a kernel that died on its own: nothing left to stop
        logging.getLogger(__name__).debug("kernel shutdown: %s", exc)
    finally:
        try:
            run_sync(km.cleanup_resources)()
        except Exception:
            pass


def _alive(km) -> bool:
    from jupyter_core.utils import run_sync

    try:
        return bool(run_sync(km.is_alive)())
    except Exception:
        return False
