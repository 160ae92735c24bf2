"""Pools of statements for DeepScan's levels 2, 1 and 0: background, clean and anomalous."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from personas._core.checks import check_meta, check_settings
from personas._core.names import file_stem
from personas._core.notes import StudyNote
from personas._core.provenance import derive_seed
from personas.scans.settings import PoolSizes


__all__ = ["LEVEL_NAMES", "ScanPools", "scan_pools", "topic_pools", "topic_target", "level_targets",
           "experiment_seed", "run_file_name"]

LEVEL_NAMES = {2: "within persona", 1: "within topic", 0: "between topics"}
_COLUMNS = ["id", "persona", "direction"]


@dataclass(frozen=True)
class ScanPools:
    """Row indices (into the activation matrix / statements table) of one experiment's pools.

    Attributes
    ----------
    persona, level : the persona scanned and the level (2, 1 or 0).
    background, clean, anomalous : int arrays of row indices.
    description : one line saying what each pool holds.
    """

    persona: str
    level: int
    background: np.ndarray
    clean: np.ndarray
    anomalous: np.ndarray
    description: str = field(default="")

    def ids(self, meta: pd.DataFrame) -> dict[str, list[str]]:
        """Statement ids of each pool, for the run file's metadata."""
        col = meta["id"].to_numpy()
        return {
            "background_ids": col[self.background].tolist(),
            "clean_pool_ids": col[self.clean].tolist(),
            "anomalous_pool_ids": col[self.anomalous].tolist(),
        }


def _topic_of(persona: str, topics: dict[str, list[str]]) -> str:
    for topic, members in topics.items():
        if persona in members:
            return topic
    raise ValueError(
        f"persona {persona!r} belongs to no topic in {sorted(topics)}; "
        "levels 1 and 0 need a topic grouping that contains it (see data/paper_personas.json)"
    )


def scan_pools(
    meta: pd.DataFrame,
    persona: str,
    *,
    level: int = 2,
    topics: dict[str, list[str]] | None = None,
    sizes: PoolSizes | None = None,
    seed: int = 0,
) -> ScanPools:
    """Choose the background, clean and anomalous rows of one experiment.

    Parameters
    ----------
    meta : DataFrame, (n_statements, ...)
        Statements aligned with the activation rows; needs columns ``id``,
        ``persona`` and ``direction``.
    persona : str
        The persona whose ``+`` statements form the anomalous pool.
    level : {2, 1, 0}
        Within persona, within topic, between topics (module docstring).
    topics : dict[str, list[str]], optional
        Topic -> personas; required for levels 1 and 0. Only personas present in
        ``meta`` are used.
    sizes : PoolSizes, optional
        Pool sizes (default: the paper's 250, 50, 300).
    seed : int
        Seed of the shuffles that split the pools.

    Returns
    -------
    ScanPools
    """
    check_meta(meta, len(meta), _COLUMNS)
    sizes = check_settings(sizes, PoolSizes, "sizes")
    if level not in LEVEL_NAMES:
        raise ValueError(f"level must be 2, 1 or 0 ({LEVEL_NAMES}), got {level!r}")
    present = set(meta["persona"])
    if persona not in present:
        raise ValueError(f"persona {persona!r} is not among the loaded personas {sorted(present)}")
    rng = np.random.default_rng(seed)
    persona_rows = meta["persona"].to_numpy() == persona
    positive = meta["direction"].to_numpy() == "positive"
    anomalous = np.flatnonzero(persona_rows & positive)
    if level == 2:
        reference = np.flatnonzero(persona_rows & ~positive)
        source = f"'-' statements of {persona}"
    else:
        if topics is None:
            raise ValueError(f"level {level} needs `topics` (topic -> personas), e.g. load_topics()")
        topic = _topic_of(persona, topics)
        if level == 1:
            others = [p for p in topics[topic] if p != persona and p in present]
            source = f"'+' statements of the other {topic} personas"
        else:
            others = [p for t, members in topics.items() if t != topic for p in members if p in present]
            source = f"'+' statements of personas outside {topic}"
        if not others:
            raise ValueError(
                f"level {level} for {persona!r} needs other personas ({source}) among the loaded ones {sorted(present)}"
            )
        reference = np.flatnonzero(meta["persona"].isin(others).to_numpy() & positive)
    return _split_pools(rng, persona, level, (reference, anomalous), (source, f"'+' statements of {persona}"), sizes)


def _split_pools(rng: np.random.Generator, target: str, level: int, rows: tuple[np.ndarray, np.ndarray],
                 sources: tuple[str, str], sizes: PoolSizes) -> ScanPools:
    """Draw the pools: background and clean from the reference ``rows[0]``, anomalous from ``rows[1]``.

    ``sources`` says in words where each comes from (for the description and the errors).
    """
    reference, anomalous = rows
    source, anomalous_source = sources
    need = sizes.background + sizes.clean
    if reference.size < need:
        raise ValueError(
            f"level {level} for {target!r}: {reference.size} {source} available, "
            f"background_size + clean_size = {need}; lower the sizes or load more statements"
        )
    if anomalous.size < sizes.anomalous:
        raise ValueError(
            f"{target!r} has {anomalous.size} {anomalous_source}, anomalous_size = {sizes.anomalous}; "
            "lower anomalous_size or load more statements"
        )
    reference = rng.permutation(reference)
    anomalous = np.sort(rng.permutation(anomalous)[: sizes.anomalous])
    return ScanPools(
        persona=target,
        level=level,
        background=np.sort(reference[: sizes.background]),
        clean=np.sort(reference[sizes.background : need]),
        anomalous=anomalous,
        description=(
            f"level {level} ({LEVEL_NAMES[level]}): background and clean pool = {source}; "
            f"anomalous pool = {anomalous_source}"
        ),
    )


def topic_target(topic: str) -> str:
    """The name a level-0 experiment of ``topic`` goes by: ``"<topic>+"`` (the paper's Table 2 rows)."""
    return f"{topic}+"


def topic_pools(
    meta: pd.DataFrame,
    topic: str,
    topics: dict[str, list[str]],
    *,
    sizes: PoolSizes | None = None,
    seed: int = 0,
) -> ScanPools:
    """Pools of the paper's level 0 for one topic.

    Anomalous pool: ``sizes.anomalous`` of the ``+`` statements of every loaded persona
    of ``topic``; background and clean pool: ``+`` statements of the loaded personas
    of the other topics. The result's ``persona`` is :func:`topic_target` (``"Ethics+"``).

    Parameters
    ----------
    meta : DataFrame, (n_statements, ...)
        Columns ``id``, ``persona``, ``direction``.
    topic : str
        A key of ``topics``.
    topics : dict[str, list[str]]
        Topic -> personas.
    sizes : PoolSizes, optional
        Pool sizes (default: the paper's 250, 50, 300).
    seed : int
        Seed of the shuffles that split the pools.
    """
    check_meta(meta, len(meta), _COLUMNS)
    sizes = check_settings(sizes, PoolSizes, "sizes")
    if topic not in topics:
        raise ValueError(f"topic {topic!r} is not one of {sorted(topics)}")
    present = set(meta["persona"])
    members = [p for p in topics[topic] if p in present]
    others = [p for t, ps in topics.items() if t != topic for p in ps if p in present]
    if not members:
        raise ValueError(f"topic {topic!r}: none of its personas {topics[topic]} is loaded ({sorted(present)})")
    if not others:
        raise ValueError(f"level 0 for topic {topic!r} needs personas of other topics among the loaded ones {sorted(present)}")
    positive = meta["direction"].to_numpy() == "positive"
    anomalous = np.flatnonzero(meta["persona"].isin(members).to_numpy() & positive)
    reference = np.flatnonzero(meta["persona"].isin(others).to_numpy() & positive)
    rng = np.random.default_rng(seed)
    sources = (f"'+' statements of personas outside {topic}", f"'+' statements of the {topic} personas")
    return _split_pools(rng, topic_target(topic), 0, (reference, anomalous), sources, sizes)


def level_targets(level: int, personas: Sequence[str], topics: dict[str, list[str]] | None) -> list[tuple[str, str | None]]:
    """(target name, topic) pairs one level scans: personas at levels 2 and 1, topics at level 0.

    A level has no experiment where it has no background: level 1 for a persona that is
    the only one of its topic among ``personas`` or in no topic, level 0 when only one topic
    is present (personas in no topic are in no level-0 pool). Those are skipped with one
    ``StudyNote`` line naming them, so the other levels still run.
    """
    if level == 2:
        return [(p, None) for p in personas]
    if topics is None:
        raise ValueError(f"level {level} needs `topics` (topic -> personas), e.g. load_topics()")
    chosen = set(personas)
    in_topic = {p for members in topics.values() for p in members}
    untopiced = [p for p in personas if p not in in_topic]
    name = LEVEL_NAMES[level]
    if untopiced:
        what = "skipped for" if level == 1 else "leaves out"
        warnings.warn(f"level {level} ({name}) {what} {untopiced}: in no topic of the topics file "
                      "(add them to a topic in topics_file to scan them at this level)", StudyNote, stacklevel=3)
    if level == 1:
        alone = [p for p in personas if p in in_topic
                 and not any(p in m and (chosen & set(m)) - {p} for m in topics.values())]
        if alone:
            warnings.warn(f"level 1 (within topic) skipped for {alone}: no other persona of their topic is loaded",
                          StudyNote, stacklevel=3)
        return [(p, None) for p in personas if p not in alone and p not in untopiced]
    present = [t for t, members in topics.items() if chosen & set(members)]
    if len(present) < 2:
        warnings.warn(f"level 0 (between topics) skipped: only the topic(s) {present} are loaded", StudyNote,
                      stacklevel=3)
        return []
    return [(topic_target(t), t) for t in present]


def experiment_seed(seed: int, persona: str, level: int) -> int:
    """Seed of one (persona, level) experiment, derived from the study seed.

    Built from the persona's *name* (crc32), not its position in a list, so adding
    or removing personas never changes another persona's runs.
    """
    return derive_seed(seed, int(level), persona)


def run_file_name(persona: str, level: int, layer: int) -> str:
    """File name of a run file: ``level<level>_layer<layer>_<persona>.jsonl``; ``persona`` (a persona, or a topic
    at level 0) as ``personas._core.names.file_stem`` makes it: safe names kept, others hashed."""
    return f"level{level}_layer{layer}_{file_stem(persona)}.jsonl"


