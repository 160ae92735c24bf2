"""The whole study in one command: the three notebooks, headless, then ``report.md``.

Usage (from the repository root)::

    uv run python -m personas.study                      # embedded default model, the paper's 14 personas
    uv run python -m personas.study --quick --name smoke # 3 personas, few statements, every stage exercised
    uv run python -m personas.study --model smollm2-135m-instruct,gemma3-270m   # two models, compared
    uv run python -m personas.study --force scans        # run a stage again although nothing changed
    uv run python -m personas.study --model meta-llama/Meta-Llama-3-8B-Instruct --device cuda --dtype bfloat16
    uv run python -m personas.study -p n_runs 20 -p tail upper   # any notebook parameter
    uv run python -m personas.study --statements data/examples/my_personas.csv --topics data/examples/my_topics.json
    uv run python -m personas.study --replicates 3       # three statement-sampling seeds, verdicts per seed

Each notebook is executed with papermill (its tagged ``parameters`` cell is
overridden, with only the parameters that cell defines) into
``<output>/<name>/notebooks/``; the notebooks write their figures, tables and run
files under ``<output>/<name>/``; activations go to the shared store
``<output>/activations/sample-<key>``, keyed by the statement sample (a short hash of
the statement ids, ``statement_sample_key``), so a second run reuses them and studies
of other statement samples (``--quick`` beside the default) live side by side. With
``--replicates N`` the study runs once per statement-sampling seed (``seed``, ``seed + 1``,
...), the extra ones under ``<output>/<name>/replicates/seed-<s>/`` (without the causal
check, ``REPLICATE_OVERRIDES``); the report gives each claim's verdict per seed. The report is written last,
from those artifacts (``personas.report``). With several models, each gets
``<output>/<name>/<model>/`` and ``<output>/<name>/report.md`` compares them on
relative depth.

Your own personas (``docs/your-persona.md``): ``--statements FILE`` (CSV or Parquet: persona,
statement, direction) adds them to the study, ``--topics FILE`` (JSON ``{topic: [persona, ...]}``)
groups them; both are checked before anything is computed or written. The console says one
line per step with its time, then the report's path, the verdicts and the total time.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import time
from pathlib import Path
from typing import Any, Sequence

from personas._core.io import exclusive_lock, read_json, safe_name, write_json
from personas._core.stages import record_stage
from personas.model.sources import check_model_source
from personas.study.kernels import MODEL_MODULES, WARM_MODULES, KernelPool
from personas.study.reuse import plan_stage, resolve_force

__all__ = [
    "NOTEBOOKS",
    "QUICK",
    "notebook_parameters",
    "notebook_defaults",
    "study_parameters",
    "split_parameters",
    "statement_sample_key",
    "REPLICATE_OVERRIDES",
    "run_study",
    "StudyFailed",
    "run_studies",
    "check_inputs",
    "check_parameter_values",
]

NOTEBOOKS = ("representation_extraction.ipynb", "run_deepscan.ipynb", "vis_top_nodes.ipynb")
REPO_ROOT = Path(__file__).resolve().parent.parent.parent

# Small parameters for a smoke run: three personas from three topics, few statements and runs.
QUICK = {
    "personas": ["agreeableness", "subscribes-to-deontology", "politically-liberal"],
    "n_per_direction": 30,
    "n_reps": 2,
    "n_per_cluster": 20,
    "n_folds": 3,
    "n_trees": 10,
    "background_size": 20,
    "clean_size": 10,
    "anomalous_size": 30,
    "clean_ssize": 5,
    "anom_ssize": 5,
    "n_runs": 6,
    "umap": False,
    "pca_grid_personas": 0,  # a figure no claim reads (48 panels, 10 s); the browser test draws one
    # the untrained control on 20 of the 30 statements per direction (the report lists the trim)
    "untrained_per_direction": 20,
    # 6 runs are too few for the calibrated sets (nothing passes the per-node test): show the union
    "salient_method": "union",
    "causal_personas": ["politically-liberal"],
    "causal_heldout": 10,
    "causal_train": 20,
    "causal_alphas": [-0.5, 0.5],
    "causal_random": 2,
    "causal_random_directions": 1,
    "replicates": 2,
    # every part of the check runs, small: a 3 x 3 specificity matrix, a dose response of 3 alphas with one
    # random direction each, and every arm even where 10 + 10 statements leave the gate unconvinced
    "causal_specificity": 3,
    "causal_dose_alphas": [-1.0, 0.0, 1.0],
    "causal_dose_random": 1,
    "causal_skip_uninformative": False,
    "causal_text_prompts": 2, "causal_text_tokens": 16,  # the steered-text arm: 2 of its 8 prompts, 16 tokens
}
# What a replicate (a seed after the first) leaves out: only the replicated claims' inputs are recomputed
# (the PCA pair grids are figures no claim reads).
REPLICATE_OVERRIDES = {"causal": False, "umap": False, "pca_grid_personas": 0}
# Study options that are no notebook parameter.
_STUDY_OPTIONS = ("replicates", "force")
# Parameters the study sets itself, whatever the notebooks' cells say.
STUDY_KEYS = ("model_name", "personas", "layers", "store_dir", "out_dir", "statements_file", "topics_file", "prefer")
STUDY_LOCK = ".study.lock"  # one writer per study folder; what a second study of it is told:
_LOCK_ADVICE = "wait for it to finish or stop that process, or run this study elsewhere (--name OTHER or --output DIR)"
# Kernel arguments: ipykernel logs "Kernel is running over TCP without encryption" at WARNING on every start
_KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


def _cell_parameters(notebook: str | os.PathLike) -> dict[str, Any]:
    cells = read_json(notebook)["cells"]  # the notebook's JSON as it is: importing nbformat takes seconds
    cell = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        raise ValueError(f"{notebook} has no cell tagged 'parameters'; papermill needs one")
    out: dict[str, Any] = {}
    source = "".join(cell["source"])  # a list of lines, or one string
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:  # not a literal: keep the source text
                out[node.targets[0].id] = ast.get_source_segment(source, node.value)
    return out


def notebook_parameters() -> dict[str, dict[str, Any]]:
    """``{notebook: {parameter: default}}`` read from each notebook's tagged parameters cell."""
    return {nb: _cell_parameters(REPO_ROOT / nb) for nb in NOTEBOOKS}


def notebook_defaults() -> dict[str, Any]:
    """Default values of every notebook's parameters (later notebooks win on shared names)."""
    merged: dict[str, Any] = {}
    for params in notebook_parameters().values():
        merged.update(params)
    return merged


def _check_names(params: dict[str, Any], known: dict[str, dict[str, Any]]) -> None:
    valid = sorted({k for p in known.values() for k in p})
    unknown = sorted(k for k in params if k not in valid)
    if unknown:
        raise ValueError(
            f"unknown notebook parameter(s) {unknown}; valid parameters are: {', '.join(valid)} "
            "(see `python -m personas.study --help`)"
        )


def study_parameters(
    *,
    name: str = "default",
    output: str | os.PathLike = "output",
    model: str | None = None,
    personas: Sequence[str] | None = None,
    layers: Sequence[int] | str | None = None,
    quick: bool = False,
    statements: str | os.PathLike | None = None,
    topics: str | os.PathLike | None = None,
    replicates: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Parameters of one study (each notebook later gets the ones its parameters cell names).

    Parameters
    ----------
    name : str
        Run name; artifacts go under ``<output>/<name>/``.
    output : path
        Output root; the activation store is ``<output>/activations``.
    model : str, optional
        Alias, hub name, local path or ``.gguf`` file; None = the notebooks' default
        (the embedded SmolLM2-135M-Instruct).
    personas : list of str, optional
        Dataset names; None = the paper's 14.
    layers : "default", "all" or list of int, optional
        Layers to extract (0 = embeddings, i = output of block i); None = the
        notebooks' default (``"default"``: the paper's pattern, see
        ``personas.model.hooks.default_layers``).
    quick : bool
        Small parameters (module constant ``QUICK``) for a fast smoke run.
    statements, topics : path, optional
        The user's statements (CSV/Parquet) and topics (JSON) files. Unless ``personas``
        is given, the study's personas are the default ones (the paper's 14, or ``QUICK``'s)
        followed by every persona of ``statements``.
    replicates : int, optional
        Statement-sampling seeds to run (default 1; quick: ``QUICK["replicates"]``).
    **overrides
        Any other notebook parameter (e.g. ``n_runs=20``, ``device="cuda"``, ``prefer="user"``:
        whose statements win for a name both bundled and in ``statements``); an unknown name is
        an error listing the valid ones.
    """
    known = notebook_parameters()
    output = Path(output)
    params: dict[str, Any] = {
        "personas": list(personas) if personas else None,
        "out_dir": str(output / name),
    }
    if model is not None:
        params["model_name"] = str(model)
    if layers is not None:
        params["layers"] = layers if isinstance(layers, str) else [int(x) for x in layers]
    if quick:
        params.update({k: v for k, v in QUICK.items() if k != "personas" or not personas})
    for key, value in (("statements_file", statements), ("topics_file", topics)):
        if value is not None:
            params[key] = str(value)
    if statements is not None and not personas:
        prefer = overrides.get("prefer")
        from personas.statements import mixed_statements, paper_personas

        base = params["personas"] or paper_personas()
        user = mixed_statements(statements, prefer)[1]
        params["personas"] = list(base) + [p for p in user if p not in base]
    _check_names(overrides, known)
    params.update(overrides)
    if replicates is not None:
        params["replicates"] = replicates
    params["replicates"] = _check_replicates(params.get("replicates", 1))
    check_parameter_values(params)  # seconds, before the statements are drawn
    params["store_dir"] = str(output / "activations" / statement_sample_key(params))
    return params


def check_inputs(params: dict[str, Any]):
    """The study's model, statements, topics and personas checked before anything is computed or written.

    Returns ``personas.statements.StudyInputs``; raises the ``ValueError`` or ``FileNotFoundError``
    of :func:`personas.model.sources.check_model_source` (an unknown model name, a truncated GGUF
    file) and of :func:`personas.statements.study_inputs` (naming the file, the value and the fix).
    """
    from personas.statements import study_inputs

    check_parameter_values(params)
    p = {**notebook_defaults(), **params}
    check_model_source(p["model_name"])
    return study_inputs(p.get("personas"), statements_file=p.get("statements_file"), topics_file=p.get("topics_file"),
                        prefer=p.get("prefer"), n_per_direction=p.get("n_per_direction"),
                        min_confidence=p.get("min_confidence", 0.85))


def check_parameter_values(params: dict[str, Any]) -> None:
    """Each notebook's parameters in ``params`` checked by the settings objects its cells build from them: a
    ``ParameterError`` (``ValueError``) names the parameter, its value and an example (``-p NAME VALUE``)."""
    from personas._core.parameters import check_parameters
    from personas.causal.parameters import NOTEBOOK_CHECKS as nodes
    from personas.layers.parameters import NOTEBOOK_CHECKS as layers
    from personas.scans.parameters import NOTEBOOK_CHECKS as scans

    for defaults, checks in zip(notebook_parameters().values(), (layers, scans, nodes)):
        check_parameters(params, defaults, checks)


def _check_replicates(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"replicates must be an integer >= 1 (statement-sampling seeds), got {n!r}")
    return n


def statement_sample_key(params: dict[str, Any]) -> str:
    """``"sample-<10 hex digits>"``: the SHA-256 of the statements (ids and text) the study will draw, in order.

    The statements are drawn as ``representation_extraction.ipynb`` draws them (``personas``,
    the user's ``statements_file``, ``n_per_direction``, ``min_confidence``, ``seed``; missing
    ones take the notebook's defaults), so two studies share a store exactly when their
    statements coincide. Bad input files raise here, before anything is written.
    """
    import hashlib

    from personas.statements import load_statements, study_inputs

    p = {**notebook_parameters()["representation_extraction.ipynb"], **params}
    inputs = study_inputs(p["personas"], statements_file=p.get("statements_file"), topics_file=p.get("topics_file"),
                          prefer=p.get("prefer"), n_per_direction=p["n_per_direction"],
                          min_confidence=p["min_confidence"])
    statements = load_statements(inputs.personas, n_per_direction=p["n_per_direction"],
                                 min_confidence=p["min_confidence"], seed=p["seed"], source=inputs.table)
    rows = statements["id"].astype(str) + "\t" + statements["statement"].astype(str)  # an edited statement: a new key
    digest = hashlib.sha256("\n".join(rows).encode("utf-8")).hexdigest()
    return f"sample-{digest[:10]}"


def split_parameters(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{notebook: the subset of params its parameters cell defines}``."""
    known = notebook_parameters()
    params = {k: v for k, v in params.items() if k not in _STUDY_OPTIONS}
    _check_names(params, known)
    return {nb: {k: v for k, v in params.items() if k in names} for nb, names in known.items()}


def _execute(notebook: str, out_dir: Path, params: dict[str, Any], progress: bool,
             kernels: KernelPool | None = None, after: tuple[str, ...] | None = None) -> Path:
    """Run ``notebook`` with ``params`` into ``<out_dir>/notebooks/``.

    With ``kernels``, in a kernel of that pool (started while the notebook before ran), and the next
    notebook's kernel, importing ``after``, starts now (None: no notebook follows); else in a kernel
    of its own.
    """
    import papermill as pm

    src = REPO_ROOT / notebook
    if not src.exists():
        raise FileNotFoundError(f"notebook {src} is missing; run from a full checkout of the repository")
    dest = out_dir / "notebooks" / notebook
    dest.parent.mkdir(parents=True, exist_ok=True)
    km = None if kernels is None else kernels.take(_kernel_modules(notebook, params), after=after)
    try:
        pm.execute_notebook(
            str(src), str(dest), parameters=params, kernel_name="python3", progress_bar=progress,
            cwd=str(REPO_ROOT), log_output=False, extra_arguments=list(_KERNEL_ARGUMENTS),
            **({"km": km} if km is not None else {}),
        )
    finally:
        if km is not None:
            kernels.release(km)
    return dest


def run_study(params: dict[str, Any], *, progress: bool = True) -> Path:
    """Execute the three notebooks in order and write ``report.md``; return its path.

        params = study_parameters(name="smoke", output="output", quick=True)
        report = run_study(params)          # output/smoke/report.md
        print(report.read_text())

    ``params`` is what :func:`study_parameters` returns; each notebook gets the parameters its
    tagged parameters cell names. The inputs are checked first (:func:`check_inputs`): a bad file stops the study before
    anything is written. One line per step, then a summary. A second study of the folder stops at once (``STUDY_LOCK``).
    """
    with KernelPool(REPO_ROOT, _KERNEL_ARGUMENTS) as pool:
        return _locked_study(params, progress, pool, more_follow=False)


def _kernel_modules(notebook: str, params: dict[str, Any]) -> tuple[str, ...]:
    """What ``notebook``'s kernel imports at start-up: the facades, and transformers where it loads a model."""
    causal = params.get("causal", notebook_defaults()["causal"])
    loads_model = notebook == NOTEBOOKS[0] or (notebook == NOTEBOOKS[2] and causal)
    return WARM_MODULES + (MODEL_MODULES if loads_model else ())


def _locked_study(params: dict[str, Any], progress: bool, pool: KernelPool, more_follow: bool) -> Path:
    """:func:`run_study` with the study folder locked; kernels from ``pool``. ``more_follow``: another
    study's notebooks run after this one's (a replicate), so its last notebook starts their kernel."""
    inputs = check_inputs(params)
    out_dir = Path(params["out_dir"])
    with exclusive_lock(out_dir / STUDY_LOCK, f"the study folder {out_dir}", _LOCK_ADVICE):  # one writer at a time
        return _run_study(params, inputs, out_dir, progress, pool, more_follow)


def _run_study(params: dict[str, Any], inputs, out_dir: Path, progress: bool, pool: KernelPool,
               more_follow: bool) -> Path:
    from personas.report import report_verdicts, write_report

    n_replicates = _check_replicates(params.get("replicates", 1))
    per_notebook = split_parameters(params)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    n_steps = len(NOTEBOOKS) + 1
    forced, reused = resolve_force(params.get("force"), NOTEBOOKS), []
    for i, notebook in enumerate(NOTEBOOKS, 1):
        plan = plan_stage(out_dir, REPO_ROOT, notebook, per_notebook[notebook], upstream=NOTEBOOKS[: i - 1],
                          input_files=inputs.files, forced=notebook in forced)
        if not plan.run:
            timings[notebook] = 0.0
            reused.append(notebook)
            print(f"[{i}/{n_steps}] {notebook:<34} reused ({plan.why})", flush=True)
            continue
        t0, started_ns = time.perf_counter(), time.time_ns()
        follows = NOTEBOOKS[i] if i < len(NOTEBOOKS) else NOTEBOOKS[0] if n_replicates > 1 or more_follow else None
        after = None if follows is None else _kernel_modules(follows, per_notebook[follows])
        try:
            _execute(notebook, out_dir, per_notebook[notebook], progress, kernels=pool, after=after)
        except Exception as exc:  # keep what the stages before wrote; the report says what failed
            return _failed(params, inputs, out_dir, notebook, exc, timings)
        timings[notebook] = round(time.perf_counter() - t0, 1)
        record_stage(out_dir, notebook, plan.fingerprint, started_ns=started_ns, seconds=timings[notebook],
                     extra=_store_files(params) if i == 1 else ())
        print(f"[{i}/{n_steps}] {notebook:<34} {timings[notebook]:7.1f} s", flush=True)
    if n_replicates > 1:
        t0 = time.perf_counter()
        _run_replicates(params, n_replicates, progress, pool, more_follow)
        timings["replicates"] = round(time.perf_counter() - t0, 1)
        print(f"[replicates] {n_replicates - 1} more seed(s){'':<16} {timings['replicates']:7.1f} s", flush=True)
    else:  # an earlier run's replicates are not this run's: the report must not read them
        from personas.report.replicates import REPLICATES_FILE

        (out_dir / REPLICATES_FILE).unlink(missing_ok=True)
    timings["total"] = round(time.perf_counter() - start, 1)
    _write_study_json(out_dir, params, inputs, timings, reused=reused)
    t0 = time.perf_counter()
    report = write_report(out_dir)
    print(f"[{n_steps}/{n_steps}] {'report.md':<34} {time.perf_counter() - t0:7.1f} s", flush=True)
    total = time.perf_counter() - start
    print(f"study finished in {total:.1f} s; report: {report}", flush=True)
    for claim, verdict in report_verdicts(out_dir):
        print(f"  {claim}: {verdict}", flush=True)
    return report


def _write_study_json(out_dir: Path, params: dict[str, Any], inputs, timings: dict, **extra: Any) -> None:
    write_json(out_dir / "study.json", {
        "parameters": params, "notebook_defaults": notebook_defaults(), "timings_s": timings, "notebooks": list(NOTEBOOKS),
        "inputs": {"files": inputs.files, "user_personas": inputs.user_personas, "untopiced": inputs.untopiced},
        **extra,
    })


class StudyFailed(RuntimeError):
    """A notebook of the study failed; the report (written anyway) says which and why."""


def _failed(params: dict[str, Any], inputs, out_dir: Path, notebook: str, exc: Exception, timings: dict):
    """Record the failure in ``study.json``, write the report from what exists, then raise :class:`StudyFailed`."""
    from personas.report import write_report

    message = str(exc).strip().splitlines()
    error = f"{type(exc).__name__}: {message[-1] if message else ''}"[:500]
    _write_study_json(out_dir, params, inputs, timings, failed={"notebook": notebook, "error": error})
    report = write_report(out_dir)
    print(f"{notebook} failed: {error}\nthe artifacts written before it are kept; report: {report}", flush=True)
    raise StudyFailed(f"{notebook} failed ({error}); report: {report}") from exc


def _store_files(params: dict[str, Any]) -> list[Path]:
    """The activation store's manifests of this study's statement sample (the first stage stands on them)."""
    store = Path(params["store_dir"])
    return sorted(store.rglob("*.json")) if store.is_dir() else []


def _run_replicates(params: dict[str, Any], n: int, progress: bool, pool: KernelPool, more_follow: bool) -> None:
    """Seeds ``seed + 1 .. seed + n - 1`` under ``<out_dir>/replicates/seed-<s>/``; then ``replicates.json``."""
    from personas.report.replicates import REPLICATE_FILE_DIR, REPLICATES_FILE

    out_dir = Path(params["out_dir"])
    first = int(params.get("seed", notebook_defaults()["seed"]))
    seeds = [first + i for i in range(n)]
    dirs, keys = {str(first): "."}, {str(first): Path(params["store_dir"]).name}
    root = Path(params["store_dir"]).parent
    for seed in seeds[1:]:
        sub = out_dir / REPLICATE_FILE_DIR / f"seed-{seed}"
        rep = {**params, **REPLICATE_OVERRIDES, "seed": seed, "out_dir": str(sub), "replicates": 1}
        rep["store_dir"] = str(root / statement_sample_key(rep))
        reused = "reuses the store of an earlier seed" if rep["store_dir"] in {str(root / k) for k in keys.values()} \
            else "new statement sample"
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # one line per replicate, not its steps and summary
            _locked_study(rep, progress, pool, more_follow=more_follow or seed != seeds[-1])
        print(f"  replicate seed {seed} ({reused}): {time.perf_counter() - t0:.1f} s -> {sub}", flush=True)
        dirs[str(seed)] = os.path.relpath(sub, out_dir)
        keys[str(seed)] = Path(rep["store_dir"]).name
    write_json(out_dir / REPLICATES_FILE, {"seeds": seeds, "dirs": dirs, "store_keys": keys,
                                           "left_out": REPLICATE_OVERRIDES})


def run_studies(models: Sequence[str], params: dict[str, Any], *, progress: bool = True) -> Path:
    """One study per model under ``<out_dir>/<model>/``, then a comparison report in ``<out_dir>``.

    With a single model this is :func:`run_study` on ``params`` itself.
    """
    from personas.report import write_comparison_report

    models = [str(m) for m in models]
    if not models:
        raise ValueError("no model given")
    if len(set(models)) != len(models):
        raise ValueError(f"models {models} name one model twice")
    for model in models:  # a typo in the last model fails now, not after the first studies
        check_model_source(model)
    if len(models) == 1:
        return run_study(dict(params, model_name=models[0]), progress=progress)
    root = Path(params["out_dir"])
    dirs = {}
    for model in models:
        sub = root / (safe_name(model.replace("/", "__")) or "model")
        if sub in dirs.values():
            raise ValueError(f"models {models} map to the same directory {sub}")
        dirs[model] = sub
    failed = []
    for model, sub in dirs.items():
        print(f"== model {model} -> {sub}", flush=True)
        try:
            run_study(dict(params, model_name=model, out_dir=str(sub)), progress=progress)
        except StudyFailed as exc:  # the other models still run; the comparison says what is missing
            failed.append(f"{model}: {exc}")
    report = write_comparison_report(root, dirs)
    if failed:
        raise StudyFailed("; ".join(failed) + f"; comparison report: {report}")
    return report
