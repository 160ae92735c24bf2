"""Markdown building blocks of the report: tables, ``mean ± std`` cells, figure links."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["markdown_table", "mean_std", "figure_links", "missing"]


def _cell(v, digits: int) -> str:
    if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.{digits}f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a GitHub-flavoured markdown table (floats rounded to ``digits``)."""
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(_cell(v, digits) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def mean_std(mean, std, digits: int = 3) -> str:
    """``"0.123 ± 0.004"`` (empty when the mean is missing; the mean alone when the std is)."""
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return ""
    text = _cell(float(mean), digits)
    if std is None or (isinstance(std, float) and np.isnan(std)):
        return text
    return f"{text} ± {_cell(float(std), digits)}"


def figure_links(out: Path, pattern: str, caption: str, limit: int = 6) -> str:
    """Markdown images of the study's figures matching ``pattern`` (relative links), or ``""``."""
    files = sorted((out / "figures").glob(pattern))[:limit]
    return "\n".join(f"![{caption}: {f.stem}](figures/{f.name})" for f in files)


def missing(what: str) -> str:
    if "unreadable" in what:
        return f"_Not available: {what}._"
    return f"_Not available: {what} was not found (did the notebook that writes it run?)._"


def fmt(x, spec: str = ".3g") -> str:
    """A number for the report's prose: ``format(x, spec)``, or "n/a" for None, NaN and infinities."""
    return "n/a" if x is None or not np.isfinite(x) else format(x, spec)
