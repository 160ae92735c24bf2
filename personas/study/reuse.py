"""Which notebooks of a study run again: those whose inputs, settings or code changed.

Each notebook is a stage (:mod:`personas._core.stages`). Its fingerprint covers its parameters,
the user's input files, the code it runs (the notebook, the packages of its stages, the bundled
data) and the artifacts of the notebook before it (their checksums, executed notebooks left out),
so a change reaches exactly the stages downstream of it. Inside a notebook that runs, the
activation store and DeepScan's run files still reuse what is unchanged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from personas._core.stages import StageRecord, code_fingerprint, read_stages, reusable, stage_fingerprint

__all__ = ["NOTEBOOK_CODE", "STAGE_NAMES", "StagePlan", "resolve_force", "plan_stage"]

_LAYER_CODE = ("personas/_core", "personas/statements", "personas/store", "personas/model", "personas/layers",
               "personas/viz", "utils_layers.py", "utils_viz.py", "data/paper_personas.json", "data/statements.parquet")
_NODE_CODE = _LAYER_CODE + ("personas/scans", "personas/nodes", "personas/causal", "deepscan", "utils_nodes.py")
#: What each notebook runs, besides itself: a change in any of these files runs it again.
NOTEBOOK_CODE = {
    "representation_extraction.ipynb": _LAYER_CODE,
    "run_deepscan.ipynb": _NODE_CODE,
    "vis_top_nodes.ipynb": _NODE_CODE,
}
#: Parameters that say where, not what: a study folder moved with its store is still reusable (the
#: store's manifests and the input files' checksums are checked instead).
_WHERE = ("out_dir", "store_dir", "statements_file", "topics_file")
#: ``--force`` names: a notebook's file name, its stem, or the stage it holds.
STAGE_NAMES = {
    "layers": "representation_extraction.ipynb", "extraction": "representation_extraction.ipynb",
    "scans": "run_deepscan.ipynb", "deepscan": "run_deepscan.ipynb",
    "nodes": "vis_top_nodes.ipynb", "causal": "vis_top_nodes.ipynb",
}


@dataclass(frozen=True)
class StagePlan:
    """One notebook's decision: its fingerprint, whether it runs, and why in a few words."""

    notebook: str
    fingerprint: str
    run: bool
    why: str


def resolve_force(names: Sequence[str] | None, notebooks: Sequence[str]) -> frozenset[str]:
    """The notebooks ``--force`` names (``"all"``: every one); an unknown name is an error listing the choices."""
    chosen: set[str] = set()
    for name in names or ():
        if name == "all":
            return frozenset(notebooks)
        by_stem = {Path(nb).stem: nb for nb in notebooks}
        notebook = name if name in notebooks else by_stem.get(name) or STAGE_NAMES.get(name)
        if notebook is None:
            choices = ["all", *sorted(STAGE_NAMES), *sorted(by_stem)]
            raise ValueError(f"--force {name!r} names no stage; choose from {choices}")
        chosen.add(notebook)
    return frozenset(chosen)


def _outputs_digest(record: StageRecord | None) -> str:
    """A digest of a stage's recorded artifacts (its executed notebook left out: it holds timings)."""
    if record is None:
        return "none"
    files = {k: v for k, v in record.files.items() if not k.startswith("notebooks/")}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode("utf-8")).hexdigest()


def plan_stage(out_dir: Path, root: Path, notebook: str, params: Mapping[str, Any], *, upstream: Sequence[str],
               input_files: Mapping[str, Any], forced: bool) -> StagePlan:
    """Whether ``notebook`` runs in ``out_dir``, given its parameters and the stages before it (``upstream``)."""
    stages = read_stages(out_dir)
    settings = {k: v for k, v in params.items() if k not in _WHERE}
    fingerprint = stage_fingerprint(
        notebook=notebook, parameters=settings,
        inputs={k: (v.get("sha256") if isinstance(v, Mapping) else v) for k, v in input_files.items()},
        code=code_fingerprint(root, (notebook, *NOTEBOOK_CODE[notebook])),
        upstream={name: _outputs_digest(stages.get(name)) for name in upstream},
    )
    if forced:
        return StagePlan(notebook, fingerprint, True, "forced (--force)")
    ok, why = reusable(out_dir, notebook, fingerprint)
    return StagePlan(notebook, fingerprint, not ok, why)
