"""A direction from a file through the causal check, on the planted persona model of test_readouts.py.

In that model persona p owns unit u_p: steering along e_{u_p} moves p's ``+`` statements against
its ``-`` ones, a random direction barely does. A file holding our own direction must give our
numbers exactly; a file holding a random vector must land among the random controls; a GGUF
control vector exported at ``hidden_states[L]`` and imported back must steer at ``L``.
"""

from __future__ import annotations

import hashlib

import gguf
import numpy as np
import pandas as pd
import pytest

from personas.causal.check import causal_check
from personas.causal.directions import OWN_SOURCE
from personas.causal.results import load_causal_result, save_causal_result
from personas.causal.split import split_statements
from personas.model.direction_files import export_control_vector, import_control_vector, load_direction, save_direction
from personas.model.directions import Direction, Provenance
from personas.model.extraction import extract_activations
from personas.model.interventions import add_vector
from personas.model.readouts import statement_likelihood
from personas.report.causal import causal_summary_markdown
from personas.store.fingerprints import model_fingerprint
from tests.test_causal import LAYER, SEED, planted, small_settings  # noqa: F401  (planted: the fixture)
from tests.tiny_models import UNITS

PERSONA = "agreeableness"
NODES = [UNITS[0], 3, 9]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def own_difference(model, tok, statements, settings, layer: int) -> tuple[np.ndarray, float]:
    """``mean(+) - mean(-)`` (float64) of the check's training statements of PERSONA at ``layer``; their mean norm."""
    _, train = split_statements(statements, PERSONA, n_heldout=settings.n_heldout, n_train=settings.n_train, seed=SEED)
    acts, _ = extract_activations(model, tok, train["statement"].tolist(), [layer], settings.extraction,
                                  progress=False)
    a = acts[layer].astype(np.float64)
    pos = (train["direction"] == "positive").to_numpy()
    return a[pos].mean(0) - a[~pos].mean(0), float(np.linalg.norm(a, axis=1).mean())


def steering(result, alpha: float = 0.25) -> pd.Series:
    c = result.comparisons
    return c[(c["persona"] == PERSONA) & (c["arm"] == "direction") & (c["alpha"] == alpha)].iloc[0]


def test_our_direction_from_a_file_gives_exactly_our_numbers(planted, tmp_path):  # noqa: F811
    model, tok, statements = planted
    settings = small_settings(readouts=("likelihood",), n_specificity=2, dose_layers=(LAYER,), n_random_directions=3,
                              n_random_nodes=3)
    diff, _ = own_difference(model, tok, statements, settings, LAYER)
    made = Direction(vector=diff, layer=LAYER, model="planted", model_type="llama",
                     model_fingerprint=model_fingerprint(model), provenance=Provenance(personas=(PERSONA,)))
    loaded = load_direction(save_direction(made, tmp_path / "ours.safetensors"), model=model)
    ours = causal_check(model, tok, statements, {PERSONA: NODES}, LAYER, settings, seed=SEED, progress=False)
    theirs = causal_check(model, tok, statements, {PERSONA: NODES}, LAYER, settings, seed=SEED,
                          directions={PERSONA: loaded}, progress=False)
    for name in ("gate", "scores", "effects", "comparisons", "specificity", "specificity_test", "dose_response"):
        pd.testing.assert_frame_equal(getattr(theirs, name), getattr(ours, name), check_exact=True, obj=name)
    assert set(ours.effects["intervention"]) >= {"salient_ablation", "salient_direction", "top_variance_ablation"}
    assert ours.meta["per_persona"][PERSONA]["direction_source"] == OWN_SOURCE
    source = theirs.meta["per_persona"][PERSONA]["direction_source"]
    assert source["cosine_with_training_statements"] == pytest.approx(1.0, abs=1e-12)
    assert source["sha256"] == hashlib.sha256(diff.tobytes()).hexdigest() and source["dtype"] == "float64"
    assert source["model"] == "planted" and source["provenance"]["personas"] == [PERSONA]
    assert theirs.meta["file_directions"] == [PERSONA] and theirs.meta["steering_only"] == []
    assert theirs.meta["dose_personas"] == [PERSONA] and theirs.meta["dose_skipped"] == []
    other = theirs.meta["per_persona"]["politically-liberal"]["direction_source"]
    assert other == OWN_SOURCE  # the other row of the specificity matrix keeps our direction
    assert "Directions from files" not in causal_summary_markdown(ours)
    text = causal_summary_markdown(theirs)
    assert (f"- {PERSONA}: method `user`, model `planted`, model type `llama`; vector sha256 "
            f"`{source['sha256'][:16]}`; cosine with ours +1.000.") in text
    assert f"Rows steered along a file's direction: {PERSONA}." in text


@pytest.fixture(scope="module")
def planted_and_random(planted):  # noqa: F811
    """The planted unit e_{u_p}, and a random Gaussian vector, as PERSONA's file direction; steering only."""
    model, tok, statements = planted
    settings = small_settings(readouts=("likelihood",), n_specificity=0, n_random_directions=19)
    hidden = model.config.hidden_size
    unit = np.zeros(hidden, dtype=np.float32)
    unit[UNITS[0]] = 1.0
    rand = np.random.default_rng(11).standard_normal(hidden).astype(np.float32)
    out = {}
    for name, vec in (("planted", unit), ("random", rand)):
        d = Direction(vector=vec, layer=LAYER, provenance=Provenance(method="gguf", source=f"{name}.gguf"))
        out[name] = causal_check(model, tok, statements, {}, LAYER, settings, seed=SEED, directions={PERSONA: d},
                                 progress=False)
    diff, _ = own_difference(model, tok, statements, settings, LAYER)
    return out, diff / np.linalg.norm(diff), rand


def test_a_random_file_direction_stays_in_the_random_band_the_planted_one_leaves_it(planted_and_random):
    results, ours, rand = planted_and_random
    planted_row, random_row = steering(results["planted"]), steering(results["random"])
    assert planted_row["n_control"] == random_row["n_control"] == 19
    assert planted_row["control_max_abs"] == random_row["control_max_abs"]  # the same random draws
    assert planted_row["effect_low"] > 0 and abs(planted_row["effect"]) > planted_row["control_max_abs"]
    assert planted_row["percentile"] == 100.0
    assert abs(random_row["effect"]) < random_row["control_max_abs"] and random_row["percentile"] < 100.0
    z = {name: (row["effect"] - row["control_mean"]) / row["control_std"]
         for name, row in (("planted", planted_row), ("random", random_row))}
    assert z["planted"] > 4 and abs(z["random"]) < 2  # measured: 4.8 and -1.2 standard deviations of the draws
    # their vector vs ours: the cosine recorded is the one computed by hand
    cos = {name: r.meta["per_persona"][PERSONA]["direction_source"]["cosine_with_training_statements"]
           for name, r in results.items()}
    assert cos["planted"] == pytest.approx(ours[UNITS[0]], abs=1e-12) and cos["planted"] > 0.5
    rand = rand.astype(np.float64)
    assert cos["random"] == pytest.approx(float(rand @ ours / np.linalg.norm(rand)), abs=1e-12)


def test_without_salient_nodes_steering_only_and_no_dose_at_other_layers(planted_and_random, tmp_path):
    res = planted_and_random[0]["planted"]
    assert set(res.effects["intervention"]) == {"direction", "random_direction"}
    assert res.meta["steering_only"] == [PERSONA] and res.meta["dose_skipped"] == [PERSONA]
    assert res.dose_response.empty and res.meta["dose_personas"] == []
    save_causal_result(res, tmp_path)
    back = load_causal_result(tmp_path)
    text = causal_summary_markdown(back)
    assert text == causal_summary_markdown(res)
    cos = res.meta["per_persona"][PERSONA]["direction_source"]["cosine_with_training_statements"]
    assert "**Directions from files.**" in text
    assert f"- {PERSONA}: file `planted.gguf`, method `gguf`; vector sha256 " in text
    assert f"cosine with ours {cos:+.3f}." in text
    assert f"{PERSONA}, `likelihood`, persona direction (from the file) at alpha +0.25: specific effect" in text
    assert f"Steering arms only for {PERSONA}" in text and f"No dose response for {PERSONA}" in text


def _bare_control_vector(path, vector: np.ndarray, index: int) -> None:
    """A control vector as repeng or llama.cpp's cvector-generator writes it: no metadata of ours."""
    writer = gguf.GGUFWriter(str(path), "controlvector")
    writer.add_string("controlvector.model_hint", "llama")
    writer.add_uint32("controlvector.layer_count", 1)
    writer.add_tensor(f"direction.{index}", vector.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_control_vector_exported_at_L_steers_at_L(planted, tmp_path):  # noqa: F811
    model, tok, statements = planted
    layer = 2  # hidden_states[2] = llama.cpp's direction.1 (the planted model has 3 blocks)
    settings = small_settings(readouts=("likelihood",), n_specificity=0, n_dose_personas=0, n_random_directions=2)
    diff, scale = own_difference(model, tok, statements, settings, layer)
    d32 = Direction(vector=diff.astype(np.float32), layer=layer, model="planted", model_type="llama", n_blocks=3)
    (back,) = import_control_vector(export_control_vector(d32, tmp_path / "ours.gguf"), model=model)
    assert back.layer == layer and back.vector.tobytes() == d32.vector.tobytes()
    _bare_control_vector(tmp_path / "repeng.gguf", d32.vector, layer - 1)
    (foreign,) = import_control_vector(tmp_path / "repeng.gguf", model=model)
    runs = {name: causal_check(model, tok, statements, {}, layer, settings, seed=SEED, directions={PERSONA: d},
                               progress=False) for name, d in (("ours", back), ("foreign", foreign))}
    pd.testing.assert_frame_equal(runs["foreign"].effects, runs["ours"].effects, check_exact=True)
    src = runs["foreign"].meta["per_persona"][PERSONA]["direction_source"]
    assert src["method"] == "gguf" and src["file"] == "repeng.gguf" and src["model_type"] == "llama"
    assert src["dtype"] == "float32" and src["layer"] == layer
    # the shift recorded is the readout under alpha * scale * unit added at hidden_states[2], by hand
    info = runs["foreign"].meta["per_persona"][PERSONA]
    assert info["scale"][str(layer)] == pytest.approx(scale, rel=1e-12)
    held = statements.set_index("id").loc[info["heldout_ids"], "statement"].tolist()
    base = statement_likelihood(model, tok, held)
    with add_vector(model, layer, 0.25 * scale * d32.unit):
        hand = statement_likelihood(model, tok, held) - base
    s = runs["foreign"].scores
    got = s[(s["intervention"] == "direction") & (s["alpha"] == 0.25)]
    np.testing.assert_allclose(got["shift"], hand, atol=1e-5)
    assert np.abs(hand).max() > 0.01


def test_file_directions_are_checked_before_any_pass(planted):  # noqa: F811
    model, tok, statements = planted
    settings = small_settings(readouts=("likelihood",))
    hidden = model.config.hidden_size
    ones = np.ones(hidden)

    def run(directions, layer=LAYER):
        return causal_check(model, tok, statements, {}, layer, settings, seed=SEED, directions=directions,
                            progress=False)

    with pytest.raises(ValueError, match=r"directions\['agreeableness'\] is at layer 2, the check runs at layer 1; "
                                         r"pass layer=2"):
        run({PERSONA: Direction(vector=ones, layer=2)})
    with pytest.raises(ValueError, match=rf"directions\['agreeableness'\]: the direction has 16 values, this model's "
                                         rf"hidden size is {hidden}"):
        run({PERSONA: Direction(vector=np.ones(16), layer=LAYER)})
    with pytest.raises(ValueError, match="is the zero vector"):
        run({PERSONA: Direction(vector=np.zeros(hidden), layer=LAYER)})
    with pytest.raises(ValueError, match="the statements hold no persona 'extraversion'"):
        run({"extraversion": Direction(vector=ones, layer=LAYER)})
    with pytest.raises(ValueError, match="fingerprint"):
        run({PERSONA: Direction(vector=ones, layer=LAYER, model_fingerprint="gguf-sha256:abc")})
    with pytest.raises(ValueError, match="is for a 'gpt2' model"):
        run({PERSONA: Direction(vector=ones, layer=LAYER, model_type="gpt2")})
    with pytest.raises(TypeError, match=r"directions\['agreeableness'\] must be a Direction"):
        run({PERSONA: ones})
    with pytest.raises(TypeError, match="directions must be a mapping"):
        run([Direction(vector=ones, layer=LAYER)])
