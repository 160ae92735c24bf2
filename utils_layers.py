"""Layer-side API for the notebooks: statements, models, extraction, the store, layer metrics, directions, I/O.

The notebook API is exactly the names below (``__all__``): what the notebooks and the docs
use. Each is defined in one module of the ``personas`` package, named on its import line,
where the code and its docstring live; everything else stays importable from its stage
module (``personas.model.hooks``, ``personas.layers``, ``personas.store.read``, ...).

Importing this facade shows the package's own warnings (``personas._core.notes``) in one line,
without the echoed source line; other warnings are shown as Python shows them.

Layer convention everywhere: index 0 = embeddings, index i = output of block i
(as in Hugging Face ``hidden_states``).
"""

import personas._core.notes as _notes
from personas._core.io import write_table
from personas._core.parallel import dask_scheduler, parallel_jobs
from personas.layers import (
    CLUSTER_METRICS,
    LayerControls,
    LayerProtocol,
    ProbeSettings,
    analyse_layers,
    choose_layer,
    combine_results,
    load_wording_controls,
    most_divergent_layers,
    read_chosen_layer,
    save_chosen_layer,
    save_results,
)
from personas.model.direction_files import export_control_vector, import_control_vector, load_direction, save_direction
from personas.model.directions import Direction, direction_from_store
from personas.model.extraction import ExtractionSettings, extract_to_store
from personas.model.loading import load_model
from personas.model.plan import extract_untrained_control, extract_with_controls, extraction_plan
from personas.model.untrained import UntrainedControl
from personas.model.projection import project_texts
from personas.layers.untrained import untrained_layer_control
from personas.statements import list_personas, load_statements, study_inputs
from personas.store.fingerprints import store_fingerprints
from personas.store.read import load_layers, store_manifest

__all__ = [
    # personas.statements
    "list_personas", "load_statements", "study_inputs",
    # personas.model
    "load_model", "extraction_plan", "ExtractionSettings", "extract_with_controls", "extract_to_store",
    "UntrainedControl", "extract_untrained_control",
    # personas.model: persona directions, scoring texts on them, direction files
    "Direction", "direction_from_store", "project_texts", "save_direction", "load_direction",
    "export_control_vector", "import_control_vector",
    # personas.store
    "load_layers", "store_manifest", "store_fingerprints",
    # personas.layers
    "CLUSTER_METRICS", "LayerProtocol", "ProbeSettings", "LayerControls", "analyse_layers", "save_results", "most_divergent_layers",
    "choose_layer", "save_chosen_layer", "read_chosen_layer", "load_wording_controls", "combine_results",
    "untrained_layer_control",
    # personas._core
    "dask_scheduler", "parallel_jobs", "write_table",
]

_notes.one_line_warnings()  # this package's warnings in one line in the notebooks
