"""Readouts on tiny decoders: batched = unbatched, hand computations, a planted persona direction.
The planted persona model is built in tests/tiny_models.py (``planted_persona_model``).
"""

import numpy as np
import pytest
import torch

from personas.model.interventions import add_vector
from personas.model.readouts import (NEUTRAL_PROMPT, StatementLikelihood, YesNoMargin, resolve_readout,
                                     statement_likelihood, yes_no_margin)
from tests.tiny_models import (UNITS, make_model, persona_statements, planted_persona_model, planted_tokenizer,
                               tiny_statements)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STATEMENTS = list(tiny_statements(12))


@pytest.fixture(scope="module")
def tiny():
    tok = planted_tokenizer()
    return make_model("llama", seed=3, causal_lm=True, vocab_size=len(tok)), tok


def test_batched_equals_unbatched_for_both_readouts(tiny):
    model, tok = tiny
    for fn in (statement_likelihood, yes_no_margin):
        one = fn(model, tok, STATEMENTS, batch_size=1)
        many = fn(model, tok, STATEMENTS, batch_size=5)
        np.testing.assert_allclose(one, many, atol=1e-5)
    # the shared prompt start, run once, changes nothing
    plain = YesNoMargin().prepare(tok, STATEMENTS, batch_size=4, share_prefix=False).scores(model)
    np.testing.assert_allclose(yes_no_margin(model, tok, STATEMENTS, batch_size=4), plain, atol=1e-5)


def test_likelihood_equals_hand_computation(tiny):
    model, tok = tiny
    got = statement_likelihood(model, tok, STATEMENTS, batch_size=4)
    head = tok.apply_chat_template([{"role": "user", "content": NEUTRAL_PROMPT}], tokenize=False,
                                   add_generation_prompt=True)
    assert "system" not in head  # no system prompt
    prompt = tok(head, add_special_tokens=False)["input_ids"]
    for i, s in enumerate(STATEMENTS):  # one unpadded sequence, no cache
        stmt = tok(s.strip(), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([prompt + stmt])).logits[0].double(), -1)
        hand = np.mean([logp[len(prompt) - 1 + j, t].item() for j, t in enumerate(stmt)])
        assert got[i] == pytest.approx(hand, abs=1e-5)


def test_interventions_apply_and_block_reuse_is_exact(tiny):
    model, tok = tiny
    vec = np.random.default_rng(0).standard_normal(32)
    plain = StatementLikelihood().prepare(tok, STATEMENTS, 4, share_prefix=False)
    shared = StatementLikelihood().prepare(tok, STATEMENTS, 4)
    assert len(shared.prefix) > 5 and not plain.prefix
    base = shared.scores(model)
    shared.prime(model, 2)
    with add_vector(model, 2, vec):
        a, b, c = plain.scores(model), shared.scores(model), shared.scores(model, reuse_below=2)
    assert shared.reused and np.abs(a - base).max() > 1e-3
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)


def test_planted_direction_raises_positive_statements_beyond_random():
    tok = planted_tokenizer()
    statements = persona_statements()
    model = planted_persona_model(tok, statements)
    rows = statements[statements["persona"] == "agreeableness"]
    positive = (rows["direction"] == "positive").to_numpy()
    prepared = StatementLikelihood().prepare(tok, rows["statement"].tolist(), 8)
    base = prepared.scores(model)
    assert base[positive].mean() > base[~positive].mean()

    def specific(vec):
        with add_vector(model, 1, vec):
            shift = prepared.scores(model) - base
        return shift[positive].mean() - shift[~positive].mean()

    planted = np.zeros(32)
    planted[UNITS[0]] = 0.5
    randoms = np.random.default_rng(1).standard_normal((8, 32))
    randoms *= 0.5 / np.linalg.norm(randoms, axis=1, keepdims=True)
    effect, null = specific(planted), np.array([specific(r) for r in randoms])
    assert effect > 0.1 and effect > 2 * np.abs(null).max()
    assert specific(-planted) < -0.1  # signed
    # the Yes/No margin of this model is one constant: No
    margins = yes_no_margin(model, tok, rows["statement"].tolist())
    assert np.ptp(margins) < 1e-6 and margins.max() < -1


def test_resolve_readout():
    from personas.causal.settings import CausalSettings

    settings = CausalSettings(likelihood_prompt="Say something.", rule="first")
    assert resolve_readout("likelihood", settings).describe()["user_prompt"] == "Say something."
    assert resolve_readout("likelihood").describe()["user_prompt"] == NEUTRAL_PROMPT
    assert resolve_readout("yes_no", settings).rule == "first"
    assert resolve_readout("yes_no").name == "yes_no"

    def mine(model, tokenizer, statements):
        return np.zeros(len(statements))

    assert resolve_readout(mine).name == "mine"
    with pytest.raises(ValueError, match="unknown readout 'logit'"):
        resolve_readout("logit")
