"""Deprecated: the layer analyses moved to the package :mod:`personas.layers` (one module per job).

This shim keeps ``from personas.layer_metrics import X`` working; import from
``personas.layers`` (or, in notebooks, ``utils_layers``) instead.
"""

from personas.layers import (  # noqa: F401
    CLASSIFIER_METRICS,
    CLASSIFIERS,
    CLUSTER_METRICS,
    LOWER_IS_BETTER,
    RESULT_COLUMNS,
    __all__,
    analyse_layers,
    check_layers,
    choose_layer,
    cluster_scores,
    cluster_separation,
    combine_results,
    cross_validate_classifier,
    direction_classification,
    direction_clusters,
    embed_2d,
    load_results,
    most_divergent_layers,
    pca_projections,
    persona_classification,
    relative_depth,
    save_results,
    select_metric_rows,
    synthetic_activations,
)
