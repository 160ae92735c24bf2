"""Parallel work: the heavy loops on Dask workers (joblib's Dask backend), and one BLAS thread.

- ``dask_scheduler``: route joblib's parallel loops to a Dask scheduler while inside.
- ``parallel_jobs``: the ``n_jobs`` to use with or without a scheduler.
- ``one_blas_thread``: small linear algebra with one BLAS/OpenMP thread.
- ``jobs_for``: ``n_jobs``, or 1 where a local worker pool would cost more to start than the work.

Every parallel loop of the project (DeepScan runs in ``deepscan.run_experiment`` and
``detection_power``, the per-persona tasks of the layer analyses) goes through
``joblib.Parallel`` with the *active* backend, so one code path serves a laptop
(joblib's default process pool) and a cluster::

    with dask_scheduler("tcp://scheduler:8786") as client:
        ul.analyse_layers(...)          # per-persona tasks on the workers
        un.run_persona_scans(...)       # DeepScan runs on the workers; the run file has one writer

Results do not depend on where they run: every run and task draws its randomness
from seeds fixed before dispatch. Workers need this project installed (the same
environment) and, for the notebooks, read access to the activation store.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = ["SMALL_WORK", "dask_scheduler", "parallel_jobs", "jobs_for", "one_blas_thread"]

#: Input numbers (rows x columns of the matrices a loop reads) below which a local worker pool costs more
#: than it shares: joblib's process pool starts a fresh interpreter per worker that imports numpy,
#: scikit-learn and pandas (3 to 5 s on 2 cores), and threads pay a dispatch per small fit. The quick
#: study's layer analyses (240 statements x 576 nodes) ran in 9.8 s serially against 14.6 s on the pool.
SMALL_WORK = 1_000_000


@contextlib.contextmanager
def dask_scheduler(scheduler: str | None = None, *, timeout: float = 30.0) -> Iterator[object | None]:
    """Route joblib's parallel loops to the Dask scheduler at ``scheduler`` while inside.

    Parameters
    ----------
    scheduler : str or None
        Address of a running ``dask.distributed`` scheduler (``"tcp://host:8786"``), or
        a ``distributed.LocalCluster``'s ``scheduler_address``. None: do nothing
        (joblib's default backend), so notebooks can write ``with dask_scheduler(scheduler):``
        unconditionally.
    timeout : float
        Seconds to wait for the scheduler.

    Yields
    ------
    distributed.Client or None
    """
    if scheduler is None:
        yield None
        return
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise ValueError(f"scheduler must be an address such as 'tcp://host:8786' or None; got {scheduler!r}")
    from distributed import Client  # a declared dependency, imported here only to keep `import personas` light
    from joblib import parallel_config

    try:
        client = Client(scheduler, timeout=timeout)
    except OSError as exc:
        raise ConnectionError(
            f"no Dask scheduler answered at {scheduler!r} within {timeout:.0f} s; start one with "
            "`dask scheduler` (and workers with `dask worker <address>`) or pass scheduler=None"
        ) from exc
    try:
        with parallel_config(backend="dask"):
            yield client
    finally:
        client.close()


def parallel_jobs(n_jobs: int | None, scheduler: str | None) -> int | None:
    """``n_jobs`` to use: every worker (-1) when a scheduler is given, else ``n_jobs`` as it is."""
    return -1 if scheduler is not None else n_jobs


def jobs_for(n_jobs: int | None, n_values: int) -> int | None:
    """``n_jobs`` for a loop over ``n_values`` input numbers: 1 when the loop is small (``SMALL_WORK``)
    and joblib's backend is a local one (its default process pool, threads); else ``n_jobs`` as it is.

    Results never change: every task draws its randomness from seeds fixed before dispatch. Inside
    :func:`dask_scheduler` the loop still goes to the workers, whatever its size.
    """
    if n_jobs == 1 or n_values >= SMALL_WORK:
        return n_jobs
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    local = type(backend).__name__ in ("LokyBackend", "MultiprocessingBackend", "ThreadingBackend",
                                       "SequentialBackend")
    return 1 if local else n_jobs


_BLAS_CONTROLLER = None


def one_blas_thread():
    """Context manager limiting BLAS/OpenMP to one thread, for small linear algebra.

    Many small BLAS calls (a few hundred rows, L-BFGS steps, small products) gain nothing from
    threads that wake up for each of them; parallelism comes from processes instead. The
    controller is built once, on first use: building one scans the loaded libraries.
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        import scipy.linalg  # noqa: F401  (load scipy's BLAS before looking for it)
        import sklearn.linear_model  # noqa: F401
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1)
