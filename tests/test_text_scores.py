"""Offline text scorers: coherence metrics by brute force, NLL and agreement against full forward
passes, MiniLM embeddings against sentence-transformers, the persona scorer's gate on a planted
split and on shuffled labels, and the checks of a user's callable."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest
import torch

from personas.causal.coherence import coherence_scores, distinct_2, text_nll, zlib_ratio
from personas.causal.text_scores import (agreement_scorer, callable_scorer, persona_scorer, score_texts,
                                         scorer_gate)
from personas.model.continuations import context_ids, continuation_logprobs
from personas.model.generation import prompt_token_ids
from personas.model.readouts import NEUTRAL_PROMPT
from personas.model.sentences import MAX_SEQ_LENGTH, embed_sentences, sentence_encoder
from personas.statements import load_statements
from tests.tiny_models import make_model, make_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------ coherence by hand


def brute_distinct_2(text):
    words = text.split()
    seen, total = [], 0
    for i in range(len(words) - 1):
        total += 1
        if (words[i], words[i + 1]) not in seen:
            seen.append((words[i], words[i + 1]))
    return len(seen) / total if total else float("nan")


def test_distinct_2_by_hand_and_brute_force():
    got = distinct_2(["a b a b a b", "the cat sat on the mat", "the the the the", "word", "", "A a  A a\nA"])
    np.testing.assert_allclose(got[:3], [2 / 5, 1.0, 1 / 3])
    assert np.isnan(got[3]) and np.isnan(got[4])
    assert got[5] == 2 / 4  # whitespace-split words, case kept: (A a) (a A) (A a) (a A)
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(list("abcd"), size=rng.integers(2, 30))) for _ in range(50)]
    np.testing.assert_array_equal(distinct_2(texts), [brute_distinct_2(t) for t in texts])


def test_zlib_ratio_by_hand():
    texts = ["ha " * 60, "The committee met on Tuesday to weigh three budget options for the new library.", "é"]
    got = zlib_ratio(texts)
    for t, g in zip(texts, got):
        raw = t.encode("utf-8")
        assert g == len(zlib.compress(raw, 9)) / len(raw)
    assert got[0] < 0.1 < got[1]  # the repetitive text compresses far better: lower = more repetitive
    assert got[2] > 1  # two bytes: the header dominates
    assert np.isnan(zlib_ratio([""])[0])


# ------------------------------------------------------------------ likelihoods against full forward passes


@pytest.fixture(scope="module")
def tiny():
    tok = make_tokenizer("llama3")
    return make_model("llama", seed=2, causal_lm=True, vocab_size=len(tok)), tok


def manual_mean_logp(model, head, body):
    ids = torch.tensor([head + body])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    return float(np.mean([logp[len(head) - 1 + j, t] for j, t in enumerate(body)]))


def test_nll_matches_the_model_logits(tiny):
    model, tok = tiny
    texts = ["I like quiet evenings with a book.", "people people people", "Yes", ""]
    prompts = ["Tell me about yourself.", "Who?", "Is it?", "Empty?"]
    with_prompt = text_nll(model, tok, texts, prompts=prompts, batch_size=2)
    alone = text_nll(model, tok, texts)
    for k, (t, p) in enumerate(zip(texts[:3], prompts)):
        head = prompt_token_ids(tok, p)[0]
        body = tok(t, add_special_tokens=False)["input_ids"]
        assert with_prompt[k] == pytest.approx(-manual_mean_logp(model, head, body), abs=1e-5)
        assert alone[k] == pytest.approx(-manual_mean_logp(model, [tok.bos_token_id], body), abs=1e-5)
    assert np.isnan(with_prompt[3]) and np.isnan(alone[3])
    scores = coherence_scores(model, tok, texts, prompts=prompts)
    np.testing.assert_allclose(scores.nll, with_prompt)
    np.testing.assert_array_equal(scores.distinct_2[:3], distinct_2(texts[:3]))


def test_continuation_grid_and_pairs_agree(tiny):
    model, tok = tiny
    ctx = [context_ids(tok, t, "Hi") for t in ("I agree.", "Never, not once in my life.")]
    conts = [tok(" " + s, add_special_tokens=False)["input_ids"] for s in ("I help.", "Rules matter to me a lot.")]
    grid = continuation_logprobs(model, ctx, conts, batch_size=1)
    pairs = continuation_logprobs(model, ctx, conts, pairs=[(1, 0), (0, 1)], batch_size=4)
    for c in range(2):
        for k in range(2):
            assert grid[c, k] == pytest.approx(manual_mean_logp(model, ctx[c], conts[k]), abs=1e-5)
    np.testing.assert_allclose(pairs, [grid[1, 0], grid[0, 1]], atol=1e-6)
    with pytest.raises(ValueError, match="no tokens"):
        continuation_logprobs(model, [[]], conts)


def heldout_table(persona, n, seed):
    return load_statements(persona, n_per_direction=n, min_confidence=0.0, seed=seed)


def test_agreement_matches_manual_and_gates(tiny):
    model, tok = tiny
    statements = heldout_table("agreeableness", 3, 0)
    gate_statements = heldout_table("agreeableness", 6, 1)
    gate_statements = gate_statements[~gate_statements["statement"].isin(statements["statement"])]
    scorer = agreement_scorer(model, tok, statements, gate_statements, n_boot=200, batch_size=4)
    texts, prompts = ["I am kind to everyone.", "Go away."], ["Tell me about yourself.", "Hello"]
    got = score_texts(scorer, texts, prompts=prompts)
    pos = (statements["direction"] == "positive").to_numpy()
    for k, (t, p) in enumerate(zip(texts, prompts)):
        ctx = context_ids(tok, t, p)
        lp = np.array([manual_mean_logp(model, ctx, tok(" " + s.strip(), add_special_tokens=False)["input_ids"])
                       for s in statements["statement"]])
        assert got.scores[k] == pytest.approx(lp[pos].mean() - lp[~pos].mean(), abs=1e-5)
    gate_pos = (gate_statements["direction"] == "positive").to_numpy()
    gate_scores = scorer.fn(gate_statements["statement"].str.strip().tolist(), [NEUTRAL_PROMPT] * len(gate_pos))
    expected = scorer_gate("agreement", gate_scores, gate_pos, n_boot=200)
    assert scorer.gate == expected and got.gate == expected and got.informative == expected.informative
    with pytest.raises(ValueError, match="used nowhere else"):
        agreement_scorer(model, tok, statements, statements, n_boot=10)


def test_agreement_gate_on_indistinguishable_statements_is_uninformative(tiny):
    """The same texts labelled + and -: every gate score ties, AUC 0.5, and the result says so."""
    model, tok = tiny
    statements = heldout_table("agreeableness", 2, 0)
    same = heldout_table("narcissism", 3, 0).query("direction == 'positive'")
    gate_statements = pd.concat([same, same.assign(direction="negative")])
    scorer = agreement_scorer(model, tok, statements, gate_statements, n_boot=100)
    assert scorer.gate.auc == 0.5 and scorer.gate.auc_low < 0.5 < scorer.gate.auc_high
    got = score_texts(scorer, ["I am kind."])
    assert got.informative is False and np.isfinite(got.scores).all()


# ------------------------------------------------------------------ the MiniLM persona scorer


def test_embeddings_equal_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    from personas.model.loading import resolve_model

    texts = ["I love helping other people", "Taxes should be lowered", "", "word " * 400]
    ours = embed_sentences(texts, batch_size=3)
    reference = SentenceTransformer(resolve_model("all-MiniLM-L6-v2")["path"], device="cpu")
    assert reference.max_seq_length == MAX_SEQ_LENGTH
    np.testing.assert_allclose(ours, reference.encode(texts, normalize_embeddings=True), atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embed_sentences(texts, batch_size=1), ours, atol=1e-5)


def planted_split(seed=0):
    """``+``: statements of one clear persona (music); ``-``: of another (gun rights): easy for MiniLM."""
    music = load_statements("interest-in-music", n_per_direction=40, seed=seed)
    guns = load_statements("believes-in-gun-rights", n_per_direction=40, seed=seed)
    table = pd.concat([music[music.direction == "positive"], guns[guns.direction == "positive"].assign(
        direction="negative")], ignore_index=True).assign(persona="music-not-guns")
    held = pd.concat([table[table.direction == d].iloc[:15] for d in ("positive", "negative")])
    return table.drop(held.index), held


def test_persona_scorer_on_a_planted_split():
    train, held = planted_split()
    scorer = persona_scorer(train, held, seed=0, n_boot=300)
    assert scorer.name == "persona:music-not-guns"
    assert scorer.gate.informative and scorer.gate.auc > 0.95 and scorer.gate.auc_low > 0.8
    assert (scorer.gate.n_positive, scorer.gate.n_negative) == (15, 15)
    got = score_texts(scorer, ["I play the piano every evening and love jazz concerts.",
                               "Everyone has the right to own a firearm for self-defence."])
    assert got.scores[0] > 0 > got.scores[1] and got.informative
    again = persona_scorer(train, held, seed=0, n_boot=300)
    assert again.gate == scorer.gate
    np.testing.assert_array_equal(score_texts(again, held["statement"]).scores,
                                  score_texts(scorer, held["statement"]).scores)


def test_persona_scorer_on_shuffled_labels_is_uninformative():
    train, held = planted_split()
    rng = np.random.default_rng(0)
    train = train.assign(direction=rng.permutation(train["direction"].to_numpy()))
    held = held.assign(direction=rng.permutation(held["direction"].to_numpy()))
    scorer = persona_scorer(train, held, seed=0, n_boot=300)
    assert not scorer.gate.informative and scorer.gate.auc_low <= 0.5 <= scorer.gate.auc_high
    assert score_texts(scorer, ["anything"]).informative is False
    with pytest.raises(ValueError, match="used nowhere else"):
        persona_scorer(train, train.head(4).assign(direction=["positive", "negative"] * 2))


def test_sentence_encoder_is_loaded_once():
    assert sentence_encoder() is sentence_encoder()


# ------------------------------------------------------------------ a user's callable


def test_callable_scorer_checks_and_gates():
    train, held = planted_split()
    keyword = callable_scorer(lambda texts: [float("music" in t.lower() or "song" in t.lower()) for t in texts],
                              name="mentions_music", heldout=held, n_boot=200)
    assert keyword.gate.scorer == "mentions_music" and keyword.gate.auc > 0.5
    np.testing.assert_array_equal(score_texts(keyword, ["A song.", "A gun."]).scores, [1.0, 0.0])
    ungated = callable_scorer(len)
    assert ungated.gate is None and ungated.name == "len"
    with pytest.raises(ValueError, match="scorer 'nan_scorer' returned non-finite"):
        score_texts(callable_scorer(lambda texts: [np.nan] * len(texts), name="nan_scorer"), ["a", "b"])
    with pytest.raises(ValueError, match=r"scorer 'short' returned shape \(1,\); expected \(2,\)"):
        score_texts(callable_scorer(lambda texts: [0.0], name="short"), ["a", "b"])
    with pytest.raises(ValueError, match="scorer 'words' returned list, not numbers"):
        score_texts(callable_scorer(lambda texts: ["x"] * len(texts), name="words"), ["a"])
    with pytest.raises(ValueError, match="not one string"):
        score_texts(ungated, "one text")


# ------------------------------------------------------------------ the steered-text arm


def test_steered_text_arm_uses_the_readouts_random_directions(tiny):
    from personas.causal.arms import Geometry, Site, steering_arms
    from personas.causal.split import random_unit_directions
    from personas.causal.text_arm import score_text_frame, steered_text_arm
    from personas.model.generation import steer_generate

    model, tok = tiny
    model.generation_config.eos_token_id = []
    unit = np.random.default_rng(4).standard_normal(32)
    unit /= np.linalg.norm(unit)
    prompts = ["Tell me about yourself.", "What matters most in life?"]
    frame = steered_text_arm(model, tok, unit, 6.0, 2, [1.0], n_random=2, key=(3, "agreeableness"),
                             prompts=prompts, max_new_tokens=8)
    assert sorted(set(frame.alpha)) == [0.0, 1.0] and (frame.scale == 6.0).all() and len(frame) == 2 * 3 * 2
    randoms = random_unit_directions(3, "agreeableness", 32, 2)
    direct = steer_generate(model, tok, prompts, {"direction": 6.0 * unit, "random_direction": 6.0 * randoms}, 2,
                            [0.0, 1.0], max_new_tokens=8)
    assert frame.drop(columns="scale").equals(direct)
    # the readout arms steer along the same random vectors
    geom = Geometry(unit, 6.0, np.zeros(32), np.ones(32), 1.0)
    arms = [a for a in steering_arms(model, Site(2, "all"), geom, [1.0], 2, (3, "agreeableness"))]
    np.testing.assert_allclose([a[3].__defaults__[0] for a in arms[1:]], 6.0 * randoms)

    scored = score_text_frame(frame, [callable_scorer(lambda t: [len(x) for x in t], name="chars")], model=model,
                              tokenizer=tok)
    assert scored[frame.columns].equals(frame)
    np.testing.assert_array_equal(scored["score:chars"], frame["text"].str.len())
    np.testing.assert_allclose(scored["nll"], text_nll(model, tok, frame["text"], prompts=frame["prompt"]),
                               atol=1e-6)
    with pytest.raises(ValueError, match="unit vector"):
        steered_text_arm(model, tok, 2 * unit, 6.0, 2, [1.0])
