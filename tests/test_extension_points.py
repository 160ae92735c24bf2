"""The four extension points are registries: a readout, a layer metric, a plot and a model family are
each one entry (docs/extending.md). Each test adds an entry and checks that the pipeline picks it up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from personas.causal.check import causal_check
from personas.causal.settings import CausalSettings
from personas.layers import clusters
from personas.layers.clusters import CLUSTER_METRICS, ClusterMetric, cluster_scores
from personas.model import hooks, readouts
from personas.model.hooks import MODEL_FAMILIES, ModelFamily, find_blocks
from personas.model.readouts import RAW_FRAME, NEUTRAL_PROMPT, Readout, StatementLikelihood, YesNoMargin
from tests.tiny_models import make_model, make_tokenizer, tiny_statements

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FirstTokenLogit(Readout):
    """A toy readout: the logit of the statement's first token after the first statement token (batch 1)."""

    name = "first_token"

    def __init__(self, offset: float = 0.0):
        self.offset = offset

    @classmethod
    def from_settings(cls, settings):
        return cls(offset=float(settings.n_train))

    def describe(self):
        return {"name": self.name, "summary": "a toy readout"}

    def prepare(self, tokenizer, statements, batch_size=16, share_prefix=True, blocks_path=None):
        ids = [tokenizer(s, add_special_tokens=False)["input_ids"][:2] for s in statements]
        offset = self.offset

        class Prepared:
            reused = False

            def prime(self, model, layer):
                pass

            def scores(self, model, *, reuse_below=None):
                out = []
                with torch.inference_mode():
                    for x in ids:
                        logits = model(input_ids=torch.tensor([x[:1]])).logits[0, -1]
                        out.append(float(logits[x[-1]]) + offset)
                return np.asarray(out)

        return Prepared()


def _statements(n=12):
    rows = []
    for persona in ("a", "b"):
        for direction in ("positive", "negative"):
            for i, s in enumerate(tiny_statements(n, "agreeableness" if direction == "positive" else "narcissism")):
                rows.append({"id": f"{persona}-{direction}-{i}", "persona": persona, "direction": direction,
                             "statement": s})
    return pd.DataFrame(rows)


def test_a_registered_readout_runs_in_the_causal_check(monkeypatch):
    monkeypatch.setitem(readouts.READOUTS, "first_token", FirstTokenLogit)
    settings = CausalSettings(readouts=("first_token",), n_heldout=4, n_train=4, n_random_directions=1,
                              n_random_nodes=1, n_specificity=0, n_dose_personas=0, n_boot=20)
    model, tok = make_model("llama", causal_lm=True), make_tokenizer()
    result = causal_check(model, tok, _statements(), {"a": [1, 2]}, layer=1, settings=settings, progress=False)
    assert result.meta["readouts"] == [{"name": "first_token", "summary": "a toy readout"}]
    assert set(result.gate["readout"]) == {"first_token"}
    # from_settings configured it: every baseline score carries the n_train offset
    base = result.scores[result.scores["intervention"] == "baseline"]
    hand = FirstTokenLogit(0.0).prepare(tok, base["id"].map(_statements().set_index("id")["statement"]).tolist())
    np.testing.assert_allclose(base["score"].to_numpy(), hand.scores(model) + 4.0, atol=1e-5)


def test_a_readout_the_model_cannot_express_is_not_applicable():
    """An encoder has no LM head: both built-in readouts are 'not applicable', with the reason, and run no arm."""
    model, tok = make_model("bert"), make_tokenizer()
    settings = CausalSettings(n_heldout=4, n_train=4, n_random_directions=1, n_random_nodes=1, n_boot=20)
    result = causal_check(model, tok, _statements(), {"a": [1, 2]}, layer=1, settings=settings, progress=False)
    assert set(result.meta["not_applicable"]) == {"likelihood", "yes_no"}
    assert all("bidirectional encoder (bert)" in w for w in result.gate["not_applicable"])
    assert not result.gate["informative"].any() and result.effects.empty
    # nor can it generate: the steered-text arm says why and runs nothing
    assert "bidirectional encoder (bert)" in result.meta["steered_text"]["not_applicable"]
    assert result.steered_text.empty and result.text_effects.empty
    # an encoder with an LM head bolted on (what AutoModelForCausalLM builds for BERT: a random head) is
    # still an encoder: not applicable, named as such
    from transformers import BertConfig, BertLMHeadModel

    headed = BertLMHeadModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=64, is_decoder=True))
    result = causal_check(headed, tok, _statements(), {"a": [1, 2]}, layer=1, settings=settings, progress=False)
    assert all("bidirectional encoder (bert)" in w for w in result.gate["not_applicable"])
    assert result.scores.empty and result.meta["per_persona"] == {}


def test_base_model_readouts_use_the_raw_frame():
    """Without a chat template the readouts frame the turn as RAW_FRAME, and say so."""
    tok = make_tokenizer(None)
    likelihood = StatementLikelihood()
    prepared = likelihood.prepare(tok, ["I like cats."], share_prefix=False)
    head = tok(RAW_FRAME.format(prompt=NEUTRAL_PROMPT), add_special_tokens=True)["input_ids"]
    statement = tok([" I like cats."], add_special_tokens=False)["input_ids"][0]
    row = prepared.batches[0][1][0].tolist()
    assert row == head + statement
    assert likelihood.describe()["mode"] == "raw" and "Q: " in likelihood.describe()["summary"]
    # this tokenizer has no single-token Yes: the Yes/No readout says why it cannot be formed
    assert "no spelling of 'yes'" in YesNoMargin().not_applicable(None, tok)


def test_a_registered_metric_reaches_the_scores(monkeypatch):
    spread = ClusterMetric(lambda Z, y, c: float(np.ptp(Z[:, 0])), "first-axis spread", "FS")
    monkeypatch.setitem(CLUSTER_METRICS, "spread", spread)
    Z = np.array([[0.0, 1.0], [1.0, 0.0], [4.0, 2.0], [5.0, 3.0]])
    got = cluster_scores(Z, ["positive", "positive", "negative", "negative"])
    assert got["spread"] == 5.0
    assert list(got) == list(CLUSTER_METRICS)  # the registry's order is the table's order
    # the built-ins against sklearn, computed independently
    from sklearn.metrics import davies_bouldin_score, silhouette_score

    y = np.array([0, 0, 1, 1])
    assert got["silhouette"] == pytest.approx(silhouette_score(Z, y))
    assert got["davies_bouldin"] == pytest.approx(davies_bouldin_score(Z, y))
    assert got["centroid_distance"] == pytest.approx(np.linalg.norm(Z[:2].mean(0) - Z[2:].mean(0)))
    assert clusters.CLUSTER_METRICS["davies_bouldin"].lower_is_better


def test_a_registered_family_places_the_blocks(monkeypatch):
    """A family's entry decides where the blocks are, before the generic search."""
    model = make_model("llama")
    path, blocks = find_blocks(model)
    assert path == "layers" and len(blocks) == 3
    # a wrapper whose blocks sit where no generic path looks: only the registry finds them
    wrapper = torch.nn.Module()
    wrapper.config = type("Config", (), {"model_type": "toy-family", "num_hidden_layers": 2})()
    wrapper.trunk = torch.nn.Module()
    wrapper.trunk.stack = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(2)])
    wrapper.other = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(2)])
    with pytest.raises(ValueError, match="could not find the transformer blocks"):
        find_blocks(wrapper)
    monkeypatch.setitem(MODEL_FAMILIES, "toy-family", ModelFamily("trunk.stack"))
    assert find_blocks(wrapper)[0] == "trunk.stack"
    assert hooks.model_family(wrapper).blocks_path == "trunk.stack"
