"""Steered generation: the cached, left-padded loop against ``model.generate``, a no-cache
recomputation, one prompt at a time, and a count of the positions the hook edits.

Tiny random models (Llama, GPT-2, Gemma-2 with a sliding window shorter than the texts) and
the embedded SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from personas.model.generation import NEUTRAL_PROMPTS, Sampling, prompt_token_ids, steer_generate
from personas.model.hooks import find_blocks
from personas.model.interventions import add_vector, edit_layer
from tests.tiny_models import make_model, make_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["Tell me about yourself.", "What matters most in life, and why do you think so?", "Hi"]
TINY = ["llama", "gpt2", "gemma2"]


@pytest.fixture(scope="module", params=TINY)
def tiny(request):
    tok = make_tokenizer("llama3" if request.param != "gpt2" else None)
    model = make_model(request.param, seed=1, causal_lm=True, vocab_size=len(tok))
    model.generation_config.eos_token_id = []  # random models: no end of sequence, every text runs to the end
    return request.param, model, tok


def unit_vector(hidden: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(hidden)
    return (v / np.linalg.norm(v)).astype(np.float32)


def layer_scale(model, tok, layer: int) -> float:
    """Mean norm of the hidden states at ``layer`` over one prompt (the steering scale)."""
    ids = torch.tensor([prompt_token_ids(tok, PROMPTS[1])[0]])
    with torch.no_grad():
        h = model(input_ids=ids, output_hidden_states=True).hidden_states[layer][0]
    return float(h.norm(dim=-1).mean())


def recompute(model, prompt_ids, vector, alpha, layer, positions, n_tokens):
    """Greedy decoding without a cache: every step runs the whole sequence, edited where ``positions`` says."""
    seq, n_prompt, out, logps = list(prompt_ids), len(prompt_ids), [], []
    delta = alpha * torch.from_numpy(vector)
    for _ in range(n_tokens):
        keep = torch.zeros(len(seq), dtype=torch.bool)
        if positions in ("all", "prompt"):
            keep[: len(seq) if positions == "all" else n_prompt] = True
        if positions == "generated":
            keep[n_prompt - 1 :] = True

        def fn(h):
            return torch.where(keep[None, :, None], h + delta.to(h.dtype), h)

        with torch.no_grad(), edit_layer(model, layer, fn):
            logits = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1].float()
        t = int(logits.argmax())
        logps.append(float(torch.log_softmax(logits, -1)[t]))
        out.append(t)
        seq.append(t)
    return out, logps


def test_alpha_zero_is_model_generate(tiny):
    arch, model, tok = tiny
    v = unit_vector(model.config.hidden_size)
    df = steer_generate(model, tok, PROMPTS, v, 2, [0.0], max_new_tokens=20, batch_size=3)
    assert list(df["mode"].unique()) == (["raw"] if arch == "gpt2" else ["user"])
    for p, row in zip(PROMPTS, df.itertuples()):
        ids = torch.tensor([prompt_token_ids(tok, p)[0]])
        with torch.no_grad():
            ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=20,
                                 do_sample=False, pad_token_id=tok.pad_token_id)
        assert row.token_ids == ref[0, ids.shape[1]:].tolist()
        assert row.n_tokens == 20 and not row.finished and len(row.logprobs) == 20


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_cached_steering_equals_recomputation(tiny, positions):
    arch, model, tok = tiny
    layer, v = 2, unit_vector(model.config.hidden_size)
    scaled = layer_scale(model, tok, layer) * v
    df = steer_generate(model, tok, PROMPTS[:2], scaled, layer, [0.0, 3.0], positions=positions, max_new_tokens=18)
    for p, prompt in enumerate(PROMPTS[:2]):
        steered = df[(df.prompt_index == p) & (df.alpha == 3.0)].iloc[0]
        base = df[(df.prompt_index == p) & (df.alpha == 0.0)].iloc[0]
        ref, ref_logp = recompute(model, prompt_token_ids(tok, prompt)[0], scaled, 3.0, layer, positions, 18)
        assert steered.token_ids == ref, (arch, positions, p)
        np.testing.assert_allclose(steered.logprobs, ref_logp, atol=1e-4)
        assert steered.token_ids != base.token_ids  # the edit changes the text: the test has teeth


def test_all_positions_match_add_vector(tiny):
    """``"all"`` is ``add_vector(..., positions="all")`` around a no-cache recomputation."""
    _, model, tok = tiny
    v = layer_scale(model, tok, 1) * unit_vector(model.config.hidden_size, 3)
    df = steer_generate(model, tok, PROMPTS[0], v, 1, [-2.0], max_new_tokens=16)
    seq = prompt_token_ids(tok, PROMPTS[0])[0]
    n = len(seq)
    with torch.no_grad(), add_vector(model, 1, v, alpha=-2.0, positions="all"):
        for _ in range(16):
            seq.append(int(model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
    assert df.iloc[0].token_ids == seq[n:]


def test_left_padded_batch_equals_one_at_a_time(tiny):
    _, model, tok = tiny
    v = layer_scale(model, tok, 2) * unit_vector(model.config.hidden_size, 1)
    dirs = {"direction": v, "random_direction": np.stack([unit_vector(len(v), 5), unit_vector(len(v), 6)]) * 2}
    kwargs = dict(max_new_tokens=16, positions="all")
    batched = steer_generate(model, tok, PROMPTS, dirs, 2, [0.0, -1.5, 2.0], batch_size=32, **kwargs)
    single = [steer_generate(model, tok, [p], dirs, 2, [0.0, -1.5, 2.0], batch_size=1, **kwargs) for p in PROMPTS]
    assert len(batched) == 3 * 3 * 3
    for p, one in enumerate(single):
        part = batched[batched.prompt_index == p].reset_index(drop=True)
        assert part[["arm", "draw", "alpha"]].equals(one[["arm", "draw", "alpha"]])
        assert part["token_ids"].tolist() == one["token_ids"].tolist()
        np.testing.assert_allclose(np.concatenate(part["logprobs"]), np.concatenate(one["logprobs"]), atol=1e-4)
    # alpha 0 is decoded once and shared by every arm and draw
    base = batched[(batched.prompt_index == 0) & (batched.alpha == 0.0)]
    assert list(zip(base.arm, base.draw)) == [("direction", 0), ("random_direction", 0), ("random_direction", 1)]
    assert base["token_ids"].map(tuple).nunique() == 1


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_edit_counts(positions):
    """Positions whose hidden state the hook changed, per forward call, seen between two blocks."""
    tok = make_tokenizer("llama3")
    model = make_model("llama", seed=1, causal_lm=True, vocab_size=len(tok))
    model.generation_config.eos_token_id = []
    layer, (_, blocks) = 2, find_blocks(model)
    before, calls = [], []
    h1 = blocks[layer - 1].register_forward_hook(lambda m, a, out: before.append(
        (out[0] if isinstance(out, tuple) else out).clone()))
    h2 = blocks[layer].register_forward_pre_hook(lambda m, a, kw: calls.append(
        (a[0] if a else kw["hidden_states"]) != before[-1]), with_kwargs=True)
    try:
        steer_generate(model, tok, PROMPTS[:2], unit_vector(32), layer, [0.0, 5.0], positions=positions,
                       max_new_tokens=6, batch_size=4)
    finally:
        h1.remove(), h2.remove()
    lengths = [len(prompt_token_ids(tok, p)[0]) for p in PROMPTS[:2]]
    changed = [c.any(-1) for c in calls]  # (rows, seq) per call; rows: base, steered of the longer prompt first
    assert len(changed) == 6  # one prefill and five decoding steps
    steered_rows = [1, 3]
    assert not changed[0][[0, 2]].any() and all(not c[[0, 2]].any() for c in changed)  # alpha 0: never
    if positions == "generated":
        for c in changed:
            assert c.sum() == 2 and c[steered_rows, -1].all()  # one position per steered row and call
    elif positions == "prompt":
        assert changed[0][steered_rows].sum(1).tolist() == sorted(lengths, reverse=True)
        assert all(c.sum() == 0 for c in changed[1:])
    else:
        assert changed[0][steered_rows].sum(1).tolist() == sorted(lengths, reverse=True)
        assert all(c.sum() == 2 for c in changed[1:])


def test_sampling_is_seeded_and_batch_independent():
    tok = make_tokenizer("llama3")
    model = make_model("llama", seed=1, causal_lm=True, vocab_size=len(tok))
    v = unit_vector(32)
    args = (model, tok, PROMPTS, v, 1, [0.0, 2.0])
    a = steer_generate(*args, max_new_tokens=10, sampling=Sampling(seed=3), batch_size=6)
    b = steer_generate(*args, max_new_tokens=10, sampling=Sampling(seed=3), batch_size=1)
    c = steer_generate(*args, max_new_tokens=10, sampling=Sampling(seed=4), batch_size=6)
    greedy = steer_generate(*args, max_new_tokens=10)
    assert a["token_ids"].tolist() == b["token_ids"].tolist()
    assert a["token_ids"].tolist() != c["token_ids"].tolist() != greedy["token_ids"].tolist()
    # the log p of a sampled token is that token's log p under the (steered) model: never above the greedy max
    assert all(np.all(np.isfinite(x)) for x in a["logprobs"])


def test_stops_at_end_of_sequence():
    """A row stops at EOS (kept in token_ids, dropped from the text); the others go on."""
    tok = make_tokenizer("llama3")
    model = make_model("llama", seed=1, causal_lm=True, vocab_size=len(tok))
    free = steer_generate(model, tok, PROMPTS[:2], unit_vector(32), 1, [0.0], max_new_tokens=8)
    eos = free.iloc[0].token_ids[3]  # make the first text's 4th token the end of sequence
    model.generation_config.eos_token_id = eos
    df = steer_generate(model, tok, PROMPTS[:2], unit_vector(32), 1, [0.0], max_new_tokens=8)
    first, second = df.iloc[0], df.iloc[1]
    assert first.token_ids == free.iloc[0].token_ids[:4] and first.finished and first.n_tokens == 4
    assert first.text == tok.decode(free.iloc[0].token_ids[:3], skip_special_tokens=True)
    cut = second.token_ids.index(eos) + 1 if eos in free.iloc[1].token_ids else 8
    assert second.token_ids == free.iloc[1].token_ids[:cut]


def test_bad_inputs_name_the_fix():
    tok = make_tokenizer("llama3")
    model = make_model("llama", seed=1, causal_lm=True, vocab_size=len(tok))
    with pytest.raises(ValueError, match="positions"):
        steer_generate(model, tok, PROMPTS, unit_vector(32), 1, [1.0], positions="last")
    with pytest.raises(ValueError, match=r"shape \(32,\)"):
        steer_generate(model, tok, PROMPTS, np.ones(31), 1, [1.0])
    with pytest.raises(ValueError, match="layer"):
        steer_generate(model, tok, PROMPTS, unit_vector(32), 4, [1.0])
    with pytest.raises(ValueError, match="prompts is empty"):
        steer_generate(model, tok, [], unit_vector(32), 1, [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        steer_generate(model, tok, PROMPTS, {"direction": np.full(32, np.nan)}, 1, [1.0])
    with pytest.raises(ValueError, match="temperature"):
        Sampling(temperature=0.0)


def test_neutral_prompts():
    assert len(NEUTRAL_PROMPTS) >= 8 and len(set(NEUTRAL_PROMPTS)) == len(NEUTRAL_PROMPTS)


# ------------------------------------------------------------------ the embedded SmolLM2


@pytest.fixture(scope="module")
def smol():
    from personas.model.loading import load_model

    return load_model("smollm2-135m-instruct", head=True, progress=False)


def test_smollm2_alpha_zero_is_model_generate(smol):
    model, tok = smol
    df = steer_generate(model, tok, PROMPTS[:2], np.zeros(576), 15, [0.0], max_new_tokens=24)
    assert set(df["mode"]) == {"user"}
    for p, row in zip(PROMPTS[:2], df.itertuples()):
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        with torch.no_grad():
            ref = model.generate(**ids, max_new_tokens=24, do_sample=False)
        assert row.token_ids == ref[0, ids["input_ids"].shape[1]:].tolist()
        assert row.text == tok.decode(ref[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.mark.parametrize("positions", ["all", "generated"])
def test_smollm2_cached_equals_recomputation_and_batch(smol, positions):
    model, tok = smol
    layer = 15
    v = layer_scale(model, tok, layer) * unit_vector(576, 2)
    batched = steer_generate(model, tok, PROMPTS, v, layer, [0.0, 0.5], positions=positions, max_new_tokens=16)
    single = steer_generate(model, tok, PROMPTS[2], v, layer, [0.0, 0.5], positions=positions, max_new_tokens=16,
                            batch_size=1)
    assert batched[batched.prompt_index == 2]["token_ids"].tolist() == single["token_ids"].tolist()
    steered = batched[(batched.prompt_index == 0) & (batched.alpha == 0.5)].iloc[0]
    base = batched[(batched.prompt_index == 0) & (batched.alpha == 0.0)].iloc[0]
    ref, ref_logp = recompute(model, prompt_token_ids(tok, PROMPTS[0])[0], v, 0.5, layer, positions, 16)
    assert steered.token_ids == ref and steered.token_ids != base.token_ids
    np.testing.assert_allclose(steered.logprobs, ref_logp, atol=1e-3)


def test_smollm2_strong_steering_costs_coherence(smol):
    """Plumbing, not a model claim: text pushed 8 x scale along a random direction is less expected unsteered."""
    from personas.causal.coherence import coherence_scores

    model, tok = smol
    v = layer_scale(model, tok, 15) * unit_vector(576, 7)
    df = steer_generate(model, tok, PROMPTS[:2], v, 15, [0.0, 8.0], max_new_tokens=16)
    scores = coherence_scores(model, tok, df["text"], prompts=df["prompt"])
    base, steered = scores.nll[df.alpha == 0.0], scores.nll[df.alpha == 8.0]
    assert (steered > base + 1.0).all(), (df["text"].tolist(), scores.nll)
