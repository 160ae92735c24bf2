"""Node-side API for the notebooks: DeepScan experiments -> run files -> salient node sets -> causal check.

The notebook API is exactly the names below (``__all__``): what the notebooks use. Each is
defined in one module, named on its import line; everything else stays importable from its
stage module (``personas.scans``, ``personas.nodes``, ``personas.causal``, ``personas.model.answers``).

- ``personas.scans``: the paper's three levels of experiments as pools of statements, scanned
  into run files (``run_persona_scans`` with a ``ScanPlan`` and ``ScanSettings``)
- ``personas.nodes``: run files -> node frequencies, salient sets (union, min_fraction, or
  calibrated against null runs), overlaps, the node reports
- ``personas.causal``: whether steering along the persona direction or
  ablating the salient nodes moves what the model says, on readouts it can express (statement
  likelihood, Yes/No margin, each gated for informativeness), against random and top-variance controls
- ``personas.model.generation`` and ``personas.causal.text_*``: steered text (``docs/steered-text.md``):
  generation along a direction, and offline scorers of the texts, gated like the readouts

Run files themselves are read with ``deepscan.read_run_file`` (format: ``docs/run-files.md``).
"""

from personas.causal.check import causal_check
from personas.causal.coherence import coherence_scores
from personas.causal.inputs import causal_inputs, checked_personas
from personas.causal.results import load_causal_result, save_causal_result
from personas.causal.settings import CausalSettings
from personas.causal.text_arm import score_text_frame, steered_text_arm
from personas.causal.text_scores import agreement_scorer, callable_scorer, persona_scorer, score_texts
from personas.causal.text_tables import steered_text_examples
from personas.model.generation import NEUTRAL_PROMPTS, Sampling, steer_generate
from personas.nodes import (
    level0_sets,
    node_frequencies,
    node_space,
    overlap_table,
    pairwise_overlaps,
    read_level,
    salient_sets,
    save_calibration_report,
    save_node_report,
    set_sizes,
    statement_table,
)
from personas.scans.driver import check_runs_current, run_persona_scans
from personas.scans.settings import PoolSizes, SampleSizes, ScanPlan, ScanSettings, scan_config

__all__ = [
    # personas.scans
    "ScanPlan", "ScanSettings", "PoolSizes", "SampleSizes", "scan_config", "run_persona_scans", "check_runs_current",
    # personas.nodes
    "read_level", "statement_table", "node_space", "node_frequencies", "salient_sets",
    "set_sizes", "pairwise_overlaps", "overlap_table", "save_node_report", "save_calibration_report", "level0_sets",
    # personas.causal
    "CausalSettings", "causal_inputs", "checked_personas", "causal_check", "save_causal_result", "load_causal_result",
    # steered text
    "steer_generate", "Sampling", "NEUTRAL_PROMPTS", "steered_text_arm", "persona_scorer", "agreement_scorer",
    "callable_scorer", "score_texts", "coherence_scores", "score_text_frame", "steered_text_examples",
]
