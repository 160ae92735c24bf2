"""Token heatmaps of a text's scores on a direction: HTML for notebooks, a matplotlib figure for reports.

Both take the per-token table of ``personas.model.projection.project_texts(...,
aggregate="tokens")`` and colour each token by its score (or a percentile column) on a
diverging colour map (0, or a percentile of 50, in the middle by default). A token is shown by the text it adds to the prompt
(the ``piece`` column: byte-level tokens such as ``Ġ`` or ``Ċ`` appear as the space or line
break they stand for); :func:`readable_token` does the same for a bare vocabulary string.
"""

from __future__ import annotations

import html
import math
import os
from functools import lru_cache
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib import colors as mcolors
from matplotlib.figure import Figure

from personas.viz.style import finish_figure

__all__ = ["TokenHTML", "readable_token", "token_heatmap_html", "plot_token_scores"]

_NEEDED = ("text", "token", "score")
_VALUES = ("score", "percentile_positive", "percentile_negative")


class TokenHTML(str):
    """An HTML string that Jupyter renders (``_repr_html_``); a plain ``str`` everywhere else."""

    def _repr_html_(self) -> str:
        return str(self)


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: printable stand-ins (``Ġ`` = space, ``Ċ`` = newline) back to bytes."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def readable_token(token: str) -> str:
    """A byte-level BPE vocabulary string as the text it encodes (``"Ġhello"`` -> ``" hello"``).

    Strings with characters outside the byte-level alphabet (SentencePiece ``▁``, special tokens)
    are returned as they are, with ``▁`` shown as a space; bytes that do not complete a
    character become ``�``.
    """
    table = _byte_decoder()
    if token and all(c in table for c in token):
        return bytes(table[c] for c in token).decode("utf-8", errors="replace")
    return token.replace("\u2581", " ")


def _check(tokens: pd.DataFrame, value: str) -> None:
    if not isinstance(tokens, pd.DataFrame) or not set(_NEEDED) <= set(tokens.columns):
        raise ValueError("tokens must be the table of project_texts(..., aggregate='tokens') "
                         f"(columns {list(_NEEDED)}, 'piece', ...)")
    if value not in _VALUES or value not in tokens.columns:
        raise ValueError(f"value must be one of the table's columns {[v for v in _VALUES if v in tokens.columns]}; "
                         f"got {value!r}")
    if tokens.empty:
        raise ValueError("the token table is empty")


def _pieces(rows: pd.DataFrame) -> list[str]:
    if "piece" in rows:
        return rows["piece"].astype(str).tolist()
    return [readable_token(str(t)) for t in rows.get("token_str", rows["token"].astype(str))]


def _norm(values: np.ndarray, value: str, limits) -> mcolors.Normalize:
    """The colour scale: ``limits`` as given, else symmetric about 0 (scores) or 0..100 (percentiles).

    ``values`` are those that set the default scale (``_scaled``: each prompt's first token left out).
    """
    if limits is not None:
        try:
            low, high = (float(x) for x in limits)
        except (TypeError, ValueError):
            raise ValueError(f"limits must be (low, high); got {limits!r}") from None
        if not low < high:
            raise ValueError(f"limits must be (low, high) with low < high; got {limits!r}")
        return mcolors.Normalize(vmin=low, vmax=high)
    if value.startswith("percentile"):
        return mcolors.Normalize(vmin=0.0, vmax=100.0)
    spread = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0
    spread = spread if spread > 0 else 1.0
    return mcolors.Normalize(vmin=-spread, vmax=spread)


def _scaled(rows: pd.DataFrame, value: str) -> np.ndarray:
    """The values that set the default colour scale: every token but each prompt's first (token 0).

    The first position of a decoder's input is its attention sink, whose hidden state is often
    orders of magnitude larger than the others; it would wash out every other colour (it
    saturates instead). When nothing else is shown it sets the scale.
    """
    first = rows["token"].to_numpy() == 0
    keep = rows[~first] if (~first).any() else rows
    return keep[value].to_numpy(dtype=float)


def _select(tokens: pd.DataFrame, texts, span_only: bool) -> pd.DataFrame:
    available = list(dict.fromkeys(tokens["text"]))
    chosen = available if texts is None else ([texts] if isinstance(texts, (int, np.integer)) else list(texts))
    missing = [t for t in chosen if t not in available]
    if missing:
        raise ValueError(f"texts {missing} are not in the table (it has {available})")
    rows = tokens[tokens["text"].isin(chosen)]
    if span_only:
        if "in_span" not in rows:
            raise ValueError("span_only needs the table's in_span column (aggregate='tokens')")
        rows = rows[rows["in_span"].astype(bool)]
    return rows


def _span_html(piece: str, tip: str, rgba) -> str:
    light = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] > 0.55
    shown = html.escape(piece).replace("\n", "\u21b5<br>")
    return (f'<span title="{html.escape(tip, quote=True)}" style="background:{mcolors.to_hex(rgba)};'
            f'color:{"#000" if light else "#fff"};border-radius:2px">{shown}</span>')


def token_heatmap_html(
    tokens: pd.DataFrame,
    *,
    texts: int | Sequence[int] | None = None,
    value: str = "score",
    span_only: bool = False,
    limits: tuple[float, float] | None = None,
    cmap: str = "RdBu_r",
    title: str | None = None,
) -> TokenHTML:
    """Tokens coloured by their score, as HTML (Jupyter renders it; it is a ``str`` too).

    Parameters
    ----------
    tokens : DataFrame
        ``project_texts(..., aggregate="tokens")``.
    texts : int or list of int, optional
        Which texts (the ``text`` column), one line each; default all.
    value : {"score", "percentile_positive", "percentile_negative"}
    span_only : bool
        Only the tokens of the span (the text itself, or the last message), no template tokens.
    limits : (float, float), optional
        The values at the two ends of the colour map (values beyond saturate); default:
        ``-m .. m`` with ``m`` the largest absolute score of the tokens after each prompt's first (the
        attention sink's outsized value would wash out the rest), ``0 .. 100`` for percentiles.
    cmap : str
        A diverging matplotlib colour map.
    title : str, optional

    Returns
    -------
    TokenHTML
        Every token's text is HTML-escaped; its tooltip shows the vocabulary string, the value
        and the token index.
    """
    _check(tokens, value)
    rows = _select(tokens, texts, span_only)
    norm = _norm(_scaled(rows, value), value, limits)
    colormap = colormaps[cmap]
    lines = []
    for text, group in rows.groupby("text", sort=False):
        raw = group["token_str"].astype(str) if "token_str" in group else group["token"].astype(str)
        spans = [
            _span_html(piece, f"token {tok} {readable_token(r)!r}: {value} {v:.4g}",
                       colormap(norm(v)) if np.isfinite(v) else (0.9, 0.9, 0.9, 1.0))
            for piece, tok, r, v in zip(_pieces(group), group["token"], raw, group[value].to_numpy(dtype=float))
        ]
        lines.append(f'<div style="margin:4px 0"><b>text {html.escape(str(text))}</b>: {"".join(spans)}</div>')
    head = f"<h4>{html.escape(title)}</h4>" if title else ""
    layer = tokens.attrs.get("layer")
    where = f" at layer {layer}" if layer is not None else ""
    legend = (f'<div style="font-size:smaller">{html.escape(value)}{where}: {norm.vmin:.4g} (blue) to '
              f"{norm.vmax:.4g} (red), {html.escape(cmap)}</div>")
    return TokenHTML(f'<div style="font-family:monospace;white-space:pre-wrap;line-height:1.7">{head}{legend}'
                     + "".join(lines) + "</div>")


def _label(piece: str, width: int) -> str:
    label = piece.replace("\n", "\u21b5").replace("\t", "\u2192")
    label = label.strip() or ("\u2423" if label else "")
    return label if len(label) <= width else label[: width - 1] + "\u2026"


def plot_token_scores(
    tokens: pd.DataFrame,
    *,
    text: int = 0,
    value: str = "score",
    span_only: bool = False,
    per_row: int = 12,
    limits: tuple[float, float] | None = None,
    cmap: str = "RdBu_r",
    title: str | None = None,
    out_dir: str | os.PathLike | None = None,
    name: str = "token_scores",
) -> Figure:
    """One text's tokens as a grid of coloured cells, in reading order, ``per_row`` to a row.

    Parameters
    ----------
    tokens : DataFrame
        ``project_texts(..., aggregate="tokens")``.
    text : int
        Which text (the ``text`` column).
    value, span_only, limits, cmap :
        As for :func:`token_heatmap_html`.
    per_row : int
        Tokens per row of the grid.
    title : str, optional
    out_dir : path, optional
        Save ``<name>.png`` there.
    name : str
    """
    _check(tokens, value)
    if not isinstance(per_row, (int, np.integer)) or isinstance(per_row, bool) or per_row < 1:
        raise ValueError(f"per_row must be a positive int; got {per_row!r}")
    rows = _select(tokens, [text], span_only)
    if rows.empty:
        raise ValueError(f"text {text} has no tokens to show (span_only={span_only})")
    values = rows[value].to_numpy(dtype=float)
    n_rows = math.ceil(len(values) / per_row)
    grid = np.full(n_rows * per_row, np.nan)
    grid[: len(values)] = values
    grid = grid.reshape(n_rows, per_row)
    norm = _norm(_scaled(rows, value), value, limits)
    colormap = colormaps[cmap].with_extremes(bad="white")
    fig = Figure(figsize=(0.85 * per_row + 1.6, 0.42 * n_rows + 1.3), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=colormap, norm=norm, aspect="auto")
    for k, piece in enumerate(_pieces(rows)):
        rgba = colormap(norm(values[k])) if np.isfinite(values[k]) else (1, 1, 1, 1)
        dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.55
        ax.text(k % per_row, k // per_row, _label(piece, 9), ha="center", va="center", fontsize=7,
                color="white" if dark else "black")
    layer = tokens.attrs.get("layer")
    fig.colorbar(image, ax=ax, label=value + (f" at layer {layer}" if layer is not None else ""))
    ax.set_xlabel("token (column within the row)")
    ax.set_ylabel("row")
    ax.set_xticks(range(per_row))
    ax.set_yticks(range(n_rows))
    ax.set_title(title or f"Text {text}: {value} of each token" + ("" if layer is None else f", layer {layer}"))
    return finish_figure(fig, out_dir, name)
