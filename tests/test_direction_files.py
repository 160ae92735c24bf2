"""Directions as files: safetensors and GGUF round trips, the llama.cpp layer map, refusals.

The layer map (``personas.model.direction_files``): our ``hidden_states[L]`` is written as
llama.cpp's ``direction.<L-1>``, which llama.cpp adds to the output of block ``L-1`` counted
from 0, i.e. ``model.layers[L-1]``.
"""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch

from personas.model.direction_files import (
    export_control_vector,
    import_control_vector,
    load_direction,
    save_direction,
)
from personas.model.directions import Direction, Provenance, check_direction_fits, direction_from_store
from personas.model.extraction import extract_to_store
from personas.model.interventions import add_vector
from personas.statements import load_statements
from personas.store.fingerprints import model_fingerprint
from tiny_models import make_model, make_tokenizer

N_BLOCKS = 30  # SmolLM2's depth, for the edge cases of the GGUF map


def _direction(layer=10, dtype=np.float32, hidden=576, seed=0, **kw) -> Direction:
    vec = np.random.default_rng(seed).normal(size=hidden).astype(dtype)
    prov = Provenance(method="mean_difference", personas=("agreeableness",), sample_key="sample-0123456789", seed=7,
                      n_positive=5, n_negative=5, position="last", template_mode="system", wrap="{statement}")
    base = dict(vector=vec, layer=layer, model="smollm2-135m-instruct", model_fingerprint="gguf-sha256:abc",
                model_type="llama", n_blocks=N_BLOCKS, scale=12.5, provenance=prov)
    return Direction(**{**base, **kw})


def _same(a: Direction, b: Direction) -> None:
    assert a.vector.dtype == b.vector.dtype and a.vector.tobytes() == b.vector.tobytes()  # bit for bit
    for key in ("layer", "model", "model_fingerprint", "model_type", "n_blocks", "scale", "operation", "provenance"):
        assert getattr(a, key) == getattr(b, key), key


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_safetensors_round_trip_is_bit_identical(tmp_path, dtype):
    d = _direction(dtype=dtype)
    back = load_direction(save_direction(d, tmp_path / "d.safetensors"))
    _same(d, back)
    assert back.norm == d.norm and back.hidden_size == 576


def test_safetensors_metadata_is_plain_json(tmp_path):
    from safetensors import safe_open

    path = save_direction(_direction(layer=12), tmp_path / "d.safetensors")
    with safe_open(str(path), framework="numpy") as fh:
        meta = json.loads(fh.metadata()["personas.direction"])
        assert list(fh.keys()) == ["direction"]
    assert meta["layer"] == 12 and meta["hidden_size"] == 576 and meta["operation"] == "add"
    assert meta["model"] == "smollm2-135m-instruct" and meta["model_fingerprint"] == "gguf-sha256:abc"
    assert meta["provenance"]["personas"] == ["agreeableness"] and meta["provenance"]["seed"] == 7
    assert meta["provenance"]["sample_key"] == "sample-0123456789"
    assert meta["layer_convention"].startswith("hidden_states index")
    assert meta["norm"] == pytest.approx(float(np.linalg.norm(_direction(layer=12).vector.astype(np.float64))))


def test_gguf_holds_what_was_written_and_the_layer_map(tmp_path):
    d = _direction(layer=10)
    path = export_control_vector(d, tmp_path / "d.gguf")
    reader = gguf.GGUFReader(str(path))
    text = lambda key: bytes(reader.get_field(key).parts[reader.get_field(key).data[0]]).decode()  # noqa: E731
    assert text("general.architecture") == "controlvector"
    assert text("controlvector.model_hint") == "llama"
    assert int(reader.get_field("controlvector.layer_count").parts[-1][0]) == 1
    assert [t.name for t in reader.tensors] == ["direction.9"]  # hidden_states[10] = output of block 9 (0-based)
    t = reader.tensors[0]
    assert t.tensor_type == gguf.GGMLQuantizationType.F32 and list(t.shape) == [576]
    assert np.asarray(t.data).tobytes() == d.vector.tobytes()
    ours = json.loads(text("personas.directions"))
    assert ours["direction.9"]["layer"] == 10
    assert "N+1" in text("personas.layer_convention")


def test_gguf_round_trip_is_bit_identical_and_comes_back_at_the_layer(tmp_path):
    ds = [_direction(layer=L, seed=L) for L in (2, 10, N_BLOCKS - 1)]
    path = export_control_vector(list(reversed(ds)), tmp_path / "three.gguf")
    assert [t.name for t in gguf.GGUFReader(str(path)).tensors] == ["direction.1", "direction.9", "direction.28"]
    back = import_control_vector(path)
    assert [b.layer for b in back] == [2, 10, N_BLOCKS - 1]
    for a, b in zip(ds, back):
        _same(a, b)


def test_float64_vector_is_written_as_float32(tmp_path):
    d = _direction(dtype=np.float64)
    (back,) = import_control_vector(export_control_vector(d, tmp_path / "d.gguf"))
    assert back.vector.dtype == np.float32
    assert back.vector.tobytes() == d.vector.astype(np.float32).tobytes()


@pytest.mark.parametrize("layer, words", [(0, "embeddings"), (1, "direction.0"), (N_BLOCKS, "final norm")])
def test_gguf_export_refuses_layers_llama_cpp_cannot_hold(tmp_path, layer, words):
    with pytest.raises(ValueError, match=words):
        export_control_vector(_direction(layer=layer), tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()  # nothing half-written
    assert list(tmp_path.iterdir()) == []


def test_gguf_export_refuses_mixed_models_and_repeated_layers(tmp_path):
    with pytest.raises(ValueError, match="model_fingerprint"):
        export_control_vector([_direction(layer=3), _direction(layer=4, model_fingerprint="other")], tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="repeat"):
        export_control_vector([_direction(layer=3), _direction(layer=3, seed=1)], tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="model_hint"):
        export_control_vector(_direction(model_type=None), tmp_path / "x.gguf")


def _foreign_gguf(path, vectors: dict[int, np.ndarray], hint="llama"):
    """A control vector as repeng and llama.cpp's cvector-generator write it: no personas metadata."""
    writer = gguf.GGUFWriter(str(path), "controlvector")
    writer.add_string("controlvector.model_hint", hint)
    writer.add_uint32("controlvector.layer_count", len(vectors))
    for n, v in vectors.items():
        writer.add_tensor(f"direction.{n}", v.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_foreign_control_vector_imports_at_n_plus_one(tmp_path):
    v5, v7 = (np.random.default_rng(s).normal(size=64).astype(np.float32) for s in (5, 7))
    got = import_control_vector(_foreign_gguf(tmp_path / "repeng.gguf", {7: v7, 5: v5}))
    assert [d.layer for d in got] == [6, 8]
    assert got[0].vector.tobytes() == v5.tobytes() and got[1].vector.tobytes() == v7.tobytes()
    assert got[0].model_type == "llama" and got[0].provenance.method == "gguf"
    assert got[0].provenance.source == "repeng.gguf" and got[0].model_fingerprint is None


def test_import_refuses_direction_zero_and_other_files(tmp_path):
    with pytest.raises(ValueError, match="N >= 1"):
        import_control_vector(_foreign_gguf(tmp_path / "zero.gguf", {0: np.ones(8)}))
    writer = gguf.GGUFWriter(str(tmp_path / "model.gguf"), "llama")
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="not a control vector"):
        import_control_vector(tmp_path / "model.gguf")


# ------------------------------------------------------------------ against a model


@pytest.fixture(scope="module")
def tiny(one_torch_thread):
    return make_model("llama", causal_lm=True), make_tokenizer("llama3")


def _tiny_direction(model, layer=2, **kw) -> Direction:
    vec = np.random.default_rng(3).normal(size=32).astype(np.float32)
    return Direction(vector=vec, layer=layer, model="tiny", model_fingerprint=model_fingerprint(model),
                     model_type="llama", n_blocks=3, **kw)


def test_load_checks_the_model(tmp_path, tiny):
    model, _ = tiny
    path = save_direction(_tiny_direction(model), tmp_path / "d.safetensors")
    assert load_direction(path, model=model).layer == 2  # fits
    other = make_model("llama", seed=1, causal_lm=True)  # same shapes, other weights
    with pytest.raises(ValueError, match="fingerprint"):
        load_direction(path, model=other)
    wide = make_model("llama", hidden=64)
    with pytest.raises(ValueError, match="hidden size is 64"):
        load_direction(path, model=wide)
    gpt2 = make_model("gpt2")
    bare = save_direction(Direction(vector=np.ones(32, np.float32), layer=1, model_type="llama"), tmp_path / "b.st")
    with pytest.raises(ValueError, match="'llama' model, this one is 'gpt2'"):
        load_direction(bare, model=gpt2)
    with pytest.raises(ValueError, match="not a persona direction"):
        from safetensors.numpy import save_file

        save_file({"x": np.ones(3, np.float32)}, str(tmp_path / "other.safetensors"))
        load_direction(tmp_path / "other.safetensors")


def test_import_with_model_checks_depth_and_size(tmp_path, tiny):
    model, _ = tiny
    path = _foreign_gguf(tmp_path / "f.gguf", {1: np.ones(32), 2: np.ones(32)})
    got = import_control_vector(path, model=model)
    assert [d.layer for d in got] == [2, 3] and {d.n_blocks for d in got} == {3}
    with pytest.raises(ValueError, match="hidden size"):
        import_control_vector(_foreign_gguf(tmp_path / "g.gguf", {1: np.ones(16)}), model=model)
    with pytest.raises(ValueError, match="beyond the model's 3 blocks"):
        import_control_vector(_foreign_gguf(tmp_path / "h.gguf", {5: np.ones(32)}), model=model)


def test_layer_map_is_llama_cpp_block_output(tmp_path, tiny):
    """``direction.N`` read back at our layer N+1 and added there equals adding it to ``model.layers[N]``'s output,
    which is where llama.cpp adds ``direction.N`` (``build_cvec(cur, il)`` after block ``il``)."""
    model, tok = tiny
    v = np.random.default_rng(4).normal(size=32).astype(np.float32)
    (d,) = import_control_vector(_foreign_gguf(tmp_path / "one.gguf", {1: v}), model=model)
    ids = tok(["I like people."], return_tensors="pt")
    with torch.no_grad(), add_vector(model, d.layer, d.vector):
        ours = model(**ids).logits
    block = model.model.layers[1]
    handle = block.register_forward_hook(
        lambda m, a, out: (out[0] + torch.as_tensor(v), *out[1:]) if isinstance(out, tuple) else out + torch.as_tensor(v))
    try:
        with torch.no_grad():
            raw = model(**ids).logits
    finally:
        handle.remove()
    with torch.no_grad():
        plain = model(**ids).logits
    assert torch.equal(ours, raw)
    assert not torch.allclose(ours, plain)


def test_direction_from_store_is_the_mean_difference(tmp_path, tiny):
    model, tok = tiny
    statements = load_statements("agreeableness", n_per_direction=4, seed=0)
    extract_to_store(model, tok, statements, model_name="tiny", layers=[2], store_dir=tmp_path / "sample-abc",
                     progress=False)
    d = direction_from_store(tmp_path / "sample-abc", "tiny", "agreeableness", 2, seed=0)
    from personas.store.read import load_layers

    acts, meta = load_layers(tmp_path / "sample-abc", "tiny", "agreeableness", [2])
    pos = (meta["direction"] == "positive").to_numpy()
    a = acts[2].astype(np.float64)
    assert np.array_equal(d.vector, a[pos].mean(0) - a[~pos].mean(0))
    assert d.layer == 2 and d.n_blocks == 3 and d.model == "tiny" and d.model_type == "llama"
    assert d.provenance.sample_key == "sample-abc" and d.provenance.n_positive == 4
    assert d.provenance.template_mode == "system" and d.provenance.store_fingerprint.startswith("sha256:")
    assert d.scale == pytest.approx(np.linalg.norm(a, axis=1).mean())
    check_direction_fits(d, model)  # the store's fingerprint is this model's
    _same(d, load_direction(save_direction(d, tmp_path / "d.safetensors"), model=model))


def test_direction_checks_its_fields():
    with pytest.raises(ValueError, match="float32 or float64"):
        Direction(vector=np.ones(4, np.float16), layer=1)
    with pytest.raises(ValueError, match="non-finite"):
        Direction(vector=np.array([1.0, np.nan]), layer=1)
    with pytest.raises(ValueError, match="beyond the model's 3 blocks"):
        Direction(vector=np.ones(4), layer=4, n_blocks=3)
    with pytest.raises(ValueError, match="operation must be one of"):
        Direction(vector=np.ones(4), layer=1, operation="project")
    d = Direction(vector=np.array([3.0, 4.0]), layer=np.int64(2))
    assert type(d.layer) is int and d.norm == 5.0 and np.allclose(d.unit, [0.6, 0.8]) and d.hidden_size == 2
    with pytest.raises(ValueError):
        d.vector[0] = 1.0  # read-only: a frozen direction stays what it was made as


def test_a_damaged_control_vector_file_is_a_clear_error(tmp_path):
    """Cut short or not a GGUF at all: an error naming the file, never a numpy traceback."""
    from personas.model.direction_files import import_control_vector

    cut = tmp_path / "cut.gguf"
    cut.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 10)
    with pytest.raises(ValueError, match="cut.gguf is truncated"):
        import_control_vector(cut)
    text = tmp_path / "text.gguf"
    text.write_text("direction.1 = 0.5\n")
    with pytest.raises(ValueError, match="text.gguf"):
        import_control_vector(text)
