"""Layer localisation: which layers separate personas, how strongly, and whether that is more than wording.

Three analyses, each run per layer on plain arrays (activations ``(n_statements, hidden_size)``
plus row-aligned labels), each reported beside two controls:

``cluster``
    The paper's protocol, per persona: PCA of ``n_per_cluster`` ``+`` and ``n_per_cluster`` ``-`` statements,
    then silhouette, Calinski-Harabasz, Davies-Bouldin and the Euclidean distance between the
    two centroids on the projections; ``n_reps`` seeded repetitions, mean and std.
``persona_classifier``
    Across personas: predict the persona from the activations with ExtraTrees (20 trees, as
    published) and a linear probe, in ONE stratified k-fold pass per classifier that scores
    accuracy, weighted precision and weighted F1 on the same predictions (the published code
    ran three separate cross-validations, one per metric).
``direction_classifier``
    Within each persona: predict ``+`` vs ``-`` (the linear probe by default; ExtraTrees on request).

Controls: the embedding layer (index 0, added automatically when it is in the activations), the
feature controls ``wording`` (layer 0 averaged over the statement's own tokens) and ``length`` (its
token count) when given (``controls``), and ``shuffled_labels``, the same pipeline on randomly permuted labels (same folds, same samples), which
should sit at chance. Results come as one tidy table (see ``RESULT_COLUMNS``); ``most_divergent_layers``
names the layers that separate personas most and whether they fall in the final third of the model.

Seeds: every random choice (samples, folds, permutations, trees, randomized SVD) derives from ``seed``
and a stable key (analysis, persona, repetition or fold), never from the layer, so all layers are
compared on the same statements, folds and permutations, and results do not depend on ``n_jobs``.

Modules, one job each: ``indices`` (relative depth, one layer's matrix), ``pca`` (principal components),
``clusters`` (the cluster protocol), ``classifiers`` (cross-validated classifiers and probes),
``analyses`` (the drivers over personas and layers), ``settings`` (``LayerProtocol``, ``ProbeSettings``, ``LayerControls``), ``controls`` (the wording and length controls), ``results`` (tables and choosing a layer),
``embedding`` (2-D views), ``synthetic`` (planted test data).
"""

from personas.layers.analyses import analyse_layers, cluster_separation, direction_classification, persona_classification
from personas.layers.classifiers import CLASSIFIER_METRICS, cross_validate_classifier
from personas.layers.clusters import CLUSTER_METRICS, cluster_scores, direction_clusters
from personas.layers.controls import WORDING_STORE, load_wording_controls, wording_store_dir
from personas.layers.embedding import embed_2d
from personas.layers.indices import relative_depth
from personas.layers.pca import pca_projections
from personas.layers.results import (
    CHOSEN_LAYER_FILE,
    LOWER_IS_BETTER,
    RESULT_COLUMNS,
    choose_layer,
    combine_results,
    load_results,
    most_divergent_layers,
    read_chosen_layer,
    save_chosen_layer,
    save_results,
    select_metric_rows,
)
from personas.layers.settings import CLASSIFIERS, LayerControls, LayerProtocol, ProbeSettings
from personas.layers.synthetic import synthetic_activations

__all__ = [
    "CLUSTER_METRICS",
    "CLASSIFIER_METRICS",
    "CLASSIFIERS",
    "LOWER_IS_BETTER",
    "RESULT_COLUMNS",
    "LayerProtocol",
    "ProbeSettings",
    "LayerControls",
    "relative_depth",
    "pca_projections",
    "cluster_scores",
    "direction_clusters",
    "cross_validate_classifier",
    "cluster_separation",
    "persona_classification",
    "direction_classification",
    "analyse_layers",
    "save_results",
    "load_results",
    "combine_results",
    "select_metric_rows",
    "most_divergent_layers",
    "choose_layer",
    "CHOSEN_LAYER_FILE",
    "save_chosen_layer",
    "read_chosen_layer",
    "embed_2d",
    "synthetic_activations",
    "WORDING_STORE",
    "wording_store_dir",
    "load_wording_controls",
]
