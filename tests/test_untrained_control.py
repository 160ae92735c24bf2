"""The untrained-model control: seeded re-initialisation, its own store, a layer profile, and the verdict.

Tiny models from ``tests/tiny_models.py`` (hidden 32, 3 blocks) saved to a temporary directory, so
``untrained_layer_control`` loads them by path like any local checkpoint. The "final third" verdict
is checked on planted layer profiles (``synthetic_activations``): a late peak in both the trained
and the untrained model is about depth, and the verdict says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from personas.layers import LayerProtocol, ProbeSettings, analyse_layers, synthetic_activations
from personas.layers.untrained import untrained_layer_control
from personas.model.extraction import ExtractionSettings
from personas.model.untrained import UntrainedControl, untrained_model, untrained_name
from personas.report.layers import final_third_claim, final_third_numbers
from personas.store.fingerprints import model_fingerprint
from tests.tiny_models import make_model, make_tokenizer, tiny_statements

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_untrained_model_is_seeded_and_leaves_the_caller_alone():
    trained = make_model("llama", seed=3)
    trained.personas_source = {"name": "tiny", "path": None, "revision": "abc", "fingerprint": None}
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = untrained_model(trained, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator is untouched
    b, c = untrained_model(trained, seed=0), untrained_model(trained, seed=1)
    assert type(a) is type(trained) and a.config.to_dict()["hidden_size"] == 32 and not a.training
    assert next(a.parameters()).dtype == next(trained.parameters()).dtype
    assert _same_weights(a, b) and not _same_weights(a, c) and not _same_weights(a, trained)
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    assert a.personas_source["name"] == untrained_name("tiny", 0) == "tiny (untrained, seed 0)"
    # fingerprinted by its own parameters, never by the trained model's revision
    fa, fc = model_fingerprint(a), model_fingerprint(c)
    assert fa.startswith("params-sha256:") and fa != fc and fa != model_fingerprint(trained)


def _statements(personas=("agreeableness", "narcissism"), n=12) -> pd.DataFrame:
    texts = tiny_statements(4 * n * len(personas))
    rows = []
    for i, persona in enumerate(personas):
        for j, direction in enumerate(("positive", "negative")):
            for k in range(n):
                idx = (i * 2 + j) * n + k
                rows.append({"id": f"{persona}/{idx:04d}", "persona": persona, "direction": direction,
                             "statement": texts[idx]})
    return pd.DataFrame(rows)


def test_untrained_layer_control_runs_into_its_own_store(tmp_path):
    """Built from the model already loaded (as the wording control), read back by the layer analysis."""
    from personas.model.plan import extract_untrained_control

    model, tok = make_model("llama", seed=0), make_tokenizer("llama3")
    statements = _statements()
    store = tmp_path / "store"
    settings = ExtractionSettings(position="last", batch_size=8)
    analysis = dict(layers="all", store_dir=store, protocol=LayerProtocol(n_components=2, n_reps=2, n_per_cluster=6),
                    n_jobs=1, progress=False)

    def run(control):
        stored = extract_untrained_control(model, tok, statements, model_name="tiny-llama", layers=[0, 1, 2, 3],
                                           store_dir=store, settings=settings, control=control, progress=False)
        return stored, untrained_layer_control("tiny-llama", statements, control=control, extracted=stored,
                                               **analysis)

    before = {k: v.clone() for k, v in model.state_dict().items()}
    stored, table = run(UntrainedControl(8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the trained model is untouched
    _, one_rep = run(UntrainedControl(6))
    assert one_rep.attrs["metadata"]["n_reps"] == 1 and table.attrs["metadata"]["n_reps"] == 2
    name = untrained_name("tiny-llama", 0)
    assert set(table["model"]) == {name} and set(table["analysis"]) == {"cluster"}
    assert sorted(table["layer"].unique()) == [0, 1, 2, 3]
    assert set(table["control"]) == {"none", "shuffled_labels"}
    sil = table[(table["metric"] == "silhouette") & (table["control"] == "none")]
    assert len(sil) == 2 * 4 and sil["mean"].between(-1, 1).all()
    meta = table.attrs["metadata"]
    assert meta["n_statements"] == 2 * 2 * 8 and meta["extraction"] == {"computed": 2}
    assert set(meta["seconds"]) == {"extraction", "cluster analysis"}
    # its own folder in the store, beside (never inside) the trained model's
    assert [p.name for p in store.iterdir()] == ["untrained-control"]
    assert sorted(p.name for p in (store / "untrained-control").iterdir()) == ["6-per-direction", "8-per-direction"]
    assert [p.name for p in (store / "untrained-control" / "8-per-direction").iterdir() if p.is_dir()] == [
        "tiny-llama-untrained-seed-0"]
    # the stored activations are those of the seeded re-initialised model, read as extraction reads
    from personas.model.extraction import extract_activations
    from personas.model.untrained import control_statements, untrained_model
    from personas.store.read import load_layers

    fresh = untrained_model(model, seed=0, model_name="tiny-llama")
    rows = control_statements(statements, 8)
    direct, _ = extract_activations(fresh, tok, rows["statement"].tolist(), [2], settings, progress=False)
    acts, meta_rows = load_layers(store / "untrained-control" / "8-per-direction", name,
                                  ["agreeableness", "narcissism"], [2])
    order = meta_rows["id"].map({i: k for k, i in enumerate(rows["id"])}).to_numpy()
    np.testing.assert_allclose(acts[2], direct[2][order], rtol=1e-5, atol=1e-6)
    again_stored, again = run(UntrainedControl(8))
    assert again.attrs["metadata"]["extraction"] == {"reused": 2}
    pd.testing.assert_frame_equal(again, table)
    with pytest.raises(ValueError, match="n_per_direction must be an int >= the protocol's n_per_cluster"):
        untrained_layer_control("tiny-llama", statements, control=UntrainedControl(3), **analysis)


def _profile(peak: int, name: str, seed: int = 1, n_personas: int = 4, n_blocks: int = 6) -> pd.DataFrame:
    acts, meta = synthetic_activations(n_personas=n_personas, n_per_direction=30, hidden_size=12,
                                       layers=range(n_blocks + 1), direction_signal={peak: 2.0}, seed=seed)
    return analyse_layers(acts, meta, model_name=name, n_blocks=n_blocks,
                          protocol=LayerProtocol(n_reps=2, n_per_cluster=10),
                          probes=ProbeSettings(classifiers=(), direction_classifiers=()), n_jobs=1, progress=False)


def test_final_third_verdict_follows_the_rule():
    late, early = _profile(5, "trained"), _profile(2, "untrained", seed=2)
    numbers = final_third_numbers(late)
    assert numbers["n_personas"] == 4 and numbers["estimate"] > 0.1 and numbers["ci_low"] > 0
    # 4 personas: 16 sign patterns, the observed one and its mirror are the most extreme
    assert numbers["p_value"] == pytest.approx(2 / 16)
    # a clear late peak on four personas: the interval says yes, the test cannot (p >= 1/8)
    claim = final_third_claim(late)
    assert claim["verdict"] == "inconclusive" and "p = 0.125 > 0.05" in claim["reason"]
    assert claim["best_layer"] == 5 and claim["personas_peaking_in_final_third"] == 1.0
    early_claim = final_third_claim(early)
    assert early_claim["estimate"] < 0 and early_claim["ci_high"] < 0


def test_untrained_peak_in_the_final_third_makes_the_claim_about_depth():
    # six personas: the sign-flip test reaches p = 2 / 2**6 <= 0.05
    trained = _profile(5, "trained", seed=1, n_personas=6)
    alone = final_third_claim(trained)
    assert alone["verdict"] == "supported", alone["reason"]
    assert alone["p_value"] == pytest.approx(2 / 64)
    both = final_third_claim(trained, untrained=_profile(6, "untrained", seed=3, n_personas=6))
    assert both["verdict"] == "inconclusive" and "about depth, not personas" in both["reason"]
    assert both["untrained"]["verdict"] == "supported"
    control_early = final_third_claim(trained, untrained=_profile(2, "untrained", seed=4, n_personas=6))
    assert control_early["verdict"] == "supported" and control_early["untrained"]["verdict"] == "contradicted"
