"""Layer-side API for the notebooks: statements, models, prompts, extraction, the store, layer metrics.

The notebook API is exactly the names below (``__all__``); each is defined in one small
module of the ``personas`` package, named on its import line, where the code and its
docstring live:

- ``personas.statements``: persona statements and topics (``load_statements``, ``load_topics``)
- ``personas.model.loading``: model and tokenizer loading (``load_model``)
- ``personas.model.prompts``: prompt formatting with chat templates
- ``personas.model.hooks``: forward hooks on transformer blocks
- ``personas.model.extraction``: batched per-layer activation extraction
- ``personas.store``: the on-disk activation store (safetensors + JSON manifest)
- ``personas.layers``: which layers separate personas, with controls
- ``personas.model.untrained``, ``personas.layers.untrained``: the untrained-model control (random weights)
- ``personas._core.parallel``: the heavy loops on a Dask cluster (``dask_cluster``)
- ``personas.model.interventions``: edit the residual stream at a layer (ablate nodes, add a vector)
- ``personas._core.io``: atomic JSON and table writers shared by every notebook

Layer convention everywhere: index 0 = embeddings, index i = output of block i
(as in Hugging Face ``hidden_states``).
"""

from personas._core.parallel import dask_cluster, parallel_jobs
from personas.model.batching import tokenize_prompts
from personas.model.extraction import READ_POSITIONS, ExtractionSettings, extract_activations
from personas.model.hooks import (
    BLOCK_PATHS,
    DEFAULT_LAYERS_RULE,
    FINAL_NORM_NAMES,
    LAYER_CONVENTION,
    LayerCapture,
    capture_layers,
    default_layers,
    find_blocks,
    find_final_norm,
    layer_info,
    resolve_layers,
)
from personas.model.interventions import ablate_nodes, add_vector, edit_layer
from personas._core.io import read_json, write_json, write_table, write_text
from personas.layers import (
    CLASSIFIER_METRICS,
    CLASSIFIERS,
    CLUSTER_METRICS,
    LOWER_IS_BETTER,
    RESULT_COLUMNS,
    LayerControls,
    LayerProtocol,
    ProbeSettings,
    WORDING_STORE,
    analyse_layers,
    choose_layer,
    cluster_scores,
    cluster_separation,
    combine_results,
    cross_validate_classifier,
    direction_classification,
    direction_clusters,
    embed_2d,
    load_results,
    load_wording_controls,
    most_divergent_layers,
    pca_projections,
    persona_classification,
    relative_depth,
    save_results,
    select_metric_rows,
    synthetic_activations,
    wording_store_dir,
)
from personas.model.loading import (
    DEFAULT_MODEL,
    DTYPES,
    MODEL_ALIASES,
    default_position,
    is_encoder,
    load_model,
    model_info,
    resolve_device,
    resolve_model,
)
from personas.model.prompts import TEMPLATE_MODES, Prompts, format_prompts
from personas.statements import (
    DATA_DIR,
    DIRECTIONS,
    STATEMENT_COLUMNS,
    list_personas,
    load_short_names,
    load_statements,
    load_topics,
    paper_personas,
    persona_counts,
)
from personas.store.paths import STORE_FORMAT_VERSION, list_stored, model_slug, store_path
from personas.model.extraction import extract_to_store
from personas.model.untrained import untrained_model, untrained_name
from personas.layers.untrained import untrained_layer_control
from personas.store.read import load_activations, load_layers, store_manifest, verify_stored
from personas.store.fingerprints import model_fingerprint, statements_fingerprint, store_fingerprint
from personas.store.write import save_activations

__all__ = [
    # personas._core.parallel
    "dask_cluster", "parallel_jobs",
    # personas.statements
    "DATA_DIR", "STATEMENT_COLUMNS", "DIRECTIONS", "load_topics", "load_short_names", "paper_personas",
    "list_personas", "persona_counts", "load_statements",
    # personas.model.loading
    "DEFAULT_MODEL", "MODEL_ALIASES", "DTYPES", "resolve_model", "resolve_device", "load_model",
    "model_info", "is_encoder", "default_position",
    # personas.model.prompts
    "TEMPLATE_MODES", "Prompts", "format_prompts",
    # personas.model.hooks
    "LAYER_CONVENTION", "BLOCK_PATHS", "FINAL_NORM_NAMES", "find_blocks", "find_final_norm", "layer_info",
    "DEFAULT_LAYERS_RULE", "default_layers", "resolve_layers", "LayerCapture", "capture_layers",
    # personas.model.interventions
    "edit_layer", "ablate_nodes", "add_vector",
    # personas.model.extraction
    "READ_POSITIONS", "ExtractionSettings", "tokenize_prompts", "extract_activations",
    # personas.store
    "STORE_FORMAT_VERSION", "model_slug", "store_path", "list_stored", "store_manifest", "load_activations",
    "load_layers", "save_activations", "extract_to_store", "model_fingerprint", "statements_fingerprint",
    "store_fingerprint", "verify_stored",
    # personas.layers
    "CLUSTER_METRICS", "CLASSIFIER_METRICS", "CLASSIFIERS", "LOWER_IS_BETTER", "RESULT_COLUMNS", "LayerProtocol",
    "ProbeSettings", "LayerControls",
    "relative_depth", "pca_projections", "cluster_scores", "direction_clusters", "cross_validate_classifier",
    "cluster_separation", "persona_classification", "direction_classification", "analyse_layers",
    "save_results", "load_results", "combine_results", "select_metric_rows", "most_divergent_layers",
    "choose_layer", "embed_2d", "synthetic_activations", "WORDING_STORE", "wording_store_dir",
    "load_wording_controls",
    # personas.model.untrained, personas.layers.untrained
    "untrained_model", "untrained_name", "untrained_layer_control",
    # personas._core.io
    "read_json", "write_json", "write_table", "write_text",
]
