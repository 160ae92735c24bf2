"""What every plot shares: one palette, one way to name a figure file, one figure saver.

- ``persona_colors``: one colour per label (personas, directions, models), from the data.
- ``file_stem`` / ``figure_slug``: descriptive, file-system-safe figure names.
- ``finish_figure``: save a figure atomically as ``<out_dir>/<stem>.png`` (``personas._core.io.save_figure``)
  and return it.

Figures are built without pyplot (``matplotlib.figure.Figure``), so nothing accumulates in
pyplot's registry and a notebook shows a figure once, with ``display(fig)``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib import colors as mcolors
from matplotlib.figure import Figure

from personas._core.io import save_figure
from personas._core.names import file_stem as safe_file_stem

__all__ = ["persona_colors"]

# "+" and "-" statements keep the same two colours in every plot
_DIRECTION_COLORS = {"positive": "tab:blue", "negative": "tab:orange"}

RGBA = tuple[float, float, float, float]


def persona_colors(
    personas: Sequence[Any],
    colors: Mapping[Any, Any] | Sequence[Any] | str | None = None,
) -> dict[Any, RGBA]:
    """One RGBA colour per label (persona, direction or model), in the order given.

    Parameters
    ----------
    personas : sequence
        The labels, e.g. persona names.
    colors : dict, list, colormap name or None
        ``{label: colour}`` (must cover every label), a list of colours (in label order,
        at least as many), a matplotlib colormap name, or None: "positive"/"negative"
        keep their fixed colours; otherwise ``tab10`` up to 10 labels, ``tab20`` up to 20,
        evenly spaced ``turbo`` colours beyond (always distinct).

    Returns
    -------
    dict
        ``{label: (r, g, b, a)}``.
    """
    personas = list(personas)
    if colors is None:
        if personas and set(map(str, personas)) <= set(_DIRECTION_COLORS):
            return {p: mcolors.to_rgba(_DIRECTION_COLORS[str(p)]) for p in personas}
        if len(personas) <= 10:
            cmap, xs = colormaps["tab10"], np.arange(len(personas))
        elif len(personas) <= 20:
            cmap, xs = colormaps["tab20"], np.arange(len(personas))
        else:
            cmap, xs = colormaps["turbo"], np.linspace(0.05, 0.95, len(personas))
        return {p: tuple(float(v) for v in cmap(x)) for p, x in zip(personas, xs)}
    if isinstance(colors, str):
        cmap = colormaps[colors]
        n = getattr(cmap, "N", 256)
        if n <= 20:  # qualitative map: take its colours in order
            values = [cmap(i % n) for i in range(len(personas))]
        else:
            values = [cmap(x) for x in np.linspace(0, 1, max(len(personas), 2))][: len(personas)]
        return {p: tuple(float(c) for c in v) for p, v in zip(personas, values)}
    if isinstance(colors, Mapping):
        missing = [p for p in personas if p not in colors]
        if missing:
            raise ValueError(f"colors has no colour for personas {missing}; give one per persona")
        return {p: mcolors.to_rgba(colors[p]) for p in personas}
    colors = list(colors)
    if len(colors) < len(personas):
        raise ValueError(f"{len(colors)} colours given for {len(personas)} personas; give one per persona")
    return {p: mcolors.to_rgba(c) for p, c in zip(personas, colors)}


def figure_slug(*parts: Any) -> str:
    """Parts joined by "_" (empty and None parts skipped): a figure's name, made a file name by :func:`finish_figure`."""
    return "_".join(str(p) for p in parts if p is not None and str(p) != "") or "figure"


def file_stem(kind: str, personas: Iterable[str], name: str | None) -> str:
    """``name`` if given, else ``<kind>_<k>_personas_<names>`` (a long one is cut and hashed by :func:`finish_figure`)."""
    if name is not None:
        return str(name)
    personas = [str(p) for p in personas]
    return f"{kind}_{len(personas)}_personas_" + "_".join(personas)


def finish_figure(fig: Figure, out_dir: str | os.PathLike | None, stem: str) -> Figure:
    """Save ``fig`` as ``<out_dir>/<stem>.png`` when ``out_dir`` is given (the stem made safe); return it.

    ``personas._core.names.file_stem``, as the store and the run files: a safe name is kept, any other
    (or a long one) gets a hash of it, so two figures never share a file.
    """
    if out_dir is not None:
        save_figure(fig, Path(out_dir) / f"{safe_file_stem(stem, empty='figure')}.png")
    return fig


def _figure_png(fig: Figure):
    """The figure as PNG for IPython: the bytes ``save_figure`` kept when nothing changed since (shown
    at the size a fresh rendering at ``fig.dpi`` would have), else a fresh rendering."""
    saved = getattr(fig, "personas_png", None)
    if saved is not None and not fig.stale:
        data, dpi = saved
        width, height = struct.unpack(">II", data[16:24])  # the PNG header's IHDR chunk
        scale = fig.dpi / dpi
        return data, {"width": max(1, round(width * scale)), "height": max(1, round(height * scale))}
    from IPython.core.pylabtools import print_figure

    return print_figure(fig, "png", bbox_inches="tight")


def register_notebook_display() -> bool:
    """Let IPython show the pyplot-free figures as images (``display(fig)`` or a cell's last value).

    IPython renders a ``Figure`` as PNG only once the inline backend has been set up, which a
    figure built without pyplot never triggers: in JupyterLab it would show as
    ``<Figure size ...>``. Registering a PNG formatter for ``Figure`` fixes that. Called when
    ``personas.viz`` is imported; returns whether an IPython shell was found.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: nothing to register
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return False
    shell.display_formatter.formatters["image/png"].for_type(Figure, _figure_png)
    return True
