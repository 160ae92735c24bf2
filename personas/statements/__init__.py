"""Persona statements: the bundled Perez et al. (2023) data, the paper's personas, a researcher's own files.

- ``bundled``: the bundled table, the paper's topics, ``load_statements`` (the balanced, seeded draw).
- ``user``: a user's statements and topics files mixed with the bundled ones, checked up front
  (``study_inputs``).
"""

from personas.statements.bundled import (
    DATA_DIR,
    DIRECTIONS,
    STATEMENT_COLUMNS,
    list_personas,
    load_short_names,
    load_statements,
    load_topics,
    paper_personas,
    persona_counts,
    statement_texts,
)
from personas.statements.user import PREFER, StudyInputs, input_files, mixed_statements, study_inputs

__all__ = [
    "statement_texts", "DATA_DIR", "STATEMENT_COLUMNS", "DIRECTIONS", "load_topics", "load_short_names",
    "paper_personas", "list_personas", "persona_counts", "load_statements",
    "PREFER", "StudyInputs", "input_files", "mixed_statements", "study_inputs",
]
