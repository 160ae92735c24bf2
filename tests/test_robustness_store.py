"""The activation store trusts data, not names: model fingerprints, verified reuse, names that cannot collide."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest
import torch

import personas.store.write as store_mod
from personas.model.extraction import extract_activations
from personas._core.io import exclusive_lock
from personas.statements import load_statements
from personas.store.paths import StoreError, store_path
from personas.model.extraction import ExtractionSettings, extract_to_store
from personas.store.read import load_activations, load_layers, store_manifest, verify_stored
from personas.store.fingerprints import model_fingerprint, store_fingerprint
from personas.store.write import save_activations
from tiny_models import make_model, make_tokenizer

MODEL = "tiny/llama-3"
SETTINGS = ("position", "template", "wrap", "batch_size", "blocks_path", "final_norm", "too_long")


@pytest.fixture(scope="module")
def setup():
    model = make_model("llama")
    tok = make_tokenizer("llama3")
    df = load_statements(["openness", "politically-liberal"], n_per_direction=3)
    return model, tok, df


def run(setup, store_dir, **kwargs):
    model, tok, df = setup
    kwargs = {"layers": [0, 2], "progress": False, "batch_size": 6, **kwargs}
    model = kwargs.pop("model", model)
    settings = ExtractionSettings(**{k: kwargs.pop(k) for k in SETTINGS if k in kwargs})
    return extract_to_store(model, tok, kwargs.pop("statements", df), model_name=MODEL, store_dir=store_dir,
                            settings=settings, **kwargs)


def _fresh(setup, persona, layers=(0, 2)):
    model, tok, df = setup
    acts, _ = extract_activations(model, tok, df[df["persona"] == persona]["statement"].tolist(), list(layers),
                                  progress=False)
    return acts


def _synthetic(n=3, hidden=4, seed=0):
    rng = np.random.default_rng(seed)
    return {0: rng.standard_normal((n, hidden)).astype(np.float32), 1: rng.standard_normal((n, hidden)).astype(np.float32)}


def _save(tmp_path, persona, acts, prefix="s"):
    n = len(acts[0])
    rows = pd.DataFrame({"id": [f"{prefix}{i}" for i in range(n)], "persona": persona,
                         "direction": ["positive", "negative"] * (n // 2) + ["positive"] * (n % 2),
                         "statement": [f"{persona} statement {i}" for i in range(n)]})
    info = {"hidden_size": acts[0].shape[1], "position": "last"}
    return save_activations(tmp_path, acts, info, rows, model_name="m", persona=persona, model_fingerprint="test:1")


# --------------------------------------------------------------------------- model fingerprint


def test_checkpoint_retrained_in_place_is_not_reused(setup, tmp_path):
    from transformers import AutoModel

    _, tok, df = setup
    ckpt = tmp_path / "ckpt"
    make_model("llama", seed=1).save_pretrained(ckpt)
    model = AutoModel.from_pretrained(ckpt).eval()  # a local directory: no hub revision
    assert model_fingerprint(model).startswith("local-sha256:")
    store = tmp_path / "store"
    assert run(setup, store, model=model)["status"].tolist() == ["computed", "computed"]
    assert run(setup, store, model=AutoModel.from_pretrained(ckpt).eval())["status"].tolist() == ["reused", "reused"]
    with torch.no_grad():  # "retrain" and save over the same directory
        for p in model.parameters():
            p.add_(0.5)
    model.save_pretrained(ckpt)
    retrained = AutoModel.from_pretrained(ckpt).eval()
    with pytest.raises(ValueError, match=r"model_fingerprint: stored 'local-sha256:.*retrained in place.*overwrite=True"):
        run(setup, store, model=retrained)
    assert (store / ".model-fingerprints.json").exists()  # file digests cached: later calls only stat the files


def test_in_memory_model_with_other_weights_is_not_reused(setup, tmp_path):
    run(setup, tmp_path)
    with pytest.raises(ValueError, match=r"model_fingerprint: stored 'params-sha256:"):
        run(setup, tmp_path, model=make_model("llama", seed=5))
    assert run(setup, tmp_path, model=make_model("llama"))["status"].tolist() == ["reused", "reused"]  # same weights


def test_model_fingerprint_sources(setup):
    model = make_model("llama")
    model.personas_source = {"name": "x", "path": None, "revision": "abc123", "fingerprint": "gguf-sha256:ff"}
    assert model_fingerprint(model) == "gguf-sha256:ff"
    model.personas_source = {"name": "x", "path": None, "revision": "abc123"}
    assert model_fingerprint(model) == "revision:abc123"


def test_store_without_model_fingerprint_is_not_reused(setup, tmp_path):
    run(setup, tmp_path)
    _, manifest_file = store_path(tmp_path, MODEL, "openness")
    manifest = json.loads(manifest_file.read_text())
    del manifest["model_fingerprint"]  # as stores before fingerprints
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="model_fingerprint: not recorded.*overwrite=True"):
        run(setup, tmp_path)


# --------------------------------------------------------------------------- verified reuse


def _break(tensor_file, how):
    data = tensor_file.read_bytes()
    if how == "deleted":
        tensor_file.unlink()
    elif how == "half":
        tensor_file.write_bytes(data[: len(data) // 2])
    elif how == "5 bytes":
        tensor_file.write_bytes(data[:5])
    elif how == "0 bytes":
        tensor_file.write_bytes(b"")
    elif how == "100 bytes overwritten":
        tensor_file.write_bytes(data[:-150] + b"\xff" * 100 + data[-50:])  # NaN patterns inside layer data


@pytest.mark.parametrize("how", ["deleted", "half", "5 bytes", "0 bytes", "100 bytes overwritten"])
def test_broken_tensor_file_is_an_error_on_load_and_redone_on_reuse(setup, tmp_path, how):
    run(setup, tmp_path)
    tensor_file, _ = store_path(tmp_path, MODEL, "openness")
    _break(tensor_file, how)
    with pytest.raises(StoreError, match=rf"{tensor_file.name}.*(missing|bytes|checksum|complete).*extract_to_store"):
        load_layers(tmp_path, MODEL, ["openness"])
    with pytest.raises(StoreError, match=tensor_file.name):
        verify_stored(tmp_path, MODEL, "openness")
    with pytest.warns(RuntimeWarning, match=rf"recomputing persona 'openness'.*{tensor_file.name}"):
        summary = run(setup, tmp_path)
    assert summary["status"].tolist() == ["recomputed", "reused"]
    acts, _ = load_activations(tmp_path, MODEL, "openness")
    fresh = _fresh(setup, "openness")
    for layer in (0, 2):
        np.testing.assert_allclose(acts[layer], fresh[layer], atol=1e-6)
    verify_stored(tmp_path, MODEL, "openness")


@pytest.mark.parametrize("stage", ["overwrite", "extend"])
def test_crash_between_tensor_file_and_manifest_is_redone(setup, tmp_path, monkeypatch, stage):
    run(setup, tmp_path)
    real = store_mod.write_json

    def crash(*a, **k):
        raise KeyboardInterrupt("killed after the tensor file was written")

    monkeypatch.setattr(store_mod, "write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        if stage == "overwrite":
            run(setup, tmp_path, overwrite=True, layers=[1])
        else:
            run(setup, tmp_path, layers=[0, 2, 3])
    monkeypatch.setattr(store_mod, "write_json", real)
    # the new tensor file is beside the old manifest: not reused
    with pytest.raises(StoreError, match="does not belong to its manifest"):
        load_layers(tmp_path, MODEL, ["openness"])
    with pytest.warns(RuntimeWarning, match="does not belong to its manifest"):
        summary = run(setup, tmp_path)
    assert summary["status"].tolist() == ["recomputed", "reused"]
    acts, manifest = load_activations(tmp_path, MODEL, "openness")
    fresh = _fresh(setup, "openness")
    np.testing.assert_allclose(acts[2], fresh[2], atol=1e-6)


def test_stale_temporary_files_are_removed(setup, tmp_path):
    run(setup, tmp_path)
    folder = tmp_path / "tiny__llama-3"
    stale = folder / ".openness.safetensors.1a2b3c4d.safetensors.tmp"
    stale.write_bytes(b"x" * 1000)
    (folder / ".openness.json.zzzz.json.tmp").write_text("{")
    assert run(setup, tmp_path)["status"].tolist() == ["reused", "reused"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "openness.json", "openness.safetensors", "politically-liberal.json", "politically-liberal.safetensors"]


def test_manifest_records_checksums_and_fingerprints(setup, tmp_path):
    run(setup, tmp_path)
    m = store_manifest(tmp_path, MODEL, "openness")
    tensor_file, _ = store_path(tmp_path, MODEL, "openness")
    assert m["format_version"] == 2 and m["tensor_bytes"] == tensor_file.stat().st_size
    assert sorted(m["checksums"]) == ["layer_0", "layer_2"] and m["checksums"]["layer_0"].startswith("sha256:")
    assert m["model_fingerprint"].startswith("params-sha256:") and m["statements_fingerprint"].startswith("sha256:")
    fp = store_fingerprint(tmp_path, MODEL, ["openness", "politically-liberal"], [2])
    assert fp == store_fingerprint(tmp_path, MODEL, ["openness", "politically-liberal"], [2])
    # adding a layer leaves the fingerprint of layer 2 unchanged; other layers or personas change it
    run(setup, tmp_path, layers=[3])
    assert store_fingerprint(tmp_path, MODEL, ["openness", "politically-liberal"], [2]) == fp
    assert store_fingerprint(tmp_path, MODEL, ["openness", "politically-liberal"], [3]) != fp
    assert store_fingerprint(tmp_path, MODEL, ["openness"], [2]) != fp
    # another position into another store: another fingerprint
    run(setup, tmp_path / "mean", position="mean")
    assert store_fingerprint(tmp_path / "mean", MODEL, ["openness", "politically-liberal"], [2]) != fp


# --------------------------------------------------------------------------- names


def test_personas_whose_safe_names_collide_keep_their_own_rows(tmp_path):
    a, b = _synthetic(seed=1), _synthetic(seed=2)
    _save(tmp_path, "a b", a, prefix="x")
    _save(tmp_path, "a-b", b, prefix="y")
    assert store_path(tmp_path, "m", "a b")[0] != store_path(tmp_path, "m", "a-b")[0]
    assert store_path(tmp_path, "m", "a-b")[0].name == "a-b.safetensors"  # safe names are kept as they are
    acts, meta = load_layers(tmp_path, "m", ["a b", "a-b"])
    np.testing.assert_array_equal(acts[0], np.concatenate([a[0], b[0]]))
    assert meta["persona"].tolist() == ["a b"] * 3 + ["a-b"] * 3
    # a name that looks like a hashed one is hashed too, so it cannot take another's file
    hashed_stem = store_path(tmp_path, "m", "a b")[0].stem
    assert store_path(tmp_path, "m", hashed_stem)[0] != store_path(tmp_path, "m", "a b")[0]


def test_stored_persona_is_checked_on_load(tmp_path):
    _save(tmp_path, "a-b", _synthetic())
    _, manifest_file = store_path(tmp_path, "m", "a-b")
    manifest = json.loads(manifest_file.read_text())
    manifest["persona"] = "a b"  # a manifest that holds another persona than its file name says
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=r"holds persona 'a b', not 'a-b'"):
        load_layers(tmp_path, "m", ["a-b"])
    with pytest.raises(FileNotFoundError, match=r"persona 'a b'.*personas there: \['a b'\]"):
        load_layers(tmp_path, "m", ["a b"])  # "a b" has its own (hashed) file name, which is not there


def test_a_store_without_fingerprints_is_refused_with_what_to_do(setup, tmp_path):
    # store format 1: no format_version, no checksums or model fingerprint
    _save(tmp_path, "p", _synthetic())
    _, manifest_file = store_path(tmp_path, "m", "p")
    manifest = json.loads(manifest_file.read_text())
    old = {k: v for k, v in manifest.items() if k not in ("format_version", "checksums", "model_fingerprint",
                                                          "statements_fingerprint")}
    manifest_file.write_text(json.dumps(old))
    for read in (lambda: load_layers(tmp_path, "m", ["p"]), lambda: store_manifest(tmp_path, "m", "p"),
                 lambda: store_fingerprint(tmp_path, "m", ["p"]), lambda: verify_stored(tmp_path, "m", "p")):
        with pytest.raises(StoreError, match=r"store format 1.*reads format 2 only.*re-extract.*overwrite=True"):
            read()
    # extract_to_store refuses it too (nothing overwritten), and overwrite=True re-extracts it
    run(setup, tmp_path)
    model_dir = tmp_path / "tiny__llama-3"
    manifest_file = model_dir / "openness.json"
    manifest = json.loads(manifest_file.read_text())
    manifest_file.write_text(json.dumps({**manifest, "format_version": 1}))
    with pytest.raises(StoreError, match="store format 1"):
        run(setup, tmp_path)
    assert json.loads(manifest_file.read_text())["format_version"] == 1
    assert run(setup, tmp_path, overwrite=True)["status"].tolist() == ["computed", "computed"]
    assert store_manifest(tmp_path, MODEL, "openness")["format_version"] == 2


# --------------------------------------------------------------------------- one writer, readable files


def test_second_store_writer_gets_a_clear_error(setup, tmp_path):
    folder = tmp_path / "tiny__llama-3"
    with exclusive_lock(folder / ".store.lock", "the activation store"):
        with pytest.raises(RuntimeError, match="being written by another process"):
            run(setup, tmp_path)
        with pytest.raises(RuntimeError, match="being written by another process"):
            save_activations(tmp_path, _synthetic(), {"hidden_size": 4}, pd.DataFrame(
                {"id": ["a", "b", "c"], "persona": "p", "direction": "positive", "statement": ["x", "y", "z"]}),
                model_name=MODEL, persona="p")
    assert run(setup, tmp_path)["status"].tolist() == ["computed", "computed"]
    assert not (folder / ".store.lock").exists()


def test_store_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        manifest_file = _save(tmp_path, "p", _synthetic())
    finally:
        os.umask(old)
    tensor_file, _ = store_path(tmp_path, "m", "p")
    assert stat.S_IMODE(manifest_file.stat().st_mode) == 0o644
    assert stat.S_IMODE(tensor_file.stat().st_mode) == 0o644


def test_parameter_checks(setup, tmp_path):
    with pytest.raises(ValueError, match=r"layers must be .*list of ints, got \[True\]"):
        run(setup, tmp_path, layers=[True])
    with pytest.raises(TypeError, match="batch_size must be an int; got None"):
        run(setup, tmp_path, batch_size=None)
    with pytest.raises(TypeError, match="overwrite must be True or False"):
        run(setup, tmp_path, overwrite="yes")
    assert not any(tmp_path.rglob("*"))
