"""Activation store: round trip, reuse, extension, mismatch errors, cross-persona loading."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from personas.model.extraction import extract_activations
from personas.statements import load_statements
from personas.model.extraction import ExtractionSettings, extract_to_store
from personas.store.paths import list_stored, model_slug, store_path
from personas.store.read import load_activations, load_layers, store_manifest
from tiny_models import make_model, make_tokenizer

MODEL = "tiny/llama-3"
SETTINGS = ("position", "template", "wrap", "batch_size", "blocks_path", "final_norm", "too_long")


@pytest.fixture(scope="module")
def setup():
    model = make_model("llama")
    tok = make_tokenizer("llama3")
    df = load_statements(["openness", "politically-liberal"], n_per_direction=4)
    return model, tok, df


def run(setup, store_dir, **kwargs):
    model, tok, df = setup
    kwargs = {"layers": [0, 2], "progress": False, "batch_size": 3, **kwargs}
    settings = ExtractionSettings(**{k: kwargs.pop(k) for k in SETTINGS if k in kwargs})
    return extract_to_store(model, tok, kwargs.pop("statements", df), model_name=MODEL, store_dir=store_dir,
                            settings=settings, **kwargs)


def test_round_trip_and_manifest(setup, tmp_path):
    model, tok, df = setup
    summary = run(setup, tmp_path)
    assert summary["status"].tolist() == ["computed", "computed"]
    assert summary["persona"].tolist() == ["openness", "politically-liberal"]
    tensor_file, manifest_file = store_path(tmp_path, MODEL, "openness")
    assert tensor_file == tmp_path / "tiny__llama-3" / "openness.safetensors" and manifest_file.exists()
    acts, manifest = load_activations(tmp_path, MODEL, "openness")
    group = df[df["persona"] == "openness"]
    direct, _ = extract_activations(model, tok, group["statement"].tolist(), [0, 2], progress=False)
    assert sorted(acts) == [0, 2]
    for layer in (0, 2):
        assert acts[layer].dtype == np.float32 and acts[layer].shape == (8, 32)
        np.testing.assert_allclose(acts[layer], direct[layer], atol=1e-6)
    for key, value in {
        "model": MODEL, "model_slug": "tiny__llama-3", "n_blocks": 3, "hidden_size": 32, "layers": [0, 2],
        "layer_convention": "0 = embeddings, i = output of block i", "position": "last", "template_mode": "system",
        "dtype": "float32", "persona": "openness", "n_statements": 8, "final_norm": "norm",
    }.items():
        assert manifest[key] == value, key
    assert manifest["ids"] == group["id"].tolist() and manifest["statements"] == group["statement"].tolist()
    assert manifest["directions"] == group["direction"].tolist()
    assert {"revision", "created", "versions", "prompt_example"} <= set(manifest)
    assert manifest == store_manifest(tmp_path, "tiny__llama-3", "openness")  # slug works as a name too
    # no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "tiny__llama-3").iterdir()) == [
        "openness.json", "openness.safetensors", "politically-liberal.json", "politically-liberal.safetensors"]


def test_reuse_extend_and_overwrite(setup, tmp_path):
    run(setup, tmp_path)
    _, manifest_file = store_path(tmp_path, MODEL, "openness")
    write_id = json.loads(manifest_file.read_text())["write_id"]
    assert run(setup, tmp_path, layers=[2])["status"].tolist() == ["reused", "reused"]
    assert json.loads(manifest_file.read_text())["write_id"] == write_id  # untouched
    extended = run(setup, tmp_path, layers=[2, 3])
    assert extended["status"].tolist() == ["extended", "extended"] and extended["layers"][0] == [0, 2, 3]
    acts, manifest = load_activations(tmp_path, MODEL, "openness")
    assert manifest["layers"] == [0, 2, 3]
    model, tok, df = setup
    fresh, _ = extract_activations(model, tok, df["statement"][:8].tolist(), [0, 2, 3], progress=False)
    for layer in (0, 2, 3):
        np.testing.assert_allclose(acts[layer], fresh[layer], atol=1e-6)
    assert run(setup, tmp_path, overwrite=True, layers=[1])["status"].tolist() == ["computed", "computed"]
    assert store_manifest(tmp_path, MODEL, "openness")["layers"] == [1]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(position="mean"), "position: stored 'last', requested 'mean'"),
        (dict(template="raw"), "template_mode: stored 'system', requested 'raw'"),
        (dict(wrap="Say: {statement}"), "wrap: stored"),
        ("other statements", "ids: 8 of 8 differ"),
    ],
)
def test_mismatch_is_an_error_naming_the_field(setup, tmp_path, change, message):
    run(setup, tmp_path)
    if change == "other statements":
        change = {"statements": load_statements(["openness", "politically-liberal"], n_per_direction=4, seed=9)}
    before = (tmp_path / "tiny__llama-3" / "openness.safetensors").read_bytes()
    with pytest.raises(ValueError, match=f"made differently: .*{message}.*overwrite=True"):
        run(setup, tmp_path, **change)
    assert (tmp_path / "tiny__llama-3" / "openness.safetensors").read_bytes() == before


def test_other_dtype_or_architecture_do_not_mix(setup, tmp_path):
    run(setup, tmp_path)
    _, tok, df = setup
    bf16 = make_model("llama").to(dtype=__import__("torch").bfloat16)
    with pytest.raises(ValueError, match="dtype: stored 'float32', requested 'bfloat16'"):
        extract_to_store(bf16, tok, df, model_name=MODEL, layers=[0], store_dir=tmp_path, progress=False)
    gpt2 = make_model("gpt2")
    with pytest.raises(ValueError, match="final_norm: stored 'norm', requested 'ln_f'"):
        extract_to_store(gpt2, tok, df, model_name=MODEL, layers=[0], store_dir=tmp_path, progress=False)


def test_load_layers_stacks_in_persona_order(setup, tmp_path):
    run(setup, tmp_path)
    _, _, df = setup
    acts, meta = load_layers(tmp_path, MODEL, ["politically-liberal", "openness"], layers=[2])
    assert list(acts) == [2] and acts[2].shape == (16, 32)
    assert list(meta.columns) == ["id", "persona", "direction", "statement"]
    expected = pd.concat([df[df["persona"] == "politically-liberal"], df[df["persona"] == "openness"]])
    assert meta["id"].tolist() == expected["id"].tolist()
    one, _ = load_activations(tmp_path, MODEL, "openness", [2])
    np.testing.assert_array_equal(acts[2][8:], one[2])
    all_acts, all_meta = load_layers(tmp_path, MODEL, None)
    assert sorted(all_acts) == [0, 2] and all_meta["persona"].unique().tolist() == ["openness", "politically-liberal"]
    table = list_stored(tmp_path)
    assert table[["model_slug", "persona", "n_statements"]].values.tolist() == [
        ["tiny__llama-3", "openness", 8], ["tiny__llama-3", "politically-liberal", 8]]


def test_missing_things_are_clear_errors(setup, tmp_path):
    run(setup, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"persona 'agreeableness'.*personas there: \['openness', 'politically-liberal'\]"):
        load_activations(tmp_path, MODEL, "agreeableness")
    with pytest.raises(FileNotFoundError, match=r"no activations for model 'other/model'.*models there: \['tiny__llama-3'\]"):
        load_layers(tmp_path, "other/model", ["openness"])
    with pytest.raises(ValueError, match=r"layers \[3\] are not stored.*stored: \[0, 2\]"):
        load_activations(tmp_path, MODEL, "openness", layers=[3])
    with pytest.raises(ValueError, match=r"lacks columns \['id'\]"):
        run(setup, tmp_path, statements=setup[2].drop(columns="id"))


def test_bad_layers_write_nothing(setup, tmp_path):
    with pytest.raises(ValueError, match="out of range"):
        run(setup, tmp_path, layers=[9])
    assert not any(tmp_path.rglob("*"))


def test_interrupted_write_is_detected(setup, tmp_path):
    run(setup, tmp_path)
    _, manifest_file = store_path(tmp_path, MODEL, "openness")
    manifest = json.loads(manifest_file.read_text())
    manifest["write_id"] = "stale"
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="does not belong to its manifest.*overwrite=True"):
        load_activations(tmp_path, MODEL, "openness")


@pytest.mark.parametrize(
    "name, slug",
    [("meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama__Meta-Llama-3-8B-Instruct"),
     ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2"), ("./models/my llama", "my-llama"), ("org/name:v2", "org__name-v2")],
)
def test_model_slug(name, slug):
    assert model_slug(name) == slug
    assert model_slug(slug) == slug  # idempotent: a slug loads as the model name
