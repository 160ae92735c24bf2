"""The causal check's driver, statistics, writer, report section and plots, on the planted decoder.

In the planted model (see test_answers_interventions.py) margin = w . h at layer 1,
last token, with w supported on PLANTED_UNITS, so every effect has a closed form.
"""

import json

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
import torch

from personas.model.answers import answer_margins, question_prompts
from personas.causal.check import causal_check
from personas.report.causal import causal_summary_markdown
from personas.causal.stats import empirical_test, shift_summary
from personas.causal.results import load_causal_result, save_causal_result
from personas.causal.split import random_node_draws, random_unit_directions, split_statements
from personas.statements import load_statements
from personas.viz.causal import plot_ablation_null, plot_dose_response
from tests.test_answers_interventions import PLANTED_UNITS, planted_model, planted_tokenizer, w_vector

LAYER = 1
ALPHAS = (-0.5, 0.5)
SEED = 3
OTHER_NODES = [0, 1, 2, 20]  # disjoint from PLANTED_UNITS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def statements():
    df = load_statements(["agreeableness", "politically-liberal"], n_per_direction=14, min_confidence=0.0, seed=1)
    return df


@pytest.fixture(scope="module")
def planted():
    tok = planted_tokenizer()
    return planted_model(tok), tok


@pytest.fixture(scope="module")
def result(planted, statements):
    model, tok = planted
    exclude = statements["id"].iloc[::3].tolist()
    res = causal_check(
        model, tok, statements, {"agreeableness": PLANTED_UNITS, "politically-liberal": OTHER_NODES}, LAYER,
        exclude_ids=exclude, n_heldout=5, n_train=6, alphas=ALPHAS, n_random=19, n_random_directions=3,
        n_boot=200, seed=SEED, batch_size=4, rule="first", progress=False,
    )
    res.meta["_exclude"] = exclude
    return res


def hand_layer_acts(model, tok, texts):
    """Layer-1 last-token activations, one unpadded prompt at a time (independent of the batching code)."""
    out = []
    for text in texts:
        enc = tok(text, add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            out.append(model(**enc, output_hidden_states=True).hidden_states[LAYER][0, -1].double().numpy())
    return np.array(out)


def test_split_is_disjoint_balanced_and_seeded(statements):
    exclude = statements["id"].iloc[:10].tolist()
    held, train = split_statements(statements, "agreeableness", n_heldout=4, n_train=5, exclude_ids=exclude, seed=0)
    assert (held["direction"] == "positive").sum() == 4 and (held["direction"] == "negative").sum() == 4
    assert len(train) == 10 and not set(held["id"]) & set(train["id"]) and not set(held["id"]) & set(exclude)
    again, _ = split_statements(statements, "agreeableness", n_heldout=4, n_train=5, exclude_ids=exclude, seed=0)
    assert held["id"].tolist() == again["id"].tolist()
    with pytest.raises(ValueError, match="fewer than n_heldout=20"):
        split_statements(statements, "agreeableness", n_heldout=20, n_train=5, seed=0)


def test_empirical_test_golden():
    null = np.arange(19.0)  # 0..18
    assert empirical_test(30.0, null, "greater") == (100.0, pytest.approx(1 / 20))
    assert empirical_test(-1.0, null, "greater") == (0.0, 1.0)
    pct, p = empirical_test(9.0, null, "two-sided")
    assert pct == pytest.approx(100 * (9 + 0.5) / 19) and p == 1.0
    assert empirical_test(-5.0, null, "two-sided")[1] == pytest.approx(2 / 20)


def test_shift_summary_by_hand():
    base = np.array([1.0, -1.0, 2.0, 0.5])
    m = np.array([2.0, 1.0, 1.0, -1.0])
    positive = np.array([True, True, False, False])
    got = shift_summary(m, base, positive)
    assert got["bias_shift"] == pytest.approx((1 + 2 - 1 - 1.5) / 4)
    assert got["specific_effect"] == pytest.approx(1.5 - (-1.25))
    assert got["accuracy"] == pytest.approx(3 / 4)  # +: 2>0, 1>0 ; -: 1 not <0, -1<0
    assert got["mean_abs_shift"] == pytest.approx((1 + 2 + 1 + 1.5) / 4)
    rng = np.random.default_rng(0)
    boot = (rng.integers(0, 2, (500, 2)), 2 + rng.integers(0, 2, (500, 2)))
    got = shift_summary(m, base, positive, boot)
    assert got["bias_shift_low"] <= got["bias_shift"] <= got["bias_shift_high"]


def test_heldout_never_used_and_baseline_is_the_margin(planted, statements, result):
    model, tok = planted
    meta = result.meta
    for persona, info in meta["per_persona"].items():
        assert not set(info["heldout_ids"]) & set(meta["_exclude"])
        assert not set(info["heldout_ids"]) & set(info["train_ids"])
        assert len(info["heldout_ids"]) == 10 and len(info["train_ids"]) == 12
    base = result.margins[(result.margins["intervention"] == "baseline")]
    held = statements.set_index("id").loc[base["id"]]
    ref, _ = answer_margins(model, tok, held["statement"].tolist(), rule="first")
    np.testing.assert_allclose(base["margin"], ref, atol=1e-5)
    assert meta["answer_tokens"]["yes_ids"] == [600] and meta["answer_tokens"]["rule"] == "first"


def _hand_direction(model, tok, statements, result, persona):
    train = statements.set_index("id").loc[result.meta["per_persona"][persona]["train_ids"]]
    acts = hand_layer_acts(model, tok, question_prompts(tok, train["statement"].tolist()))
    pos = (train["direction"] == "positive").to_numpy()
    diff = acts[pos].mean(0) - acts[~pos].mean(0)
    return diff / np.linalg.norm(diff), np.linalg.norm(acts, axis=1).mean(), acts[~pos].mean(0)


def test_steering_shifts_match_hand_computation(planted, statements, result):
    model, tok = planted
    w = w_vector(model, tok)
    margins = result.margins
    for persona, salient in (("agreeableness", PLANTED_UNITS), ("politically-liberal", OTHER_NODES)):
        unit, scale, _ = _hand_direction(model, tok, statements, result, persona)
        assert result.meta["per_persona"][persona]["scale"] == pytest.approx(scale, rel=1e-5)
        mask = np.zeros(32)
        mask[salient] = 1
        randoms = random_unit_directions(SEED, persona, 32, 3)
        for alpha in ALPHAS:
            sel = margins[(margins["persona"] == persona) & (margins["alpha"] == alpha)]
            shift = sel.groupby(["intervention", "draw"])["shift"]
            np.testing.assert_allclose(shift.get_group(("direction", 0)), alpha * scale * (w @ unit), atol=1e-4)
            np.testing.assert_allclose(
                shift.get_group(("salient_direction", 0)), alpha * scale * (w @ (unit * mask)), atol=1e-4
            )
            for k in range(3):
                np.testing.assert_allclose(
                    shift.get_group(("random_direction", k)), alpha * scale * (w @ randoms[k]), atol=1e-4
                )
        # the shift is the same for every statement: all bias, no persona-specific effect
        steer = result.steering[
            (result.steering["persona"] == persona) & (result.steering["intervention"] == "direction")
        ]
        assert np.abs(steer["specific_effect"]).max() < 1e-4
    # w lives on the planted units: restricting the direction to them changes nothing, to others removes it
    dr = result.dose_response.set_index(["persona", "intervention", "alpha"])
    agree_d, agree_s = dr.loc[("agreeableness", "direction", 0.5)], dr.loc[("agreeableness", "salient_direction", 0.5)]
    assert agree_s["bias_shift"] == pytest.approx(agree_d["bias_shift"], abs=1e-4)
    assert abs(agree_d["bias_shift"]) > 1e-2
    assert abs(dr.loc[("politically-liberal", "salient_direction", 0.5)]["bias_shift"]) < 1e-4
    # alpha 0 of each curve is the baseline
    base = result.baseline.set_index("persona")
    zero = dr.loc[("agreeableness", "direction", 0.0)]["mean_margin"]
    assert zero == pytest.approx(base.loc["agreeableness", "mean_margin"])


def test_ablation_removes_the_planted_effect_and_random_units_do_not(planted, statements, result):
    model, tok = planted
    w = w_vector(model, tok)
    m = result.margins
    _, _, mean_neg = _hand_direction(model, tok, statements, result, "agreeableness")
    sal = m[(m["persona"] == "agreeableness") & (m["intervention"] == "salient_ablation")]
    # ablated to the background mean, the margin is the same constant for every statement
    np.testing.assert_allclose(sal["margin"], w[PLANTED_UNITS] @ mean_neg[PLANTED_UNITS], atol=1e-4)
    # ablating nodes w does not read leaves every margin unchanged
    other = m[(m["persona"] == "politically-liberal") & (m["intervention"] == "salient_ablation")]
    assert np.abs(other["shift"]).max() < 1e-5
    draws = random_node_draws(SEED, "agreeableness", 32, len(PLANTED_UNITS), 19)
    rnd = m[(m["persona"] == "agreeableness") & (m["intervention"] == "random_ablation")]
    hits = np.isin(draws, PLANTED_UNITS).sum(1)
    table = result.random_ablation[result.random_ablation["persona"] == "agreeableness"]
    assert table["n_salient_drawn"].tolist() == hits.tolist()
    assert (hits == 0).sum() >= 10
    for k in np.flatnonzero(hits == 0):
        assert np.abs(rnd.loc[rnd["draw"] == k, "shift"]).max() < 1e-5
    abl = result.ablation.set_index(["persona", "metric"])
    row = abl.loc[("agreeableness", "mean_abs_shift")]
    assert row["salient"] > 1e-3 and row["percentile"] >= 90 and row["p_value"] <= 0.1
    assert abl.loc[("politically-liberal", "mean_abs_shift")]["salient"] < 1e-5
    # specific effect of the full ablation = minus the baseline separation of + and - statements
    base = result.baseline.set_index("persona").loc["agreeableness"]
    sep = base["mean_margin_positive"] - base["mean_margin_negative"]
    assert abl.loc[("agreeableness", "specific_effect")]["salient"] == pytest.approx(-sep, abs=1e-4)


def test_reproducible(planted, statements, result):
    model, tok = planted
    again = causal_check(
        model, tok, statements, {"agreeableness": PLANTED_UNITS}, LAYER,
        exclude_ids=result.meta["_exclude"], n_heldout=5, n_train=6, alphas=ALPHAS, n_random=4,
        n_random_directions=1, n_boot=200, seed=SEED, batch_size=7, rule="first", progress=False,
    )
    first = result.steering[(result.steering["persona"] == "agreeableness")
                            & result.steering["intervention"].isin(["baseline", "salient_ablation", "direction"])]
    second = again.steering[again.steering["intervention"].isin(["baseline", "salient_ablation", "direction"])]
    cols = ["bias_shift", "bias_shift_low", "specific_effect_high", "accuracy"]
    np.testing.assert_allclose(first[cols].to_numpy(), second[cols].to_numpy(), atol=1e-5)
    assert result.meta["per_persona"]["agreeableness"]["reused_prefix"]
    # without reusing the blocks below the layer: the same margins
    slow = causal_check(
        model, tok, statements, {"agreeableness": PLANTED_UNITS}, LAYER,
        exclude_ids=result.meta["_exclude"], n_heldout=5, n_train=6, alphas=ALPHAS, n_random=4,
        n_random_directions=1, n_boot=200, seed=SEED, batch_size=7, rule="first", reuse_prefix=False, progress=False,
    )
    np.testing.assert_allclose(slow.margins["margin"], again.margins["margin"], atol=1e-5)
    assert not slow.meta["per_persona"]["agreeableness"]["reused_prefix"]


def test_validation(planted, statements):
    model, tok = planted
    with pytest.raises(ValueError, match="no salient nodes"):
        causal_check(model, tok, statements, {"agreeableness": [1]}, LAYER, personas=["x"], progress=False)
    with pytest.raises(ValueError, match="out of range"):
        causal_check(model, tok, statements, {"agreeableness": [99]}, LAYER, progress=False)
    with pytest.raises(ValueError, match="non-zero"):
        causal_check(model, tok, statements, {"agreeableness": [1]}, LAYER, alphas=[0], progress=False)


def test_save_summary_and_plots(result, tmp_path):
    written = save_causal_result(result, tmp_path)
    assert set(written) == {*result.TABLES, "meta"}
    back = pd.read_csv(written["ablation"])
    np.testing.assert_allclose(back["p_value"], result.ablation["p_value"])
    meta = json.loads(written["meta"].read_text())
    assert meta["layer"] == LAYER and meta["tables"]["margins"] == "causal_margins.csv"
    assert not list(tmp_path.glob(".*tmp"))

    text = causal_summary_markdown(result)
    assert causal_summary_markdown(load_causal_result(tmp_path)) == text  # the report can be built from files
    assert text.startswith("## Do the salient nodes matter?")
    assert "agreeableness" in text and "politically-liberal" in text and "not of Llama-3-8B" in text
    assert "| persona |" in text

    fig = plot_dose_response(result.dose_response, out_dir=tmp_path)
    assert isinstance(fig, matplotlib.figure.Figure) and fig._suptitle.get_text()
    ax = fig.axes[0]
    assert ax.get_ylabel() and fig.axes[len(result.meta["personas"])].get_xlabel()
    fig2 = plot_ablation_null(result.random_ablation, result.ablation, metric="mean_abs_shift", out_dir=tmp_path)
    assert fig2.axes[0].get_xlabel() and fig2.axes[0].get_title() == "agreeableness"
    assert (tmp_path / "causal_dose_response.png").stat().st_size > 1000
    assert (tmp_path / "causal_ablation_mean_abs_shift.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="metric"):
        plot_ablation_null(result.random_ablation, result.ablation, metric="auc")
    # the plots are built without pyplot: nothing to close
