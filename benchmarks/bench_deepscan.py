"""DeepScan speed, measured side by side against a plain reference implementation.

Run: ``python benchmarks/bench_deepscan.py [--quick]`` from a checkout.

The reference (``benchmarks/reference_deepscan.py``) follows the published procedure
step by step (loops over nodes and elements, one sort per element, the elements x
thresholds gather). For every task, dtype (float64, float32) and mode (default, the
``ibm-2025`` preset) this script

1. runs the reference and ``deepscan`` alternately on the same inputs (best of
   ``--ref-repeat`` and of ``--repeat`` runs: on a shared machine a slow spell then
   hits both sides, and the best run is the fair figure for each),
2. checks that ``deepscan`` gives the same result: p-values bit for bit, scans with
   equal sets, and score and alpha compared with ``==``,
3. prints both times, the ratio and the cost per node and per record.

A second table shows how ``deepscan``'s group scan grows with the number of nodes and
of records (linear growth = flat cost per node / per record). Nothing is copied from
elsewhere: every number is measured in this run. Data are synthetic Gaussian
activations with a planted shift on some records x nodes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout
sys.path.insert(0, str(HERE))

import deepscan as ds  # noqa: E402
import reference_deepscan as ref  # noqa: E402

PRESET = "ibm-2025"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best_of(fn, repeat: int) -> float:
    return min(timed(fn)[0] for _ in range(repeat))


def side_by_side(ref_fn, ds_fn, ref_repeat: int, repeat: int):
    """Best times of both sides and their first outputs: ``(t_ref, out_ref, t_ds, out_ds)``.

    The reference runs are spread among deepscan's, so that a slow spell of a shared
    machine falls on both sides alike.
    """
    t_ref = t_ds = np.inf
    out_ref = out_ds = None
    every = max(1, repeat // max(1, ref_repeat))
    n_ref = 0
    for i in range(max(repeat, ref_repeat * every)):
        if i % every == 0 and n_ref < ref_repeat:
            t, out = timed(ref_fn)
            t_ref, n_ref = min(t_ref, t), n_ref + 1
            out_ref = out if out_ref is None else out_ref
        if i < repeat:
            t, out = timed(ds_fn)
            t_ds = min(t_ds, t)
            out_ds = out if out_ds is None else out_ds
    return t_ref, out_ref, t_ds, out_ds


def activations(rng, n, m, shift_rows=0, shift_nodes=0, shift=1.0, dtype=np.float64):
    x = rng.standard_normal((n, m))
    x[:shift_rows, :shift_nodes] += shift
    return x.astype(dtype)


def same_scan(a, res) -> bool:
    """Reference tuple (score, alpha, records, nodes) vs a ScanResult: equal values and sets."""
    score, alpha, records, nodes = a
    alpha_eq = alpha == res.alpha or (np.isnan(alpha) and np.isnan(res.alpha))
    return (score == res.score and alpha_eq and np.array_equal(records, res.records)
            and np.array_equal(nodes, res.nodes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 32768-node tasks and the scaling table")
    parser.add_argument("--repeat", type=int, default=8, help="runs of deepscan per task (best is kept)")
    parser.add_argument("--ref-repeat", type=int, default=2, help="runs of the reference per task (best is kept)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    load = os.getloadavg()
    print(f"deepscan {ds.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"reference: best of {args.ref_repeat} per task; deepscan: best of {args.repeat}\n")

    widths = [4096] if args.quick else [4096, 32768]
    raw = {}
    for m in widths:
        raw[m] = (activations(rng, 250, m), activations(rng, 300, m, 150, m // 20))
    # warm both sides up on full-size inputs (imports, first large allocations, threads) before timing
    for preset in (None, PRESET):
        ref.pvalue_ranges(*raw[4096], preset=preset)
        ds.group_scan(ds.pvalue_ranges(*raw[4096], preset=preset), ds.ScanConfig(preset=preset, restarts=3))

    header = (f"{'task':38s} {'dtype':7s} {'mode':8s} {'reference':>10s} {'deepscan':>10s} {'ratio':>7s} "
              f"{'ref us/node':>11s} {'ds us/node':>10s} {'ds us/rec':>9s}  same")
    print(header)
    print("-" * len(header))
    worst = np.inf
    for dtype in (np.float64, np.float32):
        for preset in (None, PRESET):
            mode = preset or "default"
            pv = {}
            for m in widths:
                bg, recs = (a.astype(dtype) for a in raw[m])
                if preset:
                    recs = -recs  # the preset looks for small activations
                t_ref, p_ref, t_ds, p_ds = side_by_side(lambda: ref.pvalue_ranges(bg, recs, preset=preset),
                                                        lambda: ds.pvalue_ranges(bg, recs, preset=preset),
                                                        args.ref_repeat, args.repeat)
                ok = np.array_equal(p_ref, p_ds)
                pv[m] = p_ds
                worst = min(worst, t_ref / t_ds) if ok else -1
                print(f"{f'p-values 300x{m} vs 250':38s} {np.dtype(dtype).name:7s} {mode:8s} {t_ref * 1e3:8.1f}ms "
                      f"{t_ds * 1e3:8.2f}ms {t_ref / t_ds:6.1f}x {t_ref / m * 1e6:11.2f} {t_ds / m * 1e6:10.3f} "
                      f"{t_ds / 300 * 1e6:9.1f}  {ok}")
            tasks = [("group scan 50x4096, 1 restart", 4096, 50, 1), ("group scan 300x4096, 10 restarts", 4096, 300, 10)]
            if 32768 in pv:
                tasks.insert(1, ("group scan 50x32768, 1 restart", 32768, 50, 1))
            for name, m, g, restarts in tasks:
                p = pv[m] if g == 300 else np.concatenate([pv[m][:25], pv[m][150:175]])  # 25 shifted + 25 plain
                cfg = ds.ScanConfig(preset=preset, restarts=restarts)
                t_ref, r, t_ds, res = side_by_side(
                    lambda: ref.group_scan(p, cfg.score, preset=preset, thresholds_mode=cfg.thresholds,
                                           a_max=cfg.a_max, restarts=restarts, seed=0),
                    lambda: ds.group_scan(p, cfg, seed=0), args.ref_repeat, args.repeat)
                ok = same_scan(r, res)
                worst = min(worst, t_ref / t_ds) if ok else -1
                print(f"{name:38s} {np.dtype(dtype).name:7s} {mode:8s} {t_ref * 1e3:8.1f}ms {t_ds * 1e3:8.2f}ms "
                      f"{t_ref / t_ds:6.1f}x {t_ref / m * 1e6:11.2f} {t_ds / m * 1e6:10.3f} {t_ds / g * 1e6:9.1f}  {ok}")
    if worst > 0:
        print(f"\nsmallest ratio: {worst:.1f}x (goal >= 10x on every row: {'met' if worst >= 10 else 'NOT met'})")
    else:
        print("\nRESULTS DIFFER (see 'same')")

    if args.quick:
        return
    print("\ndeepscan group scan growth (default config, 1 restart; linear growth = flat cost per unit):")
    bg, recs = raw[32768]
    p_all = ds.pvalue_ranges(bg, recs)
    cfg = ds.ScanConfig()
    for m in (2048, 8192, 32768):
        p = np.concatenate([p_all[:25, :m], p_all[150:175, :m]])
        sec = best_of(lambda: ds.group_scan(p, cfg), args.repeat)
        print(f"  50 records x {m:6d} nodes: {sec * 1e3:8.2f} ms  {sec / m * 1e6:7.3f} us/node")
    for g in (50, 150, 300):
        p = np.ascontiguousarray(p_all[:g, :4096])
        sec = best_of(lambda: ds.group_scan(p, cfg), args.repeat)
        print(f"  {g:3d} records x   4096 nodes: {sec * 1e3:8.2f} ms  {sec / g * 1e6:7.1f} us/record")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
