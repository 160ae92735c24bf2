"""DeepScan speed: p-values, group scans, experiments; ratios against the published implementation.

Run: ``uv run python benchmarks/bench_deepscan.py [--quick]``

Prints the best-of-n wall time of each task and the ratio published / ours,
where "published" is the time the code released with Cintas et al. 2025 took on a
2-core machine of the kind this project targets (numbers given in the project's
issue; they were not re-measured here). Also prints the cost per node of a group
scan at several node counts, to show that it grows linearly with the number of nodes.
Data are synthetic: Gaussian activations with a planted shift on some records x nodes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import deepscan as ds  # noqa: E402

# published implementation, seconds (2-core machine)
PUBLISHED = {
    "pvalues 300x4096 vs 250": 0.30,
    "group scan 50x4096, 1 restart": 0.035,  # 35-50 ms: the favourable end
    "group scan 50x32768, 1 restart": 0.29,
    "group scan 300x4096, 10 restarts": 3.1,
}


def best_of(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def data(rng, n, m, shift_rows=0, shift_nodes=0, shift=1.0):
    x = rng.standard_normal((n, m)).astype(np.float32)
    x[:shift_rows, :shift_nodes] += shift
    return x


def report(name: str, seconds: float) -> None:
    ref = PUBLISHED.get(name)
    ratio = f"{ref / seconds:7.1f}x faster than published ({ref * 1e3:.0f} ms)" if ref else ""
    print(f"{name:40s} {seconds * 1e3:9.2f} ms   {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a 20-run experiment")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7
    rng = np.random.default_rng(0)
    print(f"deepscan {ds.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("best of", repeat, "runs\n")

    bg = data(rng, 250, 4096)
    recs = data(rng, 300, 4096, 150, 200)
    report("pvalues 300x4096 vs 250", best_of(lambda: ds.pvalue_ranges(bg, recs), repeat))

    pv = ds.pvalue_ranges(bg, recs)
    sample = np.concatenate([pv[:25], pv[150:175]])  # 25 shifted + 25 plain records
    cfg1, cfg10 = ds.ScanConfig(), ds.ScanConfig(restarts=10)
    report("group scan 50x4096, 1 restart", best_of(lambda: ds.group_scan(sample, cfg1), repeat))
    report("group scan 50x4096, 10 restarts", best_of(lambda: ds.group_scan(sample, cfg10), repeat))
    report("group scan 300x4096, 10 restarts", best_of(lambda: ds.group_scan(pv, cfg10), max(2, repeat // 3)))
    preset = ds.pvalue_ranges(bg, -recs[:50], preset="ibm-2025")
    report("group scan 50x4096, ibm-2025 preset", best_of(lambda: ds.group_scan(preset, "ibm-2025"), repeat))

    bg32 = data(rng, 250, 32768)
    pv32 = ds.pvalue_ranges(bg32, data(rng, 50, 32768, 25, 1600))
    report("group scan 50x32768, 1 restart", best_of(lambda: ds.group_scan(pv32, cfg1), repeat))

    print("\ncost per node (group scan of 50 records, 1 restart; linear growth = flat us/node):")
    for m in (1024, 4096, 16384, 32768):
        p = pv32[:, :m]
        sec = best_of(lambda: ds.group_scan(p, cfg1), repeat)
        print(f"  M = {m:6d}: {sec * 1e3:8.2f} ms  {sec / m * 1e6:6.3f} us/node")

    n_runs = 20 if args.quick else 100
    clean = data(rng, 50, 4096)
    anom = data(rng, 300, 4096, 300, 200)
    kw = dict(clean_ssize=50, anom_ssize=50, n_runs=n_runs, seed=0, progress=False)
    t_serial = best_of(lambda: ds.run_experiment(bg, clean, anom, **kw), 1)
    t_par = best_of(lambda: ds.run_experiment(bg, clean, anom, **kw, n_jobs=2), 1)
    print(f"\nexperiment, {n_runs} runs of 50+50 x 4096:")
    print(f"  serial     {t_serial:7.2f} s  ({t_serial / n_runs * 1e3:.1f} ms/run)")
    print(f"  n_jobs=2   {t_par:7.2f} s  (serial/parallel = {t_serial / t_par:.2f}; warm joblib workers)")
    t_det = best_of(lambda: ds.detection_power(bg, clean, anom, **{**kw, "n_runs": max(10, n_runs // 5)}), 1)
    print(f"  detection power, {max(10, n_runs // 5)} paired runs: {t_det:.2f} s")


if __name__ == "__main__":
    main()
