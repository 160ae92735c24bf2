"""Where the activation store keeps (model, persona): directory and file names, and what is there."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from personas._core.io import read_json
from personas._core.names import file_stem, safe_name

__all__ = ["STORE_FORMAT_VERSION", "StoreError", "model_slug", "store_path", "list_stored", "WORDING_STORE",
           "wording_store_dir"]

#: Sub-directory of a store that holds the wording control (layer 0, position "mean").
WORDING_STORE = "wording-control"


def wording_store_dir(store_dir: str | os.PathLike) -> Path:
    """``<store_dir>/wording-control``: the store of layer 0 averaged over each statement's tokens."""
    return Path(store_dir) / WORDING_STORE


#: The manifest format: tensors with a SHA-256 each, model and statements fingerprints.
STORE_FORMAT_VERSION = 2
LOCK_NAME = ".store.lock"
# settings that must agree for a stored persona to be reused
MATCH_FIELDS = (
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
META_COLUMNS = ["id", "persona", "direction", "statement"]


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


def store_path(store_dir: str | os.PathLike, model_name: str, persona: str) -> tuple[Path, Path]:
    """Paths of the safetensors file and the manifest of (model, persona)."""
    base = Path(store_dir) / model_slug(model_name)
    stem = file_stem(persona, empty="persona")  # safe names kept, others hashed: never two personas in one file
    return base / f"{stem}.safetensors", base / f"{stem}.json"


def list_stored(store_dir: str | os.PathLike, model_name: str | None = None) -> pd.DataFrame:
    """What the store holds: one row per (model, persona) with its layers and size.

    Returns
    -------
    DataFrame
        Columns ``model_slug, model, persona, n_statements, layers, position, template_mode, created``.
    """
    root = Path(store_dir)
    dirs = [root / model_slug(model_name)] if model_name is not None else sorted(p for p in root.glob("*") if p.is_dir())
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


def missing_message(store_dir, model_name: str, persona: str) -> str:
    """Why nothing is stored for (model, persona), with what the store holds instead."""
    root = Path(store_dir)
    model_dir = root / model_slug(model_name)
    if not model_dir.is_dir():
        models = sorted(p.name for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
        return f"no activations for model {model_name!r} in {root} (models there: {models or 'none'})"
    personas = sorted(list_stored(store_dir, model_name)["persona"].astype(str))
    return (
        f"no activations for persona {persona!r} of model {model_name!r} in {root} "
        f"(personas there: {personas or 'none'}); run extract_to_store first"
    )
