"""What the report reads, cross-checked: every artifact present, whole, and made by this study's settings.

:func:`artifact_problems` lists, in words, each problem it finds under a study directory:

- an artifact the settings call for that is missing, unreadable or truncated (a run file with
  fewer runs than its header promises, damaged lines, JSON cut short);
- the chosen layer (``chosen_layer.json``) against the layer the run files scanned (``runs/index.json``
  and each run file's header), unless the study named its layer (``layer``);
- each null-run file against its run file (the same experiment: configuration and inputs);
- the seed and settings of every artifact (layer metrics, run files, null runs, the causal check)
  against ``study.json``.

The report shows them under "What failed or is missing" (:func:`problems_section`), so nothing the
report leaves out is left out silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from personas._core.io import read_json

__all__ = ["artifact_problems", "problems_section"]

# run-file header fields that must equal the study parameter of the same meaning
_SCAN_FIELDS = {"n_runs": "n_runs", "clean_ssize": "clean_ssize", "anom_ssize": "anom_ssize"}
_LAYER_FIELDS = ("n_components", "n_reps", "n_per_cluster", "n_folds", "seed")


def _json(path: Path, problems: list[str], what: str) -> Any:
    """``path`` read as JSON, or None with the problem recorded (missing, or not valid JSON: truncated?)."""
    if not path.is_file():
        problems.append(f"`{what}` is missing")
        return None
    try:
        return read_json(path)
    except (OSError, ValueError) as exc:
        problems.append(f"`{what}` cannot be read (truncated or damaged?): {exc}")
        return None


def _table(path: Path, problems: list[str], what: str) -> None:
    if not path.is_file():
        problems.append(f"`{what}` is missing")
        return
    try:
        if pd.read_csv(path).empty:
            problems.append(f"`{what}` has no rows")
    except (OSError, ValueError) as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
        problems.append(f"`{what}` cannot be read (truncated or damaged?): {exc}")


def _differs(what: str, found: Mapping, expected: Mapping[str, Any], problems: list[str]) -> None:
    """Record each key of ``expected`` whose value in ``found`` is another (absent keys are not compared)."""
    for key, want in expected.items():
        if want is not None and key in found and found[key] != want:
            problems.append(f"`{what}` was made with {key} = {found[key]!r}, but study.json says {want!r} (an "
                            "artifact of another run: rerun the notebook that writes it)")


def _layers(out: Path, p: Mapping, problems: list[str]) -> int | None:
    """The layer tables and the chosen layer; returns the chosen layer."""
    _table(out / "tables" / "layer_metrics.csv", problems, "tables/layer_metrics.csv")
    meta = _json(out / "tables" / "layer_metrics.json", problems, "tables/layer_metrics.json")
    if isinstance(meta, dict):
        found = {**meta.get("metadata", meta).get("parameters", {}), "model": meta.get("metadata", meta).get("model")}
        _differs("tables/layer_metrics.json", found, {k: p.get(k) for k in _LAYER_FIELDS} | {"model": p.get("model_name")},
                 problems)
    if p.get("untrained_control"):
        _table(out / "tables" / "layer_metrics_untrained.csv", problems, "tables/layer_metrics_untrained.csv")
    chosen = _json(out / "chosen_layer.json", problems, "chosen_layer.json")
    return int(chosen["layer"]) if isinstance(chosen, dict) and "layer" in chosen else None


def _run_file(path: Path, name: str, level: str, expected_layer: int | None, p: Mapping,
              problems: list[str]) -> dict | None:
    """One run file: readable, whole, its layer and its seed and settings the study's; returns its header."""
    import deepscan

    from personas.scans.pools import experiment_seed

    what = f"runs/{path.name}"
    if not path.is_file():
        problems.append(f"`{what}` (level {level}, {name}) is listed in runs/index.json but missing")
        return None
    try:
        rf = deepscan.read_run_file(path, strict=False)
    except (OSError, ValueError) as exc:
        problems.append(f"`{what}` cannot be read (truncated or damaged?): {exc}")
        return None
    config = rf.header.get("config", {})
    if rf.n_damaged:
        problems.append(f"`{what}` has {rf.n_damaged} damaged line(s) (truncated?); rerun run_deepscan.ipynb")
    if len(rf.runs) < int(config.get("n_runs", 0)):
        problems.append(f"`{what}` holds {len(rf.runs)} of its {config['n_runs']} runs (stopped early?); rerun "
                        "run_deepscan.ipynb to finish it")
    if expected_layer is not None and config.get("layers") not in (None, [expected_layer]):
        problems.append(f"`{what}` scanned layer(s) {config['layers']}, not the chosen layer {expected_layer}")
    want = {k: p.get(v) for k, v in _SCAN_FIELDS.items()} | {"model": p.get("model_name")}
    if p.get("seed") is not None:
        want["seed"] = experiment_seed(int(p["seed"]), name, int(level))
    _differs(what, config, want, problems)
    _differs(what, config.get("metadata", {}), {"study_seed": p.get("seed")}, problems)
    return rf.header


def _null_file(path: Path, run_file: str, header: dict | None, problems: list[str]) -> None:
    """One null-run file against its run file (the same experiment: configuration and inputs)."""
    from personas.scans.null_runs import null_matches_run_file, read_null_runs

    what = f"runs/{path.name}"
    try:
        null = read_null_runs(path)
    except (OSError, ValueError) as exc:
        problems.append(f"`{what}` cannot be read (missing, truncated or damaged?): {exc}")
        return
    if header is not None:
        problems += [f"`{what}` does not belong to `runs/{run_file}`: {d}"
                     for d in null_matches_run_file(null.header, header, run_file)]


def _scans(out: Path, p: Mapping, expected: int | None, problems: list[str]) -> None:
    index = _json(out / "runs" / "index.json", problems, "runs/index.json")
    if not isinstance(index, dict):
        return
    if expected is not None and index.get("layer") != expected:
        source = "the chosen layer (chosen_layer.json)" if p.get("layer") is None else "the layer study.json names"
        problems.append(f"the run files scanned layer {index.get('layer')}, but {source} is {expected}; rerun "
                        "run_deepscan.ipynb after representation_extraction.ipynb")
    nulls = index.get("null", {})
    for level, files in index.get("levels", {}).items():
        for name, file in files.items():
            header = _run_file(out / "runs" / file, name, level, expected, p, problems)
            null = nulls.get(level, {}).get(name)
            if null is not None:
                _null_file(out / "runs" / null, file, header, problems)
            elif p.get("detection"):
                problems.append(f"`runs/{file}` has no null runs though detection is on")
    _table(out / "tables" / "deepscan_precision_recall.csv", problems, "tables/deepscan_precision_recall.csv")


def _causal(out: Path, p: Mapping, expected: int | None, problems: list[str]) -> None:
    if not p.get("causal") or not (out / "causal").is_dir():
        return  # off, or no persona had salient nodes (the notebook says so)
    meta = _json(out / "causal" / "causal_check.json", problems, "causal/causal_check.json")
    if isinstance(meta, dict):
        _differs("causal/causal_check.json", meta, {"seed": p.get("seed"), "layer": expected}, problems)
        _differs("causal/causal_check.json", meta.get("settings", {}),
                 {"n_heldout": p.get("causal_heldout"), "n_train": p.get("causal_train")}, problems)
        text = meta.get("steered_text") or {}
        if p.get("causal_steered_text") and not text.get("not_applicable") and \
                not (out / "causal" / "steered_text.csv").is_file():
            problems.append("`causal/steered_text.csv` is missing: the steered-text arm (`causal_steered_text`) "
                            "left no texts")
    _table(out / "causal" / "causal_gate.csv", problems, "causal/causal_gate.csv")  # the causal section reads it
    for table in ("effects", "comparisons"):  # may be empty (no readout informative), never absent
        if not (out / "causal" / f"causal_{table}.csv").is_file():
            problems.append(f"`causal/causal_{table}.csv` is missing")


def artifact_problems(out: str | Path, params: Mapping[str, Any]) -> list[str]:
    """Every problem with the artifacts under a study directory, one sentence each (empty: none found).

    Parameters
    ----------
    out : path
        The study directory.
    params : mapping
        The study's parameters (``study.json``'s notebook defaults overridden by its parameters);
        what the artifacts must agree with, and which of them the settings call for.
    """
    out, problems = Path(out), []
    chosen = _layers(out, params, problems)
    expected = chosen if params.get("layer") is None else int(params["layer"])  # the layer the scans must have read
    _scans(out, params, expected, problems)
    if (out / "runs" / "index.json").is_file():  # the node analysis reads the run files
        _table(out / "tables" / "nodes" / "set_sizes.csv", problems, "tables/nodes/set_sizes.csv")
    _causal(out, params, expected, problems)
    return problems


def problems_section(problems: list[str], study_found: bool) -> str:
    """The report's "What failed or is missing" section."""
    lines = [] if study_found else ["- `study.json` is missing or unreadable: the study did not finish (or this is "
                                    "no study directory), so nothing could be checked against its settings"]
    lines += [f"- {p}" for p in problems]
    if not lines:
        return ("Nothing: every artifact the settings call for is present and whole, and each one's layer, seed and "
                "settings agree with `study.json` (null runs with their run files).")
    return ("Each problem found while cross-checking the artifacts (sections that need a missing artifact say so):"
            "\n\n" + "\n".join(lines))
