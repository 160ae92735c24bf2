"""DeepScan speed, side by side: ``deepscan`` against the published code and a plain reference.

Run from a checkout::

    python benchmarks/bench_deepscan.py [--quick] [--published DIR]

``DIR`` is a checkout of the code published with the persona paper (the repository
``IBM/personas-llms-analysis``); its ``deepscan`` package is imported from there under
the name ``published_deepscan`` (nothing of it is copied here). Without ``--published``
the plain reference (``benchmarks/reference_deepscan.py``, which follows the published
procedure step by step) stands in for it, and the factor between reference and
published code measured with ``--published`` (``benchmarks/README.md``) is printed beside it.

For every task, dtype (float64, float32) and mode (default, the ``ibm-2025`` preset) this
script

1. runs every side on the same inputs, interleaved (each round runs each side once, in a
   rotating order, so that a slow spell of a shared machine falls on all of them), after
   a warm-up on full-size inputs; it reports the best and the median of ``--repeat`` rounds;
2. checks the results: ``deepscan`` against the reference on every row (p-values bit for
   bit; scans with equal sets, score and alpha compared with ``==``), and against the
   published code where it computes the same thing (the preset: the published p-values in
   its own ``[pmax, pmin]`` column order, and its scans; its restarts from 2 on are drawn
   from numpy's global generator, so where they differ the deterministic restarts 0 and 1
   are compared and the row says ``r01``);
3. prints the times and the ratios (``x/ours``: how many times slower side ``x`` is),
   and for p-values the cost per (record, node) entry beside one ``np.searchsorted``
   pass over the same entries (one sorted background column, every entry a query).

The published p-values start from a background its pipeline has sorted once per
experiment (``np.sort(axis=0)``); that sort is left out of its time (which favours it:
``deepscan`` sorts internally, inside its time).
In the default mode the published code computes its own conventions (lower tail, pmin
counting, grid thresholds) on the same inputs: its time is the cost of its job, and there
is nothing to compare bit for bit. Data are synthetic Gaussian activations with a planted
shift on some records x nodes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
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
PUBLISHED_NAME = "published_deepscan"
PUBLISHED_MODULES = ("deepscan.util.pvalranges_calculator", "deepscan.scanner")


# --------------------------------------------------------------------------- the published package


def load_published(checkout: str | os.PathLike):
    """Import the published ``deepscan`` package of ``checkout`` as ``published_deepscan``.

    Its modules import each other as ``deepscan.*``, which is our package's name: our
    modules are set aside while it loads, then its modules are renamed and ours put back.
    Returns ``(PvalueCalculator, Scanner)``.
    """
    root = Path(checkout).expanduser().resolve()
    if not (root / "deepscan" / "scanner.py").is_file():
        sys.exit(f"--published {checkout}: no deepscan/scanner.py there; give the root of a checkout "
                 "of IBM/personas-llms-analysis")
    ours = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "deepscan" or k.startswith("deepscan.")}
    sys.path.insert(0, str(root))
    try:
        mods = [importlib.import_module(name) for name in PUBLISHED_MODULES]
    except ImportError as exc:
        sys.exit(f"--published {checkout}: its deepscan package needs {exc.name!r}, which is not installed "
                 f"here ({exc}); install it in this environment or run without --published")
    finally:
        sys.path.remove(str(root))
        for k in [k for k in sys.modules if k == "deepscan" or k.startswith("deepscan.")]:
            sys.modules[PUBLISHED_NAME + k[len("deepscan"):]] = sys.modules.pop(k)
        sys.modules.update(ours)
    return mods[0].PvalueCalculator, mods[1].Scanner


def published_sides(checkout):
    """``(pvalues(sorted_bg, x), group_scan(p_published_layout, restarts))`` calling the published code."""
    calculator, scanner = load_published(checkout)

    def pvalues(sorted_bg, x):
        # [..., 0] = 1 - upper pmin = lower pmax, [..., 1] = lower pmin: our layout reversed
        return calculator(sorted_bg).get_pvalue_ranges(x)

    def group_scan(p_pub, restarts):
        np.random.seed(0)  # its restarts from 2 on draw from the global generator
        score, records, nodes, alpha = scanner.fgss_for_nets(p_pub, None, a_max=0.5, restarts=restarts,
                                                              score_function="hc")
        return score, alpha, np.sort(records), np.sort(nodes)

    return pvalues, group_scan


def recorded_factors() -> dict[str, float]:
    """Reference time / published time per task, as measured and recorded in benchmarks/README.md."""
    readme = HERE / "README.md"
    factors = {}
    if readme.is_file():
        for line in readme.read_text().splitlines():
            m = re.match(r"\|\s*(p-values [^|]*?|group scan [^|]*?)\s*\|\s*([0-9.]+)\s*\|", line)
            if m:
                factors[m.group(1)] = float(m.group(2))
    return factors


# --------------------------------------------------------------------------- timing


def interleaved(sides: dict, repeat: int) -> dict:
    """``{name: (best s, median s, first output)}``: ``repeat`` rounds, each side once per round, rotating."""
    names = list(sides)
    times = {k: [] for k in names}
    first = {}
    for i in range(repeat):
        for k in names[i % len(names):] + names[: i % len(names)]:
            t0 = time.perf_counter()
            out = sides[k]()
            times[k].append(time.perf_counter() - t0)
            first.setdefault(k, out)
    return {k: (min(t), float(np.median(t)), first[k]) for k, t in times.items()}


def searchsorted_floor(bg, x, repeat: int) -> float:
    """Seconds of one ``np.searchsorted`` pass of every entry of ``x`` into one sorted background column."""
    col = np.sort(bg[:, 0])
    flat = np.ascontiguousarray(x).ravel()
    return min(_timed(lambda: np.searchsorted(col, flat)) for _ in range(repeat))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def activations(rng, n, m, shift_rows=0, shift_nodes=0, shift=1.0):
    x = rng.standard_normal((n, m))
    x[:shift_rows, :shift_nodes] += shift
    return x


def same_scan(a, res) -> bool:
    """Tuple (score, alpha, records, nodes) vs a ScanResult: equal values and sets."""
    score, alpha, records, nodes = a
    alpha_eq = alpha == res.alpha or (np.isnan(alpha) and np.isnan(res.alpha))
    return (score == res.score and alpha_eq and np.array_equal(np.sort(records), np.sort(res.records))
            and np.array_equal(np.sort(nodes), np.sort(res.nodes)))


# --------------------------------------------------------------------------- the table


class Table:
    """Prints rows and keeps the smallest ratios (of medians and of bests) against each side."""

    def __init__(self, published: bool, factors: dict):
        self.published, self.factors = published, factors
        self.worst = {(side, stat): np.inf for side in ("pub", "ref") for stat in (0, 1)}
        self.differ = False
        other = "published ms" if published else "ref/pub*"
        self.header = (f"{'task':34s} {'dtype':7s} {'mode':8s} {'ours ms':>15s} {'reference ms':>15s} "
                       f"{'ref/ours':>13s} {other:>15s} {'pub/ours':>13s}  same")
        print(self.header)
        print("-" * len(self.header))

    def _ratio(self, side, slow, ours) -> str:
        for stat in (0, 1):
            self.worst[side, stat] = min(self.worst[side, stat], slow[stat] / ours[stat])
        return f"{slow[1] / ours[1]:5.1f}x ({slow[0] / ours[0]:4.1f}x)"

    def row(self, task, dtype, mode, res, same, extra=""):
        ours, r = res["ours"], res["reference"]
        fmt = lambda t: f"{t[0] * 1e3:7.1f}/{t[1] * 1e3:7.1f}"  # noqa: E731 best/median
        ref_ratio = self._ratio("ref", r, ours)
        if self.published:
            mid = f"{fmt(res['published'])} {self._ratio('pub', res['published'], ours)}"
        else:
            f = self.factors.get(task)
            est = r[1] / ours[1] / f if f else None
            mid = f"{f:14.2f}x {est:12.1f}x" if f else f"{'n/a':>15s} {'n/a':>13s}"
        self.differ |= "False" in same
        print(f"{task:34s} {dtype:7s} {mode:8s} {fmt(ours)} {fmt(r)} {ref_ratio} {mid}  {same}{extra}")

    def summary(self):
        print("\ntimes: best/median of the rounds; ratios: of medians (of bests); x/ours = how many times slower x is")
        if not self.published:
            print("* ref/pub: reference time / published time, measured with --published (benchmarks/README.md);"
                  " pub/ours is then estimated as (ref/ours) / (ref/pub), medians")
        if self.differ:
            print("RESULTS DIFFER (see 'same')")
        w = self.worst
        print(f"smallest ratio against the reference: {w['ref', 1]:.1f}x of medians, {w['ref', 0]:.1f}x of bests")
        if self.published:
            print(f"smallest ratio against the published code: {w['pub', 1]:.1f}x of medians, {w['pub', 0]:.1f}x of bests "
                  f"(goal >= 10x on every row: {'met' if min(w['pub', 0], w['pub', 1]) >= 10 else 'NOT met'})")


def pvalue_rows(table, raw, widths, dtype, preset, pub, args):
    mode = preset or "default"
    pv = {}
    for m in widths:
        bg, recs = (a.astype(dtype) for a in raw[m])
        if preset:
            recs = -recs  # the preset looks for small activations
        sides = {"ours": lambda: ds.pvalue_ranges(bg, recs, preset=preset),
                 "reference": lambda: ref.pvalue_ranges(bg, recs, preset=preset)}
        if pub:
            sorted_bg = np.sort(bg, axis=0)  # outside the timing: its pipeline sorts once per experiment
            sides["published"] = lambda: pub[0](sorted_bg, recs)
        res = interleaved(sides, args.repeat)
        p = pv[m] = res["ours"][2]
        same = f"ref {np.array_equal(res['reference'][2], p)}"
        if pub:
            same += f", pub {np.array_equal(res['published'][2][..., ::-1], p)}" if preset else ", pub n/a"
        entries = recs.size
        floor = searchsorted_floor(bg, recs, args.repeat)
        extra = (f"  {res['ours'][1] / entries * 1e9:5.1f} ns/entry (searchsorted {floor / entries * 1e9:5.1f})")
        table.row(f"p-values 300x{m}", np.dtype(dtype).name, mode, res, same, extra)
    return pv


def scan_rows(table, pv, dtype, preset, pub, args):
    mode = preset or "default"
    tasks = [("group scan 50x4096, 1 restart", 4096, 50, 1), ("group scan 300x4096, 10 restarts", 4096, 300, 10)]
    if 32768 in pv:
        tasks.insert(1, ("group scan 50x32768, 1 restart", 32768, 50, 1))
    for name, m, g, restarts in tasks:
        p = pv[m] if g == 300 else np.concatenate([pv[m][:25], pv[m][150:175]])  # 25 shifted + 25 plain
        cfg = ds.ScanConfig(preset=preset, restarts=restarts)
        sides = {"ours": lambda: ds.group_scan(p, cfg, seed=0),
                 "reference": lambda: ref.group_scan(p, cfg.score, preset=preset, thresholds_mode=cfg.thresholds,
                                                     a_max=cfg.a_max, restarts=restarts, seed=0)}
        if pub:
            # the preset counts pmin: the published scan counts column 1, so reverse ours; the default
            # counts pmax, already column 1
            p_pub = np.ascontiguousarray(p[..., ::-1]) if preset else p
            sides["published"] = lambda: pub[1](p_pub, restarts)
        res = interleaved(sides, args.repeat)
        ours = res["ours"][2]
        same = f"ref {same_scan(res['reference'][2], ours)}"
        if pub and preset:
            ok = same_scan(res["published"][2], ours)
            if not ok and restarts > 2:  # unseeded restarts: compare the deterministic ones
                ok = same_scan(pub[1](p_pub, 2), ds.group_scan(p, ds.ScanConfig(preset=preset, restarts=2), seed=0))
                same += f", pub r01 {ok}"
            else:
                same += f", pub {ok}"
        elif pub:
            same += ", pub n/a"
        table.row(name, np.dtype(dtype).name, mode, res, same)


def growth(raw, args):
    print("\ndeepscan group scan growth (default config, 1 restart; linear growth = flat cost per unit):")
    bg, recs = raw[32768]
    p_all = ds.pvalue_ranges(bg, recs)
    cfg = ds.ScanConfig()
    for m in (2048, 8192, 32768):
        p = np.concatenate([p_all[:25, :m], p_all[150:175, :m]])
        sec = min(_timed(lambda: ds.group_scan(p, cfg)) for _ in range(args.repeat))
        print(f"  50 records x {m:6d} nodes: {sec * 1e3:8.2f} ms  {sec / m * 1e6:7.3f} us/node")
    for g in (50, 150, 300):
        p = np.ascontiguousarray(p_all[:g, :4096])
        sec = min(_timed(lambda: ds.group_scan(p, cfg)) for _ in range(args.repeat))
        print(f"  {g:3d} records x   4096 nodes: {sec * 1e3:8.2f} ms  {sec / g * 1e6:7.1f} us/record")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 32768-node tasks and the growth table")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds per task (best and median shown)")
    parser.add_argument("--published", metavar="DIR", help="checkout of IBM/personas-llms-analysis to time beside ours")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    pub = published_sides(args.published) if args.published else None
    rng = np.random.default_rng(0)
    load = os.getloadavg()
    engine = "numba" if ds.pvalues.compiled_available() else "numpy"
    print(f"deepscan {ds.__version__} (p-value engine: {engine}), numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"sides: ours, reference{', published (' + args.published + ')' if pub else ''}; "
          f"{args.repeat} interleaved rounds per task\n")

    widths = [4096] if args.quick else [4096, 32768]
    raw = {m: (activations(rng, 250, m), activations(rng, 300, m, 150, m // 20)) for m in widths}
    # warm every side up on full-size inputs (imports, compiled kernels, first large allocations, threads)
    for preset in (None, PRESET):
        for dtype in (np.float64, np.float32):
            bg, recs = (a.astype(dtype) for a in raw[4096])
            p = ds.pvalue_ranges(bg, recs, preset=preset)
        ref.pvalue_ranges(bg, recs, preset=preset)
        ds.group_scan(p, ds.ScanConfig(preset=preset, restarts=3))
        if pub:
            pub[0](np.sort(bg, axis=0), recs)
            pub[1](np.ascontiguousarray(p[:50, :, ::-1]), 1)

    table = Table(bool(pub), recorded_factors())
    for dtype in (np.float64, np.float32):
        for preset in (None, PRESET):
            pv = pvalue_rows(table, raw, widths, dtype, preset, pub, args)
            scan_rows(table, pv, dtype, preset, pub, args)
    table.summary()
    if not args.quick:
        growth(raw, args)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
