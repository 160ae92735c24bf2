"""The causal check on the planted persona model of tests/tiny_models.py: gate, arms, controls,
specificity, dose response, saved result, report section and plots.

In that model the hidden state at every layer is the token embedding, persona p owns unit
u_p, and adding alpha * e_{u_p} raises the log-probability of p's ``+`` statements' tokens;
the Yes/No margin is one constant (always No).
"""

import dataclasses
import json

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest

from personas.causal.check import causal_check
from personas.causal.compare import diagonal_dominance, row_permutation_test
from personas.causal.results import load_causal_result, save_causal_result
from personas.causal.settings import DOSE_ALPHAS, CausalSettings
from personas.causal.split import split_statements
from personas.causal.stats import effect_summary, empirical_test
from personas.model.extraction import ExtractionSettings, extract_activations
from personas.model.interventions import add_vector
from personas.model.readouts import statement_likelihood
from personas.report.causal import causal_summary_markdown
from personas.viz.causal import plot_ablation_null, plot_dose_response, plot_specificity
from tests.tiny_models import PERSONAS, UNITS, persona_statements, planted_persona_model, planted_tokenizer

LAYER = 1
SEED = 3
CHECKED = {"agreeableness": [UNITS[0], 3, 9], "politically-liberal": [0, 1, 2]}  # the second misses u_p

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_settings(**kw):
    base = dict(n_heldout=10, n_train=20, n_boot=200, n_random_directions=4, n_random_nodes=6, rule="first",
                extraction=ExtractionSettings(position="mean"), dose_layers=(1, 2), n_dose_random=2)
    return CausalSettings(**{**base, **kw})


@pytest.fixture(scope="module")
def planted():
    tok = planted_tokenizer()
    statements = persona_statements()
    return planted_persona_model(tok, statements), tok, statements


@pytest.fixture(scope="module")
def result(planted):
    model, tok, statements = planted
    exclude = statements["id"].iloc[::4].tolist()
    res = causal_check(model, tok, statements, CHECKED, LAYER, small_settings(), seed=SEED, exclude_ids=exclude,
                       progress=False)
    res.meta["_exclude"] = exclude
    return res


def test_split_is_disjoint_balanced_and_seeded(planted):
    statements = planted[2]
    exclude = statements["id"].iloc[:10].tolist()
    held, train = split_statements(statements, "agreeableness", n_heldout=4, n_train=5, exclude_ids=exclude, seed=0)
    assert (held["direction"] == "positive").sum() == 4 and len(train) == 10
    assert not set(held["id"]) & set(train["id"]) and not set(held["id"]) & set(exclude)


def test_effect_summary_and_empirical_test_by_hand():
    base = np.array([1.0, -1.0, 2.0, 0.5])
    score = np.array([2.0, 1.0, 1.0, -1.0])
    got = effect_summary(score, base, np.array([True, True, False, False]))
    assert got["bias_shift"] == pytest.approx((1 + 2 - 1 - 1.5) / 4)
    assert got["specific_effect"] == pytest.approx(1.5 - (-1.25))
    assert got["mean_abs_shift"] == pytest.approx((1 + 2 + 1 + 1.5) / 4)
    assert empirical_test(30.0, np.arange(19.0), "greater") == (100.0, pytest.approx(1 / 20))


def test_gate_marks_the_always_no_readout_uninformative(result):
    gate = result.gate.set_index(["persona", "readout"])
    for persona in CHECKED:
        assert not gate.loc[(persona, "yes_no"), "informative"]
        assert gate.loc[(persona, "yes_no"), "auc"] == 0.5  # a constant score ties everywhere
        assert gate.loc[(persona, "likelihood"), "informative"]
        assert gate.loc[(persona, "likelihood"), "auc_low"] > 0.5
    # no intervention on the uninformative readout
    assert set(result.effects["readout"]) == {"likelihood"}
    assert set(result.gate["persona"]) == set(PERSONAS)


def test_heldout_never_used(result):
    meta = result.meta
    for persona, info in meta["per_persona"].items():
        assert not set(info["heldout_ids"]) & set(meta["_exclude"])
        assert not set(info["heldout_ids"]) & set(info["train_ids"])
        assert len(info["heldout_ids"]) == 20 and len(info["train_ids"]) == 40


def test_direction_shift_is_the_readout_under_the_hand_computed_vector(planted, result):
    model, tok, statements = planted
    by_id = statements.set_index("id")
    info = result.meta["per_persona"]["agreeableness"]
    train = by_id.loc[info["train_ids"]]
    acts, _ = extract_activations(model, tok, train["statement"].tolist(), [LAYER], ExtractionSettings(position="mean"),
                                  progress=False)
    a = acts[LAYER].astype(np.float64)
    pos = (train["direction"] == "positive").to_numpy()
    unit = a[pos].mean(0) - a[~pos].mean(0)
    unit /= np.linalg.norm(unit)
    scale = np.linalg.norm(a, axis=1).mean()
    held = by_id.loc[info["heldout_ids"], "statement"].tolist()
    base = statement_likelihood(model, tok, held)
    with add_vector(model, LAYER, 0.25 * scale * unit):
        hand = statement_likelihood(model, tok, held) - base
    s = result.scores
    got = s[(s["persona"] == "agreeableness") & (s["intervention"] == "direction") & (s["alpha"] == 0.25)
            & (s["layer"] == LAYER)]
    np.testing.assert_allclose(got["shift"], hand, atol=1e-5)


def test_planted_direction_beats_random_directions_and_is_signed(result):
    c = result.comparisons
    c = c[(c["layer"] == LAYER) & (c["arm"] == "direction") & (c["control"] == "random_direction")]
    for persona in CHECKED:
        up = c[(c["persona"] == persona) & (c["alpha"] == 0.25)].iloc[0]
        down = c[(c["persona"] == persona) & (c["alpha"] == -0.25)].iloc[0]
        assert up["effect_low"] > 0 and abs(up["effect"]) > up["control_max_abs"]
        assert down["effect_high"] < 0 and abs(down["effect"]) > down["control_max_abs"]
        assert up["percentile"] == 100.0 and up["n_control"] == 4


def test_ablation_against_random_and_top_variance_nodes(result):
    c = result.comparisons.set_index(["persona", "arm", "control"])
    # ablating u_p to the background mean removes the planted separation: a negative specific effect
    agree = c.loc[("agreeableness", "salient_ablation", "random_ablation")]
    assert agree["effect_high"] < 0
    # nodes the model reads only through its small random weights: next to no effect
    other = c.loc[("politically-liberal", "salient_ablation", "random_ablation")]
    assert abs(other["effect"]) < 1e-3 < abs(agree["effect"])
    top = c.loc[("politically-liberal", "salient_ablation", "top_variance_ablation")]
    assert np.isfinite(top["difference"]) and top["n_control"] == 1
    # the direction restricted to the salient nodes keeps u_p for agreeableness, not for the other persona
    rd = c.loc[[("agreeableness", "salient_direction", "random_restricted_direction")]]
    assert rd["alpha"].tolist() == [0.25]  # the restricted direction runs at the positive alphas only
    rd = rd.iloc[0]
    assert rd["effect_low"] > 0 and rd["effect"] > rd["control_mean"] + 0.05
    other = c.loc[("politically-liberal", "salient_direction", "random_restricted_direction")]
    assert np.abs(other["effect"]).max() < 0.05


def test_specificity_is_diagonal_on_planted_directions(result):
    sp = result.specificity
    matrix = sp.pivot(index="steer_persona", columns="read_persona", values="specific_effect").loc[PERSONAS, PERSONAS]
    m = matrix.to_numpy()
    for i in range(len(PERSONAS)):
        assert m[i, i] > 0.05 and m[i, i] > np.delete(m[i], i).max()
    test = result.specificity_test.iloc[0]
    assert test["k"] == 4 and test["exact"] and test["p_value"] == pytest.approx(1 / 24)
    assert test["statistic"] == pytest.approx(diagonal_dominance(m))


def test_specificity_is_flat_on_shuffled_labels(planted):
    model, tok, statements = planted
    shuffled = statements.copy()
    rng = np.random.default_rng(0)
    for persona in PERSONAS:
        idx = shuffled.index[shuffled["persona"] == persona]
        shuffled.loc[idx, "direction"] = rng.permutation(shuffled.loc[idx, "direction"].to_numpy())
    res = causal_check(model, tok, shuffled, {"agreeableness": [1]}, LAYER,
                       small_settings(readouts=("likelihood",), n_dose_personas=0, n_random_directions=1,
                                      n_random_nodes=1), seed=SEED, progress=False)
    test = res.specificity_test.iloc[0]
    assert test["p_value"] > 0.1
    planted_diag = 0.05
    assert np.abs(res.specificity["specific_effect"]).max() < planted_diag * 2


def test_row_permutation_test_sampled_when_many_rows():
    m = np.eye(8) + 0.01 * np.random.default_rng(0).standard_normal((8, 8))
    got = row_permutation_test(m, n_permutations=199, seed=0)
    assert not got["exact"] and got["p_value"] == pytest.approx(1 / 200)


def test_dose_response_is_monotone_with_a_random_band(result):
    d = result.dose_response
    assert sorted(d["layer"].unique()) == [1, 2] and set(d["persona"]) == {"agreeableness"}
    for layer in (1, 2):
        curve = d[(d["layer"] == layer) & (d["intervention"] == "direction")].sort_values("alpha")
        assert len(curve) == len(DOSE_ALPHAS) and np.all(np.diff(curve["specific_effect"]) > 0)
        assert curve.loc[curve["alpha"] == 0, "specific_effect"].iloc[0] == 0.0
        band = d[(d["layer"] == layer) & (d["intervention"] == "random_direction") & (d["alpha"] == 1.0)].iloc[0]
        top = curve[curve["alpha"] == 1.0].iloc[0]
        assert band["n_draws"] == 2 and band["low"] <= band["specific_effect"] <= band["high"] < top["low"]
    # the chosen layer's +-0.25 reuse the main arms: passes counted once
    assert result.meta["phases"]["dose_response"]["passes"] == 2 * (len(DOSE_ALPHAS) - 1) * 3 - 2 * 3


def test_user_callable_readout_sees_the_interventions(planted, result):
    model, tok, statements = planted

    def my_likelihood(model, tokenizer, texts):
        return statement_likelihood(model, tokenizer, texts, batch_size=3)

    res = causal_check(model, tok, statements, {"agreeableness": CHECKED["agreeableness"]}, LAYER,
                       small_settings(readouts=(my_likelihood,), n_specificity=0, n_dose_personas=0,
                                      n_random_directions=1, n_random_nodes=1),
                       seed=SEED, exclude_ids=result.meta["_exclude"], progress=False)
    mine = res.effects.set_index(["intervention", "alpha", "draw"])["specific_effect"]
    ref = result.effects[(result.effects["persona"] == "agreeableness") & (result.effects["layer"] == LAYER)
                         & (result.effects["steer_persona"] == "agreeableness")]
    ref = ref.set_index(["intervention", "alpha", "draw"])["specific_effect"]
    assert mine.loc[("direction", 0.25, 0)] == pytest.approx(ref.loc[("direction", 0.25, 0)], abs=1e-5)


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="unknown readout 'logits'"):
        CausalSettings(readouts=("logits",))
    with pytest.raises(ValueError, match="readouts must be a tuple"):
        CausalSettings(readouts="likelihood")
    with pytest.raises(ValueError, match="alphas must hold at least one non-zero"):
        CausalSettings(alphas=(0,))
    with pytest.raises(ValueError, match="n_specificity must be 0"):
        CausalSettings(n_specificity=1)
    with pytest.raises(ValueError, match="n_heldout"):
        CausalSettings(n_heldout=1)
    with pytest.raises(ValueError, match="edit_positions"):
        CausalSettings(edit_positions="first")
    with pytest.raises(ValueError, match="ci"):
        CausalSettings(ci=1.5)
    with pytest.raises(TypeError, match="ExtractionSettings"):
        CausalSettings(extraction={"position": "mean"})
    assert CausalSettings(alphas=[0.5, -0.5, 0]).alphas == (-0.5, 0.5)
    with pytest.raises(TypeError, match="CausalSettings"):
        causal_check(None, None, pd.DataFrame(), {}, 1, {"n_heldout": 3})


def test_validation(planted):
    model, tok, statements = planted
    with pytest.raises(ValueError, match="no personas to check"):
        causal_check(model, tok, statements, {}, LAYER, progress=False)
    with pytest.raises(ValueError, match="no statements of persona 'x'"):
        causal_check(model, tok, statements, {"x": [1]}, LAYER, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        causal_check(model, tok, statements, {"agreeableness": [99]}, LAYER, progress=False)


def test_saved_result_report_and_plots(result, tmp_path):
    written = save_causal_result(result, tmp_path)
    assert set(written) == {*result.TABLES, "meta"}
    meta = json.loads(written["meta"].read_text())
    assert meta["layer"] == LAYER and meta["settings"]["readouts"] == ["likelihood", "yes_no"]
    assert meta["readouts"][0]["user_prompt"] == "Tell me one thing you believe."
    back = load_causal_result(tmp_path)
    text = causal_summary_markdown(back)
    assert text == causal_summary_markdown(result)  # the report is built from the files
    assert text.startswith("## Do the salient nodes matter?")
    assert f"Model `{result.meta['model']['model']}`" in text and "SmolLM" not in text
    assert "`yes_no` is uninformative for agreeableness" in text and "no causal conclusion" in text
    assert "no significant difference" not in text
    assert "beyond every draw" in text and "row-permutation p = 0.0417" in text

    fig = plot_dose_response(back.dose_response, out_dir=tmp_path)
    assert isinstance(fig, matplotlib.figure.Figure) and fig.get_suptitle()
    assert fig.axes[0].get_ylabel() and fig.axes[0].get_xlabel() and "layer 1" in fig.axes[0].get_title()
    fig = plot_specificity(back.specificity, back.specificity_test, out_dir=tmp_path)
    assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel() and "p = 0.0417" in fig.axes[0].get_title()
    fig = plot_ablation_null(back.effects, out_dir=tmp_path)
    assert fig.axes[0].get_xlabel() and fig.axes[0].get_title() == "agreeableness"
    for stem in ("causal_dose_response", "causal_specificity", "causal_ablation"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 1000
    # the notebook's one call: every figure the result has data for, in order; none for a check that ran nothing
    from personas.viz.causal import causal_figures

    titles = [f.get_suptitle() or f.axes[0].get_title() for f in causal_figures(back)]
    assert len(titles) == 3 and "dose" in titles[0].lower()
    empty = dataclasses.replace(back, dose_response=back.dose_response.iloc[:0], specificity=back.specificity.iloc[:0],
                                effects=back.effects.iloc[:0])
    assert causal_figures(empty) == []


def test_checked_personas_keeps_those_with_salient_nodes(capsys):
    from personas.causal.inputs import checked_personas

    sets = {"a": {1, 2}, "b": set(), "c": {3}}
    assert checked_personas(sets, None) == ["a", "c"]
    assert checked_personas(sets, ["c", "b", "z"]) == ["c"]
    assert "no salient nodes (or no run file) for ['b', 'z']: not checked" in capsys.readouterr().out


def test_dose_response_on_a_held_out_subset(planted):
    model, tok, statements = planted
    res = causal_check(model, tok, statements, {"agreeableness": [1]}, LAYER,
                       small_settings(readouts=("likelihood",), n_specificity=0, n_dose_heldout=4,
                                      n_random_directions=1, n_random_nodes=1, dose_alphas=(-1, 0, 1)),
                       seed=SEED, progress=False)
    # its own baseline, then 2 alphas x 2 layers x (direction + 2 random), nothing reused from the main arms
    assert res.meta["phases"]["dose_response"]["passes"] == 1 + 2 * 2 * 3
    curve = res.dose_response[(res.dose_response["intervention"] == "direction") & (res.dose_response["layer"] == 1)]
    assert curve.set_index("alpha").loc[1.0, "specific_effect"] > 0 > curve.set_index("alpha").loc[-1.0,
                                                                                                  "specific_effect"]
