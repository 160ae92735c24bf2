"""Writing the activation store: tensors and manifest, atomically, under the model folder's lock."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from personas._core.io import atomic_path, exclusive_lock, write_json
from personas._core.provenance import now_iso, package_versions
from personas.store.fingerprints import statements_fingerprint
from personas.store.paths import LOCK_NAME, MATCH_FIELDS, STORE_FORMAT_VERSION, model_slug, store_path
from personas.store.read import sha256_digest

__all__ = ["save_activations", "save_persona", "manifest_differences"]

# the packages that make activations what they are, recorded in every manifest
_VERSIONED = ("personas", "torch", "transformers", "tokenizers", "numpy", "safetensors")


def save_activations(
    store_dir: str | os.PathLike,
    activations: dict[int, np.ndarray],
    info: dict,
    statements: pd.DataFrame,
    *,
    model_name: str,
    persona: str,
    model_fingerprint: str | None = None,
) -> Path:
    """Write one persona's activations and manifest atomically; return the manifest path.

    Takes the store's writer lock for the model (a second writer gets a ``RuntimeError``).

    Parameters
    ----------
    activations : dict of int -> ndarray
        ``{layer: (n_statements, hidden_size)}``, rows aligned with ``statements``.
    info : dict
        The ``info`` of ``extract_activations``.
    statements : DataFrame
        This persona's rows: ``id, persona, direction, statement``.
    model_fingerprint : str, optional
        :func:`model_fingerprint` of the model (recorded; ``extract_to_store`` passes it).
    """
    tensor_file, _ = store_path(store_dir, model_name, persona)
    with exclusive_lock(tensor_file.parent / LOCK_NAME, f"the activation store {tensor_file.parent}"):
        return save_persona(store_dir, activations, info, statements, model_name=model_name, persona=persona,
                     model_fingerprint=model_fingerprint)


def save_persona(store_dir, activations, info, statements, *, model_name, persona, model_fingerprint,
                 sources: dict | None = None) -> Path:
    """``save_activations`` without taking the lock: for a writer that holds it already.

    ``sources`` (paths and SHA-256 of the files the statements came from) is recorded in the
    manifest as ``"sources"``; it is provenance, not compared on reuse (the statements are).
    """
    from safetensors.numpy import save_file

    n = len(statements)
    layers = sorted(int(x) for x in activations)
    for layer in layers:
        if activations[layer].shape != (n, info["hidden_size"]):
            raise ValueError(
                f"layer {layer} activations have shape {activations[layer].shape}, expected ({n}, {info['hidden_size']})"
            )
    tensor_file, manifest_file = store_path(store_dir, model_name, persona)
    write_id = uuid.uuid4().hex
    tensors = {f"layer_{layer}": np.ascontiguousarray(activations[layer], dtype="<f4") for layer in layers}
    manifest = {
        "kind": "persona-activations",
        "format_version": STORE_FORMAT_VERSION,
        "model": model_name,
        "model_slug": model_slug(model_name),
        "persona": persona,
        "n_statements": n,
        "array_dtype": "float32",
        "keys": {str(layer): f"layer_{layer}" for layer in layers},
        "created": now_iso(),
        "write_id": write_id,
        "versions": package_versions(_VERSIONED),
        **{k: v for k, v in info.items() if k not in ("n_tokens", "model", "n_statements", "layers")},
        "model_fingerprint": model_fingerprint,
        "layers": layers,
        "n_tokens": [int(x) for x in info.get("n_tokens", [])],
        "statements_fingerprint": statements_fingerprint(statements),
        # safetensors stores each tensor's raw little-endian bytes: these are the file's bytes
        "checksums": {key: sha256_digest(memoryview(t).cast("B")) for key, t in tensors.items()},
        "ids": statements["id"].astype(str).tolist(),
        "directions": statements["direction"].astype(str).tolist(),
        "statements": statements["statement"].astype(str).tolist(),
    }
    if sources:
        manifest["sources"] = dict(sources)
    with atomic_path(tensor_file) as tmp:
        save_file(tensors, str(tmp), metadata={"write_id": write_id, "model": model_name, "persona": persona})
        manifest["tensor_bytes"] = tmp.stat().st_size
    write_json(manifest_file, manifest)
    return manifest_file


def manifest_differences(manifest: dict, wanted: dict, statements: pd.DataFrame) -> list[str]:
    """How a stored persona differs from what is asked now (model weights, settings, statements); empty if not."""
    diffs = []
    if manifest.get("model_fingerprint") is None:
        diffs.append("model_fingerprint: not recorded (saved without one), "
                     f"requested {wanted['model_fingerprint']!r}")
    elif manifest["model_fingerprint"] != wanted["model_fingerprint"]:
        diffs.append(f"model_fingerprint: stored {manifest['model_fingerprint']!r}, requested {wanted['model_fingerprint']!r} "
                     "(other weights, e.g. a checkpoint retrained in place)")
    for key in MATCH_FIELDS:
        if key == "revision" and (manifest.get(key) is None or wanted.get(key) is None):
            continue  # unknown on one side: nothing to compare
        if manifest.get(key) != wanted.get(key):
            diffs.append(f"{key}: stored {manifest.get(key)!r}, requested {wanted.get(key)!r}")
    for key, column in (("ids", "id"), ("statements", "statement"), ("directions", "direction")):
        stored, asked = manifest.get(key, []), statements[column].astype(str).tolist()
        if stored != asked:
            n_diff = sum(a != b for a, b in zip(stored, asked)) + abs(len(stored) - len(asked))
            diffs.append(f"{key}: {n_diff} of {max(len(stored), len(asked))} differ (stored {len(stored)}, requested {len(asked)})")
    return diffs
