"""The study's command line: ``python -m personas.study --help``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Sequence

import personas.study as study
from personas._core.parameters import parameters_help, parse_value as _parse_value
from personas._core.quiet import quiet_third_parties
from personas.model.sources import check_model_source
from personas.study import (NOTEBOOKS, STUDY_KEYS, StudyFailed, check_inputs, notebook_parameters, run_studies, run_study,
                            study_parameters)
from personas.study.reuse import resolve_force

__all__ = ["main"]

study_doc = study.__doc__ or ""


def _parse_layers(text: str) -> list[int] | str:
    if text in ("all", "default"):
        return text
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--layers must be 'default', 'all' or comma-separated integers such as 1,4,7; got {text!r}")


def _parameters_help() -> str:
    try:
        return parameters_help(notebook_parameters(), hidden=("store_dir", "out_dir"))
    except Exception as exc:  # pragma: no cover - a broken checkout still gets --help
        return f"(notebook parameters unavailable: {exc})"


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point (``python -m personas.study --help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m personas.study", description=study_doc.split("\n\n")[0],
        epilog=_parameters_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--name", default="default", help="run name: artifacts go to <output>/<name>/ (default: default)")
    parser.add_argument("--output", default="output", help="output root (default: output)")
    parser.add_argument("--model", default=None,
                        help="model alias, hub name, local path or .gguf file; several, comma-separated, are compared "
                             "(default: the embedded smollm2-135m-instruct)")
    parser.add_argument("--personas", default=None, help="comma-separated dataset names (default: the paper's 14)")
    parser.add_argument("--layers", default=None, type=_parse_layers,
                        help="'default' (the paper's pattern), 'all' or comma-separated layer indices")
    parser.add_argument("--device", default=None, help="torch device for extraction, e.g. cuda (default: cpu)")
    parser.add_argument("--dtype", default=None, help="model dtype, e.g. bfloat16 on a GPU (default: float32)")
    parser.add_argument("--n-runs", type=int, default=None, help="DeepScan runs per experiment (default: 100; quick: 6)")
    parser.add_argument("--n-jobs", type=int, default=None, help="parallel workers (joblib)")
    parser.add_argument("--seed", type=int, default=None, help="seed of every random choice (default: 0)")
    parser.add_argument("--scheduler", default=None,
                        help="address of a Dask scheduler (tcp://host:8786): the heavy loops run on its workers")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="any notebook parameter (repeatable), e.g. -p n_runs 20 -p levels '[2]'")
    parser.add_argument("--statements", default=None, metavar="FILE",
                        help="your own statements (CSV or Parquet: persona, statement, direction); their personas are "
                             "added to the study (docs/your-persona.md)")
    parser.add_argument("--topics", default=None, metavar="FILE",
                        help="topics as JSON {topic: [persona, ...]} (default: data/paper_personas.json); personas in "
                             "no topic get level 2 only")
    parser.add_argument("--prefer", default=None, choices=("user", "bundled"),
                        help="whose statements win for a name both bundled and in --statements (default: an error)")
    parser.add_argument("--quick", action="store_true", help="small parameters: 3 personas, few statements and runs")
    parser.add_argument("--replicates", type=int, default=None,
                        help="statement-sampling seeds (seed, seed+1, ...): each claim's verdict per seed and the "
                             "share that agree (default: 1, trimmed for time; quick: 2)")
    parser.add_argument("--force", nargs="?", const="all", action="append", metavar="STAGE",
                        help="run a stage again although nothing it depends on changed: all (the default) or one of "
                             "layers, scans, nodes (or a notebook's name); repeat for several")
    parser.add_argument("--no-progress", action="store_true", help="hide papermill's cell progress bar")
    args = parser.parse_args(argv)

    overrides: dict[str, Any] = {}
    for flag, key in (("device", "device"), ("dtype", "dtype"), ("seed", "seed"), ("n_jobs", "n_jobs"),
                      ("n_runs", "n_runs"), ("scheduler", "scheduler")):
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    if args.prefer:
        overrides["prefer"] = args.prefer
    for name, value in args.parameter:
        if name in STUDY_KEYS:
            parser.error(f"-p {name}: set it with its own option (--model, --personas, --layers, --output, --name, "
                         "--statements, --topics, --prefer)")
        overrides[name] = _parse_value(value)
    personas = [p.strip() for p in args.personas.split(",") if p.strip()] if args.personas else None
    models = [m.strip() for m in args.model.split(",") if m.strip()] if args.model else None
    try:
        params = study_parameters(name=args.name, output=args.output, personas=personas, layers=args.layers,
                                  quick=args.quick, statements=args.statements, topics=args.topics,
                                  replicates=args.replicates, **overrides)
        if args.force:
            params["force"] = sorted(resolve_force(args.force, NOTEBOOKS))
        check_inputs(params)  # before anything is computed or written
        for model in models or []:
            check_model_source(model)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        parser.error(str(exc))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedded models never need the hub; a cached one neither
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # the kernel's debugger: no frozen-modules notice
    with quiet_third_parties():  # the filters hold for the study only, never for the caller
        try:
            if models is None:
                return run_study(params, progress=not args.no_progress)
            return run_studies(models, params, progress=not args.no_progress)
        except StudyFailed as exc:
            raise SystemExit(f"study failed: {exc}") from None
