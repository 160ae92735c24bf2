"""The on-disk activation store: safetensors per (model, persona) plus a JSON manifest.

Layout::

    <store_dir>/<model_slug>/<persona>.safetensors   # one float32 tensor per layer, keys "layer_<i>"
    <store_dir>/<model_slug>/<persona>.json          # manifest: how the tensors were made

Both files are written atomically (temporary file, then rename); they carry the same
``write_id``, so a store left half-updated by a crash is detected on load. An
existing store made with the same settings is reused (missing layers are added to
it); a store made with different settings is an error, never a silent mix.

What "the same" means is checked on data, not names: the manifest records a
fingerprint of the model (:func:`model_fingerprint`), of each persona's statements
(:func:`statements_fingerprint`), the tensor file's size and a SHA-256 per tensor.
Reuse and loading verify the tensor file against its manifest (header, shapes,
``write_id``, checksums); a broken file is recomputed by ``extract_to_store`` (with a
warning naming it) and an error naming it on load. One writer at a time: the
writer holds an exclusive lock on the model's folder, and removes temporary files
that a crashed writer left there.

Persona file names: the persona itself when it is a safe file name (letters,
digits, ``.``, ``_``, ``-``), else its safe form plus ``-`` and 8 hex digits of the
SHA-256 of the exact name, so ``"a b"`` and ``"a-b"`` never share a file; the
stored persona is checked on load.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import re
import uuid
import warnings
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from personas.checks import check_bool, check_int
from personas.io import (
    atomic_path,
    clean_temp_files,
    exclusive_lock,
    file_sha256,
    read_json,
    safe_name,
    write_json,
)

__all__ = [
    "STORE_FORMAT_VERSION",
    "model_slug",
    "store_path",
    "list_stored",
    "store_manifest",
    "load_activations",
    "load_layers",
    "save_activations",
    "extract_to_store",
    "model_fingerprint",
    "statements_fingerprint",
    "store_fingerprint",
    "verify_stored",
    "StoreError",
]

#: 2: manifests record ``model_fingerprint``, ``statements_fingerprint``, ``tensor_bytes``
#: and ``checksums``; persona file names carry a hash when the name is not file-safe.
STORE_FORMAT_VERSION = 2
_LOCK_NAME = ".store.lock"
_HASH_SUFFIX = re.compile(r"-[0-9a-f]{8}$")
# settings that must agree for a stored persona to be reused
_MATCH_FIELDS = (
    "model",
    "revision",
    "dtype",
    "n_blocks",
    "hidden_size",
    "position",
    "template_mode",
    "wrap",
    "final_norm",
)
_META_COLUMNS = ["id", "persona", "direction", "statement"]


def model_slug(name: str) -> str:
    """A directory name for a model: ``"meta-llama/Meta-Llama-3-8B"`` -> ``"meta-llama__Meta-Llama-3-8B"``.

    Local paths (absolute, or starting with ``.`` or ``~``) use their last component.
    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``-``.
    """
    name = str(name).strip()
    if not name:
        raise ValueError("model name is empty")
    if os.path.isabs(name) or name.startswith((".", "~")):
        name = Path(name).expanduser().resolve().name or name
    slug = safe_name(name.strip("/").replace("/", "__"))
    if slug in ("", ".", ".."):
        raise ValueError(f"model name {name!r} gives no usable directory name; pass model_name=")
    return slug


class StoreError(ValueError):
    """A stored tensor file does not match its manifest (missing, truncated, damaged, replaced)."""


def _persona_file(persona: str) -> str:
    persona = str(persona)
    stem = safe_name(persona)
    if stem == persona and not _HASH_SUFFIX.search(persona):
        return stem  # already a safe name (and cannot look like a hashed one): kept as is
    if not stem:
        stem = "persona"
    return f"{stem}-{hashlib.sha256(persona.encode('utf-8')).hexdigest()[:8]}"


def _locate(store_dir, model: str, persona: str) -> tuple[Path, Path]:
    """The files of (model, persona) to read: the current name, else the name of store format 1."""
    tensor_file, manifest_file = store_path(store_dir, model, persona)
    if not manifest_file.exists():
        legacy = safe_name(persona)
        base = manifest_file.parent
        old = base / f"{legacy}.json"
        if legacy and old.exists():
            try:
                holds = read_json(old).get("persona")
            except (ValueError, AttributeError):
                holds = None
            if holds == persona:  # only this persona's own file, never another's that shared the name
                return base / f"{legacy}.safetensors", old
    return tensor_file, manifest_file


def store_path(store_dir: str | os.PathLike, model: str, persona: str) -> tuple[Path, Path]:
    """Paths of the safetensors file and the manifest of (model, persona)."""
    base = Path(store_dir) / model_slug(model)
    stem = _persona_file(persona)
    return base / f"{stem}.safetensors", base / f"{stem}.json"


def list_stored(store_dir: str | os.PathLike, model: str | None = None) -> pd.DataFrame:
    """What the store holds: one row per (model, persona) with its layers and size.

    Returns
    -------
    DataFrame
        Columns ``model_slug, model, persona, n_statements, layers, position, template_mode, created``.
    """
    root = Path(store_dir)
    dirs = [root / model_slug(model)] if model is not None else sorted(p for p in root.glob("*") if p.is_dir())
    rows = []
    for d in dirs:
        for manifest_file in sorted(d.glob("*.json")):
            m = read_json(manifest_file)
            if not isinstance(m, dict) or m.get("kind") != "persona-activations":
                continue
            rows.append({k: m.get(k) for k in ("model_slug", "model", "persona", "n_statements", "layers",
                                               "position", "template_mode", "created")})
    return pd.DataFrame(rows, columns=["model_slug", "model", "persona", "n_statements", "layers",
                                       "position", "template_mode", "created"])


def _missing_message(store_dir, model: str, persona: str) -> str:
    root = Path(store_dir)
    model_dir = root / model_slug(model)
    if not model_dir.is_dir():
        models = sorted(p.name for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
        return f"no activations for model {model!r} in {root} (models there: {models or 'none'})"
    personas = sorted(list_stored(store_dir, model)["persona"].astype(str))
    return (
        f"no activations for persona {persona!r} of model {model!r} in {root} "
        f"(personas there: {personas or 'none'}); run extract_to_store first"
    )


def store_manifest(store_dir: str | os.PathLike, model: str, persona: str) -> dict:
    """The manifest of (model, persona): how its activations were made.

    Includes ``model, model_slug, revision, n_blocks, hidden_size, layers,
    layer_convention, position, template_mode, dtype``, statement ``ids``,
    ``statements``, ``directions``, ``created``, ``versions`` and more.

    Raises
    ------
    FileNotFoundError
        If nothing is stored for (model, persona); the message lists what is there.
    """
    _, manifest_file = _locate(store_dir, model, persona)
    if not manifest_file.exists():
        raise FileNotFoundError(_missing_message(store_dir, model, persona))
    manifest = read_json(manifest_file)
    if not isinstance(manifest, dict) or manifest.get("kind") != "persona-activations":
        raise ValueError(f"{manifest_file} is not an activation-store manifest")
    if manifest.get("persona") != persona:
        raise StoreError(
            f"{manifest_file} holds persona {manifest.get('persona')!r}, not {persona!r} (two names shared one file "
            "in an older store); re-run extract_to_store(..., overwrite=True) for these personas"
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


def _read_tensors(tensor_file: Path, manifest: dict, layers: Sequence[int]) -> dict[int, np.ndarray]:
    """Read ``layers`` from ``tensor_file``, verified against the manifest (header, write id, checksums)."""
    header, data_start = _tensor_header(tensor_file, manifest)
    checksums = manifest.get("checksums") or {}  # absent in store format 1
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
            if key in checksums and _sha256(memoryview(arr).cast("B")) != checksums[key]:
                raise StoreError(
                    f"{tensor_file}: tensor {key} does not match the checksum recorded when it was written (the file "
                    "was damaged or changed); re-run extract_to_store (it recomputes broken files) or pass overwrite=True"
                )
            out[layer] = arr.astype(np.float32, copy=False)
    return out


def verify_stored(store_dir: str | os.PathLike, model: str, persona: str) -> dict:
    """Check that the tensor file of (model, persona) matches its manifest; return the manifest.

    Reads the whole file: header, tensor shapes, ``write_id``, size and every tensor's
    SHA-256 recorded at write time (store format 2).

    Raises
    ------
    FileNotFoundError
        Nothing stored for (model, persona).
    StoreError
        The tensor file is missing, truncated, damaged or from another write (named).
    """
    manifest = store_manifest(store_dir, model, persona)
    tensor_file, _ = _locate(store_dir, model, persona)
    _read_tensors(tensor_file, manifest, manifest["layers"])
    return manifest


def _sha256(data) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def load_activations(
    store_dir: str | os.PathLike, model: str, persona: str, layers: Sequence[int] | None = None
) -> tuple[dict[int, np.ndarray], dict]:
    """Stored activations of one persona.

    Parameters
    ----------
    store_dir : path
    model : str
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
    manifest = store_manifest(store_dir, model, persona)
    stored = manifest["layers"]
    layers = stored if layers is None else [int(x) for x in layers]
    missing = [x for x in layers if x not in stored]
    if missing:
        raise ValueError(
            f"layers {missing} are not stored for persona {persona!r} of model {model!r} (stored: {stored}); "
            "run extract_to_store with these layers to add them"
        )
    tensor_file, _ = _locate(store_dir, model, persona)
    return _read_tensors(tensor_file, manifest, layers), manifest


def load_layers(
    store_dir: str | os.PathLike, model: str, personas: Sequence[str] | str | None, layers: Sequence[int] | None = None
) -> tuple[dict[int, np.ndarray], pd.DataFrame]:
    """Activations of several personas stacked row-wise, with a row-aligned table.

    Parameters
    ----------
    store_dir : path
    model : str
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
        personas = list_stored(store_dir, model)["persona"].tolist()
        if not personas:
            raise FileNotFoundError(_missing_message(store_dir, model, "<any>"))
    elif isinstance(personas, str):
        personas = [personas]
    personas = list(personas)
    if not personas:
        raise ValueError("personas is empty")
    manifests = [store_manifest(store_dir, model, p) for p in personas]
    if layers is None:
        layers = manifests[0]["layers"]
    layers = [int(x) for x in layers]
    for p, m in zip(personas, manifests):
        missing = [x for x in layers if x not in m["layers"]]
        if missing:
            raise ValueError(f"persona {p!r} lacks layers {missing} (stored: {m['layers']}); pass layers= or extract them")
    sizes = {m["hidden_size"] for m in manifests}
    if len(sizes) > 1:
        raise ValueError(f"stored personas of {model!r} have different hidden sizes {sorted(sizes)}")
    parts = {layer: [] for layer in layers}
    metas = []
    for p, m in zip(personas, manifests):
        acts, _ = load_activations(store_dir, model, p, layers)
        for layer in layers:
            parts[layer].append(acts[layer])
        metas.append(
            pd.DataFrame({"id": m["ids"], "persona": m["persona"], "direction": m["directions"], "statement": m["statements"]})
        )
    activations = {layer: np.concatenate(parts[layer], axis=0) for layer in layers}
    return activations, pd.concat(metas, ignore_index=True)[_META_COLUMNS]


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
    reads it once (about 1 s per GB); file digests are remembered per (path, size,
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
    return _sha256(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def store_fingerprint(
    store_dir: str | os.PathLike, model: str, personas: Sequence[str] | str, layers: Sequence[int] | None = None
) -> str:
    """One fingerprint of what ``load_layers(store_dir, model, personas, layers)`` returns.

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
        m = store_manifest(store_dir, model, persona)
        want = m["layers"] if layers is None else [int(x) for x in layers]
        missing = [x for x in want if x not in m["layers"]]
        if missing:
            raise ValueError(f"persona {persona!r} lacks layers {missing} (stored: {m['layers']})")
        checksums = m.get("checksums") or {}
        parts.append({
            "persona": persona,
            # store format 1 has no checksums: its write id stands for the data
            "write_id": None if checksums else m.get("write_id"),
            **{k: m.get(k) for k in ("model_fingerprint", "statements_fingerprint", *_MATCH_FIELDS)},
            "layers": {str(x): checksums.get(f"layer_{x}") for x in want},
        })
    return _sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("personas", "torch", "transformers", "tokenizers", "numpy", "safetensors"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


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
    with exclusive_lock(tensor_file.parent / _LOCK_NAME, f"the activation store {tensor_file.parent}"):
        return _save(store_dir, activations, info, statements, model_name=model_name, persona=persona,
                     model_fingerprint=model_fingerprint)


def _save(store_dir, activations, info, statements, *, model_name, persona, model_fingerprint) -> Path:
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
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "write_id": write_id,
        "versions": _versions(),
        **{k: v for k, v in info.items() if k not in ("n_tokens", "model", "n_statements", "layers")},
        "model_fingerprint": model_fingerprint,
        "layers": layers,
        "n_tokens": [int(x) for x in info.get("n_tokens", [])],
        "statements_fingerprint": statements_fingerprint(statements),
        # safetensors stores each tensor's raw little-endian bytes: these are the file's bytes
        "checksums": {key: _sha256(memoryview(t).cast("B")) for key, t in tensors.items()},
        "ids": statements["id"].astype(str).tolist(),
        "directions": statements["direction"].astype(str).tolist(),
        "statements": statements["statement"].astype(str).tolist(),
    }
    with atomic_path(tensor_file) as tmp:
        save_file(tensors, str(tmp), metadata={"write_id": write_id, "model": model_name, "persona": persona})
        manifest["tensor_bytes"] = tmp.stat().st_size
    write_json(manifest_file, manifest)
    return manifest_file


def _differences(manifest: dict, wanted: dict, statements: pd.DataFrame) -> list[str]:
    diffs = []
    if manifest.get("model_fingerprint") is None:
        diffs.append("model_fingerprint: not recorded (a store from before model fingerprints), "
                     f"requested {wanted['model_fingerprint']!r}")
    elif manifest["model_fingerprint"] != wanted["model_fingerprint"]:
        diffs.append(f"model_fingerprint: stored {manifest['model_fingerprint']!r}, requested {wanted['model_fingerprint']!r} "
                     "(other weights, e.g. a checkpoint retrained in place)")
    for key in _MATCH_FIELDS:
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


def extract_to_store(
    model,
    tokenizer,
    statements: pd.DataFrame,
    *,
    model_name: str,
    layers: Sequence[int] | str,
    store_dir: str | os.PathLike,
    position: str = "last",
    template: str = "auto",
    wrap: str = "{statement}",
    batch_size: int = 16,
    overwrite: bool = False,
    progress: bool = True,
    blocks_path: str | None = None,
) -> pd.DataFrame:
    """Extract and store activations persona by persona, reusing matching stores.

    Parameters
    ----------
    model, tokenizer :
        As for ``personas.extraction.extract_activations``.
    statements : DataFrame
        Columns ``id, persona, direction, statement`` (``load_statements`` output).
    model_name : str
        Name recorded in the manifests and used for the directory (``model_slug``).
    layers : "all" or list of int
        0 = embeddings, i = output of block i.
    store_dir : path
        Root of the store.
    position, template, wrap, batch_size, blocks_path :
        See ``extract_activations``.
    overwrite : bool
        Recompute and replace stored personas even if they match.
    progress : bool
        Progress bar over batches (one bar per persona).

    Returns
    -------
    DataFrame
        One row per persona: ``persona, status`` (``"computed"``, ``"reused"``,
        ``"extended"``: missing layers added, or ``"recomputed"``: the stored tensor
        file was broken, see the warning), ``n_statements, layers, path``.

    Raises
    ------
    ValueError
        A stored persona was made with other settings, statements or model weights
        (the message names the differing fields); pass ``overwrite=True`` or another
        ``store_dir``.
    RuntimeError
        Another process is writing this model's store.

    Notes
    -----
    Reuse is verified on data: the model's fingerprint (:func:`model_fingerprint`) and
    the statements must match, and the tensor file must match its manifest (header,
    size, write id and per-tensor SHA-256; this reads the file). The writer holds an
    exclusive lock on the model's folder and first removes temporary files a crashed
    writer left there.
    """
    from personas.extraction import extract_activations
    from personas.hooks import layer_info, resolve_layers
    from personas.models import model_info
    from personas.prompts import format_prompts

    missing_cols = [c for c in _META_COLUMNS if c not in statements.columns]
    if missing_cols:
        raise ValueError(f"statements lacks columns {missing_cols}; use load_statements() output")
    if statements["id"].duplicated().any():
        raise ValueError("statement ids must be unique")
    overwrite = check_bool(overwrite, "overwrite")
    check_bool(progress, "progress")
    try:
        check_int(batch_size, "batch_size", min_val=1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r} ({exc})") from None
    layers = _check_layers(layers)
    where = layer_info(model, blocks_path)
    layers = resolve_layers(layers, where["n_blocks"])
    model_dir = store_path(store_dir, model_name, "x")[0].parent
    with exclusive_lock(model_dir / _LOCK_NAME, f"the activation store {model_dir}"):
        clean_temp_files(model_dir)  # left by a writer that crashed; nobody else writes here now
        about = model_info(model)
        about["model_fingerprint"] = model_fingerprint(model, cache_file=Path(store_dir) / ".model-fingerprints.json")
        return _extract_locked(model, tokenizer, statements, about, where, model_name=model_name, layers=layers,
                               store_dir=store_dir, position=position, template=template, wrap=wrap,
                               batch_size=batch_size, overwrite=overwrite, progress=progress, blocks_path=blocks_path)


def _check_layers(layers):
    """``layers`` as ``"all"`` or a list of ints (no bools, floats or strings)."""
    from personas.extraction import _check_layer_list

    return layers if isinstance(layers, str) else _check_layer_list(layers)


def _extract_locked(model, tokenizer, statements, about, where, *, model_name, layers, store_dir, position, template,
                    wrap, batch_size, overwrite, progress, blocks_path) -> pd.DataFrame:
    from personas.extraction import extract_activations
    from personas.prompts import format_prompts

    rows = []
    for persona, group in statements.groupby("persona", sort=False):
        group = group.reset_index(drop=True)
        tensor_file, manifest_file = store_path(store_dir, model_name, persona)
        todo, status, old = layers, "computed", None
        if manifest_file.exists() and not overwrite:
            manifest = store_manifest(store_dir, model_name, persona)
            wanted = dict(
                about,
                model=model_name,
                n_blocks=where["n_blocks"],
                hidden_size=where["hidden_size"],
                position=position,
                template_mode=format_prompts(tokenizer, group["statement"][:1], template=template, wrap=wrap).mode,
                wrap=wrap,
                final_norm=where["final_norm"],
            )
            diffs = _differences(manifest, wanted, group)
            if diffs:
                raise ValueError(
                    f"the stored activations {manifest_file} were made differently: " + "; ".join(diffs)
                    + ". Pass overwrite=True to recompute them, or use another store_dir"
                )
            try:
                # the whole file, checked against the manifest: reuse trusts data, not names
                old = _read_tensors(tensor_file, manifest, manifest["layers"])
            except StoreError as exc:
                warnings.warn(f"recomputing persona {persona!r}: {exc}", RuntimeWarning, stacklevel=3)
                # redo every layer the file should hold, not only those asked now
                todo, old, status = sorted(set(layers) | set(manifest["layers"])), None, "recomputed"
            else:
                todo = [x for x in layers if x not in manifest["layers"]]
                if not todo:
                    rows.append(dict(persona=persona, status="reused", n_statements=len(group),
                                     layers=manifest["layers"], path=str(tensor_file)))
                    continue
                status = "extended"
        acts, info = extract_activations(
            model, tokenizer, group["statement"].tolist(), todo, position=position, template=template, wrap=wrap,
            batch_size=batch_size, progress=progress, blocks_path=blocks_path,
        )
        if old is not None:
            acts = {**old, **acts}
        _save(store_dir, acts, info, group, model_name=model_name, persona=persona,
              model_fingerprint=about["model_fingerprint"])
        rows.append(dict(persona=persona, status=status, n_statements=len(group), layers=sorted(acts), path=str(tensor_file)))
    return pd.DataFrame(rows, columns=["persona", "status", "n_statements", "layers", "path"])
