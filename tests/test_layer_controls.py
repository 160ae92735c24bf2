"""Controls that can fail: the wording and length controls, and constant layers that do not crash."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import utils_layers as ul
from personas.model.prompts import format_prompts
from personas.store.paths import wording_store_dir
from tiny_models import make_model, make_tokenizer

MODEL = "tiny/llama-3"
PERSONAS = ["openness", "politically-liberal"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    model, tok = make_model("llama"), make_tokenizer("llama3")
    df = ul.load_statements(PERSONAS, n_per_direction=12, seed=0)
    ul.extract_to_store(model, tok, df, model_name=MODEL, layers="all", store_dir=store, progress=False, settings=ul.ExtractionSettings(position="last", batch_size=8))
    ul.extract_to_store(model, tok, df, model_name=MODEL, layers=[0], store_dir=wording_store_dir(store), progress=False, settings=ul.ExtractionSettings(position="mean", batch_size=8))
    return store, tok, df


def test_old_control_is_constant_and_the_wording_control_is_not(stores):
    store, tok, df = stores
    activations, meta = ul.load_layers(store, MODEL, PERSONAS)
    assert len(np.unique(activations[0], axis=0)) == 1  # the template's last token, for every statement
    wording, lengths = ul.load_wording_controls(store, MODEL, PERSONAS, meta)
    assert wording.shape == activations[0].shape
    assert len(np.unique(wording, axis=0)) == len(meta)
    # brute force: the mean of the input embeddings of each statement's own tokens
    model = make_model("llama")
    emb = model.get_input_embeddings().weight.detach().numpy()
    text = meta["statement"].iloc[0]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert np.linalg.norm(wording[0] - emb[ids].mean(0)) < 0.5 * np.linalg.norm(emb[ids].mean(0))
    prompts = format_prompts(tok, list(meta["statement"]))
    assert lengths.tolist() == [len(tok(t, add_special_tokens=prompts.add_special_tokens)["input_ids"])
                                for t in prompts.texts]


def test_analyse_layers_at_last_with_layer0_and_feature_controls(stores):
    store, _, _ = stores
    activations, meta = ul.load_layers(store, MODEL, PERSONAS)
    wording, lengths = ul.load_wording_controls(store, MODEL, PERSONAS, meta)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = ul.analyse_layers(activations, meta, model_name=MODEL, n_blocks=3,
                                  protocol=ul.LayerProtocol(n_reps=2, n_per_cluster=10),
                                  probes=ul.ProbeSettings(n_folds=3, classifiers=("logistic",)),
                                  controls=ul.LayerControls(wording=wording, lengths=lengths), n_jobs=1, progress=False)
    assert any("constant" in str(w.message) for w in caught)
    assert {"none", "shuffled_labels", "wording", "length"} <= set(table["control"])
    layer0 = table[(table["layer"] == 0) & (table["control"] == "none")].set_index(["analysis", "persona", "metric"])
    # a constant layer scores what it is: no separation, chance accuracy
    assert layer0.loc[("cluster", "openness", "silhouette"), "mean"] == 0.0
    assert np.isnan(layer0.loc[("cluster", "openness", "davies_bouldin"), "mean"])
    assert layer0.loc[("persona_classifier", "ALL", "accuracy"), "mean"] == pytest.approx(0.5, abs=0.1)
    word = table[table["control"] == "wording"]
    assert (word["layer"] == 0).all() and set(word["analysis"]) == {"cluster", "persona_classifier",
                                                                    "direction_classifier"}
    sil = word[(word["metric"] == "silhouette")]["mean"]
    assert sil.notna().all() and (sil != 0).all()  # the words vary, so the control can fail
    length = table[table["control"] == "length"]
    assert length["mean"].notna().any()
    assert table.attrs["metadata"]["feature_controls"].keys() == {"wording", "length"}


def test_feature_control_errors_and_the_plot_draws_them(stores, tmp_path):
    store, _, _ = stores
    activations, meta = ul.load_layers(store, MODEL, PERSONAS)
    with pytest.raises(ValueError, match="wording must be"):
        ul.analyse_layers(activations, meta, model_name=MODEL, n_blocks=3,
                          controls=ul.LayerControls(wording=np.zeros((3, 32))))
    with pytest.raises(ValueError, match="lengths must be"):
        ul.analyse_layers(activations, meta, model_name=MODEL, n_blocks=3,
                          controls=ul.LayerControls(lengths=np.zeros((len(meta), 2))))
    with pytest.raises(FileNotFoundError, match="position='mean'"):
        ul.load_wording_controls(tmp_path, MODEL, PERSONAS)
    import utils_viz as uv

    table = pd.DataFrame({
        "model": MODEL, "layer": [0, 1, 2, 0, 0], "relative_depth": [0, 1 / 3, 2 / 3, 0, 0], "persona": "p",
        "analysis": "cluster", "classifier": "none", "control": ["none", "none", "none", "wording", "length"],
        "metric": "silhouette", "mean": [0.0, 0.2, 0.3, 0.15, 0.05], "std": 0.0, "n": 2,
    })
    fig = uv.plot_metric_by_layer(table, "silhouette")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(label.startswith("wording") for label in labels) and any(label.startswith("length") for label in labels)
    assert not any(label.startswith("embedding layer 0") for label in labels)
    levels = sorted(round(line.get_ydata()[0], 6) for line in ax.get_lines() if len(set(line.get_ydata())) == 1
                    and line.get_xdata()[0] == 0 and line.get_xdata()[-1] == 1)
    assert levels == [0.05, 0.15]
