"""Reading the activation store: manifests, verified tensors, and the layers of several personas."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from personas._core.io import read_json
from personas.store.paths import STORE_FORMAT_VERSION, META_COLUMNS, StoreError, list_stored, missing_message, store_path

def store_manifest(store_dir: str | os.PathLike, model_name: str, persona: str) -> dict:
    """The manifest of (model, persona): how its activations were made.

    Includes ``model, model_slug, revision, n_blocks, hidden_size, layers,
    layer_convention, position, template_mode, dtype``, statement ``ids``,
    ``statements``, ``directions``, ``created``, ``versions`` and more.

    Raises
    ------
    FileNotFoundError
        If nothing is stored for (model, persona); the message lists what is there.
    """
    _, manifest_file = store_path(store_dir, model_name, persona)
    if not manifest_file.exists():
        raise FileNotFoundError(missing_message(store_dir, model_name, persona))
    manifest = read_json(manifest_file)
    if not isinstance(manifest, dict) or manifest.get("kind") != "persona-activations":
        raise ValueError(f"{manifest_file} is not an activation-store manifest")
    version = manifest.get("format_version", 1)
    if version != STORE_FORMAT_VERSION:
        raise StoreError(
            f"{manifest_file} is in store format {version}, and this version reads format {STORE_FORMAT_VERSION} "
            "only (tensor checksums, model and statements fingerprints); re-extract these activations: "
            "extract_to_store(..., overwrite=True), or another store_dir"
        )
    if manifest.get("persona") != persona:
        raise StoreError(
            f"{manifest_file} holds persona {manifest.get('persona')!r}, not {persona!r}; "
            "re-run extract_to_store(..., overwrite=True) for these personas"
        )
    return manifest


def _tensor_header(tensor_file: Path, manifest: dict) -> tuple[dict, int]:
    """Parse and check the safetensors header against the manifest; return it and the data start.

    Raises
    ------
    StoreError
        Naming the file and what is wrong.
    """
    redo = "re-run extract_to_store (it recomputes broken files) or extract_to_store(..., overwrite=True)"
    if not tensor_file.exists():
        raise StoreError(f"{tensor_file} is missing but its manifest exists; {redo}")
    size = tensor_file.stat().st_size
    with open(tensor_file, "rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or 8 + n > size:
            raise StoreError(f"{tensor_file} is not a complete safetensors file ({size} bytes); {redo}")
        try:
            header = json.loads(fh.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise StoreError(f"{tensor_file} has a damaged safetensors header; {redo}") from None
    if not isinstance(header, dict):
        raise StoreError(f"{tensor_file} has a damaged safetensors header; {redo}")
    write_id = (header.get("__metadata__") or {}).get("write_id")
    if write_id != manifest.get("write_id"):
        raise StoreError(
            f"{tensor_file} does not belong to its manifest (an interrupted write?); "
            "re-run extract_to_store (it recomputes broken files) or extract_to_store(..., overwrite=True) for this persona"
        )
    expected = manifest.get("tensor_bytes")
    if expected is not None and size != expected:
        raise StoreError(f"{tensor_file} has {size} bytes, its manifest recorded {expected} (truncated?); {redo}")
    shape = [int(manifest["n_statements"]), int(manifest["hidden_size"])]
    data_len = size - 8 - n
    for layer in manifest["layers"]:
        key = f"layer_{layer}"
        entry = header.get(key)
        if not isinstance(entry, dict):
            raise StoreError(f"{tensor_file} lacks tensor {key} listed in its manifest; {redo}")
        start, stop = (entry.get("data_offsets") or [None, None])[:2]
        if (entry.get("dtype") != "F32" or entry.get("shape") != shape or not isinstance(start, int)
                or not isinstance(stop, int) or stop - start != 4 * shape[0] * shape[1] or stop > data_len):
            raise StoreError(
                f"{tensor_file}: tensor {key} is {entry.get('dtype')} {entry.get('shape')} at {entry.get('data_offsets')}, "
                f"the manifest expects F32 {shape} inside {data_len} data bytes; {redo}"
            )
    return header, 8 + n


def read_tensors(tensor_file: Path, manifest: dict, layers: Sequence[int]) -> dict[int, np.ndarray]:
    """Read ``layers`` from ``tensor_file``, verified against the manifest (header, write id, checksums)."""
    header, data_start = _tensor_header(tensor_file, manifest)
    checksums = manifest["checksums"]
    shape = (int(manifest["n_statements"]), int(manifest["hidden_size"]))
    out = {}
    with open(tensor_file, "rb") as fh:
        for layer in layers:
            key = f"layer_{layer}"
            start, stop = header[key]["data_offsets"]
            fh.seek(data_start + start)
            arr = np.empty(shape, dtype="<f4")
            if fh.readinto(memoryview(arr).cast("B")) != stop - start:
                raise StoreError(f"{tensor_file}: tensor {key} is cut short; re-run extract_to_store(..., overwrite=True)")
            if sha256_digest(memoryview(arr).cast("B")) != checksums.get(key):
                raise StoreError(
                    f"{tensor_file}: tensor {key} does not match the checksum recorded when it was written (the file "
                    "was damaged or changed); re-run extract_to_store (it recomputes broken files) or pass overwrite=True"
                )
            out[layer] = arr.astype(np.float32, copy=False)
    return out


def verify_stored(store_dir: str | os.PathLike, model_name: str, persona: str) -> dict:
    """Check that the tensor file of (model, persona) matches its manifest; return the manifest.

    Reads the whole file: header, tensor shapes, ``write_id``, size and every tensor's
    SHA-256 recorded at write time.

    Raises
    ------
    FileNotFoundError
        Nothing stored for (model, persona).
    StoreError
        The tensor file is missing, truncated, damaged or from another write (named).
    """
    manifest = store_manifest(store_dir, model_name, persona)
    tensor_file, _ = store_path(store_dir, model_name, persona)
    read_tensors(tensor_file, manifest, manifest["layers"])
    return manifest


def sha256_digest(data) -> str:
    """``"sha256:<hex>"`` of bytes (the store's digest format)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def load_activations(
    store_dir: str | os.PathLike, model_name: str, persona: str, layers: Sequence[int] | None = None
) -> tuple[dict[int, np.ndarray], dict]:
    """Stored activations of one persona.

    Parameters
    ----------
    store_dir : path
    model_name : str
        Model name as given at extraction (or its slug).
    persona : str
    layers : list of int, optional
        Layers to load (default: all stored).

    Returns
    -------
    activations : dict of int -> ndarray
        ``{layer: float32 array (n_statements, hidden_size)}``, rows in manifest order.
    manifest : dict
    """
    manifest = store_manifest(store_dir, model_name, persona)
    stored = manifest["layers"]
    layers = stored if layers is None else [int(x) for x in layers]
    missing = [x for x in layers if x not in stored]
    if missing:
        raise ValueError(
            f"layers {missing} are not stored for persona {persona!r} of model {model_name!r} (stored: {stored}); "
            "run extract_to_store with these layers to add them"
        )
    tensor_file, _ = store_path(store_dir, model_name, persona)
    return read_tensors(tensor_file, manifest, layers), manifest


def load_layers(
    store_dir: str | os.PathLike, model_name: str, personas: Sequence[str] | str | None, layers: Sequence[int] | None = None
) -> tuple[dict[int, np.ndarray], pd.DataFrame]:
    """Activations of several personas stacked row-wise, with a row-aligned table.

    Parameters
    ----------
    store_dir : path
    model_name : str
        Model name (or slug).
    personas : list of str, str or None
        Personas in the order to stack (None: all stored for the model, sorted).
    layers : list of int, optional
        Default: the layers of the first persona (all personas must have them).

    Returns
    -------
    activations : dict of int -> ndarray
        ``{layer: float32 array (n_total, hidden_size)}``; rows are the personas'
        statements in the order of ``personas``.
    meta : DataFrame
        Columns ``id, persona, direction, statement``, aligned row for row.
    """
    if personas is None:
        personas = list_stored(store_dir, model_name)["persona"].tolist()
        if not personas:
            raise FileNotFoundError(missing_message(store_dir, model_name, "<any>"))
    elif isinstance(personas, str):
        personas = [personas]
    personas = list(personas)
    if not personas:
        raise ValueError("personas is empty")
    manifests = [store_manifest(store_dir, model_name, p) for p in personas]
    if layers is None:
        layers = manifests[0]["layers"]
    layers = [int(x) for x in layers]
    for p, m in zip(personas, manifests):
        missing = [x for x in layers if x not in m["layers"]]
        if missing:
            raise ValueError(f"persona {p!r} lacks layers {missing} (stored: {m['layers']}); pass layers= or extract them")
    sizes = {m["hidden_size"] for m in manifests}
    if len(sizes) > 1:
        raise ValueError(f"stored personas of {model_name!r} have different hidden sizes {sorted(sizes)}")
    parts = {layer: [] for layer in layers}
    metas = []
    for p, m in zip(personas, manifests):
        acts, _ = load_activations(store_dir, model_name, p, layers)
        for layer in layers:
            parts[layer].append(acts[layer])
        metas.append(
            pd.DataFrame({"id": m["ids"], "persona": m["persona"], "direction": m["directions"], "statement": m["statements"]})
        )
    activations = {layer: np.concatenate(parts[layer], axis=0) for layer in layers}
    return activations, pd.concat(metas, ignore_index=True)[META_COLUMNS]
