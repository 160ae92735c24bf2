"""Directions from files in the causal check: another tool's vector, steered with our controls.

A persona given in ``causal_check(..., directions={persona: Direction})`` is steered along that
direction's unit vector instead of the unit ``mean(+) - mean(-)`` of its training statements.
Everything else is the persona's own: the held-out split, the gate, the steering scale
(``alpha x`` the mean norm of its training statements' hidden states at the layer, so a file
direction and ours are compared at the same strength), the random directions of the same norm,
the ablation values and the specificity matrix. The result records where each direction came
from and its cosine with our mean-difference direction at the layer ("their vector vs ours").
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, replace
from typing import Mapping

import numpy as np
import pandas as pd

from personas.causal.arms import Geometry, Site
from personas.model.directions import Direction, check_direction_fits

__all__ = ["OWN_SOURCE", "check_file_directions", "file_geometry", "vector_sha256"]

#: ``direction_source`` of a persona steered along its own training statements' direction.
OWN_SOURCE = "training statements"


def vector_sha256(direction: Direction) -> str:
    """SHA-256 of the vector's bytes (its own dtype, little-endian, C order): which vector was steered."""
    vec = np.ascontiguousarray(direction.vector, dtype=direction.vector.dtype.newbyteorder("<"))
    return hashlib.sha256(vec.tobytes()).hexdigest()


def _check_one(persona: str, direction, model, known: set, site: Site) -> None:
    where = f"directions[{persona!r}]"
    if not isinstance(direction, Direction):
        raise TypeError(f"{where} must be a Direction (load_direction, import_control_vector, "
                        f"direction_from_store); got {type(direction).__name__}")
    if persona not in known:
        raise ValueError(f"{where}: the statements hold no persona {persona!r} (the held-out split, gate and "
                         f"steering scale come from its statements); pass statements with its rows, or key the "
                         f"direction by one of {sorted(known)}")
    try:
        check_direction_fits(direction, model, blocks_path=site.blocks_path, final_norm=site.final_norm)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    if direction.layer != site.layer:
        raise ValueError(f"{where} is at layer {direction.layer}, the check runs at layer {site.layer}; pass "
                         f"layer={direction.layer}, or a direction made at layer {site.layer}")
    if not direction.norm > 0:
        raise ValueError(f"{where} is the zero vector: it has no direction to steer along")


def check_file_directions(directions, model, statements: pd.DataFrame, site: Site) -> dict[str, Direction]:
    """The file directions of a causal check, checked before any forward pass.

    Parameters
    ----------
    directions : mapping of str to Direction, or None
        ``{persona: Direction}``.
    model : the checked torch model
    statements : DataFrame
        The check's statements: each persona here needs its rows.
    site : Site
        Where the check edits: each direction must be at ``site.layer``.

    Returns
    -------
    dict
        ``{persona: Direction}`` (empty for None).

    Raises
    ------
    TypeError
        Not a mapping of persona names to Directions.
    ValueError
        A persona without statements; a direction for another model (hidden size, fingerprint,
        model type, depth: ``check_direction_fits``), at another layer, or the zero vector.
    """
    if directions is None:
        return {}
    if not isinstance(directions, Mapping):
        raise TypeError(f"directions must be a mapping {{persona: Direction}}; got {type(directions).__name__}")
    known = set(statements["persona"])
    for persona, direction in directions.items():
        if not isinstance(persona, str):
            raise TypeError(f"directions' keys must be persona names; got {persona!r}")
        _check_one(persona, direction, model, known, site)
    return dict(directions)


def file_geometry(ours: Geometry, direction: Direction) -> tuple[Geometry, dict]:
    """A persona's geometry steered along ``direction``, and the record of where it came from.

    Parameters
    ----------
    ours : Geometry
        The persona at the direction's layer, from its training statements.
    direction : Direction
        Checked by :func:`check_file_directions`.

    Returns
    -------
    geometry : Geometry
        ``ours`` with ``unit`` the direction's unit vector ``(hidden,)`` and ``norm`` its norm;
        the scale, ablation values and variances stay the training statements'.
    record : dict
        JSON-ready: the file's provenance, model, layer, dtype, norm, SHA-256 of the vector, and
        ``cosine_with_training_statements`` (with our unit ``mean(+) - mean(-)`` at the layer).
    """
    unit = direction.unit
    provenance = asdict(direction.provenance)
    provenance["personas"] = list(direction.provenance.personas)
    record = {
        "source": "file", "method": direction.provenance.method, "file": direction.provenance.source,
        "model": direction.model, "model_type": direction.model_type,
        "model_fingerprint": direction.model_fingerprint, "layer": direction.layer,
        "dtype": str(direction.vector.dtype), "norm": direction.norm, "file_scale": direction.scale,
        "sha256": vector_sha256(direction), "cosine_with_training_statements": float(unit @ ours.unit),
        "training_statements_norm": ours.norm, "provenance": provenance,
    }
    return replace(ours, unit=unit, norm=direction.norm), record
