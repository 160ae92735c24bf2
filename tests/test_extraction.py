"""Hook extraction on tiny random models: hooks = output_hidden_states, batching, padding, early stop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from personas.model.batching import tokenize_prompts
from personas.model.extraction import ExtractionSettings, extract_activations
from personas.model.hooks import capture_layers, find_blocks, find_final_norm, layer_info, resolve_layers
from personas.model.prompts import format_prompts
from tiny_models import ARCHITECTURES, make_model, make_tokenizer, tiny_statements

N_BLOCKS = 3
ATOL = 1e-5


@pytest.fixture(scope="module")
def statements():
    return list(tiny_statements(12))


@pytest.fixture(scope="module")
def tokenizers():
    return {side: make_tokenizer("llama3", padding_side=side) for side in ("left", "right")}


@pytest.fixture(scope="module")
def models():
    return {arch: make_model(arch) for arch in ARCHITECTURES}


def reference(model, tokenizer, statements, token_index):
    """Brute force: one statement per forward pass, ``output_hidden_states``, pick a token.

    ``token_index(i, ids)`` gives the token index (or list of indices to average) of statement i.
    """
    prompts = format_prompts(tokenizer, statements)
    out = {}
    for i, text in enumerate(prompts.texts):
        enc = tokenizer(text, add_special_tokens=prompts.add_special_tokens, return_tensors="pt")
        with torch.no_grad():
            hs = model(**enc, output_hidden_states=True).hidden_states
        idx = token_index(i, enc["input_ids"][0])
        for layer, h in enumerate(hs):
            out.setdefault(layer, []).append(h[0, idx].mean(0) if isinstance(idx, list) else h[0, idx])
    return {layer: torch.stack(v).numpy() for layer, v in out.items()}


def assert_close(a: dict, b: dict, atol=ATOL):
    assert sorted(a) == sorted(b)
    for layer in a:
        np.testing.assert_allclose(a[layer], b[layer], atol=atol, rtol=1e-4, err_msg=f"layer {layer}")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_hooks_equal_hidden_states_batched_both_paddings(arch, models, tokenizers, statements):
    model = models[arch]
    ref = reference(model, tokenizers["right"], statements, lambda i, ids: len(ids) - 1)
    assert len(ref) == N_BLOCKS + 1
    for side, tok in tokenizers.items():
        acts, info = extract_activations(model, tok, statements, "all", ExtractionSettings(batch_size=5), progress=False)
        assert info["padding_side"] == side and info["n_blocks"] == N_BLOCKS
        assert all(a.dtype == np.float32 and a.shape == (len(statements), 32) for a in acts.values())
        assert_close(acts, ref)
    # the statements really differ (no degenerate constant output)
    assert np.ptp(acts[N_BLOCKS], axis=0).max() > 1e-3


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2"])
def test_batched_equals_one_by_one(arch, models, tokenizers, statements):
    tok = tokenizers["left"]
    batched, _ = extract_activations(models[arch], tok, statements, [0, 2, 3], ExtractionSettings(batch_size=12), progress=False)
    single, _ = extract_activations(models[arch], tok, statements, [0, 2, 3], ExtractionSettings(batch_size=1), progress=False)
    assert_close(batched, single)


def test_last_layer_is_final_norm_output_and_differs_from_block_output(models, tokenizers, statements):
    model, tok = models["llama"], tokenizers["right"]
    assert find_final_norm(model) == ("norm", model.norm)
    enc = tok(format_prompts(tok, statements[:2]).texts, add_special_tokens=False, padding=True, return_tensors="pt")
    with torch.no_grad():
        hs = model(**enc, output_hidden_states=True).hidden_states
    with torch.no_grad(), capture_layers(model, [N_BLOCKS], final_norm=None) as cap:
        raw_block = cap.run(**enc)[N_BLOCKS]
    with torch.no_grad(), capture_layers(model, [N_BLOCKS]) as cap:
        normed = cap.run(**enc)[N_BLOCKS]
    torch.testing.assert_close(normed, hs[N_BLOCKS])
    assert (raw_block - hs[N_BLOCKS]).abs().max() > 1e-2  # transformers 5 ties hidden_states[-1] to the normed output
    # BERT-style encoders have no final norm: the last layer is the last block's output
    assert find_final_norm(models["bert"]) == (None, None)


def test_early_stop_skips_later_blocks_and_changes_nothing(models, tokenizers, statements):
    model, tok = models["qwen2"], tokenizers["right"]
    blocks = find_blocks(model)[1]
    calls = []
    handle = blocks[2].register_forward_hook(lambda *a: calls.append(1))
    try:
        stopped, _ = extract_activations(model, tok, statements, [0, 1], ExtractionSettings(batch_size=4), progress=False)
        assert calls == []  # block 3 (index 2) never ran
        enc = tok(format_prompts(tok, statements).texts, add_special_tokens=False, padding=True, return_tensors="pt")
        with torch.no_grad(), capture_layers(model, [0, 1], stop_early=False, reduce=lambda h: h[:, -1]) as cap:
            cap.run(**enc)
        assert len(calls) == 1
    finally:
        handle.remove()
    full, _ = extract_activations(model, tok, statements, "all", ExtractionSettings(batch_size=4), progress=False)
    assert_close(stopped, {k: full[k] for k in (0, 1)})


def test_hooks_are_removed_even_on_error(models):
    model = models["llama"]
    n_hooks = lambda: sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())  # noqa: E731
    before = n_hooks()
    with pytest.raises(RuntimeError, match="boom"):
        with capture_layers(model, "all"):
            assert n_hooks() == before + N_BLOCKS + 1
            raise RuntimeError("boom")
    assert n_hooks() == before


def test_positions_statement_token_and_mean_match_brute_force(models, tokenizers, statements):
    """Statement tokens found by offsets equal the tokens of the statement between the template parts."""
    model = models["mistral"]
    tok = tokenizers["right"]
    prompts = format_prompts(tok, statements)
    _, token_sets = tokenize_prompts(tok, prompts, need_spans=True)
    for text, (start, end), idx in zip(prompts.texts, prompts.spans, token_sets):
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        # brute force: decode the chosen tokens back to the statement text
        assert tok.decode([enc["input_ids"][t] for t in idx]).strip() == text[start:end]
        assert idx == list(range(idx[0], idx[-1] + 1))  # contiguous
    for side, tk in tokenizers.items():
        last_stmt, _ = extract_activations(model, tk, statements, "all", ExtractionSettings(position="last_statement_token", batch_size=5), progress=False)
        mean, _ = extract_activations(model, tk, statements, "all", ExtractionSettings(position="mean", batch_size=5), progress=False)
        assert_close(last_stmt, reference(model, tk, statements, lambda i, ids: token_sets[i][-1]))
        assert_close(mean, reference(model, tk, statements, lambda i, ids: token_sets[i]))
    last, _ = extract_activations(model, tok, statements, [2], progress=False)
    assert np.abs(last[2] - last_stmt[2]).max() > 1e-3  # paper's "last" is the assistant header, not the statement


def test_causal_lm_model_and_manual_blocks_path(tokenizers, statements, models):
    lm = make_model("llama", causal_lm=True)
    assert find_blocks(lm)[0] == "model.layers"
    assert find_final_norm(lm)[0] == "model.norm"
    tok = tokenizers["right"]
    acts, info = extract_activations(lm, tok, statements[:4], [1, 3], progress=False)
    ref = reference(lm.model, tok, statements[:4], lambda i, ids: len(ids) - 1)
    assert_close(acts, {k: ref[k] for k in (1, 3)})
    manual, info2 = extract_activations(lm, tok, statements[:4], [1, 3], ExtractionSettings(blocks_path="model.layers"), progress=False)
    assert info2["blocks_path"] == "model.layers"
    assert_close(manual, acts)


def test_find_blocks_errors_and_layer_validation(models):
    with pytest.raises(ValueError, match="not a non-empty ModuleList"):
        find_blocks(models["llama"], "norm")
    with pytest.raises(AttributeError, match="no submodule 'nope.layers'"):
        find_blocks(models["llama"], "nope.layers")

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stack = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)])
            self.heads = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(2)])

    with pytest.raises(ValueError, match=r"candidate ModuleLists: 'stack' \(3 x Linear\), 'heads' \(2 x Linear\).*blocks_path"):
        find_blocks(Odd())
    assert find_blocks(Odd(), "stack")[0] == "stack"
    assert resolve_layers("all", 3) == [0, 1, 2, 3]
    assert resolve_layers([3, 1, 1], 3) == [1, 3]
    with pytest.raises(ValueError, match=r"layers \[4\] out of range: this model has 3 blocks, so valid layers are 0..3"):
        resolve_layers([1, 4], 3)
    with pytest.raises(ValueError, match="'all' or a list of ints"):
        resolve_layers("last", 3)


@pytest.mark.parametrize(
    "arch, path, norm",
    [("llama", "layers", "norm"), ("gpt2", "h", "ln_f"), ("gpt_neox", "layers", "final_layer_norm"),
     ("bert", "encoder.layer", None), ("phi3", "layers", "norm"), ("granite", "layers", "norm")],
)
def test_layer_info_per_architecture(arch, path, norm, models):
    info = layer_info(models[arch])
    assert (info["blocks_path"], info["final_norm"], info["n_blocks"], info["hidden_size"]) == (path, norm, 3, 32)


def test_argument_errors(models, tokenizers, statements):
    model, tok = models["llama"], tokenizers["right"]
    with pytest.raises(ValueError, match="position must be one of"):
        ExtractionSettings(position="first")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ExtractionSettings(batch_size=0)
    with pytest.raises(TypeError, match="settings must be an ExtractionSettings"):
        extract_activations(model, tok, statements, [1], {"batch_size": 2}, progress=False)
    with pytest.raises(ValueError, match="not one string"):
        extract_activations(model, tok, "I like tea", [1], progress=False)
    with pytest.raises(ValueError, match="out of range"):
        extract_activations(model, tok, statements, [7], progress=False)
