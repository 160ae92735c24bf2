"""Tests of personas.viz_nodes: plots render what the tables say and write PNG files."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from personas import nodes as N  # noqa: E402
from personas._core.names import file_stem  # noqa: E402
from personas import viz as V  # noqa: E402

N_NODES = 60


def random_sets(k: int, seed: int = 0) -> dict[str, set[int]]:
    # persona names with spaces and slashes: file names must be sanitised
    rng = np.random.default_rng(seed)
    return {f"persona {i}/x": set(rng.choice(N_NODES, 15 + 3 * i, replace=False).tolist()) for i in range(k)}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def assert_only_files(out_dir, expected_names):
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == sorted(expected_names)  # nothing half-written or temporary left


@pytest.mark.parametrize("k", [2, 4, 5, 6])
def test_upset_and_venn_write_files(tmp_path, k):
    sets = random_sets(k)
    fig = V.plot_upset(sets, out_dir=tmp_path)
    assert fig.get_suptitle() == f"Salient nodes shared between {k} personas (UpSet)"
    fig = V.plot_venn(sets, out_dir=tmp_path)
    assert fig.axes[0].get_title() == f"Salient nodes shared between {k} personas (Venn)"
    assert V.plot_venn(sets, title="mine").axes[0].get_title() == "mine"
    stem = f"{k}_personas_" + "_".join(f"persona {i}/x" for i in range(k))
    assert_only_files(tmp_path, [f"{file_stem('upset_' + stem)}.png", f"{file_stem('venn_' + stem)}.png"])
    assert file_stem("upset_" + stem).startswith(f"upset_{k}_personas_persona-0-x_persona-1-x")
    for path in tmp_path.iterdir():
        assert_png(path)


def _intersection_axis(fig):
    return next(ax for ax in fig.axes if ax.get_ylabel().startswith("Nodes in exactly"))


def test_upset_bars_are_exclusive_intersections_and_coloured():
    sets = random_sets(4, seed=1)
    palette = {p: c for p, c in zip(sets, ["red", "green", "blue", "orange"])}
    fig = V.plot_upset(sets, colors=palette)
    table = N.exclusive_intersections(sets)
    ax = _intersection_axis(fig)
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert sorted(round(b.get_height()) for b in bars) == sorted(table["size"].tolist())
    for persona, colour in palette.items():
        only = table[table[persona] & (table["degree"] == 1)]["size"]
        coloured = [b for b in bars if np.allclose(b.get_facecolor(), mcolors.to_rgba(colour))]
        assert [round(b.get_height()) for b in coloured] == only.tolist()
    # every other bar keeps the default colour
    n_coloured = sum(
        any(np.allclose(b.get_facecolor(), mcolors.to_rgba(c)) for c in palette.values()) for b in bars
    )
    assert n_coloured == int((table["degree"] == 1).sum())


def test_upset_rejects_too_few_or_empty():
    with pytest.raises(ValueError, match="at least 2"):
        V.plot_upset({"a": {1}})
    with pytest.raises(ValueError, match="empty"):
        V.plot_upset({"a": set(), "b": set()})


def test_venn_region_labels():
    sets = {"first": {1, 2, 3, 4}, "second": {3, 4, 5}}
    fig = V.plot_venn(sets)
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == sorted(["2", "1", "2"])  # only first, only second, both


@pytest.mark.parametrize("k", [1, 7])
def test_venn_rejects_wrong_number_of_sets(k):
    with pytest.raises(ValueError, match="2 to 6"):
        V.plot_venn(random_sets(k))


def test_heatmap_shows_the_pairwise_values(tmp_path):
    sets = random_sets(4, seed=2)
    pairwise = N.pairwise_overlaps(sets, N_NODES)
    fig = V.plot_overlap_heatmap(pairwise, value="jaccard", out_dir=tmp_path)
    ax = fig.axes[0]
    shown = ax.images[0].get_array()
    names = list(sets)
    for row in pairwise.itertuples(index=False):
        i, j = names.index(row.persona_a), names.index(row.persona_b)
        assert shown[i, j] == pytest.approx(row.jaccard) and shown[j, i] == pytest.approx(row.jaccard)
    assert all(np.ma.is_masked(shown[i, i]) for i in range(4))
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert fig.axes[1].get_ylabel() == "Jaccard index"
    assert_png(tmp_path / (file_stem("overlap_jaccard_4_personas_" + "_".join(f"persona {i}/x" for i in range(4)))
                           + ".png"))


def test_heatmap_neg_log10_p_and_significance_marks():
    sets = {"a": set(range(20)), "b": set(range(20)), "c": set(range(40, 60))}
    pairwise = N.pairwise_overlaps(sets, 100)
    fig = V.plot_overlap_heatmap(pairwise, value="neg_log10_p", significance=0.05)
    shown = fig.axes[0].images[0].get_array()
    expected = -np.log10(pairwise["p_adjusted"].to_numpy())
    assert shown[0, 1] == pytest.approx(expected[0])
    assert shown[0, 2] == pytest.approx(0.0, abs=1e-12)  # disjoint sets: p = 1
    starred = [t.get_text() for t in fig.axes[0].texts if t.get_text().endswith("*")]
    assert len(starred) == 2  # only the a-b cell, drawn on both sides


def test_heatmap_caps_zero_p_values():
    pairwise = pd.DataFrame({"persona_a": ["a"], "persona_b": ["b"], "p_adjusted": [0.0]})
    fig = V.plot_overlap_heatmap(pairwise, value="neg_log10_p")
    assert np.isfinite(fig.axes[0].images[0].get_array()[0, 1])


def test_heatmap_bad_value():
    pairwise = N.pairwise_overlaps(random_sets(2), N_NODES)
    with pytest.raises(ValueError, match="value must be one of"):
        V.plot_overlap_heatmap(pairwise, value="dice")


def test_node_frequency_histograms(tmp_path):
    runs = {
        "one": pd.DataFrame({"nodes": [[0, 1, 2], [1, 2], [2, 5]]}),
        "two/b": pd.DataFrame({"nodes": [[3], [3, 4]]}),
    }
    freq = pd.concat(
        [N.node_frequency(r, n_nodes=8).assign(persona=p) for p, r in runs.items()], ignore_index=True
    )
    fig = V.plot_node_frequency(freq, bins=10, out_dir=tmp_path, min_fraction=0.5)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    heights = [sum(p.get_height() for p in ax.patches) for ax in axes]
    assert heights == [4, 2]  # nodes chosen at least once
    assert "4 of 8 nodes never chosen" in axes[0].get_title()
    assert axes[0].get_xlabel() and axes[0].get_ylabel() == "Nodes"
    assert_png(tmp_path / f"{file_stem('node_frequency_2_personas_one_two/b')}.png")
    fig = V.plot_node_frequency({"one": freq[freq.persona == "one"]}, include_never=True, bins=4)
    assert sum(p.get_height() for p in fig.axes[0].patches) == 8


def test_long_persona_lists_get_short_file_names(tmp_path):
    sets = {f"a-very-long-persona-name-number-{i}": {i, i + 1} for i in range(6)}
    V.plot_upset(sets, out_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    assert len(path.name) < 130 and path.name.startswith("upset_6_personas_")
    V.plot_upset(sets, out_dir=tmp_path, name="my upset")
    assert (tmp_path / f"{file_stem('my upset')}.png").exists()  # a name given is made a file name as any other


def test_persona_colors():
    assert V.persona_colors(["a", "b"], ["red", "blue"])["b"] == mcolors.to_rgba("blue")
    assert len(set(V.persona_colors([str(i) for i in range(14)]).values())) == 14
    with pytest.raises(ValueError, match=r"\['b'\]"):
        V.persona_colors(["a", "b"], {"a": "red"})
    with pytest.raises(ValueError, match="one per persona"):
        V.persona_colors(["a", "b"], ["red"])
