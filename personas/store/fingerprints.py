"""Fingerprints of what made an activation store: the model, the statements, the stored tensors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from personas._core.io import (
    file_sha256,
    read_json,
    write_json,
)
from personas.store.paths import MATCH_FIELDS
from personas.store.read import sha256_digest, store_manifest



# --------------------------------------------------------------------------- fingerprints

_CHECKPOINT_SKIP = (".md", ".gitattributes", ".lock")
_digest_cache: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) -> sha256, for this process


def _file_digest(path: Path, cache: dict) -> str:
    """SHA-256 of a file, remembered by (path, size, mtime_ns, inode) in ``cache`` and in this process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    text_key = json.dumps(key)
    if key in _digest_cache:
        return _digest_cache[key]
    if text_key in cache:
        _digest_cache[key] = cache[text_key]
        return cache[text_key]
    digest = file_sha256(path)
    _digest_cache[key] = cache[text_key] = digest
    return digest


def _checkpoint_digest(directory: Path, cache_file: Path | None) -> str:
    cache: dict = {}
    if cache_file is not None and cache_file.exists():
        try:
            cache = dict(read_json(cache_file))
        except (ValueError, TypeError):
            cache = {}  # a damaged cache only costs a rehash
    n_cached = len(cache)
    h = hashlib.sha256()
    files = sorted(p for p in directory.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(directory).parts)
                   and not p.name.endswith(_CHECKPOINT_SKIP))
    if not files:
        raise ValueError(f"model directory {directory} holds no files to fingerprint")
    for f in files:
        h.update(f"{f.relative_to(directory).as_posix()}\0{f.stat().st_size}\0{_file_digest(f, cache)}\n".encode())
    if cache_file is not None and len(cache) != n_cached:
        try:
            write_json(cache_file, cache)
        except OSError:  # a read-only store still works, it just rehashes next time
            pass
    return h.hexdigest()


def _parameters_digest(model) -> str:
    import torch

    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if tensor.device.type == "meta":  # offloaded weights have no data here
            h.update(f"{name}:meta\n".encode())
            continue
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_fingerprint(model, cache_file: str | os.PathLike | None = None) -> str:
    """What identifies a model's weights, so a store never reuses another model's activations.

    In this order: ``model.personas_source["fingerprint"]`` when the loader set one
    (e.g. ``"gguf-sha256:<hex>"``); for a model loaded from a local directory,
    ``"local-sha256:<hex>"`` over every file's relative name, size and SHA-256 (config,
    weights, tokenizer; ``*.md`` and hidden files left out); for a hub model its
    revision, ``"revision:<rev>"``; otherwise (a model built in memory)
    ``"params-sha256:<hex>"`` over its state dict.

    A retrained checkpoint therefore gets a new fingerprint. Hashing a checkpoint
    reads it once; file digests are remembered per (path, size,
    modification time, inode) in this process and in ``cache_file``, so later calls
    only stat the files.

    Parameters
    ----------
    model : torch model
    cache_file : path, optional
        JSON file remembering file digests (``extract_to_store`` keeps one in the store).

    Returns
    -------
    str
    """
    source = getattr(model, "personas_source", None) or {}
    if source.get("fingerprint"):
        return str(source["fingerprint"])
    config = getattr(model, "config", None)
    path = source.get("path") or getattr(config, "name_or_path", None)
    if path and os.path.isdir(str(path)):
        return "local-sha256:" + _checkpoint_digest(Path(path), None if cache_file is None else Path(cache_file))
    revision = source.get("revision") or getattr(config, "_commit_hash", None)
    if revision:
        return f"revision:{revision}"
    return "params-sha256:" + _parameters_digest(model)


def statements_fingerprint(statements: pd.DataFrame) -> str:
    """SHA-256 of a persona's statements: ids, directions and texts, in row order."""
    payload = [statements[c].astype(str).tolist() for c in ("id", "direction", "statement")]
    return sha256_digest(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def store_fingerprint(
    store_dir: str | os.PathLike, model_name: str, personas: Sequence[str] | str, layers: Sequence[int] | None = None
) -> str:
    """One fingerprint of what ``load_layers(store_dir, model_name, personas, layers)`` returns.

    Built from the manifests (model fingerprint, settings, statements fingerprint and
    the checksums of the layers), so it is cheap (no tensor is read) and changes
    whenever the stored data change. Record it in artifacts made from the store
    (e.g. ``deepscan.run_experiment(..., inputs={"store": ...})``) to refuse or
    redo them when the store changes.

    Returns
    -------
    str
        ``"sha256:<hex>"``.
    """
    personas = [personas] if isinstance(personas, str) else list(personas)
    parts = []
    for persona in personas:
        m = store_manifest(store_dir, model_name, persona)
        want = m["layers"] if layers is None else [int(x) for x in layers]
        missing = [x for x in want if x not in m["layers"]]
        if missing:
            raise ValueError(f"persona {persona!r} lacks layers {missing} (stored: {m['layers']})")
        checksums = m["checksums"]
        parts.append({
            "persona": persona,
            # the checksums stand for the data; "write_id": None is part of the hashed payload, so
            # that fingerprints recorded in run files stay what they were
            "write_id": None,
            **{k: m.get(k) for k in ("model_fingerprint", "statements_fingerprint", *MATCH_FIELDS)},
            "layers": {str(x): checksums.get(f"layer_{x}") for x in want},
        })
    return sha256_digest(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode("utf-8"))





def store_fingerprints(
    store_dir: str | os.PathLike, model_name: str, personas: Sequence[str] | str, layers: Sequence[int] | None = None
) -> dict[str, str]:
    """``{persona: store_fingerprint(store_dir, model_name, [persona], layers)}``.

    One fingerprint per persona, so that an artifact made from some personas (a run file's
    pools) records only theirs: adding a persona to a study leaves the others' run files valid.
    """
    personas = [personas] if isinstance(personas, str) else list(personas)
    return {p: store_fingerprint(store_dir, model_name, [p], layers) for p in personas}
