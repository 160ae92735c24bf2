"""Atomic artifact writing: every file appears whole or not at all.

Policy (the same as ``deepscan.runfile``'s writer): each writer creates a temporary
file ``.<name>.<random>.tmp`` in the destination directory with mode ``0o666``
minus the process umask (as ``open()`` would, so a shared folder's users can read
the outputs; ``tempfile.mkstemp`` would give 0600), writes it, ``fsync``s it and
renames it over the target (``os.replace`` is atomic on POSIX and Windows), so a
crash or an exception never leaves a half-written artifact behind. A crash can
leave a stale temporary file; :func:`clean_temp_files` removes them.

:func:`exclusive_lock` guards a writer that must be alone (the activation store, a study's folder).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Iterator

from deepscan.locking import FileLock
from personas._core.names import safe_name  # noqa: F401  (re-exported: file names come from personas._core.names)

__all__ = [
    "file_sha256",
    "safe_name",
    "atomic_path",
    "clean_temp_files",
    "exclusive_lock",
    "write_text",
    "write_json",
    "read_json",
    "write_table",
    "save_figure",
]


def _create_temp(target: Path, suffix: str) -> tuple[Path, int]:
    """Create an empty, new temporary file beside ``target``; return it and its mode (0o666 & ~umask)."""
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}{suffix}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
        except FileExistsError:
            continue
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        os.close(fd)
        return tmp, mode
    raise FileExistsError(f"could not create a temporary file beside {target}")  # pragma: no cover


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem supports fsync of a file or folder
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is untouched.
    The final file has mode ``0o666`` minus the umask.

    Parameters
    ----------
    target : path
        Final location. Its parent directory is created if missing.
    suffix : str, optional
        Suffix of the temporary file (some writers infer the format from it);
        defaults to the target's own suffix.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path, mode = _create_temp(target, target.suffix if suffix is None else suffix)
    try:
        yield tmp_path
        if stat.S_IMODE(tmp_path.stat().st_mode) != mode:
            os.chmod(tmp_path, mode)  # a writer that replaced the file itself (safetensors does) made it 0600
        _fsync(tmp_path)  # the data is on disk before the rename makes it visible
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def clean_temp_files(folder: str | os.PathLike, name_glob: str = "*") -> list[Path]:
    """Remove stale temporary files ``.<name>.<random>*.tmp`` that :func:`atomic_path` left in ``folder``.

    Only call this while no other writer uses ``folder`` (e.g. under :func:`exclusive_lock`).

    Parameters
    ----------
    folder : path
    name_glob : str
        Glob of the target names whose temporary files to remove (default: all).

    Returns
    -------
    list of Path
        The files removed.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for tmp in sorted(folder.glob(f".{name_glob}.*.tmp")):
        if tmp.is_file():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def exclusive_lock(lock_file: str | os.PathLike, what: str, advice: str | None = None) -> Iterator[Path]:
    """Hold an exclusive, non-blocking lock on ``lock_file`` while the block runs (:class:`deepscan.locking.FileLock`).

    The one lock of the project (run files, the activation store, a study's folder): a second
    holder (another process, or another open in this one) gets a ``RuntimeError`` at once,
    naming the holder's pid, host and start time, instead of writing beside the first. The lock
    file records the holder, is group-writable where the umask lets the group read, is removed
    on release, and one left by a killed process is taken over with a ``StaleLockWarning``.

    Parameters
    ----------
    lock_file : path
    what : str
        What is locked, for the message (e.g. ``"the activation store <dir>"``).
    advice : str, optional
        How to proceed when another process holds it (default: wait, or write somewhere else).
    """
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_file, what, advice):
        yield lock_file


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
    """The hex SHA-256 of a file's bytes, read in chunks (multi-GB weight files fit in memory)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text(target: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, paths: the usual non-JSON types in our metadata
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def write_json(target: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON atomically (numpy values converted) and return the path."""
    return write_text(target, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, naming the file in the error if it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it or rewrite it") from exc


def write_table(df, target: str | os.PathLike) -> Path:
    """Write a DataFrame atomically as CSV (``.csv``) or Parquet (``.parquet``)."""
    target = Path(target)
    if target.suffix not in (".csv", ".parquet"):
        raise ValueError(f"table path {target} must end in .csv or .parquet")
    with atomic_path(target) as tmp:
        if target.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return target


def save_figure(fig, target: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically; the format follows the target's suffix.

    A PNG is also kept on the figure (``fig.personas_png``: its bytes and dpi) with ``fig.stale``
    cleared, so a notebook that displays the figure next shows these bytes instead of drawing it
    again (:func:`personas.viz.style.register_notebook_display`); any change to the figure after the
    save marks it stale and it is drawn anew.
    """
    target = Path(target)
    fmt = target.suffix.lstrip(".") or "png"
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, bbox_inches="tight", format=fmt)
    with atomic_path(target) as tmp:
        tmp.write_bytes(buffer.getvalue())
    if fmt == "png":
        fig.personas_png = (buffer.getvalue(), dpi)
        fig.stale = False  # set again by any later change to the figure or its artists
    return target
