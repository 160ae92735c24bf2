"""``vis_top_nodes.ipynb``'s parameters as the settings objects its cells build.

:data:`NOTEBOOK_CHECKS` lets the study check every ``-p`` value of that notebook up front
(``personas._core.parameters.check_parameters``), with the very objects that receive them.
"""

from __future__ import annotations

from typing import Any, Mapping

from personas._core.checks import check_bool, check_choice, check_float, check_int, check_seed, check_str
from personas._core.parameters import ParameterCheck, optional, value_checks
from personas.causal.settings import CausalSettings
from personas.nodes.calibration import SALIENT_METHODS
from personas.nodes.overlaps import CORRECTIONS
from personas.scans.settings import LEVELS

__all__ = ["NOTEBOOK", "NOTEBOOK_CHECKS"]

NOTEBOOK = "vis_top_nodes.ipynb"


def _salient(p: Mapping[str, Any]) -> str:
    """The salient-set rule of ``salient_sets``: a method, with a share of runs for "min_fraction" only."""
    method = check_choice(p["salient_method"], "salient_method", SALIENT_METHODS)
    fraction = optional(check_float)(p["min_fraction"], "min_fraction", min_val=0, max_val=1, include_min=False)
    if (method == "min_fraction") != (fraction is not None):
        raise ValueError("min_fraction (a share of runs, e.g. 0.5) goes with salient_method 'min_fraction' and "
                         f"only with it; got salient_method {method!r}, min_fraction {fraction!r}")
    return method


def _names(value: Any, name: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of names, e.g. ['politically-liberal']; got {value!r}")
    return [check_str(v, f"{name} entry") for v in value]


def _claims(value: Any, name: str) -> list:
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(c, (list, tuple)) and len(c) == 2 and all(isinstance(t, str) for t in c) for c in value):
        raise TypeError(f"{name} must be a list of (topic, topic) pairs, e.g. [('Ethics', 'Politics')]; got {value!r}")
    return list(value)


def _causal(p: Mapping[str, Any]) -> CausalSettings:
    return CausalSettings(
        readouts=p["causal_readouts"], n_heldout=p["causal_heldout"], n_train=p["causal_train"],
        alphas=p["causal_alphas"], n_random_nodes=p["causal_random"], n_random_directions=p["causal_random_directions"],
        n_specificity=p["causal_specificity"], n_dose_personas=p["causal_dose_personas"],
        dose_alphas=p["causal_dose_alphas"], n_dose_random=p["causal_dose_random"], batch_size=p["batch_size"],
        skip_uninformative=p["causal_skip_uninformative"], steered_text=p["causal_steered_text"],
        text_prompts=p["causal_text_prompts"], text_alpha=p["causal_text_alpha"],
        text_max_new_tokens=p["causal_text_tokens"])


NOTEBOOK_CHECKS: tuple[ParameterCheck, ...] = (
    ParameterCheck(("salient_method", "min_fraction"), _salient, examples={"min_fraction": 0.5}),
    ParameterCheck(("causal_readouts", "causal_heldout", "causal_train", "causal_alphas", "causal_random",
                    "causal_random_directions", "causal_specificity", "causal_dose_personas", "causal_dose_alphas",
                    "causal_dose_random", "batch_size", "causal_skip_uninformative", "causal_steered_text", "causal_text_prompts",
                    "causal_text_alpha", "causal_text_tokens"), _causal,
                   examples={"causal_text_prompts": ["Tell me about yourself.", "What matters most in life?"]}),
    *value_checks({
        "level": lambda v, n: check_choice(check_int(v, n), n, LEVELS),
        "q": lambda v, n: check_float(v, n, min_val=0, max_val=1, include_min=False),
        "n_boot": lambda v, n: check_int(v, n, min_val=1),
        "claims": optional(_claims),
        "correction": lambda v, n: check_choice(v, n, CORRECTIONS),
        "top_statements": lambda v, n: check_int(v, n, min_val=0),
        "causal": check_bool, "causal_personas": optional(_names), "device": check_str, "seed": check_seed,
    }, examples={"claims": [("Ethics", "Politics")], "causal_personas": ["politically-liberal"]}),
)
