"""The on-disk activation store: safetensors per (model, persona) plus a JSON manifest.

Layout::

    <store_dir>/<model_slug>/<persona>.safetensors   # one float32 tensor per layer, keys "layer_<i>"
    <store_dir>/<model_slug>/<persona>.json          # manifest: how the tensors were made

Both files are written atomically (temporary file, then rename); they carry the same
``write_id``, so a store left half-updated by a crash is detected on load. An
existing store made with the same settings is reused (missing layers are added to
it); a store made with different settings is an error, never a silent mix.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import uuid
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from personas.io import atomic_path, read_json, safe_name, write_json

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
]

STORE_FORMAT_VERSION = 1
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


def _persona_file(persona: str) -> str:
    stem = safe_name(persona)
    if not stem:
        raise ValueError(f"persona name {persona!r} gives no usable file name")
    return stem


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
    personas = sorted(p.stem for p in model_dir.glob("*.json"))
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
    _, manifest_file = store_path(store_dir, model, persona)
    if not manifest_file.exists():
        raise FileNotFoundError(_missing_message(store_dir, model, persona))
    manifest = read_json(manifest_file)
    if not isinstance(manifest, dict) or manifest.get("kind") != "persona-activations":
        raise ValueError(f"{manifest_file} is not an activation-store manifest")
    return manifest


def _read_tensors(tensor_file: Path, manifest: dict, layers: Sequence[int]) -> dict[int, np.ndarray]:
    from safetensors import safe_open

    if not tensor_file.exists():
        raise ValueError(f"{tensor_file} is missing but its manifest exists; re-run extract_to_store(overwrite=True)")
    with safe_open(tensor_file, framework="np") as fh:
        write_id = (fh.metadata() or {}).get("write_id")
        if write_id != manifest.get("write_id"):
            raise ValueError(
                f"{tensor_file} does not belong to its manifest (an interrupted write?); "
                "re-run extract_to_store(..., overwrite=True) for this persona"
            )
        return {layer: fh.get_tensor(f"layer_{layer}") for layer in layers}


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
    tensor_file, _ = store_path(store_dir, model, persona)
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
) -> Path:
    """Write one persona's activations and manifest atomically; return the manifest path.

    Parameters
    ----------
    activations : dict of int -> ndarray
        ``{layer: (n_statements, hidden_size)}``, rows aligned with ``statements``.
    info : dict
        The ``info`` of ``extract_activations``.
    statements : DataFrame
        This persona's rows: ``id, persona, direction, statement``.
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
        "layers": layers,
        "n_tokens": [int(x) for x in info.get("n_tokens", [])],
        "ids": statements["id"].astype(str).tolist(),
        "directions": statements["direction"].astype(str).tolist(),
        "statements": statements["statement"].astype(str).tolist(),
    }
    tensors = {f"layer_{layer}": np.ascontiguousarray(activations[layer], dtype=np.float32) for layer in layers}
    with atomic_path(tensor_file) as tmp:
        save_file(tensors, str(tmp), metadata={"write_id": write_id, "model": model_name, "persona": persona})
    write_json(manifest_file, manifest)
    return manifest_file


def _differences(manifest: dict, wanted: dict, statements: pd.DataFrame) -> list[str]:
    diffs = []
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
        One row per persona: ``persona, status`` (``"computed"``, ``"reused"`` or
        ``"extended"``: missing layers added), ``n_statements, layers, path``.

    Raises
    ------
    ValueError
        A stored persona was made with other settings or statements (the message
        names the differing fields); pass ``overwrite=True`` or another ``store_dir``.
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
    where = layer_info(model, blocks_path)
    layers = resolve_layers(layers, where["n_blocks"])
    about = model_info(model)
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
            todo = [x for x in layers if x not in manifest["layers"]]
            if not todo:
                rows.append(dict(persona=persona, status="reused", n_statements=len(group), layers=manifest["layers"],
                                 path=str(tensor_file)))
                continue
            old, _ = load_activations(store_dir, model_name, persona)
            status = "extended"
        acts, info = extract_activations(
            model, tokenizer, group["statement"].tolist(), todo, position=position, template=template, wrap=wrap,
            batch_size=batch_size, progress=progress, blocks_path=blocks_path,
        )
        if old is not None:
            acts = {**old, **acts}
        save_activations(store_dir, acts, info, group, model_name=model_name, persona=persona)
        rows.append(dict(persona=persona, status=status, n_statements=len(group), layers=sorted(acts), path=str(tensor_file)))
    return pd.DataFrame(rows, columns=["persona", "status", "n_statements", "layers", "path"])
