"""File names from names people choose (personas, topics, models, figures): one rule, collision-proof.

:func:`file_stem` is the only way a persona, topic or figure name becomes part of a file name
(the activation store, run files and null runs, figures). A name that is already safe (letters,
digits, ``.``, ``_``, ``-``) is kept as it is; any other gets the SHA-256 of the original name
appended, so two different names never share a file. :func:`check_file_names` rejects sets of
names that would still clash on a case-insensitive file system (``Care`` and ``care``), or that
hold no letter or digit at all; user-supplied personas and topics are checked with it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Iterable

__all__ = ["safe_name", "file_stem", "check_file_names", "MAX_STEM"]

#: The longest stem :func:`file_stem` returns (file systems allow 255 bytes; room for suffixes).
MAX_STEM = 120
_HASH_SUFFIX = re.compile(r"-[0-9a-f]{8}$")


def safe_name(text: object, replacement: str = "-") -> str:
    """``text`` as a file-name part: runs of characters other than letters, digits, ``.``,
    ``_`` and ``-`` become ``replacement``; leading and trailing ``-`` and ``.`` are dropped.
    May return ``""``, and two names may give the same part: file names of user-given
    names come from :func:`file_stem`.
    """
    return re.sub(r"[^A-Za-z0-9._-]+", replacement, str(text)).strip("-.")


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]


def file_stem(name: object, *, empty: str = "x") -> str:
    """The file-name stem of ``name``: itself when safe, else its safe part and a hash of it.

    ``"agreeableness"`` -> ``"agreeableness"``; ``"my persona"`` -> ``"my-persona-1f0c…"`` (8 hex
    digits of the name's SHA-256); a safe name that ends like such a hash, or one longer than
    :data:`MAX_STEM`, is hashed too, so distinct names always give distinct stems.

    Parameters
    ----------
    name : str (or anything with a ``str``)
    empty : str
        The stem's base when nothing of ``name`` is safe (``"!!"`` -> ``"x-<hash>"``).
    """
    name = str(name)
    stem = safe_name(name)
    if stem == name and len(stem) <= MAX_STEM and not _HASH_SUFFIX.search(name):
        return stem
    stem = stem[: MAX_STEM - 9].rstrip("-.") or empty
    return f"{stem}-{_digest(name)}"


def check_file_names(names: Iterable[str], what: str, where: str = "") -> None:
    """Raise ``ValueError`` unless every name has a letter or digit and no two share a file name.

    Two names clash when their :func:`file_stem` agree once case is folded (a case-insensitive
    file system, as macOS and Windows have by default, would make them one file).

    Parameters
    ----------
    names : iterable of str
    what : str
        What the names are, for the message (``"persona"``, ``"topic"``).
    where : str
        Where they come from, prefixed to the message (``"topics file data/my_topics.json: "``).
    """
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not any(c.isalnum() for c in name):
            raise ValueError(f"{where}{what} name {name!r} has no letters or digits to name its files; rename it")
        key = file_stem(name).casefold()
        if key in seen and seen[key] != name:
            raise ValueError(f"{where}{what} {name!r} and the {what} {seen[key]!r} would share file names ({key!r} "
                             "once made safe for a file name, case folded); rename one of them")
        seen[key] = name
