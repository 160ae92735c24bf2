"""Benchmark: the full layer analysis at the paper's scale, and the published approach beside it.

Synthetic activations of the paper's shape (14 personas x 600 statements x 11 layers x 4096 nodes),
with separation growing with depth, go through ``analyse_layers`` with its defaults: cluster
metrics (5 x 100+/100-), persona classification by ExtraTrees (20 trees) and the linear probe,
10-fold, the + vs - probe per persona, every one with its shuffled-label control, plus layer 0.
Goal: under 10 minutes on 2 cores.

Beside it, on the same data and in the same run, the published approach: three separate
``cross_val_score`` runs of ExtraTrees (one per metric) per layer, timed on ``--published-layers``
and extrapolated to all layers (labelled as such), and our one-pass ExtraTrees on the same layers.

Run:  uv run python benchmarks/bench_layer_metrics.py            (about 10-15 minutes)
      uv run python benchmarks/bench_layer_metrics.py --quick    (small shape, a smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from personas.layers import (  # noqa: E402
    LayerProtocol,
    ProbeSettings,
    analyse_layers,
    cross_validate_classifier,
    most_divergent_layers,
    synthetic_activations,
)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (joblib workers, once shut down)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def stop_workers() -> None:
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def published_extra_trees(X: np.ndarray, y: np.ndarray, n_jobs: int) -> dict[str, float]:
    """The published code's per-layer classifier: three cross-validations, one per metric."""
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.model_selection import cross_val_score

    out = {}
    for scoring in ("precision_weighted", "f1_weighted", "accuracy"):
        clf = ExtraTreesClassifier(n_estimators=20, n_jobs=n_jobs)
        out[scoring] = float(np.mean(cross_val_score(clf, X, y, cv=10, scoring=scoring)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--personas", type=int, default=14)
    parser.add_argument("--per-direction", type=int, default=300, help="statements per direction and persona")
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--n-blocks", type=int, default=32)
    parser.add_argument("--published-layers", type=int, nargs="*", default=[16],
                        help="layers on which to time the published approach (extrapolated to all layers)")
    parser.add_argument("--direction-trees-layers", type=int, nargs="*", default=[16],
                        help="layers on which to time the optional + vs - ExtraTrees (extrapolated)")
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--quick", action="store_true", help="small shape (4 personas x 120 x 256 nodes)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    if args.quick:
        args.personas, args.per_direction, args.hidden = 4, 60, 256

    # the paper's 11 layers are 1, 4, ..., 31; here layer 0 replaces layer 1 so that the
    # embedding control is one of the 11 layers
    layers = [0] + list(range(4, args.n_blocks, 3))
    depth = {layer: layer / layers[-1] for layer in layers}
    t0 = time.perf_counter()
    activations, meta = synthetic_activations(
        n_personas=args.personas, n_per_direction=args.per_direction, hidden_size=args.hidden, layers=layers,
        persona_signal={layer: 0.25 * d for layer, d in depth.items()},
        direction_signal={layer: 0.8 * d for layer, d in depth.items()},
        signal_fraction=0.05, background_rank=8, seed=0,
    )
    t_data = time.perf_counter() - t0
    n = len(meta)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"data: {args.personas} personas x {n // args.personas} statements x {len(layers)} layers "
          f"{layers} x {args.hidden} nodes (generated in {t_data:.1f} s); cores available: {cores}; "
          f"load average before: {os.getloadavg()[0]:.2f}", flush=True)

    c0, t0 = cpu_seconds(), time.perf_counter()
    table = analyse_layers(activations, meta, model_name="synthetic", n_blocks=args.n_blocks, n_jobs=args.n_jobs,
                           protocol=LayerProtocol(n_per_cluster=min(100, args.per_direction)))
    t_full = time.perf_counter() - t0
    stop_workers()
    cpu_full = cpu_seconds() - c0
    md = table.attrs["metadata"]
    print(f"\nanalyse_layers, defaults (all analyses, shuffled-label controls, layer 0): {t_full:.1f} s "
          f"= {t_full / 60:.2f} min wall  (goal: < 10 min); CPU time {cpu_full:.0f} s "
          f"(= {cpu_full / 2 / 60:.2f} min if spread perfectly over 2 free cores)")
    for name, sec in md["seconds"].items():
        print(f"  {name:22s} {sec:8.1f} s")
    print(f"  probe fits stopped at max_iter: {md['probe_fits_at_max_iter']}")

    summary = (table[(table.persona.isin(["ALL"])) | (table.analysis != "persona_classifier")]
               .groupby(["analysis", "classifier", "control", "metric", "layer"])["mean"].mean()
               .unstack("layer").round(3))
    with_metrics = summary.loc[summary.index.get_level_values("metric").isin(["silhouette", "accuracy"])]
    print("\nmean over personas (rows) by layer (columns):\n" + with_metrics.to_string())
    print("\nmost divergent layers by silhouette:\n" + most_divergent_layers(table, "silhouette").to_string(index=False))

    published = {}
    for layer in args.published_layers:
        X, y = activations[layer], meta["persona"].to_numpy()
        t0 = time.perf_counter()
        published_extra_trees(X, y, args.n_jobs)
        t_pub = time.perf_counter() - t0
        t0 = time.perf_counter()
        cross_validate_classifier(X, y, classifiers=("extra_trees",), shuffled_control=False, n_jobs=args.n_jobs)
        t_one = time.perf_counter() - t0
        published[layer] = (t_pub, t_one)
        print(f"\nlayer {layer}: published ExtraTrees (3 x cross_val_score, 10 folds): {t_pub:.1f} s; "
              f"one pass, all 3 metrics: {t_one:.1f} s; ratio {t_pub / t_one:.2f}x")
    if published:
        mean_pub = float(np.mean([v[0] for v in published.values()]))
        print(f"published approach EXTRAPOLATED to {len(layers)} layers (ExtraTrees only, no probe, no controls): "
              f"{mean_pub * len(layers):.0f} s = {mean_pub * len(layers) / 60:.1f} min")

    direction_trees = {}
    for layer in args.direction_trees_layers:
        from personas.layers import direction_classification

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            direction_classification(activations, meta, model_name="synthetic", n_blocks=args.n_blocks,
                                     layers=[layer], probes=ProbeSettings(direction_classifiers=("extra_trees",)),
                                     controls=True, n_jobs=args.n_jobs, progress=False)
        direction_trees[layer] = time.perf_counter() - t0
    if direction_trees:
        mean_dt = float(np.mean(list(direction_trees.values())))
        print(f"\noptional + vs - ExtraTrees (off by default), with control: {mean_dt:.1f} s per layer, "
              f"EXTRAPOLATED to {len(layers)} layers: {mean_dt * len(layers):.0f} s")
    print(f"\nload average after: {os.getloadavg()[0]:.2f} (other work on the machine inflates the times)")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "shape": {"personas": args.personas, "statements": n, "layers": layers, "hidden": args.hidden},
            "analyse_layers_s": t_full, "analyse_layers_cpu_s": cpu_full, "breakdown_s": md["seconds"],
            "published_s_per_layer": {str(k): v[0] for k, v in published.items()},
            "one_pass_s_per_layer": {str(k): v[1] for k, v in published.items()},
            "direction_trees_s_per_layer": {str(k): v for k, v in direction_trees.items()},
        }, indent=2))


if __name__ == "__main__":
    main()
