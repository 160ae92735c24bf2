"""Atomic artifact writing: every file appears whole or not at all.

Each writer creates a temporary file in the destination directory, then renames
it over the target (``os.replace`` is atomic on POSIX and Windows), so a crash or
an exception never leaves a half-written artifact behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "safe_name",
    "atomic_path",
    "write_text",
    "write_json",
    "read_json",
    "write_table",
    "save_figure",
]


def safe_name(text: object, replacement: str = "-") -> str:
    """``text`` as a file-name part: runs of characters other than letters, digits, ``.``,
    ``_`` and ``-`` become ``replacement``; leading and trailing ``-`` and ``.`` are dropped.
    May return ``""``: callers decide what an empty name means.
    """
    return re.sub(r"[^A-Za-z0-9._-]+", replacement, str(text)).strip("-.")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is untouched.

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
    fd, tmp = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=(target.suffix if suffix is None else suffix) + ".tmp"
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


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
    """Save a matplotlib figure atomically; the format follows the target's suffix."""
    target = Path(target)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=target.suffix.lstrip(".") or "png")
    return target
