"""Persona statements: the bundled Perez et al. (2023) data, the paper's personas, sampling.

The bundled table (``data/statements.parquet``, built by ``data/build_statements.py``)
has every statement of the 135 behaviours. ``load_statements`` filters by label
confidence and draws a balanced, seeded sample per persona, as in Cintas et al.
(AIES 2025): 300 ``positive`` and 300 ``negative`` statements with confidence >= 0.85
for each of the paper's 14 personas.
"""

from __future__ import annotations

import difflib
import io
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from personas._core.checks import check_float, check_int, check_seed
from personas._core.provenance import derive_rng

__all__ = [
    "statement_texts",
    "DATA_DIR",
    "STATEMENT_COLUMNS",
    "DIRECTIONS",
    "load_topics",
    "load_short_names",
    "paper_personas",
    "list_personas",
    "persona_counts",
    "load_statements",
]

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "data"
STATEMENT_COLUMNS = ["id", "persona", "direction", "statement", "label_confidence"]
DIRECTIONS = ("positive", "negative")

_BUNDLED = DATA_DIR / "statements.parquet"
_PAPER_FILE = DATA_DIR / "paper_personas.json"
_DIRECTION_ALIASES = {"positive": "positive", "+": "positive", "negative": "negative", "-": "negative"}


def _read_paper_file(path: str | os.PathLike | None) -> dict:
    """A topics file as ``{"topics": {...}, "short_names": {...}}``; a flat ``{topic: [persona, ...]}`` works too.

    Checked here: the file exists and is UTF-8 JSON, each topic is a list of names, and no persona
    is in two topics. Whether the names exist depends on the statements: see ``personas.statements.user``.
    """
    from personas._core.io import read_json

    path = Path(_PAPER_FILE if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(f"topics file {path} does not exist; give a JSON file {{topic: [persona, ...]}}")
    try:
        spec = read_json(path)
    except UnicodeDecodeError as exc:
        raise ValueError(f"topics file {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
                         f"position {exc.start}); save it as UTF-8") from None
    except PermissionError:
        raise ValueError(f"topics file {path} cannot be read (permission denied); check its permissions") from None
    if isinstance(spec, dict) and "topics" not in spec:
        spec = {"topics": spec}
    topics = spec.get("topics") if isinstance(spec, dict) else None
    shape = "{topic: [persona, ...]} (or {'topics': {topic: [persona, ...]}, 'short_names': {...}})"
    if not isinstance(topics, dict) or not topics:
        raise ValueError(f"{path} must hold {shape}")
    owner: dict[str, str] = {}
    for topic, members in topics.items():
        if not isinstance(members, list) or not members or not all(isinstance(m, str) and m.strip() for m in members):
            raise ValueError(f"{path}: topic {topic!r} must be a non-empty list of persona names, got {members!r}; "
                             f"the file must hold {shape}")
        for persona in members:
            if persona in owner:
                where = "twice in" if owner[persona] == topic else f"in {owner[persona]!r} and in"
                raise ValueError(f"{path}: persona {persona!r} is {where} topic {topic!r}; "
                                 "a persona belongs to one topic at most")
            owner[persona] = topic
    return spec


def load_topics(path: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Personas grouped by topic (default: the paper's 3 topics, 14 personas).

    Parameters
    ----------
    path : path, optional
        A JSON file ``{topic: [persona, ...]}``, or shaped like ``data/paper_personas.json``
        (``{"topics": {topic: [persona, ...]}, "short_names": {persona: name}}``). A persona in
        two topics is an error.

    Returns
    -------
    dict
        ``{topic: [persona, ...]}`` in file order.
    """
    return {topic: list(members) for topic, members in _read_paper_file(path)["topics"].items()}


def load_short_names(path: str | os.PathLike | None = None) -> dict[str, str]:
    """Short display names per persona, e.g. ``{"agreeableness": "AGREE", ...}``.

    Personas without a short name in the file get their own name.
    """
    spec = _read_paper_file(path)
    names = {p: p for members in spec["topics"].values() for p in members}
    names.update(spec.get("short_names", {}))
    return names


def paper_personas(path: str | os.PathLike | None = None) -> list[str]:
    """The paper's 14 personas, in topic order (Personality, Ethics, Politics)."""
    return [p for members in load_topics(path).values() for p in members]


@lru_cache(maxsize=1)
def bundled_table() -> pd.DataFrame:
    if not _BUNDLED.exists():
        raise FileNotFoundError(
            f"bundled statements {_BUNDLED} are missing; rebuild them with "
            "`uv run python data/build_statements.py PATH/TO/evals/persona`"
        )
    return pd.read_parquet(_BUNDLED)


def _read_file(path: Path) -> pd.DataFrame:
    """A user's CSV or Parquet file as a table of text columns, with errors that name the fix."""
    if path.is_dir():
        raise ValueError(f"statements file {path} is a directory; give the CSV or Parquet file inside it")
    if not path.is_file():
        raise FileNotFoundError(f"statements file {path} does not exist; give a CSV or Parquet file with columns "
                                "persona, statement, direction")
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"statement source {path} must be a .csv or .parquet file (or a DataFrame)")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ValueError(f"statements file {path} cannot be read ({exc.strerror}); check its permissions") from None
    if path.suffix.lower() == ".parquet":
        try:
            return pd.read_parquet(io.BytesIO(raw))
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise ValueError(f"statements file {path} is not a readable Parquet file ({exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(f"statements file {path} is not UTF-8 text (byte {raw[exc.start]:#04x} on line {line}); "
                         "save it as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet program)") from None
    try:
        # as text: ids "01" and "1" stay distinct, a blank cell does not turn ids into floats,
        # and only empty cells count as missing (a persona may be called "NA")
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise ValueError(f"statement source {path} is empty (0 bytes); it needs a header row "
                         "persona,statement,direction and one row per statement") from None
    except pd.errors.ParserError as exc:
        raise ValueError(f"statement source {path} is not a readable CSV file ({exc})") from None


def _check_duplicates(df: pd.DataFrame, name: str) -> None:
    """The same statement twice for one persona (in either direction) is an error naming both rows."""
    key = df["persona"] + "\0" + df["statement"].str.strip().str.casefold()
    repeated = key.duplicated(keep=False)
    if repeated.any():
        rows = df.index[key == key[repeated].iloc[0]].tolist()
        raise ValueError(
            f"{name}: {int(repeated.sum())} rows repeat a statement of their persona, e.g. persona "
            f"{df.loc[rows[0], 'persona']!r} rows {rows} ({df.loc[rows[0], 'statement']!r}); "
            "each statement may appear once per persona"
        )


def read_source(source) -> pd.DataFrame:
    """Validate a user table (CSV/Parquet path or DataFrame) into ``STATEMENT_COLUMNS``."""
    if source is None:
        return bundled_table()
    if isinstance(source, (str, os.PathLike)):
        df, name = _read_file(Path(source)), str(source)
    elif isinstance(source, pd.DataFrame) and source.attrs.get("checked"):
        return source  # made by personas.statements.user.mixed_statements: checked already
    elif isinstance(source, pd.DataFrame):
        df, name = source, "the statement DataFrame"
    else:
        raise TypeError(f"source must be None, a CSV/Parquet path or a DataFrame, not {type(source).__name__}")

    missing = [c for c in ("persona", "statement", "direction") if c not in df.columns]
    if missing:
        raise ValueError(
            f"{name} lacks column(s) {missing}; it needs persona, statement, direction "
            f"(positive/negative or +/-) and optionally id, label_confidence. Columns found: {list(df.columns)}"
        )
    if df.empty:
        raise ValueError(f"{name} has a header but no statement rows; add one row per statement")
    df = df.copy()
    if df[["persona", "statement", "direction"]].isna().any().any():
        bad = df.index[df[["persona", "statement", "direction"]].isna().any(axis=1)][:5].tolist()
        raise ValueError(f"{name} has empty persona/statement/direction values (rows {bad})")
    for column in ("persona", "statement"):
        blank = df[column].astype(str).str.strip() == ""
        if blank.any():
            raise ValueError(f"{name} has blank {column} values (rows {df.index[blank][:5].tolist()})")
    direction = df["direction"].astype(str).str.strip().str.lower().map(_DIRECTION_ALIASES)
    if direction.isna().any():
        bad = sorted(set(df.loc[direction.isna(), "direction"].astype(str)))[:5]
        raise ValueError(f"{name}: direction values {bad} are not one of 'positive', 'negative', '+', '-'")
    df["direction"] = direction
    df["persona"] = df["persona"].astype(str)
    df["statement"] = df["statement"].astype(str)
    _check_duplicates(df, name)
    if "label_confidence" in df.columns:
        conf = pd.to_numeric(df["label_confidence"], errors="coerce")
        if conf.isna().any():
            raise ValueError(f"{name}: label_confidence must be numeric and filled")
        outside = (conf < 0) | (conf > 1)
        if outside.any():
            bad = df.index[outside][:5].tolist()
            raise ValueError(f"{name}: label_confidence must lie in [0, 1]; rows {bad} hold {conf[outside][:5].tolist()}")
        df["label_confidence"] = conf.astype(float)
    else:
        # a user's own statements carry no classifier confidence: treat them as certain
        df["label_confidence"] = 1.0
    if "id" not in df.columns:
        row = df.groupby("persona", sort=False).cumcount()
        df["id"] = df["persona"] + "/" + row.map("{:04d}".format)
    blank_id = df["id"].isna() | (df["id"].astype(str).str.strip() == "")
    if blank_id.any():
        raise ValueError(f"{name}: id is blank in rows {df.index[blank_id][:5].tolist()}; "
                         "give every statement an id, or drop the id column to number them per persona")
    df["id"] = df["id"].astype(str)
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise ValueError(f"{name}: statement ids must be unique; duplicated: {sorted(set(dup))[:5]}")
    return df[STATEMENT_COLUMNS].reset_index(drop=True)


def _check_confidence(min_confidence) -> float:
    try:
        return check_float(min_confidence, "min_confidence", min_val=0.0, max_val=1.0)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"min_confidence must lie in [0, 1], got {min_confidence!r} ({exc})") from None


def list_personas(source=None) -> list[str]:
    """Sorted names of all personas available (bundled data: 135 behaviours)."""
    return sorted(read_source(source)["persona"].unique())


def persona_counts(min_confidence: float = 0.85, source=None) -> pd.DataFrame:
    """Number of statements per persona and direction with ``label_confidence >= min_confidence``.

    Returns
    -------
    DataFrame
        Index persona, columns ``positive``, ``negative`` (ints), sorted by persona.
    """
    min_confidence = _check_confidence(min_confidence)
    df = read_source(source)
    kept = df[df["label_confidence"] >= min_confidence]
    counts = kept.groupby(["persona", "direction"]).size().unstack("direction")
    counts = counts.reindex(index=sorted(df["persona"].unique()), columns=list(DIRECTIONS)).fillna(0).astype(int)
    counts.columns.name = None
    return counts


def _resolve_personas(personas, available: list[str]) -> list[str]:
    if personas is None:
        return paper_personas()
    if isinstance(personas, str):
        if personas == "all":
            return list(available)
        personas = load_topics().get(personas, [personas])
    personas = list(personas)
    if not personas:
        raise ValueError("personas is empty; pass None for the paper's 14, 'all', a topic name or a list of names")
    known = set(available)
    for p in personas:
        if p not in known:
            close = difflib.get_close_matches(str(p), available, n=5, cutoff=0.4)
            hint = f"closest valid names: {close}" if close else "see list_personas() for the valid names"
            raise ValueError(f"unknown persona {p!r}; {hint}")
    dup = sorted({p for p in personas if personas.count(p) > 1})
    if dup:
        raise ValueError(f"personas listed twice: {dup}")
    return personas


def load_statements(
    personas=None,
    n_per_direction: int | None = 300,
    min_confidence: float = 0.85,
    seed: int = 0,
    source=None,
) -> pd.DataFrame:
    """Balanced, seeded sample of persona statements (the paper's protocol by default).

    For each persona and each direction, keep the statements with
    ``label_confidence >= min_confidence`` and draw ``n_per_direction`` of them
    without replacement. The draw for a persona depends only on ``seed`` and the
    persona's name, so adding personas to the list never changes the others' samples.

    Parameters
    ----------
    personas : None, str or list of str
        None: the paper's 14 personas in topic order (``paper_personas()``); ``"all"``:
        every persona of the source; a topic name of ``data/paper_personas.json``
        (e.g. ``"Politics"``); one persona name; or a list of names.
    n_per_direction : int or None
        Statements per direction and persona (paper: 300). None keeps all that pass
        the filter (then the directions may be unbalanced).
    min_confidence : float
        Minimum ``label_confidence`` (paper: 0.85).
    seed : int
        Seed of the draw.
    source : None, path or DataFrame
        None for the bundled data; otherwise a CSV/Parquet file or DataFrame with
        columns ``persona``, ``statement``, ``direction`` (``positive``/``negative`` or
        ``+``/``-``) and optionally ``id`` (default ``"<persona>/<row within persona>"``)
        and ``label_confidence`` (default 1.0).

    Returns
    -------
    DataFrame
        Columns ``id, persona, direction, statement, label_confidence``; rows grouped
        by persona (in the order given), then direction (positive first), then raw
        row order. Shape ``(n_personas * 2 * n_per_direction, 5)``.

    Raises
    ------
    ValueError
        Unknown persona (with the closest valid names), or fewer statements than
        ``n_per_direction`` after filtering (with the number available).
    """
    if n_per_direction is not None:
        n_per_direction = check_int(n_per_direction, "n_per_direction", min_val=1)
    min_confidence = _check_confidence(min_confidence)
    seed = check_seed(seed)
    df = read_source(source)
    names = _resolve_personas(personas, sorted(df["persona"].unique()))

    parts = []
    for persona in names:
        rows = df[(df["persona"] == persona) & (df["label_confidence"] >= min_confidence)]
        # one generator per persona: stable under changes of the persona list
        rng = derive_rng(seed, persona)
        for direction in DIRECTIONS:
            pool = rows[rows["direction"] == direction]
            if n_per_direction is None:
                parts.append(pool)
                continue
            if len(pool) < n_per_direction:
                raise ValueError(
                    f"persona {persona!r} has only {len(pool)} {direction} statements with "
                    f"label_confidence >= {min_confidence} (n_per_direction={n_per_direction} requested); "
                    f"lower n_per_direction to at most {len(pool)} or lower min_confidence"
                )
            pick = np.sort(rng.choice(len(pool), size=int(n_per_direction), replace=False))
            parts.append(pool.iloc[pick])
    out = pd.concat(parts, ignore_index=True)
    if out.empty:
        raise ValueError(f"no statements left for {names} with label_confidence >= {min_confidence}")
    return out[STATEMENT_COLUMNS]


def _kind(x) -> str:
    return "None" if x is None else f"{type(x).__name__} {x!r}"[:80]


def statement_texts(statements) -> list[str]:
    """The texts of ``statements`` (a sequence of strings, or a statements table's ``statement`` column).

    Raises ``ValueError`` on None or anything else that is no sequence, on a single string, on a
    missing value (None or NaN would otherwise be embedded as the words "None" or "nan") and on an
    empty input.
    """
    if hasattr(statements, "columns"):  # a statements DataFrame
        if "statement" not in statements.columns:
            raise ValueError("the statements DataFrame needs a 'statement' column")
        statements = statements["statement"]
    if isinstance(statements, str):
        raise ValueError("statements must be a sequence of strings, not one string; wrap it in a list")
    if statements is None or not hasattr(statements, "__iter__"):
        raise ValueError(f"statements must be a sequence of strings or a statements DataFrame (a 'statement' column, "
                         f"as personas.statements.load_statements returns); got {_kind(statements)}")
    out = []
    for i, s in enumerate(statements):
        if not isinstance(s, str) and (s is None or (np.ndim(s) == 0 and bool(pd.isna(s)))):
            raise ValueError(f"statement {i} is {s!r}, not text; drop or fill the missing statements")
        out.append(str(s))
    if not out:
        raise ValueError("no statements given")
    return out
