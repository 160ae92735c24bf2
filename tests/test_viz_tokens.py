"""Token heatmaps: HTML escaping, readable byte-level tokens, colours from the scores, the figure convention."""

from __future__ import annotations

import html
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from personas.viz.tokens import TokenHTML, plot_token_scores, readable_token, token_heatmap_html

matplotlib.use("Agg")


def _tokens() -> pd.DataFrame:
    """A token table as project_texts(..., aggregate="tokens") returns it (SmolLM2-like tokens)."""
    pieces = ["<|im_start|>", "user", "\n", "3", " <", "b", ">", " é", "", " 😀", "<|im_end|>"]
    raw = ["<|im_start|>", "user", "Ċ", "3", "Ġ<", "b", ">", "ĠÃ©", "Ģ", "ĠðŁĺ", "<|im_end|>"]
    scores = [0.0, -1.0, 0.5, 2.0, -2.0, 1.0, 0.25, 4.0, 3.0, -4.0, 0.0]
    in_span = [False, False, False] + [True] * 7 + [False]
    table = pd.DataFrame({"text": 0, "token": range(11), "token_id": range(11), "token_str": raw, "piece": pieces,
                          "in_span": in_span, "score": scores,
                          "percentile_negative": np.linspace(0, 100, 11)})
    table.attrs.update(layer=10, aggregate="tokens")
    return table


def test_readable_token_undoes_the_byte_level_alphabet():
    assert readable_token("Ġhello") == " hello"
    assert readable_token("Ċ") == "\n"
    assert readable_token("ĠÃ©") == " é"
    assert readable_token("ĠðŁĺĢ") == " 😀"
    assert readable_token("ĠðŁĺ") == " \ufffd"  # a character cut between two tokens
    assert readable_token("<|im_end|>") == "<|im_end|>"
    assert readable_token("\u2581hello") == " hello"  # SentencePiece's space


def test_html_escapes_and_shows_readable_text():
    out = token_heatmap_html(_tokens(), title="a <title>")
    assert isinstance(out, TokenHTML) and isinstance(out, str) and out._repr_html_() == str(out)
    assert "<b>b</b>" not in out and "&lt;" in out and "<title>" not in out and "a &lt;title&gt;" in out
    assert "&lt;|im_start|&gt;" in out  # special tokens are text, not markup
    assert "Ġ" not in out.split("title=")[0]
    spans = re.findall(r"<span title=\"([^\"]*)\" style=\"[^\"]*\">(.*?)</span>", out)
    shown = [s for _, s in spans]
    assert shown[2] == "\u21b5<br>"  # a line break, readable and kept
    assert shown[4] == " &lt;" and shown[7] == " é" and shown[9] == " 😀" and shown[8] == ""
    assert html.unescape(spans[4][0]) == "token 4 ' <': score -2"  # the tooltip: the token read back, escaped
    assert html.unescape(spans[2][0]) == "token 2 '\\n': score 0.5"


def test_html_colours_follow_the_scores():
    out = token_heatmap_html(_tokens(), limits=(-4, 4))
    colours = re.findall(r"background:(#[0-9a-f]{6})", out)
    cmap = matplotlib.colormaps["RdBu_r"]
    norm = matplotlib.colors.Normalize(-4.0, 4.0)
    expected = [matplotlib.colors.to_hex(cmap(norm(s))) for s in _tokens()["score"]]
    assert colours == expected
    assert colours[7] == matplotlib.colors.to_hex(cmap(1.0)) and colours[9] == matplotlib.colors.to_hex(cmap(0.0))


def test_default_scale_leaves_out_the_attention_sink():
    table = _tokens()
    table.loc[0, "score"] = -2000.0  # the first position's outsized value (SmolLM2's is in the thousands)
    colours = re.findall(r"background:(#[0-9a-f]{6})", token_heatmap_html(table))
    cmap = matplotlib.colormaps["RdBu_r"]
    assert colours[7] == matplotlib.colors.to_hex(cmap(1.0)) and colours[9] == matplotlib.colors.to_hex(cmap(0.0))
    assert colours[0] == matplotlib.colors.to_hex(cmap(0.0))  # saturated, not setting the scale
    assert colours[3] == matplotlib.colors.to_hex(cmap(matplotlib.colors.Normalize(-4, 4)(2.0)))


def test_html_span_only_and_percentiles():
    out = token_heatmap_html(_tokens(), span_only=True, value="percentile_negative")
    assert out.count("<span") == 7 and "im_start" not in out
    colours = re.findall(r"background:(#[0-9a-f]{6})", out)
    cmap, norm = matplotlib.colormaps["RdBu_r"], matplotlib.colors.Normalize(0.0, 100.0)  # centred at 50
    assert colours[0] == matplotlib.colors.to_hex(cmap(norm(30.0)))
    with pytest.raises(ValueError, match="low < high"):
        token_heatmap_html(_tokens(), limits=(1, 1))
    with pytest.raises(ValueError, match="value must be one of"):
        token_heatmap_html(_tokens(), value="percentile_positive")
    with pytest.raises(ValueError, match=r"texts \[3\]"):
        token_heatmap_html(_tokens(), texts=3)


def test_plot_token_scores_grid_and_saving(tmp_path):
    fig = plot_token_scores(_tokens(), per_row=4, out_dir=tmp_path, name="tok")
    assert isinstance(fig, Figure) and (tmp_path / "tok.png").is_file()
    ax = fig.axes[0]
    grid = ax.images[0].get_array()
    assert grid.shape == (3, 4) and grid.mask.sum() == 1  # 11 tokens in 3 rows of 4
    np.testing.assert_array_equal(grid.compressed(), _tokens()["score"].to_numpy())
    labels = [t.get_text() for t in ax.texts]
    assert labels[2] == "\u21b5" and labels[4] == "<" and labels[7] == "é" and labels[0] == "<|im_sta\u2026"
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel() and "layer 10" in fig.axes[1].get_ylabel()
