"""The study's kernels: each notebook gets a fresh kernel that was started, and did its imports, while the
notebook before it ran (personas/study/kernels.py)."""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_client.blocking import BlockingKernelClient
from jupyter_core.utils import run_sync

from personas.study.kernels import KernelPool, _can_restore_priority

ROOT = Path(__file__).resolve().parent.parent


def _run(km, code: str) -> str:
    """Execute ``code`` in ``km``'s kernel; its standard output."""
    kc = BlockingKernelClient()
    kc.load_connection_info(km.get_connection_info())
    kc.start_channels()
    out = []
    try:
        kc.wait_for_ready(timeout=120)
        kc.execute_interactive(code, timeout=120, output_hook=lambda msg: out.append(msg["content"].get("text", "")))
    finally:
        kc.stop_channels()
    return "".join(out)


def _nice(km) -> set[int]:
    pid = km.provisioner.pid
    return {os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir(f"/proc/{pid}/task")}


def test_a_taken_kernel_was_started_early_imported_its_modules_and_left_the_namespace_clean():
    probe = ("import sys; print(sorted(m for m in ('colorsys', 'wave') if m in sys.modules), '_m' in dir(), "
             "'importlib' in dir())")
    with KernelPool(ROOT, ["--IPKernelApp.log_level=ERROR"]) as pool:
        first = pool.take(("colorsys",), after=("wave",))  # started now; the next one starts once it is ready
        spare = pool.spare
        assert spare is not None and spare is not first
        if _can_restore_priority():
            assert _nice(spare) == {19}  # it imports on the core the running notebook leaves idle
        assert _run(first, probe).split() == ["['colorsys']", "False", "False"]
        second = pool.take(("colorsys",), after=None)  # the spare, with the study's priority back
        assert second is spare and pool.spare is None
        if _can_restore_priority():
            assert _nice(second) == {os.getpriority(os.PRIO_PROCESS, 0)}
        assert _run(second, probe).split() == ["['wave']", "False", "False"]  # a fresh kernel, its own imports
        pool.release(first)  # asked to shut down; the next release waits for it
        pool.release(second)
        assert not run_sync(first.is_alive)()
    assert not run_sync(second.is_alive)()  # the pool waited for it on closing


def test_leaving_the_pool_shuts_its_spare_down():
    with KernelPool(ROOT, ["--IPKernelApp.log_level=ERROR"]) as pool:
        km = pool.take((), after=())
        spare = pool.spare
        pool.release(km)
    assert pool.spare is None and not run_sync(spare.is_alive)()
