"""Position "last" on a decoder with a chat template: layer 0 is one constant vector, and nothing crashes."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from personas.model.extraction import ExtractionSettings, extract_activations
from personas.layers import LayerProtocol, ProbeSettings, analyse_layers, cluster_scores
from tests.tiny_models import make_model, make_tokenizer, tiny_statements


@pytest.fixture(scope="module")
def last_token_layers():
    tok = make_tokenizer("chatml")
    model = make_model("llama")
    texts = list(tiny_statements(60, "agreeableness")) + list(tiny_statements(60, "narcissism"))
    acts, info = extract_activations(model, tok, texts, [0, 1, 3], ExtractionSettings(position="last"), progress=False)
    meta = pd.DataFrame({
        "persona": ["agreeableness"] * 60 + ["narcissism"] * 60,
        "direction": (["positive"] * 30 + ["negative"] * 30) * 2,
    })
    return acts, meta, info


def test_layer_zero_at_the_last_token_is_constant(last_token_layers):
    acts, _, info = last_token_layers
    assert info["template_mode"] == "system"
    assert len(np.unique(acts[0], axis=0)) == 1  # the template's final token, the same for every statement
    assert len(np.unique(acts[3], axis=0)) == len(acts[3])


def test_analyse_layers_scores_a_constant_layer_instead_of_crashing(last_token_layers):
    acts, meta, _ = last_token_layers
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = analyse_layers(acts, meta, model_name="tiny", n_blocks=3,
                               protocol=LayerProtocol(n_reps=2, n_per_cluster=20),
                               probes=ProbeSettings(n_folds=3, n_trees=5), n_jobs=1, progress=False)
    assert any("constant" in str(w.message) or "identical" in str(w.message) for w in caught)
    zero = table[(table["layer"] == 0) & (table["control"] == "none")]
    zero = zero.groupby(["analysis", "classifier", "metric"])[["mean"]].mean()  # over personas
    assert zero.loc[("cluster", "none", "silhouette"), "mean"] == 0.0
    assert zero.loc[("cluster", "none", "centroid_distance"), "mean"] == 0.0
    assert np.isnan(zero.loc[("cluster", "none", "davies_bouldin"), "mean"])  # 0/0, not a perfect 0
    # a constant layer can only be classified as the majority class: 1/2 for two balanced personas
    for clf in ("logistic", "extra_trees"):
        assert zero.loc[("persona_classifier", clf, "accuracy"), "mean"] == pytest.approx(0.5, abs=0.05)
    assert zero.loc[("direction_classifier", "logistic", "accuracy"), "mean"] == pytest.approx(0.5, abs=0.1)
    assert np.isfinite(table.loc[table["layer"] == 3, "mean"]).all()


def test_cluster_scores_of_identical_points():
    with pytest.warns(UserWarning, match="identical"):
        out = cluster_scores(np.ones((6, 3)), ["a", "a", "a", "b", "b", "b"])
    assert out["silhouette"] == 0.0 and out["centroid_distance"] == 0.0
    assert np.isnan(out["calinski_harabasz"]) and np.isnan(out["davies_bouldin"])


def test_a_constant_layer_is_said_once_naming_the_layer_and_the_personas(last_token_layers):
    from personas._core.notes import ConstantFeaturesWarning

    acts, meta, _ = last_token_layers
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        analyse_layers(acts, meta, model_name="tiny", n_blocks=3, protocol=LayerProtocol(n_reps=2, n_per_cluster=20),
                       probes=ProbeSettings(n_folds=3, n_trees=5), n_jobs=2, progress=False)
    constant = [str(w.message) for w in caught if issubclass(w.category, ConstantFeaturesWarning)]
    # three analyses, two personas, processes or not: one line, for layer 0 only
    assert len(constant) == 1, constant
    assert constant[0].startswith("layer 0: the activations are constant for 2 of 2 personas (agreeableness, narcissism)")
    assert "wording control" in constant[0]


def test_personas_warnings_are_shown_in_one_line(capsys):
    from personas._core.notes import StudyNote, one_line_warnings

    one_line_warnings()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = warnings.showwarning  # catch_warnings restores the hook afterwards
        one_line_warnings()
        warnings.warn("level 1 (within topic) skipped for ['x']: in no topic", StudyNote)
    err = capsys.readouterr().err
    assert err == "StudyNote: level 1 (within topic) skipped for ['x']: in no topic\n"
