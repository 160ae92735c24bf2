"""The study three ways, side by side: a first run, the same command again, and one parameter changed.

    uv run python benchmarks/bench_study.py                  # the quick study (a few minutes per run)
    uv run python benchmarks/bench_study.py --default        # the default study (much longer)
    uv run python benchmarks/bench_study.py --change n_runs=20 --output bench-output

Each run is the study's own command line (``python -m personas.study``) in a fresh output folder
(the first run starts with an empty activation store), timed from outside. Printed per run: each
step's seconds as the study reports them (``study.json``), which notebooks were reused, and the
ratios: unchanged rerun / first run, and, within the first run, everything but the extraction
forward passes / the extraction forward passes, twice: with the extraction cell's duration (as
papermill records it: model load, trained model, wording and untrained controls), and with the
trained model's part of it alone (the cell less the untrained control's recorded seconds).
Figures go in benchmarks/README.md, not in docstrings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(output: Path, name: str, extra: list[str], quick: bool) -> dict:
    cmd = [sys.executable, "-m", "personas.study", "--output", str(output), "--name", name, "--no-progress", *extra]
    if quick:
        cmd.insert(3, "--quick")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"study failed ({' '.join(cmd)}):\n{(done.stdout + done.stderr)[-3000:]}")
    study = json.loads((output / name / "study.json").read_text())
    return {"wall": wall, "steps": study["timings_s"], "reused": study.get("reused", [])}


def _extraction_seconds(study_dir: Path) -> tuple[float, float]:
    """Seconds of the extraction cell of the executed first notebook (model load and forward passes: the
    trained model, the wording control and the untrained control), from papermill's cell durations, and
    of it the untrained control (re-initialisation and its extraction, as its table records them)."""
    notebook = json.loads((study_dir / "notebooks" / "representation_extraction.ipynb").read_text())
    cell = sum(float(c["metadata"].get("papermill", {}).get("duration") or 0.0) for c in notebook["cells"]
               if c["cell_type"] == "code" and "extract_with_controls" in "".join(c["source"]))
    untrained = study_dir / "tables" / "layer_metrics_untrained.json"
    control = json.loads(untrained.read_text()).get("seconds", {}).get("extraction", 0.0) if untrained.exists() else 0.0
    return cell, float(control)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--default", action="store_true", help="the default study instead of --quick")
    parser.add_argument("--change", default="n_runs=8", metavar="NAME=VALUE",
                        help="the parameter changed in the third run (default n_runs=8)")
    parser.add_argument("--output", default=None, help="output root (default: a temporary folder)")
    args = parser.parse_args(argv)
    name, value = args.change.split("=", 1)
    output = Path(args.output or tempfile.mkdtemp(prefix="bench-study-"))
    quick = not args.default
    runs = {
        "first": _run(output, "bench", [], quick),
        "unchanged": _run(output, "bench", [], quick),
        f"-p {name} {value}": _run(output, "bench", ["-p", name, value], quick),
    }
    steps = list(runs["first"]["steps"])
    print(f"{'quick' if quick else 'default'} study, output {output}")
    print(f"{'step':<34}" + "".join(f"{k:>22}" for k in runs))
    for step in steps:
        print(f"{step:<34}" + "".join(f"{r['steps'].get(step, float('nan')):>22.1f}" for r in runs.values()))
    print(f"{'wall (command, s)':<34}" + "".join(f"{r['wall']:>22.1f}" for r in runs.values()))
    print(f"{'notebooks reused':<34}" + "".join(f"{len(r['reused']):>22d}" for r in runs.values()))
    first, again = runs["first"]["wall"], runs["unchanged"]["wall"]
    cell, control = _extraction_seconds(output / "bench")
    print(f"unchanged / first: {again / first:.3f} ({again:.1f} s / {first:.1f} s)")
    total = runs["first"]["steps"]["total"]
    if cell > 0:
        rest = total - cell
        print(f"first run, everything but the extraction cell / that cell: {rest / cell:.2f} "
              f"({rest:.1f} s / {cell:.1f} s; the cell holds the model load and every forward pass of the trained "
              "model, the wording control and the untrained control)")
    if cell - control > 0:
        trained = cell - control
        print(f"first run, everything but the trained model's extraction / that extraction: "
              f"{(total - trained) / trained:.2f} ({total - trained:.1f} s / {trained:.1f} s; the untrained "
              f"control's {control:.1f} s counted with the rest, as the issue's profile counts it)")


if __name__ == "__main__":
    main()
