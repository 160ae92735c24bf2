"""The causal check's steered-text arm on the planted persona model of test_readouts.py / test_causal.py
(tiny random tokenizer), scored by the real all-MiniLM-L6-v2 persona scorer.

The arm steers along the readouts' direction and random directions (the same vectors), its alpha-0
texts are the model's greedy generation, its shifts are means over prompts with a bootstrap over
prompts, and the result saves ``causal/steered_text.csv`` that the report shows side by side.
"""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch

from personas.causal.arms import persona_geometry, steering_arms
from personas.causal.check import causal_check
from personas.causal.coherence import text_nll
from personas.causal.parameters import NOTEBOOK_CHECKS
from personas.causal.results import load_causal_result, save_causal_result
from personas.causal.settings import CausalSettings
from personas.causal.split import random_unit_directions
from personas.causal.text_check import gate_statements
from personas.causal.text_tables import prompt_bootstrap, steered_text_examples, text_shifts
from personas.model.extraction import ExtractionSettings
from personas.model.generation import NEUTRAL_PROMPTS, prompt_token_ids, steer_generate
from personas.report import build_report
from personas.report.causal import causal_summary_markdown
from tests.test_causal import CHECKED, LAYER, SEED, small_settings
from tests.tiny_models import persona_statements, planted_persona_model, planted_tokenizer
from tests.test_text_scores import manual_mean_logp
from tests.tiny_models import make_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ("Tell me about yourself.", "What is your opinion on rules?", "Describe a friend.", "What is fair?")
ALPHA = 8.0  # strong enough that the random directions change the planted model's text
TOKENS = 6


def text_settings(**kw):
    base = dict(readouts=("likelihood",), n_specificity=0, n_dose_personas=0, n_boot=300, text_prompts=PROMPTS,
                text_alpha=ALPHA, text_max_new_tokens=TOKENS, n_text_gate=5, text_sweep_alphas=(-ALPHA, ALPHA),
                n_text_sweep_prompts=2, text_sweep_max_new_tokens=4)
    return small_settings(**{**base, **kw})


@pytest.fixture(scope="module")
def planted():
    tok = planted_tokenizer()
    statements = persona_statements(50)  # 50 per direction: some left for the scorers' gate
    return planted_persona_model(tok, statements), tok, statements


@pytest.fixture(scope="module")
def result(planted):
    model, tok, statements = planted
    exclude = statements["id"].iloc[::4].tolist()
    res = causal_check(model, tok, statements, CHECKED, LAYER, text_settings(), seed=SEED, exclude_ids=exclude,
                       progress=False)
    return res, exclude


def texts_of(frame, persona, arm, draw, alpha):
    sel = frame[(frame["part"] == "arm") & (frame["persona"] == persona) & (frame["arm"] == arm)
                & (frame["draw"] == draw) & (frame["alpha"] == alpha)]
    return sel.sort_values("prompt_index")["text"].tolist()


@pytest.fixture(scope="module")
def random_model(planted):
    """A random tiny decoder (every direction changes its text) checked on one persona."""
    tok, statements = planted[1], planted[2]
    model = make_model("llama", seed=3, causal_lm=True, vocab_size=len(tok))
    res = causal_check(model, tok, statements, {"agreeableness": [0, 1]}, LAYER,
                       text_settings(text_alpha=1.0, text_sweep_alphas=(), text_prompts=PROMPTS[:2]), seed=SEED,
                       progress=False)
    return model, tok, statements, res


def test_random_directions_are_those_of_the_steering_arms(random_model):
    model, tok, statements, res = random_model
    persona = "agreeableness"
    train = statements.set_index("id").loc[res.meta["per_persona"][persona]["train_ids"]].reset_index()
    geom = persona_geometry(model, tok, train, [LAYER], ExtractionSettings(position="mean"), persona)[LAYER]

    class Capture:  # a site that hands back the vector an arm would add
        def steer(self, model, vector):
            return vector

    arms = list(steering_arms(model, Capture(), geom, [1.0], 2, (SEED, persona)))
    vectors = {(arm, draw): context() for arm, _, draw, context in arms}
    randoms = random_unit_directions(SEED, persona, len(geom.unit), 2)
    frame = res.steered_text
    assert frame["scale"].iloc[0] == pytest.approx(geom.scale)
    seen = {tuple(texts_of(frame, persona, "direction", 0, 0.0))}
    for (arm, draw), vector in vectors.items():
        if arm == "random_direction":
            np.testing.assert_allclose(vector, geom.scale * randoms[draw])
        # the steering arm's very vector, added by hand, gives the arm's texts
        by_hand = steer_generate(model, tok, PROMPTS[:2], vector, LAYER, [1.0], max_new_tokens=TOKENS)
        got = texts_of(frame, persona, arm, draw, 1.0)
        assert got == by_hand["text"].tolist()
        seen.add(tuple(got))
    assert len(seen) == 4  # unsteered, direction, both random draws: four different texts, the check has teeth
    other = random_unit_directions(SEED + 1, persona, len(geom.unit), 1)[0]
    elsewhere = steer_generate(model, tok, PROMPTS[:2], geom.scale * other, LAYER, [1.0], max_new_tokens=TOKENS)
    assert tuple(elsewhere["text"]) not in seen


def test_alpha_zero_texts_are_greedy_generation(planted, result):
    model, tok, _ = planted
    frame = result[0].steered_text
    for persona in CHECKED:
        for arm, draw in (("direction", 0), ("random_direction", 1)):
            got = texts_of(frame, persona, arm, draw, 0.0)
            for prompt, text in zip(PROMPTS, got):
                ids = torch.tensor([prompt_token_ids(tok, prompt)[0]])
                with torch.no_grad():
                    ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=TOKENS,
                                         do_sample=False, pad_token_id=tok.pad_token_id)
                assert text == tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True)
    steered = texts_of(frame, "agreeableness", "direction", 0, ALPHA)
    assert steered != texts_of(frame, "agreeableness", "direction", 0, 0.0)


def test_shifts_are_means_over_prompts_with_a_prompt_bootstrap(result):
    res, _ = result
    frame, effects = res.steered_text, res.text_effects
    n_boot, ci = res.meta["settings"]["n_boot"], res.meta["settings"]["ci"]
    for persona, arm, draw, alpha in itertools.product(CHECKED, ["direction", "random_direction"], [0, 1],
                                                       [-ALPHA, ALPHA]):
        if arm == "direction" and draw:
            continue
        for metric in ("persona_score", "nll", "zlib_ratio"):
            d = np.array([s - b for s, b in zip(
                frame[(frame["part"] == "arm") & (frame["persona"] == persona) & (frame["arm"] == arm)
                      & (frame["draw"] == draw) & (frame["alpha"] == alpha)].sort_values("prompt_index")[metric],
                frame[(frame["part"] == "arm") & (frame["persona"] == persona) & (frame["arm"] == arm)
                      & (frame["draw"] == draw) & (frame["alpha"] == 0)].sort_values("prompt_index")[metric])])
            row = effects[(effects["persona"] == persona) & (effects["metric"] == metric) & (effects["arm"] == arm)
                          & (effects["draw"] == draw) & (effects["alpha"] == alpha)].iloc[0]
            assert row["n_prompts"] == len(PROMPTS)
            assert row["shift"] == pytest.approx(d.mean())
            idx = prompt_bootstrap(len(PROMPTS), n_boot, SEED, persona)  # prompts resampled, not texts
            lo, hi = np.quantile(d[idx].mean(1), [(1 - ci) / 2, 1 - (1 - ci) / 2])
            assert (row["shift_low"], row["shift_high"]) == (pytest.approx(lo), pytest.approx(hi))
            assert d.min() - 1e-12 <= row["shift_low"] <= row["shift"] <= row["shift_high"] <= d.max() + 1e-12


def test_text_shifts_bootstrap_against_every_resample():
    """Four prompts: the 4^4 equally likely resamples give the exact bootstrap distribution; a NaN prompt drops."""
    d = np.array([1.0, 2.0, 3.0, 10.0])
    rows = [{"persona": "p", "layer": 1, "prompt_index": i, "arm": "direction", "draw": 0, "alpha": a,
             "nll": (d[i] if a else 0.0) + 5.0} for i in range(4) for a in (0.0, 1.0)]
    got = text_shifts(pd.DataFrame(rows), n_boot=40000, ci=0.9, seed=0).iloc[0]
    exact = np.array([d[list(t)].mean() for t in itertools.product(range(4), repeat=4)])
    assert got["shift"] == pytest.approx(4.0) and got["n_prompts"] == 4
    # each bound is a 5% / 95% point of the exact (discrete) distribution, up to the resampling error
    for bound, q in ((got["shift_low"], 0.05), (got["shift_high"], 0.95)):
        assert (exact < bound).mean() <= q + 0.01 and (exact <= bound).mean() >= q - 0.01
    rows[-1]["nll"] = np.nan  # prompt 3 steered: no value, so no shift
    got = text_shifts(pd.DataFrame(rows), n_boot=200, seed=0).iloc[0]
    assert got["shift"] == pytest.approx(2.0) and got["n_prompts"] == 3 and got["shift_high"] <= 3.0


def test_comparisons_gate_and_meta(result):
    res, _ = result
    gate = res.text_gate.set_index("persona")
    assert set(gate.index) == set(CHECKED) and (gate["n_positive"] == 5).all() and gate["note"].isin(["", np.nan]).all()
    c = res.text_comparisons
    assert set(c["readout"]) == {"persona_score"} and set(c["alpha"]) == {-ALPHA, ALPHA}
    e = res.text_effects
    for _, row in c.iterrows():
        sel = e[(e["persona"] == row["persona"]) & (e["metric"] == "persona_score") & (e["alpha"] == row["alpha"])]
        null = sel[sel["arm"] == "random_direction"]["shift"]
        assert row["effect"] == sel[sel["arm"] == "direction"]["shift"].iloc[0]
        assert row["control_max_abs"] == pytest.approx(null.abs().max()) and row["n_control"] == 2
        assert row["informative"] == gate.loc[row["persona"], "informative"]
    meta = res.meta
    assert meta["phases"]["steered_text"]["seconds"] > 0
    text = meta["steered_text"]
    assert text["prompts"] == list(PROMPTS) and text["alpha"] == ALPHA
    # 2 personas x 4 prompts x (1 + 2 alphas x 3 directions), and the sweep's 2 prompts x 3 alphas
    assert text["n_texts"] == 2 * 4 * 7 + 2 * 2 * 3
    for persona, ids in text["scorer_statements"].items():
        info = meta["per_persona"][persona]
        assert not set(ids["gate_ids"]) & (set(info["heldout_ids"]) | set(info["train_ids"]) | set(result[1]))
    sweep = res.text_sweep
    assert sorted(sweep["alpha"].unique()) == [-ALPHA, 0.0, ALPHA] and (sweep["n_prompts"] == 2).all()


def test_too_few_gate_statements_mark_the_scorer_uninformative(planted):
    model, tok, statements = planted
    gate, note = gate_statements(statements, "agreeableness", statements["id"].iloc[3:], 5, 0)
    assert len(gate) <= 3 and "fewer than n_text_gate=5" in note
    res = causal_check(model, tok, statements, {"agreeableness": CHECKED["agreeableness"]}, LAYER,
                       text_settings(n_text_gate=45, text_sweep_alphas=(), text_prompts=PROMPTS[:2],
                                     text_max_new_tokens=2), seed=SEED, progress=False)
    row = res.text_gate.iloc[0]
    assert not row["informative"] and "n_text_gate=45" in row["note"]
    assert res.text_comparisons.empty or not res.text_comparisons["informative"].any()
    md = causal_summary_markdown(res)
    assert "uninformative for agreeableness" in md and "n_text_gate=45" in md
    assert "No gated scorer is informative" in md
    off = causal_check(model, tok, statements, {"agreeableness": CHECKED["agreeableness"]}, LAYER,
                       text_settings(steered_text=False), seed=SEED, progress=False)
    assert off.steered_text.empty and off.meta["steered_text"] is None and "Steered text" not in \
        causal_summary_markdown(off)


def test_saved_result_has_causal_steered_text_csv_and_old_results_load(result, tmp_path):
    res, _ = result
    out = tmp_path / "study" / "causal"
    written = save_causal_result(res, out)
    assert written["steered_text"] == out / "steered_text.csv" and (out / "causal_text_effects.csv").exists()
    back = load_causal_result(out)
    pd.testing.assert_frame_equal(back.steered_text[["persona", "arm", "draw", "alpha", "text"]],
                                  res.steered_text[["persona", "arm", "draw", "alpha", "text"]], check_dtype=False)
    np.testing.assert_allclose(back.text_effects["shift"], res.text_effects["shift"])
    # a result saved before the arm existed: no text tables listed, no files
    meta = json.loads((out / "causal_check.json").read_text())
    for name in ("steered_text", "text_gate", "text_effects", "text_comparisons", "text_sweep"):
        (out / meta["tables"].pop(name)).unlink()
    (out / "causal_check.json").write_text(json.dumps(meta))
    old = load_causal_result(out)
    assert old.steered_text.empty and old.text_sweep.empty and len(old.gate) == len(res.gate)
    assert "Steered text" not in causal_summary_markdown(old)


def test_report_shows_texts_side_by_side_and_the_timing(result, tmp_path):
    res, _ = result
    out = tmp_path / "study"
    save_causal_result(res, out / "causal")
    back = load_causal_result(out / "causal")
    examples = steered_text_examples(back, n_prompts=2, width=12)
    assert list(examples.columns) == ["persona", "prompt", f"text -{ALPHA:g}", f"score -{ALPHA:g}", "text 0",
                                      "score 0", f"text +{ALPHA:g}", f"score +{ALPHA:g}"]
    assert len(examples) == 2 * len(CHECKED) and set(examples["prompt"]) == set(PROMPTS[:2])
    frame = back.steered_text
    for _, row in examples.iterrows():
        for alpha, label in ((-ALPHA, f"-{ALPHA:g}"), (0.0, "0"), (ALPHA, f"+{ALPHA:g}")):
            full = frame[(frame["persona"] == row["persona"]) & (frame["prompt"] == row["prompt"])
                         & (frame["arm"] == "direction") & (frame["alpha"] == alpha) & (frame["part"] == "arm")]
            text, cell = " ".join(full["text"].iloc[0].split()), row[f"text {label}"]
            assert cell == text if len(text) <= 12 else (len(cell) <= 12 and cell.endswith("…")
                                                         and text.startswith(cell[:-1]))
            assert row[f"score {label}"] == pytest.approx(full["persona_score"].iloc[0])
    md = causal_summary_markdown(back)
    section = md[md.index("**Steered text.**"):]
    assert "Texts side by side" in section and f"| alpha -{ALPHA:g} | alpha 0 | alpha +{ALPHA:g} |" in section
    first = steered_text_examples(back).iloc[0]
    assert f"| {first['persona']} | {first['prompt']} | {first[f'text -{ALPHA:g}']}" in section
    assert "Alpha sweep" in section and "persona direction at alpha" in section
    timing = build_report(out).split("## Timing", 1)[1].split("## Artifacts", 1)[0]
    assert "causal check: steered text" in timing and "causal check: main arms" in timing


def test_settings_validate_the_text_arm():
    s = CausalSettings()
    assert s.text_prompts == NEUTRAL_PROMPTS and len(s.text_prompts) >= 8 and s.steered_text
    assert CausalSettings(text_prompts=None).text_prompts == NEUTRAL_PROMPTS
    assert CausalSettings(text_prompts=4).text_prompts == NEUTRAL_PROMPTS[:4]
    assert CausalSettings(text_prompts=["a?", "b?"]).text_prompts == ("a?", "b?")
    record = json.loads(json.dumps(s.record()))
    assert record["text_prompts"] == list(NEUTRAL_PROMPTS) and record["text_alpha"] == 0.25
    bad = [
        (dict(text_prompts="Tell me about yourself."), ValueError, "list of prompts"),
        (dict(text_prompts=["only one"]), ValueError, "at least 2 distinct"),
        (dict(text_prompts=["same", "same"]), ValueError, "at least 2 distinct"),
        (dict(text_prompts=["ok", ""]), ValueError, "non-empty"),
        (dict(text_prompts=1), ValueError, "text_prompts must be >= 2"),
        (dict(text_prompts=9), ValueError, "text_prompts must be <= 8"),
        (dict(text_alpha=0), ValueError, "text_alpha"),
        (dict(text_alpha=-0.5), ValueError, "text_alpha"),
        (dict(n_text_random=-1), ValueError, "n_text_random"),
        (dict(text_max_new_tokens=0), ValueError, "text_max_new_tokens"),
        (dict(text_positions="last"), ValueError, "text_positions"),
        (dict(n_text_gate=1), ValueError, "n_text_gate"),
        (dict(text_sweep_alphas=(0.0,)), ValueError, "text_sweep_alphas"),
        (dict(text_prompts=3, n_text_sweep_prompts=4), ValueError, "n_text_sweep_prompts"),
        (dict(steered_text="yes"), TypeError, "steered_text"),
        (dict(n_text_agreement=1.5), TypeError, "n_text_agreement"),
    ]
    for kw, error, words in bad:
        with pytest.raises(error, match=words):
            CausalSettings(**kw)
    assert CausalSettings(text_sweep_alphas=()).text_sweep_alphas == ()


def test_notebook_parameters_reach_the_settings():
    from personas.study import QUICK, notebook_defaults

    (check,) = [c for c in NOTEBOOK_CHECKS if "causal_steered_text" in c.names]
    params = notebook_defaults()
    assert {"causal_text_prompts", "causal_text_alpha", "causal_text_tokens"} <= set(check.names) <= set(params)
    s = check.build(params)
    assert s.steered_text and s.text_prompts == NEUTRAL_PROMPTS and s.text_max_new_tokens == 20
    quick = check.build({**params, **{k: v for k, v in QUICK.items() if k in check.names}})
    assert quick.text_prompts == NEUTRAL_PROMPTS[:2] and quick.text_max_new_tokens == 16
    assert quick.n_dose_random == 1 and s.n_dose_random == 2  # the dose response's control, from the notebook
    with pytest.raises(ValueError, match="text_alpha"):
        check.build({**params, "causal_text_alpha": 0.0})


def test_nll_of_texts_after_one_prompt_is_each_text_alone(random_model):
    """The arm's coherence pass groups the texts of a prompt (one context pass, shared batches): same NLL."""
    model, tok = random_model[:2]
    texts = ["I like people.", "Rules are rules rules.", "", "Hello there friend", "I like people."]
    prompts = [PROMPTS[0], PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[1]]
    together = text_nll(model, tok, texts, prompts=prompts, batch_size=2)
    for k, (text, prompt) in enumerate(zip(texts, prompts)):
        if not text:
            assert np.isnan(together[k])
            continue
        body = tok(text, add_special_tokens=False)["input_ids"]
        expected = -manual_mean_logp(model, prompt_token_ids(tok, prompt)[0], body)
        assert together[k] == pytest.approx(expected, abs=1e-5)
    assert together[0] != pytest.approx(together[4])  # the prompt matters: the contexts were not mixed up


def test_report_names_missing_steered_texts(result, tmp_path):
    from personas.report.checks import artifact_problems

    out = tmp_path / "study"
    save_causal_result(result[0], out / "causal")
    params = {"causal": True, "causal_steered_text": True, "seed": SEED, "causal_heldout": 10, "causal_train": 20}
    assert not [p for p in artifact_problems(out, params) if "steered_text" in p]
    (out / "causal" / "steered_text.csv").unlink()
    assert [p for p in artifact_problems(out, params) if "`causal/steered_text.csv` is missing" in p]
    assert not [p for p in artifact_problems(out, {**params, "causal_steered_text": False}) if "steered_text" in p]
