"""Plots of salient nodes: UpSet, Venn, overlap heatmaps and node frequencies.

Everything is driven by the dictionaries and tables it is given (``{persona:
set of nodes}``, :func:`personas.nodes.pairwise_overlaps`,
:func:`personas.nodes.node_frequencies`); no persona name is written here. Every
function returns its Figure and, given ``out_dir``, saves it there atomically as
PNG under a descriptive file name.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from personas._core.checks import check_choice, check_int
from personas.nodes import exclusive_intersections
from personas.nodes.overlaps import check_sets
from personas.viz.style import file_stem, finish_figure, persona_colors

__all__ = [
    "plot_upset",
    "plot_venn",
    "plot_overlap_heatmap",
    "plot_node_frequency",
]

_HEATMAP_VALUES = {
    "jaccard": "Jaccard index",
    "overlap_coefficient": "Overlap coefficient (intersection / smaller set)",
    "intersection": "Shared nodes",
    "ratio": "Observed / expected shared nodes",
    "neg_log10_p": "-log10 adjusted p-value (overlap > chance)",
}


# ------------------------------------------------------------------------- helpers


# ---------------------------------------------------------------------------- UpSet


def _upset_class():
    import upsetplot

    class _UpSet(upsetplot.UpSet):
        """upsetplot's UpSet, with the dot matrix drawn from plain lists.

        upsetplot 0.9 fills its matrix styles with chained in-place pandas calls,
        which do nothing under pandas' copy-on-write (pandas >= 3) and leave NaN
        colours; this draws the same matrix without them (horizontal layout).
        """

        def plot_matrix(self, ax):
            data = self.intersections
            n_cats = data.index.nlevels
            inclusion = data.index.to_frame().to_numpy(dtype=bool)  # (n_subsets, n_cats)
            n_sub = len(data)
            faces, edges, widths = [], [], []
            for i in range(n_sub):
                style = self.subset_styles[i]
                face = style.get("facecolor", self._facecolor)
                edge = style.get("edgecolor", face)
                for j in range(n_cats):
                    if inclusion[i, j]:
                        faces.append(face)
                        edges.append(edge)
                        widths.append(style.get("linewidth", 1.0))
                    else:
                        faces.append(self._other_dots_color)
                        edges.append(self._other_dots_color)
                        widths.append(0.0)
            x = np.repeat(np.arange(n_sub), n_cats)
            y = np.tile(np.arange(n_cats), n_sub)
            size = (self._element_size * 0.35) ** 2 if self._element_size is not None else 200
            ax.scatter(x, y, s=size, zorder=10, facecolors=faces, edgecolors=edges, linewidths=widths)
            if self._with_lines:
                for i in range(n_sub):
                    rows = np.flatnonzero(inclusion[i])
                    if rows.size > 1:
                        style = self.subset_styles[i]
                        color = style.get("edgecolor", style.get("facecolor", self._facecolor))
                        ax.vlines(i, rows.min(), rows.max(), lw=2, colors=[color], zorder=5)
            ax.yaxis.set_ticks(np.arange(n_cats))
            ax.yaxis.set_ticklabels(data.index.names)
            ax.xaxis.set_visible(False)
            ax.tick_params(axis="both", which="both", length=0)
            ax.set_frame_on(False)
            ax.set_xlim(-0.5, n_sub - 0.5, auto=False)
            ax.grid(False)

        def _label_sizes(self, ax, rects, where):
            # upsetplot 0.9 passes 1-element arrays as text positions, which
            # matplotlib >= 3.10 rejects; label bars with scalar positions instead
            if not self._show_counts:
                return
            fmt = self._show_counts if isinstance(self._show_counts, str) else "{:d}"
            if where == "top":
                margin = 0.01 * float(abs(ax.get_ylim()[1] - ax.get_ylim()[0]))
                for rect in rects:
                    height = rect.get_height() + rect.get_y()
                    ax.text(rect.get_x() + rect.get_width() * 0.5, height + margin,
                            fmt.format(int(round(height))), ha="center", va="bottom", fontsize=8)
            else:  # totals bars, drawn right to left in the horizontal layout
                margin = 0.01 * float(abs(ax.get_xlim()[1] - ax.get_xlim()[0]))
                for rect in rects:
                    width = rect.get_width() + rect.get_x()
                    ax.text(width + margin, rect.get_y() + rect.get_height() * 0.5,
                            fmt.format(int(round(width))), ha="right" if where == "left" else "left",
                            va="center", fontsize=8)

    return _UpSet


def plot_upset(
    sets: Mapping[str, Iterable[int]],
    *,
    colors: Mapping[str, Any] | Sequence[Any] | str | None = None,
    title: str | None = None,
    out_dir: str | os.PathLike | None = None,
    name: str | None = None,
    show_counts: bool = True,
    legend: bool = False,
    upset_options: Mapping[str, Any] | None = None,
) -> Figure:
    """UpSet plot of persona node sets; each persona's exclusive bar in its colour.

    Bars are the exclusive intersections of :func:`personas.nodes.exclusive_intersections`
    (each node counted once, in the bar of exactly the personas holding it); the
    bars (and matrix dots) of nodes unique to one persona take that persona's
    colour, as do its set-size bars.

    Parameters
    ----------
    sets : dict
        ``{persona: nodes}``, at least 2; categories are drawn in the order given.
    colors : see :func:`persona_colors`
    title : str, optional
    out_dir : path, optional
        Save ``<name>.png`` there (default name ``upset_<k>_personas_<names>``).
    name : str, optional
        File stem.
    show_counts : bool
        Write the size above each bar.
    legend : bool
        Add a legend naming each coloured exclusive bar.
    upset_options : dict, optional
        Layout options of ``upsetplot.UpSet``, over the defaults ``sort_by="cardinality"`` (order
        of the intersections), ``element_size=32`` (side of one matrix cell in points; the figure
        is sized to fit); e.g. ``min_subset_size`` or ``max_subset_rank`` to hide small ones.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sets = check_sets(sets, min_sets=2)
    names = list(sets)
    palette = persona_colors(names, colors)
    table = exclusive_intersections(sets)
    if table.empty:
        raise ValueError("every node set is empty: there is nothing to draw in an UpSet plot")
    index = pd.MultiIndex.from_frame(table[names])
    data = pd.Series(table["size"].to_numpy(), index=index, name="size")
    options = {"sort_by": "cardinality", "element_size": 32, **(upset_options or {})}
    up_set = _upset_class()(data, sort_categories_by="input", show_counts="{:d}" if show_counts else "", **options)
    for persona in names:
        up_set.style_subsets(
            present=persona,
            max_degree=1,
            facecolor=palette[persona],
            label=f"only {persona}" if legend else None,
        )
        up_set.style_categories(persona, bar_facecolor=palette[persona])
    fig = Figure()  # upsetplot resizes it to fit element_size
    with warnings.catch_warnings():
        # upsetplot 0.9 still uses pandas idioms deprecated in pandas 3
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        axes = up_set.plot(fig=fig)
    axes["intersections"].set_ylabel("Nodes in exactly\nthese personas")
    if axes.get("totals") is not None:
        axes["totals"].set_xlabel("Salient nodes")
    fig.suptitle(title or f"Salient nodes shared between {len(names)} personas (UpSet)")
    return finish_figure(fig, out_dir, file_stem("upset", names, name))


# ----------------------------------------------------------------------------- Venn


def plot_venn(
    sets: Mapping[str, Iterable[int]],
    *,
    colors: Mapping[str, Any] | Sequence[Any] | str | None = None,
    title: str | None = None,
    out_dir: str | os.PathLike | None = None,
    name: str | None = None,
    fmt: str = "{size}",
    opacity: float = 0.4,
    fontsize: int = 11,
    legend_loc: str | None = "upper right",
    figsize: tuple[float, float] = (8.0, 8.0),
) -> Figure:
    """Venn diagram of 2 to 6 persona node sets (the ``venn`` package).

    Parameters
    ----------
    sets : dict
        ``{persona: nodes}`` with 2 to 6 personas (6 are drawn as triangles).
    colors : see :func:`persona_colors`
    fmt : str
        Region label, ``"{size}"``, ``"{percentage:.1f}%"`` (of the union) or
        ``"{logic}"``.
    opacity : float
        Fill opacity (matplotlib's ``alpha``).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        For fewer than 2 or more than 6 sets (use :func:`plot_upset`).
    """
    from venn import venn

    if not isinstance(sets, Mapping) or not 2 <= len(sets) <= 6:
        n = len(sets) if isinstance(sets, Mapping) else "?"
        raise ValueError(f"a Venn diagram shows 2 to 6 sets, got {n}; use plot_upset for more")
    sets = check_sets(sets, min_sets=2)
    if not any(sets.values()):
        raise ValueError("every node set is empty: there is nothing to draw in a Venn diagram")
    names = list(sets)
    palette = persona_colors(names, colors)
    fig = Figure(figsize=figsize)
    ax = fig.subplots()
    venn(
        {p: set(s) for p, s in sets.items()},
        fmt=fmt,
        cmap=[palette[p] for p in names],
        alpha=opacity,
        fontsize=fontsize,
        legend_loc=legend_loc,
        ax=ax,
    )
    ax.set_title(title or f"Salient nodes shared between {len(names)} personas (Venn)")
    return finish_figure(fig, out_dir, file_stem("venn", names, name))


# -------------------------------------------------------------------------- heatmap


def _pair_order(pairwise: pd.DataFrame, personas: Sequence[str] | None) -> list[str]:
    if personas is not None:
        return [str(p) for p in personas]
    order: list[str] = []
    for a, b in zip(pairwise["persona_a"], pairwise["persona_b"]):
        for p in (a, b):
            if p not in order:
                order.append(p)
    return order


def plot_overlap_heatmap(
    pairwise: pd.DataFrame,
    *,
    value: str = "jaccard",
    personas: Sequence[str] | None = None,
    title: str | None = None,
    out_dir: str | os.PathLike | None = None,
    name: str | None = None,
    annotate: bool = True,
    significance: float = 0.05,
    cmap: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Heatmap of pairwise overlaps between personas.

    Parameters
    ----------
    pairwise : pandas.DataFrame
        :func:`personas.nodes.pairwise_overlaps` output (``persona_a``,
        ``persona_b`` and the value columns).
    value : {"jaccard", "overlap_coefficient", "intersection", "ratio", "neg_log10_p"}
        What to colour; ``neg_log10_p`` is ``-log10`` of ``p_adjusted`` (capped
        at the smallest positive float when the p-value underflows to 0).
    personas : sequence of str, optional
        Row/column order (default: order of appearance).
    annotate : bool
        Write each value in its cell; a ``*`` marks ``p_adjusted < significance``.
    significance : float
        Significance level of the ``*`` marks.

    Returns
    -------
    matplotlib.figure.Figure
        The matrix is symmetric with an empty diagonal.
    """
    check_choice(value, "value", _HEATMAP_VALUES)
    needed = {"persona_a", "persona_b"} | ({"p_adjusted"} if value == "neg_log10_p" else {value})
    missing = needed - set(pairwise.columns)
    if missing:
        raise ValueError(f"pairwise table lacks columns {sorted(missing)}; pass pairwise_overlaps(...) output")
    if pairwise.empty:
        raise ValueError("pairwise table is empty: need at least 2 personas")
    names = _pair_order(pairwise, personas)
    matrix, significant = _pair_matrix(pairwise, value, names, significance)
    k = len(names)
    if figsize is None:
        side = max(4.5, 0.6 * k + 3.0)
        figsize = (side + 1.0, side)
    fig = Figure(figsize=figsize)
    ax = fig.subplots()
    bounded = value in ("jaccard", "overlap_coefficient")
    image = ax.imshow(
        np.ma.masked_invalid(matrix),
        cmap=cmap or ("magma_r" if value == "neg_log10_p" else "viridis"),
        vmin=0.0,
        vmax=1.0 if bounded else None,
    )
    bar = fig.colorbar(image, ax=ax)
    bar.set_label(_HEATMAP_VALUES[value])
    ax.set_xticks(np.arange(k))
    ax.set_yticks(np.arange(k))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    ax.set_xlabel("Persona")
    ax.set_ylabel("Persona")
    if annotate:
        _annotate_cells(ax, image, matrix, significant, integers=value == "intersection")
    star = f"; * adjusted p < {significance:g}" if annotate and "p_adjusted" in pairwise.columns else ""
    ax.set_title(title or f"Overlap of salient nodes between personas\n({_HEATMAP_VALUES[value]}{star})")
    return finish_figure(fig, out_dir, file_stem(f"overlap_{value}", names, name))


def _pair_matrix(pairwise: pd.DataFrame, value: str, names: list[str], significance: float):
    """The symmetric (k, k) matrix of ``value`` (NaN diagonal) and where ``p_adjusted < significance``."""
    pos = {p: i for i, p in enumerate(names)}
    unknown = sorted({*pairwise["persona_a"], *pairwise["persona_b"]} - set(pos))
    if unknown:
        raise ValueError(f"personas {unknown} are in the table but not in the personas argument")
    k = len(names)
    matrix = np.full((k, k), np.nan)
    significant = np.zeros((k, k), dtype=bool)
    if value == "neg_log10_p":
        p = pairwise["p_adjusted"].to_numpy(dtype=float)
        values = -np.log10(np.clip(p, np.finfo(float).tiny, 1.0))
    else:
        values = pairwise[value].to_numpy(dtype=float)
    has_p = "p_adjusted" in pairwise.columns
    for row, v in zip(pairwise.itertuples(index=False), values):
        i, j = pos[row.persona_a], pos[row.persona_b]
        matrix[i, j] = matrix[j, i] = v
        if has_p:
            significant[i, j] = significant[j, i] = row.p_adjusted < significance
    return matrix, significant


def _annotate_cells(ax, image, matrix: np.ndarray, significant: np.ndarray, *, integers: bool) -> None:
    """Each off-diagonal value in its cell (``*`` when significant), in a colour readable on the cell."""
    k = len(matrix)
    for i in range(k):
        for j in range(k):
            if i == j or not np.isfinite(matrix[i, j]):
                continue
            v = matrix[i, j]
            text = f"{int(round(v))}" if integers else f"{v:.2g}" if abs(v) >= 100 else f"{v:.2f}"
            if significant[i, j]:
                text += "*"
            r, g, b, _ = image.cmap(image.norm(v))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")


# ----------------------------------------------------------------- node frequency


def plot_node_frequency(
    freq: pd.DataFrame | Mapping[str, pd.DataFrame],
    *,
    colors: Mapping[str, Any] | Sequence[Any] | str | None = None,
    title: str | None = None,
    out_dir: str | os.PathLike | None = None,
    name: str | None = None,
    bins: int = 20,
    include_never: bool = False,
    min_fraction: float | None = None,
    log: bool = False,
    ncols: int = 3,
) -> Figure:
    """Histogram of how often each node was chosen over runs, one panel per persona.

    Parameters
    ----------
    freq : pandas.DataFrame or dict
        :func:`personas.nodes.node_frequencies` output (long, with ``persona``),
        a single :func:`personas.nodes.node_frequency` table, or
        ``{persona: node_frequency table}``.
    bins : int
        Equal-width bins over [0, 1].
    include_never : bool
        Count nodes never chosen (frequency 0); by default they are left out and
        their number is given in the panel title.
    min_fraction : float, optional
        Draw the salient-set threshold as a dashed line.
    log : bool
        Log-scale counts.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(freq, Mapping):
        tables = {str(p): t for p, t in freq.items()}
    elif isinstance(freq, pd.DataFrame):
        if "persona" in freq.columns:
            tables = {str(p): t for p, t in freq.groupby("persona", sort=False)}
        else:
            tables = {"runs": freq}
    else:
        raise TypeError(f"freq must be a DataFrame or dict of DataFrames, got {type(freq).__name__}")
    if not tables:
        raise ValueError("no node frequencies to plot")
    for p, t in tables.items():
        if "frequency" not in t.columns:
            raise ValueError(f"node frequency table of {p!r} has no 'frequency' column; pass node_frequency output")
    bins = check_int(bins, "bins", min_val=1)
    names = list(tables)
    palette = persona_colors(names, colors)
    ncols = max(1, min(ncols, len(names)))
    nrows = int(np.ceil(len(names) / ncols))
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows))
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for ax, persona in zip(axes.ravel(), names):
        values = tables[persona]["frequency"].to_numpy(dtype=float)
        never = int(np.count_nonzero(values == 0))
        shown = values if include_never else values[values > 0]
        ax.hist(shown, bins=edges, color=palette[persona], edgecolor="white", log=log)
        if min_fraction is not None:
            ax.axvline(min_fraction, color="black", linestyle="--", linewidth=1)
        subtitle = persona if include_never else f"{persona}\n({never} of {values.size} nodes never chosen)"
        ax.set_title(subtitle, fontsize=10)
        ax.set_xlabel("Fraction of runs choosing the node")
        ax.set_ylabel("Nodes")
    for ax in axes.ravel()[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(title or "How often each node is chosen over runs")
    fig.tight_layout()
    return finish_figure(fig, out_dir, file_stem("node_frequency", names, name))
