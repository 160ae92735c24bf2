"""Build ``data/statements.parquet`` from the raw persona jsonl files of Perez et al. (2023).

Usage (from the repository root)::

    uv run python data/build_statements.py RAW_DIR [--out data/statements.parquet]

``RAW_DIR`` holds one ``<persona>.jsonl`` per behaviour (the ``persona/`` folder of
the ``evals`` repository of Anthropic, CC-BY-4.0). Each line has ``question``,
``statement``, ``label_confidence``, ``answer_matching_behavior`` and
``answer_not_matching_behavior``.

The output has one row per raw line, columns ``id, persona, direction, statement,
label_confidence``:

- ``id`` = ``"<persona>/<row index in the raw file, 4 digits>"`` (stable),
- ``direction`` = ``"positive"`` when ``answer_matching_behavior`` is ``" Yes"``
  (the statement matches the behaviour), else ``"negative"``.

``question`` is not stored: the builder checks that it is always
``'Is the following statement something you would say?\\n"<statement>"'``, so it can
be rebuilt exactly. The file is zstd-compressed Parquet, rows sorted by persona then
row index, so rebuilding from the same raw files gives the same table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

__all__ = ["QUESTION_TEMPLATE", "read_raw_persona", "build_table", "main"]

QUESTION_TEMPLATE = 'Is the following statement something you would say?\n"{statement}"'
_ANSWERS = {" Yes": "positive", " No": "negative"}


def read_raw_persona(path: str | Path) -> pd.DataFrame:
    """Read one raw ``<persona>.jsonl`` file into the tidy statement columns.

    Raises
    ------
    ValueError
        If a line is not valid JSON, lacks a field, has an unexpected answer or a
        question that does not follow ``QUESTION_TEMPLATE`` (naming file and line).
    """
    path = Path(path)
    persona = path.stem
    rows = []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            where = f"{path.name} line {i + 1}"
            try:
                rec = json.loads(line)
                statement = rec["statement"]
                answer = rec["answer_matching_behavior"]
                confidence = float(rec["label_confidence"])
                question = rec["question"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{where}: not a persona record ({exc!r})") from exc
            if answer not in _ANSWERS:
                raise ValueError(f"{where}: answer_matching_behavior {answer!r} is not ' Yes' or ' No'")
            if question != QUESTION_TEMPLATE.format(statement=statement):
                raise ValueError(f"{where}: question does not follow the template; the builder would lose it")
            rows.append((f"{persona}/{i:04d}", persona, _ANSWERS[answer], statement, confidence))
    if not rows:
        raise ValueError(f"{path} has no records")
    return pd.DataFrame(rows, columns=["id", "persona", "direction", "statement", "label_confidence"])


def build_table(raw_dir: str | Path) -> pd.DataFrame:
    """All behaviours of ``raw_dir`` in one tidy table (sorted by persona, then row)."""
    raw_dir = Path(raw_dir)
    files = sorted(raw_dir.glob("*.jsonl"))
    if not files:
        raise ValueError(f"no .jsonl files in {raw_dir}; pass the folder holding <persona>.jsonl files")
    table = pd.concat([read_raw_persona(f) for f in files], ignore_index=True)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw_dir", help="folder with the raw <persona>.jsonl files")
    parser.add_argument(
        "--out", default=str(Path(__file__).with_name("statements.parquet")), help="output Parquet file"
    )
    args = parser.parse_args(argv)

    # personas._core.io gives the atomic write; make the repository importable when run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from personas._core.io import atomic_path

    table = build_table(args.raw_dir)
    out = Path(args.out)
    with atomic_path(out) as tmp:
        table.to_parquet(tmp, index=False, compression="zstd", compression_level=19)
    n_personas = table["persona"].nunique()
    print(f"wrote {out}: {len(table)} statements, {n_personas} personas, {out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
