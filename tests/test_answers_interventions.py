"""Yes/No margins and residual-stream interventions on a tiny decoder with a planted Yes/No direction.

The planted model: a tiny LlamaForCausalLM whose later blocks have zeroed output
projections (their residual branches add nothing) and whose final norm is the
identity, so the hidden state at any layer after the active blocks reaches the LM
head unchanged and margin = w . h_last with w = lm_head[Yes] - lm_head[No].
"""

import numpy as np
import pytest
import torch
from torch import nn

from personas.model.answers import answer_is_matching, answer_tokens, question_prompts
from personas.model.interventions import ablate_nodes, add_vector, edit_layer
from personas.model.readouts import YesNoMargin, yes_no_margin
from tests.tiny_models import make_model, make_tokenizer, planted_tokenizer, tiny_statements

PLANTED_UNITS = [5, 11]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def planted_model(tok, active_blocks=1, hidden=32, n_blocks=3, seed=0):
    """Blocks >= active_blocks pass the residual through; final norm = identity; w on PLANTED_UNITS."""
    model = make_model("llama", seed=seed, causal_lm=True, vocab_size=len(tok), hidden=hidden, n_blocks=n_blocks)
    with torch.no_grad():
        for block in model.model.layers[active_blocks:]:
            block.self_attn.o_proj.weight.zero_()
            block.mlp.down_proj.weight.zero_()
        model.model.norm = nn.Identity()
        head = model.lm_head.weight
        yes, no = tok.convert_tokens_to_ids(["Yes", "No"])
        lower = tok.convert_tokens_to_ids("yes")
        head[[yes, no, lower]] = 0.0
        head[yes, PLANTED_UNITS] = torch.tensor([1.5, -2.0])
    return model


def w_vector(model, tok):
    yes, no = tok.convert_tokens_to_ids(["Yes", "No"])
    return (model.lm_head.weight[yes] - model.lm_head.weight[no]).detach().double().numpy()


STATEMENTS = list(tiny_statements(12))


def prepare_answers(tok, statements, batch_size=16, rule="logsumexp"):
    """The Yes/No readout's prepared batches, run once per intervention."""
    return YesNoMargin(rule).prepare(tok, statements, batch_size)


@pytest.fixture(scope="module")
def setup():
    tok = planted_tokenizer()
    model = planted_model(tok)
    return model, tok


def test_answer_tokens_and_prompt(setup):
    _, tok = setup
    got = answer_tokens(tok)
    assert got["yes_ids"] == [600, 602] and got["no_ids"] == [601]
    assert got["yes_tokens"] == ["Yes", "yes"] and got["no_tokens"] == ["No"]
    assert answer_tokens(tok, "first")["yes_ids"] == [600]
    text = question_prompts(tok, ["I like cats."])[0]
    assert 'Is the following statement something you would say?\n"I like cats."\nAnswer Yes or No.' in text
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    with pytest.raises(ValueError, match="no spelling"):
        answer_tokens(make_tokenizer("llama3"))
    with pytest.raises(ValueError, match="chat template"):
        question_prompts(make_tokenizer(None), ["x"])


def test_margin_equals_hand_computation_from_logits(setup):
    model, tok = setup
    margins = yes_no_margin(model, tok, STATEMENTS, batch_size=5)
    assert answer_tokens(tok)["yes_ids"] == [600, 602]
    texts = question_prompts(tok, STATEMENTS)
    for i, text in enumerate(texts):  # one unpadded prompt at a time, full logits
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1].double()
        hand = torch.logsumexp(logits[[600, 602]], 0) - logits[601]
        assert margins[i] == pytest.approx(hand.item(), abs=1e-4)
    # batch size and padding side do not change a margin
    again = yes_no_margin(model, tok, STATEMENTS, batch_size=1)
    np.testing.assert_allclose(margins, again, atol=1e-4)
    # the planted head, one token per side: margin = w . h_last
    first = yes_no_margin(model, tok, STATEMENTS[:1], rule="first")
    with torch.no_grad():
        enc = tok(texts[0], add_special_tokens=False, return_tensors="pt")
        h = model(**enc, output_hidden_states=True).hidden_states[-1][0, -1].double().numpy()
    assert first[0] == pytest.approx(float(w_vector(model, tok) @ h), abs=1e-4)


@pytest.mark.parametrize("layer,active", [(0, 0), (1, 1), (2, 1), (3, 1)])
def test_steering_moves_margin_by_expected_amount(layer, active):
    tok = planted_tokenizer()
    model = planted_model(tok, active_blocks=active)
    batches = prepare_answers(tok, STATEMENTS, batch_size=4, rule="first")
    base = batches.scores(model)
    w = w_vector(model, tok)
    rng = np.random.default_rng(1)
    v = rng.standard_normal(32)
    for alpha in (-0.7, 0.4):
        for positions in ("all", "last"):
            with add_vector(model, layer, v, alpha=alpha, positions=positions):
                moved = batches.scores(model)
            np.testing.assert_allclose(moved - base, alpha * (w @ v), atol=1e-4)


def test_ablation_removes_the_planted_effect_and_random_units_do_not(setup):
    model, tok = setup
    batches = prepare_answers(tok, STATEMENTS, batch_size=4, rule="first")
    base = batches.scores(model)
    assert base.std() > 1e-3  # the statements do move the margin
    w = w_vector(model, tok)
    values = np.arange(32, dtype=float) / 10
    with ablate_nodes(model, 1, PLANTED_UNITS, values):
        ablated = batches.scores(model)
    # the margin no longer depends on the statement: it is w . values on the planted units
    np.testing.assert_allclose(ablated, w[PLANTED_UNITS] @ values[PLANTED_UNITS], atol=1e-4)
    others = [u for u in range(32) if u not in PLANTED_UNITS][:10]
    with ablate_nodes(model, 1, others, values[others]):
        untouched = batches.scores(model)
    np.testing.assert_allclose(untouched, base, atol=1e-5)
    # steering along w is undone when its units are ablated after it (later hooks run later)
    with add_vector(model, 1, w, alpha=2.0), ablate_nodes(model, 1, PLANTED_UNITS, values):
        steered_then_ablated = batches.scores(model)
    np.testing.assert_allclose(steered_then_ablated, ablated, atol=1e-4)


@pytest.mark.parametrize("layer", [1, 2, 3])
def test_reusing_block_outputs_is_exact(setup, layer):
    _, tok = setup
    model = make_model("llama", seed=7, causal_lm=True, vocab_size=len(tok))  # every block active
    batches = prepare_answers(tok, STATEMENTS, batch_size=5)
    full = batches.scores(model)
    np.testing.assert_allclose(batches.scores(model, reuse_below=layer), full, atol=1e-5)
    assert batches.reused
    v = np.linspace(-1, 1, 32)
    for positions in ("all", "last"):
        with add_vector(model, layer, v, alpha=0.8, positions=positions):
            ref = batches.scores(model)
            fast = batches.scores(model, reuse_below=layer)
        assert np.abs(ref - full).max() > 1e-3  # the intervention does act
        np.testing.assert_allclose(fast, ref, atol=1e-5)
    with ablate_nodes(model, layer, [1, 4, 9], np.zeros(32)):
        np.testing.assert_allclose(batches.scores(model, reuse_below=layer), batches.scores(model), atol=1e-5)
    # the skipped blocks are restored
    assert all("forward" not in vars(block) for block in model.model.layers)
    np.testing.assert_allclose(batches.scores(model), full, atol=1e-6)


def test_interventions_leave_the_model_unchanged(setup):
    _, tok = setup
    model = make_model("llama", seed=5, causal_lm=True, vocab_size=len(tok))  # every block active
    enc = tok(question_prompts(tok, STATEMENTS[:3]), add_special_tokens=False, padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**enc).logits
        with ablate_nodes(model, 2, [0, 3, 7], np.zeros(3)):
            during = model(**enc).logits
        with add_vector(model, 1, np.ones(32), alpha=0.3, positions="last"):
            during2 = model(**enc).logits
        with pytest.raises(RuntimeError, match="boom"):
            with add_vector(model, 0, np.ones(32)):
                raise RuntimeError("boom")
        after = model(**enc).logits
    assert not torch.allclose(before, during) and not torch.allclose(before, during2)
    assert torch.equal(before, after)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    # "last" edits only the final column: earlier positions are untouched
    assert torch.equal(during2[:, :-1], before[:, :-1])


def test_edit_layer_edits_what_capture_reads(setup):
    from personas.model.hooks import capture_layers

    _, tok = setup
    model = make_model("llama", seed=5, causal_lm=True, vocab_size=len(tok))
    enc = tok(question_prompts(tok, STATEMENTS[:2]), add_special_tokens=False, padding=True, return_tensors="pt")
    with torch.no_grad(), capture_layers(model, [2]) as cap:
        ref = cap.run(**enc)[2]
    with torch.no_grad(), edit_layer(model, 2, lambda h: h * 0 + 1.0):
        with capture_layers(model, [2]) as cap:
            got = cap.run(**enc)[2]
    assert torch.equal(got, torch.ones_like(ref))


def test_validation_messages(setup):
    model, tok = setup
    with pytest.raises(ValueError, match="out of range"):
        with ablate_nodes(model, 1, [40], np.zeros(32)):
            pass
    with pytest.raises(ValueError, match="twice"):
        with ablate_nodes(model, 1, [1, 1], np.zeros(32)):
            pass
    with pytest.raises(ValueError, match="shape"):
        with add_vector(model, 1, np.zeros(5)):
            pass
    with pytest.raises(ValueError, match="valid layers are 0..3"):
        with add_vector(model, 4, np.zeros(32)):
            pass
    with pytest.raises(ValueError, match="positions"):
        with add_vector(model, 1, np.zeros(32), positions="first"):
            pass


def test_answer_is_matching():
    got = answer_is_matching([1.0, -1.0, 2.0, -0.5], ["positive", "positive", "negative", "negative"])
    assert got.tolist() == [True, False, False, True]
