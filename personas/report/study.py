"""One study's ``report.md``, built from the artifacts its notebooks wrote (``personas.report``)."""


from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from personas._core.io import read_json, write_text
from personas._core.stages import read_stages
from personas.causal.results import load_causal_result
from personas.model.sources import display_name
from personas.report.causal import causal_summary_markdown
from personas.report.checks import artifact_problems, problems_section
from personas.report.layers import (
    FINAL_THIRD_BAND,
    chosen_layer_text,
    final_third_claim,
    layer_profile,
    persona_table,
    read_layer_table,
    read_untrained_table,
)
from personas.report.nodes import SHARED_NODES_BAND, node_sections, shared_nodes_claim
from personas.report.replicates import replicates_section
from personas.report.scans import baselines_table, precision_recall_table, read_scan_summary, subset_sizes
from personas.report.tables import figure_links, fmt, markdown_table, missing

__all__ = ["REPORT_SECTIONS", "claim_results", "build_report", "write_report", "report_verdicts", "recorded_settings"]

REPORT_SECTIONS = (
    "## Configuration",
    "## What failed or is missing",
    "## Layer separation per persona",
    "## Layer profile",
    "## Chosen layer",
    "## DeepScan precision and recall",
    "## DeepScan against the baselines",
    "## Salient nodes and overlaps",
    "## Do the salient nodes matter?",
    "## The paper's claims, tested here",
    "## Replicates",
    "## Timing",
    "## Artifacts",
)

_CONFIG_KEYS = (
    "model_name", "personas", "n_per_direction", "min_confidence", "layers", "position", "template", "n_reps",
    "n_per_cluster", "n_folds", "n_trees", "levels", "background_size", "clean_size", "anomalous_size",
    "clean_ssize", "anom_ssize", "n_runs", "score", "tail", "thresholds", "a_max", "restarts", "preset",
    "salient_method", "q", "seed", "untrained_control", "untrained_per_direction", "replicates",
)


#: Run-file header fields the report reads as the scans' settings (the notebook parameter of the same name).
_RUN_FILE_KEYS = ("background_size", "clean_ssize", "anom_ssize", "n_runs", "score", "tail", "thresholds", "a_max",
                  "restarts", "preset")
#: The layer table's recorded protocol and probe fields.
_LAYER_KEYS = ("n_components", "n_reps", "n_per_cluster", "n_folds", "n_trees", "control_folds")


def recorded_settings(out: Path) -> dict:
    """The settings the artifacts themselves record: the layer table's protocol and probes (its metadata
    sidecar), the scans' sample sizes and scan settings (the first run file's header), the scanned levels
    (``runs/index.json``) and the causal check's personas. What the report states comes from here first;
    the study's parameters fill only what no artifact records."""
    found: dict = {}
    layer = _read_json_or_none(out / "tables" / "layer_metrics.json") or {}
    found.update({k: v for k, v in (layer.get("parameters") or {}).items() if k in _LAYER_KEYS})
    index = _read_json_or_none(out / "runs" / "index.json") or {}
    if index.get("levels"):
        found["levels"] = sorted(int(x) for x in index["levels"])
        first = next((name for level in index["levels"].values() for name in level.values()), None)
        header = _run_file_config(out / "runs" / first) if first else {}
        found.update({k: header[k] for k in _RUN_FILE_KEYS if k in header})
    causal = _read_json_or_none(out / "causal" / "causal_check.json") or {}
    if causal.get("personas") is not None:
        found["causal_personas"] = list(causal["personas"])
    return found


def _run_file_config(path: Path) -> dict:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.loads(handle.readline()).get("config") or {}
    except (OSError, ValueError, AttributeError):  # a damaged run file: artifact_problems names it
        return {}


def _configuration(study: dict, out: Path) -> str:
    recorded = recorded_settings(out)
    p = {**study.get("notebook_defaults", {}), **study.get("parameters", {}), **recorded}
    rows = [(k, "the paper's 14" if k == "personas" and p.get(k) is None else p[k]) for k in _CONFIG_KEYS if k in p]
    inputs = study.get("inputs", {})
    for key, file in inputs.get("files", {}).items():
        rows.append((key, f"{file['path']} (sha256 {file['sha256']})"))
    if p.get("prefer"):
        rows.append(("prefer", p["prefer"]))
    text = [markdown_table(pd.DataFrame(rows, columns=["parameter", "value"])) if rows else "(notebook defaults)",
            "", "Values recorded by the artifacts themselves (the layer table, the run files, the causal check) are "
            "shown as recorded; the others are the study's parameters."]
    if inputs.get("user_personas"):
        text += ["", "Personas from the statements file: " + ", ".join(f"`{x}`" for x in inputs["user_personas"]) + "."]
    if inputs.get("untopiced"):
        text += ["", "Personas in no topic (levels 1 and 0 skip them; the node analysis gives each its own group): "
                 + ", ".join(f"`{x}`" for x in inputs["untopiced"]) + "."]
    manifest = _first_manifest(p)
    if manifest:
        facts = [f"{k}: `{manifest[k]}`" for k in ("revision", "gguf_file", "quantisation", "model_sha256", "template_mode",
                                                   "position", "n_blocks", "hidden_size") if manifest.get(k) is not None]
        text += ["", "Activation store: " + "; ".join(facts) + "."]
        if manifest.get("prompt_example"):
            text += ["", f"Prompt of the first statement: `{manifest['prompt_example']!r}`"]
    from personas.model.hooks import DEFAULT_LAYERS_RULE

    text += ["", f"Layers: `{p.get('layers')}`; the default rule is {DEFAULT_LAYERS_RULE}."]
    trims = _trims(p)
    if trims:
        text += ["", "Trimmed from the paper's full protocol to fit the default time budget (each is a study "
                 "parameter: set it back, e.g. `-p n_folds 10`, to run the full protocol): " + "; ".join(trims) + "."]
    return "\n".join(text)


def _trims(p: dict) -> list[str]:
    """What the parameters leave out of the paper's protocol, in words."""
    out = []
    folds, control = p.get("n_folds"), p.get("control_folds")
    if folds is not None and folds < 10:
        out.append(f"the classifiers are cross-validated on {folds} folds, not the paper's 10 (`n_folds`)")
    if control is not None and folds is not None and control < folds:
        out.append(f"the shuffled-label control is fitted on {control} of the {folds} folds (`control_folds`)")
    levels, base_levels = p.get("levels"), p.get("baseline_levels")
    if p.get("baselines") and base_levels is not None and levels is not None and set(levels) - set(base_levels):
        out.append(f"LOF, Isolation Forest and KMeans run at level(s) {sorted(base_levels)} only "
                   f"(`baseline_levels`; DeepScan at {sorted(levels)})")
    if p.get("umap") is False:
        out.append("no UMAP view of the chosen layer (`umap`; the PCA views are drawn)")
    n_seeds = p.get("replicates", 1)
    if n_seeds < 3:
        out.append(f"the claims' verdicts are computed on {n_seeds} statement-sampling seed(s), not 3 "
                   "(`--replicates`)")
    if p.get("untrained_control") is False:
        out.append("no untrained-model control of the layer claim (`untrained_control`)")
    elif p.get("untrained_control") and p.get("untrained_per_direction") is not None and (
            p.get("n_per_direction") is None or p["untrained_per_direction"] < p["n_per_direction"]):
        out.append(f"the untrained-model control extracts {p['untrained_per_direction']} statements per direction "
                   f"and persona, not all {p.get('n_per_direction') or 'of them'} (`untrained_per_direction`)")
    if p.get("causal") and p.get("causal_personas"):
        out.append(f"the causal check covers {len(p['causal_personas'])} persona(s) (`causal_personas`)")
    return out


def _first_manifest(params: dict) -> dict | None:
    from personas.store.read import store_manifest

    try:
        personas = params.get("personas")
        if not personas:
            from personas.statements import paper_personas

            personas = paper_personas()
        return store_manifest(params["store_dir"], params["model_name"], personas[0])
    except Exception:  # the report never fails for want of a manifest
        return None


def _causal(out: Path) -> str:
    """The causal section, built from the saved causal result (``load_causal_result``) and its figures."""
    folder = out / "causal"
    if not (folder / "causal_check.json").exists():
        return missing("causal/causal_check.json (the causal check of vis_top_nodes.ipynb)")
    try:
        result = load_causal_result(folder)
    except Exception as exc:  # a damaged result is named, never silently left out
        return missing(f"causal/ (unreadable: {type(exc).__name__}: {exc})")
    text = causal_summary_markdown(result, heading="").strip()
    figs = figure_links(out, "causal_*.png", "causal check", 4)
    text += "\n\n" + figs if figs else ""
    tokens = figure_links(out, "token_scores_*.png", "texts scored token by token on the persona direction", 2)
    directions = sorted(p.name for p in (out / "directions").glob("*.safetensors")) if (out / "directions").is_dir() \
        else []
    if tokens or directions:
        text += ("\n\n**Texts scored on the persona direction** (stored statements and steered texts, token by "
                 "token: blue below 0, red above; `ul.project_texts`)" + (": the direction is saved as "
                 + ", ".join(f"`directions/{n}`" for n in directions) + " (`ul.load_direction`; "
                 "`ul.export_control_vector` writes it for llama.cpp)" if directions else "") + ".")
        text += "\n\n" + tokens if tokens else ""
    return text


def _layer_claim_text(layer: dict) -> str:
    ctl = (f"shuffled-label control {layer['shuffled_control']:.3f}"
           + (f", wording control {layer['wording_control']:.3f}" if np.isfinite(layer["wording_control"]) else ""))
    text = (
        f"- **\"{layer['claim']}\"**: **{layer['verdict']}** ({layer['reason']}). Per persona, the best "
        f"{layer['metric']} in the final third minus the best earlier: mean {fmt(layer['estimate'])}, 95% bootstrap "
        f"interval over personas [{fmt(layer['ci_low'])}, {fmt(layer['ci_high'])}], sign-flip p = "
        f"{fmt(layer['p_value'])}. The mean over personas peaks at layer {layer['best_layer']} (relative depth "
        f"{layer['relative_depth']:.2f}) with {layer['score']:.3f} ({ctl}); "
        f"{layer['personas_peaking_in_final_third']:.0%} of the personas peak in the final third."
    )
    if "untrained" not in layer:
        return text + " No untrained-model control ran (`untrained_control`), so depth alone is not ruled out."
    ctl = layer["untrained"]
    if ctl is None:
        return text + " The untrained-model control has no cluster metrics above layer 0."
    return text + (
        f" Untrained control (the same architecture with random weights, the same statements): "
        f"{ctl['verdict']} ({ctl['reason']}); its mean gap {fmt(ctl['estimate'])} "
        f"[{fmt(ctl['ci_low'])}, {fmt(ctl['ci_high'])}], its peak at relative depth {ctl['relative_depth']:.2f} "
        f"({ctl['metric']} {ctl['score']:.3f})."
    )


def _nodes_claim_text(nodes: dict) -> str:
    lines = [f"- **\"{nodes['claim']}\"**: **{nodes['verdict']}** ({nodes['reason']}; from {nodes['source']})."]
    rows = [{"salient sets": r["method"], "excess difference": r["difference"],
             "95% interval": "" if not np.isfinite(r["ci_low"]) else f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]",
             "permutation p": r["p_permutation"], "bootstrap p": r["p_bootstrap"], "verdict": r["verdict"]}
            for r in nodes["methods"]]
    lines += ["", markdown_table(pd.DataFrame(rows), digits=4)]
    if nodes.get("methods_note"):
        lines += ["", nodes["methods_note"]]
    return "\n".join(lines)


def claim_results(out: Path) -> dict[str, dict | None]:
    """``{claim key: the claim's numbers and verdict}`` for one study directory (None: not testable)."""
    table = read_layer_table(out)
    layer = None
    if table is not None:
        untrained = read_untrained_table(out)
        layer = final_third_claim(table) if untrained is None else final_third_claim(table, untrained=untrained)
    return {"final_third": layer, "shared_nodes": shared_nodes_claim(out)}


def _claims(out: Path) -> str:
    results = claim_results(out)
    layer, nodes = results["final_third"], results["shared_nodes"]
    lines = [f"Each verdict follows one rule from the claim's estimate, interval and p-value "
             f"(`docs/verdicts.md`): supported, contradicted or inconclusive, with an inconclusive band "
             f"(here {FINAL_THIRD_BAND:g} in silhouette, {SHARED_NODES_BAND:g} of the nodes).", ""]
    lines.append(_layer_claim_text(layer) if layer is not None else
                 "- \"personas diverge most in the final third of the layers\": " + missing("layer metrics"))
    if nodes is not None:
        lines.append(_nodes_claim_text(nodes))
    else:
        lines.append("- \"ethics personas share more salient nodes than political ones\": needs both topics' "
                     "personas in the node analysis.")
    lines += ["", "Verdicts are for this model and these settings only: another model's layers, or the paper's "
              "models', need not behave the same."]
    return "\n".join(lines)


def _timing(study: dict, out: Path) -> str:
    reused, stages = set(study.get("reused", [])), read_stages(out)
    rows = [(f"{k} (reused: it took {stages[k].seconds:.1f} s when it ran)" if k in reused and k in stages else k, v)
            for k, v in study.get("timings_s", {}).items()]
    meta_file = out / "tables" / "layer_metrics.json"
    if meta_file.exists():
        meta = read_json(meta_file)
        seconds = meta.get("metadata", meta).get("seconds", {})
        rows += [(f"layer analysis: {k}", v) for k, v in seconds.items()]
    untrained_file = out / "tables" / "layer_metrics_untrained.json"
    if untrained_file.exists():
        meta = read_json(untrained_file)
        seconds = meta.get("metadata", meta).get("seconds", {})
        rows += [(f"untrained-model control: {k}", v) for k, v in seconds.items()]
    causal_file = out / "causal" / "causal_check.json"
    if causal_file.exists():  # the causal check's phases (steered_text: the steered-text arm)
        phases = read_json(causal_file).get("phases") or {}
        rows += [(f"causal check: {k.replace('_', ' ')}", v["seconds"]) for k, v in phases.items() if "seconds" in v]
    index_file = out / "runs" / "index.json"
    if index_file.exists():
        totals: dict[str, float] = {}
        for steps in read_json(index_file).get("seconds", {}).values():
            for k, v in steps.items():
                totals[k] = totals.get(k, 0.0) + float(v)
        rows += [(f"DeepScan experiments: {k} (all levels)", v) for k, v in totals.items()]
    if not rows:
        return "_No timings recorded._"
    return markdown_table(pd.DataFrame(rows, columns=["step", "seconds"]), digits=1)


def _artifacts(out: Path) -> str:
    groups = []
    for sub in ("figures", "tables", "tables/nodes", "runs", "causal", "notebooks"):
        d = out / sub
        if d.is_dir():
            files = sorted(p.name for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
            if files:
                groups.append(f"- `{sub}/`: " + ", ".join(f"`{f}`" for f in files))
    return "\n".join(groups) or "_No artifacts found._"


def _sample_sizes(out: Path, params: dict) -> tuple[int, int] | None:
    """The scans' clean and anomalous sample sizes, as the run files record them (else the parameters)."""
    sizes = {**params, **recorded_settings(out)}
    try:
        return int(sizes["clean_ssize"]), int(sizes["anom_ssize"])
    except (KeyError, TypeError, ValueError):
        return None


def _read_json_or_none(path: Path) -> dict | None:
    try:
        return read_json(path) if path.exists() else None
    except (OSError, ValueError):  # cut short: artifact_problems names it
        return None


def _built(make, problems: list[str], head: str | None = None):
    """``make()``; if an artifact it reads is damaged, the problem is recorded and the section says so."""
    try:
        return make()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problems.append(f"{'the section ' + repr(head[3:]) if head else 'an artifact'} could not be built: {exc}")
        return None if head is None else "_Could not be built from the artifacts: see \"What failed or is missing\"._"


def build_report(out_dir: str | os.PathLike) -> str:
    """The report's markdown text for a study directory (sections: ``REPORT_SECTIONS``)."""
    out = Path(out_dir)
    if not out.is_dir():
        raise ValueError(f"study directory {out} does not exist; run the study first (python -m personas.study)")
    study = _read_json_or_none(out / "study.json")
    params = {**(study or {}).get("notebook_defaults", {}), **(study or {}).get("parameters", {})}
    study, problems = study or {}, artifact_problems(out, params)  # every artifact cross-checked first
    failed = study.get("failed") if study else None
    if failed:  # a stage that failed: named first, with its error (the artifacts before it are kept)
        problems.insert(0, f"the study stopped: `{failed['notebook']}` failed ({failed['error']}); the notebooks "
                           f"after it did not run (their sections below say what is missing). Its executed copy, "
                           f"with the traceback, is `notebooks/{failed['notebook']}`")
    table, summary = _built(lambda: read_layer_table(out), problems), _built(lambda: read_scan_summary(out), problems)
    makers = [
        ("## Configuration", lambda: _configuration(study, out)),
        ("## Layer separation per persona", lambda: persona_table(table) if table is not None
         else missing("tables/layer_metrics.csv")),
        ("## Layer profile", lambda: layer_profile(table, out, read_untrained_table(out)) if table is not None
         else missing("tables/layer_metrics.csv")),
        ("## Chosen layer", lambda: chosen_layer_text(out)),
        ("## DeepScan precision and recall", lambda: precision_recall_table(summary)),
        ("## DeepScan against the baselines",
         lambda: baselines_table(summary, subset_sizes(out), _sample_sizes(out, params))),
        ("## Salient nodes and overlaps", lambda: node_sections(out)),
        ("## Do the salient nodes matter?", lambda: _causal(out)),
        ("## The paper's claims, tested here", lambda: _claims(out)),
        ("## Replicates", lambda: replicates_section(out, claim_results)),
        ("## Timing", lambda: _timing(study, out)),
        ("## Artifacts", lambda: _artifacts(out)),
    ]
    sections = [(head, _built(make, problems, head)) for head, make in makers]
    sections.insert(1, ("## What failed or is missing", problems_section(problems, bool(study))))
    model = display_name(params["model_name"]) if params.get("model_name") else "unknown"
    title = (f"# Persona study: {out.name}\n\nModel `{model}`; written by "
             "`personas.report` from the study's artifacts. It follows the layout of Cintas et al. (AIES 2025): "
             "where (layers) and which activations (nodes) carry each persona.")
    return "\n\n".join([title, *(f"{head}\n\n{body}" for head, body in sections)]) + "\n"


def report_verdicts(out_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """``(claim, verdict)`` of the paper's claims tested in a study directory (for the study's last lines)."""
    claims = claim_results(Path(out_dir))  # the very numbers and verdicts the report shows
    found = []
    layer = claims["final_third"]
    if layer is not None:
        found.append((layer["claim"], f"{layer['verdict']} (best layer {layer['best_layer']}, relative depth "
                                      f"{layer['relative_depth']:.2f})"))
    nodes = claims["shared_nodes"]
    if nodes is not None:
        found.append((nodes["claim"], str(nodes["verdict"])))
    return found


def write_report(out_dir: str | os.PathLike) -> Path:
    """Write ``<out_dir>/report.md`` atomically and return its path."""
    return write_text(Path(out_dir) / "report.md", build_report(out_dir))
