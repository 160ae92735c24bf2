"""Helpers the run-file modules share: JSON normalising, UTC time stamps, atomic writes, versions, text lines.

- :func:`jsonable`: plain JSON types for storage and comparison;
- :func:`now_utc`: the time stamp of run-file headers;
- :func:`atomic_write_text`: replace a file at once (temporary file, fsync, rename);
- :func:`package_versions`: the versions every header records;
- :func:`read_lines`: a UTF-8 text file's lines, with clear errors.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__

__all__ = ["jsonable", "now_utc", "atomic_write_text", "package_versions", "read_lines"]


def package_versions() -> dict:
    """Versions recorded in every header: deepscan, numpy, python."""
    return {"deepscan": __version__, "numpy": np.__version__, "python": platform.python_version()}


def now_utc() -> str:
    """The current UTC time, ISO 8601 to the second (e.g. ``2025-05-01T12:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def jsonable(obj: Any) -> Any:
    """Normalise to plain JSON types (tuples -> lists, numpy -> python) for storage and comparison."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        raise TypeError(f"metadata value of type {type(o).__name__} is not JSON serialisable; convert it to str/int/float/list/dict")

    return json.loads(json.dumps(obj, default=default, allow_nan=False))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file (mode 0o666 & ~umask), fsync, then rename onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover
        raise FileExistsError(f"could not create a temporary file beside {path}")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_lines(path: Path) -> list[str]:
    """The lines of a run file (UTF-8, a byte-order mark dropped); ValueError if missing, unreadable or empty."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (some editors add one) is not content
    except FileNotFoundError as exc:
        raise ValueError(f"run file {path} does not exist; check the path") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"run file {path} cannot be read as UTF-8 text ({exc})") from exc
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise ValueError(f"run file {path} is empty")
    return lines
