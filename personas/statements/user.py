"""A researcher's own statements and topics beside the bundled ones, checked before anything is computed.

``study_inputs`` is what the notebooks and the study call first: it reads the user's
statements file (CSV or Parquet, the columns of ``load_statements(source=)``) and topics
file (JSON ``{topic: [persona, ...]}``), mixes the user's personas with the bundled 135,
and fails with one clear error on anything that would break later or overwrite another
persona's artifacts:

- a missing, unreadable or non-UTF-8 file; wrong columns; blank or repeated statements;
- fewer statements than ``n_per_direction`` (the error says how many there are);
- a user persona with a bundled persona's name (unless ``prefer`` says which wins), or two
  personas whose file names would be the same (``run_file_name`` sanitises names);
- a topics file naming an unknown persona, or one persona in two topics.

Personas in no topic are allowed: levels 1 and 0 skip them, the node analysis gives each its
own group (``StudyInputs.groups``).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from personas._core.io import file_sha256
from personas._core.names import check_file_names
from personas.statements.bundled import (
    bundled_table,
    read_source,
    load_statements,
    load_topics,
    paper_personas,
)

__all__ = ["PREFER", "StudyInputs", "input_files", "mixed_statements", "study_inputs"]

#: Which statements win when a user persona has a bundled persona's name.
PREFER = ("user", "bundled")


@dataclass(frozen=True, eq=False)
class StudyInputs:
    """The checked inputs of a study.

    Attributes
    ----------
    personas : list of str
        The personas studied, in order.
    table : DataFrame or None
        Bundled and user statements together (pass as ``load_statements(source=...)``);
        None when there is no user file (then the bundled table is used).
    topics : dict
        ``{topic: [persona, ...]}`` (the user's topics file, else ``data/paper_personas.json``).
    user_personas : list of str
        The personas whose statements come from the user's file.
    untopiced : list of str
        The studied personas that are in no topic.
    files : dict
        ``{"statements_file": {"path", "sha256"}, "topics_file": {...}}`` for the files given.
    """

    personas: list[str]
    table: pd.DataFrame | None
    topics: dict[str, list[str]]
    user_personas: list[str] = field(default_factory=list)
    untopiced: list[str] = field(default_factory=list)
    files: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def groups(self) -> dict[str, list[str]]:
        """Topics restricted to the studied personas, plus one group per persona in no topic (named after it)."""
        return self.groups_of(self.personas)

    def groups_of(self, names: Sequence[str]) -> dict[str, list[str]]:
        """:attr:`groups` restricted to ``names`` (e.g. the personas with a run file); empty groups dropped."""
        chosen = set(names)
        out = {t: [p for p in members if p in chosen] for t, members in self.topics.items()}
        out = {t: members for t, members in out.items() if members}
        for persona in self.untopiced:
            if persona in chosen:
                out.setdefault(persona, [persona])
        return out


def input_files(statements_file: str | os.PathLike | None = None,
                topics_file: str | os.PathLike | None = None) -> dict[str, dict[str, str]]:
    """``{"statements_file": {"path": ..., "sha256": ...}, "topics_file": {...}}`` for the files given.

    Recorded in the store manifests, the run-file headers and the report, so every artifact
    says which version of the user's files it was made from.
    """
    out = {}
    for key, path in (("statements_file", statements_file), ("topics_file", topics_file)):
        if path is not None:
            out[key] = {"path": str(path), "sha256": file_sha256(path)}
    return out


def _check_names(user: Sequence[str], bundled: Sequence[str], path, prefer: str | None) -> None:
    same = sorted(set(user) & set(bundled))
    if same and prefer is None:
        raise ValueError(
            f"statements file {path}: persona(s) {same[:5]} are also bundled personas; rename them in the file, "
            "or say which statements win with prefer='user' or prefer='bundled' (study: --prefer user|bundled)"
        )
    check_file_names([*bundled, *(p for p in user if p not in same)], "persona", f"statements file {path}: ")


def mixed_statements(statements_file: str | os.PathLike, prefer: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The bundled statements with the user's file added; returns the table and the user's persona names.

    Parameters
    ----------
    statements_file : path
        CSV or Parquet with columns ``persona``, ``statement``, ``direction`` (and optionally
        ``id``, ``label_confidence``).
    prefer : {"user", "bundled"}, optional
        Which statements a persona gets when its name is in both; None makes that an error.
    """
    if prefer is not None and prefer not in PREFER:
        raise ValueError(f"prefer must be one of {PREFER} or None, got {prefer!r}")
    user = read_source(statements_file)
    names = list(dict.fromkeys(user["persona"]))
    bundled = bundled_table()
    _check_names(names, sorted(bundled["persona"].unique()), statements_file, prefer)
    if prefer == "bundled":
        user = user[~user["persona"].isin(set(bundled["persona"]))]
    elif prefer == "user":
        bundled = bundled[~bundled["persona"].isin(set(names))]
    clash = sorted(set(user["id"]) & set(bundled["id"]))
    if clash:
        raise ValueError(f"statements file {statements_file}: ids {clash[:5]} are also ids of bundled statements; "
                         "use other ids or drop the id column")
    table = pd.concat([bundled, user], ignore_index=True)
    table.attrs["checked"] = True  # load_statements(source=table) need not check it again
    return table, names


def _check_topics(topics: dict[str, list[str]], known: set[str], path) -> None:
    check_file_names(topics, "topic", f"topics file {path}: ")  # topics name level-0 run files and figures
    unknown = [p for members in topics.values() for p in members if p not in known]
    if unknown:
        hints = {p: difflib.get_close_matches(p, sorted(known), n=3, cutoff=0.6) for p in unknown[:5]}
        hint = "; ".join(f"{p!r}: did you mean {c}?" for p, c in hints.items() if c)
        raise ValueError(
            f"topics file {path} names persona(s) {unknown[:5]} that are neither bundled nor in the statements "
            f"file{'; ' + hint if hint else ''}; fix the names or add their statements"
        )


def study_inputs(
    personas: Sequence[str] | str | None = None,
    *,
    statements_file: str | os.PathLike | None = None,
    topics_file: str | os.PathLike | None = None,
    prefer: str | None = None,
    n_per_direction: int | None = None,
    min_confidence: float = 0.85,
) -> StudyInputs:
    """Check a study's statements, topics and personas before anything is computed.

    Parameters
    ----------
    personas : None, str or list of str
        As for ``load_statements``; None: the paper's 14 followed by every persona of
        ``statements_file``.
    statements_file, topics_file : path, optional
        The user's statements (CSV/Parquet) and topics (JSON ``{topic: [persona, ...]}``).
    prefer : {"user", "bundled"}, optional
        Which statements win for a name in both the bundled set and ``statements_file``.
    n_per_direction, min_confidence :
        When ``n_per_direction`` is given, every persona is checked to have that many
        statements per direction with ``label_confidence >= min_confidence``.

    Returns
    -------
    StudyInputs

    Raises
    ------
    FileNotFoundError, ValueError
        On any bad input listed in the module docstring; the message names the file, the
        value and the fix.
    """
    table, user = (None, []) if statements_file is None else mixed_statements(statements_file, prefer)
    if personas is None:
        personas = paper_personas() + [p for p in user if p not in paper_personas()]
    # the draw checks the names and, with n_per_direction, that every persona has enough statements
    names = list(dict.fromkeys(load_statements(personas, n_per_direction=n_per_direction or 1,
                                               min_confidence=min_confidence, source=table)["persona"]))
    known = set(bundled_table()["persona"]) | set(user)
    topics = load_topics(topics_file)
    if topics_file is not None:
        _check_topics(topics, known, topics_file)
    in_topic = {p for members in topics.values() for p in members}
    files = input_files(statements_file, topics_file)
    return StudyInputs(personas=names, table=table, topics=topics, user_personas=user,
                       untopiced=[p for p in names if p not in in_topic], files=files)

