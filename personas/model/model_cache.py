"""The model cache: where it lives, file checksums, locks, and what a killed build leaves behind.

Layout under :func:`cache_root` (``$PERSONAS_CACHE``, else ``~/.cache/personas``)::

    gguf/<sha256>/                 one dequantised checkpoint per GGUF file (personas.model.gguf)
    gguf/assembled/<sha256>/<name> a GGUF file assembled from a package's chunks
    gguf/sha256-index.json         file digests, so a large file is hashed once
    gguf/.<sha256>.<random>.tmp    work in progress (a folder or a file), renamed into place when whole
    gguf/.<sha256>.lock            held while that entry is built

Every entry records the size and SHA-256 of each file it holds (:func:`record_files`).
A cache hit checks every size and a *quick digest* (:func:`quick_sha256`: the whole file up
to 32 MiB, else its size, first and last MiB and 64 blocks of 64 KiB spread over it, ~6 MiB
read): that catches truncation, a half-copied entry and a replaced file in milliseconds,
where hashing the 540 MB weights of a 135M model would cost seconds at every load.
:func:`check_files` with ``full=True`` re-hashes everything (``verify_cache_entry``).

The digest index is keyed by path, inode, size, modification *and* change time (ns): a
file restored with its old size and mtime still has a new ctime (which no user call can
set back), so it is hashed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Iterator

from personas._core.io import file_sha256, write_json
from personas._core.notes import ModelNote

__all__ = [
    "cache_root",
    "check_cache_dir",
    "indexed_sha256",
    "remember_sha256",
    "quick_sha256",
    "record_files",
    "check_files",
    "folder_sha256",
    "clean_stale_work",
    "build_lock",
    "replace_dir",
    "note",
]

_QUICK_FULL_LIMIT = 32 << 20
_EDGE = 1 << 20
_BLOCK = 1 << 16
_N_BLOCKS = 64
_WORK = re.compile(r"^\.([0-9a-f]{64})\.[0-9a-z_]+\.tmp$")
# what versions before the build lock left: ".<first 16 hex of the sha256>.<random>.tmp"; no lock
# tells whether one is still being written, so only those untouched for an hour are removed
_LEGACY_WORK = re.compile(r"^\.[0-9a-f]{16}\.[0-9a-z_]+\.tmp$")
_LEGACY_AGE_S = 3600.0
_memory_index: dict[str, str] = {}
# files a local checkpoint's digest leaves out (as the activation store's model fingerprint does)
_FOLDER_SKIP = (".md", ".gitattributes", ".lock")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the model cache lives: ``cache_dir``, else ``$PERSONAS_CACHE``, else
    ``$XDG_CACHE_HOME/personas`` (``~/.cache/personas``)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("PERSONAS_CACHE"):
        return Path(os.environ["PERSONAS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "personas"


def check_cache_dir(root: str | os.PathLike, *, writable: bool) -> Path:
    """``root`` checked before any work: not a file, and writable (or creatable) when ``writable``.

    Raises
    ------
    NotADirectoryError
        ``root`` or one of its parents is a file.
    PermissionError
        ``writable`` and ``root`` (or the nearest existing parent it would be created in) is read-only.
    """
    root = Path(root).expanduser()
    fix = "pass cache_dir= (or set PERSONAS_CACHE) to a writable folder"
    probe = root
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise NotADirectoryError(f"the model cache folder {root} cannot be used: {probe} is a file; {fix}")
    if writable and not os.access(probe, os.W_OK | os.X_OK):
        where = "is" if probe == root else f"would be created in {probe}, which is"
        raise PermissionError(f"the model cache folder {root} {where} read-only; {fix}")
    return root


def _index_file(root: Path) -> Path:
    return root / "gguf" / "sha256-index.json"


def _index_key(path: Path) -> str:
    st = path.stat()
    return f"v2|{path}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"


def _read_index(index_file: Path) -> dict:
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _remember(root: Path, key: str, sha: str) -> None:
    _memory_index[key] = sha
    index_file = _index_file(root)
    index = _read_index(index_file)
    if index.get(key) != sha:
        index[key] = sha
        with contextlib.suppress(OSError):  # the index is an optimisation; a read-only cache rehashes
            write_json(index_file, index, indent=None)


def indexed_sha256(path: str | os.PathLike, root: str | os.PathLike, *, progress: bool = False) -> str:
    """The SHA-256 of ``path``, remembered in ``root``'s index by (path, inode, size, mtime_ns, ctime_ns)."""
    path = Path(path).resolve()
    key = _index_key(path)
    if key in _memory_index:
        return _memory_index[key]
    sha = _read_index(_index_file(Path(root))).get(key)
    if not (isinstance(sha, str) and len(sha) == 64):
        size = path.stat().st_size
        if progress and size > 1 << 30:
            print(f"hashing {path} ({size / 2**30:.1f} GiB, once)", flush=True)
        sha = file_sha256(path)
    _remember(Path(root), key, sha)
    return sha


def remember_sha256(path: str | os.PathLike, root: str | os.PathLike, sha: str) -> None:
    """Record the SHA-256 of ``path`` just computed while writing it, so it is not hashed again."""
    path = Path(path).resolve()
    _remember(Path(root), _index_key(path), sha)


def quick_sha256(path: str | os.PathLike) -> str:
    """A cheap digest: the SHA-256 of a file up to 32 MiB, else of its size, first and last MiB and
    64 blocks of 64 KiB at evenly spaced offsets (~6 MiB read whatever the size)."""
    path = Path(path)
    size = path.stat().st_size
    if size <= _QUICK_FULL_LIMIT:
        return file_sha256(path)
    h = hashlib.sha256(f"sampled:{size}:".encode())
    offsets = [0, size - _EDGE] + [(i * (size - _BLOCK)) // (_N_BLOCKS - 1) for i in range(_N_BLOCKS)]
    lengths = [_EDGE, _EDGE] + [_BLOCK] * _N_BLOCKS
    with open(path, "rb") as fh:
        for offset, length in zip(offsets, lengths):
            fh.seek(offset)
            h.update(fh.read(length))
    return h.hexdigest()


def record_files(directory: str | os.PathLike, skip: tuple[str, ...] = ()) -> dict[str, dict]:
    """``{relative name: {"size", "sha256", "quick_sha256"}}`` of every file under ``directory``."""
    directory = Path(directory)
    out = {}
    for f in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = f.relative_to(directory).as_posix()
        if name in skip:
            continue
        out[name] = {"size": f.stat().st_size, "sha256": file_sha256(f), "quick_sha256": quick_sha256(f)}
    return out


def check_files(directory: str | os.PathLike, records: dict, *, full: bool = False) -> list[str]:
    """What is wrong with ``directory`` against ``records`` (empty when intact).

    Each recorded file must exist with its recorded size and quick digest (``full``: its SHA-256).
    """
    directory = Path(directory)
    if not isinstance(records, dict) or not records:
        return ["it records no file checksums (written by an older version)"]
    problems = []
    for name, rec in records.items():
        f = directory / name
        try:
            size = f.stat().st_size
        except OSError:
            problems.append(f"{name} is missing")
            continue
        if size != rec.get("size"):
            problems.append(f"{name} has {size:,} bytes, {rec.get('size'):,} when written (truncated or replaced)")
        elif (file_sha256(f) if full else quick_sha256(f)) != rec.get("sha256" if full else "quick_sha256"):
            problems.append(f"{name} does not match its checksum (damaged or replaced)")
    return problems


def folder_sha256(folder: str | os.PathLike, root: str | os.PathLike) -> str:
    """The digest of a local checkpoint: SHA-256 over each file's relative name, size and SHA-256.

    The same recipe as the activation store's ``local-sha256`` model fingerprint (hidden
    files, ``*.md``, ``.gitattributes`` and ``*.lock`` left out); file digests come from the index.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                   and not p.name.endswith(_FOLDER_SKIP))
    if not files:
        raise ValueError(f"model folder {folder} holds no files")
    h = hashlib.sha256()
    for f in files:
        digest = indexed_sha256(f, root)
        h.update(f"{f.relative_to(folder).as_posix()}\0{f.stat().st_size}\0{digest}\n".encode())
    return h.hexdigest()


def _try_lock(lock_file: Path):
    from deepscan.locking import FileLock

    try:
        return FileLock(lock_file, f"the model cache entry {lock_file.name[1:-5]}")
    except RuntimeError:
        return None


def clean_stale_work(folder: str | os.PathLike) -> list[Path]:
    """Remove ``.<sha256>.<random>.tmp`` work left in ``folder`` by a killed build; return them.

    Work whose entry's lock is held (a build running now, here or in another process) is kept.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        return removed
    stale: dict[str, list[Path]] = {}
    for p in folder.iterdir():
        match = _WORK.match(p.name)
        if match:
            stale.setdefault(match.group(1), []).append(p)
        elif _LEGACY_WORK.match(p.name) and time.time() - p.stat().st_mtime > _LEGACY_AGE_S:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    for key, paths in stale.items():
        lock = _try_lock(folder / f".{key}.lock")
        if lock is None:
            continue
        try:
            for p in paths:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                removed.append(p)
        finally:
            lock.release()
    return removed


@contextlib.contextmanager
def build_lock(folder: str | os.PathLike, key: str, timeout: float = 3600.0) -> Iterator[None]:
    """Hold ``folder/.<key>.lock``, waiting while another process builds the same entry."""
    lock_file = Path(folder) / f".{key}.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    start, told = time.monotonic(), False
    while (lock := _try_lock(lock_file)) is None:
        if not told:
            print(f"waiting for another process building the model cache entry {key[:16]}...", flush=True)
            told = True
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{lock_file} was held for over {timeout:.0f} s; if no process is building, "
                               "delete the lock file")
        time.sleep(1.0)
    try:
        yield
    finally:
        lock.release()


def replace_dir(new: Path, target: Path) -> None:
    """Rename the finished folder ``new`` onto ``target``, moving a damaged ``target`` aside first."""
    if target.exists():
        trash = target.parent / f".{target.name}.{os.getpid()}old.tmp"
        os.rename(target, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.rename(new, target)


def note(message: str) -> None:
    """Say one fact about the model cache or loading, as one line (:class:`ModelNote`)."""
    warnings.warn(message, ModelNote, stacklevel=3)
