"""The public surface: each facade lists exactly the names the notebooks and the docs use.

The facades are curated, not complete: a name is in a facade because a notebook's code cell
or the README/docs call it as ``ul.x``, ``un.x`` or ``uv.x``. Everything else is imported from
its stage module (``personas.layers``, ``personas.nodes``, ...). Adding a name to a notebook
means adding it here and to the facade; a name the notebooks stop using leaves all three.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALIASES = {"ul": "utils_layers", "un": "utils_nodes", "uv": "utils_viz"}
USE = re.compile(r"\b(ul|un|uv)\.([A-Za-z_]\w*)")

PUBLIC = {
    "utils_layers": {
        "list_personas", "load_statements", "study_inputs",
        "load_model", "extraction_plan", "ExtractionSettings", "extract_with_controls", "extract_to_store",
        "Direction", "direction_from_store", "project_texts", "save_direction", "load_direction",
        "export_control_vector", "import_control_vector",
        "load_layers", "store_manifest", "store_fingerprints",
        "CLUSTER_METRICS", "LayerProtocol", "ProbeSettings", "LayerControls", "analyse_layers", "save_results",
        "most_divergent_layers", "choose_layer", "save_chosen_layer", "read_chosen_layer", "load_wording_controls",
        "combine_results", "UntrainedControl", "untrained_layer_control", "extract_untrained_control",
        "dask_scheduler", "parallel_jobs", "write_table",
    },
    "utils_nodes": {
        "ScanPlan", "ScanSettings", "PoolSizes", "SampleSizes", "scan_config", "run_persona_scans",
        "check_runs_current",
        "read_level", "statement_table", "node_space", "node_frequencies", "salient_sets",
        "set_sizes", "pairwise_overlaps", "overlap_table", "save_node_report", "save_calibration_report",
        "level0_sets",
        "CausalSettings", "causal_inputs", "checked_personas", "causal_check", "save_causal_result", "load_causal_result",
        "steer_generate", "Sampling", "NEUTRAL_PROMPTS", "steered_text_arm", "persona_scorer", "agreement_scorer",
        "callable_scorer", "score_texts", "coherence_scores", "score_text_frame", "steered_text_examples",
    },
    "utils_viz": {
        "persona_colors", "plot_pca_grid", "plot_metric_by_layer", "plot_metric_by_relative_depth", "plot_classifier_heatmap", "plot_scatter_2d", "plot_models_by_relative_depth",
        "plot_upset", "plot_venn", "plot_overlap_heatmap", "plot_node_frequency", "plot_precision_recall",
        "plot_dose_response", "plot_ablation_null", "plot_specificity", "causal_figures",
        "plot_token_scores", "token_heatmap_html",
    },
}


def _notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def _uses(text: str) -> set[tuple[str, str]]:
    return {(ALIASES[m.group(1)], m.group(2)) for m in USE.finditer(text)}


def _notebook_uses() -> set[tuple[str, str]]:
    return set().union(*(_uses(_notebook_code(p)) for p in sorted(ROOT.glob("*.ipynb"))))


def _doc_uses() -> set[tuple[str, str]]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return set().union(*(_uses(p.read_text(encoding="utf-8")) for p in docs if p.exists()))


def test_use_finder_reads_facade_attributes():
    assert _uses("x = ul.load_model(name)\nfig = uv.plot_venn(sets)  # ulx.y, un_.z") == {
        ("utils_layers", "load_model"), ("utils_viz", "plot_venn"),
    }


@pytest.mark.parametrize("facade", sorted(PUBLIC))
def test_facade_lists_exactly_the_public_names(facade):
    assert set(importlib.import_module(facade).__all__) == PUBLIC[facade]


def test_every_notebook_and_doc_use_resolves():
    missing = sorted(f"{m}.{name}" for m, name in _notebook_uses() | _doc_uses()
                     if name not in PUBLIC[m] or not hasattr(importlib.import_module(m), name))
    assert not missing, f"used but not in the facades: {missing}"


def test_every_public_name_is_used_by_a_notebook_or_a_doc():
    used = _notebook_uses() | _doc_uses()
    unused = sorted(f"{m}.{name}" for m, names in PUBLIC.items() for name in names if (m, name) not in used)
    assert not unused, f"facade names nobody uses (import them from their stage module): {unused}"
