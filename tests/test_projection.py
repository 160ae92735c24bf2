"""Scoring texts on a direction: what extraction reads, per token and per turn, percentiles against the store.

Tiny random models check the arithmetic against brute force (``output_hidden_states``, the
extraction, both padding sides); the embedded SmolLM2 checks the store round trip and the turn
spans of a real chat template.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from personas.model.directions import Direction, Provenance, direction_from_store
from personas.model.extraction import ExtractionSettings, extract_activations, extract_to_store
from personas.model.projection import percentiles, project_texts
from personas.statements import load_statements
from personas.store.read import load_layers
from tiny_models import make_model, make_tokenizer, tiny_statements

TEXTS = ["I like people.", "I would rather be alone <sometimes>.", "Kindness matters a great deal to me, always."]
CONVERSATION = [
    {"role": "system", "content": "Be nice."},
    {"role": "user", "content": "Hi there, how are you?"},
    {"role": "assistant", "content": "Very well, thank you!"},
]


@pytest.fixture(scope="module")
def tiny(one_torch_thread):
    return make_model("llama"), {side: make_tokenizer("llama3", padding_side=side) for side in ("left", "right")}


def _unit(seed=0, hidden=32):
    v = np.random.default_rng(seed).normal(size=hidden)
    return v, v / np.linalg.norm(v)


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_and_mean_equal_what_extraction_reads(tiny, side):
    model, toks = tiny
    v, unit = _unit()
    statements = list(tiny_statements(7))
    settings = ExtractionSettings(batch_size=3)  # mixed lengths in a batch: padding on `side`
    for aggregate, position in (("last", "last"), ("mean", "mean")):
        acts, _ = extract_activations(model, toks[side], statements, [2], ExtractionSettings(position=position),
                                      progress=False)
        got = project_texts(model, toks[side], statements, v, 2, aggregate=aggregate, settings=settings, progress=False)
        assert list(got["text"]) == list(range(7))
        np.testing.assert_allclose(got["score"], acts[2].astype(np.float64) @ unit, rtol=1e-5, atol=1e-6)


def test_tokens_equal_output_hidden_states(tiny):
    model, toks = tiny
    v, unit = _unit(1)
    tokens = project_texts(model, toks["left"], TEXTS, v, 3, aggregate="tokens", progress=False)
    for i, text in enumerate(TEXTS):
        prompt = toks["left"].apply_chat_template([{"role": "system", "content": text}], tokenize=False,
                                                  add_generation_prompt=True)
        ids = toks["left"](prompt, add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            h = model(**ids, output_hidden_states=True).hidden_states[3][0].double().numpy()
        rows = tokens[tokens["text"] == i]
        assert list(rows["token_id"]) == ids["input_ids"][0].tolist()
        np.testing.assert_allclose(rows["score"], h @ unit, rtol=1e-5, atol=1e-6)
        assert "".join(rows.loc[rows["in_span"], "piece"]) == text  # the statement's own tokens


def test_mean_is_the_mean_of_tokens_over_the_span(tiny):
    model, toks = tiny
    v, _ = _unit(2)
    for texts in (TEXTS, [CONVERSATION, CONVERSATION[:2]]):
        tokens = project_texts(model, toks["right"], texts, v, 2, aggregate="tokens", progress=False)
        mean = project_texts(model, toks["right"], texts, v, 2, aggregate="mean", progress=False)
        expected = tokens[tokens["in_span"]].groupby("text")["score"].mean()
        np.testing.assert_allclose(mean["score"].to_numpy(), expected.to_numpy(), rtol=1e-12, atol=1e-15)
        assert list(mean["n_tokens"]) == list(tokens[tokens["in_span"]].groupby("text").size())


def test_turns_are_the_mean_of_their_tokens(tiny):
    model, toks = tiny
    v, _ = _unit(3)
    tokens = project_texts(model, toks["right"], [CONVERSATION], v, 2, aggregate="tokens", progress=False)
    turns = project_texts(model, toks["right"], [CONVERSATION], v, 2, aggregate="turns", progress=False)
    assert list(turns["role"]) == ["system", "user", "assistant"]
    for k, row in turns.iterrows():
        part = tokens[tokens["turn"] == k]
        assert row["score"] == part["score"].mean() and row["n_tokens"] == len(part)
        assert "".join(part["piece"]) == CONVERSATION[k]["content"]  # llama3's template trims; these need none
    # the last message's content is the span "mean" reads
    assert tokens.loc[tokens["in_span"], "turn"].unique().tolist() == [2]


def test_trimming_and_chatml_templates_give_exact_spans(one_torch_thread):
    model = make_model("qwen2")
    v, _ = _unit(4)
    padded = [{"role": "user", "content": "  spaced out  "}, {"role": "assistant", "content": "ok"}]
    for template, expected in (("llama3", "spaced out"), ("chatml", "  spaced out  ")):
        tok = make_tokenizer(template)
        got = project_texts(model, tok, [padded], v, 1, aggregate="turns", progress=False)
        text = tok.apply_chat_template(padded, tokenize=False)
        assert text[got["start"][0]:got["end"][0]] == expected
        assert text[got["start"][1]:got["end"][1]] == "ok"


def test_percentiles_brute_force():
    ref = np.array([1.0, 2.0, 2.0, 3.0, 10.0])
    got = percentiles(np.array([0.0, 2.0, 3.0, 11.0, np.nan]), ref)
    brute = [100 * (np.sum(ref < s) + 0.5 * np.sum(ref == s)) / len(ref) for s in (0.0, 2.0, 3.0, 11.0)]
    np.testing.assert_allclose(got[:4], brute)
    assert np.isnan(got[4])


def test_errors_name_the_problem(tiny):
    model, toks = tiny
    v, _ = _unit()
    with pytest.raises(ValueError, match="aggregate must be one of"):
        project_texts(model, toks["left"], TEXTS, v, 2, aggregate="max")
    with pytest.raises(ValueError, match="not a mix"):
        project_texts(model, toks["left"], [TEXTS[0], CONVERSATION], v, 2)
    with pytest.raises(ValueError, match="non-empty list"):
        project_texts(model, toks["left"], "one string", v, 2)
    with pytest.raises(ValueError, match=r"shape \(32,\)"):
        project_texts(model, toks["left"], TEXTS, np.ones(16), 2)
    with pytest.raises(ValueError, match="layer is required"):
        project_texts(model, toks["left"], TEXTS, v)
    with pytest.raises(ValueError, match="out of range"):
        project_texts(model, toks["left"], TEXTS, v, 9, progress=False)
    with pytest.raises(ValueError, match="made at layer 2, not 1"):
        project_texts(model, toks["left"], TEXTS, Direction(vector=v, layer=2), 1)
    with pytest.raises(ValueError, match="chat template"):
        project_texts(model, make_tokenizer(None), [CONVERSATION], v, 2)
    with pytest.raises(ValueError, match="message 1 of conversation 0"):
        project_texts(model, toks["left"], [[CONVERSATION[0], {"role": "user"}]], v, 2)


# ------------------------------------------------------------------ the embedded SmolLM2

MODEL_NAME = "smollm2-135m-instruct"
LAYER = 10


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory, one_torch_thread):
    from personas.model.loading import load_model

    model, tok = load_model(MODEL_NAME, progress=False)
    store = tmp_path_factory.mktemp("store")
    statements = load_statements("agreeableness", n_per_direction=6, seed=0)
    extract_to_store(model, tok, statements, model_name=MODEL_NAME, layers=[LAYER], store_dir=store, progress=False)
    return model, tok, store


def test_last_reproduces_the_store_and_percentiles(smollm2):
    model, tok, store = smollm2
    direction = direction_from_store(store, MODEL_NAME, "agreeableness", LAYER)
    acts, meta = load_layers(store, MODEL_NAME, "agreeableness", [LAYER])
    stored = acts[LAYER].astype(np.float64) @ direction.unit
    got = project_texts(model, tok, meta["statement"].tolist(), direction, aggregate="last",
                        reference=(acts, meta), progress=False)
    np.testing.assert_allclose(got["score"], stored, rtol=1e-6, atol=1e-6)
    pos = (meta["direction"] == "positive").to_numpy()
    assert stored[pos].mean() > stored[~pos].mean()  # mean(+) - mean(-) points from - to +
    np.testing.assert_allclose(got["percentile_negative"], percentiles(got["score"], stored[~pos]))
    np.testing.assert_allclose(got["percentile_positive"], percentiles(got["score"], stored[pos]))
    # the most + statement is beyond every - statement's projection only if it is above the largest one
    top = int(np.argmax(stored))
    assert (got["percentile_negative"][top] == 100.0) == (stored[top] > stored[~pos].max())
    small = project_texts(model, tok, meta["statement"].tolist(), direction, settings=ExtractionSettings(batch_size=5),
                          progress=False)  # other batches, other padding: the same to float tolerance
    np.testing.assert_allclose(small["score"], stored, rtol=1e-4, atol=1e-4)


def test_turn_spans_are_exact_on_smollm2_chat_template(smollm2):
    model, tok, _ = smollm2
    conversation = [
        {"role": "user", "content": "Is 3 < 4? Answer <b>briefly</b>."},
        {"role": "assistant", "content": "Oui, trois est plus petit 😀 — «yes»."},
        {"role": "user", "content": "\n\nThanks!"},  # the template's "\n" and these merge into one token
    ]
    v = np.random.default_rng(0).normal(size=576)
    tokens = project_texts(model, tok, [conversation], v, LAYER, aggregate="tokens", progress=False)
    text = tok.apply_chat_template(conversation, tokenize=False)
    assert "".join(tokens["piece"]) == text  # the pieces tile the rendered text
    assert tokens["token_id"].tolist() == tok(text, add_special_tokens=False)["input_ids"]
    turns = project_texts(model, tok, [conversation], v, LAYER, aggregate="turns", progress=False)
    for k, message in enumerate(conversation):
        start, end = int(turns["start"][k]), int(turns["end"][k])
        assert text[start:end] == message["content"]
        part = tokens[tokens["turn"] == k]
        assert part["start"].min() <= start and part["end"].max() == end
        before, after = tokens.loc[part.index[0] - 1], tokens.loc[part.index[-1] + 1]
        assert after["token_str"] == "<|im_end|>"
        assert before["end"] <= start  # no token left out at the front
    first, second = (tokens[tokens["turn"] == k] for k in (0, 1))
    assert "".join(first["piece"]) == conversation[0]["content"]
    assert "".join(second["piece"]) == conversation[1]["content"]
    # the constructed boundary: SmolLM2 merges the template's "\n" with the content's "\n\n"
    third = tokens[tokens["turn"] == 2]
    start = int(turns["start"][2])
    straddle = third.iloc[0]
    assert straddle["start"] < start < straddle["end"]
    prefix_ids = tok(text[:start], add_special_tokens=False)["input_ids"]
    assert prefix_ids != tokens["token_id"].tolist()[:len(prefix_ids)]  # re-encoding the prefix would mis-split


def test_reference_must_be_the_directions_persona(tiny):
    model, toks = tiny
    v, unit = _unit(5)
    meta = pd.DataFrame({"persona": ["a"] * 4, "direction": ["positive", "positive", "negative", "negative"],
                         "statement": list("wxyz"), "id": list("1234")})
    acts = {2: np.random.default_rng(0).normal(size=(4, 32)).astype(np.float32)}
    d = Direction(vector=v, layer=2, provenance=Provenance(personas=("b",)))
    with pytest.raises(ValueError, match="persona 'b'"):
        project_texts(model, toks["left"], TEXTS, d, reference=(acts, meta), progress=False)
    got = project_texts(model, toks["left"], pd.DataFrame({"statement": TEXTS}), v, 2, reference=(acts, meta),
                        progress=False)
    ref = acts[2].astype(np.float64) @ unit
    np.testing.assert_allclose(got["percentile_positive"], percentiles(got["score"], ref[:2]))
    np.testing.assert_allclose(got["percentile_negative"], percentiles(got["score"], ref[2:]))
