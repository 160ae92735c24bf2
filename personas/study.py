"""The whole study in one command: the three notebooks, headless, then ``report.md``.

Usage (from the repository root)::

    uv run python -m personas.study                      # embedded default model, the paper's 14 personas
    uv run python -m personas.study --quick --name smoke # 3 personas, few statements: a minute
    uv run python -m personas.study --model meta-llama/Meta-Llama-3-8B-Instruct --device cuda --layers 1,4,7,10,13,16,19,22,25,28,31

Each notebook is executed with papermill (its tagged ``parameters`` cell is
overridden) into ``<output>/<name>/notebooks/``; the notebooks write their
figures, tables and run files under ``<output>/<name>/``; activations go to the
shared store ``<output>/activations`` so a second run reuses them. The report is
written last, from those artifacts (``personas.report``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from personas.io import write_json

__all__ = ["NOTEBOOKS", "study_parameters", "notebook_defaults", "run_study", "main"]

NOTEBOOKS = ("representation_extraction.ipynb", "run_deepscan.ipynb", "vis_top_nodes.ipynb")
REPO_ROOT = Path(__file__).resolve().parent.parent

# Small parameters for a smoke run: three personas from three topics, few statements and runs.
QUICK = {
    "personas": ["agreeableness", "subscribes-to-deontology", "politically-liberal"],
    "n_per_direction": 40,
    "n_reps": 2,
    "n_per_cluster": 20,
    "n_folds": 3,
    "n_trees": 10,
    "background_size": 30,
    "clean_size": 10,
    "anomalous_size": 40,
    "clean_ssize": 5,
    "anom_ssize": 5,
    "n_runs": 6,
    "umap": False,
}


def study_parameters(
    *,
    name: str = "default",
    output: str | os.PathLike = "output",
    model: str = "all-MiniLM-L6-v2",
    personas: Sequence[str] | None = None,
    layers: Sequence[int] | str = "all",
    quick: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Parameters passed to every notebook (each takes the ones its parameters cell names).

    Parameters
    ----------
    name : str
        Run name; artifacts go under ``<output>/<name>/``.
    output : path
        Output root; the activation store is ``<output>/activations``.
    model : str
        Hub name or local path; the default is the embedded all-MiniLM-L6-v2.
    personas : list of str, optional
        Dataset names; None = the paper's 14.
    layers : "all" or list of int
        Layers to extract (0 = embeddings, i = output of block i).
    quick : bool
        Small parameters (module constant ``QUICK``) for a fast smoke run.
    **overrides
        Any other notebook parameter (e.g. ``n_runs=20``, ``device="cuda"``).
    """
    output = Path(output)
    params: dict[str, Any] = {
        "model_name": model,
        "personas": list(personas) if personas else None,
        "layers": layers if isinstance(layers, str) else [int(x) for x in layers],
        "store_dir": str(output / "activations"),
        "out_dir": str(output / name),
    }
    if quick:
        params.update(QUICK)
        if personas:
            params["personas"] = list(personas)
    params.update(overrides)
    return params


def _execute(notebook: str, out_dir: Path, params: dict[str, Any], progress: bool) -> Path:
    import papermill as pm

    src = REPO_ROOT / notebook
    if not src.exists():
        raise FileNotFoundError(f"notebook {src} is missing; run from a full checkout of the repository")
    dest = out_dir / "notebooks" / notebook
    dest.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(src), str(dest), parameters=params, kernel_name="python3", progress_bar=progress,
        cwd=str(REPO_ROOT), log_output=False,
    )
    return dest


def notebook_defaults() -> dict[str, Any]:
    """Default values of every notebook's tagged parameters cell (later notebooks win on shared names)."""
    import ast

    import nbformat

    defaults: dict[str, Any] = {}
    for notebook in NOTEBOOKS:
        nb = nbformat.read(REPO_ROOT / notebook, as_version=4)
        cell = next((c for c in nb.cells if "parameters" in c.metadata.get("tags", [])), None)
        if cell is None:
            raise ValueError(f"{notebook} has no cell tagged 'parameters'; papermill needs one")
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                try:
                    defaults[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:  # not a literal: keep the source text
                    defaults[node.targets[0].id] = ast.get_source_segment(cell.source, node.value)
    return defaults


def run_study(params: dict[str, Any], *, progress: bool = True) -> Path:
    """Execute the three notebooks in order and write ``report.md``; return its path."""
    from personas.report import write_report

    out_dir = Path(params["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    for i, notebook in enumerate(NOTEBOOKS, 1):
        print(f"[{i}/{len(NOTEBOOKS)}] {notebook} -> {out_dir / 'notebooks' / notebook}", flush=True)
        t0 = time.perf_counter()
        _execute(notebook, out_dir, params, progress)
        timings[notebook] = round(time.perf_counter() - t0, 1)
        print(f"      done in {timings[notebook]:.1f} s", flush=True)
    timings["total"] = round(time.perf_counter() - start, 1)
    write_json(out_dir / "study.json", {
        "parameters": params, "notebook_defaults": notebook_defaults(), "timings_s": timings, "notebooks": list(NOTEBOOKS),
    })
    report = write_report(out_dir)
    print(f"study finished in {timings['total']:.1f} s; report: {report}", flush=True)
    return report


def _parse_layers(text: str) -> list[int] | str:
    if text == "all":
        return text
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--layers must be 'all' or comma-separated integers such as 1,4,7; got {text!r}")


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point (``python -m personas.study --help``)."""
    parser = argparse.ArgumentParser(prog="python -m personas.study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="default", help="run name: artifacts go to <output>/<name>/ (default: default)")
    parser.add_argument("--output", default="output", help="output root (default: output)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="hub name or local path (default: the embedded all-MiniLM-L6-v2)")
    parser.add_argument("--personas", default=None, help="comma-separated dataset names (default: the paper's 14)")
    parser.add_argument("--layers", default="all", type=_parse_layers, help="'all' or comma-separated layer indices")
    parser.add_argument("--device", default="cpu", help="torch device for extraction, e.g. cuda (default: cpu)")
    parser.add_argument("--dtype", default="float32", help="model dtype, e.g. bfloat16 on a GPU (default: float32)")
    parser.add_argument("--n-runs", type=int, default=None, help="DeepScan runs per experiment (default: 100; quick: 6)")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel DeepScan runs (joblib; default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    parser.add_argument("--quick", action="store_true", help="small parameters: 3 personas, few statements and runs")
    parser.add_argument("--no-progress", action="store_true", help="hide papermill's cell progress bar")
    args = parser.parse_args(argv)

    overrides: dict[str, Any] = {"device": args.device, "dtype": args.dtype, "seed": args.seed, "n_jobs": args.n_jobs}
    if args.n_runs is not None:
        overrides["n_runs"] = args.n_runs
    personas = [p.strip() for p in args.personas.split(",") if p.strip()] if args.personas else None
    params = study_parameters(
        name=args.name, output=args.output, model=args.model, personas=personas, layers=args.layers,
        quick=args.quick, **overrides,
    )
    if args.model == "all-MiniLM-L6-v2":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedded model never needs the hub
    return run_study(params, progress=not args.no_progress)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
