"""What the causal check needs from a study's store: statements, the ids in DeepScan's pools, the read settings."""

from __future__ import annotations

import os
from typing import Sequence

import pandas as pd

from personas.model.extraction import ExtractionSettings
from personas.statements import load_statements
from personas.store.read import store_manifest

__all__ = ["causal_inputs", "checked_personas"]


def causal_inputs(store_dir: str | os.PathLike, model_name: str, checked: Sequence[str], others: Sequence[str] = (),
                  n_specificity: int = 4, *, source: pd.DataFrame | None = None,
                  ) -> tuple[pd.DataFrame, list[str], ExtractionSettings]:
    """Statements, excluded ids and extraction settings for ``causal_check`` from an activation store.

        statements, in_pools, extraction = causal_inputs("output/activations", model_name, ["agreeableness"])
        settings = CausalSettings(extraction=extraction)

    Parameters
    ----------
    checked : list of str
        Personas checked (with salient nodes).
    others : list of str
        Further analysed personas, to fill the specificity matrix up to ``n_specificity``.
    source : DataFrame, optional
        The study's statements table (``study_inputs(...).table``: bundled and the user's own);
        None: the bundled statements.

    Returns
    -------
    statements : DataFrame
        Every statement (``load_statements(..., n_per_direction=None)``) of the checked personas and
        of as many others as the specificity matrix takes.
    in_pools : list of str
        Ids of the stored statements (DeepScan's pools draw from them): never held out.
    extraction : ExtractionSettings
        The store's read position, template and wrap: the direction is read as the scans were.
    """
    extra = [p for p in others if p not in checked][: max(0, n_specificity - len(checked))]
    personas = list(dict.fromkeys([*checked, *extra]))
    manifests = {p: store_manifest(store_dir, model_name, p) for p in personas}
    first = manifests[personas[0]]
    template = first.get("template_mode", "auto")
    extraction = ExtractionSettings(position=first.get("position", "last"), wrap=first.get("wrap", "{statement}"),
                                    template=template if template in ("system", "user", "raw") else "auto")
    in_pools = [str(i) for m in manifests.values() for i in m["ids"]]
    return load_statements(personas, n_per_direction=None, source=source), in_pools, extraction


def checked_personas(salient_sets: dict, wanted: Sequence[str] | None) -> list[str]:
    """The personas the causal check can take: those of ``wanted`` (None: every one of ``salient_sets``) with
    a non-empty salient set; the others are named in one printed line."""
    wanted = list(salient_sets) if wanted is None else list(wanted)
    checked = [p for p in wanted if p in salient_sets and len(salient_sets[p])]
    skipped = sorted(set(wanted) - set(checked))
    if skipped:
        print(f"no salient nodes (or no run file) for {skipped}: not checked")
    return checked
